"""The fake driver core handles pciauth's writes in the kernel's order, wherever they land.

The VFIO tests trust the fake core to behave like the kernel: the writes to ``unbind`` and
``drivers_probe`` of a bind are handled in the order they were made, and none is lost. The
core runs in its own thread, so pciauth's writes can land at any point of one of its steps;
these tests put them at every file access of a step in turn (no threads, no timing).
"""

from __future__ import annotations

import builtins
import os

import fake_driver_core
import pytest
from fake_driver_core import BDF, FakeDriverCore, FakeSysfs

from pciauth.vfio.sysfs_ops import write_attr


def bind_writes(env) -> None:
    """What :func:`pciauth.vfio.bind.bind` writes, in its order."""
    dev = env.path("bus/pci/devices", BDF)
    write_attr(os.path.join(dev, "driver_override"), "vfio-pci", step="SetDriverOverride")
    write_attr(os.path.join(dev, "driver", "unbind"), BDF, step="UnbindDriver")
    write_attr(env.path("bus/pci/drivers_probe"), BDF, step="DriversProbe")


def step_with_writes_before_access(core: FakeDriverCore, access: int, writes) -> bool:
    """One step of ``core`` with ``writes()`` made just before its ``access``-th file open;
    False when the step opened fewer files (the writes were not made)."""
    opened = []
    real_open = builtins.open

    def open_then_maybe_write(*args, **kwargs):
        if len(opened) == access:
            writes()
        opened.append(args[0])
        return real_open(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fake_driver_core, "open", open_then_maybe_write, raising=False)
        core.step()
    return len(opened) > access


def test_bind_writes_anywhere_in_a_step_are_handled_in_order(tmp_path) -> None:
    covered = 0
    while True:
        fs = FakeSysfs(str(tmp_path / f"at{covered}"))
        fs.add_device(BDF, driver="nvme", group=3)
        core = FakeDriverCore(fs)  # not started: its steps run here, one at a time
        if not step_with_writes_before_access(core, covered, lambda fs=fs: bind_writes(fs)):
            break  # past the last file access of a step
        for _ in range(3):  # the kernel is done when the writes return; the fake core within two steps
            core.step()
        where = f"writes before file access {covered} of a step"
        assert fs.driver(BDF) == "vfio-pci", (where, core.events)
        assert core.events == [("unbind", BDF, "nvme"), ("bind", BDF, "vfio-pci")], where
        assert not core.step(), f"{where}: writes left over after the core went idle"
        covered += 1
    assert covered >= 5  # the probe, and unbind and bind of both drivers


def test_settle_waits_for_pending_writes(env) -> None:
    with FakeDriverCore(env) as core:
        bind_writes(env)
        assert core.settle(10)
        # settle returned: every write made before it was handled, none is pending
        assert env.driver(BDF) == "vfio-pci"
        assert core.events == [("unbind", BDF, "nvme"), ("bind", BDF, "vfio-pci")]


def test_settle_times_out_when_the_core_is_stopped(env) -> None:
    core = FakeDriverCore(env)  # never started
    assert not core.settle(0.05)
