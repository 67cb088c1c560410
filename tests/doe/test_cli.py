"""`pciauth doe DEVICE`: listing, raw objects, errors and exit codes."""

from __future__ import annotations

import json

import pytest

from pciauth.cli import main
from pciauth.emu import EmulatedDevice
from pciauth.errors import ExitCode


def _json(capsys, *argv):
    capsys.readouterr()
    code = main(["doe", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_list_json(capsys):
    code, out = _json(capsys, "emu:1")
    assert code == 0 and out["ok"] and out["device"] == "emu:1"
    assert [m["offset"] for m in out["mailboxes"]] == [0x180, 0x200]
    assert [p["id"] for p in out["mailboxes"][1]["protocols"]] == ["0001:00", "1e98:02"]


def test_list_human(capsys):
    assert main(["doe", "emu"]) == 0
    text = capsys.readouterr().out
    assert "mailbox at 0x100 (capability version 2)" in text and "0001:02  secured CMA/SPDM" in text


def test_raw_get_version(capsys):
    code, out = _json(capsys, "emu", "--raw", "0001:01", "10840000")
    assert code == 0 and out["mailbox"] == 0x100
    response = bytes.fromhex(out["response"])
    assert response[:2] == b"\x10\x04"  # SPDM VERSION


def test_raw_cdat_on_chosen_mailbox(capsys):
    code, out = _json(capsys, "emu:1", "--raw", "1e98:02", "00000000", "--mailbox", "0x200")
    assert code == 0 and out["response"].startswith("00000100")  # next entry handle 1


@pytest.mark.parametrize("argv,code", [
    (["emu", "--raw", "0001", "00"], ExitCode.USAGE),
    (["emu", "--raw", "10000:01", "00"], ExitCode.USAGE),
    (["emu", "--raw", "0001:01", "xyz"], ExitCode.USAGE),
    (["emu", "--raw", "0001:07", "00000000"], ExitCode.NOT_FOUND),
    (["emu", "--raw", "0001:01", "00000000", "--mailbox", "0x300"], ExitCode.NOT_FOUND),
    (["emu", "--raw", "0001:01", "108400"], ExitCode.USAGE),  # 3 bytes: not whole dwords, never padded
    (["emu", "--raw", "0001:01", "10840000", "--lock-timeout", "-5"], ExitCode.USAGE),
    (["emu", "--lock-timeout", "-5"], ExitCode.USAGE),
    (["emu,fault=stuck_busy,fault_after=3", "--raw", "0001:01", "10840000", "--timeout", "0.1"],
     ExitCode.DEVICE),
    (["emu,fault=never_ready,fault_count=-1", "--timeout", "0.05"], ExitCode.DEVICE),
])
def test_errors_and_exit_codes(capsys, argv, code):
    assert main(["doe", *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("pciauth: error: ") and "Traceback" not in err


def test_pci_device_without_doe_and_with_kernel_user(capsys, fake_sysfs):
    fake_sysfs.add_device("0000:01:00.0")
    assert main(["doe", "01:00.0"]) == ExitCode.NOT_FOUND
    assert "has no DOE mailbox" in capsys.readouterr().err
    fake_sysfs.add_device("0000:02:00.0", driver="cxl_pci", config=EmulatedDevice(0).config.read_bytes())
    assert main(["doe", "02:00.0"]) == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "cxl_pci" in err and "--force" in err


def test_kernel_doe_features_listed(capsys, fake_sysfs):
    # A device with a DOE header but dead registers: listing fails to talk (exit 5), cleanly.
    fake_sysfs.add_device("0000:03:00.0", config=EmulatedDevice(0).config.read_bytes(),
                          doe_features=["0001:00", "0001:01"])
    assert main(["doe", "03:00.0", "--timeout", "0.05"]) == ExitCode.DEVICE
    assert "DATA_OBJECT_READY never set" in capsys.readouterr().err
