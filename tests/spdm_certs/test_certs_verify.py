"""verify_chain: every check has its own verdict and a precise reason."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import pytest
from certhelp import IDENTITY, NOW, build, chain_of, der, key, name
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.errors import MalformedData, UsageError
from pciauth.spdm.algorithms import HASH_SHA384
from pciauth.spdm.certs import CHECKS, build_cert_chain, cma_name, parse_cert_chain, verify_chain
from pciauth.spdm.pki import cma_san, generate_set, make_certificate

DAY = datetime.timedelta(days=1)


def verdict(certs, anchors, **kw):
    root = kw.pop("outside_root", None)
    return verify_chain(chain_of(certs, root=root), anchors, **{"identity": IDENTITY, **kw})


def only_failure(v, check):
    """Assert exactly ``check`` failed; return its reason."""
    failed = [c.name for c in v.failures]
    assert failed == [check], [(c.name, c.reason) for c in v.failures]
    assert not v.ok
    return v.check(check).reason


def test_good_chain_passes_every_check():
    b = build()
    v = verdict(b.certs, [b.root])
    assert v.ok, [(c.name, c.reason) for c in v.failures]
    assert [c.name for c in v.checks] == list(CHECKS)
    assert v.trust_anchor == b.root
    assert v.leaf_public_key.public_numbers() == b.leaf_key.public_key().public_numbers()
    d = v.to_dict()
    json.dumps(d)
    assert d["ok"] is True
    assert d["certificates"][2]["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert d["trust_anchor"] == b.root.subject.rfc4514_string()


@pytest.mark.parametrize("alg", ["ecdsa-p256", "rsa3072"])
def test_report_renders_each_certificate_as_cryptography_does(alg):
    """The report's PEM and fingerprint come from the DER read (fast path): same text as cryptography's."""
    from cryptography.hazmat.primitives import hashes, serialization

    from pciauth.spdm.certs import certificate_info

    s = generate_set(alg)
    v = verify_chain(parse_cert_chain(build_cert_chain(s.der_chain, HASH_SHA384), HASH_SHA384), [s.root],
                     policy="spdm-only")
    assert len(v.der) == len(v.certificates) == 3
    for info, cert in zip(v.to_dict()["certificates"], v.certificates, strict=True):
        assert info["pem"] == cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        assert info["sha256"] == cert.fingerprint(hashes.SHA256()).hex()
        assert info == certificate_info(cert)  # without the DER at hand: the same description


@pytest.mark.parametrize("alg", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa2048"])
def test_generated_pki_sets_verify(alg):
    s = generate_set(alg)
    v = verify_chain(
        parse_cert_chain(build_cert_chain(s.der_chain, HASH_SHA384), HASH_SHA384), [s.root], identity=IDENTITY
    )
    assert v.ok, [(c.name, c.reason) for c in v.failures]


def test_rsa_pss_links_verify():
    rk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    lk = key()
    rn = name("pss root")
    root = make_certificate(rn, rk.public_key(), rk, ca=True, path_length=0, rsa_pss=True)
    leaf = make_certificate(name("pss leaf"), lk.public_key(), rk, issuer=rn, ca=False,
                            san=cma_san(cma_name(IDENTITY)), rsa_pss=True)  # fmt: skip
    assert root.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    assert verdict([root, leaf], [root]).ok


def test_wrong_root_hash():
    b = build()
    raw = bytearray(build_cert_chain([der(c) for c in b.certs], 0x1))
    raw[5] ^= 0xFF
    v = verify_chain(parse_cert_chain(bytes(raw), 0x1), [b.root], identity=IDENTITY)
    assert "does not match the hash of the first (root) certificate" in only_failure(v, "root_hash")


def test_broken_link_signature():
    b = build()
    other = key()  # same issuer name, wrong signing key
    bad_leaf = make_certificate(name("test leaf"), b.leaf_key.public_key(), other, issuer=b.inter.subject,
                                ca=False, san=cma_san(cma_name(IDENTITY)))  # fmt: skip
    reason = only_failure(verdict([b.root, b.inter, bad_leaf], [b.root]), "signatures")
    assert "certificate 2" in reason and "signature does not verify" in reason


def test_broken_link_issuer_name():
    b = build()
    stranger = build(cn="other")
    reason = only_failure(verdict([b.root, b.inter, stranger.leaf], [b.root]), "signatures")
    assert "issuer name" in reason and "does not match subject" in reason


def test_leaf_first_order_is_explained():
    b = build()
    v = verdict([b.leaf, b.inter, b.root], [b.root])
    assert not v.check("signatures").ok
    assert "leaf-first" in v.check("signatures").reason


def test_self_signed_root_with_bad_signature():
    b = build()
    forged = make_certificate(b.root.subject, b.root_key.public_key(), key(), issuer=b.root.subject,
                              issuer_public_key=b.root_key.public_key(), ca=True, path_length=1)  # fmt: skip
    v = verdict([forged, b.inter, b.leaf], [forged])
    assert "claims to be self-signed" in v.check("signatures").reason
    assert not v.ok


def test_expired():
    b = build()
    reason = only_failure(verdict(b.certs, [b.root], at_time=NOW + 30 * 365 * DAY), "validity")
    assert "certificate 0" in reason and "expired on" in reason


def test_expired_leaf_now():
    b = build(leaf_kw={"not_before": NOW - 10 * DAY, "not_after": NOW - DAY})
    reason = only_failure(verdict(b.certs, [b.root]), "validity")
    assert "certificate 2" in reason and "expired" in reason


def test_not_yet_valid():
    b = build()
    reason = only_failure(verdict(b.certs, [b.root], at_time=NOW - 30 * DAY), "validity")
    assert "is not valid before" in reason


def test_naive_at_time_is_utc():
    b = build()
    naive = (NOW + DAY).replace(tzinfo=None)
    assert verdict(b.certs, [b.root], at_time=naive).ok


def test_untrusted_root_with_same_subject_and_key_id():
    genuine = build()
    ski = genuine.root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    fake = build(root_kw={"subject_key_id": ski})  # same names ("test root"), same SKI, other key
    assert fake.root.subject == genuine.root.subject
    reason = only_failure(verdict(fake.certs, [genuine.root]), "trust_anchor")
    assert "impostor" in reason


def test_no_trust_anchor_given():
    b = build()
    assert "no trust anchor given" in only_failure(verdict(b.certs, []), "trust_anchor")


def test_unrelated_anchor():
    b = build()
    other = build(cn="other")
    assert "no trust anchor is, or issued" in only_failure(verdict(b.certs, [other.root]), "trust_anchor")


def test_chain_starting_below_the_root():
    b = build()
    v = verdict([b.inter, b.leaf], [b.root], outside_root=b.root)
    assert v.ok, [(c.name, c.reason) for c in v.failures]
    assert "root trust anchor" in v.check("root_hash").reason
    assert v.trust_anchor == b.root


def test_chain_below_the_root_with_wrong_root_hash():
    b = build()
    other = build(cn="other")
    v = verdict([b.inter, b.leaf], [b.root], outside_root=other.root)
    assert "does not match the hash of the root trust anchor" in only_failure(v, "root_hash")


def test_chain_below_the_root_without_its_anchor():
    b = build()
    v = verdict([b.inter, b.leaf], [], outside_root=b.root)
    assert {c.name for c in v.failures} == {"root_hash", "trust_anchor"}
    assert "cannot be checked" in v.check("root_hash").reason


def test_intermediate_as_trust_anchor():
    b = build()
    v = verdict(b.certs, [b.inter])
    assert v.ok
    assert "certificate 1" in v.check("trust_anchor").reason


def test_reissued_anchor_with_same_key_is_trusted():
    b = build()
    reissued = make_certificate(b.root.subject, b.root_key.public_key(), b.root_key, ca=True, path_length=1)
    assert der(reissued) != der(b.root)
    assert verdict(b.certs, [reissued]).ok


def test_missing_ca_flag():
    b = build(inter_kw={"ca": None, "key_usage": "ca"})
    reason = only_failure(verdict(b.certs, [b.root]), "basic_constraints")
    assert "certificate 1" in reason and "no basicConstraints" in reason


def test_ca_false_on_intermediate():
    b = build(inter_kw={"ca": False, "key_usage": "ca"})
    assert "CA:FALSE" in only_failure(verdict(b.certs, [b.root]), "basic_constraints")


def test_path_length_exceeded():
    b = build(root_kw={"path_length": 0})
    assert "pathLen 0 but 1 CA(s) follow" in only_failure(verdict(b.certs, [b.root]), "basic_constraints")


def test_leaf_that_is_a_ca():
    b = build(leaf_kw={"ca": True, "key_usage": "leaf"})
    assert "the leaf" in only_failure(verdict(b.certs, [b.root]), "basic_constraints")


def test_ca_without_key_cert_sign():
    b = build(inter_kw={"key_usage": "leaf"})
    assert "lacks keyCertSign" in only_failure(verdict(b.certs, [b.root]), "key_usage")


def test_ca_without_key_usage():
    b = build(root_kw={"key_usage": "none"})
    assert "certificate 0" in only_failure(verdict(b.certs, [b.root]), "key_usage")


def test_leaf_without_digital_signature():
    b = build(leaf_kw={"key_usage": "ca"})
    assert "lacks digitalSignature" in only_failure(verdict(b.certs, [b.root]), "key_usage")


def test_leaf_without_key_usage():
    b = build(leaf_kw={"key_usage": "none"})
    assert "no keyUsage" in only_failure(verdict(b.certs, [b.root]), "key_usage")


# --- CMA name, under each policy ---


def test_cma_name_format():
    ident = dataclasses.replace(IDENTITY, vendor=0x8086, device=0xD5C, class_code=0x10802, revision=2,
                                subsystem_vendor=0xABC, subsystem_device=0x1, serial=0x1122334455667788)  # fmt: skip
    assert cma_name(ident) == (
        "Vendor=8086:Device=0d5c:CC=010802:REV=02:SSVID=0abc:SSID=0001:1122334455667788"
    )
    bridge = dataclasses.replace(ident, subsystem_vendor=None, subsystem_device=None, serial=0)
    assert cma_name(bridge) == "Vendor=8086:Device=0d5c:CC=010802:REV=02"


def test_wrong_cma_name_under_cma():
    b = build()
    other = dataclasses.replace(IDENTITY, device=0x9999)
    reason = only_failure(verdict(b.certs, [b.root], identity=other), "cma_name")
    assert "Device=a11e" in reason and "Device=9999" in reason


def test_wrong_cma_name_under_spdm_only_is_not_checked():
    b = build()
    other = dataclasses.replace(IDENTITY, device=0x9999)
    v = verdict(b.certs, [b.root], identity=other, policy="spdm-only")
    assert v.ok
    assert v.check("cma_name").skipped


def test_missing_san_under_each_policy():
    b = build(leaf_kw={"san": None})
    assert "no Subject Alternative Name" in only_failure(verdict(b.certs, [b.root]), "cma_name")
    v = verdict(b.certs, [b.root], policy="spdm-only")
    assert v.ok and "found: none" in v.check("cma_name").reason


def test_san_without_cma_other_name():
    b = build(leaf_kw={"san": x509.SubjectAlternativeName([x509.DNSName("device.example")])})
    assert "2.23.147" in only_failure(verdict(b.certs, [b.root]), "cma_name")
    assert verdict(b.certs, [b.root], policy="spdm-only").ok


def test_cma_name_in_upper_case_is_rejected_like_linux():
    b = build(leaf_kw={"san": cma_san(cma_name(IDENTITY).upper())})
    assert "letter case" in only_failure(verdict(b.certs, [b.root]), "cma_name")


def test_cma_name_not_a_utf8string():
    raw = cma_name(IDENTITY).encode()
    ia5 = x509.SubjectAlternativeName(
        [x509.OtherName(x509.ObjectIdentifier("2.23.147"), bytes([0x16, len(raw)]) + raw)]
    )
    b = build(leaf_kw={"san": ia5})
    assert "not a UTF8String" in only_failure(verdict(b.certs, [b.root]), "cma_name")


def test_cma_name_without_identity_is_present_but_not_compared():
    b = build()
    v = verdict(b.certs, [b.root], identity=None)
    assert v.ok and "not compared" in v.check("cma_name").reason


def test_long_cma_name_with_serial():
    ident = dataclasses.replace(IDENTITY, serial=0xFEEDFACECAFEBEEF)
    b = build(leaf_kw={"san": cma_san(cma_name(ident) + ":" + "x" * 100)})  # long form DER length
    reason = only_failure(verdict(b.certs, [b.root], identity=ident), "cma_name")
    assert "xxxx" in reason
    good = build(leaf_kw={"san": cma_san(cma_name(ident))})
    assert verdict(good.certs, [good.root], identity=ident).ok


def test_unknown_policy():
    b = build()
    with pytest.raises(UsageError, match="policy"):
        verdict(b.certs, [b.root], policy="lenient")


def test_every_failure_at_once_is_reported_separately():
    b = build(inter_kw={"ca": None, "key_usage": "leaf"}, leaf_kw={"san": None})
    v = verdict(b.certs, [], at_time=NOW + 40 * 365 * DAY)
    assert {c.name for c in v.failures} == {
        "trust_anchor",
        "validity",
        "basic_constraints",
        "key_usage",
        "cma_name",
    }


_FUZZ = build()
_FUZZ_DERS = [der(c) for c in _FUZZ.certs]


# mutated serial numbers (zero, negative) are what this test feeds on: cryptography's deprecation
# notice about them is expected here (pciauth itself reports them through its checks)
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(max_examples=int(os.environ.get("PCIAUTH_FUZZ_EXAMPLES", "200")), deadline=None)
@given(st.data())
def test_mutated_certificates_that_parse_always_get_a_verdict(data):
    """Flip bytes inside a certificate: either MalformedData at parse, or a verdict, never a crash."""
    index = data.draw(st.integers(0, 2))
    blob = bytearray(_FUZZ_DERS[index])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(4, len(blob) - 1))  # keep the outer DER header intact
        blob[pos] = data.draw(st.integers(0, 255))
    ders = list(_FUZZ_DERS)
    ders[index] = bytes(blob)
    try:
        chain = parse_cert_chain(build_cert_chain(ders, 0x1), 0x1)
    except MalformedData:
        return
    v = verify_chain(chain, [_FUZZ.root], identity=IDENTITY)
    json.dumps(v.to_dict())
    if bytes(blob) != _FUZZ_DERS[index] and not _same_content(bytes(blob), _FUZZ_DERS[index]):
        assert not v.ok or index == 2  # a changed CA certificate never verifies


def _same_content(a: bytes, b: bytes) -> bool:
    """A flip outside the signed part and the signature (e.g. the BIT STRING's unused-bits
    octet, which the X.509 parser ignores) leaves the same certificate: it may verify."""
    from cryptography import x509

    try:
        ca, cb = x509.load_der_x509_certificate(a), x509.load_der_x509_certificate(b)
    except ValueError:
        return False
    return ca.tbs_certificate_bytes == cb.tbs_certificate_bytes and ca.signature == cb.signature
