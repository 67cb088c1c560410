"""Every SPDM version through the real DOE path (dword padding included), with and without a session."""

from __future__ import annotations

import pytest

from pciauth.doe import DoeTransport, find_mailbox, open_mailboxes
from pciauth.emu import EmulatedDevice
from pciauth.spdm import constants as C
from pciauth.spdm.certs import load_trust_anchors
from pciauth.spdm.requester import Requester, RequesterConfig
from pciauth.spdm.responder import ResponderConfig


@pytest.mark.parametrize("version", C.ALL_VERSIONS, ids=lambda v: f"{v >> 4}.{v & 0xF}")
@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384"])
def test_version_over_doe(version, algorithm):
    probe = EmulatedDevice(1, algorithm=algorithm)
    pki = probe.pki
    config = ResponderConfig.from_pki(pki.directory, (pki.algorithm,), versions=(version,))
    device = EmulatedDevice(1, algorithm=algorithm, responder_config=config)
    transport = DoeTransport(find_mailbox(open_mailboxes(device.config)))
    cfg = RequesterConfig(trust_anchors=load_trust_anchors([str(pki.root_path)]), policy="cma",
                          identity=device.identity, session=version >= C.V11)
    report = Requester(transport, cfg).authenticate()
    assert report.authenticated, report.error
    assert report.version == f"{version >> 4}.{version & 0xF}"
    assert report.measurements
    if version >= C.V11:
        assert report.session and report.session_measurements
