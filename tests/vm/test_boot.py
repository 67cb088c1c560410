"""The boot harness itself: a guest runs the host's Python and hands back stdout and exit status."""

from __future__ import annotations


def test_guest_runs_host_python_and_returns_status(vm):
    res = vm.run_vm("python3 -c 'import os, sys; print(1); print(os.uname().release); sys.exit(3)'",
                    machine="none", timeout=180)
    assert res.status == 3, res.describe()
    lines = res.stdout.splitlines()
    assert lines[0] == "1", res.describe()
    assert lines[1].startswith("6.12"), f"guest kernel is {lines[1]!r}, not the 6.12 guest kernel"
    assert not res.timed_out


def test_timeout_kills_qemu(vm):
    import os

    import pytest

    res = vm.run_vm("sleep 600", machine="none", timeout=25)
    assert res.timed_out, res.describe()
    assert res.status is None, res.describe()
    assert res.seconds < 60
    with pytest.raises(ProcessLookupError):
        os.kill(res.qemu_pid, 0)
