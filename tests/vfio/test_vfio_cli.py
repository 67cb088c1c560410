"""``pciauth bind/unbind/restore`` as real processes on a fake sysfs tree.

The fake driver core runs in this test process; the pciauth processes write the fake
tree's attributes exactly as they would write /sys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fake_driver_core import BDF

from pciauth.vfio.journal import Journal

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pciauth(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pciauth", *args], capture_output=True, text=True, timeout=60, env=_env(), **kw
    )


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pciauth", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def hold(env) -> subprocess.Popen:
    proc = spawn("bind", BDF, "--hold")
    line = proc.stdout.readline()
    assert "bound to vfio-pci (was nvme)" in line, line + proc.stderr.read()
    assert env.driver(BDF) == "vfio-pci"
    return proc


def test_kill_9_then_restore_puts_the_driver_back(env, core) -> None:
    proc = hold(env)
    entry = Journal().read(BDF)
    assert entry is not None and entry.pid == proc.pid and entry.original_driver == "nvme"
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(10)
    assert env.driver(BDF) == "vfio-pci"  # left behind ...
    out = pciauth("restore")
    assert out.returncode == 0, out.stderr
    # Every pciauth start replays the journal of a dead session first, so `restore` itself
    # finds the work done; either way the driver is back and the user is told.
    assert f"{BDF}: restored (nvme)" in out.stdout or f"restored {BDF} left bound by a crashed pciauth" in out.stderr
    assert env.driver(BDF) == "nvme" and env.override(BDF) is None  # ... and put back
    assert Journal().entries() == []


def test_kill_9_then_next_start_replays(env, core) -> None:
    proc = hold(env)
    proc.kill()
    proc.wait(10)
    out = pciauth("bind", BDF, "--json")  # the next pciauth start
    assert out.returncode == 0, out.stderr
    assert "left bound by a crashed pciauth" in out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["binding"]["original_driver"] == "nvme"  # not "vfio-pci"
    assert ("bind", BDF, "nvme") in core.events  # restored in between
    assert pciauth("unbind", BDF).returncode == 0
    assert env.driver(BDF) == "nvme"


def test_sigterm_restores_and_dies_by_the_signal(env, core) -> None:
    proc = hold(env)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == -signal.SIGTERM
    assert env.driver(BDF) == "nvme"
    assert Journal().entries() == []


def test_ctrl_c_ends_hold_cleanly(env, core) -> None:
    proc = hold(env)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0, proc.stderr.read()
    assert env.driver(BDF) == "nvme"
    assert "restored to nvme" in proc.stderr.read()


def test_command_runs_while_bound(env, core) -> None:
    probe = (
        f"import os,sys; sys.exit(7 if os.readlink('{env.dev_path(BDF)}/driver').endswith('vfio-pci') else 1)"
    )
    out = pciauth("bind", BDF, "--", sys.executable, "-c", probe)
    assert out.returncode == 7, out.stderr  # the command's exit code, and it saw vfio-pci
    assert env.driver(BDF) == "nvme"


def test_persistent_bind_then_unbind_json(env, core) -> None:
    out = pciauth("bind", BDF, "--json")
    report = json.loads(out.stdout)
    assert report["binding"]["mode"] == "persistent" and report["binding"]["iommu_group"] == 3
    assert report["binding"]["vfio_cdev"] == "vfio0"
    assert env.driver(BDF) == "vfio-pci"
    out = pciauth("unbind", BDF, "--json")
    assert json.loads(out.stdout)["result"]["action"] == "restored"
    assert env.driver(BDF) == "nvme"


def test_unbind_without_journal_lets_the_kernel_probe(env, core) -> None:
    env.link(BDF, "vfio-pci")
    out = pciauth("unbind", BDF)
    assert out.returncode == 0, out.stderr
    assert "now on nvme" in out.stdout
    assert env.driver(BDF) == "nvme"


def test_restore_with_nothing_to_do(env, core) -> None:
    out = pciauth("restore")
    assert out.returncode == 0 and "nothing to restore" in out.stdout


def test_refusal_is_one_line_with_exit_8(env, core) -> None:
    with open(os.path.join(env.dev_path(BDF), "boot_vga"), "w") as f:
        f.write("1\n")
    out = pciauth("bind", BDF)
    assert out.returncode == 8
    assert out.stderr.count("\n") == 1 and "boot VGA" in out.stderr and "Traceback" not in out.stderr
    assert env.driver(BDF) == "nvme"


def test_missing_device_exit_3(env, core) -> None:
    out = pciauth("bind", "0000:09:00.0")
    assert out.returncode == 3 and "Traceback" not in out.stderr


@pytest.mark.parametrize("cmd", ["bind", "unbind", "restore"])
def test_help_is_light(cmd: str) -> None:
    out = pciauth(cmd, "--help")
    assert out.returncode == 0 and cmd in out.stdout
