"""A fake kernel for pciauth.uapi.sys: iommufd and VFIO type1 semantics, in memory.

Tests install it with ``pciauth.uapi.sys.use_kernel(FakeKernel(...))`` so the IOMMU
backends and VfioDevice run on a host with no VFIO. It models what pciauth relies on:

- iommufd: BIND_IOMMUFD, IOAS_ALLOC, ATTACH/DETACH, IOVA_RANGES (EMSGSIZE with the count
  when there is no room), ALLOW_IOVAS, MAP (fixed or kernel-chosen IOVA), UNMAP (writes
  back the unmapped length), GET_HW_INFO, DESTROY (EBUSY while in use);
  every struct: EINVAL when shorter than the kernel's minimum, E2BIG when bytes past
  what "this kernel" knows are non-zero.
- type1: container, group viability, SET_CONTAINER, SET_IOMMU, GET_DEVICE_FD, GET_INFO
  with a capability chain (room/argsz dance, extra capabilities, injectable loops),
  MAP_DMA/UNMAP_DMA bookkeeping and a memlock limit.
- a VFIO device fd: GET_INFO, GET_REGION_INFO, pread/pwrite/mmap of regions.

Knobs: ``fail[name] = errno`` fails an ioctl, ``unmap_shortfall`` makes UNMAP report
less than it was asked, ``known_size[name]`` models an older kernel's struct size.
"""

from __future__ import annotations

import errno as E
import os
import struct
from dataclasses import dataclass, field

from pciauth.uapi import ioctls
from pciauth.uapi.structs import ffi

U64 = (1 << 64) - 1
REGION_SHIFT = 40  # vfio-pci puts region N at offset N << 40

# ioctl name -> (struct, minimum size the kernel accepts)
IOMMUFD_MIN = {
    "IOMMU_DESTROY": ("iommu_destroy", 8),
    "IOMMU_IOAS_ALLOC": ("iommu_ioas_alloc", 12),
    "IOMMU_IOAS_ALLOW_IOVAS": ("iommu_ioas_allow_iovas", 24),
    "IOMMU_IOAS_IOVA_RANGES": ("iommu_ioas_iova_ranges", 32),
    "IOMMU_IOAS_MAP": ("iommu_ioas_map", 40),
    "IOMMU_IOAS_UNMAP": ("iommu_ioas_unmap", 24),
    "IOMMU_GET_HW_INFO": ("iommu_hw_info", 24),
    "VFIO_DEVICE_BIND_IOMMUFD": ("vfio_device_bind_iommufd", 16),
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": ("vfio_device_attach_iommufd_pt", 12),
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": ("vfio_device_detach_iommufd_pt", 8),
}


class FakeErr(OSError):
    def __init__(self, err: int) -> None:
        super().__init__(err, os.strerror(err))


@dataclass
class FakeRegion:
    size: int
    flags: int = ioctls.VFIO_REGION_INFO_FLAG_READ | ioctls.VFIO_REGION_INFO_FLAG_WRITE
    data: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if not self.data:
            self.data = bytearray(self.size)


@dataclass
class FakePciFunction:
    """A VFIO device as the fake kernel exposes it."""

    bdf: str = "0000:01:00.0"
    group: int = 7
    cdev: str | None = "vfio0"
    viable: bool = True
    regions: dict[int, FakeRegion] = field(default_factory=dict)
    #: IOVA holes the device imposes when attached (MSI window on x86).
    reserved: list[tuple[int, int]] = field(default_factory=lambda: [(0xFEE00000, 0xFEEFFFFF)])

    def __post_init__(self) -> None:
        if not self.regions:
            config = FakeRegion(4096)
            struct.pack_into("<HH", config.data, 0, 0x1234, 0x11E8)
            bar0 = FakeRegion(
                1 << 20,
                flags=ioctls.VFIO_REGION_INFO_FLAG_READ
                | ioctls.VFIO_REGION_INFO_FLAG_WRITE
                | ioctls.VFIO_REGION_INFO_FLAG_MMAP,
            )
            self.regions = {0: bar0, ioctls.VFIO_PCI_CONFIG_REGION_INDEX: config}


def _subtract(ranges: list[tuple[int, int]], hole: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    for s, e in ranges:
        if hole[1] < s or hole[0] > e:
            out.append((s, e))
            continue
        if s < hole[0]:
            out.append((s, hole[0] - 1))
        if e > hole[1]:
            out.append((hole[1] + 1, e))
    return out


@dataclass
class Ioas:
    id: int
    ranges: list[tuple[int, int]]
    allowed: list[tuple[int, int]] | None = None
    maps: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # iova -> (length, va, flags)
    users: int = 0


class FakeKernel:
    """See the module docstring. ``functions`` are the VFIO devices it knows."""

    def __init__(
        self,
        functions: list[FakePciFunction] | None = None,
        *,
        iommufd: bool = True,
        legacy: bool = True,
        page_size: int = 4096,
        aperture: tuple[int, int] = (0, (1 << 48) - 1),
        memlock: int | None = None,
    ) -> None:
        self.functions = {f.bdf: f for f in (functions or [FakePciFunction()])}
        self.has_iommufd = iommufd
        self.has_legacy = legacy
        self.page_size = page_size
        self.aperture = aperture
        self.memlock = memlock
        self.fds: dict[int, dict] = {}
        self.next_fd = 100
        self.next_id = 1
        self.objects: dict[int, object] = {}
        self.fail: dict[str, int] = {}
        self.unmap_shortfall = 0
        self.known_size: dict[str, int] = {}
        self.calls: list[str] = []
        # type1 GET_INFO knobs
        self.info_extra_caps: list[tuple[int, bytes]] = []  # (id, body) put before the IOVA cap
        self.info_cap_loop = False
        self.info_no_iova_cap = False
        self.info_nr_iovas_override: int | None = None
        self.hw_info_type = 1
        self.pinned = 0
        self.mappings: list[memoryview] = []
        self.munmapped = 0
        self.group_containers: dict[int, int] = {}  # group -> container fd

    # ---- paths ----
    def _paths(self) -> dict[str, tuple]:
        paths: dict[str, tuple] = {}
        if self.has_iommufd:
            paths["/dev/iommu"] = ("iommufd",)
        if self.has_legacy:
            paths["/dev/vfio/vfio"] = ("container",)
            for f in self.functions.values():
                paths[f"/dev/vfio/{f.group}"] = ("group", f.group)
        for f in self.functions.values():
            if f.cdev and self.has_iommufd:
                paths[f"/dev/vfio/devices/{f.cdev}"] = ("cdev", f.bdf)
        return paths

    def exists(self, path: str) -> bool:
        return path in self._paths()

    def open(self, path: str, flags: int) -> int:
        node = self._paths().get(path)
        if node is None:
            raise FakeErr(E.ENOENT)
        if node[0] == "group" and any(
            st.get("kind") == "group" and st["group"] == node[1] for st in self.fds.values()
        ):
            raise FakeErr(E.EBUSY)
        fd = self.next_fd
        self.next_fd += 1
        state: dict = {"kind": node[0], "path": path}
        if node[0] == "group":
            state["group"] = node[1]
        if node[0] == "cdev":
            state.update(bdf=node[1], bound=None, attached=None, devid=None)
        if node[0] == "container":
            state.update(groups=[], iommu=None, maps={})
        self.fds[fd] = state
        return fd

    def close(self, fd: int) -> None:
        st = self.fds.pop(fd, None)
        if st is None:
            raise FakeErr(E.EBADF)
        if st["kind"] == "cdev" and st.get("attached"):
            self.objects[st["attached"]].users -= 1  # type: ignore[attr-defined]
            self.objects.pop(st.pop("hwpt"), None)
        if st["kind"] == "cdev" and st.get("devid"):
            self.objects.pop(st["devid"], None)
        if st["kind"] == "group" and st["group"] in self.group_containers:
            self._unset_container(st["group"])
        if st["kind"] == "container":
            for mapping in st["maps"].values():
                self.pinned -= mapping[0]

    @property
    def open_fds(self) -> int:
        return len(self.fds)

    # ---- helpers ----
    def _st(self, fd: int, kind: str) -> dict:
        st = self.fds.get(fd)
        if st is None:
            raise FakeErr(E.EBADF)
        if st["kind"] != kind:
            raise FakeErr(E.ENOTTY)
        return st

    def _struct(self, name: str, arg, min_size: int, ctype: str):
        """copy_struct_from_user: EINVAL if short, E2BIG if unknown trailing bytes are non-zero."""
        p = ffi.cast(f"struct {ctype} *", arg)
        user_size = p.size if hasattr(p, "size") else p.argsz
        known = self.known_size.get(name, ffi.sizeof(f"struct {ctype}"))
        if user_size < min_size:
            raise FakeErr(E.EINVAL)
        if user_size > known:
            tail = bytes(ffi.buffer(ffi.cast("uint8_t *", arg) + known, user_size - known))
            if any(tail):
                raise FakeErr(E.E2BIG)
        return p

    def _new_id(self, obj) -> int:
        oid = self.next_id
        self.next_id += 1
        self.objects[oid] = obj
        return oid

    # ---- dispatch ----
    def ioctl(self, fd: int, request: int, arg=0) -> int:
        name = ioctls.NAMES.get(request)
        if name is None:
            raise FakeErr(E.ENOTTY)
        self.calls.append(name)
        if name in self.fail:
            raise FakeErr(self.fail[name])
        handler = getattr(self, "_" + name.lower(), None)
        if handler is None:
            raise FakeErr(E.ENOTTY)
        if name in IOMMUFD_MIN:
            ctype, min_size = IOMMUFD_MIN[name]
            arg = self._struct(name, arg, min_size, ctype)
        return handler(fd, arg)

    # ---- iommufd ----
    def _vfio_device_bind_iommufd(self, fd, b) -> int:
        st = self._st(fd, "cdev")
        if st["devid"] is not None or b.flags:
            raise FakeErr(E.EINVAL)
        self._st(b.iommufd, "iommufd")
        st["devid"] = self._new_id(("device", st["bdf"]))
        st["bound"] = b.iommufd
        b.out_devid = st["devid"]
        return 0

    def _iommu_ioas_alloc(self, fd, a) -> int:
        self._st(fd, "iommufd")
        if a.flags:
            raise FakeErr(E.EOPNOTSUPP)
        ioas = Ioas(0, [self.aperture])
        ioas.id = self._new_id(ioas)
        a.out_ioas_id = ioas.id
        return 0

    def _ioas(self, oid: int) -> Ioas:
        obj = self.objects.get(oid)
        if not isinstance(obj, Ioas):
            raise FakeErr(E.ENOENT)
        return obj

    def _vfio_device_attach_iommufd_pt(self, fd, a) -> int:
        st = self._st(fd, "cdev")
        if st["devid"] is None or a.flags:
            raise FakeErr(E.EINVAL)
        ioas = self._ioas(a.pt_id)
        fn = self.functions[st["bdf"]]
        narrowed = list(ioas.ranges)
        for hole in fn.reserved:
            narrowed = _subtract(narrowed, hole)
        for hole in fn.reserved:
            if ioas.allowed and any(s <= hole[1] and hole[0] <= e for s, e in ioas.allowed):
                raise FakeErr(E.EINVAL)  # the kernel refuses to narrow allowed IOVAs
        ioas.ranges = narrowed
        ioas.users += 1
        st["attached"] = ioas.id
        # The kernel auto-creates a HWPT for the IOAS; it dies with the attachment.
        st["hwpt"] = self._new_id(("hwpt", ioas.id))
        a.pt_id = st["hwpt"]
        return 0

    def _vfio_device_detach_iommufd_pt(self, fd, d) -> int:
        st = self._st(fd, "cdev")
        if not st["attached"]:
            raise FakeErr(E.EINVAL)
        self._ioas(st["attached"]).users -= 1
        self.objects.pop(st.pop("hwpt"), None)
        st["attached"] = None
        return 0

    def _iommu_ioas_iova_ranges(self, fd, r) -> int:
        self._st(fd, "iommufd")
        ioas = self._ioas(r.ioas_id)
        room = r.num_iovas
        ranges = ioas.ranges
        if room and not r.allowed_iovas:
            raise FakeErr(E.EFAULT)
        out = ffi.cast("struct iommu_iova_range *", r.allowed_iovas) if room else None
        for i, (s, e) in enumerate(ranges[:room]):
            out[i].start, out[i].last = s, e
        r.num_iovas = len(ranges)
        r.out_iova_alignment = self.page_size
        if len(ranges) > room:
            raise FakeErr(E.EMSGSIZE)
        return 0

    def _iommu_ioas_allow_iovas(self, fd, a) -> int:
        self._st(fd, "iommufd")
        ioas = self._ioas(a.ioas_id)
        arr = ffi.cast("struct iommu_iova_range *", a.allowed_iovas) if a.num_iovas else None
        allowed = [(int(arr[i].start), int(arr[i].last)) for i in range(a.num_iovas)]
        for s, e in allowed:
            if s > e or not any(rs <= s and e <= re for rs, re in ioas.ranges):
                raise FakeErr(E.EINVAL)
        ioas.allowed = allowed or None
        return 0

    def _iommu_ioas_map(self, fd, m) -> int:
        self._st(fd, "iommufd")
        ioas = self._ioas(m.ioas_id)
        known = (
            ioctls.IOMMU_IOAS_MAP_FIXED_IOVA
            | ioctls.IOMMU_IOAS_MAP_READABLE
            | ioctls.IOMMU_IOAS_MAP_WRITEABLE
        )
        if m.flags & ~known or not m.length or getattr(m, "__reserved"):
            raise FakeErr(E.EOPNOTSUPP if m.flags & ~known else E.EINVAL)
        if m.length % self.page_size or m.user_va % self.page_size:
            raise FakeErr(E.EINVAL)
        if self.memlock is not None and self.pinned + m.length > self.memlock:
            raise FakeErr(E.ENOMEM)
        if m.flags & ioctls.IOMMU_IOAS_MAP_FIXED_IOVA:
            iova = int(m.iova)
            if iova % self.page_size or not self._fits(ioas.ranges, ioas.maps, iova, m.length):
                raise FakeErr(E.ENOSPC if iova % self.page_size == 0 else E.EINVAL)
        else:
            iova = self._alloc(ioas.allowed or ioas.ranges, ioas.maps, m.length)
            if iova is None:
                raise FakeErr(E.ENOSPC)
        ioas.maps[iova] = (int(m.length), int(m.user_va), int(m.flags))
        self.pinned += m.length
        m.iova = iova
        return 0

    def _fits(self, ranges, maps, iova, length) -> bool:
        last = iova + length - 1
        if not any(s <= iova and last <= e for s, e in ranges):
            return False
        return all(last < mi or iova > mi + ml - 1 for mi, (ml, *_r) in maps.items())

    def _alloc(self, ranges, maps, length):
        for s, e in sorted(ranges):
            cand = -(-s // self.page_size) * self.page_size
            while cand + length - 1 <= e:
                if self._fits([(s, e)], maps, cand, length):
                    return cand
                cand += self.page_size
        return None

    def _unmap_range(self, maps, iova, length) -> int:
        if iova == 0 and length == U64:
            victims = list(maps)
        else:
            last = iova + length - 1
            victims = []
            for mi, (ml, *_r) in maps.items():
                ml_last = mi + ml - 1
                if mi >= iova and ml_last <= last:
                    victims.append(mi)
                elif mi <= last and ml_last >= iova:
                    raise FakeErr(E.EINVAL)  # would split a mapping
        if not victims:
            raise FakeErr(E.ENOENT)
        total = 0
        for mi in victims:
            total += maps.pop(mi)[0]
        self.pinned -= total
        return total

    def _iommu_ioas_unmap(self, fd, u) -> int:
        self._st(fd, "iommufd")
        ioas = self._ioas(u.ioas_id)
        done = self._unmap_range(ioas.maps, int(u.iova), int(u.length))
        u.length = done - self.unmap_shortfall
        return 0

    def _iommu_destroy(self, fd, d) -> int:
        self._st(fd, "iommufd")
        obj = self.objects.get(d.id)
        if obj is None:
            raise FakeErr(E.ENOENT)
        if isinstance(obj, Ioas) and (obj.users or obj.maps):
            raise FakeErr(E.EBUSY)
        del self.objects[d.id]
        return 0

    def _iommu_get_hw_info(self, fd, h) -> int:
        self._st(fd, "iommufd")
        obj = self.objects.get(h.dev_id)
        if not (isinstance(obj, tuple) and obj[0] == "device"):
            raise FakeErr(E.ENOENT)
        h.out_data_type = self.hw_info_type
        h.out_capabilities = 1
        h.out_max_pasid_log2 = 20
        return 0

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
