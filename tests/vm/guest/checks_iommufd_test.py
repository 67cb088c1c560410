"""Guest checks with CONFIG_IOMMUFD_TEST: map, unmap and window rules on the kernel's mock domain.

``IOMMU_TEST_CMD`` (``_IO(';', 0xa0)``) with ``IOMMU_TEST_OP_MOCK_DOMAIN`` attaches a mock
device to an IOAS through a mock IOMMU domain whose aperture is
``[MOCK_APERTURE_START, MOCK_APERTURE_LAST]``; ``IOMMU_TEST_OP_MD_CHECK_MAP`` asks the
kernel whether the mock domain's page table maps an IOVA range to the given user pages.
Everything goes through pciauth's ioctl layer (``pciauth.uapi``: structs from the cffi
module ``pciauth._uapi``, numbers from ``pciauth.uapi.ioctls``). The layout of
``struct iommu_test_cmd`` is drivers/iommu/iommufd/iommufd_test.h (6.12).
"""

from __future__ import annotations

import errno
import os

from harness import CheckFailed, Skip, check, expect

MOCK_APERTURE_START = 1 << 24
MOCK_APERTURE_LAST = (1 << 31) - 1
PAGE = 4096
VARIANTS = ("intel-iommu", "virtio-iommu", "none")


class Iommufd:
    """A bare /dev/iommu fd with just the calls these checks need."""

    def __init__(self) -> None:
        from pciauth.uapi import sys as usys

        if not os.path.exists("/dev/iommu"):
            raise Skip("/dev/iommu missing (CONFIG_IOMMUFD off in this guest kernel)")
        self.fd = usys.open("/dev/iommu", os.O_RDWR)

    def ioctl(self, name: str, arg) -> int:
        from pciauth.uapi import ioctls
        from pciauth.uapi import sys as usys

        return usys.ioctl(self.fd, getattr(ioctls, name), arg)

    def errno_of(self, name: str, arg) -> int:
        """0 when the ioctl succeeds, else its errno."""
        try:
            self.ioctl(name, arg)
            return 0
        except OSError as exc:
            return exc.errno or -1

    def ioas_alloc(self) -> int:
        from pciauth.uapi.structs import new

        cmd = new("iommu_ioas_alloc")
        self.ioctl("IOMMU_IOAS_ALLOC", cmd)
        return int(cmd.out_ioas_id)

    def mock_domain(self, ioas: int) -> tuple[int, int, int]:
        from pciauth.uapi import ioctls
        from pciauth.uapi.structs import new

        cmd = new("iommu_test_cmd", op=ioctls.IOMMU_TEST_OP_MOCK_DOMAIN, id=ioas)
        try:
            self.ioctl("IOMMU_TEST_CMD", cmd)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP):
                raise Skip(f"IOMMU_TEST_CMD unsupported ({exc}): kernel without CONFIG_IOMMUFD_TEST") from None
            real = _real_iommus()
            if exc.errno == errno.EINVAL and real:
                # 6.12 probes the mock device with the first registered IOMMU's ops, so with a
                # real (v)IOMMU driver present the mock device gets no group and binding fails.
                raise Skip(f"IOMMU_TEST_OP_MOCK_DOMAIN gave EINVAL with a real IOMMU registered "
                           f"({', '.join(real)}): the 6.12 mock IOMMU only works alone; "
                           "these checks run in the variant without a vIOMMU") from None
            raise
        md = cmd.mock_domain
        return int(md.out_stdev_id), int(md.out_hwpt_id), int(md.out_idev_id)

    def ranges(self, ioas: int) -> list[tuple[int, int]]:
        from pciauth.uapi.structs import addressof, new, new_array

        arr = new_array("struct iommu_iova_range", 16)
        cmd = new("iommu_ioas_iova_ranges", ioas_id=ioas, num_iovas=16)
        cmd.allowed_iovas = addressof(arr)
        self.ioctl("IOMMU_IOAS_IOVA_RANGES", cmd)
        n = int(cmd.num_iovas)
        expect(0 < n <= 16, f"IOMMU_IOAS_IOVA_RANGES returned {n} ranges")
        return [(int(arr[i].start), int(arr[i].last)) for i in range(n)]

    def map_cmd(self, ioas: int, vaddr: int, length: int, iova: int | None):
        from pciauth.uapi import ioctls
        from pciauth.uapi.structs import new

        flags = ioctls.IOMMU_IOAS_MAP_READABLE | ioctls.IOMMU_IOAS_MAP_WRITEABLE
        if iova is not None:
            flags |= ioctls.IOMMU_IOAS_MAP_FIXED_IOVA
        return new("iommu_ioas_map", flags=flags, ioas_id=ioas, user_va=vaddr, length=length,
                   iova=iova or 0)

    def map(self, ioas: int, vaddr: int, length: int, iova: int | None = None) -> int:
        cmd = self.map_cmd(ioas, vaddr, length, iova)
        self.ioctl("IOMMU_IOAS_MAP", cmd)
        return int(cmd.iova)

    def unmap(self, ioas: int, iova: int, length: int) -> int:
        from pciauth.uapi.structs import new

        cmd = new("iommu_ioas_unmap", ioas_id=ioas, iova=iova, length=length)
        self.ioctl("IOMMU_IOAS_UNMAP", cmd)
        return int(cmd.length)

    def allow(self, ioas: int, ranges: list[tuple[int, int]]) -> int:
        """IOMMU_IOAS_ALLOW_IOVAS; returns 0 or the errno."""
        from pciauth.uapi.structs import addressof, new, new_array

        arr = new_array("struct iommu_iova_range", max(len(ranges), 1))
        for i, (s, last) in enumerate(ranges):
            arr[i].start, arr[i].last = s, last
        cmd = new("iommu_ioas_allow_iovas", ioas_id=ioas, num_iovas=len(ranges))
        cmd.allowed_iovas = addressof(arr) if ranges else 0
        return self.errno_of("IOMMU_IOAS_ALLOW_IOVAS", cmd)

    def check_map(self, hwpt: int, iova: int, length: int, vaddr: int) -> int:
        """IOMMU_TEST_OP_MD_CHECK_MAP; 0 when the mock domain maps iova..+length to vaddr."""
        from pciauth.uapi import ioctls
        from pciauth.uapi.structs import new

        cmd = new("iommu_test_cmd", op=ioctls.IOMMU_TEST_OP_MD_CHECK_MAP, id=hwpt)
        cmd.check_map.iova, cmd.check_map.length, cmd.check_map.uptr = iova, length, vaddr
        return self.errno_of("IOMMU_TEST_CMD", cmd)

    def add_reserved(self, ioas: int, start: int, length: int) -> int:
        from pciauth.uapi import ioctls
        from pciauth.uapi.structs import new

        cmd = new("iommu_test_cmd", op=ioctls.IOMMU_TEST_OP_ADD_RESERVED, id=ioas)
        cmd.add_reserved.start, cmd.add_reserved.length = start, length
        return self.errno_of("IOMMU_TEST_CMD", cmd)

    def close(self) -> None:
        from pciauth.uapi import sys as usys

        usys.close(self.fd)


def _real_iommus() -> list[str]:
    try:
        names = os.listdir("/sys/class/iommu")
    except OSError:
        return []
    return sorted(n for n in names if "mock" not in n and "selftest" not in n)


def _buffer(n: int, seed: int):
    from pciauth.dma.buffer import DmaBuffer

    buf = DmaBuffer(n)
    buf.view[:n] = bytes((i + seed) & 0xFF for i in range(n))
    return buf


@check("iommufd_mock_map_unmap", variants=VARIANTS)
def mock_map_unmap() -> dict:
    fd = Iommufd()
    bufs = []
    try:
        ioas = fd.ioas_alloc()
        _stdev, hwpt, _idev = fd.mock_domain(ioas)
        ranges = fd.ranges(ioas)
        expect(ranges == [(MOCK_APERTURE_START, MOCK_APERTURE_LAST)],
               f"mock-domain IOAS ranges {[(hex(a), hex(b)) for a, b in ranges]} != the mock aperture")
        a, b = _buffer(4 * PAGE, 1), _buffer(4 * PAGE, 2)
        bufs += [a, b]
        iova = MOCK_APERTURE_START + 16 * PAGE
        expect(fd.map(ioas, a.vaddr, a.length, iova) == iova, "fixed-IOVA map moved")
        expect(fd.check_map(hwpt, iova, a.length, a.vaddr) == 0,
               "MD_CHECK_MAP: the mock domain does not map the IOVA to the buffer")
        expect(fd.check_map(hwpt, iova, a.length, b.vaddr) != 0,
               "MD_CHECK_MAP accepted the wrong user pages")
        clash = fd.errno_of("IOMMU_IOAS_MAP", fd.map_cmd(ioas, b.vaddr, b.length, iova + PAGE))
        expect(clash == errno.EEXIST, f"overlapping fixed map gave errno {clash}, want EEXIST")
        below = fd.errno_of("IOMMU_IOAS_MAP", fd.map_cmd(ioas, b.vaddr, b.length, PAGE))
        expect(below != 0, "a map below the mock aperture succeeded")
        auto = fd.map(ioas, b.vaddr, b.length)
        expect(MOCK_APERTURE_START <= auto <= MOCK_APERTURE_LAST, f"auto IOVA 0x{auto:x} outside the aperture")
        expect(fd.check_map(hwpt, auto, b.length, b.vaddr) == 0, "auto-IOVA map missing in the mock domain")
        expect(fd.unmap(ioas, iova, a.length) == a.length, "unmap length wrong")
        expect(fd.check_map(hwpt, iova, a.length, a.vaddr) != 0, "unmapped IOVA still mapped in the mock domain")
        partial = fd.errno_of("IOMMU_IOAS_UNMAP", _unmap_cmd(ioas, auto + PAGE, PAGE))
        expect(partial != 0, "unmapping part of a mapping succeeded (iommufd never splits)")
        return {"ioas": ioas, "hwpt": hwpt, "auto_iova": hex(auto), "below_aperture_errno": below,
                "partial_unmap_errno": partial}
    finally:
        for buf in bufs:
            buf.close()
        fd.close()


def _unmap_cmd(ioas: int, iova: int, length: int):
    from pciauth.uapi.structs import new

    return new("iommu_ioas_unmap", ioas_id=ioas, iova=iova, length=length)


@check("iommufd_mock_window_rules", variants=VARIANTS)
def mock_windows() -> dict:
    """pciauth's threshold windows on the mock domain, and the kernel's allow/reserve rule."""
    from pciauth.dma.iova import IovaAllocator, Threshold, ThresholdChangeRefused
    from pciauth.errors import RefusedError

    fd = Iommufd()
    bufs = []
    try:
        ioas = fd.ioas_alloc()
        _stdev, hwpt, _idev = fd.mock_domain(ioas)
        alloc = IovaAllocator(fd.ranges(ioas), Threshold(256))  # X = 512 MiB
        x = 256 * (2 << 20)
        priv, shared = _buffer(2 * PAGE, 3), _buffer(2 * PAGE, 4)
        bufs += [priv, shared]
        p_iova = alloc.alloc(priv.length, private=True)
        s_iova = alloc.alloc(shared.length, private=False)
        expect(MOCK_APERTURE_START <= p_iova < x <= s_iova <= MOCK_APERTURE_LAST,
               f"windows wrong: private 0x{p_iova:x} shared 0x{s_iova:x} X 0x{x:x}")
        fd.map(ioas, priv.vaddr, priv.length, p_iova)
        fd.map(ioas, shared.vaddr, shared.length, s_iova)
        expect(fd.check_map(hwpt, p_iova, priv.length, priv.vaddr) == 0, "private mapping not in the domain")
        expect(fd.check_map(hwpt, s_iova, shared.length, shared.vaddr) == 0, "shared mapping not in the domain")
        for iova, private in ((x, True), (x - PAGE, False)):
            try:
                alloc.reserve(iova, PAGE, private=private)
                raise CheckFailed(f"{'private' if private else 'shared'} IOVA 0x{iova:x} accepted on the wrong side")
            except RefusedError:
                pass
        try:
            alloc.set_threshold(Threshold(128))
            raise CheckFailed("threshold change accepted with live mappings")
        except ThresholdChangeRefused:
            pass
        # Kernel-chosen IOVAs stay in the allowed (shared) window.
        expect(fd.allow(ioas, alloc.window_ranges(False)) == 0, "ALLOW_IOVAS of the shared window failed")
        extra = _buffer(PAGE, 5)
        bufs.append(extra)
        auto = fd.map(ioas, extra.vaddr, extra.length)
        expect(x <= auto <= MOCK_APERTURE_LAST, f"kernel chose 0x{auto:x} outside the allowed shared window")
        # The kernel refuses to reserve IOVA inside an allowed window (EADDRINUSE)...
        busy = fd.add_reserved(ioas, x + (64 << 20), PAGE)
        expect(busy == errno.EADDRINUSE, f"reserving inside the allowed window gave errno {busy}")
        # ...and reserving in the private window (not allowed, unmapped) works.
        free_priv = p_iova + (64 << 20)
        expect(fd.add_reserved(ioas, free_priv, PAGE) == 0, "reserving an unused private IOVA failed")
        for iova, buf in ((p_iova, priv), (s_iova, shared), (auto, extra)):
            fd.unmap(ioas, iova, buf.length)
        alloc.free(p_iova)
        alloc.free(s_iova)
        alloc.set_threshold(Threshold(128))
        return {"x": hex(x), "private": hex(p_iova), "shared": hex(s_iova), "kernel_chosen": hex(auto)}
    finally:
        for buf in bufs:
            buf.close()
        fd.close()
