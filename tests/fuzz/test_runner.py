"""scripts/fuzz/run.py's bookkeeping around each fuzz_one process, without fuzzing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile

import pytest

# Loaded by path: the name ``run`` is scripts/vm/run.py's when tests/vm is collected too.
_RUN_PY = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "fuzz", "run.py")
_spec = importlib.util.spec_from_file_location("fuzz_run", _RUN_PY)
fuzz_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_run)


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _fake_run(outcome):
    def fake(cmd, **kw):
        if isinstance(outcome, BaseException):
            raise outcome
        return subprocess.CompletedProcess(cmd, outcome)

    return fake


def test_a_fuzz_process_that_dies_early_is_a_stop_and_leaves_no_summary_file(scratch, monkeypatch):
    monkeypatch.setattr(fuzz_run.subprocess, "run", _fake_run(3))
    row = fuzz_run.run_target("journal", 30, "random", str(scratch))
    assert row["stops"] == [{"kind": "exit 3", "artifact": None}]
    assert list((scratch / "tmp").iterdir()) == []


def test_a_fuzz_process_killed_at_its_deadline_is_a_stop_not_a_traceback(scratch, monkeypatch):
    monkeypatch.setattr(fuzz_run.subprocess, "run", _fake_run(subprocess.TimeoutExpired("fuzz_one", 1)))
    row = fuzz_run.run_target("journal", 30, "random", str(scratch))
    assert [s["kind"] for s in row["stops"]] == ["killed after its budget + 300 s"]
    assert list((scratch / "tmp").iterdir()) == []
