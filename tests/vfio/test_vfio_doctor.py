"""``pciauth doctor`` against fake host trees: each finding, its status and its fix."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from pciauth.vfio.doctor import HostPaths, diagnose, format_report


def mk(path, text: str = "") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A fake host: empty /sys, /proc, /dev, /lib/modules, /boot."""
    for d in ("sys", "proc", "dev", "modules/6.1.0-test", "boot"):
        (tmp_path / d).mkdir(parents=True)
    mk(tmp_path / "proc" / "cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n")
    mk(tmp_path / "proc" / "cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\n")
    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(tmp_path / "run"))

    def paths(**kw) -> HostPaths:
        base = dict(
            sys=str(tmp_path / "sys"),
            proc=str(tmp_path / "proc"),
            dev=str(tmp_path / "dev"),
            boot=str(tmp_path / "boot"),
            modules=str(tmp_path / "modules"),
            release="6.1.0-test",
            euid=0,
            memlock=8 << 20,
        )
        base.update(kw)
        return HostPaths(**base)

    paths.root = tmp_path
    return paths


def findings(report: dict) -> dict:
    return {f["check"]: f for f in report["findings"]}


def make_ready_legacy(root) -> None:
    """A Debian 12 lab machine: IOMMU on, vfio-pci loaded, no iommufd."""
    for g in ("0", "1", "7"):
        (root / "sys/kernel/iommu_groups" / g / "devices").mkdir(parents=True)
    (root / "sys/class/iommu/dmar0").mkdir(parents=True)
    (root / "sys/bus/pci/drivers/vfio-pci").mkdir(parents=True)
    (root / "sys/module/vfio_iommu_type1").mkdir(parents=True)
    mk(root / "dev/vfio/vfio")
    mk(root / "proc/cmdline", "root=/dev/sda1 intel_iommu=on iommu=pt\n")
    mk(root / "boot/config-6.1.0-test", "CONFIG_VFIO=m\nCONFIG_VFIO_PCI=m\n# CONFIG_IOMMUFD is not set\n")


def test_bare_host_says_exactly_what_is_missing(host) -> None:
    report = diagnose(host())
    f = findings(report)
    assert not report["ok"] and report["ready"] == {"legacy": False, "iommufd": False}
    assert f["iommu"]["status"] == "fail" and "intel_iommu=on" in f["iommu"]["fix"]
    assert f["vfio-pci"]["status"] == "fail" and "modprobe vfio-pci" in f["vfio-pci"]["fix"]
    assert f["vfio-legacy"]["status"] == "fail"
    assert f["iommufd"]["status"] == "warn"
    assert f["cmdline"]["status"] == "info" and "intel_iommu=on" in f["cmdline"]["fix"]
    text = format_report(report)
    assert "[FAIL] iommu:" in text and "fix: enable VT-d" in text
    assert "VFIO is not usable on this host" in text


def test_amd_fix_is_about_amd(host) -> None:
    mk(host.root / "proc/cpuinfo", "vendor_id\t: AuthenticAMD\n")
    f = findings(diagnose(host()))
    assert "AMD-Vi" in f["iommu"]["fix"]


def test_debian_legacy_only_host(host) -> None:
    make_ready_legacy(host.root)
    report = diagnose(host())
    f = findings(report)
    assert report["ok"] and report["ready"] == {"legacy": True, "iommufd": False}
    assert f["iommu"]["summary"].startswith("IOMMU enabled: 3 IOMMU groups (dmar0)")
    assert f["cmdline"]["status"] == "ok" and "intel_iommu=on" in f["cmdline"]["summary"]
    assert f["iommufd"]["status"] == "warn" and "CONFIG_IOMMUFD not set" in f["iommufd"]["summary"]
    assert "VFIO backends ready: legacy" in format_report(report)


def test_iommufd_host(host) -> None:
    make_ready_legacy(host.root)
    mk(host.root / "dev/iommu")
    (host.root / "dev/vfio/devices").mkdir()
    report = diagnose(host())
    assert report["ready"] == {"legacy": True, "iommufd": True}


def test_module_available_but_not_loaded(host) -> None:
    mk(
        host.root / "modules/6.1.0-test/modules.dep",
        "kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/vfio.ko.xz\n"
        "kernel/drivers/iommu/iommufd/iommufd.ko.xz:\n",
    )
    f = findings(diagnose(host()))
    assert f["vfio-pci"]["summary"] == "vfio-pci is not loaded"
    assert f["iommufd"]["summary"].startswith("iommufd is not loaded")
    assert f["iommufd"]["fix"] == "`sudo modprobe iommufd`"


def test_kernel_without_vfio_from_proc_config(host) -> None:
    with gzip.open(host.root / "proc/config.gz", "wt") as g:
        g.write("# CONFIG_VFIO is not set\n# CONFIG_VFIO_PCI is not set\n")
    mk(host.root / "proc/cmdline", "console=ttyS0 nomodule\n")
    f = findings(diagnose(host()))
    assert "CONFIG_VFIO_PCI not set" in f["vfio-pci"]["summary"]
    assert "CONFIG_VFIO not set" in f["vfio-legacy"]["summary"]


def test_nomodule_is_mentioned_in_modprobe_fixes(host) -> None:
    mk(host.root / "proc/cmdline", "console=ttyS0 nomodule\n")
    f = findings(diagnose(host()))
    assert "nomodule" in f["vfio-pci"]["fix"]


def test_iommu_off_on_cmdline(host) -> None:
    mk(host.root / "proc/cmdline", "root=/dev/sda intel_iommu=off\n")
    f = findings(diagnose(host()))
    assert f["cmdline"]["status"] == "fail" and "intel_iommu=off" in f["cmdline"]["fix"]


def test_virtio_iommu_without_unsafe_interrupts(host) -> None:
    make_ready_legacy(host.root)
    (host.root / "sys/bus/virtio/drivers/virtio_iommu/virtio0").mkdir(parents=True)
    mk(host.root / "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "N\n")
    report = diagnose(host())
    f = findings(report)
    assert f["interrupts"]["status"] == "fail"
    assert "vfio_iommu_type1.allow_unsafe_interrupts=1" in f["interrupts"]["fix"]
    assert not report["ready"]["legacy"]
    mk(host.root / "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y\n")
    assert findings(diagnose(host()))["interrupts"]["status"] == "ok"


@pytest.mark.parametrize(
    ("content", "status"),
    [("[none] integrity confidentiality\n", "ok"), ("none [integrity] confidentiality\n", "warn")],
)
def test_lockdown(host, content: str, status: str) -> None:
    mk(host.root / "sys/kernel/security/lockdown", content)
    f = findings(diagnose(host()))["lockdown"]
    assert f["status"] == status
    if status == "warn":
        assert "integrity" in f["summary"] and "VFIO config region" in f["fix"]


def test_memlock_for_non_root(host) -> None:
    f = findings(diagnose(host(euid=1000, memlock=8 << 20)))
    assert f["memlock"]["status"] == "warn" and "ulimit -l" in f["memlock"]["fix"]
    assert f["root"]["status"] == "warn" and "sudo" in f["root"]["fix"]
    assert findings(diagnose(host(euid=1000, memlock=1 << 30)))["memlock"]["status"] == "ok"


def test_hugepages(host) -> None:
    base = host.root / "sys/kernel/mm/hugepages/hugepages-2048kB"
    mk(base / "nr_hugepages", "0\n")
    mk(base / "free_hugepages", "0\n")
    f = findings(diagnose(host()))["hugepages"]
    assert f["status"] == "info" and "nr_hugepages" in f["fix"]
    mk(base / "nr_hugepages", "64\n")
    mk(base / "free_hugepages", "60\n")
    assert findings(diagnose(host()))["hugepages"]["summary"] == "60 of 64 2 MiB hugepages free"


def test_stale_journal_entry_is_reported(host) -> None:
    from pciauth.vfio.journal import Journal, JournalEntry

    Journal().write(JournalEntry("0000:01:00.0", "/sys", "nvme", None, pid=2**22 + 7, pid_start=None))
    f = findings(diagnose(host()))["journal"]
    assert f["status"] == "warn" and "0000:01:00.0" in f["summary"] and "pciauth restore" in f["fix"]


def test_each_host_file_is_read_once_per_diagnosis(host, monkeypatch) -> None:
    """The command line, cpuinfo and the journal are looked at by several checks: one read each."""
    from pciauth.vfio.journal import Journal, JournalEntry

    Journal().write(JournalEntry("0000:01:00.0", "/sys", "nvme", None, pid=2**22 + 7, pid_start=None))
    Journal().write(JournalEntry("0000:02:00.0", "/sys", "nvme", None, pid=os.getpid(), pid_start=None))
    mk(host.root / "proc/cmdline", "root=/dev/sda1 intel_iommu=on iommu=pt nomodule\n")
    reads: list[str] = []
    real_open, real_entries = open, Journal.entries

    def counting_open(path, *a, **kw):
        reads.append(os.path.basename(str(path)))
        return real_open(path, *a, **kw)

    def counting_entries(self):
        reads.append("journal")
        return real_entries(self)

    monkeypatch.setattr("builtins.open", counting_open)
    monkeypatch.setattr(Journal, "entries", counting_entries)
    f = findings(diagnose(host()))
    assert f["cmdline"]["status"] == "ok" and "intel_iommu=on iommu=pt" in f["cmdline"]["summary"]
    assert "nomodule" in f["vfio-pci"]["fix"]
    assert f["journal"]["status"] == "warn" and f["journal"]["summary"].endswith("0000:01:00.0")
    assert reads.count("cmdline") == 1, reads
    assert reads.count("cpuinfo") == 1, reads
    assert reads.count("journal") == 1, reads


def test_cli_json_and_exit_code(tmp_path) -> None:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(
        os.environ, PYTHONPATH=repo, PCIAUTH_SYSFS_ROOT=str(tmp_path), PCIAUTH_RUN_DIR=str(tmp_path / "r")
    )
    out = subprocess.run(
        [sys.executable, "-m", "pciauth", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert out.returncode == 7 and report["ok"] is False  # an empty sysfs: no IOMMU, no vfio-pci
    assert {f["check"] for f in report["findings"]} >= {"iommu", "vfio-pci", "iommufd", "lockdown", "memlock"}
    for f in report["findings"]:
        assert set(f) == {"check", "status", "summary", "fix"}
        assert f["status"] in ("ok", "info", "warn", "fail")
