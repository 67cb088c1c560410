"""Helpers of the auth tests (the emulated PKI cache fixture is in tests/conftest.py)."""

from __future__ import annotations

import json

from pciauth.cli import main


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    """``pciauth auth ... --json`` in process: (exit code, parsed JSON)."""
    capsys.readouterr()
    code = main(["auth", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)
