"""VfioDevice (regions, config space, BARs) and open_backend, against the fake kernel."""

from __future__ import annotations

import errno
import struct

import pytest
from fake_vfio_kernel import FakeKernel, FakePciFunction, FakeRegion

from pciauth.errors import ConfigSpaceError, DeviceError, HostNotReady, NotFoundError, UsageError, VfioError
from pciauth.iommu import choose_kind, open_backend
from pciauth.iommu.iommufd import IommufdBackend
from pciauth.iommu.legacy import LegacyBackend
from pciauth.uapi import ioctls
from pciauth.uapi import sys as usys
from pciauth.vfio.device import VfioDevice

BDF = "0000:01:00.0"


class FakePci:
    """The few PciDevice attributes open_backend reads."""

    def __init__(self, cdev: str | None = "vfio0", group: int | None = 7) -> None:
        self.name = BDF
        self.vfio_cdev = cdev
        self.iommu_group = group
        self.sysfs_path = "/nonexistent"


@pytest.fixture(params=["iommufd", "legacy"])
def vdev(request, kernel: FakeKernel):
    with VfioDevice.open(FakePci(), iommu=request.param) as d:
        yield d


def test_choose_kind_auto(kernel: FakeKernel) -> None:
    assert choose_kind(FakePci()) == "iommufd"
    assert choose_kind(FakePci(cdev=None)) == "legacy"
    with usys.use_kernel(FakeKernel(iommufd=False)):
        assert choose_kind(FakePci()) == "legacy"


def test_forcing_iommufd_without_it_explains(kernel: FakeKernel) -> None:
    with pytest.raises(HostNotReady) as e:
        choose_kind(FakePci(cdev=None), "iommufd")
    assert "VFIO cdev" in str(e.value) and "--iommu legacy" in e.value.hint
    with pytest.raises(UsageError):
        choose_kind(FakePci(), "bogus")


def test_open_backend_kinds(kernel: FakeKernel) -> None:
    with open_backend(FakePci()) as be:
        assert isinstance(be, IommufdBackend)
    with open_backend(FakePci(), "legacy") as be:
        assert isinstance(be, LegacyBackend)
    assert kernel.open_fds == 0


def test_legacy_without_group(kernel: FakeKernel) -> None:
    with pytest.raises(HostNotReady, match="no IOMMU group"):
        open_backend(FakePci(cdev=None, group=None))


def test_config_space_through_region_7(vdev: VfioDevice, kernel: FakeKernel) -> None:
    cfg = vdev.config
    assert cfg.size == 4096
    assert cfg.read16(0) == 0x1234 and cfg.read16(2) == 0x11E8
    assert cfg.read32(0) == 0x11E81234
    cfg.write32(0x100, 0xDEADBEEF)
    region = kernel.functions[BDF].regions[ioctls.VFIO_PCI_CONFIG_REGION_INDEX]
    assert region.data[0x100:0x104] == struct.pack("<I", 0xDEADBEEF)
    assert cfg.read_bytes(0x100, 4) == struct.pack("<I", 0xDEADBEEF)
    with pytest.raises(ConfigSpaceError):
        cfg.read32(4096)
    with pytest.raises(ConfigSpaceError):
        cfg.read32(2)


def test_bar_mmap_widths(vdev: VfioDevice, kernel: FakeKernel) -> None:
    bar = vdev.bar(0)
    assert bar.mapped and bar.size == 1 << 20
    bar.write64(0x80, 0x1122334455667788)
    assert bar.read32(0x80) == 0x55667788 and bar.read32(0x84) == 0x11223344
    assert bar.read16(0x86) == 0x1122 and bar.read8(0x87) == 0x11
    bar.write(0x90, 4, 0x1_0000_0005)  # truncated to the width
    assert bar.read(0x90, 4) == 5
    data = kernel.functions[BDF].regions[0].data
    assert data[0x80:0x88] == struct.pack("<Q", 0x1122334455667788)
    for off, width in ((0x81, 4), (1 << 20, 1), (-4, 4)):
        with pytest.raises(DeviceError):
            bar.read(off, width)
    with pytest.raises(UsageError):
        bar.read(0, 3)


def test_bar_without_mmap_uses_pread(kernel: FakeKernel) -> None:
    fn = kernel.functions[BDF]
    fn.regions[2] = FakeRegion(4096)  # read/write, no MMAP flag
    with VfioDevice.open(FakePci(), iommu="legacy") as d:
        bar = d.bar(2)
        assert not bar.mapped
        bar.write32(0x10, 0xCAFEF00D)
        assert fn.regions[2].data[0x10:0x14] == struct.pack("<I", 0xCAFEF00D)
        assert bar.read64(0x10) == 0xCAFEF00D


def test_missing_bar_and_bad_index(vdev: VfioDevice) -> None:
    with pytest.raises(NotFoundError):
        vdev.bar(3)
    with pytest.raises(UsageError):
        vdev.bar(6)
    with pytest.raises(UsageError):
        vdev.region_info(99)


def test_close_unmaps_bars_and_releases_backend(kernel: FakeKernel) -> None:
    d = VfioDevice.open(FakePci(), iommu="iommufd")
    d.bar(0)
    d.close()
    assert kernel.munmapped == 1 and kernel.open_fds == 0


def test_from_backend_does_not_close_the_backend(kernel: FakeKernel) -> None:
    be = open_backend(FakePci(), "legacy")
    d = VfioDevice.from_backend(be, FakePci())
    d.close()
    assert not be.closed
    be.close()
    assert kernel.open_fds == 0


def test_reset(vdev: VfioDevice, kernel: FakeKernel) -> None:
    vdev.reset()
    assert kernel.calls[-1] == "VFIO_DEVICE_RESET"


def test_region_info_failure_is_named(vdev: VfioDevice, kernel: FakeKernel) -> None:
    kernel.fail["VFIO_DEVICE_GET_REGION_INFO"] = errno.EIO
    with pytest.raises(VfioError) as e:
        vdev.bar(0)
    assert e.value.step == "DeviceGetRegionInfo"


def test_not_a_pci_device(kernel: FakeKernel, monkeypatch) -> None:
    from pciauth.uapi.structs import ffi

    def info(fd, arg):
        p = ffi.cast("struct vfio_device_info *", arg)
        p.flags, p.num_regions = 0, 9
        return 0

    monkeypatch.setattr(kernel, "_vfio_device_get_info", info)
    with pytest.raises(VfioError, match="not a VFIO PCI device"):
        VfioDevice.open(FakePci(), iommu="legacy")
    assert kernel.open_fds == 0


def test_unbound_cdev_refuses_device_ioctls() -> None:
    # A cdev must be bound to an iommufd before its regions are usable (kernel rule).
    k = FakeKernel([FakePciFunction()])
    with usys.use_kernel(k):
        fd = usys.open("/dev/vfio/devices/vfio0")
        with pytest.raises(OSError):
            usys.pread(fd, 4, 7 << 40)
        usys.close(fd)
