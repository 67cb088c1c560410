"""The requester's secured session: KEY_EXCHANGE, FINISH, measurements inside, END_SESSION.

TH1 = VCA || Hash(cert chain) || KEY_EXCHANGE || KEY_EXCHANGE_RSP (through the signature); the
responder signs everything before its signature ("responder-key_exchange_rsp signing" from 1.2),
ResponderVerifyData = HMAC(rsp finished key, Hash(TH1)). FINISH's RequesterVerifyData covers TH up
to FINISH's header; TH2 adds FINISH and FINISH_RSP and gives the data keys (keyschedule.py).
FINISH travels encrypted with the handshake keys (HANDSHAKE_IN_THE_CLEAR is not negotiated).
"""

from __future__ import annotations

from typing import Any

from pciauth.errors import SpdmError
from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.keyschedule import REQUESTER, SessionKeys
from pciauth.spdm.messages_session import (
    encode_opaque,
    find_sm_element,
    parse_opaque,
    sm_supported_versions,
)
from pciauth.spdm.report import AuthReport
from pciauth.spdm.secured import SecuredSession, make_session_id
from pciauth.spdm.transcript import SessionTranscript


def run_session(req: Any, report: AuthReport) -> None:
    """Open a session, measure inside it, end it; record the outcome in ``report.session``."""
    v = req.version
    if v < C.V11 or not req.cap("KEY_EX_CAP") or not req.dhe_bit or not req.aead_bit:
        report.check("session", False, "device or version does not support KEY_EXCHANGE", skipped=True)
        report.session = {"established": False, "reason": "not supported"}
        return
    if v >= C.V12 and req.other_params != C.OPAQUE_FMT_1:
        raise SpdmError("KEY_EXCHANGE: the device did not select opaque data format 1, which carries the "
                        "secured message version from SPDM 1.2 on")
    if not req.chains:
        raise SpdmError("KEY_EXCHANGE: no certificate chain to verify the responder's signature with")
    slot = report.challenged_slot if report.challenged_slot is not None else min(req.chains)
    cfg = req.config
    stype = C.MEAS_SUMMARY_NAMES[cfg.summary_type] if req.cap("MEAS_CAP") else 0
    group = A.dhe_group(req.dhe_bit)
    priv, pub = A.dhe_generate(req.dhe_bit)
    req_sid = int.from_bytes(req.random(2), "little") | 1
    opaque = encode_opaque(v, [sm_supported_versions()])
    ke = M.KeyExchange(v, stype, slot, req_sid, req.random(32), pub, opaque).encode()
    req.t.on_request(C.Code.KEY_EXCHANGE)
    req.step = "key_exchange"
    rsp = M.KeyExchangeRsp.parse(req.exchange(ke, C.Code.KEY_EXCHANGE_RSP), dhe_size=group.public_size,
                                 hash_size=req.hash_len, sig_size=req.sig_len, summary=bool(stype))
    if rsp.heartbeat_period:
        raise SpdmError(f"KEY_EXCHANGE_RSP: HeartbeatPeriod {rsp.heartbeat_period} without HBEAT_CAP")
    if rsp.mut_auth_requested:
        raise SpdmError("KEY_EXCHANGE_RSP: asks for mutual authentication, which pciauth did not offer")
    if rsp.opaque:
        selected = find_sm_element(parse_opaque(v, rsp.opaque), C.SM_DATA_ID_VERSION_SELECTION)
        if selected is not None and selected[0] not in C.SECURED_MESSAGE_VERSIONS:
            raise SpdmError(f"KEY_EXCHANGE_RSP: secured message version 0x{selected[0]:04x} was not offered")
    th = SessionTranscript(req.t.vca(), req.chain_hash(slot))
    th.add_k(ke, rsp.signed_part)
    req._verify("key_exchange_rsp", C.CONTEXT_KEY_EXCHANGE_RSP, th.th(), rsp.signature, slot, report,
                responder_nonce=rsp.random)
    th.add_k(rsp.signature)
    secret = A.dhe_shared(req.dhe_bit, priv, rsp.exchange_data)
    th1 = A.hash_bytes(req.hash_bit, th.th())
    keys = SessionKeys.from_dhe(v, req.hash_bit, req.aead_bit, secret, th1)
    keys.check_responder_verify_data(th1, rsp.verify_data)
    th.add_k(rsp.verify_data)
    sid = make_session_id(req_sid, rsp.rsp_session_id)
    session = req.secured_session = SecuredSession.from_keys(sid, keys, role=REQUESTER)

    req.step = "finish"
    fin = M.Finish(v, b"")
    th.add_f(fin.header())
    fin.verify_data = keys.requester_verify_data(A.hash_bytes(req.hash_bit, th.th()))
    fin_bytes = fin.encode()
    th.add_f(fin.verify_data)
    req.t.on_request(C.Code.FINISH)
    frsp = M.FinishRsp.parse(req.exchange(fin_bytes, C.Code.FINISH_RSP, session=session))
    th.add_f(frsp.raw)
    keys.derive_data_keys(A.hash_bytes(req.hash_bit, th.th()))
    session.enter_data_phase(keys, role=REQUESTER)
    report.session = {"established": True, "session_id": f"0x{sid:08x}", "slot": slot,
                      "dhe": group.name, "aead": A.describe_aead(req.aead_bit)}
    report.check("session", True, f"session 0x{sid:08x} established ({group.name}, "
                                  f"{A.describe_aead(req.aead_bit)})")
    if cfg.session_measurements and req.cap("MEAS_CAP"):
        req.step = "session_measurements"
        report.session_measurement_blocks, _ = req._measure(report, session)
    req.step = "end_session"
    req.t.on_request(C.Code.END_SESSION)
    M.EndSessionAck.parse(req.exchange(M.EndSession(v).encode(), C.Code.END_SESSION_ACK, session=session))
    report.session["ended"] = True
