"""Regressions found by fuzzing the certificate chain parser and trust anchor loader.

The fuzzer's inputs themselves are replayed by test_smoke.py (scripts/fuzz/crashes/spdm_certs and
trust_anchors). The parse-level cases (X.509 version 96, a duplicate extension, an unknown string
tag in a name, a PEM anchor with an invalid key) are tests/spdm_certs/test_certs_parse.py's; here:
the DER anchor, a good PEM anchor, and what the requester reports. Found by
``scripts/fuzz/run.py``; fixed in ``pciauth/spdm/certs.py`` (commit 1d8af83).
"""

from __future__ import annotations

import base64
import datetime

import pytest

from pciauth.errors import PciauthError
from pciauth.spdm import algorithms as A
from pciauth.spdm import pki
from pciauth.spdm.certs import build_cert_chain, load_trust_anchors, parse_cert_chain, verify_chain

H = A.HASH_SHA384


@pytest.fixture(scope="module")
def pkiset():
    return pki.generate_set("ecdsa-p384")


def _edit(der: bytes, old: bytes, new: bytes) -> bytes:
    assert old in der, "the certificate layout changed: update the edit"
    return der.replace(old, new, 1)


def _pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def test_chain_still_verifies_against_a_good_pem_anchor(pkiset, tmp_path):
    path = tmp_path / "anchor.pem"
    path.write_bytes(_pem(pkiset.der_chain[0]))
    chain = parse_cert_chain(build_cert_chain(pkiset.der_chain, H), H)
    verdict = verify_chain(chain, load_trust_anchors(path), policy="spdm-only", at_time=datetime.datetime(2027, 1, 1))
    assert verdict.check("trust_anchor").ok and verdict.check("signatures").ok


def test_der_anchor_with_invalid_public_key_is_refused(pkiset, tmp_path):
    """The DER form is refused at load too (the PEM form: tests/spdm_certs/test_certs_parse.py)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    point = pkiset.root.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    bad = _edit(pkiset.der_chain[0], point, point[:20] + bytes([point[20] ^ 1]) + point[21:])
    path = tmp_path / "anchor.der"
    path.write_bytes(bad)
    with pytest.raises(PciauthError, match="Invalid key"):
        load_trust_anchors(path)


def test_requester_reports_a_bad_device_certificate_as_a_device_problem(pkiset):
    from pciauth.spdm.requester import Requester, RequesterConfig
    from pciauth.spdm.responder import Responder, ResponderConfig, Slot
    from pciauth.transport import CallableTransport

    bad = _edit(pkiset.der_chain[-1], b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x60")
    responder = Responder(ResponderConfig(slots=[Slot(0, [*pkiset.der_chain[:-1], bad], pkiset.leaf_key)]))
    report = Requester(CallableTransport(responder.handle), RequesterConfig(trust_anchors=[pkiset.root])).authenticate()
    assert not report.authenticated
    assert report.error["exit_code"] != 1, report.error
