"""Auth tests share one emulated-device PKI cache (generated once per session, off ~/.cache)."""

from __future__ import annotations

import json
import os

import pytest

from pciauth.cli import main


@pytest.fixture(scope="session", autouse=True)
def _emu_pki_cache(tmp_path_factory):
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    """``pciauth auth ... --json`` in process: (exit code, parsed JSON)."""
    capsys.readouterr()
    code = main(["auth", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)
