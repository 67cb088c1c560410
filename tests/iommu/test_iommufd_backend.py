"""The iommufd backend against the fake kernel (this host has no /dev/iommu)."""

from __future__ import annotations

import errno

import pytest
from fake_vfio_kernel import FakeKernel

from pciauth.errors import HostNotReady, IommuError, MalformedData, PermissionDeniedError, UsageError
from pciauth.iommu.iommufd import IommufdBackend
from pciauth.uapi import sys as usys

CDEV = "/dev/vfio/devices/vfio0"


def open_fd_backend() -> IommufdBackend:
    return IommufdBackend(CDEV, device="0000:01:00.0")


def test_setup_sequence_and_ranges(kernel: FakeKernel) -> None:
    with open_fd_backend() as be:
        assert kernel.calls == [
            "VFIO_DEVICE_BIND_IOMMUFD",
            "IOMMU_IOAS_ALLOC",
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            "IOMMU_IOAS_IOVA_RANGES",  # no room: EMSGSIZE with the count
            "IOMMU_IOAS_IOVA_RANGES",
        ]
        # The aperture minus the MSI hole the device reserves.
        assert be.iova_ranges() == [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 48) - 1)]
        assert be.iova_alignment == 4096
        assert be.hwpt_id != be.ioas_id
    assert kernel.open_fds == 0
    assert kernel.objects == {}


def test_fixed_and_kernel_chosen_map_and_unmap(kernel: FakeKernel, make_buf) -> None:
    a, b = make_buf(8192), make_buf(4096)
    with open_fd_backend() as be:
        assert be.map(a, 0x100000) == 0x100000
        chosen = be.map(b)
        assert chosen == 0  # the lowest free IOVA
        ioas = kernel.objects[be.ioas_id]
        assert ioas.maps[0x100000] == (8192, a.vaddr, 7)
        assert ioas.maps[0][2] == 6  # READABLE | WRITEABLE, not FIXED
        assert be.unmap(0x100000, 8192) == 8192
        assert 0x100000 not in ioas.maps
        assert [m.iova for m in be.mappings] == [0]
    assert kernel.pinned == 0


def test_read_only_mapping_flags(kernel: FakeKernel, buf) -> None:
    with open_fd_backend() as be:
        iova = be.map(buf, writable=False)
        assert kernel.objects[be.ioas_id].maps[iova][2] == 4


def test_allow_iovas_steers_kernel_choice(kernel: FakeKernel, buf) -> None:
    with open_fd_backend() as be:
        be.allow_iovas([(0x4000_0000, 0x7FFF_FFFF)])
        assert be.map(buf) == 0x4000_0000
        with pytest.raises(IommuError) as e:
            be.allow_iovas([(0xFEE00000, 0xFEEFFFFF)])  # the MSI hole: not in the IOAS ranges
        assert e.value.step == "IoasAllowIovas" and e.value.errno == errno.EINVAL


def test_unmap_length_mismatch_is_an_error(kernel: FakeKernel, buf) -> None:
    with open_fd_backend() as be:
        iova = be.map(buf)
        kernel.unmap_shortfall = 4096
        with pytest.raises(IommuError) as e:
            be.unmap(iova, buf.length)
        assert e.value.step == "IommuDmaUnmap"
        assert "kernel unmapped 0x3000" in str(e.value)
        kernel.unmap_shortfall = 0


def test_unmap_of_unknown_mapping_is_refused_before_the_kernel(kernel: FakeKernel, buf) -> None:
    with open_fd_backend() as be:
        iova = be.map(buf)
        calls = len(kernel.calls)
        with pytest.raises(UsageError):
            be.unmap(iova, 4096)  # part of a mapping
        with pytest.raises(UsageError):
            be.unmap(iova + 0x10000, buf.length)
        assert len(kernel.calls) == calls


def test_fixed_iova_overlap_refused(kernel: FakeKernel, make_buf) -> None:
    with open_fd_backend() as be:
        be.map(make_buf(8192), 0x10000)
        with pytest.raises(IommuError, match="overlaps"):
            be.map(make_buf(4096), 0x11000)


@pytest.mark.parametrize("iova", [0x1001, -4096, (1 << 64) - 4096])
def test_bad_fixed_iova_refused(kernel: FakeKernel, buf, iova: int) -> None:
    with open_fd_backend() as be, pytest.raises(UsageError):
        be.map(buf, iova)


def test_misaligned_buffer_refused(kernel: FakeKernel) -> None:
    class Odd:
        vaddr, length, view = 0x1000, 100, None

    with open_fd_backend() as be, pytest.raises(UsageError, match="page size"):
        be.map(Odd())


def test_memlock_enomem_names_the_limit(buf) -> None:
    k = FakeKernel(memlock=8192)
    with usys.use_kernel(k), open_fd_backend() as be:
        with pytest.raises(IommuError) as e:
            be.map(buf)  # 16 KiB > 8 KiB
        assert e.value.step == "IoasMap" and e.value.errno == errno.ENOMEM
        assert "RLIMIT_MEMLOCK" in e.value.hint and "ulimit -l" in e.value.hint
        assert "16 KiB" in e.value.hint


def test_close_releases_everything_in_reverse(kernel: FakeKernel, make_buf) -> None:
    be = open_fd_backend()
    iovas = [be.map(make_buf(4096)) for _ in range(3)]
    kernel.calls.clear()
    be.close()
    assert kernel.calls == [
        "IOMMU_IOAS_UNMAP",
        "IOMMU_IOAS_UNMAP",
        "IOMMU_IOAS_UNMAP",
        "VFIO_DEVICE_DETACH_IOMMUFD_PT",
        "IOMMU_DESTROY",
    ]
    assert kernel.open_fds == 0 and kernel.objects == {} and kernel.pinned == 0
    assert iovas == [0, 4096, 8192]
    be.close()  # idempotent
    with pytest.raises(IommuError, match="closed"):
        be.iova_ranges()


def test_close_keeps_releasing_after_a_failure(kernel: FakeKernel, buf) -> None:
    be = open_fd_backend()
    be.map(buf)
    kernel.fail["IOMMU_IOAS_UNMAP"] = errno.EIO
    with pytest.raises(IommuError):
        be.close()
    assert kernel.open_fds == 0


def test_failure_midway_releases_what_was_set_up(kernel: FakeKernel) -> None:
    kernel.fail["VFIO_DEVICE_ATTACH_IOMMUFD_PT"] = errno.EPERM
    with pytest.raises(IommuError) as e:
        open_fd_backend()
    assert e.value.step == "DeviceAttachIommufdPt"
    assert "DeviceAttachIommufdPt failed" in str(e.value) and "EPERM" in str(e.value)
    assert kernel.open_fds == 0
    assert kernel.objects == {}  # the IOAS was destroyed


def test_eperm_on_attach_under_virtio_iommu_names_the_parameters(kernel, tmp_path, monkeypatch) -> None:
    (tmp_path / "bus/virtio/drivers/virtio_iommu/virtio0").mkdir(parents=True)
    monkeypatch.setenv("PCIAUTH_SYSFS_ROOT", str(tmp_path))
    kernel.fail["VFIO_DEVICE_ATTACH_IOMMUFD_PT"] = errno.EPERM
    with pytest.raises(IommuError) as e:
        open_fd_backend()
    assert "iommufd.allow_unsafe_interrupts=1" in e.value.hint
    assert "vfio_iommu_type1.allow_unsafe_interrupts=1" in e.value.hint


def test_missing_dev_iommu_points_to_doctor() -> None:
    with usys.use_kernel(FakeKernel(iommufd=False)), pytest.raises(HostNotReady) as e:
        open_fd_backend()
    assert e.value.step == "OpenIommufd" and "pciauth doctor" in e.value.hint


def test_permission_denied_on_open(kernel: FakeKernel, monkeypatch) -> None:
    def deny(path, flags):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(kernel, "open", deny)
    with pytest.raises(PermissionDeniedError) as e:
        open_fd_backend()
    assert "sudo" in e.value.hint


def test_iova_ranges_count_is_bounded(kernel: FakeKernel, monkeypatch) -> None:
    real = kernel._iommu_ioas_iova_ranges

    def huge(fd, r):
        r.num_iovas = 1 << 30
        raise OSError(errno.EMSGSIZE, "too big")

    monkeypatch.setattr(kernel, "_iommu_ioas_iova_ranges", huge)
    with pytest.raises(MalformedData) as e:
        open_fd_backend()
    assert e.value.field == "num_iovas"
    assert kernel.open_fds == 0
    monkeypatch.setattr(kernel, "_iommu_ioas_iova_ranges", real)


def test_iova_range_ending_before_start_rejected(kernel: FakeKernel, monkeypatch) -> None:
    monkeypatch.setattr(kernel, "aperture", (0x2000, 0x1000))
    with pytest.raises(MalformedData) as e:
        open_fd_backend()
    assert e.value.field == "iova_ranges"


def test_e2big_on_unknown_nonzero_bytes(kernel: FakeKernel) -> None:
    # A kernel that knows only 24 bytes of iommu_hw_info (6.6 knew 32): pciauth's zeroed
    # 40-byte struct passes; a non-zero byte past what the kernel knows is refused.
    kernel.known_size["IOMMU_GET_HW_INFO"] = 24
    with open_fd_backend() as be:
        info = be.hw_info()
        assert info["name"] == "intel-vtd" and info["max_pasid_log2"] == 20
        from pciauth.uapi import ioctls
        from pciauth.uapi.structs import new

        h = new("iommu_hw_info", dev_id=be.dev_id)
        h.out_capabilities = 1
        with pytest.raises(OSError) as e:
            usys.ioctl(be.iommufd, ioctls.IOMMU_GET_HW_INFO, h)
        assert e.value.errno == errno.E2BIG


def test_short_struct_is_einval(kernel: FakeKernel) -> None:
    from pciauth.uapi import ioctls
    from pciauth.uapi.structs import new

    with open_fd_backend() as be:
        m = new("iommu_ioas_map", ioas_id=be.ioas_id)
        m.size = 16
        with pytest.raises(OSError) as e:
            usys.ioctl(be.iommufd, ioctls.IOMMU_IOAS_MAP, m)
        assert e.value.errno == errno.EINVAL
