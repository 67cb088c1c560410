"""The SPDM certificate chain format: lengths, root hash field, DER splitting."""

from __future__ import annotations

import pytest
from certhelp import H, build, der
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pciauth.errors import MalformedData, PciauthError, UsageError
from pciauth.spdm.algorithms import HASH_SHA384, HASH_SHA512, hash_bytes
from pciauth.spdm.certs import build_cert_chain, parse_cert_chain, split_der_certificates

B = build()
DERS = [der(c) for c in B.certs]
GOOD = build_cert_chain(DERS, H)


def _with_body(body: bytes, hash_bit: int = H) -> bytes:
    """A chain header + root hash (of the real root) + ``body``; Length fixed up."""
    payload = hash_bytes(hash_bit, DERS[0]) + body
    return (4 + len(payload)).to_bytes(2, "little") + b"\0\0" + payload


@pytest.mark.parametrize("hash_bit", [H, HASH_SHA384, HASH_SHA512])
def test_round_trip(hash_bit):
    raw = build_cert_chain(DERS, hash_bit)
    chain = parse_cert_chain(raw, hash_bit)
    assert chain.der == DERS
    assert [c.subject for c in chain.certificates] == [c.subject for c in B.certs]
    assert chain.root_hash == hash_bytes(hash_bit, DERS[0])
    assert chain.leaf.subject == B.leaf.subject
    assert chain.digest() == hash_bytes(hash_bit, raw)
    assert int.from_bytes(raw[:2], "little") == len(raw)


def test_length_field_must_match():
    bad = (len(GOOD) + 1).to_bytes(2, "little") + GOOD[2:]
    with pytest.raises(MalformedData, match="Length field says") as e:
        parse_cert_chain(bad, H)
    assert e.value.field == "Length"


def test_shorter_than_header_and_hash():
    with pytest.raises(MalformedData, match="shorter than its header") as e:
        parse_cert_chain(GOOD[:20], H)
    assert e.value.field == "Length"


def test_wrong_hash_size_shifts_everything():
    # parsed with SHA-384 the first certificate starts 16 bytes late: not a DER SEQUENCE
    with pytest.raises(MalformedData) as e:
        parse_cert_chain(GOOD, HASH_SHA384)
    assert e.value.field in ("Length", "Certificates")


def test_empty_chain_names_the_field():
    with pytest.raises(MalformedData, match="no certificate") as e:
        parse_cert_chain(_with_body(b""), H)
    assert e.value.field == "Certificates"


def test_trailing_garbage():
    with pytest.raises(MalformedData, match="trailing byte") as e:
        parse_cert_chain(_with_body(b"".join(DERS) + b"\x00\x01\x02"), H)
    assert e.value.field == "Certificates"


def test_truncated_last_certificate():
    with pytest.raises(MalformedData, match="claims .* bytes but only"):
        parse_cert_chain(_with_body(b"".join(DERS)[:-5]), H)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\x30\x80" + b"\0" * 10, "indefinite length"),
        (b"\x30\x85\x01\x02\x03\x04\x05", "too large"),
        (b"\x30\x82\x01", "truncated DER length"),
        (b"\x30\x81\x05abcde", "non-minimal"),
        (b"\x30\x82\x00\x90" + b"\0" * 0x90, "non-minimal"),
        (b"\x31\x03abc", "not a DER SEQUENCE"),
        (b"\x30", "too short for a DER header"),
    ],
)
def test_der_header_checks(blob, message):
    with pytest.raises(MalformedData, match=message):
        split_der_certificates(blob)


def test_well_framed_garbage_is_not_a_certificate():
    with pytest.raises(MalformedData, match=r"Certificates\[1\]: not a valid X.509"):
        parse_cert_chain(_with_body(DERS[0] + b"\x30\x03\x02\x01\x00"), H)


def test_unknown_hash_bit_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_cert_chain(GOOD, 0x40)


def test_build_refuses_empty_and_oversized():
    with pytest.raises(UsageError):
        build_cert_chain([], H)
    with pytest.raises(UsageError, match="exceeds"):
        build_cert_chain(DERS * 60, H)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_pciauth_errors(data):
    try:
        parse_cert_chain(data, H)
    except PciauthError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_chain_only_raises_pciauth_errors(data):
    raw = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut])
    if data.draw(st.booleans()):  # keep the Length consistent so parsing goes deeper
        blob = len(blob).to_bytes(2, "little") + blob[2:] if len(blob) >= 2 else blob
    try:
        parse_cert_chain(blob, H)
    except PciauthError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_der_splitter_on_random_input(data):
    try:
        parts = split_der_certificates(data)
    except MalformedData:
        return
    assert b"".join(parts) == data


# --- inputs that make cryptography raise something other than ValueError (found by fuzzing) ---


def _edit(blob: bytes, old: bytes, new: bytes) -> bytes:
    assert old in blob
    return blob.replace(old, new, 1)


@pytest.mark.parametrize(
    "index, old, new, what",
    [
        (2, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x60", "InvalidVersion"),  # X.509 version 96
        (2, b"\x06\x03\x55\x1d\x0f", b"\x06\x03\x55\x1d\x13", "Duplicate"),  # 2nd basicConstraints
    ],
)
def test_exotic_cryptography_errors_are_malformed_data(index, old, new, what):
    ders = list(DERS)
    ders[index] = _edit(ders[index], old, new)
    with pytest.raises(MalformedData, match=rf"Certificates\[{index}\].*{what}"):
        parse_cert_chain(build_cert_chain(ders, H), H)


def test_unknown_string_tag_in_a_name_is_malformed_data():
    ders = list(DERS)
    ders[1] = _edit(ders[1], b"\x06\x03\x55\x04\x03\x0c", b"\x06\x03\x55\x04\x03\xfe")
    with pytest.raises(MalformedData, match=r"Certificates\[1\]"):
        parse_cert_chain(build_cert_chain(ders, H), H)


def test_pem_anchor_with_an_invalid_key_is_refused_at_load(tmp_path):
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from pciauth.spdm.certs import TrustAnchorError, load_trust_anchors

    point = B.root.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    bad = _edit(DERS[0], point, point[:20] + bytes([point[20] ^ 1]) + point[21:])
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bad) + b"-----END CERTIFICATE-----\n"
    (tmp_path / "anchor.pem").write_bytes(pem)
    with pytest.raises(TrustAnchorError, match="anchor.pem"):
        load_trust_anchors(tmp_path / "anchor.pem")


def test_verify_chain_refuses_a_broken_anchor_object():
    from cryptography import x509

    from pciauth.spdm.certs import TrustAnchorError, verify_chain

    # loads (cryptography parses extensions lazily) but has two basicConstraints
    broken = x509.load_der_x509_certificate(_edit(DERS[0], b"\x06\x03\x55\x1d\x0f", b"\x06\x03\x55\x1d\x13"))
    with pytest.raises(TrustAnchorError, match="trust anchor 0"):
        verify_chain(parse_cert_chain(GOOD, H), [broken])
