"""Fixtures for the VFIO tests: a fake sysfs tree with a fake driver core, a run dir."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "iommu"))

from fake_driver_core import BDF, FakeDriverCore, FakeSysfs  # noqa: E402


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fake tree with one NVMe-like device on ``nvme``; env points pciauth at it."""
    fs = FakeSysfs(str(tmp_path / "sys"))
    fs.add_device(BDF, driver="nvme", group=3)
    run = tmp_path / "run"
    monkeypatch.setenv("PCIAUTH_SYSFS_ROOT", fs.root)
    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(run))
    monkeypatch.setenv("PCIAUTH_PROC_ROOT", str(tmp_path / "proc"))
    monkeypatch.setenv("PCIAUTH_DRIVERCTL_DIR", str(tmp_path / "driverctl.d"))
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text("")
    (tmp_path / "proc" / "swaps").write_text("Filename Type Size Used Priority\n")
    fs.tmp = tmp_path
    return fs


@pytest.fixture
def core(env):
    with FakeDriverCore(env) as c:
        yield c
