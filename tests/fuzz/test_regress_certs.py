"""Regressions found by fuzzing the certificate chain parser and trust anchor loader.

Each test builds the crashing input from a freshly generated chain (the fuzzer's inputs, in
scripts/fuzz/crashes/spdm_certs and trust_anchors, are the same edits on another run's PKI) and
checks the rule: only pciauth errors escape. Found by ``scripts/fuzz/run.py``; fixed in
``pciauth/spdm/certs.py`` (commit 1d8af83) by the certificates' owner.
"""

from __future__ import annotations

import base64
import datetime

import pytest

from pciauth.errors import MalformedData, PciauthError
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


def test_bad_x509_version_in_device_chain_is_malformed_data(pkiset):
    leaf = pkiset.der_chain[-1]
    bad = _edit(leaf, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x60")  # version 96
    chain = build_cert_chain([*pkiset.der_chain[:-1], bad], H)
    with pytest.raises(MalformedData):
        parse_cert_chain(chain, H)


def test_unknown_string_tag_in_issuer_is_malformed_data(pkiset):
    inter = pkiset.der_chain[1]
    bad = _edit(inter, b"\x06\x03\x55\x04\x0a\x0c", b"\x06\x03\x55\x04\x0a\xfe")  # O= with tag 0xfe
    chain = build_cert_chain([pkiset.der_chain[0], bad, pkiset.der_chain[2]], H)
    with pytest.raises(MalformedData):
        parse_cert_chain(chain, H)


def _pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def test_pem_anchor_with_invalid_public_key_is_refused(pkiset, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    root = pkiset.der_chain[0]
    point = pkiset.root.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    bad_point = point[:20] + bytes([point[20] ^ 1]) + point[21:]
    bad = _edit(root, point, bad_point)
    path = tmp_path / "anchor.pem"
    path.write_bytes(_pem(bad))
    with pytest.raises(PciauthError):
        load_trust_anchors(path)  # refused at load time, like the DER form below


def test_chain_still_verifies_against_a_good_pem_anchor(pkiset, tmp_path):
    path = tmp_path / "anchor.pem"
    path.write_bytes(_pem(pkiset.der_chain[0]))
    chain = parse_cert_chain(build_cert_chain(pkiset.der_chain, H), H)
    verdict = verify_chain(chain, load_trust_anchors(path), policy="spdm-only", at_time=datetime.datetime(2027, 1, 1))
    assert verdict.check("trust_anchor").ok and verdict.check("signatures").ok


def test_der_anchor_with_invalid_public_key_is_refused(pkiset, tmp_path):
    """The DER path already checks the key (the PEM one above should do the same)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    point = pkiset.root.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    bad = _edit(pkiset.der_chain[0], point, point[:20] + bytes([point[20] ^ 1]) + point[21:])
    path = tmp_path / "anchor.der"
    path.write_bytes(bad)
    with pytest.raises(PciauthError, match="Invalid key"):
        load_trust_anchors(path)


def test_duplicate_extension_is_malformed_data(pkiset):
    leaf = pkiset.der_chain[-1]
    bad = _edit(leaf, b"\x06\x03\x55\x1d\x0f", b"\x06\x03\x55\x1d\x13")  # KeyUsage -> a 2nd BasicConstraints
    chain = build_cert_chain([*pkiset.der_chain[:-1], bad], H)
    with pytest.raises(MalformedData):
        parse_cert_chain(chain, H)


def test_requester_reports_a_bad_device_certificate_as_a_device_problem(pkiset):
    from pciauth.spdm.requester import Requester, RequesterConfig
    from pciauth.spdm.responder import Responder, ResponderConfig, Slot
    from pciauth.transport import CallableTransport

    bad = _edit(pkiset.der_chain[-1], b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x60")
    responder = Responder(ResponderConfig(slots=[Slot(0, [*pkiset.der_chain[:-1], bad], pkiset.leaf_key)]))
    report = Requester(CallableTransport(responder.handle), RequesterConfig(trust_anchors=[pkiset.root])).authenticate()
    assert not report.authenticated
    assert report.error["exit_code"] != 1, report.error
