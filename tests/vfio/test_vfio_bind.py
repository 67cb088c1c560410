"""Binding to vfio-pci and restoring, on a fake sysfs tree with a fake driver core."""

from __future__ import annotations

import json
import os
import signal

import pytest
from fake_driver_core import BDF, write

from pciauth.errors import BindError, DeviceBusy, HostNotReady, RefusedError
from pciauth.pci.select import find_device
from pciauth.vfio import bind as vbind
from pciauth.vfio.journal import Journal, JournalEntry


def dev():
    return find_device(BDF)


def test_bind_and_restore_sequence(env, core) -> None:
    b = vbind.bind(dev(), timeout=20)
    assert env.driver(BDF) == "vfio-pci"
    assert b.changed and b.original_driver == "nvme" and b.iommu_group == 3 and b.vfio_cdev == "vfio0"
    entry = Journal().read(BDF)
    assert entry is not None and entry.original_driver == "nvme" and entry.mode == "session"
    assert core.events == [("unbind", BDF, "nvme"), ("bind", BDF, "vfio-pci")]
    result = vbind.restore(b, timeout=20)
    assert result["action"] == "restored" and result["driver"] == "nvme"
    assert env.driver(BDF) == "nvme" and env.override(BDF) is None
    assert Journal().read(BDF) is None
    assert vbind.restore(b)["action"] == "none"  # idempotent


def test_never_uses_new_id(env, core) -> None:
    with vbind.bound(dev(), timeout=20):
        pass
    for drv in os.listdir(env.path("bus/pci/drivers")):
        assert not os.path.exists(env.path("bus/pci/drivers", drv, "new_id"))


def test_context_manager_restores_on_exception(env, core) -> None:
    with pytest.raises(ZeroDivisionError), vbind.bound(dev(), timeout=20):
        assert env.driver(BDF) == "vfio-pci"
        1 / 0  # noqa: B018
    assert env.driver(BDF) == "nvme"
    assert Journal().entries() == []


def test_sigterm_inside_bound_restores_then_reraises(env, core) -> None:
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with vbind.bound(dev(), timeout=20):
            signal.raise_signal(signal.SIGTERM)
            pytest.fail("the signal should have unwound the block")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert env.driver(BDF) == "nvme"
    assert seen == [signal.SIGTERM]  # re-raised to the original handler after restoring


def test_sigint_becomes_keyboardinterrupt_after_restore(env, core) -> None:
    with pytest.raises(KeyboardInterrupt), vbind.bound(dev(), timeout=20):
        signal.raise_signal(signal.SIGINT)
    assert env.driver(BDF) == "nvme"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_device_without_driver_restores_to_none(env, core) -> None:
    env.add_device("0000:02:00.0", driver=None, group=4)
    d = find_device("0000:02:00.0")
    with vbind.bound(d, timeout=20) as b:
        assert env.driver("0000:02:00.0") == "vfio-pci" and b.original_driver is None
    assert env.driver("0000:02:00.0") is None


def test_already_on_vfio_is_left_alone(env, core) -> None:
    env.link(BDF, "vfio-pci")
    with vbind.bound(dev(), timeout=20) as b:
        assert not b.changed and b.warnings
    assert env.driver(BDF) == "vfio-pci"
    assert Journal().read(BDF) is None


def test_vfio_pci_missing(env, core) -> None:
    os.rename(env.path("bus/pci/drivers/vfio-pci"), env.path("bus/pci/drivers/gone"))
    with pytest.raises(HostNotReady) as e:
        vbind.bind(dev(), timeout=1)
    assert "modprobe vfio-pci" in e.value.hint
    assert env.driver(BDF) == "nvme"


def test_vfio_refuses_then_everything_is_undone(env) -> None:
    from fake_driver_core import FakeDriverCore

    with FakeDriverCore(env, refuse={"vfio-pci"}), pytest.raises(BindError) as e:
        vbind.bind(dev(), timeout=0.3)
    assert e.value.step == "WaitVfioBound"
    with FakeDriverCore(env):
        pass
    assert env.driver(BDF) == "nvme" and env.override(BDF) is None
    assert Journal().read(BDF) is None


def test_restore_binds_original_explicitly_when_probe_picks_none(env, core) -> None:
    b = vbind.bind(dev(), timeout=20)
    env.native[BDF] = None  # drivers_probe will not find nvme by itself
    vbind.restore(b, timeout=20)
    assert env.driver(BDF) == "nvme"
    assert ("bind", BDF, "nvme") in core.events


def test_restore_leaves_a_device_someone_else_took(env, core) -> None:
    b = vbind.bind(dev(), timeout=20)
    env.add_driver("other")
    env.link(BDF, "other")
    assert vbind.restore(b, timeout=20)["action"] == "left"
    assert env.driver(BDF) == "other"


def test_refuses_when_held_by_a_live_session(env, core) -> None:
    entry = JournalEntry(BDF, env.root, "nvme", None, mode="session", pid=os.getppid(), pid_start=None)
    Journal().write(entry)
    with pytest.raises(DeviceBusy):
        vbind.bind(dev(), timeout=1)


def test_stale_session_is_replayed(env, core) -> None:
    b = vbind.bind(dev(), timeout=20)
    # Pretend the owner died: a pid that cannot exist.
    path = Journal().path_for(BDF)
    with open(path) as f:
        data = json.load(f)
    data["pid"] = 2**22 + 12345
    write(path, json.dumps(data))
    results = vbind.replay_stale()
    assert [r["action"] for r in results] == ["restored"]
    assert env.driver(BDF) == "nvme" and not b.restored


def test_persistent_entries_survive_start_up_replay(env, core) -> None:
    vbind.bind(dev(), timeout=20, mode="persistent")
    assert vbind.replay_stale() == []
    assert env.driver(BDF) == "vfio-pci"
    results = vbind.restore_all()
    assert [r["action"] for r in results] == ["restored"]
    assert env.driver(BDF) == "nvme"


def test_restore_all_skips_live_sessions_unless_forced(env, core) -> None:
    vbind.bind(dev(), timeout=20)  # this process is alive
    assert [r["action"] for r in vbind.restore_all()] == ["skipped"]
    assert [r["action"] for r in vbind.restore_all(force=True)] == ["restored"]


@pytest.mark.parametrize("restore", [vbind.restore_all, vbind.replay_stale])
def test_journal_replays_hold_the_bind_lock(env, core, monkeypatch, restore) -> None:
    """`pciauth restore` and the start-up replay do not restore an entry another pciauth
    is restoring (a bind that found it stale) at the same time: both hold bind.lock."""
    import fcntl

    vbind.bind(dev(), timeout=20, mode="persistent" if restore is vbind.restore_all else "session")
    path = Journal().path_for(BDF)
    with open(path) as f:
        data = json.load(f)
    data["pid"] = 2**22 + 12345  # a dead owner: stale for the replay
    write(path, json.dumps(data))
    held = []
    real = vbind.restore_entry

    def probing_restore_entry(entry, **kw):
        fd = os.open(os.path.join(Journal().directory, "bind.lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        return real(entry, **kw)

    monkeypatch.setattr(vbind, "restore_entry", probing_restore_entry)
    assert [r["action"] for r in restore()] == ["restored"]
    assert held == [True] and env.driver(BDF) == "nvme"


def test_restore_all_without_a_journal_creates_nothing(env, core) -> None:
    journal = Journal(str(env.tmp / "never-created"))
    assert vbind.restore_all(journal) == []
    assert not os.path.exists(journal.directory)


def test_unwritable_journal_refuses_to_bind(env, core, monkeypatch) -> None:
    blocker = env.tmp / "file"
    blocker.write_text("")
    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(blocker / "run"))
    with pytest.raises(Exception) as e:
        vbind.bind(dev(), timeout=1)
    assert "journal" in str(e.value)
    assert env.driver(BDF) == "nvme"


# ---- safety ----
def test_boot_vga_refused_unless_forced(env, core) -> None:
    with open(os.path.join(env.dev_path(BDF), "boot_vga"), "w") as f:
        f.write("1\n")
    with pytest.raises(RefusedError, match="boot VGA"):
        vbind.bind(dev(), timeout=1)
    b = vbind.bind(dev(), timeout=20, force=True)
    assert any("boot VGA" in w for w in b.warnings)
    vbind.restore(b)


def test_network_interface_up_refused(env, core) -> None:
    net = os.path.join(env.dev_path(BDF), "net", "eth0")
    os.makedirs(net)
    write(os.path.join(net, "flags"), "0x1003\n")
    write(os.path.join(net, "operstate"), "up\n")
    with pytest.raises(RefusedError, match="eth0 is up"):
        vbind.bind(dev(), timeout=1)
    write(os.path.join(net, "flags"), "0x1002\n")
    write(os.path.join(net, "operstate"), "down\n")
    vbind.restore(vbind.bind(dev(), timeout=20))


def _add_block(env, name: str, devnum: str, parent: str) -> str:
    p = os.path.join(parent, name)
    os.makedirs(os.path.join(p, "holders"))
    write(os.path.join(p, "dev"), devnum + "\n")
    os.symlink(os.path.relpath(p, env.path("class/block")), env.path("class/block", name))
    return p


def test_mounted_block_device_refused(env, core) -> None:
    disk = _add_block(env, "nvme0n1", "259:0", os.path.join(env.dev_path(BDF), "nvme", "nvme0"))
    _add_block(env, "nvme0n1p2", "259:2", disk)
    (env.tmp / "proc/self/mountinfo").write_text(
        "29 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
    )
    with pytest.raises(RefusedError, match="nvme0n1p2 is mounted on /"):
        vbind.bind(dev(), timeout=1)
    assert env.driver(BDF) == "nvme"


def test_block_device_held_by_mounted_dm(env, core) -> None:
    disk = _add_block(env, "nvme0n1", "259:0", os.path.join(env.dev_path(BDF), "nvme", "nvme0"))
    dm = _add_block(env, "dm-0", "253:0", env.path("devices/virtual/block"))
    os.symlink(os.path.relpath(dm, os.path.join(disk, "holders")), os.path.join(disk, "holders", "dm-0"))
    (env.tmp / "proc/self/mountinfo").write_text("30 1 253:0 / /home rw - xfs /dev/dm-0 rw\n")
    with pytest.raises(RefusedError, match="nvme0n1 is held by dm-0 is mounted on /home"):
        vbind.bind(dev(), timeout=1)


def test_swap_refused(env, core) -> None:
    _add_block(env, "nvme0n1", "259:0", os.path.join(env.dev_path(BDF), "nvme", "nvme0"))
    (env.tmp / "proc/swaps").write_text("Filename Type Size Used Priority\n/dev/nvme0n1 partition 1 0 -2\n")
    with pytest.raises(RefusedError, match="swap"):
        vbind.bind(dev(), timeout=1)


def test_unmounted_block_device_is_fine(env, core) -> None:
    _add_block(env, "nvme0n1", "259:0", os.path.join(env.dev_path(BDF), "nvme", "nvme0"))
    (env.tmp / "proc/self/mountinfo").write_text("29 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    vbind.restore(vbind.bind(dev(), timeout=20))


def test_group_blockers_named(env, core) -> None:
    env.add_device("0000:01:00.1", driver="snd_hda_intel", group=3)
    env.add_device("0000:01:00.2", driver=None, group=3)
    with pytest.raises(RefusedError) as e:
        vbind.bind(dev(), timeout=1)
    assert "IOMMU group 3 is not viable: 0000:01:00.1 is bound to snd_hda_intel" in str(e.value)
    assert "0000:01:00.2" not in str(e.value)


def test_driverctl_override_not_clobbered(env, core) -> None:
    d = env.tmp / "driverctl.d"
    d.mkdir()
    (d / f"pci-{BDF}").write_text("nvme\n")
    with pytest.raises(RefusedError, match="driverctl"):
        vbind.bind(dev(), timeout=1)
    (d / f"pci-{BDF}").write_text("vfio-pci\n")
    vbind.restore(vbind.bind(dev(), timeout=20))


def test_foreign_driver_override_not_clobbered_and_restored_when_forced(env, core) -> None:
    write(os.path.join(env.dev_path(BDF), "driver_override"), "nvme\n")
    with pytest.raises(RefusedError, match="driver_override"):
        vbind.bind(dev(), timeout=1)
    b = vbind.bind(dev(), timeout=20, force=True)
    vbind.restore(b, timeout=20)
    assert env.override(BDF) == "nvme"  # put back as it was


def test_ignored_signals_stay_ignored(env, core) -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with vbind.bound(dev(), timeout=20):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)  # nohup'ed: nothing happens
            assert env.driver(BDF) == "vfio-pci"
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert env.driver(BDF) == "nvme"


def test_signal_during_restore_waits_for_the_restore(env, core, monkeypatch) -> None:
    real = vbind.restore_entry
    seen = []

    def restore_with_interruption(entry, **kw):
        signal.raise_signal(signal.SIGTERM)  # arrives in the middle of restoring
        return real(entry, **kw)

    monkeypatch.setattr(vbind, "restore_entry", restore_with_interruption)
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(env.driver(BDF)))
    try:
        with vbind.bound(dev(), timeout=20):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert env.driver(BDF) == "nvme"
    assert seen == ["nvme"]  # delivered once, after the driver was back


def test_holder_loops_terminate(env, core) -> None:
    disk = _add_block(env, "nvme0n1", "259:0", os.path.join(env.dev_path(BDF), "nvme", "nvme0"))
    dm = _add_block(env, "dm-0", "253:0", env.path("devices/virtual/block"))
    os.symlink(os.path.relpath(dm, os.path.join(disk, "holders")), os.path.join(disk, "holders", "dm-0"))
    os.symlink(os.path.relpath(disk, os.path.join(dm, "holders")), os.path.join(dm, "holders", "nvme0n1"))
    (env.tmp / "proc/self/mountinfo").write_text("30 1 253:0 / /home rw - xfs /dev/dm-0 rw\n")
    with pytest.raises(RefusedError, match="held by dm-0 is mounted on /home"):
        vbind.bind(dev(), timeout=1)


def test_hostile_tree_pieces_do_not_crash(env, core) -> None:
    from pciauth.vfio import safety

    p = env.dev_path(BDF)
    os.unlink(os.path.join(p, "iommu_group"))  # no group at all
    os.makedirs(os.path.join(p, "net", "eth9"))  # an interface without flags or operstate
    write(os.path.join(p, "boot_vga"), "garbage\n")
    d = dev()
    assert safety.group_blockers(d) == [] and safety.group_members(d) == []
    assert safety.in_use_reasons(d) == []
    b = vbind.bind(d, timeout=20)
    assert b.iommu_group is None
    vbind.restore(b)
    assert env.driver(BDF) == "nvme"


def test_missing_device_directory(env, core) -> None:
    d = dev()
    import shutil

    shutil.rmtree(env.dev_path(BDF))
    with pytest.raises(BindError) as e:
        vbind.bind(d, timeout=1)
    assert e.value.step == "FindDevice"


def test_restore_of_a_vanished_device_drops_the_entry(env, core) -> None:
    import shutil

    b = vbind.bind(dev(), timeout=20)
    os.unlink(env.path("bus/pci/devices", BDF))
    shutil.rmtree(env.dev_path(BDF))
    assert vbind.restore(b)["action"] == "gone"
    assert Journal().entries() == []


def test_signal_during_restore_after_failed_bind_waits_for_the_restore(env, core, monkeypatch) -> None:
    # bind() fails after changing the device (vfio-pci never took it) and undoes its work;
    # a SIGTERM arriving while it undoes must not leave the device half-restored on vfio-pci.
    real = vbind.restore_entry
    seen = []

    def never_bound(binding, timeout):
        # A real kernel has done the unbind and the probe when those writes return; the fake
        # driver core handles them in its thread: wait until it has (restore must not race them).
        assert core.settle(10), "the fake driver core never handled the bind's writes"
        assert env.driver(BDF) == "vfio-pci"  # the failed bind had changed the device
        raise BindError("vfio-pci did not take it", device=binding.device, step="WaitVfioBound")

    def restore_with_interruption(entry, **kw):
        signal.raise_signal(signal.SIGTERM)  # arrives in the middle of restoring
        return real(entry, **kw)

    monkeypatch.setattr(vbind, "_wait_bound", never_bound)
    monkeypatch.setattr(vbind, "restore_entry", restore_with_interruption)
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(env.driver(BDF)))
    try:
        with pytest.raises(BindError, match="did not take"), vbind.bound(dev(), timeout=20):
            pytest.fail("the bind failed: the block must not run")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert env.driver(BDF) == "nvme" and env.override(BDF) is None
    assert Journal().read(BDF) is None
    assert seen == ["nvme"]  # delivered once, after the driver was back


@pytest.mark.parametrize("command", ["bind", "unbind"])
def test_a_command_replays_the_journal_once(env, core, monkeypatch, capsys, command) -> None:
    """cli.main replays a crashed session's bindings at start-up; the command does not again."""
    from pciauth.cli import main

    b = vbind.bind(dev(), timeout=20)
    path = Journal().path_for(BDF)
    with open(path) as f:
        data = json.load(f)
    data["pid"] = 2**22 + 12345  # its owner died
    write(path, json.dumps(data))
    calls = []
    real = vbind.replay_stale

    def counting_replay(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(vbind, "replay_stale", counting_replay)
    assert main([command, BDF, "--timeout", "20"]) == 0
    assert len(calls) == 1
    err = capsys.readouterr().err
    assert err.count(f"restored {BDF} left bound by a crashed pciauth") == 1, err
    assert env.driver(BDF) == ("vfio-pci" if command == "bind" else "nvme") and not b.restored
    if command == "bind":
        assert main(["unbind", BDF]) == 0 and env.driver(BDF) == "nvme"
