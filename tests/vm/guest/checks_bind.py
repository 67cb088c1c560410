"""Guest checks: bind, unbind and restore of edu through the pciauth CLI, and restore after kill -9."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from harness import PCI, REPO, check, driver_of, edu_bdf, expect, pciauth, python

VARIANTS = ("intel-iommu", "virtio-iommu")


def _override(bdf: str) -> str:
    try:
        return (PCI / bdf / "driver_override").read_text().strip()
    except OSError:
        return ""


def _clean(bdf: str) -> bool:
    """No driver (edu has none in the guest kernel) and no driver_override left behind."""
    return driver_of(bdf) is None and _override(bdf) in ("", "(null)")


@check("bind_unbind_restore_edu", variants=VARIANTS, needs=("bind", "unbind", "restore"))
def bind_unbind() -> dict:
    bdf = edu_bdf()
    expect(_clean(bdf), f"edu not clean before the check: driver {driver_of(bdf)!r}, "
                        f"override {_override(bdf)!r}")
    res = pciauth("bind", bdf, "--json", check_status=0)
    expect(driver_of(bdf) == "vfio-pci", f"after bind edu has driver {driver_of(bdf)!r}")
    again = pciauth("bind", bdf, "--json")
    expect(again.status == 0 and driver_of(bdf) == "vfio-pci", f"second bind: {again.brief()}")
    pciauth("unbind", bdf, "--json", check_status=0)
    expect(_clean(bdf), f"after unbind: driver {driver_of(bdf)!r}, override {_override(bdf)!r}")
    pciauth("bind", bdf, "--json", check_status=0)
    restored = pciauth("restore", "--json", check_status=0)
    expect(_clean(bdf), f"after restore: driver {driver_of(bdf)!r}, override {_override(bdf)!r}")
    nothing = pciauth("restore", "--json")
    expect(nothing.status == 0, f"restore with nothing to do: {nothing.brief()}")
    return {"bind_json": res.json(), "restore_json": restored.json()}


@check("restore_after_kill9", variants=VARIANTS, needs=("bind", "restore"))
def restore_after_kill() -> dict:
    """``pciauth bind --hold`` killed with SIGKILL leaves edu on vfio-pci; ``restore`` undoes it."""
    bdf = edu_bdf()
    expect(_clean(bdf), "edu not clean before the check")
    proc = subprocess.Popen([*python(), "-m", "pciauth", "bind", bdf, "--hold"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while driver_of(bdf) != "vfio-pci":
            if proc.poll() is not None:
                raise AssertionError(f"pciauth bind --hold exited {proc.returncode} before binding: "
                                     f"{proc.stderr.read().decode()[-600:]}")
            expect(time.monotonic() < deadline, "pciauth bind --hold did not bind edu within 120 s")
            time.sleep(0.2)
    except BaseException:  # the holder must not keep edu for the checks that follow
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(Exception):  # best effort: the failure above is the report
            pciauth("restore", "--json")
        raise
    time.sleep(1.0)  # let it settle into holding
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    expect(driver_of(bdf) == "vfio-pci", "edu was not left on vfio-pci by the killed process")
    res = pciauth("restore", "--json", check_status=0)
    expect(_clean(bdf), f"after restore: driver {driver_of(bdf)!r}, override {_override(bdf)!r}")
    return {"restore_json": res.json(), "killed_pid": proc.pid}
