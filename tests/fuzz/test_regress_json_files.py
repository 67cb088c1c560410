"""Regressions found by fuzzing the JSON files pciauth reads: reference files, DOE recordings.

``json.loads`` raises more than ``JSONDecodeError``: ``RecursionError`` for deeply nested
arrays and ``ValueError`` for an integer of more than 4300 digits (Python's int/str limit). Both
must become ``MalformedData`` naming the file, like any other bad JSON. (The binding journal had
the same bug: see test_regress_journal.py.)
"""

from __future__ import annotations

import pytest

from pciauth.errors import MalformedData, UsageError

DEEP = b"[" * 50_000  # under every size limit, far over the recursion limit
BIG_INT = b'{"format": ' + b"9" * 5000 + b"}"


@pytest.mark.parametrize("blob", [DEEP, BIG_INT], ids=["deep-nesting", "5000-digit-int"])
def test_reference_file_with_hostile_json(tmp_path, blob):
    from pciauth.reference import load_reference

    path = tmp_path / "ref.json"
    path.write_bytes(blob)
    with pytest.raises((MalformedData, UsageError)):  # a bad user file is a usage error
        load_reference(str(path))


@pytest.mark.parametrize("blob", [DEEP, BIG_INT], ids=["deep-nesting", "5000-digit-int"])
def test_recording_with_hostile_json(tmp_path, blob):
    from pciauth.doe.record import Recording

    path = tmp_path / "rec.json"
    path.write_bytes(blob)
    with pytest.raises((MalformedData, UsageError)):
        Recording.load(str(path))


def test_plain_bad_json_is_refused(tmp_path):
    """Plain bad JSON is refused the same way."""
    from pciauth.doe.record import Recording
    from pciauth.reference import load_reference

    path = tmp_path / "bad.json"
    path.write_bytes(b"{not json")
    with pytest.raises((MalformedData, UsageError)):  # a bad user file is a usage error
        load_reference(str(path))
    with pytest.raises((MalformedData, UsageError)):
        Recording.load(str(path))
