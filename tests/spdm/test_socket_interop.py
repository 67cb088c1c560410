"""Requester against responder over the spdm-emu socket protocol on loopback (PCI_DOE framing)."""

from __future__ import annotations

import pytest
from conftest import requester_config, responder_config

from pciauth.spdm.requester import Requester
from pciauth.spdm.responder import Responder

socket_mod = pytest.importorskip("pciauth.spdm.socket")
server_mod = pytest.importorskip("pciauth.spdm.socket_server")


@pytest.mark.parametrize("version", (0x10, 0x12, 0x13))
def test_authenticate_over_loopback_socket(version):
    cfg = responder_config()
    server = server_mod.ResponderServer(lambda: Responder(cfg), "127.0.0.1", 0).start()
    try:
        with socket_mod.SocketTransport("127.0.0.1", server.port) as transport:
            report = Requester(transport, requester_config(versions=(version,), session=version > 0x10)).authenticate()
        assert report.authenticated, report.error
        if version > 0x10:
            assert report.session["ended"] and len(report.session_measurements) == 5
    finally:
        server.stop()
