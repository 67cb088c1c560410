"""ResponderConfig.from_pki: a responder built from files authenticates with the CMA policy."""

from __future__ import annotations

from pciauth.spdm import pki
from pciauth.spdm.certs import load_trust_anchors
from pciauth.spdm.requester import Requester, RequesterConfig
from pciauth.spdm.responder import Responder, ResponderConfig
from pciauth.transport import CallableTransport


def test_responder_from_pki_directory_with_cma_policy(tmp_path):
    pki.init_pki(tmp_path, ["ecdsa-p256", "ecdsa-p384"])
    cfg = ResponderConfig.from_pki(tmp_path)
    assert len(cfg.slots) == 2
    anchors = load_trust_anchors([tmp_path / "ecdsa-p256" / "root.pem", tmp_path / "ecdsa-p384" / "root.pem"])
    for asym in (0x10, 0x80):  # ECDSA P-256, then P-384: each picks its own slot's key
        req = RequesterConfig(trust_anchors=anchors, policy="cma", identity=pki.DEFAULT_IDENTITY, base_asym=asym,
                              sleep=lambda s: None)
        report = Requester(CallableTransport(Responder(cfg).handle), req).authenticate()
        assert report.authenticated, report.error
        checks = {c["name"]: c["ok"] for c in report.slots[0].verdict["checks"]}
        assert checks["cma_name"] is True


def test_cma_policy_with_another_device_identity_fails(tmp_path):
    import dataclasses

    pki.init_pki(tmp_path, ["ecdsa-p256"])
    cfg = ResponderConfig.from_pki(tmp_path, ("ecdsa-p256",))
    other = dataclasses.replace(pki.DEFAULT_IDENTITY, device=pki.DEFAULT_IDENTITY.device ^ 1)
    req = RequesterConfig(trust_anchors=load_trust_anchors([tmp_path / "ecdsa-p256" / "root.pem"]), policy="cma",
                          identity=other, sleep=lambda s: None)
    report = Requester(CallableTransport(Responder(cfg).handle), req).authenticate()
    assert not report.authenticated and report.exit_code == 6
    assert "cma_name" in report.verdict("chain_trust").reason
