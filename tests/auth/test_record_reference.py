"""Record/replay at the DOE object level, and reference values (--save-reference / --expect)."""

from __future__ import annotations

import json

import pytest

from pciauth.doe.record import Recording
from pciauth.errors import ExitCode, NotFoundError, UsageError

from .conftest import run_json


@pytest.fixture
def recording(capsys, tmp_path):
    path = tmp_path / "rec.json"
    code, out = run_json(capsys, "emu", "--record", str(path))
    assert code == 0
    return path


def test_recording_replays_and_verifies(capsys, recording):
    doc = json.loads(recording.read_text())
    assert doc["format"] == "pciauth-doe-recording" and len(doc["exchanges"]) == 9
    assert all(len(bytes.fromhex(e["request"])) % 4 == 0 for e in doc["exchanges"])  # DOE objects
    code, out = run_json(capsys, "--replay", str(recording))
    assert code == 0 and out["authenticated"] and out["transport"] == "replay"
    assert out["replay"] == {"file": str(recording), "exchanges": 9, "replayed": 9, "divergence": None}
    assert len(out["measurements"]) == 5


def _tamper(path, code_byte: int, offset_from_end: int) -> None:
    """Flip one bit in the last response to request ``code_byte``."""
    doc = json.loads(path.read_text())
    e = [e for e in doc["exchanges"] if bytes.fromhex(e["request"])[1] == code_byte][-1]
    rsp = bytearray(bytes.fromhex(e["response"]))
    rsp[-offset_from_end] ^= 0x01
    e["response"] = rsp.hex()
    path.write_text(json.dumps(doc))


def test_tampered_measurement_fails_replay(capsys, recording):
    _tamper(recording, 0xE0, 200)  # inside the measurement record of the signed MEASUREMENTS
    code, out = run_json(capsys, "--replay", str(recording))
    assert code != 0 and out["authenticated"] is False


def test_tampered_signature_fails_replay(capsys, recording):
    _tamper(recording, 0x83, 8)  # CHALLENGE_AUTH signature (its last bytes, before padding)
    code, out = run_json(capsys, "--replay", str(recording))
    assert code == ExitCode.VERIFICATION and out["authenticated"] is False


def test_replay_with_other_options_reports_divergence(capsys, recording):
    code, out = run_json(capsys, "--replay", str(recording), "--measurements", "1")
    assert out["authenticated"] is False
    assert "request differs from the recording" in out["replay"]["divergence"]
    assert code == ExitCode.VERIFICATION


def test_session_recording_replays_what_it_can(capsys, tmp_path):
    path = tmp_path / "session.json"
    assert run_json(capsys, "emu", "--session", "--record", str(path))[0] == 0
    code, out = run_json(capsys, "--replay", str(path))
    assert code == 0 and out["authenticated"]
    assert any("secured session was not replayed" in n for n in out["notes"])


@pytest.mark.parametrize("content", ["", "{}", "[]", '{"format": "pciauth-doe-recording", "version": 9}',
                                     '{"format": "pciauth-doe-recording", "version": 1, "target": {}, '
                                     '"options": {}, "random": ["zz"], "exchanges": []}'])
def test_bad_recordings_are_clean_errors(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError):
        Recording.load(str(path))


def test_missing_recording(tmp_path):
    with pytest.raises(NotFoundError):
        Recording.load(str(tmp_path / "none.json"))


def _through_a_pipe(tmp_path, data: bytes) -> str:
    """A named pipe that yields ``data``, as ``<(zcat file.json.gz)`` does: no size to stat."""
    import os
    import threading

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:  # the reader stopped at its limit
                pass

    threading.Thread(target=feed, daemon=True).start()
    return str(fifo)


@pytest.mark.parametrize("kind", ["reference", "recording"])
def test_user_files_are_read_up_to_their_limit_even_from_a_pipe(tmp_path, monkeypatch, kind):
    import pciauth.doe.record
    import pciauth.reference

    doc = {"format": "pciauth-reference", "version": 1, "algorithms": {}, "slots": [], "padding": "x" * 4000}
    if kind == "reference":
        monkeypatch.setattr(pciauth.reference, "MAX_REFERENCE_BYTES", 1024)
        load = pciauth.reference.load_reference
    else:
        doc = dict(doc, format="pciauth-doe-recording")
        monkeypatch.setattr(pciauth.doe.record, "MAX_RECORDING_BYTES", 1024)
        load = Recording.load
    data = json.dumps(doc).encode()
    for path in (_through_a_pipe(tmp_path, data), str(tmp_path / "big.json")):
        (tmp_path / "big.json").write_bytes(data)
        with pytest.raises(UsageError) as info:
            load(path)
        assert info.value.field == "size" and "larger than 1024 bytes" in str(info.value)


def test_expect_flags_a_changed_measurement_by_index(capsys, tmp_path):
    ref = tmp_path / "ref.json"
    code, _ = run_json(capsys, "emu", "--save-reference", str(ref))
    assert code == 0
    doc = json.loads(ref.read_text())
    assert doc["format"] == "pciauth-reference" and len(doc["slots"][0]["certificates_sha256"]) == 3
    code, out = run_json(capsys, "emu", "--expect", str(ref))
    assert code == 0 and out["reference"]["matches"]
    code, out = run_json(capsys, "emu,firmware=1.0.1", "--expect", str(ref))
    assert code == ExitCode.VERIFICATION and out["authenticated"] is True and out["ok"] is False
    diffs = out["reference"]["differences"]
    assert {(d["what"], d["key"]) for d in diffs} == {("measurement", "2"), ("measurement", "5")}
    assert "measurement 2 (mutable_firmware) changed" in diffs[0]["message"]


def test_expect_flags_another_device(capsys, tmp_path):
    ref = tmp_path / "ref.json"
    run_json(capsys, "emu", "--save-reference", str(ref))
    code, out = run_json(capsys, "emu:1", "--expect", str(ref))
    whats = {d["what"] for d in out["reference"]["differences"]}
    assert code == ExitCode.VERIFICATION and {"slot", "certificate", "algorithm"} <= whats


def test_compare_edge_cases():
    from pciauth.reference import compare

    base = {"spdm_version": "1.3", "algorithms": {}, "slots": [], "measurements": [
        {"index": 1, "type": "immutable_rom", "value": "aa"}]}
    assert compare(base, base) == []
    gone = dict(base, measurements=[])
    assert compare(base, gone)[0].message.startswith("measurement 1 (immutable_rom) is missing")
    assert compare(gone, base)[0].message.startswith("measurement 1 (immutable_rom) is new")
    assert compare(base, dict(base, measurements=None))[0].key == "*"
    with pytest.raises(UsageError):
        compare(dict(base, slots=[{"no": 1}]), base)


def test_bad_reference_file(capsys, tmp_path):
    bad = tmp_path / "ref.json"
    bad.write_text('{"format": "something"}')
    from pciauth.cli import main

    assert main(["auth", "emu", "--expect", str(bad)]) == ExitCode.USAGE


def test_no_reference_written_when_not_authenticated(capsys, tmp_path):
    ref = tmp_path / "ref.json"
    code, out = run_json(capsys, "emu,adversary=bad-signature", "--save-reference", str(ref))
    assert code == ExitCode.VERIFICATION and not ref.exists()
    assert "not authenticated: no reference written" in out["notes"]


def test_replay_with_another_trust_anchor_is_not_authenticated(capsys, recording, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from pciauth.spdm.pki import generate_set

    anchor = tmp_path / "other.pem"
    anchor.write_bytes(generate_set("ecdsa-p256").root.public_bytes(serialization.Encoding.PEM))
    code, out = run_json(capsys, "--replay", str(recording), "--trust-anchor", str(anchor))
    assert code == ExitCode.VERIFICATION and out["authenticated"] is False
    assert out["replay"]["divergence"] is None  # the transcript replayed fine; the root is not trusted


def test_replay_of_another_instance(capsys, tmp_path):
    path = tmp_path / "emu1.json"
    assert run_json(capsys, "emu:1", "--record", str(path))[0] == 0
    code, out = run_json(capsys, "--replay", str(path))
    assert code == 0 and out["device"] == "emu:1" and out["algorithms"]["base_asym"] == "ecdsa-p256"


@pytest.mark.parametrize("err, kind", [(28, "HostNotReady"), (13, "PermissionDeniedError")])  # ENOSPC, EACCES
def test_a_reference_that_cannot_be_written_says_why(tmp_path, monkeypatch, err, kind):
    import os

    from pciauth.reference import save_reference

    def failing_replace(src, dst):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "replace", failing_replace)
    target = tmp_path / "ref.json"
    with pytest.raises(Exception) as info:
        save_reference(str(target), {"format": "pciauth-reference"})
    assert type(info.value).__name__ == kind and info.value.errno == err
    assert str(target) in str(info.value) and os.strerror(err) in str(info.value)
    assert os.listdir(tmp_path) == []  # the temporary file is gone too
