"""The legacy VFIO (type1 container + group) and VFIO device half of the fake kernel."""

from __future__ import annotations

import errno as E
import struct

from fake_vfio_common import REGION_SHIFT, U64, FakeErr, FakePciFunction, FakeRegion, _subtract

from pciauth.uapi import ioctls
from pciauth.uapi.structs import ffi


class Type1AndDeviceMixin:
    """Handlers for container, group and device fds; mixed into FakeKernel."""

    # ---- type1 container and group ----
    def _vfio_get_api_version(self, fd, _arg) -> int:
        self._st(fd, "container")
        return 0

    def _vfio_check_extension(self, fd, arg) -> int:
        self._st(fd, "container")
        return 1 if arg in (ioctls.VFIO_TYPE1_IOMMU, ioctls.VFIO_TYPE1v2_IOMMU) else 0

    def _group_fn(self, group: int) -> FakePciFunction:
        return next(f for f in self.functions.values() if f.group == group)

    def _vfio_group_get_status(self, fd, s) -> int:
        st = self._st(fd, "group")
        p = ffi.cast("struct vfio_group_status *", s)
        if p.argsz < 8:
            raise FakeErr(E.EINVAL)
        flags = ioctls.VFIO_GROUP_FLAGS_VIABLE if self._group_fn(st["group"]).viable else 0
        if st["group"] in self.group_containers:
            flags |= ioctls.VFIO_GROUP_FLAGS_CONTAINER_SET
        p.flags = flags
        return 0

    def _vfio_group_set_container(self, fd, arg) -> int:
        st = self._st(fd, "group")
        if st["group"] in self.group_containers:
            raise FakeErr(E.EINVAL)
        if not self._group_fn(st["group"]).viable:
            raise FakeErr(E.EPERM)
        cfd = ffi.cast("int *", arg)[0]
        cst = self._st(cfd, "container")
        cst["groups"].append(st["group"])
        self.group_containers[st["group"]] = cfd
        return 0

    def _unset_container(self, group: int) -> None:
        cfd = self.group_containers.pop(group)
        cst = self.fds.get(cfd)
        if cst:
            cst["groups"].remove(group)
            if not cst["groups"]:
                for mapping in cst["maps"].values():
                    self.pinned -= mapping[0]
                cst["maps"].clear()
                cst["iommu"] = None

    def _vfio_group_unset_container(self, fd, _arg) -> int:
        st = self._st(fd, "group")
        if st["group"] not in self.group_containers:
            raise FakeErr(E.EINVAL)
        self._unset_container(st["group"])
        return 0

    def _vfio_set_iommu(self, fd, arg) -> int:
        st = self._st(fd, "container")
        if not st["groups"] or st["iommu"] is not None:
            raise FakeErr(E.EINVAL)
        if arg not in (ioctls.VFIO_TYPE1_IOMMU, ioctls.VFIO_TYPE1v2_IOMMU):
            raise FakeErr(E.ENODEV)
        st["iommu"] = arg
        ranges = [self.aperture]
        for g in st["groups"]:
            for hole in self._group_fn(g).reserved:
                ranges = _subtract(ranges, hole)
        st["ranges"] = ranges
        return 0

    def _vfio_group_get_device_fd(self, fd, arg) -> int:
        st = self._st(fd, "group")
        cfd = self.group_containers.get(st["group"])
        if cfd is None or self.fds[cfd]["iommu"] is None:
            raise FakeErr(E.EINVAL)
        name = bytes(arg).split(b"\0")[0].decode()
        fn = self._group_fn(st["group"])
        if name != fn.bdf:
            raise FakeErr(E.ENODEV)
        dfd = self.next_fd
        self.next_fd += 1
        self.fds[dfd] = {"kind": "device", "bdf": fn.bdf}
        return dfd

    def _container(self, fd: int) -> dict:
        st = self._st(fd, "container")
        if st["iommu"] is None:
            raise FakeErr(E.EINVAL)
        return st

    def _info_caps(self, ranges) -> bytes:
        """The capability chain, offsets from the start of the 24-byte info struct."""
        caps = []
        for cap_id, body in self.info_extra_caps:
            caps.append((cap_id, 1, body))
        if not self.info_no_iova_cap:
            nr = len(ranges) if self.info_nr_iovas_override is None else self.info_nr_iovas_override
            body = struct.pack("<II", nr, 0) + b"".join(struct.pack("<QQ", s, e) for s, e in ranges)
            caps.append((ioctls.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, body))
        out = b""
        offset = 24
        for i, (cap_id, version, body) in enumerate(caps):
            size = 8 + len(body)
            size += -size % 8
            nxt = offset + size if i + 1 < len(caps) else 0
            if self.info_cap_loop and i + 1 == len(caps):
                nxt = 24
            out += struct.pack("<HHI", cap_id, version, nxt) + body + b"\0" * (size - 8 - len(body))
            offset += size
        return out

    def _vfio_iommu_get_info(self, fd, arg) -> int:
        st = self._container(fd)
        p = ffi.cast("struct vfio_iommu_type1_info *", arg)
        if p.argsz < 16:
            raise FakeErr(E.EINVAL)
        caps = self._info_caps(st["ranges"])
        p.flags = ioctls.VFIO_IOMMU_INFO_PGSIZES
        p.iova_pgsizes = self.page_size | (2 << 20) | (1 << 30)
        if caps:
            p.flags |= ioctls.VFIO_IOMMU_INFO_CAPS
            needed = 24 + len(caps)
            if p.argsz < needed:
                p.argsz = needed
                p.cap_offset = 0
            else:
                ffi.memmove(ffi.cast("uint8_t *", arg) + 24, caps, len(caps))
                p.cap_offset = 24
        return 0

    def _vfio_iommu_map_dma(self, fd, arg) -> int:
        st = self._container(fd)
        m = ffi.cast("struct vfio_iommu_type1_dma_map *", arg)
        if m.argsz < 32 or m.flags & ~3 or not m.size:
            raise FakeErr(E.EINVAL)
        if m.iova % self.page_size or m.size % self.page_size or m.vaddr % self.page_size:
            raise FakeErr(E.EINVAL)
        if not self._fits(st["ranges"], {}, m.iova, m.size):
            raise FakeErr(E.EINVAL)
        if not self._fits([(0, U64)], st["maps"], m.iova, m.size):
            raise FakeErr(E.EEXIST)
        if self.memlock is not None and self.pinned + m.size > self.memlock:
            raise FakeErr(E.ENOMEM)
        st["maps"][int(m.iova)] = (int(m.size), int(m.vaddr), int(m.flags))
        self.pinned += m.size
        return 0

    def _vfio_iommu_unmap_dma(self, fd, arg) -> int:
        st = self._container(fd)
        u = ffi.cast("struct vfio_iommu_type1_dma_unmap *", arg)
        if u.argsz < 24 or u.flags:
            raise FakeErr(E.EINVAL)
        try:
            done = self._unmap_range(st["maps"], int(u.iova), int(u.size))
        except FakeErr as exc:
            if exc.errno != E.ENOENT:
                raise
            done = 0  # type1 reports 0 bytes for an empty range
        u.size = done - self.unmap_shortfall
        return 0

    # ---- VFIO device ----
    def _device_fn(self, fd: int) -> FakePciFunction:
        st = self.fds.get(fd)
        if st is None:
            raise FakeErr(E.EBADF)
        if st["kind"] == "device":
            return self.functions[st["bdf"]]
        if st["kind"] == "cdev":
            if st["devid"] is None:
                raise FakeErr(E.EINVAL)  # a cdev must be bound before use
            return self.functions[st["bdf"]]
        raise FakeErr(E.ENOTTY)

    def _vfio_device_get_info(self, fd, arg) -> int:
        self._device_fn(fd)
        p = ffi.cast("struct vfio_device_info *", arg)
        if p.argsz < 16:
            raise FakeErr(E.EINVAL)
        p.flags = ioctls.VFIO_DEVICE_FLAGS_PCI | ioctls.VFIO_DEVICE_FLAGS_RESET
        p.num_regions = 9
        p.num_irqs = 5
        return 0

    def _vfio_device_get_region_info(self, fd, arg) -> int:
        fn = self._device_fn(fd)
        p = ffi.cast("struct vfio_region_info *", arg)
        if p.argsz < 32 or p.index >= 9:
            raise FakeErr(E.EINVAL)
        region = fn.regions.get(int(p.index))
        p.offset = int(p.index) << REGION_SHIFT
        p.size = region.size if region else 0
        p.flags = region.flags if region else 0
        return 0

    def _vfio_device_reset(self, fd, _arg) -> int:
        self._device_fn(fd)
        return 0

    def _region_at(self, fd: int, offset: int, length: int) -> tuple[FakeRegion, int]:
        fn = self._device_fn(fd)
        region = fn.regions.get(offset >> REGION_SHIFT)
        inner = offset & ((1 << REGION_SHIFT) - 1)
        if region is None or inner + length > region.size:
            raise FakeErr(E.EINVAL)
        return region, inner

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        region, inner = self._region_at(fd, offset, length)
        return bytes(region.data[inner : inner + length])

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        region, inner = self._region_at(fd, offset, len(data))
        region.data[inner : inner + len(data)] = data
        return len(data)

    def mmap(self, fd: int, length: int, offset: int, *, writable: bool):
        region, inner = self._region_at(fd, offset, length)
        if not region.flags & ioctls.VFIO_REGION_INFO_FLAG_MMAP:
            raise FakeErr(E.EINVAL)
        view = memoryview(region.data)[inner : inner + length]
        self.mappings.append(view)
        return view if writable else view.toreadonly()

    def munmap(self, mapping) -> None:
        self.munmapped += 1
