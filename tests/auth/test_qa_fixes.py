"""Regression tests for the QA findings on ``pciauth auth`` (one test per finding)."""

from __future__ import annotations

import json

import pytest

from pciauth.cli import main
from pciauth.errors import ExitCode


def test_not_authenticated_is_one_stderr_line_also_with_json(capsys):
    code = main(["auth", "emu,adversary=bad-signature", "--json"])
    captured = capsys.readouterr()
    assert code == ExitCode.VERIFICATION
    assert json.loads(captured.out)["authenticated"] is False
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("pciauth: error: emu:0: not authenticated: challenge: ")
    assert "signature" in lines[0]


def test_could_not_talk_is_one_stderr_line(capsys):
    code = main(["auth", "emu,fault=error,fault_after=6", "--timeout", "0.2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.DEVICE
    assert len(err) == 1 and err[0].startswith("pciauth: error: emu:0: could not talk: "), err


def test_authenticated_prints_nothing_on_stderr(capsys):
    assert main(["auth", "emu"]) == 0
    assert capsys.readouterr().err == ""


def test_socket_timeout_reaches_the_transport(capsys):
    import socket
    import time

    with socket.socket() as server:  # accepts (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        main(["auth", "--socket", "127.0.0.1:0", "--policy", "spdm-only"])  # warm the imports
        start = time.monotonic()
        code = main(["auth", "--socket", f"127.0.0.1:{port}", "--timeout", "0.3", "--policy", "spdm-only"])
        elapsed = time.monotonic() - start
    assert code == ExitCode.DEVICE
    assert elapsed < 5, f"--timeout 0.3 took {elapsed:.1f} s (the 10 s default was used)"


def test_garbage_user_files_are_usage_errors(capsys, tmp_path):
    from pciauth.doe.record import Recording
    from pciauth.errors import UsageError
    from pciauth.reference import load_reference

    bad = tmp_path / "garbage.json"
    bad.write_text("garbage")
    assert main(["auth", "emu", "--expect", str(bad)]) == ExitCode.USAGE
    assert main(["auth", "--replay", str(bad)]) == ExitCode.USAGE
    assert "not a pciauth" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"format": "pciauth-reference", "version": 1, "slots": 5}')
    try:
        load_reference(str(wrong))
    except UsageError as e:
        assert e.field == "slots" and "slots" in e.message
    else:
        raise AssertionError("a reference with a list for algorithms was accepted")
    rec = tmp_path / "rec.json"
    rec.write_text('{"format": "pciauth-doe-recording", "version": 1, "exchanges": "x"}')
    try:
        Recording.load(str(rec))
    except UsageError as e:
        assert e.field
    else:
        raise AssertionError("a recording with a string for exchanges was accepted")


def test_pcap_path_errors_are_not_found_before_talking(capsys, tmp_path):
    from pciauth.errors import NotFoundError, UsageError
    from pciauth.pcap import PcapWriter

    missing = tmp_path / "no" / "x.pcap"
    assert main(["auth", "emu", "--pcap", str(missing)]) == ExitCode.NOT_FOUND
    assert "x.pcap" in capsys.readouterr().err
    afile = tmp_path / "file"
    afile.write_text("")
    for path, kind in ((missing, NotFoundError), (afile / "x.pcap", NotFoundError), (tmp_path, UsageError)):
        try:
            PcapWriter(path)
        except kind as e:
            assert e.path == str(path) and e.errno
        else:
            raise AssertionError(f"{path}: no {kind.__name__}")


@pytest.mark.parametrize("option, name, what", [("--save-reference", "ref.json", "reference"),
                                                ("--record", "rec.json", "recording")])
def test_output_file_in_a_missing_directory_fails_first_naming_the_path(capsys, tmp_path, monkeypatch,
                                                                        option, name, what):
    from pciauth.doe import authenticate

    def no_auth(*a, **kw):
        raise AssertionError(f"authenticated before checking {option}")

    monkeypatch.setattr(authenticate, "authenticate_device", no_auth)
    target = tmp_path / "no" / name
    assert main(["auth", "emu", option, str(target)]) == ExitCode.NOT_FOUND
    err = capsys.readouterr().err
    assert str(target) in err and ".tmp" not in err and what in err
    assert main(["auth", "emu", option, str(tmp_path)]) == ExitCode.USAGE


@pytest.mark.parametrize("argv", [["--slot", "9"], ["--measurements", "0"], ["--measurements", "lots"]])
def test_bad_options_are_refused_before_the_device_is_opened(capsys, monkeypatch, argv):
    import pciauth.target

    def no_open(*a, **kw):
        raise AssertionError("the device was opened before the options were checked")

    monkeypatch.setattr(pciauth.target, "open_target", no_open)
    assert main(["auth", "emu", *argv]) == ExitCode.USAGE
    assert capsys.readouterr().err.startswith("pciauth: error: ")


def test_human_failure_is_said_once_without_the_anchor_note(capsys):
    code = main(["auth", "emu,adversary=bad-version"])
    out = capsys.readouterr().out
    assert code in (ExitCode.DEVICE, ExitCode.VERIFICATION)
    assert out.count("version:") == 1, out
    assert "FAILED version" not in out and "trust" not in out, out
    main(["auth", "emu,adversary=bad-signature"])
    out = capsys.readouterr().out
    assert out.count("signature does not verify") == 1, out
    assert "trusting the emulated device's own test root" in out  # a chain was read: the root matters
