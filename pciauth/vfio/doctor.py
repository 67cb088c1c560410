"""``pciauth doctor``: what this host has and lacks for VFIO, iommufd and DMA, with fixes.

Each check reads only files (sysfs, procfs, the kernel config and module lists); nothing is
changed. A finding has a status (``ok``, ``info``, ``warn``, ``fail``), one line that says
what was found, and the fix when something is missing. ``fail`` means binding or DMA
cannot work as the host stands; ``warn`` means a feature is missing or a limit is low.

Every path is injectable (:class:`HostPaths`), so tests run the checks against fake
trees; errors elsewhere in pciauth point here ("see `pciauth doctor`").
"""

from __future__ import annotations

import gzip
import os
import re
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

from pciauth.pci import sysfs

MiB = 1 << 20
#: Below this RLIMIT_MEMLOCK, a non-root user cannot pin a useful set of DMA buffers.
MEMLOCK_WANTED = 64 * MiB


@dataclass
class HostPaths:
    """Where the checks look. Defaults are the real host; tests point them at fake trees."""

    sys: str = field(default_factory=sysfs.sysfs_root)
    proc: str = field(default_factory=lambda: os.environ.get("PCIAUTH_PROC_ROOT") or "/proc")
    dev: str = field(default_factory=lambda: os.environ.get("PCIAUTH_DEV_ROOT") or "/dev")
    boot: str = "/boot"
    modules: str = "/lib/modules"
    release: str = field(default_factory=lambda: os.uname().release)
    euid: int = field(default_factory=os.geteuid)
    memlock: int | None = None  # None: ask getrlimit


@dataclass
class Finding:
    check: str
    status: str  # ok | info | warn | fail
    summary: str
    fix: str | None = None

    def to_dict(self) -> dict:
        return {"check": self.check, "status": self.status, "summary": self.summary, "fix": self.fix}


class Host:
    """Cached facts about the host, read from :class:`HostPaths`."""

    def __init__(self, paths: HostPaths) -> None:
        self.p = paths
        self._config: dict[str, str] | None = None
        self._modules: set[str] | None = None
        self._cmdline: list[str] | None = None
        self._cpu_vendor: tuple[str | None] | None = None  # a 1-tuple once read: None is a result

    def sys(self, *parts: str) -> str:
        return os.path.join(self.p.sys, *parts)

    def text(self, path: str) -> str | None:
        return sysfs.read_text(path)

    @property
    def cmdline(self) -> list[str]:
        """The kernel command line, read once (several checks look at its parameters)."""
        if self._cmdline is None:
            self._cmdline = (self.text(os.path.join(self.p.proc, "cmdline")) or "").split()
        return self._cmdline

    def param(self, name: str) -> str | None:
        """The value of ``name=`` on the kernel command line ("" for a bare flag)."""
        for word in self.cmdline:
            if word == "--":
                break
            key, _, value = word.partition("=")
            if key == name:
                return value
        return None

    @property
    def cpu_vendor(self) -> str | None:
        """``intel``, ``amd`` or None, from /proc/cpuinfo (read once)."""
        if self._cpu_vendor is None:
            self._cpu_vendor = (self._read_cpu_vendor(),)
        return self._cpu_vendor[0]

    def _read_cpu_vendor(self) -> str | None:
        try:
            with open(os.path.join(self.p.proc, "cpuinfo"), encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("vendor_id"):
                        return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(
                            line.partition(":")[2].strip()
                        )
        except OSError:
            pass
        return None

    @property
    def config(self) -> dict[str, str]:
        """The kernel config (/proc/config.gz or /boot/config-<release>); {} if unknown."""
        if self._config is None:
            self._config = {}
            raw = None
            try:
                with gzip.open(os.path.join(self.p.proc, "config.gz"), "rt", errors="replace") as f:
                    raw = f.read(4 * MiB)
            except OSError:
                try:
                    with open(os.path.join(self.p.boot, f"config-{self.p.release}"), errors="replace") as f:
                        raw = f.read(4 * MiB)
                except OSError:
                    raw = None
            for line in (raw or "").splitlines():
                m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
                if m:
                    self._config[m.group(1)] = m.group(2)
                m = re.match(r"^# (CONFIG_\w+) is not set", line)
                if m:
                    self._config[m.group(1)] = "n"
        return self._config

    def kconfig(self, name: str) -> str | None:
        """``y``, ``m``, ``n``, or None when the config is unknown."""
        if not self.config:
            return None
        return self.config.get(name, "n")

    @property
    def modules(self) -> set[str]:
        """Module names the running kernel can load or has built in (``_`` for ``-``)."""
        if self._modules is None:
            self._modules = set()
            base = os.path.join(self.p.modules, self.p.release)
            for name in ("modules.dep", "modules.builtin"):
                try:
                    with open(os.path.join(base, name), errors="replace") as f:
                        for line in f:
                            path = line.split(":", 1)[0].strip()
                            mod = os.path.basename(path).split(".ko", 1)[0]
                            self._modules.add(mod.replace("-", "_"))
                except OSError:
                    pass
        return self._modules

    def module_state(self, module: str, config: str) -> str:
        """``loaded``, ``available`` (modprobe can load it), ``absent`` or ``unknown``."""
        if os.path.isdir(self.sys("module", module)):
            return "loaded"
        if module in self.modules:
            return "available"
        state = self.kconfig(config)
        if state == "y":
            return "loaded"
        if state == "m":
            return "available"
        if state == "n":
            return "absent"
        return "unknown"

    @property
    def modprobe_blocked(self) -> bool:
        return self.param("nomodule") is not None


def _modprobe(host: Host, module: str) -> str:
    fix = f"`sudo modprobe {module}`"
    if host.modprobe_blocked:
        fix += " (this kernel was booted with `nomodule`: build it in or boot without that parameter)"
    return fix


# ---- the checks; each returns one Finding ----
def check_root(host: Host) -> Finding:
    if host.p.euid == 0:
        return Finding("root", "ok", "running as root")
    return Finding(
        "root",
        "warn",
        "not running as root: binding, VFIO and config space past 64 bytes need root",
        "run pciauth with sudo",
    )


def check_iommu_groups(host: Host) -> Finding:
    groups_dir = host.sys("kernel", "iommu_groups")
    groups = sysfs.list_dir(groups_dir)
    units = sysfs.list_dir(host.sys("class", "iommu"))
    if groups:
        where = f" ({', '.join(units[:4])}{' ...' if len(units) > 4 else ''})" if units else ""
        return Finding("iommu", "ok", f"IOMMU enabled: {len(groups)} IOMMU groups{where}")
    vendor = host.cpu_vendor
    if vendor == "intel":
        fix = "enable VT-d in the firmware and add `intel_iommu=on` to the kernel command line"
    elif vendor == "amd":
        fix = (
            "enable AMD-Vi (IOMMU) in the firmware; make sure the kernel command line has no `amd_iommu=off`"
        )
    else:
        fix = "enable the IOMMU in the firmware and the kernel (on a VM: add a vIOMMU such as intel-iommu)"
    return Finding(
        "iommu", "fail", f"no IOMMU groups in {groups_dir}: the IOMMU is off or absent", fix
    )


def check_cmdline(host: Host) -> Finding:
    names = ("intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict")
    values = {n: host.param(n) for n in names}
    present = [f"{n}={v}" if v else n for n, v in values.items() if v is not None]
    off = [p for p in present if p.endswith("=off")]
    if off:
        return Finding(
            "cmdline",
            "fail",
            f"the kernel command line turns the IOMMU off: {' '.join(off)}",
            f"remove {' '.join(off)} from the kernel command line",
        )
    if present:
        return Finding("cmdline", "ok", f"IOMMU parameters on the kernel command line: {' '.join(present)}")
    vendor = host.cpu_vendor
    hint = {"intel": "`intel_iommu=on` (Intel needs it on many distro kernels)"}.get(vendor or "")
    return Finding(
        "cmdline",
        "info",
        "no IOMMU parameters on the kernel command line (the kernel default applies)",
        f"add {hint} if the IOMMU check fails; `iommu=pt` keeps host DMA fast" if hint else None,
    )


def check_unsafe_interrupts(host: Host) -> Finding:
    virtio = sysfs.list_dir(host.sys("bus", "virtio", "drivers", "virtio_iommu"))
    if not any(n.startswith("virtio") for n in virtio):
        return Finding("interrupts", "ok", "no virtio-iommu: interrupt remapping is the platform's")
    values = {
        mod: host.text(host.sys("module", mod, "parameters", "allow_unsafe_interrupts"))
        for mod in ("vfio_iommu_type1", "iommufd")
    }
    if all(v in ("Y", "1") for v in values.values() if v is not None) and any(values.values()):
        return Finding("interrupts", "ok", "virtio-iommu with allow_unsafe_interrupts set")
    return Finding(
        "interrupts",
        "fail",
        "virtio-iommu has no interrupt remapping: VFIO refuses devices (EPERM)",
        "boot with `iommufd.allow_unsafe_interrupts=1 vfio_iommu_type1.allow_unsafe_interrupts=1` (test machines)",
    )


def check_vfio_pci(host: Host) -> Finding:
    if os.path.isdir(host.sys("bus", "pci", "drivers", "vfio-pci")):
        return Finding("vfio-pci", "ok", "vfio-pci driver loaded")
    state = host.module_state("vfio_pci", "CONFIG_VFIO_PCI")
    if state in ("available", "loaded"):
        return Finding("vfio-pci", "fail", "vfio-pci is not loaded", _modprobe(host, "vfio-pci"))
    if state == "absent":
        return Finding(
            "vfio-pci",
            "fail",
            "this kernel has no vfio-pci (CONFIG_VFIO_PCI not set)",
            "use a kernel built with CONFIG_VFIO_PCI (every distro kernel has it)",
        )
    return Finding(
        "vfio-pci",
        "fail",
        "vfio-pci is not loaded (and its module was not found)",
        _modprobe(host, "vfio-pci") + "; if that fails, the kernel lacks CONFIG_VFIO_PCI",
    )


def check_vfio_container(host: Host) -> Finding:
    if os.path.exists(os.path.join(host.p.dev, "vfio", "vfio")):
        type1 = (
            os.path.isdir(host.sys("module", "vfio_iommu_type1"))
            or host.kconfig("CONFIG_VFIO_IOMMU_TYPE1") == "y"
        )
        if type1:
            return Finding(
                "vfio-legacy", "ok", "/dev/vfio/vfio present, type1 IOMMU driver loaded (legacy backend)"
            )
        return Finding(
            "vfio-legacy",
            "warn",
            "/dev/vfio/vfio present but vfio_iommu_type1 is not loaded",
            _modprobe(host, "vfio_iommu_type1"),
        )
    if host.module_state("vfio", "CONFIG_VFIO") == "absent":
        return Finding(
            "vfio-legacy",
            "fail",
            "this kernel has no VFIO (CONFIG_VFIO not set): no /dev/vfio/vfio",
            "use a kernel built with CONFIG_VFIO and CONFIG_VFIO_PCI (every distro kernel has them)",
        )
    return Finding(
        "vfio-legacy",
        "fail",
        "no /dev/vfio/vfio: the VFIO core is not loaded (legacy backend)",
        _modprobe(host, "vfio-pci") + " (it pulls in vfio and vfio_iommu_type1)",
    )


def check_iommufd(host: Host) -> Finding:
    if os.path.exists(os.path.join(host.p.dev, "iommu")):
        return Finding("iommufd", "ok", "/dev/iommu present (iommufd backend)")
    state = host.module_state("iommufd", "CONFIG_IOMMUFD")
    if state == "available":
        return Finding(
            "iommufd",
            "warn",
            "iommufd is not loaded: only the legacy backend works",
            _modprobe(host, "iommufd"),
        )
    if state == "absent":
        return Finding(
            "iommufd",
            "warn",
            "this kernel has no iommufd (CONFIG_IOMMUFD not set, as on Debian's "
            "stock kernels): pciauth uses the legacy backend",
            "for iommufd, use a kernel >= 6.6 with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV=y",
        )
    return Finding(
        "iommufd",
        "warn",
        "no /dev/iommu: only the legacy backend works",
        _modprobe(host, "iommufd") + "; needs a kernel >= 6.2 with CONFIG_IOMMUFD",
    )


def check_vfio_cdev(host: Host) -> Finding:
    if os.path.isdir(os.path.join(host.p.dev, "vfio", "devices")) or os.path.isdir(
        host.sys("class", "vfio-dev")
    ):
        return Finding("vfio-cdev", "ok", "VFIO device cdevs supported (/dev/vfio/devices)")
    state = host.kconfig("CONFIG_VFIO_DEVICE_CDEV")
    if state == "y":
        return Finding(
            "vfio-cdev", "info", "CONFIG_VFIO_DEVICE_CDEV=y; the cdevs appear once a device is bound"
        )
    return Finding(
        "vfio-cdev",
        "warn",
        "no VFIO device cdev support" + (" (CONFIG_VFIO_DEVICE_CDEV not set)" if state == "n" else ""),
        "the iommufd backend needs a kernel >= 6.6 with CONFIG_VFIO_DEVICE_CDEV=y; the legacy backend works without",
    )


def check_lockdown(host: Host) -> Finding:
    text = host.text(host.sys("kernel", "security", "lockdown"))
    if text is None:
        return Finding("lockdown", "ok", "no kernel lockdown (the lockdown LSM is not active)")
    m = re.search(r"\[(\w+)\]", text)
    mode = m.group(1) if m else text
    if mode == "none":
        return Finding("lockdown", "ok", "kernel lockdown: none")
    return Finding(
        "lockdown",
        "warn",
        f"kernel lockdown is '{mode}': writes to sysfs config space are refused, so DOE through sysfs fails",
        "bind the device (`pciauth bind`) so DOE goes through the VFIO config region, or turn off Secure "
        "Boot / boot with lockdown=none on a test machine",
    )


def check_memlock(host: Host) -> Finding:
    soft = host.p.memlock
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    unlimited = soft == resource.RLIM_INFINITY or soft < 0
    shown = "unlimited" if unlimited else f"{soft // 1024} KiB"
    if unlimited or host.p.euid == 0:
        return Finding(
            "memlock", "ok", f"RLIMIT_MEMLOCK {shown}" + (" (root may pin past it)" if not unlimited else "")
        )
    if soft < MEMLOCK_WANTED:
        return Finding(
            "memlock",
            "warn",
            f"RLIMIT_MEMLOCK is {shown}: DMA buffers (pinned memory) are limited to that",
            "`ulimit -l unlimited` (or a memlock line in /etc/security/limits.conf), or run as root",
        )
    return Finding("memlock", "ok", f"RLIMIT_MEMLOCK {shown}")


def check_hugepages(host: Host) -> Finding:
    base = host.sys("kernel", "mm", "hugepages", "hugepages-2048kB")
    total = sysfs.read_int(os.path.join(base, "nr_hugepages"), 10)
    free = sysfs.read_int(os.path.join(base, "free_hugepages"), 10)
    if total is None:
        return Finding("hugepages", "info", "no 2 MiB hugepage support visible (only needed for --hugepages)")
    if free:
        return Finding("hugepages", "ok", f"{free} of {total} 2 MiB hugepages free")
    return Finding(
        "hugepages",
        "info",
        "no free 2 MiB hugepages (only needed for --hugepages)",
        "`echo 64 | sudo tee /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`",
    )


def check_journal(host: Host) -> Finding:
    from pciauth.vfio.journal import Journal

    journal = Journal()
    stale: list[str] = []
    held: list[str] = []
    for _path, entry in journal.entries():  # one pass: each entry file read, each owner looked up once
        if not isinstance(entry, Exception):
            (stale if entry.stale() else held).append(entry.device)
    if stale:
        return Finding(
            "journal",
            "warn",
            f"devices left on vfio-pci by a crashed pciauth: {', '.join(stale)}",
            "`sudo pciauth restore`",
        )
    if held:
        return Finding(
            "journal",
            "info",
            f"devices bound by pciauth: {', '.join(held)}",
            "`pciauth unbind DEVICE` gives one back",
        )
    return Finding("journal", "ok", f"no devices bound by pciauth ({journal.directory})")


CHECKS: list[Callable[[Host], Finding]] = [
    check_root,
    check_iommu_groups,
    check_cmdline,
    check_unsafe_interrupts,
    check_vfio_pci,
    check_vfio_container,
    check_iommufd,
    check_vfio_cdev,
    check_lockdown,
    check_memlock,
    check_hugepages,
    check_journal,
]

LEGACY_NEEDS = ("iommu", "interrupts", "vfio-pci", "vfio-legacy")
IOMMUFD_NEEDS = ("iommu", "interrupts", "vfio-pci", "iommufd", "vfio-cdev")


def diagnose(paths: HostPaths | None = None) -> dict:
    """Run every check; the JSON-ready report with ``ok`` and per-backend readiness."""
    host = Host(paths or HostPaths())
    findings = [check(host) for check in CHECKS]
    by = {f.check: f for f in findings}
    legacy = all(by[n].status in ("ok", "info") for n in LEGACY_NEEDS)
    iommufd = all(by[n].status in ("ok", "info") for n in IOMMUFD_NEEDS) and by["iommufd"].status == "ok"
    return {
        "ok": not any(f.status == "fail" for f in findings),
        "ready": {"legacy": legacy, "iommufd": iommufd},
        "kernel": host.p.release,
        "findings": [f.to_dict() for f in findings],
    }


LABELS = {"ok": " ok ", "info": "info", "warn": "WARN", "fail": "FAIL"}


def format_report(report: dict) -> str:
    lines = []
    for f in report["findings"]:
        lines.append(f"[{LABELS[f['status']]}] {f['check']}: {f['summary']}")
        if f["fix"] and f["status"] != "ok":
            lines.append(f"       fix: {f['fix']}")
    ready = report["ready"]
    backends = [name for name in ("iommufd", "legacy") if ready[name]]
    lines.append(
        f"VFIO backends ready: {', '.join(backends)}"
        if backends
        else "VFIO is not usable on this host: fix the FAIL lines above (the emulated device 'emu' still works)"
    )
    return "\n".join(lines)
