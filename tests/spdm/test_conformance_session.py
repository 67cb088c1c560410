"""Responder conformance, case by case: DMTF SPDM-Responder-Validator documents 8, 9, 12, 13, 16.

KEY_EXCHANGE_RSP (8), FINISH_RSP (9), HEARTBEAT_ACK (12), KEY_UPDATE_ACK (13), END_SESSION_ACK (16).
Each test is one validator case, named after it, checking the case's assertions on the raw bytes
``Responder.handle`` returns (session messages encrypted and decrypted by the test's own
requester side, :mod:`conformance_peer`). Cases that name 1.2 only run for 1.3 as well.

pciauth's responder has no HANDSHAKE_IN_THE_CLEAR_CAP, HBEAT_CAP or KEY_UPD_CAP. The validator
skips those cases when the bit is clear; here each such case checks its skip condition instead:
the bit is clear in CAPABILITIES, and the responder behaves as one without the capability must
(the request gets ERROR(UnsupportedRequest) with the request code as ErrorData, or the handshake
stays encrypted).
"""

from __future__ import annotations

import os

import pytest
from conformance_peer import ALL, SESSION_VERSIONS, E, assert_error, bump, peer

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.keyschedule import SessionKeys

NONE, TCB, ALL_MEAS = C.MEAS_SUMMARY_NONE, C.MEAS_SUMMARY_TCB, C.MEAS_SUMMARY_ALL
SUMMARIES = (NONE, TCB, ALL_MEAS)
V12_PLUS = [C.V12, C.V13]
HS_CLEAR = C.make_flags({"HANDSHAKE_IN_THE_CLEAR_CAP": 1}, C.REQUESTER_FLAGS)


def flag(p, name: str) -> int:
    return C.flag_value(p.rsp_flags, name)


def session_peer(version: int, **kw):
    """TestSetup of the session cases, its skip condition checked: KEY_EX_CAP and CERT_CAP set."""
    p = peer(version, **kw)
    assert flag(p, "KEY_EX_CAP") and flag(p, "CERT_CAP")
    assert p.dhe_bit and p.aead_bit
    return p


# --- document 8: KEY_EXCHANGE_RSP ------------------------------------------------------------------
def key_exchange_success(version: int, policy: int) -> None:
    """Cases 8.1/8.7: for each valid slot and summary type, a fresh connection, GET_CERTIFICATE and
    KEY_EXCHANGE (as the validator's code does), then assertions x.1-x.6."""
    p = session_peer(version)
    assert flag(p, "MEAS_CAP")  # so the TcbMeasurements/AllMeasurement repeats apply
    for slot in p.valid_slots():
        for summary in SUMMARIES:
            p.connect()
            p.get_certificate(slot)
            ke, priv, req_sid = p.key_exchange_request(slot, summary, policy=policy)
            resp = p.send(ke)
            assert resp[1] == C.Code.KEY_EXCHANGE_RSP, resp.hex()  # x.2
            rsp = p.parse_key_exchange_rsp(resp, summary)
            h = p.hash_size
            fixed = 4 + 4 + 32 + A.dhe_group(p.dhe_bit).public_size + (h if summary else 0) + 2
            assert len(resp) == fixed + len(rsp.opaque) + p.sig_size + h  # x.1 (with ResponderVerifyData)
            assert resp[0] == version  # x.3
            assert rsp.mut_auth_requested == 0 and rsp.req_slot_id == 0  # x.4
            th = p.vca + A.hash_bytes(p.hash_bit, p.chains[slot]) + ke + rsp.signed_part
            p.verify(slot, C.CONTEXT_KEY_EXCHANGE_RSP, th, rsp.signature)  # x.5
            th1 = A.hash_bytes(p.hash_bit, th + rsp.signature)
            secret = A.dhe_shared(p.dhe_bit, priv, rsp.exchange_data)
            keys = SessionKeys.from_dhe(version, p.hash_bit, p.aead_bit, secret, th1)
            keys.check_responder_verify_data(th1, rsp.verify_data)  # x.6 HMACVerify(finished_key, ...)


def test_case_8_1_key_exchange_rsp_1_1():
    """Case 8.1: valid KEY_EXCHANGE_RSP for a KEY_EXCHANGE with negotiated version 1.1."""
    key_exchange_success(C.V11, 0)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_8_7_key_exchange_rsp_1_2(version):
    """Case 8.7: valid KEY_EXCHANGE_RSP for a KEY_EXCHANGE with negotiated version 1.2+
    (SessionPolicy.TerminationPolicy=1)."""
    key_exchange_success(version, C.SESSION_POLICY_TERMINATION)


def handshake_in_the_clear_not_offered(version: int) -> None:
    """Skip condition of the HANDSHAKE_IN_THE_CLEAR cases, checked.

    The requester offers HANDSHAKE_IN_THE_CLEAR_CAP; the responder's bit is clear, so the
    handshake is not in the clear: KEY_EXCHANGE_RSP carries ResponderVerifyData (checked) and a
    FINISH sent outside the session is refused (SessionRequired from 1.2, UnexpectedRequest in
    1.1, which has no SessionRequired).
    """
    p = peer(version, req_flags=C.make_flags({"CERT_CAP": 1, "CHAL_CAP": 1, "ENCRYPT_CAP": 1, "MAC_CAP": 1,
                                              "KEY_EX_CAP": 1}, C.REQUESTER_FLAGS) | HS_CLEAR)
    assert flag(p, "KEY_EX_CAP") and flag(p, "CERT_CAP")
    assert flag(p, "HANDSHAKE_IN_THE_CLEAR_CAP") == 0
    session = p.key_exchange(p.valid_slots()[0])  # verifies the signature and ResponderVerifyData
    fin = p.finish_request(session)
    expected = E.SESSION_REQUIRED if version >= C.V12 else E.UNEXPECTED_REQUEST
    assert_error(p.send(fin), version, expected)
    assert p.finish(session)[1] == C.Code.FINISH_RSP  # in the session it works


def test_case_8_2_key_exchange_rsp_hs_clear_1_1_not_applicable():
    """Case 8.2: KEY_EXCHANGE_RSP with HANDSHAKE_IN_THE_CLEAR, version 1.1.

    Not applicable: HANDSHAKE_IN_THE_CLEAR_CAP is clear (the validator skips); checked.
    """
    handshake_in_the_clear_not_offered(C.V11)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_8_8_key_exchange_rsp_hs_clear_1_2_not_applicable(version):
    """Case 8.8: KEY_EXCHANGE_RSP with HANDSHAKE_IN_THE_CLEAR, version 1.2+.

    Not applicable: HANDSHAKE_IN_THE_CLEAR_CAP is clear (the validator skips); checked.
    """
    handshake_in_the_clear_not_offered(version)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_8_3_key_exchange_version_mismatch(version):
    """Case 8.3: ERROR(VersionMismatch) for a KEY_EXCHANGE with a non-negotiated version (+1, -1)."""
    p = session_peer(version)
    for other in (bump(version, 1), bump(version, -1)):
        ke, _, _ = p.key_exchange_request(p.valid_slots()[0], version=other)
        assert_error(p.send(ke), version, E.VERSION_MISMATCH)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_8_5_key_exchange_in_session_application(version):
    """Case 8.5: ERROR(UnexpectedRequest) for a KEY_EXCHANGE in a session application phase."""
    p = session_peer(version)
    session = p.open_session()
    ke, _, _ = p.key_exchange_request(p.valid_slots()[0])
    assert_error(p.send(ke, session), version, E.UNEXPECTED_REQUEST)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_8_6_key_exchange_invalid_fields(version):
    """Case 8.6: ERROR(InvalidRequest) for a KEY_EXCHANGE with an invalid field.

    Unprovisioned slots, 0x8-0xF and 0xFF; MeasurementSummaryHashType TcbMeasurements+1 and
    AllMeasurements-1; OpaqueDataLength 0xFFFF.
    """
    p = session_peer(version)
    invalid = [s for s in range(8) if not p.slot_mask >> s & 1] + list(range(8, 16)) + [0xFF]
    assert 1 in invalid
    for slot in invalid:
        assert_error(p.send(p.key_exchange_request(slot)[0]), version, E.INVALID_REQUEST)
    for summary in (TCB + 1, ALL_MEAS - 1):
        assert_error(p.send(p.key_exchange_request(0, summary)[0]), version, E.INVALID_REQUEST)
    ke = bytearray(p.key_exchange_request(0)[0])
    at = 40 + A.dhe_group(p.dhe_bit).public_size  # header, ids, policy, RandomData, ExchangeData
    ke[at : at + 2] = b"\xff\xff"
    assert_error(p.send(bytes(ke)), version, E.INVALID_REQUEST)
    assert p.responder.sessions == {}  # none of these opened a session


# --- document 9: FINISH_RSP --------------------------------------------------------------------------
def finish_success(version: int) -> None:
    p = session_peer(version)
    for slot in p.valid_slots():
        p.connect()
        p.get_certificate(slot)
        session = p.key_exchange(slot)
        resp = p.finish(session)
        assert len(resp) >= 4  # x.1: sizeof(FINISH_RSP) without ResponderVerifyData (not in the clear)
        assert resp[1] == C.Code.FINISH_RSP  # x.2
        assert resp[0] == version  # x.3
        assert len(resp) == 4
        # TH2 agreed on: the data-phase keys both sides derived open each other's records
        assert p.send(M.EndSession(version).encode(), session)[1] == C.Code.END_SESSION_ACK


def test_case_9_1_finish_rsp_1_1():
    """Case 9.1: valid FINISH_RSP for a FINISH with negotiated version 1.1 (in the session)."""
    finish_success(C.V11)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_9_9_finish_rsp_1_2(version):
    """Case 9.9: valid FINISH_RSP for a FINISH with negotiated version 1.2 (and 1.3)."""
    finish_success(version)


def test_case_9_2_finish_rsp_hs_clear_1_1_not_applicable():
    """Case 9.2: FINISH_RSP with HANDSHAKE_IN_THE_CLEAR, version 1.1.

    Not applicable: HANDSHAKE_IN_THE_CLEAR_CAP is clear (the validator skips); checked.
    """
    handshake_in_the_clear_not_offered(C.V11)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_9_17_finish_rsp_hs_clear_1_2_not_applicable(version):
    """Case 9.17 (assertions 9.10.x): FINISH_RSP with HANDSHAKE_IN_THE_CLEAR, version 1.2.

    Not applicable: HANDSHAKE_IN_THE_CLEAR_CAP is clear (the validator skips); checked.
    """
    handshake_in_the_clear_not_offered(version)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_9_8_finish_hs_clear_bad_verify_data_not_applicable(version):
    """Case 9.8: ERROR(DecryptError) for a FINISH with HANDSHAKE_IN_THE_CLEAR and bad RequesterVerifyData.

    Not applicable: HANDSHAKE_IN_THE_CLEAR_CAP is clear (the validator skips); checked.
    """
    handshake_in_the_clear_not_offered(version)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_9_3_finish_version_mismatch(version):
    """Case 9.3: ERROR(VersionMismatch) for a FINISH with a non-negotiated version (+1, -1), in the session."""
    p = session_peer(version)
    session = p.key_exchange(p.valid_slots()[0])
    for other in (bump(version, 1), bump(version, -1)):
        assert_error(p.send(p.finish_request(session, version=other), session), version, E.VERSION_MISMATCH)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_9_4_finish_before_negotiate_algorithms(version):
    """Case 9.4: ERROR(UnexpectedRequest) for a FINISH before NEGOTIATE_ALGORITHMS."""
    p = peer(version, discover=False)
    p.get_version()
    p.get_capabilities()
    assert flag(p, "KEY_EX_CAP")
    assert_error(p.send(M.Finish(version, os.urandom(48)).encode()), version, E.UNEXPECTED_REQUEST)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_9_5_finish_in_session_application(version):
    """Case 9.5: ERROR(UnexpectedRequest) for a FINISH in a session application phase."""
    p = session_peer(version)
    session = p.open_session()
    assert_error(p.send(p.finish_request(session), session), version, E.UNEXPECTED_REQUEST)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_9_6_finish_invalid_fields(version):
    """Case 9.6: ERROR(InvalidRequest) for a FINISH with an invalid field, in the session.

    Param1.Sig=1 (mutual authentication was not asked for) with ReqSlotID 0x1-0x7, then
    0x8-0xF and 0xFF; then Sig=0 without RequesterVerifyData.
    """
    p = session_peer(version)
    session = p.key_exchange(p.valid_slots()[0])
    vd = p.finish_request(session)[4:]
    for req_slot in list(range(1, 8)) + list(range(8, 16)) + [0xFF]:
        req = bytes((version, C.Code.FINISH, 1, req_slot)) + vd
        assert_error(p.send(req, session), version, E.INVALID_REQUEST)
    assert_error(p.send(bytes((version, C.Code.FINISH, 0, 0)), session), version, E.INVALID_REQUEST)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_9_7_finish_bad_verify_data(version):
    """Case 9.7: ERROR(DecryptError) for a FINISH with an invalid RequesterVerifyData (no Param2 check)."""
    p = session_peer(version)
    session = p.key_exchange(p.valid_slots()[0])
    fin = bytearray(p.finish_request(session))
    fin[-1] ^= 0x01
    assert_error(p.send(bytes(fin), session), version, E.DECRYPT_ERROR, param2=None)
    assert session.session_id not in p.responder.sessions  # the failed handshake left no session


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_9_11_finish_outside_session(version):
    """Case 9.11: ERROR(SessionRequired) for a FINISH not in the session (version 1.2, and 1.3).

    Fixed: the responder answered UnexpectedRequest. (1.1 keeps UnexpectedRequest: DSP0274 1.1
    has no SessionRequired code.)
    """
    p = session_peer(version)
    session = p.key_exchange(p.valid_slots()[0])
    assert_error(p.send(p.finish_request(session)), version, E.SESSION_REQUIRED, param2=None)


# --- documents 12 and 13: HEARTBEAT_ACK, KEY_UPDATE_ACK (capabilities not implemented) --------------
def unsupported(version: int, cap: str, code: int, where: str) -> None:
    """Skip condition of a HEARTBEAT/KEY_UPDATE case, checked: ``cap`` is clear (and, for the
    session cases, HeartbeatPeriod is 0); the request gets ERROR(UnsupportedRequest, code) ``where``
    the case sends it: "application" (established session), "handshake" or "clear" (no session)."""
    p = session_peer(version)
    assert flag(p, cap) == 0
    req = bytes((version, code, 1 if code == C.Code.KEY_UPDATE else 0, 0x5A if code == C.Code.KEY_UPDATE else 0))
    if where == "clear":
        resp = p.send(req)
    else:
        session = p.key_exchange(p.valid_slots()[0])
        assert session.response.heartbeat_period == 0
        if where == "application":
            assert p.finish(session)[1] == C.Code.FINISH_RSP
        resp = p.send(req, session)
    assert_error(resp, version, E.UNSUPPORTED_REQUEST, param2=code)


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_12_1_heartbeat_ack_not_applicable(version):
    """Case 12.1: valid HEARTBEAT_ACK for a HEARTBEAT in a DHE session.

    Not applicable: HBEAT_CAP is clear and HeartbeatPeriod 0 (the validator skips); HEARTBEAT
    in the session gets ERROR(UnsupportedRequest).
    """
    unsupported(version, "HBEAT_CAP", C.Code.HEARTBEAT, "application")


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_12_2_heartbeat_version_mismatch_not_applicable(version):
    """Case 12.2: ERROR(VersionMismatch) for a HEARTBEAT with a non-negotiated version in a session.

    Not applicable: HBEAT_CAP is clear (the validator skips); HEARTBEAT gets UnsupportedRequest.
    """
    unsupported(version, "HBEAT_CAP", C.Code.HEARTBEAT, "application")


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_12_3_heartbeat_in_handshake_not_applicable(version):
    """Case 12.3: ERROR(UnexpectedRequest) for a HEARTBEAT in a DHE session handshake.

    Not applicable: HBEAT_CAP is clear (the validator skips); HEARTBEAT gets UnsupportedRequest.
    """
    unsupported(version, "HBEAT_CAP", C.Code.HEARTBEAT, "handshake")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_12_4_heartbeat_outside_session_not_applicable(version):
    """Case 12.4: ERROR(SessionRequired) for a HEARTBEAT outside a session (1.2+).

    Not applicable: HBEAT_CAP is clear (the validator skips); HEARTBEAT gets UnsupportedRequest.
    """
    unsupported(version, "HBEAT_CAP", C.Code.HEARTBEAT, "clear")


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_13_1_key_update_ack_not_applicable(version):
    """Case 13.1: valid KEY_UPDATE_ACK for KEY_UPDATE (UpdateKey, VerifyNewKey, UpdateAllKeys) in a session.

    Not applicable: KEY_UPD_CAP is clear (the validator skips); KEY_UPDATE gets UnsupportedRequest.
    """
    unsupported(version, "KEY_UPD_CAP", C.Code.KEY_UPDATE, "application")


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_13_2_key_update_version_mismatch_not_applicable(version):
    """Case 13.2: ERROR(VersionMismatch) for a KEY_UPDATE with a non-negotiated version in a session.

    Not applicable: KEY_UPD_CAP is clear (the validator skips); KEY_UPDATE gets UnsupportedRequest.
    """
    unsupported(version, "KEY_UPD_CAP", C.Code.KEY_UPDATE, "application")


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_13_3_key_update_invalid_fields_not_applicable(version):
    """Case 13.3: ERROR(InvalidRequest) for a KEY_UPDATE with an invalid operation in a session.

    Not applicable: KEY_UPD_CAP is clear (the validator skips); KEY_UPDATE gets UnsupportedRequest.
    """
    unsupported(version, "KEY_UPD_CAP", C.Code.KEY_UPDATE, "application")


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_13_4_key_update_in_handshake_not_applicable(version):
    """Case 13.4: ERROR(UnexpectedRequest) for a KEY_UPDATE in a DHE session handshake.

    Not applicable: KEY_UPD_CAP is clear (the validator skips); KEY_UPDATE gets UnsupportedRequest.
    """
    unsupported(version, "KEY_UPD_CAP", C.Code.KEY_UPDATE, "handshake")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_13_5_key_update_outside_session_not_applicable(version):
    """Case 13.5: ERROR(SessionRequired) for a KEY_UPDATE outside a session (1.2+).

    Not applicable: KEY_UPD_CAP is clear (the validator skips); KEY_UPDATE gets UnsupportedRequest.
    """
    unsupported(version, "KEY_UPD_CAP", C.Code.KEY_UPDATE, "clear")


# --- document 16: END_SESSION_ACK ---------------------------------------------------------------------
@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_16_1_end_session_ack(version):
    """Case 16.1: valid END_SESSION_ACK for an END_SESSION {StatePreservation=0} in a DHE session."""
    p = session_peer(version)
    session = p.open_session()
    resp = p.send(M.EndSession(version, 0).encode(), session)
    assert len(resp) >= 4  # 16.1.1
    assert resp[1] == C.Code.END_SESSION_ACK  # 16.1.2
    assert resp[0] == version  # 16.1.3
    assert session.session_id not in p.responder.sessions  # the session ended after the ACK


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_16_2_end_session_version_mismatch(version):
    """Case 16.2: ERROR(VersionMismatch) for an END_SESSION with a non-negotiated version (+1, -1) in a session."""
    p = session_peer(version)
    session = p.open_session()
    for other in (bump(version, 1), bump(version, -1)):
        assert_error(p.send(M.EndSession(other).encode(), session), version, E.VERSION_MISMATCH)
    assert session.session_id in p.responder.sessions


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_16_3_end_session_in_handshake(version):
    """Case 16.3: ERROR(UnexpectedRequest) for an END_SESSION in a DHE session handshake."""
    p = session_peer(version)
    session = p.key_exchange(p.valid_slots()[0])
    assert_error(p.send(M.EndSession(version).encode(), session), version, E.UNEXPECTED_REQUEST)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_16_4_end_session_outside_session(version):
    """Case 16.4: ERROR(SessionRequired) for an END_SESSION outside a session (1.2+)."""
    p = session_peer(version)
    assert flag(p, "KEY_EX_CAP") or flag(p, "PSK_CAP")
    assert_error(p.send(M.EndSession(version).encode()), version, E.SESSION_REQUIRED, param2=None)


@pytest.mark.parametrize("version", ALL)
def test_session_requests_without_key_exchange_are_unsupported(version):
    """Not a validator case: the ERROR a responder without KEY_EX_CAP (or at 1.0) gives KEY_EXCHANGE,
    FINISH and END_SESSION (UnsupportedRequest, ErrorData the request code), so that the validator's
    skip conditions of documents 8, 9 and 16 hold for such a responder too."""
    caps = {"CERT_CAP": 1, "CHAL_CAP": 1, "MEAS_CAP": C.MEAS_CAP_SIG}
    p = peer(version, capabilities=caps)
    assert flag(p, "KEY_EX_CAP") == 0
    ke = M.KeyExchange(version, 0, 0, 1, os.urandom(32), bytes(96), b"").encode()
    for req, code in ((ke, C.Code.KEY_EXCHANGE), (M.Finish(version, os.urandom(48)).encode(), C.Code.FINISH),
                      (M.EndSession(version).encode(), C.Code.END_SESSION)):
        assert_error(p.send(req), version, E.UNSUPPORTED_REQUEST, param2=code)
