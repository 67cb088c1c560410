"""The per-device lock serializes real processes; kernel users of a mailbox are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from pciauth.doe.lock import DOE_DRIVERS, MailboxLock, kernel_users, lock_path, refuse_if_kernel_uses
from pciauth.errors import DeviceBusy, HostNotReady, PermissionDeniedError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pciauth.doe import DoeTransport, MailboxLock, find_mailbox
    from pciauth.emu import EmulatedDevice
    log = sys.argv[1]
    dev = EmulatedDevice(0, cma_handler=lambda p, s: p)
    for _ in range(3):
        with MailboxLock("emu:0", timeout=20):
            with open(log, "a") as f:
                f.write(f"start {os.getpid()} {time.monotonic()}\\n")
            t = DoeTransport(find_mailbox(dev_mbs := __import__("pciauth.doe", fromlist=["x"]).open_mailboxes(dev.config)))
            for i in range(5):
                assert t.exchange(bytes([i]) * 8)[:8] == bytes([i]) * 8
            time.sleep(0.05)
            with open(log, "a") as f:
                f.write(f"end {os.getpid()} {time.monotonic()}\\n")
    """
)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_two_processes_are_serialized(tmp_path):
    log = tmp_path / "log"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(log)], env=_env()) for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0
    events = [line.split() for line in log.read_text().splitlines()]
    assert len(events) == 12 and len({e[1] for e in events}) == 2
    # Critical sections never overlap: every start is followed by the same pid's end.
    for first, second in zip(events[0::2], events[1::2], strict=True):
        assert first[0] == "start" and second[0] == "end" and first[1] == second[1]
    assert lock_path("emu:0").startswith(os.environ["PCIAUTH_RUN_DIR"])


HOLDER = textwrap.dedent(
    """
    import select, sys
    from pciauth.doe import MailboxLock
    with MailboxLock(sys.argv[1]):
        print("held", flush=True)
        # hold for the given time, or until the test closes our stdin
        select.select([sys.stdin], [], [], float(sys.argv[2]))
    """
)


def _hold(name: str, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, name, str(seconds)], env=_env(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout.readline().strip() == "held"
    return p


def test_busy_names_the_holder_pid_and_waiting_works():
    import threading

    holder = _hold("0000:01:00.0", 60.0)
    try:
        with pytest.raises(DeviceBusy, match=f"pid {holder.pid}"):
            MailboxLock("0000:01:00.0", timeout=0.1).acquire()
        t0 = time.monotonic()
        threading.Timer(0.5, holder.stdin.close).start()  # the holder lets go in 0.5 s
        with MailboxLock("0000:01:00.0", timeout=20) as lock:
            assert lock.held
            assert time.monotonic() - t0 > 0.2
    finally:
        holder.wait(timeout=10)


def test_cli_waits_or_fails_with_refused_exit_code():
    holder = _hold("emu:0", 60.0)  # held until released below: independent of machine load
    try:
        cmd = [sys.executable, "-m", "pciauth", "doe", "emu", "--lock-timeout"]
        busy = subprocess.run(cmd + ["0.1"], env=_env(), capture_output=True, text=True, timeout=30)
        assert busy.returncode == 8
        assert f"pid {holder.pid}" in busy.stderr
        waiter = subprocess.Popen(cmd + ["20"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        time.sleep(0.3)
        holder.stdin.close()  # release: the waiting process gets the lock
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert "0001:01  CMA/SPDM" in out
        ok = subprocess.run(cmd + ["10"], env=_env(), capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        assert "0001:01  CMA/SPDM" in ok.stdout
    finally:
        holder.wait(timeout=10)


def test_lock_is_reentrant_within_one_object_and_released():
    lock = MailboxLock("emu:7", timeout=0)
    with lock:
        with lock:
            assert lock.held
        with pytest.raises(DeviceBusy):
            MailboxLock("emu:7", timeout=0).acquire()
    assert not lock.held
    MailboxLock("emu:7", timeout=0).acquire().release()


def test_unusable_run_dir_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("PCIAUTH_RUN_DIR", "/proc/pciauth-no/run")
    with pytest.raises((PermissionDeniedError, HostNotReady), match="PCIAUTH_RUN_DIR|mailbox lock") as info:
        MailboxLock("x", timeout=0).acquire()
    assert "PCIAUTH_RUN_DIR" in info.value.hint


def test_emulated_device_lock_falls_back_without_a_run_dir(monkeypatch, tmp_path):
    from pciauth import rundir
    from pciauth.target import lock_target, open_target

    monkeypatch.delenv("PCIAUTH_RUN_DIR")
    monkeypatch.setattr(rundir, "DEFAULT_RUN_DIR", "/proc/pciauth-no")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with open_target("emu:1") as target, lock_target(target, timeout=0) as lock:
        assert lock.path == str(tmp_path / "pciauth" / "doe-emu-1.lock")
        with pytest.raises(DeviceBusy):
            lock_target(open_target("emu:1"), timeout=0)


def test_kernel_users_tsm_and_drivers(fake_sysfs):
    plain = fake_sysfs.add_device("0000:01:00.0", driver="nvme")
    assert kernel_users(plain) == []
    cxl = fake_sysfs.add_device("0000:02:00.0", driver="cxl_pci")
    reasons = kernel_users(cxl)
    assert len(reasons) == 1 and "cxl_pci" in reasons[0] and "CDAT" in reasons[0]
    tsm = fake_sysfs.add_device("0000:03:00.0")
    os.makedirs(os.path.join(tsm, "tsm"))
    with open(os.path.join(tsm, "tsm", "connect"), "w") as f:
        f.write("tsm0\n")
    assert "tsm0" in kernel_users(tsm)[0]
    with pytest.raises(DeviceBusy, match="kernel may be using the DOE mailbox"):
        refuse_if_kernel_uses(tsm, "0000:03:00.0", force=False)
    assert refuse_if_kernel_uses(tsm, "0000:03:00.0", force=True)
    with open(os.path.join(tsm, "tsm", "connect"), "w") as f:
        f.write("\n")
    assert kernel_users(tsm) == []
    assert "cxl_pci" in DOE_DRIVERS


def test_holder_unknown_when_the_lock_file_holds_garbage():
    import fcntl

    path = lock_path("garbage:0")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("not a pid\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(DeviceBusy, match="in use by another process"):
            MailboxLock("garbage:0", timeout=0).acquire()


def test_odd_tsm_attributes(fake_sysfs):
    dev = fake_sysfs.add_device("0000:06:00.0")
    os.makedirs(os.path.join(dev, "tsm", "connect"))  # a directory, not a file: unreadable
    assert kernel_users(dev) == []
    dev2 = fake_sysfs.add_device("0000:07:00.0")
    os.makedirs(os.path.join(dev2, "tsm"))
    with open(os.path.join(dev2, "tsm", "connect"), "w") as f:
        f.write("0\n")
    assert kernel_users(dev2) == []


def test_a_file_system_without_locks_is_a_clear_error(monkeypatch, tmp_path):
    """flock failing for another reason than "held" (ENOLCK on some network file systems) is a
    pciauth error naming the lock and what to do, and leaves no file descriptor open."""
    import errno

    from pciauth.doe import lock as lock_mod

    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(tmp_path))

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock_mod.fcntl, "flock", no_locks)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(HostNotReady, match="cannot lock the mailbox lock") as info:
        MailboxLock("emu:3", timeout=0).acquire()
    assert "PCIAUTH_RUN_DIR" in info.value.hint and info.value.errno == errno.ENOLCK
    assert len(os.listdir("/proc/self/fd")) == before


def test_holder_pid_not_written_still_holds_the_lock(monkeypatch, tmp_path):
    """A full disk while writing the holder's pid does not lose the lock it already holds."""
    import errno

    from pciauth.doe import lock as lock_mod

    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(tmp_path))

    def full(*a):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lock_mod.os, "pwrite", full)
    with MailboxLock("emu:4", timeout=0) as held:
        assert held.held
        with pytest.raises(DeviceBusy):
            MailboxLock("emu:4", timeout=0).acquire()
