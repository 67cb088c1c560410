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

from fake_vfio_common import (  # noqa: F401 - re-exported for tests
    IOMMUFD_MIN,
    U64,
    FakeErr,
    FakePciFunction,
    FakeRegion,
    Ioas,
    _subtract,
)
from fake_vfio_type1 import Type1AndDeviceMixin

from pciauth.uapi import ioctls
from pciauth.uapi.structs import ffi


class FakeKernel(Type1AndDeviceMixin):
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
