"""Responder conformance, case by case: DMTF SPDM-Responder-Validator documents 6 and 7.

Each test is one validator test case (doc/6.ChallengeAuth.md, doc/7.Measurements.md), named after
it, checking each of the case's assertions on the raw bytes ``Responder.handle`` returns. Where a
case names SPDM 1.2 only, it is run for 1.3 as well (same rules, plus RequesterContext).
Signatures are verified over transcripts the test assembles itself from the bytes it exchanged
(:mod:`conformance_peer`), not over the responder's own transcript.
"""

from __future__ import annotations

import os

import pytest
from conformance_peer import ALL, SESSION_VERSIONS, E, assert_error, bump, peer

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.measurements import parse_record
from pciauth.spdm.responder import DEFAULT_MEASUREMENTS, MeasurementSpec

NONE, TCB, ALL_MEAS = C.MEAS_SUMMARY_NONE, C.MEAS_SUMMARY_TCB, C.MEAS_SUMMARY_ALL
SUMMARIES = (NONE, TCB, ALL_MEAS)  # NoMeasurement, then the repeats "if Flags.MEAS_CAP != 0"
V10_11 = [C.V10, C.V11]
V12_PLUS = [C.V12, C.V13]


def flag(p, name: str) -> int:
    return C.flag_value(p.rsp_flags, name)


def assert_can_challenge(p) -> None:
    """The skip condition of every document-6 case, checked: CERT_CAP and CHAL_CAP are set."""
    assert flag(p, "CERT_CAP") and flag(p, "CHAL_CAP")
    assert p.valid_slots(), "DIGESTS reports no provisioned slot"


# --- document 6: CHALLENGE_AUTH -------------------------------------------------------------------
def challenge_and_check(p, slot: int, summary: int, b: bytes) -> None:
    """Send CHALLENGE and check assertions x.1-x.8 of a "valid CHALLENGE_AUTH" case.

    M1/M2 = VCA || ``b`` (the DIGESTS/CERTIFICATE exchanges since VCA or the last CHALLENGE) ||
    CHALLENGE || CHALLENGE_AUTH without its signature.
    """
    ctx = p.context()
    req = M.Challenge(p.version, slot, summary, os.urandom(C.NONCE_SIZE), ctx).encode()
    resp = p.send(req)
    assert resp[1] == C.Code.CHALLENGE_AUTH, resp.hex()  # x.2
    auth = M.ChallengeAuth.parse(resp, hash_size=p.hash_size, sig_size=p.sig_size, summary=bool(summary))
    h = p.hash_size
    fixed = 4 + h + C.NONCE_SIZE + (h if summary else 0) + 2 + len(ctx) + p.sig_size
    assert len(resp) == fixed + len(auth.opaque)  # x.1 (exactly: the parse took every field)
    assert resp[0] == p.version  # x.3
    assert resp[2] & 0x0F == slot  # x.4
    assert resp[3] & (1 << slot)  # x.5
    chain = p.chains[slot]
    assert auth.cert_chain_hash == A.hash_bytes(p.hash_bit, chain) == p.digests[slot]  # x.6
    p.verify(slot, C.CONTEXT_CHALLENGE_AUTH, p.vca + b + req + auth.signed_part, auth.signature)  # x.7
    if p.version >= C.V13:
        assert auth.requester_context == ctx  # x.8


def run_a1(version: int, b_kind: str) -> None:
    """Cases in state A1 (fresh VCA): each repeat starts with GET_VERSION, as the steps say."""
    setup = peer(version)
    assert_can_challenge(setup)
    for slot in setup.valid_slots():
        for summary in SUMMARIES:
            setup.connect()
            b = b""
            if b_kind in ("B1", "B3"):
                b += setup.get_digests()
            if b_kind in ("B1", "B4"):
                b += setup.get_certificate(slot)
            challenge_and_check(setup, slot, summary, b)


def run_a2(version: int, b_kind: str) -> None:
    """Cases in state A2: after a completed CHALLENGE on the same connection (no new VCA)."""
    p = peer(version)
    assert_can_challenge(p)
    for slot in p.valid_slots():
        p.connect()
        p.get_digests()
        p.get_certificate(slot)
        p.ok(M.Challenge(p.version, slot, NONE, os.urandom(32), p.context()).encode(), C.Code.CHALLENGE_AUTH)
        for summary in SUMMARIES:
            b = b""
            if b_kind in ("B1", "B3"):
                b += p.get_digests()
            if b_kind in ("B1", "B4"):
                b += p.get_certificate(slot)
            challenge_and_check(p, slot, summary, b)


@pytest.mark.parametrize("version", V10_11)
def test_case_6_1_challenge_auth_1_0_1_1_a1_b1_c1(version):
    """Case 6.1: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.0 or 1.1 in (A1, B1, C1)."""
    run_a1(version, "B1")


@pytest.mark.parametrize("version", V10_11)
def test_case_6_2_challenge_auth_1_0_1_1_a1_b2_c1(version):
    """Case 6.2: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.0 or 1.1 in (A1, B2, C1)."""
    run_a1(version, "B2")


@pytest.mark.parametrize("version", V10_11)
def test_case_6_3_challenge_auth_1_0_1_1_a1_b3_c1(version):
    """Case 6.3: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.0 or 1.1 in (A1, B3, C1)."""
    run_a1(version, "B3")


@pytest.mark.parametrize("version", ALL)
def test_case_6_4_challenge_version_mismatch(version):
    """Case 6.4: ERROR(VersionMismatch) for a CHALLENGE with a non-negotiated version (+1 and -1)."""
    p = peer(version)
    assert_can_challenge(p)
    slot = p.valid_slots()[0]
    for other in (bump(version, 1), bump(version, -1)):
        req = M.Challenge(other, slot, NONE, os.urandom(32), os.urandom(8)).encode()
        assert_error(p.send(req), version, E.VERSION_MISMATCH)


@pytest.mark.parametrize("version", ALL)
def test_case_6_6_challenge_invalid_fields(version):
    """Case 6.6: ERROR(InvalidRequest) for a CHALLENGE with an invalid field.

    Unprovisioned slots, slots 0x8-0xF and 0xFF; then MeasurementSummaryHashType
    TcbMeasurements+1 and AllMeasurements-1.
    """
    p = peer(version)
    assert_can_challenge(p)
    invalid = [s for s in range(8) if not p.slot_mask >> s & 1] + list(range(8, 16)) + [0xFF]
    assert 1 in invalid  # the test responder leaves slot 1 unprovisioned
    for slot in invalid:
        req = M.Challenge(version, slot, NONE, os.urandom(32), p.context()).encode()
        assert_error(p.send(req), version, E.INVALID_REQUEST)
    for summary in (TCB + 1, ALL_MEAS - 1):
        req = M.Challenge(version, 0, summary, os.urandom(32), p.context()).encode()
        assert_error(p.send(req), version, E.INVALID_REQUEST)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_7_challenge_auth_1_2_a1_b1_c1(version):
    """Case 6.7: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A1, B1, C1)."""
    run_a1(version, "B1")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_8_challenge_auth_1_2_a1_b2_c1(version):
    """Case 6.8: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A1, B2, C1)."""
    run_a1(version, "B2")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_9_challenge_auth_1_2_a1_b3_c1(version):
    """Case 6.9: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A1, B3, C1)."""
    run_a1(version, "B3")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_10_challenge_auth_1_2_a1_b4_c1(version):
    """Case 6.10: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A1, B4, C1)."""
    run_a1(version, "B4")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_11_challenge_auth_1_2_a2_b1_c1(version):
    """Case 6.11: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A2, B1, C1)."""
    run_a2(version, "B1")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_12_challenge_auth_1_2_a2_b2_c1(version):
    """Case 6.12: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A2, B2, C1)."""
    run_a2(version, "B2")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_13_challenge_auth_1_2_a2_b3_c1(version):
    """Case 6.13: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A2, B3, C1)."""
    run_a2(version, "B3")


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_6_14_challenge_auth_1_2_a2_b4_c1(version):
    """Case 6.14: valid CHALLENGE_AUTH for a CHALLENGE with negotiated version 1.2+ in (A2, B4, C1)."""
    run_a2(version, "B4")


# --- document 7: MEASUREMENTS -------------------------------------------------------------------------
def assert_can_measure(p) -> None:
    """The skip condition of the document-7 cases, checked: MEAS_CAP != 0 and, signing, CERT_CAP."""
    assert flag(p, "MEAS_CAP") == C.MEAS_CAP_SIG and flag(p, "CERT_CAP")


def measurement_setup(version: int):
    """TestSetup of 7.1/7.6/7.9: VCA, DIGESTS, CERTIFICATE, CHALLENGE {AllMeasurement}."""
    p = peer(version)
    assert_can_measure(p)
    slot = p.valid_slots()[0]
    p.ok(M.Challenge(version, slot, ALL_MEAS, os.urandom(32), p.context()).encode(), C.Code.CHALLENGE_AUTH)
    return p


class MeasurementFlow:
    """Steps 1-8 of the "valid MEASUREMENTS" cases, in or out of a session, with their assertions."""

    def __init__(self, p, slot: int, session=None) -> None:
        self.p, self.slot, self.session = p, slot, session
        self.l1 = bytearray()  # L1/L2 since the last signed response (without the VCA prefix)

    def request(self, op: int, signed: bool):
        p, v = self.p, self.p.version
        ctx = p.context()
        req = M.GetMeasurements(v, C.MEAS_ATTR_SIGNATURE if signed else 0, op,
                                os.urandom(32) if signed else b"", self.slot, ctx).encode()
        resp = p.send(req, self.session)
        assert resp[1] == C.Code.MEASUREMENTS, resp.hex()  # x.2 / x.9 / x.16
        sig = p.sig_size if signed else 0
        m = M.Measurements.parse(resp, sig_size=sig)
        fixed = 4 + 1 + 3 + C.NONCE_SIZE + 2 + len(ctx) + sig
        assert len(resp) == fixed + len(m.opaque) + len(m.record)  # x.1 / x.8 / x.15
        assert resp[0] == v  # x.3 / x.10 / x.17
        if v >= C.V13:
            assert m.requester_context == ctx
        self.l1 += req + m.signed_part
        if signed:
            if v >= C.V11:
                assert m.param2 & C.MEAS_SLOT_MASK == self.slot
            else:  # 1.0: Param2 is reserved (0), which is slot 0, the only one a 1.0 request can use
                assert m.param2 == 0 == self.slot
            if v >= C.V12:  # ContentChanged: NotSupported (00b) or NoChange (10b)
                assert m.param2 & C.MEAS_CONTENT_CHANGED_MASK in (0x00, 0x20)
            prefix = p.vca if v >= C.V12 else b""
            p.verify(self.slot, C.CONTEXT_MEASUREMENTS, prefix + bytes(self.l1), m.signature)
            self.l1.clear()
        return m

    def run(self) -> None:
        # steps 1-2: the number of measurements, signed
        m = self.request(C.MEAS_OP_COUNT, True)
        count = m.param1
        assert count > 0 and m.number_of_blocks == 0 and len(m.record) == 0  # x.4-x.6 (x.7 in request)
        # steps 3-4: all measurements, signed
        m = self.request(C.MEAS_OP_ALL, True)
        blocks = parse_record(m.record, m.number_of_blocks)  # sizes add up to the record length
        assert m.number_of_blocks == count == len(blocks)  # x.11
        assert len(m.record) > 0 and sum(len(b.raw) for b in blocks) == len(m.record)  # x.12
        # steps 5-8: each index, unsigned except the last
        for i, block in enumerate(blocks):
            m = self.request(block.index, i == len(blocks) - 1)
            assert m.number_of_blocks == 1  # x.18
            one = parse_record(m.record, 1)
            assert len(m.record) > 0 and len(one[0].raw) == len(m.record)  # x.19
            assert m.record == block.raw  # x.20


def test_case_7_1_measurements_1_0():
    """Case 7.1: valid MEASUREMENTS for GET_MEASUREMENTS with negotiated version 1.0.

    1.0 requests carry no SlotIDParam; the responder signs with slot 0 and Param2 is 0, which is
    ValidSlotID[0] (assertion 7.1.7).
    """
    p = measurement_setup(C.V10)
    MeasurementFlow(p, 0).run()


def test_case_7_6_measurements_1_1():
    """Case 7.6: valid MEASUREMENTS for GET_MEASUREMENTS with negotiated version 1.1 (every valid slot)."""
    p = measurement_setup(C.V11)
    for slot in p.valid_slots():
        MeasurementFlow(p, slot).run()


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_7_9_measurements_1_2(version):
    """Case 7.9: valid MEASUREMENTS for GET_MEASUREMENTS with negotiated version 1.2 (and 1.3)."""
    p = measurement_setup(version)
    for slot in p.valid_slots():
        MeasurementFlow(p, slot).run()


def run_in_session(version: int) -> None:
    p = peer(version)
    assert_can_measure(p)
    assert flag(p, "KEY_EX_CAP")
    for slot in p.valid_slots():
        session = p.open_session(slot, ALL_MEAS)
        MeasurementFlow(p, slot, session).run()


def test_case_7_7_measurements_in_session_1_1():
    """Case 7.7: valid MEASUREMENTS for GET_MEASUREMENTS in a DHE session with negotiated version 1.1."""
    run_in_session(C.V11)


@pytest.mark.parametrize("version", V12_PLUS)
def test_case_7_10_measurements_in_session_1_2(version):
    """Case 7.10: valid MEASUREMENTS for GET_MEASUREMENTS in a DHE session, version 1.2 (and 1.3)."""
    run_in_session(version)


@pytest.mark.parametrize("version", ALL)
def test_case_7_2_measurements_version_mismatch(version):
    """Case 7.2: ERROR(VersionMismatch) for GET_MEASUREMENTS with a non-negotiated version (+1, -1)."""
    p = measurement_setup(version)
    for other in (bump(version, 1), bump(version, -1)):
        req = M.GetMeasurements(other, C.MEAS_ATTR_SIGNATURE, C.MEAS_OP_COUNT, os.urandom(32), 0,
                                os.urandom(8)).encode()
        assert_error(p.send(req), version, E.VERSION_MISMATCH)


@pytest.mark.parametrize("version", ALL)
def test_case_7_3_measurements_before_negotiate_algorithms(version):
    """Case 7.3: ERROR(UnexpectedRequest) for GET_MEASUREMENTS before NEGOTIATE_ALGORITHMS.

    As the case says, the request even carries NegotiatedVersion+1: the order is checked first.
    """
    p = peer(version, discover=False)
    p.get_version()
    p.get_capabilities()
    assert flag(p, "CERT_CAP")
    req = M.GetMeasurements(bump(version, 1), C.MEAS_ATTR_SIGNATURE, C.MEAS_OP_COUNT, os.urandom(32), 0,
                            os.urandom(8)).encode()
    assert_error(p.send(req), version, E.UNEXPECTED_REQUEST)


@pytest.mark.parametrize("version", ALL)
def test_case_7_4_measurements_invalid_fields(version):
    """Case 7.4: ERROR(InvalidRequest) for GET_MEASUREMENTS with an invalid field.

    Every index that is not a measurement (0 and 0xFF excluded), signed; then (1.1+, MEAS_CAP 2)
    a valid index with an unprovisioned or out-of-range SlotIDParam (0x8-0xE, 0xF).
    """
    p = measurement_setup(version)
    all_resp = M.Measurements.parse(p.send(M.GetMeasurements(
        version, C.MEAS_ATTR_SIGNATURE, C.MEAS_OP_ALL, os.urandom(32), 0, p.context()).encode()),
        sig_size=p.sig_size)
    valid = [b.index for b in parse_record(all_resp.record, all_resp.number_of_blocks)]
    for index in (i for i in range(1, 0xFF) if i not in valid):
        req = M.GetMeasurements(version, C.MEAS_ATTR_SIGNATURE, index, os.urandom(32), 0, p.context()).encode()
        assert_error(p.send(req), version, E.INVALID_REQUEST)
    if version >= C.V11:
        bad_slots = [s for s in range(8) if not p.slot_mask >> s & 1] + list(range(8, 16))
        for slot in bad_slots:
            req = M.GetMeasurements(version, C.MEAS_ATTR_SIGNATURE, valid[0], os.urandom(32), slot,
                                    p.context()).encode()
            assert_error(p.send(req), version, E.INVALID_REQUEST)


@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("with_device_mode", [False, True])
def test_case_7_5_measurement_blocks_follow_the_spec(version, with_device_mode):
    """Case 7.5: the measurement blocks follow the SPDM specification.

    DMTF specification; a digest block is 3 + HashSize long and its value HashSize; from 1.2 on a
    device mode block (type 5) is a raw bit stream. The default measurements have no device mode
    block, so the second run configures one (raw, as pciauth's ``MeasurementSpec`` must say for
    type 5: the responder sends what the configuration gives).
    """
    extra = (MeasurementSpec(6, C.MeasurementType.DEVICE_MODE, b"\x00\x00\x00\x00" * 5, raw=True),)
    meas = DEFAULT_MEASUREMENTS + (extra if with_device_mode else ())
    p = peer(version, measurements=meas)
    assert_can_measure(p)
    req = M.GetMeasurements(version, C.MEAS_ATTR_SIGNATURE, C.MEAS_OP_ALL, os.urandom(32), 0, p.context())
    m = M.Measurements.parse(p.ok(req.encode(), C.Code.MEASUREMENTS), sig_size=p.sig_size)
    blocks = parse_record(m.record, m.number_of_blocks)
    assert len(blocks) == len(meas)
    digest_size = A.hash_size(C.MEAS_HASH_TO_BASE_HASH[p.meas_hash_bit])
    for b in blocks:
        assert b.spec == C.MEAS_SPEC_DMTF  # 7.5.1
        size = int.from_bytes(b.raw[2:4], "little")
        if not b.is_raw:
            assert size == 3 + digest_size  # 7.5.2
            assert len(b.value) == int.from_bytes(b.raw[5:7], "little") == digest_size  # 7.5.3
        if b.value_type & 0x7F == C.MeasurementType.DEVICE_MODE and version >= C.V12:
            assert b.is_raw  # 7.5.4
    assert any(b.value_type & 0x7F == C.MeasurementType.DEVICE_MODE for b in blocks) == with_device_mode


@pytest.mark.parametrize("version", SESSION_VERSIONS)
def test_case_7_8_measurements_in_session_handshake(version):
    """Case 7.8: ERROR(UnexpectedRequest) for GET_MEASUREMENTS in a DHE session handshake (before FINISH)."""
    p = peer(version)
    assert_can_measure(p)
    assert flag(p, "KEY_EX_CAP")
    for slot in p.valid_slots():
        session = p.key_exchange(slot, ALL_MEAS)
        req = M.GetMeasurements(version, C.MEAS_ATTR_SIGNATURE, C.MEAS_OP_COUNT, os.urandom(32), slot,
                                p.context()).encode()
        assert_error(p.send(req, session), version, E.UNEXPECTED_REQUEST)
