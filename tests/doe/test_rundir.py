"""pciauth.rundir: the one run-directory rule, and its users (journal, mailbox locks, thresholds).

Non-root callers are simulated by patching ``os.geteuid`` (the suite runs as root or not) and
pointing ``/run/pciauth`` at a path nobody can create; the real ``/run/pciauth`` and ``/tmp`` are
never touched (``TMP_DIR`` moves to the test's temporary directory).
"""

from __future__ import annotations

import os
import stat

import pytest

from pciauth import rundir
from pciauth.dma.iova import Threshold
from pciauth.errors import HostNotReady, PermissionDeniedError

UNUSABLE = "/proc/pciauth-no"  # cannot be created, not even by root
IS_ROOT = os.geteuid() == 0  # read before any test patches geteuid


@pytest.fixture
def non_root(monkeypatch, tmp_path):
    """No $PCIAUTH_RUN_DIR, no $XDG_RUNTIME_DIR, a non-root euid, an unusable /run/pciauth, and
    the per-user directory under tmp_path (owned by whoever runs the suite: getuid stays real)."""
    monkeypatch.delenv(rundir.ENV_RUN_DIR, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(rundir, "DEFAULT_RUN_DIR", UNUSABLE)
    monkeypatch.setattr(rundir, "TMP_DIR", str(tmp_path))
    monkeypatch.setattr(rundir.os, "geteuid", lambda: 4242)
    return tmp_path / f"pciauth-{os.getuid()}"


def test_host_wide_dir_is_the_env_var_else_run_pciauth(monkeypatch):
    monkeypatch.setenv("PCIAUTH_RUN_DIR", "/somewhere")
    assert rundir.run_dir() == "/somewhere" and rundir.env_run_dir() == "/somewhere"
    monkeypatch.setenv("PCIAUTH_RUN_DIR", "")  # empty is unset, as before
    assert rundir.run_dir() == "/run/pciauth" and rundir.env_run_dir() is None
    monkeypatch.delenv("PCIAUTH_RUN_DIR")
    assert rundir.run_dir() == "/run/pciauth"


def test_own_state_falls_back_only_for_a_user_who_cannot_write_run_pciauth(monkeypatch, non_root):
    assert rundir.own_run_dir() == str(non_root)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    assert rundir.own_run_dir() == "/run/user/4242/pciauth"
    monkeypatch.setattr(rundir.os, "geteuid", lambda: 0)
    assert rundir.own_run_dir() == UNUSABLE  # root always uses the host-wide directory
    monkeypatch.setattr(rundir.os, "geteuid", lambda: 4242)
    monkeypatch.setenv("PCIAUTH_RUN_DIR", "/chosen")
    assert rundir.own_run_dir() == "/chosen"  # the variable wins, even for a non-root user
    assert rundir.run_dir() == "/chosen"


def test_old_names_are_the_one_rule():
    from pciauth.dma import threshold
    from pciauth.doe import lock
    from pciauth.vfio import journal

    for module in (journal, lock, threshold):
        assert module.DEFAULT_RUN_DIR == "/run/pciauth"
    assert journal.ENV_RUN_DIR == "PCIAUTH_RUN_DIR"
    assert journal.run_dir is rundir.run_dir and lock.run_dir is rundir.run_dir
    assert threshold.run_dir is rundir.own_run_dir


def test_per_user_dir_is_created_private(non_root):
    rundir.make_run_dir(str(non_root))
    st = os.lstat(non_root)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    rundir.make_run_dir(str(non_root))  # existing and ours: fine
    os.chmod(non_root, 0o755)  # what pciauth created before: still accepted
    rundir.make_run_dir(str(non_root))


def test_other_dirs_are_not_checked(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # a lab's group/world-writable PCIAUTH_RUN_DIR is the user's choice
    rundir.check_user_dir(str(shared))
    rundir.make_run_dir(str(tmp_path / "a" / "b"))
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o755 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def _plant_symlink(non_root, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, non_root)
    return victim


def _plant_foreign_dir(non_root, tmp_path):
    if not IS_ROOT:
        pytest.skip("chown to another uid needs root")
    non_root.mkdir(mode=0o755)
    os.chown(non_root, 65534, 65534)
    return non_root


def _plant_open_dir(non_root, tmp_path):
    non_root.mkdir()
    os.chmod(non_root, 0o777)
    return non_root


PLANTS = {"symlink": _plant_symlink, "foreign owner": _plant_foreign_dir, "world-writable": _plant_open_dir}


@pytest.mark.parametrize("plant", PLANTS)
def test_planted_per_user_dir_is_refused_by_lock_and_threshold(non_root, tmp_path, plant):
    """Regression: ``/tmp/pciauth-<uid>`` is a predictable name in a world-writable directory. A
    directory another user created there first (or a symlink) was used as is: the mailbox lock
    truncates its file (a symlink planted there truncated any file of the victim), and the
    threshold record was written and read there."""
    from pciauth.dma.threshold import load_threshold, save_threshold
    from pciauth.target import lock_target, open_target

    where = PLANTS[plant](non_root, tmp_path)
    before = sorted(os.listdir(where))
    with open_target("emu:0") as target, pytest.raises(PermissionDeniedError, match="per-user run directory"):
        lock_target(target, timeout=0)
    with pytest.raises(PermissionDeniedError, match="per-user run directory") as info:
        save_threshold("emu:0", Threshold.parse("1G"))
    assert "PCIAUTH_RUN_DIR" in info.value.hint
    with pytest.raises(PermissionDeniedError, match="per-user run directory"):
        load_threshold("emu:0")
    assert sorted(os.listdir(where)) == before  # nothing written through it


def test_non_root_emulated_run_keeps_lock_and_threshold_together(non_root):
    """Regression: without $XDG_RUNTIME_DIR a non-root emulated run put its threshold record in
    ``/tmp/pciauth-<uid>`` but its mailbox lock in ``/tmp/pciauth-<uid>/pciauth``."""
    from pciauth.dma.threshold import load_threshold, save_threshold
    from pciauth.target import lock_target, open_target

    saved = save_threshold("emu:0", Threshold.parse("1G"))
    with open_target("emu:0") as target, lock_target(target, timeout=0) as lock:
        assert os.path.dirname(lock.path) == os.path.dirname(saved) == str(non_root)
    assert load_threshold("emu:0") == Threshold.parse("1G")
    assert stat.S_IMODE(os.stat(non_root).st_mode) == 0o700


def test_journal_and_real_device_locks_never_fall_back(non_root):
    """The decision: host-wide state stays host-wide, so a non-root user gets a clear error
    instead of a journal or lock that other pciauth processes would never find."""
    from pciauth.doe.lock import MailboxLock
    from pciauth.vfio.journal import Journal, JournalEntry

    journal = Journal()
    assert journal.directory == UNUSABLE
    assert journal.names() == []  # start-up replay: nothing to see, no error
    with pytest.raises(PermissionDeniedError, match="binding journal") as info:
        journal.write(JournalEntry("0000:01:00.0", "/sys", "nvme", None))
    assert "PCIAUTH_RUN_DIR" in info.value.hint
    with pytest.raises((PermissionDeniedError, HostNotReady), match="mailbox lock") as info:
        MailboxLock("0000:01:00.0", timeout=0).acquire()
    assert "PCIAUTH_RUN_DIR" in info.value.hint
    assert not non_root.exists()


def test_threshold_record_errors_are_pciauth_errors(tmp_path, monkeypatch):
    """Regression: only EACCES was turned into a pciauth error; a run directory that is a file
    (or a read-only /run) escaped as a bare OSError."""
    from pciauth.dma.threshold import save_threshold

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(blocker / "run"))
    with pytest.raises(HostNotReady, match="cannot record the threshold") as info:
        save_threshold("emu:0", Threshold.parse("1G"))
    assert info.value.path == str(blocker / "run" / "threshold-emu_0.json")
    assert "PCIAUTH_RUN_DIR" in info.value.hint


def test_threshold_read_checks_the_directory_it_reads_from(non_root, tmp_path, monkeypatch):
    """Regression: load_threshold checked the per-user directory, then opened the record by its
    path. When the directory did not exist at the check, another user could create it (with a
    record of their choosing) before the open, and that X was used. Simulated here: the check's
    lstat finds nothing, and the directory is planted right after it."""
    from pciauth.dma.threshold import load_threshold

    real_lstat = os.lstat

    def planting_lstat(path, *a, **k):
        try:
            return real_lstat(path, *a, **k)
        except FileNotFoundError:
            if os.fspath(path) == str(non_root) and not non_root.exists():
                non_root.mkdir()
                os.chmod(non_root, 0o777)  # what another user's directory looks like to us
                (non_root / "threshold-emu_0.json").write_text('{"units": 3}')
            raise

    monkeypatch.setattr(os, "lstat", planting_lstat)
    try:
        got = load_threshold("emu:0")
    except PermissionDeniedError as e:
        assert "per-user run directory" in str(e)
    else:
        assert got is None, f"read X={got} from a directory planted after the check"
