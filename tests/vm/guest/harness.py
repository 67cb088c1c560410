"""Guest-side check runner for the VM tier (runs inside the QEMU guest, no pytest).

The host boots one guest per machine variant and runs::

    python tests/vm/guest/run_checks.py --variant intel-iommu [--only NAME,...]

Each check is a function registered with :func:`check`; it returns a dict of
details (pass), raises :class:`Skip` (a precise reason, e.g. the pciauth command
it needs does not exist yet) or raises anything else (fail).  One line per check
goes to stdout::

    PCIAUTH-CHECK {"name": ..., "status": "pass"|"fail"|"skip", "detail": ..., "seconds": ...}

The host-side pytest tests (``tests/vm/test_*.py``) assert on those lines.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent.parent
PREFIX = "PCIAUTH-CHECK "
EDU_ID = "1234:11e8"
NVME_CLASS = 0x010802
NVME_SERIAL = "PCIAUTHVM0001"
NVME_SERIAL2 = "PCIAUTHVM0002"  # its DOE mailbox reaches a responder that misbehaves


class Skip(Exception):
    """The check cannot run here; the message says exactly why."""


class CheckFailed(AssertionError):
    """The check ran and found something wrong."""


@dataclass
class Check:
    name: str
    func: Callable[[], dict]
    variants: tuple[str, ...]
    needs: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: list[Check] = []


def check(name: str, *, variants: tuple[str, ...], needs: tuple[str, ...] = ()) -> Callable:
    """Register a check for the given machine variants.

    ``needs`` names pciauth CLI commands (``"doctor"``) or modules
    (``"pciauth.vfio.bind"``); a missing one skips the check with its name.
    """

    def deco(func: Callable[[], dict]) -> Callable[[], dict]:
        REGISTRY.append(Check(name, func, variants, tuple(needs)))
        return func

    return deco


def expect(cond: object, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# ---------------------------------------------------------------- environment
def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def command_exists(name: str) -> bool:
    return module_exists(f"pciauth.cli.{name}_cmd")


def missing_needs(needs: tuple[str, ...]) -> list[str]:
    missing = []
    for need in needs:
        if "." in need:
            if not module_exists(need):
                missing.append(f"module {need}")
        elif not command_exists(need):
            missing.append(f"`pciauth {need}` (pciauth/cli/{need}_cmd.py)")
    return missing


def python() -> list[str]:
    """argv to start the host's interpreter in the guest (``$PY $PCIAUTH_PYFLAGS``)."""
    return [os.environ.get("PY") or sys.executable, *os.environ.get("PCIAUTH_PYFLAGS", "").split()]


@dataclass
class CliResult:
    argv: list[str]
    status: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict:
        try:
            data = json.loads(self.stdout)
        except ValueError as exc:
            raise CheckFailed(f"{' '.join(self.argv)}: stdout is not JSON ({exc}): {self.stdout[:500]!r}"
                              f" stderr: {self.stderr[-500:]!r}") from None
        if not isinstance(data, dict):
            raise CheckFailed(f"{' '.join(self.argv)}: JSON is not an object")
        return data

    def brief(self) -> str:
        return (f"`pciauth {' '.join(self.argv)}` exited {self.status}; "
                f"stderr: {self.stderr.strip()[-800:]!r}; stdout: {self.stdout.strip()[-800:]!r}")


def pciauth(*argv: str, timeout: float = 240.0, check_status: int | None = None) -> CliResult:
    """Run ``python -m pciauth ARGV`` in a subprocess (the real CLI, as a user would)."""
    t0 = time.monotonic()
    proc = subprocess.run([*python(), "-m", "pciauth", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    res = CliResult(list(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    if check_status is not None and res.status != check_status:
        raise CheckFailed(f"expected exit {check_status}: {res.brief()}")
    return res


# ---------------------------------------------------------------- sysfs helpers
PCI = Path("/sys/bus/pci/devices")


def find_pci(vendor: int, device: int | None = None, class_code: int | None = None) -> str:
    """The BDF of the first guest device with these IDs; CheckFailed when absent."""
    for dev in sorted(PCI.iterdir()):
        v = int((dev / "vendor").read_text(), 16)
        d = int((dev / "device").read_text(), 16)
        c = int((dev / "class").read_text(), 16)
        if v == vendor and (device is None or d == device) and (class_code is None or c == class_code):
            return dev.name
    raise CheckFailed(f"no PCI device {vendor:04x}:{device if device is None else f'{device:04x}'} "
                      f"class {class_code} in the guest")


def edu_bdf() -> str:
    return find_pci(0x1234, 0x11E8)


def nvme_bdf(serial: str = NVME_SERIAL) -> str:
    """The BDF of QEMU's NVMe with this serial (read from the nvme driver's sysfs)."""
    found = []
    for dev in sorted(PCI.iterdir()):
        if int((dev / "class").read_text(), 16) != NVME_CLASS:
            continue
        found.append(dev.name)
        for attr in dev.glob("nvme/nvme*/serial"):
            if attr.read_text().strip() == serial:
                return dev.name
    # Not bound to nvme right now: QEMU numbers the NVMe devices in command-line order.
    index = {NVME_SERIAL: 0, NVME_SERIAL2: 1}.get(serial)
    if index is None or index >= len(found):
        raise CheckFailed(f"no NVMe with serial {serial} in the guest (NVMe devices: {found})")
    return found[index]


def driver_of(bdf: str) -> str | None:
    link = PCI / bdf / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def kernel_log() -> str:
    """The guest's kernel log (dmesg) as text."""
    proc = subprocess.run(["dmesg"], capture_output=True, text=True)
    return proc.stdout


# ---------------------------------------------------------------- runner
def run_checks(variant: str, only: set[str] | None = None) -> int:
    failed = 0
    for chk in REGISTRY:
        if variant not in chk.variants or (only and chk.name not in only):
            continue
        t0 = time.monotonic()
        rec: dict = {"name": chk.name, "variant": variant}
        missing = missing_needs(chk.needs)
        try:
            if missing:
                raise Skip("missing " + ", ".join(missing))
            rec["detail"] = chk.func()
            rec["status"] = "pass"
        except Skip as exc:
            rec["status"] = "skip"
            rec["reason"] = str(exc)
        except Exception as exc:
            failed += 1
            rec["status"] = "fail"
            rec["reason"] = f"{type(exc).__name__}: {exc}"
            rec["traceback"] = traceback.format_exc()[-3000:]
        rec["seconds"] = round(time.monotonic() - t0, 2)
        print(PREFIX + json.dumps(rec, default=str), flush=True)
    return 1 if failed else 0
