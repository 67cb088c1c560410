"""Interop with QEMU's NVMe ``spdm_port``: QEMU is the socket client, our server the responder.

pciauth's requester drives QEMU's DOE mailbox (through qtest, no guest); QEMU forwards each CMA
object over the spdm-emu protocol to ResponderServer serving pciauth's Responder.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from qemuhelp import QEMU, Qtest, QtestConfigSpace

from pciauth.doe.mailbox import DoeMailbox
from pciauth.doe.transport import DoeTransport
from pciauth.pci.capabilities import find_extended
from pciauth.pci.device import DeviceIdentity
from pciauth.spdm import constants as C
from pciauth.spdm.certs import load_trust_anchors
from pciauth.spdm.pki import init_pki
from pciauth.spdm.requester import Requester, RequesterConfig
from pciauth.spdm.responder import Responder, ResponderConfig
from pciauth.spdm.socket_server import ResponderServer

pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed"),
    pytest.mark.slow,
]


def identity_of(cfg) -> DeviceIdentity:
    return DeviceIdentity(
        vendor=cfg.read16(0),
        device=cfg.read16(2),
        class_code=cfg.read32(8) >> 8,
        revision=cfg.read8(8),
        subsystem_vendor=cfg.read16(0x2C),
        subsystem_device=cfg.read16(0x2E),
        serial=None,
    )


class LateResponder:
    """QEMU connects before the test knows the device ids: build the Responder on first use."""

    def __init__(self, box: dict) -> None:
        self.box, self.responder = box, None

    def handle(self, message: bytes, *, secured: bool = False) -> bytes:
        if self.responder is None:
            self.responder = Responder(self.box["config"])
        return self.responder.handle(message, secured=secured)


@pytest.fixture
def qemu_nvme(tmp_path):
    """(server, config space of the NVMe, holder for the responder config)."""
    box: dict = {}
    server = ResponderServer(lambda: LateResponder(box), "127.0.0.1", 0).start()
    qt = Qtest(server.port)
    try:
        qt.enable_ecam()
        cfg = QtestConfigSpace(qt, dev=1)
        if cfg.read16(0) != 0x1B36:
            pytest.skip("QEMU NVMe not at 00:01.0")
        yield server, cfg, box
    finally:
        qt.close()
        server.stop()


@pytest.mark.parametrize(
    "version, session", [(C.V12, False), (C.V13, False), (C.V12, True)], ids=["1.2", "1.3", "1.2-session"]
)
def test_authenticate_qemu_nvme_through_its_doe_mailbox(qemu_nvme, tmp_path, version, session):
    server, cfg, box = qemu_nvme
    ident = identity_of(cfg)
    assert (ident.vendor, ident.device, ident.class_code) == (0x1B36, 0x0010, 0x010802)
    init_pki(tmp_path / "pki", ["ecdsa-p256"], identity=dataclasses.replace(ident))
    box["config"] = ResponderConfig.from_pki(tmp_path / "pki", ("ecdsa-p256",), versions=(version,))
    (offset,) = find_extended(cfg, 0x2E)
    mailbox = DoeMailbox(cfg, offset, timeout=5.0)
    assert [(p.vendor, p.type) for p in mailbox.discover()] == [(1, 0), (1, 1), (1, 2)]  # QEMU answers these
    config = RequesterConfig(
        trust_anchors=load_trust_anchors(tmp_path / "pki" / "ecdsa-p256" / "root.pem"),
        policy="cma",
        identity=ident,
        session=session,
    )
    t0 = time.monotonic()
    report = Requester(DoeTransport(mailbox), config).authenticate()
    assert report.authenticated, report.to_dict()["checks"]
    assert report.version == C.version_str(version)
    if session:  # secured CMA objects (DOE type 2) went through QEMU too
        assert report.session_measurements
    assert server.stats["frames"] > 5 and server.stats["errors"] == 0
    assert time.monotonic() - t0 < 60


def test_qemu_with_nothing_listening_refuses_to_start():
    import socket
    import subprocess

    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.run(
        [QEMU, "-M", "q35", "-nodefaults", "-display", "none", "-S", "-device", f"nvme,serial=x,spdm_port={port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode != 0
