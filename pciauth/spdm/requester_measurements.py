"""GET_MEASUREMENTS for the requester: count, fetch, verify the L1/L2 signature (in or out of a session).

L1/L2 = every GET_MEASUREMENTS/MEASUREMENTS pair since the last signed response (that response
without its signature), prefixed with VCA from SPDM 1.2 on. The count query is part of it. The
signature is requested on the last request only, with the challenged slot.
"""

from __future__ import annotations

from typing import Any

from pciauth.errors import SpdmError
from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.measurements import MeasurementBlock, parse_record, summary_input
from pciauth.spdm.report import AuthReport


def measure(req: Any, report: AuthReport, session: Any) -> tuple[tuple[MeasurementBlock, ...], int]:
    """Count, then fetch measurements (signed on the last request when the device can sign)."""
    v = req.version
    m = bytearray()
    signed_ok = req.cap("MEAS_CAP") == C.MEAS_CAP_SIG and req.chains
    slot = report.challenged_slot if report.challenged_slot is not None else (
        min(req.chains) if req.chains else 0)

    def request(op: int, signed: bool) -> tuple[M.Measurements, bytes, bytes, bytes]:
        nonce = req.random(C.NONCE_SIZE) if signed else b""
        ctx = req.random(C.REQUESTER_CONTEXT_SIZE) if v >= C.V13 else b""
        msg = M.get_measurements(v, C.MEAS_ATTR_SIGNATURE if signed else 0, op, nonce, slot, ctx)
        req.t.on_request(C.Code.GET_MEASUREMENTS)
        sig = req.sig_len if signed else 0
        resp = M.Measurements.parse(req.exchange(msg, C.Code.MEASUREMENTS, session=session), sig_size=sig)
        if v >= C.V13 and resp.requester_context != ctx:
            raise SpdmError("MEASUREMENTS: RequesterContext is not the one sent")
        if signed and v >= C.V11 and resp.param2 & C.MEAS_SLOT_MASK != slot:
            raise SpdmError(f"MEASUREMENTS: signed with slot {resp.param2 & 0xF}, asked slot {slot}")
        if not signed and v >= C.V12 and resp.param2 & C.MEAS_CONTENT_CHANGED_MASK:
            raise SpdmError("MEASUREMENTS: content-changed bits set in an unsigned response")
        req.check_opaque("MEASUREMENTS", resp.opaque)
        m.extend(msg + resp.signed_part)
        return resp, msg, nonce, ctx

    count_resp, _, _, _ = request(C.MEAS_OP_COUNT, False)
    if count_resp.number_of_blocks or count_resp.record:
        raise SpdmError("MEASUREMENTS: the count query returned measurement blocks")
    count = count_resp.param1
    if count in (0, 0xFF):
        raise SpdmError(f"MEASUREMENTS: total number of measurements {count} is invalid")
    ops = list(req.config.measurement_indices or (C.MEAS_OP_ALL,))
    blocks = []
    for i, op in enumerate(ops):
        signed = bool(signed_ok and i == len(ops) - 1)
        resp, _, nonce, ctx = request(op, signed)
        if op == C.MEAS_OP_ALL and resp.number_of_blocks in (0, 0xFF):
            raise SpdmError(f"MEASUREMENTS: NumberOfBlocks {resp.number_of_blocks} for all measurements")
        if op != C.MEAS_OP_ALL and resp.number_of_blocks != 1:
            raise SpdmError(f"MEASUREMENTS: {resp.number_of_blocks} blocks for index {op}, expected 1")
        got = parse_record(resp.record, resp.number_of_blocks)
        if op != C.MEAS_OP_ALL and got[0].index != op:
            raise SpdmError(f"MEASUREMENTS: block index {got[0].index} for a request of index {op}")
        check_digest_sizes(req, got)
        blocks.extend(got)
        if signed:
            prefix = req.t.vca() if v >= C.V12 else b""
            what = "measurements" if session is None else "session_measurements"
            req._verify(what, C.CONTEXT_MEASUREMENTS, prefix + bytes(m), resp.signature, slot, report,
                         requester_nonce=nonce, responder_nonce=resp.nonce, requester_context=ctx)
            m.clear()
    name = "measurements" if session is None else "session_measurements"
    if signed_ok:
        report.check(name, True, f"{len(blocks)} block(s), signature verified")
    else:
        report.check(name, True, f"{len(blocks)} block(s), unsigned (device has no signing MEAS_CAP)")
    return tuple(blocks), count

def check_digest_sizes(req: Any, blocks: list) -> None:
    base = C.MEAS_HASH_TO_BASE_HASH.get(req.meas_hash_bit)
    if base is None:
        return
    size = A.hash_size(base)
    for b in blocks:
        if not b.value_type & C.DMTF_RAW_BIT and len(b.value) != size:
            raise SpdmError(f"measurement {b.index}: digest of {len(b.value)} bytes, the negotiated "
                            f"measurement hash gives {size}")


def check_summary(req: Any, report: AuthReport) -> None:
    """With summary type "all" and every block read, the summary hash must match the blocks."""
    stype, summary = req.summary
    if stype != C.MEAS_SUMMARY_ALL or req.config.measurement_indices is not None:
        return
    expect = A.hash_bytes(req.hash_bit, summary_input(report.measurement_blocks, stype, req.version))
    ok = expect == summary
    report.check("measurement_summary", ok, "CHALLENGE_AUTH summary hash matches the measurements read"
                 if ok else "CHALLENGE_AUTH summary hash differs from the measurements read afterwards "
                 "(changed measurements, or a device that lies)")
