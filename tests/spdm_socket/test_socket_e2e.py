"""pciauth's requester against pciauth's responder over the socket (and `pciauth responder`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from pciauth.pcap import PcapTransport, PcapWriter, read_pcap
from pciauth.spdm import constants as C
from pciauth.spdm import socket as S
from pciauth.spdm.certs import load_trust_anchors
from pciauth.spdm.pki import DEFAULT_IDENTITY, init_pki
from pciauth.spdm.requester import Requester, RequesterConfig
from pciauth.spdm.responder import Responder, ResponderConfig
from pciauth.spdm.socket_server import ResponderServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    init_pki(d, ["ecdsa-p256", "ecdsa-p384"])
    return d


def _auth(port, pki_dir, alg, **kw):
    anchors = load_trust_anchors(pki_dir / alg / "root.pem")
    config = RequesterConfig(trust_anchors=anchors, policy="cma", identity=DEFAULT_IDENTITY, **kw)
    with S.SocketTransport("127.0.0.1", port) as t:
        return Requester(t, config).authenticate()


@pytest.mark.parametrize("version", C.ALL_VERSIONS, ids=C.version_str)
@pytest.mark.parametrize("alg", ["ecdsa-p256", "ecdsa-p384"])
def test_authenticate_over_the_socket(pki_dir, alg, version):
    config = ResponderConfig.from_pki(pki_dir, (alg,), versions=(version,))
    with ResponderServer(lambda: Responder(config), "127.0.0.1", 0) as srv:
        report = _auth(srv.port, pki_dir, alg)
    assert report.authenticated, report.to_dict()["checks"]
    assert report.version == C.version_str(version)
    assert report.measurements


@pytest.mark.parametrize("version", [C.V11, C.V12, C.V13], ids=C.version_str)
def test_session_measurements_over_secured_doe_objects(pki_dir, version, tmp_path):
    config = ResponderConfig.from_pki(pki_dir, ("ecdsa-p384",), versions=(version,))
    with (
        PcapWriter(tmp_path / "s.pcap") as w,
        ResponderServer(lambda: Responder(config), "127.0.0.1", 0, pcap=w) as srv,
    ):
        report = _auth(srv.port, pki_dir, "ecdsa-p384", session=True)
    assert report.authenticated, report.to_dict()["checks"]
    assert report.session_measurements
    _, recs = read_pcap(tmp_path / "s.pcap")
    types = {S.decode_doe_object(r.data)[1] for r in recs}
    assert types == {1, 2}  # plain CMA and secured CMA objects both travelled


def test_untrusted_anchor_is_not_authenticated_over_the_socket(pki_dir):
    config = ResponderConfig.from_pki(pki_dir, ("ecdsa-p256",))
    with ResponderServer(lambda: Responder(config), "127.0.0.1", 0) as srv:
        report = _auth(srv.port, pki_dir, "ecdsa-p384")  # the other algorithm's root
    assert not report.authenticated


def test_requester_pcap_over_socket(pki_dir, tmp_path):
    config = ResponderConfig.from_pki(pki_dir, ("ecdsa-p256",))
    anchors = load_trust_anchors(pki_dir / "ecdsa-p256")
    with (
        ResponderServer(lambda: Responder(config), "127.0.0.1", 0) as srv,
        PcapWriter(tmp_path / "r.pcap") as w,
        S.SocketTransport("127.0.0.1", srv.port) as sock,
    ):
        report = Requester(PcapTransport(sock, w), RequesterConfig(trust_anchors=anchors)).authenticate()
    assert report.authenticated
    _, recs = read_pcap(tmp_path / "r.pcap")
    assert S.decode_doe_object(recs[0].data)[2][:2] == b"\x10\x84"  # GET_VERSION first
    assert len(recs) % 2 == 0


def test_responder_command(pki_dir):
    """`pciauth responder --listen 127.0.0.1:0` serves until SIGTERM and exits 0."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pciauth",
            "responder",
            "--listen",
            "127.0.0.1:0",
            "--pki",
            str(pki_dir),
            "--algorithm",
            "ecdsa-p384",
            "--versions",
            "1.2,1.3",
        ],  # fmt: skip
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, line
        report = _auth(int(m.group(1)), pki_dir, "ecdsa-p384")
        assert report.authenticated and report.version == "1.3"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped (1 connection(s))" in err


def test_responder_command_json_on_sigint(pki_dir):
    """IPv6 listen address, --json summary on stdout after Ctrl-C."""
    import json

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pciauth", "responder", "--listen", "[::1]:0", "--pki", str(pki_dir), "--json"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        m = re.search(r"listening on ::1:(\d+)", proc.stderr.readline())
        assert m
        with S.SocketTransport("::1", int(m.group(1))) as t:
            t.test()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["stats"]["connections"] == 1 and doc["listen"].startswith("::1:")


def test_responder_command_rejects_bad_options(pki_dir, tmp_path):
    from pciauth.cli import main

    assert main(["responder", "--pki", str(pki_dir), "--versions", "1.9", "--listen", "0"]) == 2
    assert main(["responder", "--pki", str(pki_dir), "--adversary", "no-such-row", "--listen", "0"]) == 2
    assert (
        main(["responder", "--pki", str(tmp_path / "none"), "--algorithm", "ecdsa-p256", "--listen", "0"])
        == 3
    )
    assert main(["responder", "--pki", str(pki_dir), "--listen", "host:"]) == 2
    assert main(["responder", "--listen", "0"]) == 2  # no --pki


def test_responder_command_lists_adversary_rows(pki_dir, capsys):
    from pciauth.cli import main

    assert main(["responder", "--adversary", "list"]) == 0
    assert "truncated-version" in capsys.readouterr().out


def test_adversary_row_served_over_the_socket(pki_dir):
    config = ResponderConfig.from_pki(pki_dir, ("ecdsa-p256",), adversary=("truncated-certificate",))
    with ResponderServer(lambda: Responder(config), "127.0.0.1", 0) as srv:
        report = _auth(srv.port, pki_dir, "ecdsa-p256")
    assert not report.authenticated
    assert report.exit_code in (5, 6)
