"""`pciauth auth` end to end on the emulated device: verdicts, exit codes, options."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pciauth.cli import main
from pciauth.errors import ExitCode

from .conftest import run_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_auth_emu_json_as_a_user_runs_it():
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "pciauth", "auth", "emu", "--json"],
                          capture_output=True, text=True, env=env, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["authenticated"] is True and out["exit_code"] == 0
    assert out["device"] == "emu:0" and out["transport"] == "doe" and out["mailbox"] == 0x100
    slot = out["slots"][0]
    assert len(slot["certificates_pem"]) == 3 and slot["verdict"]["ok"]
    assert [m["index"] for m in out["measurements"]] == [1, 2, 3, 4, 5]
    whats = {s["what"] for s in out["signatures"]}
    assert "challenge_auth" in whats and len(out["signatures"]) >= 2
    assert all(s["signature"] for s in out["signatures"])
    assert any("trusting the emulated device's own test root" in n for n in out["notes"])


@pytest.mark.parametrize("spec", ["emu:1", "emu:2"])
def test_other_instances_authenticate(capsys, spec):
    code, out = run_json(capsys, spec)
    assert code == 0 and out["authenticated"], out["error"]


def test_human_summary(capsys):
    code = main(["auth", "emu", "--measurements", "2,5"])
    text = capsys.readouterr().out
    assert code == 0
    assert "emu:0: AUTHENTICATED" in text and "mutable_firmware" in text and "immutable_rom" not in text


def test_measurement_choices_and_session(capsys):
    code, out = run_json(capsys, "emu", "--measurements", "none")
    assert code == 0 and out["measurements"] == []
    code, out = run_json(capsys, "emu", "--measurements", "1,3")
    assert [m["index"] for m in out["measurements"]] == [1, 3]
    code, out = run_json(capsys, "emu", "--session")
    assert code == 0 and out["session"] and out["session_measurements"]


def test_untrusted_root_is_not_authenticated(capsys, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from pciauth.spdm.pki import generate_set

    other = generate_set("ecdsa-p256")
    anchor = tmp_path / "other-root.pem"
    anchor.write_bytes(other.root.public_bytes(serialization.Encoding.PEM))
    code, out = run_json(capsys, "emu", "--trust-anchor", str(anchor))
    assert code == ExitCode.VERIFICATION and out["authenticated"] is False and out["ok"] is False
    assert not any("trusting the emulated" in n for n in out["notes"])


@pytest.mark.parametrize("row", ["bad-signature", "wrong-root-hash", "truncated-version", "never-ready"])
def test_adversary_rows_pass_through_and_fail(capsys, row):
    code, out = run_json(capsys, f"emu,adversary={row}")
    assert out["authenticated"] is False
    assert code in (ExitCode.DEVICE, ExitCode.VERIFICATION)


@pytest.mark.parametrize("fault", ["stuck_busy", "error", "never_ready", "wrong_length", "short_length",
                                   "huge_length", "wrong_type", "error_on_read"])
def test_doe_fault_is_could_not_talk(capsys, fault):
    code, out = run_json(capsys, f"emu,fault={fault},fault_after=6", "--timeout", "0.2")
    assert code == ExitCode.DEVICE and out["authenticated"] is False
    assert "DOE@0x100" in out["error"]["message"]


def test_mailbox_works_after_a_fault_in_the_same_process():
    from pciauth.doe import DoeTransport, find_mailbox
    from pciauth.spdm.certs import load_trust_anchors
    from pciauth.spdm.requester import Requester, RequesterConfig
    from pciauth.target import emu_trust_anchors, open_target

    target = open_target("emu,fault=error_on_read,fault_after=7")
    transport = DoeTransport(find_mailbox(target.mailboxes(timeout=0.2)))
    cfg = RequesterConfig(trust_anchors=load_trust_anchors(emu_trust_anchors(target)), policy="cma",
                          identity=target.identity)
    first = Requester(transport, cfg).authenticate()
    assert not first.authenticated and first.exit_code == ExitCode.DEVICE
    second = Requester(transport, cfg).authenticate()
    assert second.authenticated, second.error


def test_usage_errors(capsys):
    assert main(["auth"]) == ExitCode.USAGE
    assert main(["auth", "emu", "--socket", "127.0.0.1:1"]) == ExitCode.USAGE
    assert main(["auth", "emu", "--measurements", "lots"]) == ExitCode.USAGE
    assert main(["auth", "emu", "--measurements", "0"]) == ExitCode.USAGE
    assert main(["auth", "emu", "--slot", "9"]) == ExitCode.USAGE
    assert main(["auth", "emu", "--timeout", "0"]) == ExitCode.USAGE
    assert main(["auth", "--socket", "nohost"]) == ExitCode.USAGE
    assert main(["auth", "--socket", "127.0.0.1:1", "--policy", "cma"]) == ExitCode.USAGE
    assert main(["auth", "emu:77"]) == ExitCode.NOT_FOUND


def test_pcap_has_every_message(capsys, tmp_path):
    from pciauth.pcap import read_pcap

    pcap = tmp_path / "auth.pcap"
    code, out = run_json(capsys, "emu", "--pcap", str(pcap))
    assert code == 0
    link, records = read_pcap(pcap)
    assert link == 292 and len(records) == 2 * 9  # VCA 3, digests, 2 certificate chunks, challenge, meas


def test_socket_peer(capsys):
    from pciauth.spdm.responder import Responder, ResponderConfig
    from pciauth.spdm.socket_server import ResponderServer
    from pciauth.target import emu_trust_anchors, open_target

    target = open_target("emu")
    root = emu_trust_anchors(target)[0]
    pki = target.device.pki
    server = ResponderServer(lambda: Responder(ResponderConfig.from_pki(pki.directory, (pki.algorithm,))),
                             port=0)
    with server.start():
        code, out = run_json(capsys, "--socket", f"127.0.0.1:{server.port}", "--trust-anchor", root)
    assert code == 0 and out["authenticated"] and out["transport"] == "socket"


def test_socket_peer_ipv6_brackets(capsys):
    """`--socket [::1]:PORT` reaches an IPv6 loopback responder (the brackets are not the host)."""
    import socket

    from pciauth.spdm.responder import Responder, ResponderConfig
    from pciauth.spdm.socket_server import ResponderServer
    from pciauth.target import emu_trust_anchors, open_target

    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 on this machine")
    target = open_target("emu")
    root = emu_trust_anchors(target)[0]
    pki = target.device.pki
    server = ResponderServer(lambda: Responder(ResponderConfig.from_pki(pki.directory, (pki.algorithm,))),
                             host="::1", port=0)
    with server.start():
        code, out = run_json(capsys, "--socket", f"[::1]:{server.port}", "--trust-anchor", root)
    assert code == 0 and out["authenticated"]


def test_two_auth_processes_on_one_device_are_serialized():
    """`pciauth auth` waits while another process holds the device's lock, then both succeed."""
    import time

    env = dict(os.environ, PYTHONPATH=REPO)
    holder_code = (
        "import sys\n"
        "from pciauth.doe import MailboxLock\n"
        "with MailboxLock('emu:2'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", holder_code], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    cmd = [sys.executable, "-m", "pciauth", "auth", "emu:2", "--json", "--lock-timeout"]
    try:
        busy = subprocess.run(cmd + ["0.1"], env=env, capture_output=True, text=True, timeout=60)
        assert busy.returncode == ExitCode.REFUSED and f"pid {holder.pid}" in busy.stderr
        runs = [subprocess.Popen(cmd + ["60"], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(2.0)
        assert [p.poll() for p in runs] == [None, None]  # both wait for the lock
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in runs]
    assert all(o["authenticated"] for o in outs)
    assert all(p.returncode == 0 for p in runs)


def test_pci_device_through_sysfs_config_file(capsys, fake_sysfs):
    """A fake sysfs device whose config file has a DOE capability but no live registers:
    pciauth writes through the file, gets no response, aborts, and says so (exit 5)."""
    import struct

    from pciauth.emu import EmulatedDevice

    image = EmulatedDevice(0).config.read_bytes()
    path = fake_sysfs.add_device("0000:01:00.0", vendor=0x1234, device=0xA11E, class_code=0x120000,
                                 config=image)
    code, out = run_json(capsys, "01:00.0", "--timeout", "0.1")
    assert code == ExitCode.DEVICE and out["authenticated"] is False
    assert out["device"] == "0000:01:00.0" and out["error"]["step"] == "doe_discovery"
    assert "DOE@0x100" in out["error"]["message"] and "DATA_OBJECT_READY never set" in out["error"]["message"]
    with open(os.path.join(path, "config"), "rb") as f:
        data = f.read()
    assert struct.unpack_from("<I", data, 0x108)[0] == 1  # the last CTRL write was the abort
    assert any("no --trust-anchor" in n for n in out["notes"])


def test_kernel_user_refused_unless_forced(capsys, fake_sysfs):
    from pciauth.emu import EmulatedDevice

    fake_sysfs.add_device("0000:04:00.0", driver="cxl_pci", config=EmulatedDevice(0).config.read_bytes())
    assert main(["auth", "04:00.0"]) == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "driver cxl_pci is bound" in err and "--force" in err
    code, out = run_json(capsys, "04:00.0", "--force", "--timeout", "0.05")
    assert code == ExitCode.DEVICE  # forced past the check; this fake device cannot answer
    assert any(n.startswith("--force: driver cxl_pci") for n in out["notes"])
