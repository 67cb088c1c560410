"""pciauth inside QEMU guests: one boot per machine variant, one test per guest-side check.

The checks themselves live in ``tests/vm/guest/`` (plain Python, no pytest: the guest
runs them with the host's interpreter). Each boot runs every check registered for its
variant and prints one ``PCIAUTH-CHECK {json}`` line per check; the tests below read
those lines. A check that needs a pciauth command that does not exist yet reports
``skip`` with the command's name, and the test skips with that reason.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "guest"))

import harness  # noqa: E402
import run_checks  # noqa: E402

for _mod in run_checks.CHECK_MODULES:
    try:
        __import__(_mod)
    except ModuleNotFoundError as _exc:
        if _exc.name != _mod:
            raise

#: variant -> (QEMU machine, devices, needs the host SPDM responder, boot timeout in s)
VARIANTS: dict[str, tuple[str, list[str], bool, float]] = {
    "intel-iommu": ("intel-iommu", ["edu", "nvme", "nvme2", "cxl"], True, 1200.0),
    "virtio-iommu": ("virtio-iommu", ["edu"], False, 600.0),
    "none": ("none", ["edu"], False, 300.0),
}

#: The second NVMe's responder corrupts the CHALLENGE_AUTH signature (`pciauth responder --adversary`).
ADVERSARY = ["--adversary", "bad-signature"]

PARAMS = [pytest.param(v, c.name, id=f"{v}-{c.name}") for v in VARIANTS for c in harness.REGISTRY
          if v in c.variants]

_BOOTS: dict[str, dict] = {}


def _make_pki(tmp: Path) -> Path | None:
    """A PKI whose leaf names QEMU's NVMe, or None when ``pciauth pki`` is missing."""
    if not harness.command_exists("pki") or not harness.command_exists("responder"):
        return None
    from responder import init_nvme_pki

    init_nvme_pki(tmp / "foreign-pki")
    return init_nvme_pki(tmp / "pki")


def _boot(vm, variant: str, tmp: Path) -> dict:
    from responder import host_responder

    machine, devices, wants_responder, timeout = VARIANTS[variant]
    if not wants_responder:
        devices = [d for d in devices if d != "nvme2"]
    cmd = f'"$PY" $PCIAUTH_PYFLAGS {shlex.quote(str(HERE / "guest" / "run_checks.py"))} --variant {variant}'
    pki = _make_pki(tmp) if wants_responder else None
    t0 = time.monotonic()
    if pki is not None:
        with host_responder(pki, log=tmp / "responder.log") as port, \
                host_responder(pki, log=tmp / "adversary.log", extra_args=ADVERSARY) as port2:
            res = vm.run_vm(cmd, machine=machine, devices=devices, spdm_port=port, spdm_port2=port2,
                            timeout=timeout, job_files={"pki": pki, "foreign-pki": tmp / "foreign-pki"})
    else:
        res = vm.run_vm(cmd, machine=machine, devices=devices, timeout=timeout)
    results = {}
    for line in res.stdout.splitlines():
        if line.startswith(harness.PREFIX):
            rec = json.loads(line[len(harness.PREFIX):])
            results[rec["name"]] = rec
    return {"result": res, "checks": results, "seconds": time.monotonic() - t0,
            "spdm": pki is not None}


@pytest.fixture(scope="session")
def boots(vm, tmp_path_factory):
    """Boot each variant once, lazily, the first time one of its checks is asked for."""

    def get(variant: str) -> dict:
        if variant not in _BOOTS:
            _BOOTS[variant] = _boot(vm, variant, tmp_path_factory.mktemp(f"vm-{variant}"))
            boot = _BOOTS[variant]
            print(f"\n[vm] {variant}: boot + checks {boot['seconds']:.1f} s, "
                  f"guest exit {boot['result'].status}", file=sys.stderr)
            for rec in boot["checks"].values():
                print(f"[vm]   {rec['name']:<34} {rec['status']:<5} {rec['seconds']:7.2f} s", file=sys.stderr)
        return _BOOTS[variant]

    return get


@pytest.mark.parametrize(("variant", "name"), PARAMS)
def test_guest_check(boots, variant: str, name: str) -> None:
    boot = boots(variant)
    res = boot["result"]
    assert not res.timed_out, f"guest timed out\n{res.describe()}"
    rec = boot["checks"].get(name)
    assert rec is not None, f"check {name} reported nothing (guest crashed?)\n{res.describe()}"
    if rec["status"] == "skip":
        pytest.skip(f"{variant}: {rec['reason']}")
    assert rec["status"] == "pass", (f"{variant}/{name}: {rec.get('reason')}\n{rec.get('traceback', '')}")
