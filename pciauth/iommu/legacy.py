"""The legacy VFIO backend: a type1 container with the device's IOMMU group in it.

Works on every kernel (Debian's stock kernels have no iommufd). Steps, each named in
errors: OpenContainer, GetApiVersion, CheckExtension, OpenGroup, GroupGetStatus,
GroupSetContainer, SetIommu, GroupGetDeviceFd, IommuGetInfo; then IommuDmaMap /
IommuDmaUnmap. Type1 never picks IOVAs itself, so pciauth picks the lowest free one
(inside the allowed ranges, when :meth:`allow_iovas` set some).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pciauth.errors import HostNotReady, IommuError, MalformedData, RefusedError
from pciauth.iommu.base import U64_MAX, IommuBackend, IovaRange, choose_iova
from pciauth.iommu.steps import DOCTOR, UndoStack, call, open_node
from pciauth.uapi import ioctls
from pciauth.uapi import sys as usys
from pciauth.uapi.structs import ffi, new, sizeof

VFIO_DIR = "/dev/vfio"
#: The GET_INFO answer with its capability chain is small; refuse absurd sizes.
MAX_INFO_BYTES = 64 * 1024
#: Stop walking a capability chain after this many entries (a loop guard besides the seen-set).
MAX_CAPS = 64


class LegacyBackend(IommuBackend):
    """Container + group, VFIO_TYPE1v2_IOMMU.

    ``group_blockers`` (optional) returns a sentence naming the group members that keep
    the group from being viable; ``pciauth.iommu.open_backend`` passes one from sysfs.
    """

    name = "legacy"

    def __init__(
        self,
        group: int,
        bdf: str,
        *,
        device: str | None = None,
        vfio_dir: str = VFIO_DIR,
        group_blockers: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(device=device or bdf)
        self.group = group
        self.bdf = bdf
        self._undo = UndoStack()
        self._allowed: list[IovaRange] | None = None
        self.warnings: list[str] = []
        try:
            self._setup(vfio_dir, group_blockers)
        except BaseException:
            self._closed = True
            self._undo.unwind()
            raise

    def _setup(self, vfio_dir: str, group_blockers: Callable[[], str] | None) -> None:
        dev = self.device
        self.container_fd = open_node("OpenContainer", os.path.join(vfio_dir, "vfio"), device=dev)
        self._undo.push("close container", lambda: usys.close(self.container_fd))
        version = call("GetApiVersion", self.container_fd, "VFIO_GET_API_VERSION", device=dev)
        if version != ioctls.VFIO_API_VERSION:
            raise HostNotReady(
                f"VFIO API version {version}, pciauth speaks {ioctls.VFIO_API_VERSION}", device=dev
            )
        has_v2 = call(
            "CheckExtension", self.container_fd, "VFIO_CHECK_EXTENSION", ioctls.VFIO_TYPE1v2_IOMMU, device=dev
        )
        if has_v2 != 1:
            raise HostNotReady(
                "the VFIO container lacks the type1v2 IOMMU (vfio_iommu_type1 not loaded?)",
                device=dev,
                hint="`modprobe vfio_iommu_type1`; " + DOCTOR,
            )

        group_path = os.path.join(vfio_dir, str(self.group))
        self.group_fd = open_node("OpenGroup", group_path, device=dev)
        self._undo.push("close group", lambda: usys.close(self.group_fd))
        status = new("vfio_group_status")
        call("GroupGetStatus", self.group_fd, "VFIO_GROUP_GET_STATUS", status, device=dev)
        if not status.flags & ioctls.VFIO_GROUP_FLAGS_VIABLE:
            blockers = group_blockers() if group_blockers else ""
            raise RefusedError(
                f"IOMMU group {self.group} is not viable{': ' + blockers if blockers else ''}",
                device=dev,
                hint="bind every device of the group to vfio-pci (or leave it without a driver)",
            )
        if status.flags & ioctls.VFIO_GROUP_FLAGS_CONTAINER_SET:
            raise RefusedError(
                f"IOMMU group {self.group} is already in a container (another process uses it)", device=dev
            )
        container = ffi.new("int *", self.container_fd)
        call("GroupSetContainer", self.group_fd, "VFIO_GROUP_SET_CONTAINER", container, device=dev)
        self._undo.push(
            "unset container",
            lambda: call("GroupUnsetContainer", self.group_fd, "VFIO_GROUP_UNSET_CONTAINER"),
        )
        call("SetIommu", self.container_fd, "VFIO_SET_IOMMU", ioctls.VFIO_TYPE1v2_IOMMU, device=dev)

        fd = call(
            "GroupGetDeviceFd",
            self.group_fd,
            "VFIO_GROUP_GET_DEVICE_FD",
            self.bdf.encode() + b"\0",
            device=dev,
        )
        self.device_fd = fd
        self._undo.push("close device", lambda: usys.close(fd))
        self._ranges, pgsizes = self._query_info()
        if pgsizes:
            smallest = pgsizes & -pgsizes
            self.page_size = max(self.page_size, smallest)

    # ---- VFIO_IOMMU_GET_INFO and its capability chain ----
    def _query_info(self) -> tuple[list[IovaRange], int]:
        base = sizeof("vfio_iommu_type1_info")
        info = new("vfio_iommu_type1_info")
        call("IommuGetInfo", self.container_fd, "VFIO_IOMMU_GET_INFO", info, device=self.device)
        wanted = int(info.argsz)
        if wanted > base:
            if wanted > MAX_INFO_BYTES:
                raise MalformedData(
                    f"VFIO_IOMMU_GET_INFO asks for {wanted} bytes (more than {MAX_INFO_BYTES})",
                    field="argsz",
                    device=self.device,
                )
            info = new("vfio_iommu_type1_info", alloc_size=wanted)
            call("IommuGetInfo", self.container_fd, "VFIO_IOMMU_GET_INFO", info, device=self.device)
            if int(info.argsz) > wanted:
                raise MalformedData(
                    "VFIO_IOMMU_GET_INFO grew between calls", field="argsz", device=self.device
                )
        size = max(base, min(int(info.argsz), wanted))
        raw = bytes(ffi.buffer(ffi.cast("uint8_t *", info), size))
        pgsizes = int(info.iova_pgsizes) if info.flags & ioctls.VFIO_IOMMU_INFO_PGSIZES else 0
        ranges: list[IovaRange] | None = None
        if info.flags & ioctls.VFIO_IOMMU_INFO_CAPS and info.cap_offset:
            ranges = parse_iova_cap(raw, int(info.cap_offset), base, device=self.device)
        if ranges is None:
            self.warnings.append("the kernel reports no IOVA ranges (kernel < 5.4): assuming all 64 bits")
            ranges = [(0, U64_MAX)]
        return ranges, pgsizes

    # ---- IommuBackend hooks ----
    def _do_iova_ranges(self) -> list[IovaRange]:
        return list(self._ranges)

    def _do_allow_iovas(self, ranges: list[IovaRange]) -> None:
        # Type1 has no such call; pciauth's own IOVA choice honours it.
        self._allowed = list(ranges) or None

    def _do_map(self, vaddr: int, length: int, iova: int | None, readable: bool, writable: bool) -> int:
        if iova is None:
            iova = choose_iova(self._allowed or self._ranges, self.mappings, length, self.page_size)
            if iova is None:
                raise IommuError(
                    f"no free IOVA range of 0x{length:x} bytes", step="IommuDmaMap", device=self.device
                )
        flags = (ioctls.VFIO_DMA_MAP_FLAG_READ if readable else 0) | (
            ioctls.VFIO_DMA_MAP_FLAG_WRITE if writable else 0
        )
        cmd = new("vfio_iommu_type1_dma_map", flags=flags, vaddr=vaddr, iova=iova, size=length)
        call(
            "IommuDmaMap",
            self.container_fd,
            "VFIO_IOMMU_MAP_DMA",
            cmd,
            device=self.device,
            detail=f"(0x{length:x} bytes at IOVA 0x{iova:x})",
            pinned=sum(m.length for m in self._mappings.values()),
            needed=length,
        )
        return iova

    def _do_unmap(self, iova: int, length: int) -> int:
        cmd = new("vfio_iommu_type1_dma_unmap", iova=iova, size=length)
        call(
            "IommuDmaUnmap",
            self.container_fd,
            "VFIO_IOMMU_UNMAP_DMA",
            cmd,
            device=self.device,
            detail=f"(IOVA 0x{iova:x})",
        )
        return int(cmd.size)

    def _do_release(self) -> None:
        self._undo.unwind()


def parse_iova_cap(
    raw: bytes, first: int, header_size: int, *, device: str | None = None
) -> list[IovaRange] | None:
    """Walk the VFIO_IOMMU_GET_INFO capability chain in ``raw``; the IOVA ranges, or None.

    Offsets are from the start of the info struct. Every offset and count is checked
    against ``raw``; a chain that loops, points into the header or runs past the end
    raises :class:`MalformedData` naming the field.
    """
    import struct

    seen: set[int] = set()
    offset = first
    for _ in range(MAX_CAPS):
        if offset == 0:
            return None
        if offset in seen:
            raise MalformedData(
                f"capability chain loops back to offset {offset}", field="cap.next", device=device
            )
        seen.add(offset)
        if offset < header_size or offset % 4 or offset + 8 > len(raw):
            raise MalformedData(
                f"capability at offset {offset} is outside the {len(raw)}-byte info",
                field="cap.next",
                device=device,
            )
        cap_id, _version, nxt = struct.unpack_from("<HHI", raw, offset)
        if cap_id == ioctls.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
            if offset + 16 > len(raw):
                raise MalformedData("IOVA range capability is truncated", field="nr_iovas", device=device)
            (count,) = struct.unpack_from("<I", raw, offset + 8)
            end = offset + 16 + 16 * count
            if end > len(raw):
                raise MalformedData(
                    f"IOVA range capability claims {count} ranges, more than the info holds",
                    field="nr_iovas",
                    device=device,
                )
            ranges = [struct.unpack_from("<QQ", raw, offset + 16 + 16 * i) for i in range(count)]
            for start, last in ranges:
                if start > last:
                    raise MalformedData(
                        f"IOVA range 0x{start:x}-0x{last:x} ends before it starts",
                        field="iova_ranges",
                        device=device,
                    )
            return [(int(s), int(e)) for s, e in ranges]
        offset = nxt
    raise MalformedData(f"capability chain longer than {MAX_CAPS} entries", field="cap.next", device=device)
