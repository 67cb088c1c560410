"""DMTF SPDM-Responder-Validator, test documents 4 (DIGESTS) and 5 (CERTIFICATE).

One test per validator case (doc/4.Digests.md, doc/5.Certificate.md of
DMTF/SPDM-Responder-Validator), named after it, checking every assertion of the case on the raw
bytes ``Responder(config).handle(request)`` returns. Every case here is skipped by the validator
when the responder's CERTIFICATE Flags have CERT_CAP == 0, so each test first asserts CERT_CAP is
set (the skip condition is checked, not assumed). Cases for what pciauth does not implement (SPDM
1.4 large certificates, chunking) assert the flag or version the validator skips on is absent.
The setup helpers are shared with test_conformance_vca.py.
"""

from __future__ import annotations

import re
import struct

import pytest
from conftest import pki_set
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, ObjectIdentifier
from test_conformance_vca import (
    VERSIONS,
    after_algorithms,
    after_capabilities,
    after_version,
    assert_error,
    cap,
    flags_of,
    get_capabilities,
    parse_algorithms,
)

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm import pki
from pciauth.spdm.certs import build_cert_chain, split_der_certificates
from pciauth.spdm.responder import ResponderConfig, Slot

E = C.ErrorCode
CERT_LENGTH = 0x400  # the validator's GET_CERTIFICATE Length


def slots_config(alg: str = "ecdsa-p384", slot_ids: tuple[int, ...] = (0,), **kw):
    """A responder with the test PKI of ``alg`` provisioned in each of ``slot_ids``."""
    s = pki_set(alg)
    return ResponderConfig(slots=[Slot(i, s.der_chain, s.leaf_key) for i in slot_ids], **kw)


def setup_digests(v: int, config=None):
    """Steps 1-7 of the 4.x setups (CERT_CAP checked), then GET_DIGESTS for the 5.x setups."""
    r, caps, algs = after_algorithms(v, config)
    assert cap(flags_of(caps), "CERT_CAP") == 1  # the validator skips the case when it is 0
    hash_size = A.hash_size(parse_algorithms(algs)["hash"])
    return r, caps, algs, hash_size


def digests_of(resp: bytes, hash_size: int) -> dict[int, bytes]:
    """``{slot: digest}`` from a DIGESTS response's SlotMask (Param2) and digest list."""
    slots = [s for s in range(8) if resp[3] >> s & 1]
    return {s: resp[4 + i * hash_size : 4 + (i + 1) * hash_size] for i, s in enumerate(slots)}


def read_chain(r, v: int, slot: int) -> tuple[bytes, list[bytes]]:
    """GET_CERTIFICATE (Length 0x400) until RemainderLength is 0, checking 5.1.1-5.1.4 and 5.1.7
    on every response; returns the chain and the responses."""
    chain, responses, offset = b"", [], 0
    while True:
        resp = r.handle(M.GetCertificate(v, slot, offset, CERT_LENGTH).encode())
        responses.append(resp)
        assert len(resp) >= 8  # 5.1.1: sizeof(CERTIFICATE) without CertChain
        assert resp[1] == C.Code.CERTIFICATE, f"response code 0x{resp[1]:02x}"  # 5.1.2
        assert resp[0] == v  # 5.1.3
        portion, remainder = struct.unpack_from("<HH", resp, 4)
        assert 0 < portion <= CERT_LENGTH  # 5.1.4
        assert len(resp) >= 8 + portion
        if v >= C.V13:
            assert resp[3] & 0x07 <= 3  # 5.1.7: Param2.CertInfo (CertModel)
        chain += resp[8 : 8 + portion]
        offset += portion
        if remainder == 0:
            return chain, responses
        assert len(responses) < 256  # a responder that never finishes fails here, not hangs


# ==================================================================================================
# 4. DIGESTS
# ==================================================================================================
@pytest.mark.parametrize("slot_ids", [(0,), (0, 3, 7)], ids=["slot0", "slots0,3,7"])
@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_4_1_digests(v, slot_ids):
    """Case 4.1: SPDM responder shall return valid DIGESTS, if it receives a GET_DIGESTS."""
    r, _, _, hash_size = setup_digests(v, slots_config(slot_ids=slot_ids))
    resp = r.handle(M.GetDigests(v).encode())
    assert len(resp) >= 4  # 4.1.1: offset(DIGESTS, Digest[0])
    assert resp[1] == C.Code.DIGESTS  # 4.1.2
    assert resp[0] == v  # 4.1.3
    assert resp[3] & 1  # 4.1.4: SlotMask bit 0
    slot_count = bin(resp[3]).count("1")
    assert len(resp) >= 4 + hash_size * slot_count  # 4.1.5
    assert slot_count == len(slot_ids)


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_4_2_digests_version_mismatch(v):
    """Case 4.2: SPDM responder shall return ERROR(VersionMismatch), if it receives a
    GET_DIGESTS with non negotiated version (NegotiatedVersion+1, then -1)."""
    r, _, _, _ = setup_digests(v)
    for other in (v + 1, v - 1):
        assert_error(r.handle(bytes((other, C.Code.GET_DIGESTS, 0, 0))), v, E.VERSION_MISMATCH)


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_4_3_digests_before_algorithms(v):
    """Case 4.3: SPDM responder shall return ERROR(UnexpectedRequest), if it receives a
    GET_DIGESTS before NEGOTIATE_ALGORITHMS (the ERROR is in the version CAPABILITIES chose)."""
    r, caps = after_capabilities(v)
    assert cap(flags_of(caps), "CERT_CAP") == 1
    assert_error(r.handle(M.GetDigests(v).encode()), v, E.UNEXPECTED_REQUEST)  # 4.3.1-4.3.5


# ==================================================================================================
# 5. CERTIFICATE
# ==================================================================================================
@pytest.mark.parametrize("slot_ids", [(0,), (0, 3, 7)], ids=["slot0", "slots0,3,7"])
@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_5_1_certificate(v, slot_ids):
    """Case 5.1: SPDM responder shall return valid CERTIFICATE, if it receives a
    GET_CERTIFICATE (Offset 0, Length 0x400, then on at the next offset until RemainderLength
    is 0), for every slot DIGESTS lists."""
    r, _, algs, hash_size = setup_digests(v, slots_config(slot_ids=slot_ids))
    digests = digests_of(r.handle(M.GetDigests(v).encode()), hash_size)
    assert sorted(digests) == list(slot_ids)
    for slot, digest in digests.items():
        chain, responses = read_chain(r, v, slot)  # 5.1.1-5.1.4, 5.1.7
        assert len(responses) > 1  # the chain is longer than 0x400: the loop of step 3 ran
        assert struct.unpack_from("<H", chain)[0] == len(chain)  # 5.1.5
        assert A.hash_bytes(parse_algorithms(algs)["hash"], chain) == digest  # 5.1.6


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_5_2_certificate_version_mismatch(v):
    """Case 5.2: SPDM responder shall return ERROR(VersionMismatch), if it receives a
    GET_CERTIFICATE with non negotiated version (NegotiatedVersion+1, then -1)."""
    r, _, _, _ = setup_digests(v)
    assert r.handle(M.GetDigests(v).encode())[1] == C.Code.DIGESTS
    for other in (v + 1, v - 1):
        request = bytearray(M.GetCertificate(v, 0, 0, CERT_LENGTH).encode())
        request[0] = other
        assert_error(r.handle(bytes(request)), v, E.VERSION_MISMATCH)  # 5.2.1-5.2.5


@pytest.mark.parametrize("slot_ids", [(0,), (0, 3, 7)], ids=["slot0", "slots0,3,7"])
@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_5_4_certificate_invalid_fields(v, slot_ids):
    """Case 5.4: SPDM responder shall return ERROR(InvalidRequest), if it receives a
    GET_CERTIFICATE with invalid field: every SlotID whose SlotMask bit is 0, SlotIDs 0x8-0xF,
    then slot 0 with Offset 0xFFFF. (The validator has no case 5.3.)"""
    r, _, _, _ = setup_digests(v, slots_config(slot_ids=slot_ids))
    mask = r.handle(M.GetDigests(v).encode())[3]
    invalid = [s for s in range(8) if not mask >> s & 1] + list(range(0x8, 0x10))
    requests = [M.GetCertificate(v, s, 0, CERT_LENGTH).encode() for s in invalid]
    requests.append(M.GetCertificate(v, 0, 0xFFFF, CERT_LENGTH).encode())
    for request in requests:
        assert_error(r.handle(request), v, E.INVALID_REQUEST)  # 5.4.1-5.4.5


# --- 5.5: the chain follows X.509 and SPDM --------------------------------------------------------
def _oid_der(dotted: str) -> bytes:
    """The DER encoding (tag, length, value) of an OBJECT IDENTIFIER."""
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        while p > 0x7F:
            p >>= 7
            chunk.append(0x80 | (p & 0x7F))
        body += bytes(reversed(chunk))
    return bytes((0x06, len(body))) + bytes(body)


#: DMTF OIDs of DSP0274 (id-DMTF 1.3.6.1.4.1.412, id-DMTF-spdm 274).
OID_DEVICE_INFO = "1.3.6.1.4.1.412.274.1"
OID_HARDWARE_IDENTITY = "1.3.6.1.4.1.412.274.2"
OID_EKU_RESPONDER = "1.3.6.1.4.1.412.274.3"
OID_EKU_REQUESTER = "1.3.6.1.4.1.412.274.4"
OID_MUTABLE_CERT = "1.3.6.1.4.1.412.274.5"


def has_oid(der: bytes, dotted: str) -> bool:
    """The OID occurs anywhere in the certificate (extension, EKU or SAN), as the validator finds it."""
    return _oid_der(dotted) in der


def device_info_values(cert: x509.Certificate) -> list[str]:
    """The UTF8String values of SAN otherNames of type id-DMTF-device-info."""
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for name in san.get_values_for_type(x509.OtherName):
        if name.type_id.dotted_string != OID_DEVICE_INFO:
            continue
        value = name.value
        if value[:1] == b"\xa0":  # [0] EXPLICIT around the string
            value = value[2:]
        assert value[:1] == b"\x0c" and value[1] < 0x80, "device-info is not a short UTF8String"
        out.append(value[2 : 2 + value[1]].decode("utf-8"))
    return out


def check_chain_5_5(chain: bytes, hash_bit: int, asym_sel: int, alias: bool) -> None:
    """Assertions 5.5.1-5.5.17 on one SPDM certificate chain (header, root hash, DER certificates)."""
    hash_size = A.hash_size(hash_bit)
    root_hash = chain[4 : 4 + hash_size]
    ders = split_der_certificates(chain[4 + hash_size :])
    certs = [x509.load_der_x509_certificate(d) for d in ders]
    first, leaf = certs[0], certs[-1]
    if first.issuer == first.subject:  # 5.5.1: a self-signed first certificate is the root
        first.verify_directly_issued_by(first)
        assert root_hash == A.hash_bytes(hash_bit, ders[0])
    for prev, cert in zip(certs, certs[1:], strict=False):  # 5.5.2
        cert.verify_directly_issued_by(prev)
    assert A.asym_bits_for_key(leaf.public_key()) & asym_sel  # 5.5.3
    for i, (der, cert) in enumerate(zip(ders, certs, strict=True)):
        is_leaf = i == len(certs) - 1
        assert cert.version == x509.Version.v3  # 5.5.4
        assert cert.serial_number is not None  # 5.5.5
        assert cert.signature_algorithm_oid.dotted_string  # 5.5.6
        assert len(cert.issuer) > 0  # 5.5.7
        assert len(cert.subject) > 0  # 5.5.8
        assert cert.not_valid_before_utc < cert.not_valid_after_utc  # 5.5.9
        assert cert.public_key() is not None  # 5.5.10
        cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)  # 5.5.11 (raises if absent)
        if is_leaf:  # 5.5.12
            try:
                bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
            except x509.ExtensionNotFound:
                bc = None
            assert bc is None or bc.ca is False, "leaf certificate is a CA"
        for text in device_info_values(cert):  # 5.5.13
            assert re.fullmatch(r"[^:]+:[^:]+:[^:]+", text), f"device-info {text!r}"
        if has_oid(der, OID_HARDWARE_IDENTITY):  # 5.5.14
            assert (not is_leaf) if alias else is_leaf, f"hardware-identity in certificate {i}"
        if has_oid(der, OID_EKU_RESPONDER):  # 5.5.15
            assert is_leaf, f"responder-auth EKU in certificate {i}"
        if has_oid(der, OID_EKU_REQUESTER):  # 5.5.16
            assert is_leaf and has_oid(der, OID_EKU_RESPONDER), f"requester-auth EKU in certificate {i}"
        if has_oid(der, OID_MUTABLE_CERT):  # 5.5.17
            assert alias, f"mutable-certificate in certificate {i} without ALIAS_CERT_CAP"


def dmtf_leaf(alg: str = "ecdsa-p384", *, in_intermediate: bool = False, device_info: str = "ACME:WIDGET:1234",
              eku: tuple[str, ...] = (OID_EKU_RESPONDER,)) -> list[bytes]:
    """The test PKI of ``alg`` with a new leaf carrying the DMTF OIDs of 5.5.13-16: a device-info
    otherName next to the CMA one, responder-auth EKU, the hardware-identity OID in the DMTF SPDM
    extension. ``in_intermediate`` puts the EKU/hardware-identity extensions on a new
    intermediate instead (a chain 5.5 must reject)."""
    s = pki_set(alg)
    spdm_ext = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.412.274.6"),
                                          bytes((0x30, 0x0E, 0x30, 0x0C)) + _oid_der(OID_HARDWARE_IDENTITY))
    ekus = x509.ExtendedKeyUsage([ObjectIdentifier(o) for o in eku])
    info = device_info.encode()
    san = x509.SubjectAlternativeName([
        *s.leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value,
        x509.OtherName(ObjectIdentifier(OID_DEVICE_INFO), bytes((0x0C, len(info))) + info)])
    extra = [(spdm_ext, False), (ekus, False)]
    inter, inter_key = s.inter, s.inter_key
    if in_intermediate:
        inter = pki.make_certificate(s.inter.subject, s.inter_key.public_key(), s.root_key, issuer=s.root.subject,
                                     ca=True, path_length=0, extra=extra)
        extra = []
    leaf = pki.make_certificate(s.leaf.subject, s.leaf_key.public_key(), inter_key, issuer=inter.subject,
                                ca=False, san=san, extra=extra)
    return [c.public_bytes(Encoding.DER) for c in (s.root, inter, leaf)]


def chain_config(chain: str) -> ResponderConfig:
    if chain == "dmtf-oids":
        return ResponderConfig(slots=[Slot(0, dmtf_leaf(), pki_set("ecdsa-p384").leaf_key)])
    return slots_config(chain)


@pytest.mark.parametrize("chain", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa2048", "dmtf-oids"])
@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_5_5_certificate_follows_x509_and_spdm(v, chain):
    """Case 5.5: The CERTIFICATE from device shall follow X.509 and SPDM specification.

    Run on the test PKI of each algorithm and on one whose leaf carries the DMTF OIDs
    (device-info, responder-auth EKU, hardware-identity). 5.5.3 is read as "the leaf's key is
    one for the negotiated BaseAsymSel". 5.5.16 ("if id-DMTF-ekurequester-auth is absent, it is
    in leaf certificate") is read as libspdm applies it to a responder's chain: requester-auth
    only in the leaf, and there only next to responder-auth.
    """
    r, caps, algs, hash_size = setup_digests(v, chain_config(chain))
    sel = parse_algorithms(algs)
    digests = digests_of(r.handle(M.GetDigests(v).encode()), hash_size)
    alias = v >= C.V12 and cap(flags_of(caps), "ALIAS_CERT_CAP") == 1
    for slot in digests:
        check_chain_5_5(read_chain(r, v, slot)[0], sel["hash"], sel["asym"], alias)


@pytest.mark.parametrize("bad,message", [
    ({"in_intermediate": True}, "in certificate 1"),
    ({"device_info": "ACME WIDGET"}, "device-info"),
    ({"eku": (OID_EKU_REQUESTER,)}, "requester-auth EKU in certificate 2"),
])
def test_case_5_5_checks_reject_misplaced_dmtf_oids(bad, message):
    """Case 5.5 (self-check): the 5.5.13-16 assertions above do fail on chains that break them,
    so their passing on pciauth's chains means something."""
    ders = dmtf_leaf(**bad)
    chain = build_cert_chain(ders, A.HASH_SHA384)
    with pytest.raises(AssertionError, match=message):
        check_chain_5_5(chain, A.HASH_SHA384, A.ASYM_ECDSA_P384, alias=False)
    check_chain_5_5(build_cert_chain(dmtf_leaf(), A.HASH_SHA384), A.HASH_SHA384, A.ASYM_ECDSA_P384, alias=False)


def test_case_5_6_certificate_slot_size_requested():
    """Case 5.6: SPDM responder shall return valid information, if it receives a
    GET_CERTIFICATE with SlotSizeRequested=1, and will ignore offset and length (SPDM 1.3+)."""
    v = C.V13
    r, _, _, hash_size = setup_digests(v)
    digests = digests_of(r.handle(M.GetDigests(v).encode()), hash_size)
    for slot in digests:
        resp = r.handle(M.GetCertificate(v, slot, 0xFFFF, 0xAA55, attributes=1).encode())
        assert len(resp) >= 8  # 5.6.1
        assert resp[1] == C.Code.CERTIFICATE  # 5.6.2
        assert resp[0] == v  # 5.6.3
        assert struct.unpack_from("<H", resp, 6)[0] > 0  # 5.6.4: RemainderLength


def _flags_beyond_1_3(v: int) -> int:
    caps = after_version().handle(get_capabilities(v))
    return flags_of(caps) & ~C.flags_mask_for_version(C.V13)


def test_case_5_7_large_certificate_not_applicable():
    """Case 5.7: SPDM responder shall return valid CERTIFICATE using large fields, if it receives
    a GET_CERTIFICATE with Param1 Bit[7]=1 and the responder's LARGE_RESP_CAP is set (SPDM 1.4+).

    Not applicable: pciauth speaks SPDM 1.0-1.3. Checked: VERSION does not list 1.4, a 1.4
    GET_CAPABILITIES is refused, and no CAPABILITIES sets a flag beyond 1.3's (LARGE_RESP_CAP
    is one), so the validator skips the case.
    """
    resp = after_version().handle(M.GetVersion().encode())
    assert all(e >> 8 < 0x14 for e in M.Version.parse(resp).entries)
    r = after_version()
    assert_error(r.handle(bytes((0x14, C.Code.GET_CAPABILITIES, 0, 0)) + bytes(16)), 0x10, E.VERSION_MISMATCH)
    assert all(_flags_beyond_1_3(v) == 0 for v in VERSIONS if v >= C.V11)


@pytest.mark.parametrize("v", [C.V12, C.V13], ids=C.version_str)
def test_case_5_8_complete_chain_while_chunking_not_applicable(v):
    """Case 5.8: SPDM responder shall not return a partial certificate chain, if it receives a
    GET_CERTIFICATE requesting the complete certificate chain (Offset=0, Length=0xFFFF) while
    chunking is enabled (SPDM 1.2+).

    Not applicable: pciauth does not implement chunking; the validator skips the case because
    CHUNK_CAP is clear, which is what this checks.
    """
    r, caps = after_capabilities(v)
    assert cap(flags_of(caps), "CERT_CAP") == 1
    assert cap(flags_of(caps), "CHUNK_CAP") == 0


def test_case_5_9_complete_large_chain_while_chunking_not_applicable():
    """Case 5.9: SPDM responder shall not return a partial certificate chain, if it receives a
    GET_CERTIFICATE requesting the complete certificate chain using large fields
    (LargeOffset=0, LargeLength=0xFFFFFFFF) while chunking is enabled (SPDM 1.4+).

    Not applicable: no SPDM 1.4, CHUNK_CAP clear and no flag beyond 1.3's (LARGE_RESP_CAP),
    each of which makes the validator skip the case.
    """
    resp = after_version().handle(M.GetVersion().encode())
    assert all(e >> 8 < 0x14 for e in M.Version.parse(resp).entries)
    for v in (C.V12, C.V13):
        _, caps = after_capabilities(v)
        assert cap(flags_of(caps), "CHUNK_CAP") == 0
        assert _flags_beyond_1_3(v) == 0
