"""Request handlers of :class:`pciauth.spdm.responder.Responder`, one method per request code.

Each handler gets the request bytes (and the session for secured messages), checks it, updates
the transcript and returns the response bytes; it raises :class:`RequestError` for an SPDM ERROR.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.keyschedule import RESPONDER, SessionKeys
from pciauth.spdm.measurements import summary_input
from pciauth.spdm.messages_base import SpdmMalformed
from pciauth.spdm.messages_session import (
    encode_opaque,
    find_sm_element,
    parse_opaque,
    sm_version_selection,
)
from pciauth.spdm.secured import SecuredSession, make_session_id
from pciauth.spdm.transcript import MAX_TRANSCRIPT, SessionTranscript

NOT_STARTED, AFTER_VERSION, AFTER_CAPABILITIES, NEGOTIATED = range(4)


class RequestError(Exception):
    """Answer the current request with ERROR(code, data, extended).

    ``version``: the ERROR's SPDMVersion when it is not the responder's current one (an invalid
    GET_CAPABILITIES is answered in the version it asked for).
    """

    def __init__(self, code: int, data: int = 0, extended: bytes = b"", *, version: int | None = None) -> None:
        super().__init__(C.error_name(code))
        self.code, self.data, self.extended, self.version = code, data, extended, version


def _parse(cls: Any, message: bytes, **kw: Any) -> Any:
    try:
        return cls.parse(message, **kw)
    except SpdmMalformed:
        raise RequestError(C.ErrorCode.INVALID_REQUEST)


@dataclass
class ResponderSession:
    session_id: int
    keys: Any
    secured: Any
    th: SessionTranscript
    slot_chain_hash: bytes
    established: bool = False
    m: bytearray = field(default_factory=bytearray)
    after_send: Any = None


def _static(what: str, key: tuple, encode: Any) -> bytes:
    """A response fully determined by ``key`` (VERSION, CAPABILITIES, ALGORITHMS): encoded once per key."""
    full = (what, *key)
    resp = _STATIC.get(full)
    if resp is None:
        resp = encode()
        if len(_STATIC) < 256:
            _STATIC[full] = resp
    return resp


_STATIC: dict[tuple, bytes] = {}


def _one_bit(mask: int) -> bool:
    return mask != 0 and mask & (mask - 1) == 0


@functools.lru_cache(maxsize=256)
def measurement_blocks(specs: tuple, meas_hash_bit: int) -> tuple:
    """The blocks a device with ``specs`` (frozen ``MeasurementSpec``) reports for a measurement
    hash: computed, digests included, once per configuration and hash."""
    return tuple(m.block(meas_hash_bit) for m in specs)


class HandlerMixin:
    """The request handlers; mixed into Responder (which provides state and config)."""

    HANDLERS: dict[int, tuple[str, int]] = {
        C.Code.GET_VERSION: ("_get_version", NOT_STARTED),
        C.Code.GET_CAPABILITIES: ("_get_capabilities", AFTER_VERSION),
        C.Code.NEGOTIATE_ALGORITHMS: ("_negotiate_algorithms", AFTER_CAPABILITIES),
        C.Code.GET_DIGESTS: ("_get_digests", NEGOTIATED),
        C.Code.GET_CERTIFICATE: ("_get_certificate", NEGOTIATED),
        C.Code.CHALLENGE: ("_challenge", NEGOTIATED),
        C.Code.GET_MEASUREMENTS: ("_get_measurements", NEGOTIATED),
        C.Code.KEY_EXCHANGE: ("_key_exchange", NEGOTIATED),
        C.Code.FINISH: ("_finish", NEGOTIATED),
        C.Code.END_SESSION: ("_end_session", NEGOTIATED),
    }

    # --- VCA ---
    def _get_version(self, message: bytes, session: Any) -> bytes:
        req = _parse(M.GetVersion, message)
        if session is not None:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        self.reset()
        resp = _static("VERSION", tuple(self.config.versions),
                       lambda: M.Version([M.Version.entry(v) for v in self.config.versions]).encode())
        self.transcript.add_a(req.raw, resp)
        self.state = AFTER_VERSION
        return resp

    def _get_capabilities(self, message: bytes, session: Any) -> bytes:
        if self.state != AFTER_VERSION or session is not None:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        v = message[0]  # a version this responder lists (dispatch checked): its ERRORs carry it
        invalid = RequestError(C.ErrorCode.INVALID_REQUEST, version=v)
        try:
            req = M.GetCapabilities.parse(message)
        except SpdmMalformed:
            raise invalid
        if v >= C.V11:
            if req.ct_exponent > C.CT_EXPONENT_MAX or C.flag_problem(req.flags, v, requester=True):
                raise invalid
            if v == C.V11 and C.flag_value(req.flags, "MUT_AUTH_CAP") and not C.flag_value(req.flags, "ENCAP_CAP"):
                raise invalid  # 1.1: mutual authentication needs the encapsulated flow
            if v >= C.V12 and (req.data_transfer_size < C.MIN_DATA_TRANSFER_SIZE
                               or req.data_transfer_size > req.max_spdm_msg_size
                               or (not C.flag_value(req.flags, "CHUNK_CAP")
                                   and req.data_transfer_size != req.max_spdm_msg_size)):
                raise invalid
        self.version = v
        self.req_flags = req.flags
        self.req_transfer_size = req.data_transfer_size if v >= C.V12 else 0
        flags = self._flags & C.flags_mask_for_version(v)
        cfg = self.config
        key = (v, cfg.ct_exponent, flags, cfg.data_transfer_size, cfg.max_spdm_msg_size)
        resp = _static("CAPABILITIES", key, lambda: M.Capabilities(*key).encode())
        self.transcript.version = v
        self.transcript.add_a(req.raw, resp)
        self.state = AFTER_CAPABILITIES
        return resp

    def _negotiate_algorithms(self, message: bytes, session: Any) -> bytes:
        if self.state != AFTER_CAPABILITIES or session is not None:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        req = _parse(M.NegotiateAlgorithms, message)
        types = [s.alg_type for s in req.structs]
        if types != sorted(types):
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        v = self.version
        common_hash = A.select_common(self.config.base_hash, req.base_hash, A.HASH_PRIORITY)
        # A responder that neither signs nor serves certificates (e.g. unsigned measurements only)
        # selects no BaseAsymSel/BaseHashSel (validator cases 3.1.9-10, 3.5.9-10, 3.6.9-10).
        needs_keys = self.cap("CERT_CAP") or self.cap("CHAL_CAP") or (self.cap("KEY_EX_CAP") and v >= C.V11) or (
            self.cap("MEAS_CAP") == C.MEAS_CAP_SIG)
        self.hash_bit = common_hash if needs_keys else 0
        self.asym_bit = A.select_common(self.supported_asym(), req.base_asym, A.ASYM_PRIORITY) if needs_keys else 0
        if needs_keys and not (self.hash_bit and self.asym_bit):
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        meas = self.cap("MEAS_CAP") and req.measurement_spec & C.MEAS_SPEC_DMTF
        self.meas_hash_bit = C.BASE_HASH_TO_MEAS_HASH.get(common_hash, C.MEAS_HASH_RAW) if meas else 0
        key_ex = self.cap("KEY_EX_CAP") and C.flag_value(self.req_flags, "KEY_EX_CAP") and v >= C.V11
        self.dhe_bit = A.select_common(self.config.dhe, req.struct(C.AlgType.DHE), A.DHE_PRIORITY) if key_ex else 0
        self.aead_bit = A.select_common(self.config.aead, req.struct(C.AlgType.AEAD),
                                        A.AEAD_PRIORITY) if key_ex else 0
        ks = C.KEY_SCHEDULE_SPDM if key_ex and req.struct(C.AlgType.KEY_SCHEDULE) & C.KEY_SCHEDULE_SPDM else 0
        other = 0
        if v >= C.V12:
            if req.other_params & C.OPAQUE_FMT_1:
                other = C.OPAQUE_FMT_1
            elif req.other_params & C.OPAQUE_FMT_0:
                other = C.OPAQUE_FMT_0
        self.other_params = other
        chosen = {C.AlgType.DHE: self.dhe_bit, C.AlgType.AEAD: self.aead_bit,
                  C.AlgType.REQ_BASE_ASYM: 0, C.AlgType.KEY_SCHEDULE: ks}
        selected = tuple((t, chosen[t]) for t in types) if v >= C.V11 else ()
        key = (v, C.MEAS_SPEC_DMTF if meas else 0, other, self.meas_hash_bit, self.asym_bit, self.hash_bit)
        resp = _static("ALGORITHMS", (*key, selected), lambda: M.Algorithms(
            *key, structs=[M.AlgStruct(t, bit) for t, bit in selected]).encode())
        self.blocks = list(measurement_blocks(self.config.measurements, self.meas_hash_bit)) if meas else []
        self.transcript.add_a(req.raw, resp)
        self.state = NEGOTIATED
        return resp

    # --- authentication ---
    def _require(self, name: str) -> None:
        if not self.cap(name):
            raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST)

    def _slot(self, slot_id: int) -> Any:
        slot = self.provisioned().get(slot_id)
        if slot is None:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        return slot

    def _get_digests(self, message: bytes, session: Any) -> bytes:
        self._require("CERT_CAP")
        req = _parse(M.GetDigests, message)
        self.transcript.on_request(C.Code.GET_DIGESTS)
        slots = self.provisioned()
        mask = sum(1 << s for s in slots)
        digests = {s: self.slot_digest(slot) for s, slot in slots.items()}
        resp = M.Digests(self.version, mask, digests, mask if self.version >= C.V13 else 0).encode()
        self.transcript.add_b(req.raw, resp)
        return resp

    def _get_certificate(self, message: bytes, session: Any) -> bytes:
        self._require("CERT_CAP")
        req = _parse(M.GetCertificate, message)
        self.transcript.on_request(C.Code.GET_CERTIFICATE)
        chain = self.slot_chain(self._slot(req.slot))
        if req.attributes & 0x01:  # 1.3 SlotSizeRequested: no portion, the size in RemainderLength
            resp = M.certificate(self.version, req.slot, b"", len(chain))
            self.transcript.add_b(req.raw, resp)
            return resp
        if req.offset >= len(chain) or req.length == 0:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        limit = self.req_transfer_size - 8 if self.req_transfer_size else 0xFFFF
        n = min(req.length, self.config.cert_chunk_max, len(chain) - req.offset, limit)
        portion = chain[req.offset : req.offset + n]
        remainder = len(chain) - req.offset - n
        resp = M.certificate(self.version, req.slot, portion, remainder)
        self.transcript.add_b(req.raw, resp)
        return resp

    def _summary_hash(self, summary_type: int) -> bytes:
        if summary_type == C.MEAS_SUMMARY_NONE:
            return b""
        if summary_type not in (C.MEAS_SUMMARY_TCB, C.MEAS_SUMMARY_ALL) or not self.cap("MEAS_CAP"):
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        return A.hash_bytes(self.hash_bit, summary_input(self.blocks, summary_type, self.version))

    def _sign(self, context: str, transcript: bytes, slot: Any) -> bytes:
        msg = A.signing_message(self.version, context, transcript, self.hash_bit)
        return A.sign(self.asym_bit, self.hash_bit, slot.key, msg)

    def _challenge(self, message: bytes, session: Any) -> bytes:
        if not self.cap("CHAL_CAP"):  # ErrorData: the unsupported request's code
            raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST, C.Code.CHALLENGE)
        req = _parse(M.Challenge, message)
        self.transcript.on_request(C.Code.CHALLENGE)
        slot = self._slot(req.slot)
        msh = self._summary_hash(req.summary_type)
        slots = self.provisioned()
        auth = M.ChallengeAuth(
            self.version, req.slot, sum(1 << s for s in slots),
            self.slot_digest(slot), os.urandom(C.NONCE_SIZE), msh,
            b"", b"", req.requester_context)
        unsigned = auth.encode()
        signed_req = self.adversary.signed_request(req.raw)
        self.transcript.add_c(signed_req, unsigned)
        auth.signature = self._sign(C.CONTEXT_CHALLENGE_AUTH, self.transcript.m1(), slot)
        self.transcript.challenge_done()
        return unsigned + auth.signature

    def _get_measurements(self, message: bytes, session: Any) -> bytes:
        cap = self.cap("MEAS_CAP")
        if not cap:
            raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST, C.Code.GET_MEASUREMENTS)
        req = _parse(M.GetMeasurements, message)
        self.transcript.on_request(C.Code.GET_MEASUREMENTS)
        signed = req.attributes & C.MEAS_ATTR_SIGNATURE
        if signed and cap != C.MEAS_CAP_SIG:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        slot = self._slot(req.slot) if signed else None
        op = req.operation
        if op == C.MEAS_OP_COUNT:
            p1, blocks = len(self.blocks), []
        elif op == C.MEAS_OP_ALL:
            p1, blocks = 0, self.blocks
        else:
            p1, blocks = 0, [b for b in self.blocks if b.index == op]
            if not blocks:
                raise RequestError(C.ErrorCode.INVALID_REQUEST)
        record = b"".join(b.raw for b in blocks)
        p2 = req.slot if signed and self.version >= C.V11 else 0
        unsigned = M.measurements(self.version, p1, p2, len(blocks), record, os.urandom(C.NONCE_SIZE), b"",
                                  req.requester_context)
        m = session.m if session is not None else self.transcript.m
        if len(m) > MAX_TRANSCRIPT:
            m.clear()
            raise RequestError(C.ErrorCode.UNSPECIFIED)  # L1/L2 would grow without bound
        m += req.raw + unsigned
        if not signed:
            return unsigned
        prefix = self.transcript.vca() if self.version >= C.V12 else b""
        sig = self._sign(C.CONTEXT_MEASUREMENTS, prefix + bytes(m), slot)
        m.clear()
        return unsigned + sig

    # --- sessions ---
    def _key_exchange(self, message: bytes, session: Any) -> bytes:
        if self.version < C.V11 or not self.cap("KEY_EX_CAP") or not self.dhe_bit or not self.aead_bit:
            raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST, C.Code.KEY_EXCHANGE)
        if session is not None:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        group = A.dhe_group(self.dhe_bit)
        req = _parse(M.KeyExchange, message, dhe_size=group.public_size)
        self.transcript.on_request(C.Code.KEY_EXCHANGE)
        slot = self._slot(req.slot)
        msh = self._summary_hash(req.summary_type)
        sm_version = self._pick_sm_version(req.opaque)
        try:
            priv, pub = A.dhe_generate(self.dhe_bit)
            secret = A.dhe_shared(self.dhe_bit, priv, req.exchange_data)
        except Exception:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)

        rsp_sid = int.from_bytes(os.urandom(2), "little") | 1
        sid = make_session_id(req.req_session_id, rsp_sid)
        if sid in self.sessions or len(self.sessions) >= self.config.max_sessions:
            raise RequestError(C.ErrorCode.SESSION_LIMIT_EXCEEDED)
        opaque = encode_opaque(self.version, [sm_version_selection(sm_version)])
        rsp = M.KeyExchangeRsp(self.version, 0, rsp_sid, 0, 0, os.urandom(32), pub, msh, opaque, b"", b"")
        unsigned = rsp.encode_without_sig()
        chain_hash = self.slot_digest(slot)
        th = SessionTranscript(self.transcript.vca(), chain_hash)
        th.add_k(req.raw, unsigned)
        sig = self._sign(C.CONTEXT_KEY_EXCHANGE_RSP, th.th(), slot)
        th.add_k(sig)
        th1 = A.hash_bytes(self.hash_bit, th.th())
        keys = SessionKeys.from_dhe(self.version, self.hash_bit, self.aead_bit, secret, th1)
        verify = keys.responder_verify_data(th1)
        th.add_k(verify)
        secured = SecuredSession.from_keys(sid, keys, role=RESPONDER)
        self.sessions[sid] = ResponderSession(sid, keys, secured, th, chain_hash)
        return unsigned + sig + verify

    def _pick_sm_version(self, opaque: bytes) -> int:
        if not opaque:
            return C.SECURED_MESSAGE_VERSIONS[0]
        try:
            offered = find_sm_element(parse_opaque(self.version, opaque), C.SM_DATA_ID_SUPPORTED_VERSIONS)
        except SpdmMalformed:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        common = [v for v in C.SECURED_MESSAGE_VERSIONS if offered and v in offered]
        if not common:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)
        return max(common)

    def _outside_session(self) -> RequestError:
        """A session request sent in the clear: SessionRequired (1.2+; 1.1 has no such code)."""
        if self.version >= C.V12:
            return RequestError(C.ErrorCode.SESSION_REQUIRED)
        return RequestError(C.ErrorCode.UNEXPECTED_REQUEST)

    def _finish(self, message: bytes, session: Any) -> bytes:
        if self.version < C.V11 or not self.cap("KEY_EX_CAP"):
            raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST, C.Code.FINISH)
        if session is None:  # HANDSHAKE_IN_THE_CLEAR is not offered: FINISH travels in the session
            raise self._outside_session()
        if session.established:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        hsize = A.hash_size(self.hash_bit)
        req = _parse(M.Finish, message, hash_size=hsize)
        self.transcript.on_request(C.Code.FINISH)
        if req.signature or message[2] & 1:
            raise RequestError(C.ErrorCode.INVALID_REQUEST)  # mutual authentication was not requested
        session.th.add_f(req.raw[:4])
        th = A.hash_bytes(self.hash_bit, session.th.th())
        try:
            session.keys.check_requester_verify_data(th, req.verify_data)
        except Exception:
            sid = session.session_id
            session.after_send = lambda: self.sessions.pop(sid, None)  # the handshake failed: no session
            raise RequestError(C.ErrorCode.DECRYPT_ERROR)
        session.th.add_f(req.verify_data)
        resp = M.FinishRsp(self.version).encode()
        session.th.add_f(resp)
        session.keys.derive_data_keys(A.hash_bytes(self.hash_bit, session.th.th()))
        session.established = True

        def to_data_phase() -> None:

            session.secured.enter_data_phase(session.keys, role=RESPONDER)

        session.after_send = to_data_phase
        return resp

    def _end_session(self, message: bytes, session: Any) -> bytes:
        if self.version < C.V11 or not self.cap("KEY_EX_CAP"):
            raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST, C.Code.END_SESSION)
        if session is None:
            raise self._outside_session()
        if not session.established:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        _parse(M.EndSession, message)
        self.transcript.on_request(C.Code.END_SESSION)
        sid = session.session_id

        def drop() -> None:
            self.sessions.pop(sid, None)

        session.after_send = drop
        return M.EndSessionAck(self.version).encode()
