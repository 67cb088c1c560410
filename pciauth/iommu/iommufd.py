"""The iommufd backend: a VFIO device cdev bound to ``/dev/iommu`` (kernel >= 6.6).

Steps, each named in errors: OpenIommufd, OpenDeviceCdev, DeviceBindIommufd, IoasAlloc,
DeviceAttachIommufdPt, IoasIovaRanges; then IoasMap / IoasUnmap / IoasAllowIovas /
GetHwInfo while open. :meth:`close` unmaps every mapping, then detaches the device,
destroys the IOAS and closes the file descriptors, newest first.
"""

from __future__ import annotations

import errno as E
import os

from pciauth.errors import IommuError, MalformedData
from pciauth.iommu.base import IommuBackend, IovaRange
from pciauth.iommu.steps import UndoStack, call, open_node, step_error
from pciauth.uapi import ioctls
from pciauth.uapi import sys as usys
from pciauth.uapi.structs import addressof, new, new_array

IOMMU_DEV = "/dev/iommu"
#: Never believe more IOVA ranges than this from the kernel (a real one reports a handful).
MAX_IOVA_RANGES = 4096
#: The range count can change between the sizing call and the real one; retry this often.
RANGE_RETRIES = 4


class IommufdBackend(IommuBackend):
    """An IOAS with one VFIO device attached.

    ``device_fd`` is the bound cdev: ``pciauth.vfio.device.VfioDevice`` reads its regions.
    """

    name = "iommufd"

    def __init__(self, cdev_path: str, *, device: str | None = None, iommu_path: str = IOMMU_DEV) -> None:
        super().__init__(device=device)
        self.cdev_path = cdev_path
        self._undo = UndoStack()
        self.iova_alignment = 1
        try:
            self._setup(cdev_path, iommu_path)
        except BaseException:
            self._closed = True
            self._undo.unwind()
            raise

    def _setup(self, cdev_path: str, iommu_path: str) -> None:
        dev = self.device
        self.iommufd = open_node("OpenIommufd", iommu_path, device=dev)
        self._undo.push("close iommufd", lambda: usys.close(self.iommufd))
        self.device_fd = open_node("OpenDeviceCdev", cdev_path, device=dev)
        self._undo.push("close device cdev", lambda: usys.close(self.device_fd))

        bind = new("vfio_device_bind_iommufd", iommufd=self.iommufd)
        call("DeviceBindIommufd", self.device_fd, "VFIO_DEVICE_BIND_IOMMUFD", bind, device=dev)
        self.dev_id = int(bind.out_devid)

        alloc = new("iommu_ioas_alloc")
        call("IoasAlloc", self.iommufd, "IOMMU_IOAS_ALLOC", alloc, device=dev)
        self.ioas_id = int(alloc.out_ioas_id)
        self._undo.push("destroy IOAS", lambda: self._destroy(self.ioas_id))

        attach = new("vfio_device_attach_iommufd_pt", pt_id=self.ioas_id)
        call("DeviceAttachIommufdPt", self.device_fd, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", attach, device=dev)
        #: The HWPT the kernel attached the device to (auto-created for the IOAS).
        self.hwpt_id = int(attach.pt_id)
        self._undo.push("detach device", self._detach)

        self._ranges, alignment = self._query_ranges()
        if alignment & (alignment - 1):
            raise MalformedData(
                f"IOMMU_IOAS_IOVA_RANGES reported an IOVA alignment of {alignment}, not a power of two",
                field="out_iova_alignment",
                device=dev,
            )
        self.iova_alignment = alignment or 1
        self.page_size = max(self.page_size, self.iova_alignment)

    # ---- kernel objects ----
    def _destroy(self, object_id: int) -> None:
        call("Destroy", self.iommufd, "IOMMU_DESTROY", new("iommu_destroy", id=object_id), device=self.device)

    def _detach(self) -> None:
        detach = new("vfio_device_detach_iommufd_pt")
        call(
            "DeviceDetachIommufdPt",
            self.device_fd,
            "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            detach,
            device=self.device,
        )

    def _query_ranges(self) -> tuple[list[IovaRange], int]:
        """IOMMU_IOAS_IOVA_RANGES: ask with no room (EMSGSIZE gives the count), then read them."""
        count = 0
        for _ in range(RANGE_RETRIES):
            array = new_array("struct iommu_iova_range", max(count, 1))
            cmd = new("iommu_ioas_iova_ranges", ioas_id=self.ioas_id, num_iovas=count)
            cmd.allowed_iovas = addressof(array) if count else 0
            try:
                usys.ioctl(self.iommufd, ioctls.IOMMU_IOAS_IOVA_RANGES, cmd)
            except OSError as exc:
                if exc.errno != E.EMSGSIZE:
                    raise step_error("IoasIovaRanges", exc, device=self.device) from None
                reported = int(cmd.num_iovas)
                if reported <= count or reported > MAX_IOVA_RANGES:
                    raise MalformedData(
                        f"IOMMU_IOAS_IOVA_RANGES reported {reported} ranges after room for {count}",
                        field="num_iovas",
                        device=self.device,
                    ) from None
                count = reported
                continue
            got = int(cmd.num_iovas)
            if got > count:
                raise MalformedData(
                    f"IOMMU_IOAS_IOVA_RANGES filled {got} ranges into room for {count}",
                    field="num_iovas",
                    device=self.device,
                )
            ranges = [(int(array[i].start), int(array[i].last)) for i in range(got)]
            for start, last in ranges:
                if start > last:
                    raise MalformedData(
                        f"IOVA range 0x{start:x}-0x{last:x} ends before it starts",
                        field="iova_ranges",
                        device=self.device,
                    )
            return ranges, int(cmd.out_iova_alignment)
        raise IommuError("the IOVA range count kept changing", step="IoasIovaRanges", device=self.device)

    # ---- IommuBackend hooks ----
    def _do_iova_ranges(self) -> list[IovaRange]:
        return list(self._ranges)

    def _do_allow_iovas(self, ranges: list[IovaRange]) -> None:
        array = new_array("struct iommu_iova_range", max(len(ranges), 1))
        for i, (start, last) in enumerate(ranges):
            array[i].start, array[i].last = start, last
        cmd = new("iommu_ioas_allow_iovas", ioas_id=self.ioas_id, num_iovas=len(ranges))
        cmd.allowed_iovas = addressof(array) if ranges else 0
        call("IoasAllowIovas", self.iommufd, "IOMMU_IOAS_ALLOW_IOVAS", cmd, device=self.device)

    def _do_map(self, vaddr: int, length: int, iova: int | None, readable: bool, writable: bool) -> int:
        flags = (ioctls.IOMMU_IOAS_MAP_READABLE if readable else 0) | (
            ioctls.IOMMU_IOAS_MAP_WRITEABLE if writable else 0
        )
        cmd = new("iommu_ioas_map", ioas_id=self.ioas_id, user_va=vaddr, length=length)
        if iova is not None:
            flags |= ioctls.IOMMU_IOAS_MAP_FIXED_IOVA
            cmd.iova = iova
        cmd.flags = flags
        pinned = sum(m.length for m in self._mappings.values())
        call(
            "IoasMap",
            self.iommufd,
            "IOMMU_IOAS_MAP",
            cmd,
            device=self.device,
            detail=f"(0x{length:x} bytes{f' at IOVA 0x{iova:x}' if iova is not None else ''})",
            pinned=pinned,
            needed=length,
        )
        got = int(cmd.iova)
        if got % self.page_size or got + length - 1 >= 1 << 64:
            raise IommuError(f"the kernel chose a bad IOVA 0x{got:x}", step="IoasMap", device=self.device)
        return got

    def _do_unmap(self, iova: int, length: int) -> int:
        cmd = new("iommu_ioas_unmap", ioas_id=self.ioas_id, iova=iova, length=length)
        call(
            "IoasUnmap",
            self.iommufd,
            "IOMMU_IOAS_UNMAP",
            cmd,
            device=self.device,
            detail=f"(IOVA 0x{iova:x})",
        )
        return int(cmd.length)

    def _do_release(self) -> None:
        self._undo.unwind()

    # ---- extras ----
    def hw_info(self) -> dict:
        """IOMMU_GET_HW_INFO for the bound device: the IOMMU type and its capabilities."""
        self._check_open()
        info = new("iommu_hw_info", dev_id=self.dev_id)
        call("GetHwInfo", self.iommufd, "IOMMU_GET_HW_INFO", info, device=self.device)
        kind = int(info.out_data_type)
        return {
            "type": kind,
            "name": ioctls.IOMMU_HW_INFO_TYPES.get(kind, f"unknown-{kind}"),
            "capabilities": int(info.out_capabilities),
            "max_pasid_log2": int(info.out_max_pasid_log2),
        }


def cdev_path(cdev_name: str, dev_root: str = "/dev/vfio/devices") -> str:
    """``vfio3`` -> ``/dev/vfio/devices/vfio3``."""
    return os.path.join(dev_root, cdev_name)
