"""The binding journal: round trips, hostile files, process identity."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.errors import MalformedData
from pciauth.vfio import bind as vbind
from pciauth.vfio.journal import Journal, JournalEntry, process_alive, process_start_time


def test_round_trip(tmp_path) -> None:
    j = Journal(str(tmp_path / "run"))
    e = JournalEntry("0000:01:00.0", "/sys", "nvme", None, mode="persistent")
    path = j.write(e)
    assert os.path.basename(path) == "bind-0000:01:00.0.json"
    back = j.read("0000:01:00.0")
    assert back == e
    assert not back.stale()  # persistent entries are never stale
    j.remove("0000:01:00.0")
    assert j.read("0000:01:00.0") is None
    j.remove("0000:01:00.0")  # removing twice is fine


def test_atomic_write_leaves_no_temporary(tmp_path) -> None:
    j = Journal(str(tmp_path))
    for _ in range(3):
        j.write(JournalEntry("0000:01:00.0", "/sys", "nvme", None))
    assert os.listdir(tmp_path) == ["bind-0000:01:00.0.json"]


def test_own_process_is_alive_and_recycled_pid_is_not() -> None:
    me = JournalEntry("0000:01:00.0", "/sys", None, None)
    assert me.owner_alive() and not me.stale()
    start = process_start_time(os.getpid())
    assert start is not None
    assert not process_alive(os.getpid(), start + 1)  # same pid, another process
    assert not process_alive(2**22 + 99, None)
    assert not process_alive(0, None)


def test_bad_device_names_are_refused(tmp_path) -> None:
    j = Journal(str(tmp_path))
    for bad in ("../../etc/passwd", "01:00.0", "0000:01:00.8", ""):
        with pytest.raises(MalformedData):
            j.path_for(bad)


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"\xff\xfe", "entry"),
        (b"[1, 2]", "entry"),
        (b"{}", "device"),
        (
            json.dumps({"device": "0000:01:00.0", "sysfs_root": "/sys", "mode": "weird", "pid": 1}).encode(),
            "mode",
        ),
        (
            json.dumps(
                {
                    "device": "0000:01:00.0",
                    "sysfs_root": "/sys",
                    "mode": "session",
                    "pid": 1,
                    "original_driver": "../x",
                }
            ).encode(),
            "original_driver",
        ),
        (
            json.dumps(
                {"device": "0000:01:00.0", "sysfs_root": "/sys", "mode": "session", "pid": "1"}
            ).encode(),
            "pid",
        ),
        (b"{" + b" " * (70 * 1024) + b"}", "entry"),
    ],
)
def test_hostile_entries(tmp_path, content: bytes, field: str) -> None:
    (tmp_path / "bind-0000:01:00.0.json").write_bytes(content)
    j = Journal(str(tmp_path))
    with pytest.raises(MalformedData) as e:
        j.read("0000:01:00.0")
    assert e.value.field == field
    [(path, err)] = j.entries()
    assert isinstance(err, MalformedData)
    # restore reports it and goes on; start-up replay skips it silently
    assert vbind.restore_all(j)[0]["action"] == "failed"
    assert vbind.replay_stale(j) == []


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "device",
                "sysfs_root",
                "original_driver",
                "original_override",
                "mode",
                "pid",
                "pid_start",
                "created",
            ]
        ),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=20),
            st.floats(allow_nan=False),
            st.lists(st.integers()),
        ),
    )
)
def test_from_dict_only_raises_malformed(data) -> None:
    try:
        entry = JournalEntry.from_dict(data, "x")
    except MalformedData:
        return
    assert entry.mode in ("session", "persistent") and isinstance(entry.pid, int)


def test_other_files_in_the_run_dir_are_ignored(tmp_path) -> None:
    (tmp_path / "doe-lock-0000:01:00.0").write_text("x")
    (tmp_path / "bind-0000:01:00.0.json.123.tmp").write_text("half")
    assert Journal(str(tmp_path)).entries() == []
