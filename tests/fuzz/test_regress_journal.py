"""Regressions found by fuzzing the binding journal (``/run/pciauth/bind-*.json``).

Every pciauth start reads the journal to restore devices of dead sessions (``replay_stale``),
which tolerates ``MalformedData`` per entry. Any other exception from one corrupt file stopped
every pciauth command. Fixed in ``pciauth/vfio/journal.py``.
"""

from __future__ import annotations

import json

import pytest

from pciauth.errors import MalformedData
from pciauth.vfio.journal import Journal

NAME = "bind-0000:01:00.0.json"
GOOD = {"device": "0000:01:00.0", "sysfs_root": "/sys", "original_driver": "nvme", "original_override": None,
        "mode": "session", "pid": 1, "pid_start": 5, "created": 1.5, "version": 1}


@pytest.mark.parametrize("blob", [b"[" * 50_000, b'{"pid": ' + b"9" * 5000 + b"}"],
                         ids=["deep-nesting", "5000-digit-int"])
def test_hostile_json_is_malformed_data(tmp_path, blob):
    (tmp_path / NAME).write_bytes(blob)
    with pytest.raises(MalformedData, match="not valid JSON"):
        Journal(str(tmp_path)).read("0000:01:00.0")
    [(path, err)] = Journal(str(tmp_path)).entries()
    assert isinstance(err, MalformedData)


def test_huge_created_time_still_restores(tmp_path):
    """``created`` is informational: an integer too large for a float must not hide the entry
    (the device in it still has to be restored)."""
    (tmp_path / NAME).write_text(json.dumps(dict(GOOD, created=10**400)))
    entry = Journal(str(tmp_path)).read("0000:01:00.0")
    assert entry is not None and entry.device == "0000:01:00.0" and entry.created == 0.0
    json.dumps(entry.to_dict())


@pytest.mark.parametrize("pid", [10**30, -(10**30), 0])
def test_out_of_range_pid_is_a_dead_owner(tmp_path, pid):
    (tmp_path / NAME).write_text(json.dumps(dict(GOOD, pid=pid)))
    entry = Journal(str(tmp_path)).read("0000:01:00.0")
    assert entry.owner_alive() is False and entry.stale() is True
