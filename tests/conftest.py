"""Shared test fixtures: a fake sysfs tree builder, and environment isolation."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fakesysfs import FakeSysfs


@pytest.fixture
def fake_sysfs(tmp_path, monkeypatch) -> FakeSysfs:
    """An empty fake /sys under tmp_path; $PCIAUTH_SYSFS_ROOT points at it."""
    tree = FakeSysfs(str(tmp_path / "sys"))
    monkeypatch.setenv("PCIAUTH_SYSFS_ROOT", tree.root)
    return tree


@pytest.fixture(autouse=True)
def _private_run_dir(tmp_path_factory, monkeypatch):
    """Lock files and binding journals of tests never touch the real /run/pciauth."""
    if "PCIAUTH_RUN_DIR" not in os.environ:
        monkeypatch.setenv("PCIAUTH_RUN_DIR", str(tmp_path_factory.mktemp("run")))


@pytest.fixture(scope="session", autouse=True)
def _emu_pki_cache(tmp_path_factory):
    """The emulated device's PKI goes to one temporary cache per test session, never ~/.cache."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
