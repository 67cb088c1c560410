"""Responder conformance: ERROR codes for bad, out-of-order and unsupported requests.

Mirrors the expectations of the DMTF SPDM-Responder-Validator test cases: VersionMismatch for a
wrong SPDMVersion, UnexpectedRequest out of order, InvalidRequest for bad fields and lengths,
UnsupportedRequest for what the responder cannot do.
"""

from __future__ import annotations

import pytest
from conftest import responder_config

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.responder import Responder

E = C.ErrorCode
V = C.V12


def error_of(resp: bytes) -> int | None:
    return resp[2] if resp[1] == C.Code.ERROR else None


def negotiated(version=V, **kw) -> Responder:
    r = Responder(responder_config(**kw))
    assert r.handle(M.GetVersion().encode())[1] == C.Code.VERSION
    caps = M.GetCapabilities(version, 20, C.make_flags({"CERT_CAP": 1, "CHAL_CAP": 1}, C.REQUESTER_FLAGS),
                             0x1200, 0x1200).encode()
    assert r.handle(caps)[1] == C.Code.CAPABILITIES
    alg = M.NegotiateAlgorithms(version, 1, 2 if version >= C.V12 else 0, A.ALL_ASYM, A.ALL_HASH).encode()
    assert r.handle(alg)[1] == C.Code.ALGORITHMS
    return r


def test_get_version_must_be_1_0():
    r = Responder(responder_config())
    resp = r.handle(bytes((0x11, 0x84, 0, 0)))
    assert error_of(resp) == E.VERSION_MISMATCH and resp[0] == 0x10


def test_capabilities_before_version_is_unexpected():
    r = Responder(responder_config())
    assert error_of(r.handle(M.GetCapabilities(V, 0, 0x6, 0x1200, 0x1200).encode())) == E.UNEXPECTED_REQUEST


def test_capabilities_in_unsupported_version():
    r = Responder(responder_config(versions=(0x10, 0x11)))
    r.handle(M.GetVersion().encode())
    assert error_of(r.handle(M.GetCapabilities(0x12, 0, 6, 0x1200, 0x1200).encode())) == E.VERSION_MISMATCH


@pytest.mark.parametrize("flags,dts,mx", [
    (C.make_flags({"KEY_EX_CAP": 1}, C.REQUESTER_FLAGS), 0x1200, 0x1200),  # KEY_EX without ENCRYPT/MAC
    (C.make_flags({"PSK_CAP": 3}, C.REQUESTER_FLAGS), 0x1200, 0x1200),
    (0x6, 41, 0x1200),  # DataTransferSize below MinDataTransferSize
    (0x6, 0x1200, 0x1000),  # DataTransferSize above MaxSPDMmsgSize
])
def test_capabilities_invalid_fields(flags, dts, mx):
    r = Responder(responder_config())
    r.handle(M.GetVersion().encode())
    assert error_of(r.handle(M.GetCapabilities(V, 0, flags, dts, mx).encode())) == E.INVALID_REQUEST


def test_capabilities_twice_is_unexpected():
    r = negotiated()
    assert error_of(r.handle(M.GetCapabilities(V, 0, 6, 0x1200, 0x1200).encode())) == E.UNEXPECTED_REQUEST


def test_algorithms_before_capabilities_is_unexpected():
    r = Responder(responder_config())
    r.handle(M.GetVersion().encode())
    alg = M.NegotiateAlgorithms(V, 1, 2, A.ALL_ASYM, A.ALL_HASH).encode()
    assert error_of(r.handle(alg)) == E.UNEXPECTED_REQUEST


def test_algorithms_bad_length_and_struct_order():
    r = Responder(responder_config())
    r.handle(M.GetVersion().encode())
    r.handle(M.GetCapabilities(V, 0, 6, 0x1200, 0x1200).encode())
    bad = bytearray(M.NegotiateAlgorithms(V, 1, 2, A.ALL_ASYM, A.ALL_HASH).encode())
    bad[4] += 1
    assert error_of(r.handle(bytes(bad))) == E.INVALID_REQUEST
    unordered = M.NegotiateAlgorithms(V, 1, 2, A.ALL_ASYM, A.ALL_HASH,
                                      structs=[M.AlgStruct(3, 1), M.AlgStruct(2, 8)]).encode()
    assert error_of(r.handle(unordered)) == E.INVALID_REQUEST


def test_digests_before_negotiation_is_unexpected():
    r = Responder(responder_config())
    r.handle(M.GetVersion().encode())
    assert error_of(r.handle(M.GetDigests(0x10).encode())) == E.UNEXPECTED_REQUEST


def test_version_mismatch_after_negotiation():
    r = negotiated()
    assert error_of(r.handle(M.GetDigests(0x11).encode())) == E.VERSION_MISMATCH


def test_certificate_invalid_slot_and_offset():
    r = negotiated()
    assert error_of(r.handle(M.GetCertificate(V, 5, 0, 0x100).encode())) == E.INVALID_REQUEST
    assert error_of(r.handle(M.GetCertificate(V, 0, 0xFFF0, 0x100).encode())) == E.INVALID_REQUEST
    ok = r.handle(M.GetCertificate(V, 0, 0, 0x10).encode())
    cert = M.Certificate.parse(ok)
    assert len(cert.portion) == 0x10 and cert.remainder > 0


def test_challenge_invalid_summary_type_and_slot():
    r = negotiated()
    assert error_of(r.handle(M.Challenge(V, 0, 2, b"n" * 32).encode())) == E.INVALID_REQUEST
    assert error_of(r.handle(M.Challenge(V, 7, 0, b"n" * 32).encode())) == E.INVALID_REQUEST
    assert error_of(r.handle(M.Challenge(V, 0, 0, b"n" * 31).encode())) == E.INVALID_REQUEST


def test_challenge_without_chal_cap_is_unsupported():
    r = negotiated(capabilities={"CERT_CAP": 1, "MEAS_CAP": 1})
    assert error_of(r.handle(M.Challenge(V, 0, 0, b"n" * 32).encode())) == E.UNSUPPORTED_REQUEST


def test_measurements_invalid_index_and_unsigned_capability():
    r = negotiated()
    assert error_of(r.handle(M.GetMeasurements(V, 0, 0x77).encode())) == E.INVALID_REQUEST
    r = negotiated(capabilities={"CERT_CAP": 1, "CHAL_CAP": 1, "MEAS_CAP": 1})
    signed = M.GetMeasurements(V, 1, 1, b"n" * 32, 0).encode()
    assert error_of(r.handle(signed)) == E.INVALID_REQUEST


def test_unknown_and_unsupported_codes():
    r = negotiated()
    resp = r.handle(bytes((V, 0xE9, 0, 0)))  # KEY_UPDATE: not implemented
    assert error_of(resp) == E.UNSUPPORTED_REQUEST and resp[3] == 0xE9
    assert error_of(r.handle(bytes((V, 0x55, 0, 0)))) == E.UNSUPPORTED_REQUEST


def test_session_messages_outside_a_session():
    r = negotiated()
    assert error_of(r.handle(M.EndSession(V).encode())) == E.SESSION_REQUIRED
    assert error_of(r.handle(M.Finish(V, b"v" * 48).encode())) == E.SESSION_REQUIRED  # validator case 9.11


def test_key_exchange_in_1_0_is_unsupported():
    r = negotiated(version=0x10)
    ke = M.KeyExchange(0x10, 0, 0, 1, b"r" * 32, b"d" * 96, b"").encode()
    assert error_of(r.handle(ke)) == E.UNSUPPORTED_REQUEST


def test_short_message_and_secured_garbage():
    r = negotiated()
    assert error_of(r.handle(b"\x12")) == E.INVALID_REQUEST
    assert error_of(r.handle(b"\x01\x02\x03\x04\x05\x06", secured=True)) == E.SESSION_REQUIRED


def test_get_version_resets_the_connection():
    r = negotiated()
    r.handle(M.GetVersion().encode())
    assert error_of(r.handle(M.GetDigests(V).encode())) == E.UNEXPECTED_REQUEST


def test_respond_if_ready_without_pending_request():
    r = negotiated()
    assert error_of(r.handle(M.respond_if_ready(V, 0x83, 1))) == E.UNEXPECTED_REQUEST


def test_capabilities_transfer_size_without_chunk_cap():
    r = Responder(responder_config())
    r.handle(M.GetVersion().encode())
    assert error_of(r.handle(M.GetCapabilities(V, 0, 0x6, 0x100, 0x1200).encode())) == E.INVALID_REQUEST


@pytest.mark.parametrize("flags,problem", [
    ({"CERT_CAP": 1, "CHAL_CAP": 1}, None),
    ({"CHAL_CAP": 1}, "CHAL_CAP or MUT_AUTH_CAP without"),
    ({"CERT_CAP": 1, "PUB_KEY_ID_CAP": 1, "CHAL_CAP": 1}, "both set"),
    ({"MAC_CAP": 1, "CERT_CAP": 1, "CHAL_CAP": 1}, "MAC_CAP without KEY_EX_CAP"),
    ({"KEY_EX_CAP": 1, "CERT_CAP": 1}, "without ENCRYPT_CAP or MAC_CAP"),
    ({"PSK_CAP": 2, "MAC_CAP": 1}, "reserved value 2"),
])
def test_flag_rules(flags, problem):
    got = C.flag_problem(C.make_flags(flags), V, requester=True)
    assert (got is None) if problem is None else (problem in got)


def test_responses_respect_the_requester_data_transfer_size():
    r = Responder(responder_config())
    r.handle(M.GetVersion().encode())
    r.handle(M.GetCapabilities(V, 0, 6, 64, 64).encode())
    r.handle(M.NegotiateAlgorithms(V, 1, 2, A.ALL_ASYM, A.ALL_HASH).encode())
    cert = M.Certificate.parse(r.handle(M.GetCertificate(V, 0, 0, 0x400).encode()))
    assert len(cert.raw) == 64
    signed = M.GetMeasurements(V, 1, 0xFF, b"n" * 32, 0).encode()
    assert error_of(r.handle(signed)) == E.RESPONSE_TOO_LARGE


def test_slot_size_requested_in_1_3():
    r = negotiated(version=0x13)
    cert = M.Certificate.parse(r.handle(M.GetCertificate(0x13, 0, 0, 0, attributes=1).encode()))
    assert cert.portion == b"" and cert.remainder > 100
    full = M.Certificate.parse(r.handle(M.GetCertificate(0x13, 0, 0, 0x400).encode()))
    assert len(full.portion) + full.remainder == cert.remainder


def test_session_limit():
    import os as _os

    from pciauth.spdm import messages_session as MS

    r = negotiated(version=0x12)
    # a fresh responder negotiated without KEY_EX on the requester side refuses KEY_EXCHANGE
    ke = M.KeyExchange(V, 0, 0, 1, _os.urandom(32), bytes(96), b"").encode()
    assert error_of(r.handle(ke)) == E.UNSUPPORTED_REQUEST
    r = Responder(responder_config(max_sessions=2))
    r.handle(M.GetVersion().encode())
    flags = C.make_flags({"CERT_CAP": 1, "CHAL_CAP": 1, "KEY_EX_CAP": 1, "MAC_CAP": 1, "ENCRYPT_CAP": 1},
                         C.REQUESTER_FLAGS)
    r.handle(M.GetCapabilities(V, 0, flags, 0x1200, 0x1200).encode())
    structs = [M.AlgStruct(2, A.DHE_SECP384R1), M.AlgStruct(3, A.AEAD_AES_256_GCM), M.AlgStruct(5, 1)]
    r.handle(M.NegotiateAlgorithms(V, 1, 2, A.ASYM_ECDSA_P384, A.HASH_SHA384, structs=structs).encode())
    opaque = MS.encode_opaque(V, [MS.sm_supported_versions()])
    answers = []
    for i in range(3):
        _, pub = A.dhe_generate(A.DHE_SECP384R1)
        answers.append(r.handle(M.KeyExchange(V, 0, 0, i + 1, _os.urandom(32), pub, opaque).encode()))
    assert [a[1] for a in answers[:2]] == [C.Code.KEY_EXCHANGE_RSP] * 2
    assert error_of(answers[2]) == E.SESSION_LIMIT_EXCEEDED


def test_transcripts_are_bounded():
    r = negotiated()
    unsigned = M.GetMeasurements(V, 0, 1).encode()
    codes = {r.handle(unsigned)[1] for _ in range(6000)}  # ~80 bytes each: beyond 256 KiB of L1/L2
    assert codes == {C.Code.MEASUREMENTS, C.Code.ERROR}
    cert = M.GetCertificate(V, 0, 0, 0x400).encode()
    errors = [error_of(r.handle(cert)) for _ in range(300)]  # ~1 KiB each into B
    assert E.UNSPECIFIED in errors
    r.handle(M.GetVersion().encode())  # GET_VERSION starts over
    assert r.transcript.m1().startswith(M.GetVersion().encode())


def test_device_mode_measurement_is_always_raw():
    """DSP0274 1.2+: a device-mode block carries its bit field raw, never a digest (validator case 7.5)."""
    from pciauth.spdm.responder import MeasurementSpec

    spec = MeasurementSpec(6, C.MeasurementType.DEVICE_MODE, bytes(20))  # not marked raw
    block = spec.block(C.BASE_HASH_TO_MEAS_HASH[A.HASH_SHA384])
    assert block.is_raw and block.value == bytes(20)
    digest = MeasurementSpec(2, C.MeasurementType.MUTABLE_FIRMWARE, b"fw").block(C.BASE_HASH_TO_MEAS_HASH[A.HASH_SHA384])
    assert not digest.is_raw and len(digest.value) == 48


def test_strict_responder_lets_an_internal_error_through():
    """A device answers a bug with ERROR Unspecified; a strict responder (fuzzing) raises it."""
    for strict in (False, True):
        r = negotiated()
        r.strict = strict

        def broken(message, session):
            raise RuntimeError("handler bug")

        r._get_digests = broken
        if strict:
            with pytest.raises(RuntimeError, match="handler bug"):
                r.handle(M.GetDigests(V).encode())
        else:
            assert error_of(r.handle(M.GetDigests(V).encode())) == E.UNSPECIFIED


@pytest.mark.parametrize("in_session", [False, True], ids=["plain", "session"])
@pytest.mark.parametrize("version", [C.V11, C.V12, C.V13], ids=C.version_str)
def test_an_error_to_get_measurements_starts_l1_l2_over(version, in_session):
    """After ERROR to a GET_MEASUREMENTS, the next signed MEASUREMENTS covers only what follows the
    error (libspdm's responder resets L1/L2 there): a requester that restarts its log verifies."""
    import os

    from conformance_peer import assert_error, peer

    p = peer(version)
    slot = p.valid_slots()[0]
    session = p.open_session(slot) if in_session else None
    p.ok(M.get_measurements(version, 0, C.MEAS_OP_COUNT, requester_context=p.context()), C.Code.MEASUREMENTS,
         session)
    unknown_index = M.get_measurements(version, 0, 0x77, requester_context=p.context())
    assert_error(p.send(unknown_index, session), version, E.INVALID_REQUEST)
    signed = M.get_measurements(version, C.MEAS_ATTR_SIGNATURE, 1, os.urandom(32), slot, p.context())
    resp = p.ok(signed, C.Code.MEASUREMENTS, session)
    unsigned, signature = resp[: -p.sig_size], resp[-p.sig_size:]
    prefix = p.vca if version >= C.V12 else b""
    p.verify(slot, C.CONTEXT_MEASUREMENTS, prefix + signed + unsigned, signature)
