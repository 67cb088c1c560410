"""The VM tier's own tooling, checked without booting: config checking, cache key, initramfs."""

from __future__ import annotations

import subprocess

import initramfs
import kernel
import pytest
import run as vmrun


def test_check_config_names_every_option_that_came_out_wrong():
    requested = kernel.parse_config("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_D=\"x\"\n")
    actual = kernel.parse_config("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n")
    wrong = kernel.check_config(requested, actual)
    assert wrong == ["CONFIG_B: wanted not set, got y", "CONFIG_C: wanted y, got not set"]


def test_check_config_treats_absent_as_not_set():
    requested = kernel.parse_config("# CONFIG_DRM is not set\nCONFIG_VFIO=y\n")
    assert kernel.check_config(requested, {"CONFIG_VFIO": "y"}) == []
    assert kernel.check_config(requested, {}) == ["CONFIG_VFIO: wanted y, got not set"]


def test_fragment_asks_for_what_the_tier_needs():
    frag = kernel.parse_config(kernel.FRAGMENT.read_text())
    for name in ("VFIO", "VFIO_PCI", "VFIO_GROUP", "VFIO_CONTAINER", "VFIO_IOMMU_TYPE1", "VFIO_DEVICE_CDEV",
                 "IOMMUFD", "IOMMUFD_TEST", "INTEL_IOMMU", "IRQ_REMAP", "VIRTIO_IOMMU", "PCI_DOE",
                 "CXL_BUS", "CXL_PCI", "BLK_DEV_NVME", "NET_9P_VIRTIO", "9P_FS"):
        assert frag.get(f"CONFIG_{name}") == "y", name
    for name in ("DRM", "SOUND", "USB_SUPPORT", "WLAN", "DEBUG_INFO"):
        assert frag[f"CONFIG_{name}"] is None, name


def test_cache_key_changes_with_source_and_fragment():
    a = kernel.cache_key("6.12.1", "CONFIG_A=y\n")
    assert a == kernel.cache_key("6.12.1", "CONFIG_A=y\n")
    assert a != kernel.cache_key("6.12.2", "CONFIG_A=y\n")
    assert a != kernel.cache_key("6.12.1", "CONFIG_A=n\n")


def test_initramfs_is_a_valid_newc_archive(tmp_path):
    try:
        busybox = initramfs.find_busybox().read_bytes()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    archive = tmp_path / "i.cpio"
    archive.write_bytes(initramfs.build_archive(busybox))
    listing = subprocess.run(["cpio", "-itv"], stdin=archive.open("rb"), capture_output=True, text=True)
    if listing.returncode != 0 and "not found" in listing.stderr:
        pytest.skip("cpio not installed")
    names = {line.split()[-1] for line in listing.stdout.splitlines() if line.strip()}
    assert {"init", "bin/busybox", "dev/console", "mnt/root"} <= names, listing.stdout
    console = [ln for ln in listing.stdout.splitlines() if ln.endswith("dev/console")][0]
    assert console.startswith("c") and "5," in console, console


def test_qemu_command_lines_per_machine(tmp_path):
    (tmp_path / "job").mkdir()
    common = dict(kernel=tmp_path / "k", initrd=tmp_path / "i", workdir=tmp_path, memory="1G", smp=1,
                  repo=vmrun.REPO, spdm_port=4321)
    intel = vmrun.build_qemu_cmd(machine="intel-iommu", devices=["edu", "nvme"], **common)
    assert "q35,kernel-irqchip=split" in intel and "intel-iommu,intremap=on" in intel
    assert "-accel" in intel and intel[intel.index("-accel") + 1] == "tcg"
    assert "intel_iommu=on" in intel[intel.index("-append") + 1]
    assert any("spdm_port=4321" in a for a in intel)
    virtio = vmrun.build_qemu_cmd(machine="virtio-iommu", devices=["cxl"], **common)
    assert "virtio-iommu-pci" in virtio
    assert "allow_unsafe_interrupts=1" in virtio[virtio.index("-append") + 1]
    assert any(a.startswith("q35") and "cxl=on" in a for a in virtio)
    with pytest.raises(vmrun.VmError):
        vmrun.build_qemu_cmd(machine="kvm", devices=[], **common)
    with pytest.raises(vmrun.VmError):
        vmrun.build_qemu_cmd(machine="none", devices=["gpu"], **common)


def test_host_responder_listens_then_stops(tmp_path):
    import socket
    import sys

    import responder

    if not (vmrun.REPO / "pciauth" / "cli" / "responder_cmd.py").exists():
        pytest.skip("`pciauth responder` missing (pciauth/cli/responder_cmd.py)")
    pki = tmp_path / "pki"
    subprocess.run([sys.executable, "-m", "pciauth", "pki", "init", str(pki), "--algorithms", "ecdsa-p256"],
                   check=True, cwd=vmrun.REPO, capture_output=True)
    with responder.host_responder(pki, log=tmp_path / "r.log") as port, \
            socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect(("127.0.0.1", port))


def test_host_responder_reports_a_responder_that_dies(tmp_path):
    import responder

    if not (vmrun.REPO / "pciauth" / "cli" / "responder_cmd.py").exists():
        pytest.skip("`pciauth responder` missing (pciauth/cli/responder_cmd.py)")
    with pytest.raises(responder.ResponderError, match="exited"), \
            responder.host_responder(tmp_path / "no-such-pki", timeout=60):
        pass


def test_run_vm_removes_its_work_directory_when_the_command_line_is_refused(tmp_path, monkeypatch):
    """An error before or while QEMU runs leaves no pciauth-vm-* directory behind."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(vmrun, "kernel_image", lambda: tmp_path / "bzImage")
    monkeypatch.setattr(vmrun, "qemu_available", lambda: True)
    monkeypatch.setattr(vmrun, "ensure_initramfs", lambda: tmp_path / "initramfs")
    with pytest.raises(vmrun.VmError, match="unknown device"):
        vmrun.run_vm("true", machine="none", devices=["gpu"])
    assert list(tmp_path.glob("pciauth-vm-*")) == []
