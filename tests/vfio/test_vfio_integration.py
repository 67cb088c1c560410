"""Bind, open the backend, reach the device: the whole VFIO path on fakes.

A fake sysfs tree with a fake driver core (binding) plus the fake kernel (VFIO and iommufd
ioctls) stand in for the host; everything above them is pciauth's real code, the DMA
area's DmaBuffer included.
"""

from __future__ import annotations

import pytest
from fake_driver_core import BDF
from fake_vfio_kernel import FakeKernel, FakePciFunction

from pciauth.iommu import open_backend
from pciauth.pci.select import find_device
from pciauth.uapi import sys as usys
from pciauth.vfio import bind as vbind
from pciauth.vfio.device import VfioDevice


@pytest.mark.parametrize("kind", ["auto", "legacy"])
def test_bind_open_map_and_restore(env, core, kind: str) -> None:
    from pciauth.dma.buffer import DmaBuffer

    kernel = FakeKernel([FakePciFunction(bdf=BDF, group=3, cdev="vfio0")])
    with usys.use_kernel(kernel), vbind.bound(find_device(BDF), timeout=2) as binding:
        pdev = find_device(BDF)
        assert pdev.driver == "vfio-pci" and pdev.vfio_cdev == "vfio0" and binding.iommu_group == 3
        with VfioDevice.open(pdev, iommu=kind) as vdev:
            assert vdev.backend.name == ("iommufd" if kind == "auto" else "legacy")
            assert vdev.config.read16(0) == 0x1234
            buf = DmaBuffer(8192)
            iova = vdev.backend.map(buf)
            assert vdev.backend.iova_ranges()[0][0] <= iova
            vdev.bar(0).write32(0x80, iova)
            assert vdev.bar(0).read32(0x80) == iova
        buf.close()  # after the backend unmapped it
        assert kernel.open_fds == 0 and kernel.pinned == 0
    assert env.driver(BDF) == "nvme"


def test_group_not_viable_names_the_member_from_sysfs(env, core) -> None:
    env.add_device("0000:01:00.1", driver="snd_hda_intel", group=3)
    kernel = FakeKernel([FakePciFunction(bdf=BDF, group=3, viable=False)])
    env.link(BDF, "vfio-pci")  # bound by hand; the group is still not viable
    with usys.use_kernel(kernel), pytest.raises(Exception) as e:
        open_backend(find_device(BDF), "legacy")
    assert "0000:01:00.1 is bound to snd_hda_intel" in str(e.value)
    assert kernel.open_fds == 0
