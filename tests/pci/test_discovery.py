import json
import os
import struct

import pytest
from fakesysfs import ConfigImage

from pciauth.cli import main
from pciauth.errors import DeviceNotFound, UsageError
from pciauth.pci import sysfs
from pciauth.pci.select import find_device, list_devices


def nvme_config():
    img = ConfigImage(vendor=0x1B36, device=0x0010, class_code=0x010802, revision=2)
    img.add_cap(0x40, 0x01, b"\x03\x00\x00\x00").add_cap(0x50, 0x11, b"\x3f\x00").add_cap(0x60, 0x10, b"\x02\x00")
    img.add_ext_cap(0x100, 0x2E, 1).add_ext_cap(0x140, 0x03, 1, struct.pack("<Q", 0xABCDEF0123456789))
    return img


@pytest.fixture
def tree(fake_sysfs):
    fake_sysfs.add_device("0000:00:00.0", vendor=0x8086, device=0x29C0, class_code=0x060000)
    fake_sysfs.add_device("0000:00:03.0", vendor=0x1B36, device=0x0010, class_code=0x010802, revision=2,
                          driver="nvme", iommu_group=3, numa_node=0, config=nvme_config(),
                          doe_features=["0001:00", "0001:01", "0001:02"])
    fake_sysfs.add_device("0000:00:04.0", vendor=0x1234, device=0x11E8, class_code=0x00FF00,
                          driver="vfio-pci", iommu_group=4, vfio_cdev="vfio0")
    fake_sysfs.add_device("0001:3a:00.1", vendor=0x1AF4, device=0x1000, class_code=0x020000, iommu_group=9)
    return fake_sysfs


def test_list_devices_reads_every_field(tree):
    devs = {d.name: d for d in list_devices()}
    assert sorted(devs) == ["0000:00:00.0", "0000:00:03.0", "0000:00:04.0", "0001:3a:00.1"]
    nvme = devs["0000:00:03.0"]
    assert (nvme.vendor, nvme.device, nvme.class_code, nvme.revision) == (0x1B36, 0x0010, 0x010802, 2)
    assert nvme.driver == "nvme" and nvme.iommu_group == 3 and nvme.numa_node == 0
    assert [(m.offset, m.version) for m in nvme.doe_mailboxes] == [(0x100, 1)]
    assert nvme.doe_protocols() == ["discovery", "cma-spdm", "secured-cma-spdm"]
    assert nvme.identity().serial == 0xABCDEF0123456789
    edu = devs["0000:00:04.0"]
    assert edu.vfio_cdev == "vfio0" and edu.driver == "vfio-pci"
    assert devs["0000:00:00.0"].iommu_group is None and devs["0000:00:00.0"].driver is None


def test_selectors(tree):
    assert [d.name for d in list_devices(slot="00:")] == ["0000:00:00.0", "0000:00:03.0", "0000:00:04.0"]
    assert [d.name for d in list_devices(slot="0001::")] == ["0001:3a:00.1"]
    assert [d.name for d in list_devices(ids="1234:11e8")] == ["0000:00:04.0"]
    assert [d.name for d in list_devices(ids="::0108")] == ["0000:00:03.0"]
    assert find_device("0:3.0").name == "0000:00:03.0"
    assert find_device("1:3a:0.1").name == "0001:3a:00.1"
    assert find_device("d:1b36:0010").name == "0000:00:03.0"
    assert find_device(".1").name == "0001:3a:00.1"
    with pytest.raises(UsageError, match="matches 3 devices"):
        find_device("00:")
    with pytest.raises(DeviceNotFound):
        find_device("00:09.0")
    with pytest.raises(DeviceNotFound):
        find_device("d:dead:beef")


def test_missing_attribute_files(fake_sysfs):
    fake_sysfs.add_device("0000:00:05.0", write_attrs=False, config=b"")
    (dev,) = list_devices()
    d = dev.to_dict()
    assert d["vendor"] is None and d["iommu_group"] is None and d["doe_mailboxes"] == []


def test_truncated_config_and_garbage_attrs(fake_sysfs):
    path = fake_sysfs.add_device("0000:00:06.0", config=nvme_config().bytes()[:0x120])
    with open(os.path.join(path, "vendor"), "w") as f:
        f.write("not-hex\n")
    (dev,) = list_devices()
    assert dev.vendor is None
    assert [m.offset for m in dev.doe_mailboxes] == [0x100]  # DOE header still inside 0x120 bytes
    dev.extended_capabilities()  # the DSN at 0x140 is cut off: a warning, not a crash
    assert "past the end" in dev.extended_capabilities().warnings[0]


def test_hostile_capability_loop_in_listing(fake_sysfs, capsys):
    img = ConfigImage().add_cap(0x40, 0x01).set_std_next(0x40, 0x40)
    img.add_ext_cap(0x100, 0x2E).set_ext_next(0x100, 0x100)
    fake_sysfs.add_device("0000:00:07.0", config=img)
    assert main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["devices"][0]["doe_mailboxes"] == [{"offset": 0x100, "version": 1}]
    assert main(["show", "00:07.0", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["device"]
    assert any("loops" in w for w in shown["warnings"])


def test_non_pci_entries_are_ignored(fake_sysfs):
    os.makedirs(os.path.join(fake_sysfs.devices_dir, "garbage"))
    fake_sysfs.add_device("0000:00:01.0")
    assert [d.name for d in list_devices()] == ["0000:00:01.0"]


def test_sysfs_root_parameter_overrides_env(fake_sysfs, tmp_path):
    assert sysfs.sysfs_root() == fake_sysfs.root
    assert sysfs.sysfs_root(str(tmp_path)) == str(tmp_path)
    assert list_devices(str(tmp_path / "nowhere")) == []


def test_real_host_enumeration_matches_sysfs(monkeypatch):
    """On this machine udev and the plain listing agree (the host has virtio devices)."""
    monkeypatch.delenv("PCIAUTH_SYSFS_ROOT", raising=False)
    listed = sorted(os.listdir("/sys/bus/pci/devices")) if os.path.isdir("/sys/bus/pci/devices") else []
    if not listed:
        pytest.skip("this machine has no PCI devices in /sys")
    assert [d.name for d in list_devices()] == listed
    for d in list_devices():
        with open(f"/sys/bus/pci/devices/{d.name}/vendor") as f:
            assert d.vendor == int(f.read(), 16)
