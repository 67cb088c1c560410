"""Fixtures of the end-to-end suite: an isolated run directory and PKI cache per session."""

from __future__ import annotations

import pytest

from .clihelp import cli_env, run_cli


@pytest.fixture(scope="session")
def e2e_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("e2e-cache"))


@pytest.fixture
def env(tmp_path, e2e_cache) -> dict:
    """Environment for one test: its own run dir (journals, locks, thresholds), a shared PKI cache."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return cli_env(str(run_dir), e2e_cache)


@pytest.fixture
def cli(env):
    """``cli("show", "emu", "--json")`` runs the real command line; returns a Result."""

    def call(*args: str, **kw):
        return run_cli(env, *args, **kw)

    call.env = env
    return call
