"""Fuzz targets of the SPDM layer: message codec, measurements, certificate chains, secured
records, the whole responder and the whole requester."""

from __future__ import annotations

import copy
import datetime
import functools

import _paths  # noqa: F401
from common import FuzzFinding, Stream, pack_chunks, unpack_chunks
from world import REQUESTER_VARIANTS, requester_config, world

from pciauth.errors import PciauthError, TransportError
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M

HASH_SIZES = (32, 48, 64, 0)
SIG_SIZES = (96, 64, 132, 256, 384, 512, 0, 7)
DHE_SIZES = (96, 64, 132, 256, 0, 5, 384, 512)

# code -> how to call the parser with the sizes chosen by the parameter byte
PARSERS = {
    C.Code.GET_VERSION: lambda d, p: M.GetVersion.parse(d),
    C.Code.VERSION: lambda d, p: M.Version.parse(d),
    C.Code.GET_CAPABILITIES: lambda d, p: M.GetCapabilities.parse(d),
    C.Code.CAPABILITIES: lambda d, p: M.Capabilities.parse(d),
    C.Code.NEGOTIATE_ALGORITHMS: lambda d, p: M.NegotiateAlgorithms.parse(d),
    C.Code.ALGORITHMS: lambda d, p: M.Algorithms.parse(d),
    C.Code.GET_DIGESTS: lambda d, p: M.GetDigests.parse(d),
    C.Code.DIGESTS: lambda d, p: M.Digests.parse(d, p["hash"]),
    C.Code.GET_CERTIFICATE: lambda d, p: M.GetCertificate.parse(d),
    C.Code.CERTIFICATE: lambda d, p: M.Certificate.parse(d),
    C.Code.CHALLENGE: lambda d, p: M.Challenge.parse(d),
    C.Code.CHALLENGE_AUTH: lambda d, p: M.ChallengeAuth.parse(d, hash_size=p["hash"], sig_size=p["sig"],
                                                              summary=p["summary"]),
    C.Code.GET_MEASUREMENTS: lambda d, p: M.GetMeasurements.parse(d),
    C.Code.MEASUREMENTS: lambda d, p: M.Measurements.parse(d, sig_size=p["sig"]),
    C.Code.KEY_EXCHANGE: lambda d, p: M.KeyExchange.parse(d, dhe_size=p["dhe"]),
    C.Code.KEY_EXCHANGE_RSP: lambda d, p: M.KeyExchangeRsp.parse(
        d, dhe_size=p["dhe"], hash_size=p["hash"], sig_size=p["sig"], summary=p["summary"],
        verify_data=p["verify"]),
    C.Code.FINISH: lambda d, p: M.Finish.parse(d, hash_size=p["hash"], sig_size=p["sig"] if p["verify"] else 0),
    C.Code.FINISH_RSP: lambda d, p: M.FinishRsp.parse(d, hash_size=p["hash"]),
    C.Code.END_SESSION: lambda d, p: M.EndSession.parse(d),
    C.Code.END_SESSION_ACK: lambda d, p: M.EndSessionAck.parse(d),
    C.Code.ERROR: lambda d, p: M.ErrorResponse.parse(d).not_ready(),
}


def _params(b: int) -> dict:
    return {"hash": HASH_SIZES[b & 3], "sig": SIG_SIZES[(b >> 2) & 7], "dhe": DHE_SIZES[(b >> 5) & 7],
            "summary": bool(b & 0x80), "verify": bool(b & 0x10)}


def param_byte(hash_size: int = 48, sig_size: int = 96, dhe_size: int = 96, summary: bool = False,
               verify: bool = True) -> int:
    return (HASH_SIZES.index(hash_size) | SIG_SIZES.index(sig_size) << 2 | DHE_SIZES.index(dhe_size) << 5
            | (0x80 if summary else 0) | (0x10 if verify else 0))


def fuzz_messages(data: bytes) -> None:
    """[param byte][one SPDM message]: the parser is picked by the message's code byte."""
    if len(data) < 1:
        return
    p = _params(data[0])
    msg = data[1:]
    code = msg[1] if len(msg) >= 2 else C.Code.GET_VERSION
    parser = PARSERS.get(code)
    if parser is None:
        M.parse_header(msg)
        return
    m = parser(msg, p)
    raw = getattr(m, "raw", None)
    if raw is not None and not msg.startswith(raw):
        raise FuzzFinding(f"parsed message keeps raw bytes that are not a prefix of the input: {raw.hex()}")
    if code == C.Code.MEASUREMENTS:
        from pciauth.spdm.measurements import parse_record

        parse_record(m.record, m.number_of_blocks)
    if code in (C.Code.KEY_EXCHANGE, C.Code.KEY_EXCHANGE_RSP) and hasattr(m, "opaque"):
        from pciauth.spdm.messages_session import find_sm_element, parse_opaque

        find_sm_element(parse_opaque(m.version, m.opaque), 1)


def seeds_messages() -> list[bytes]:
    w = world()
    out = []
    for variant, flow in w.flows.items():
        for e in flow:
            if e.secured:
                continue
            for msg in (e.request, e.response):
                summary = REQUESTER_VARIANTS[variant]["summary_type"] != "none"
                out.append(bytes([param_byte(summary=summary)]) + msg)
    return out


def fuzz_measurements(data: bytes) -> None:
    """[count][version][summary type][measurement record]."""
    from pciauth.spdm.measurements import parse_record, summary_input

    s = Stream(data)
    count, version, stype = s.u8(), s.u8(), s.u8()
    blocks = parse_record(s.rest(), count)
    for b in blocks:
        b.to_dict()
        b.type_name  # noqa: B018
    summary_input(blocks, stype, version)


def seeds_measurements() -> list[bytes]:
    out = []
    for flow in world().flows.values():
        for e in flow:
            if not e.secured and len(e.response) > 8 and e.response[1] == C.Code.MEASUREMENTS:
                m = M.Measurements.parse(e.response, sig_size=96 if e.request[2] & 1 else 0)
                if m.record:
                    out.append(bytes([m.number_of_blocks, m.version, C.MEAS_SUMMARY_ALL]) + m.record)
    return out


def fuzz_certs(data: bytes) -> None:
    """[hash selector][SPDM certificate chain]: parse, then every verification check."""
    from pciauth.pci.device import DeviceIdentity
    from pciauth.spdm import algorithms as A
    from pciauth.spdm.certs import parse_cert_chain, verify_chain

    if not data:
        return
    hash_bit = (A.HASH_SHA256, A.HASH_SHA384, A.HASH_SHA512)[data[0] % 3]
    chain = parse_cert_chain(data[1:], hash_bit)
    ident = DeviceIdentity(0x1DED, 0x5A5A, 0x120000, 1, 0x1DED, 0x0001, None)
    policy = "cma" if data[0] & 0x80 else "spdm-only"
    verdict = verify_chain(chain, world().trust_anchors(), policy=policy, identity=ident,
                           at_time=datetime.datetime(2027, 1, 1))
    verdict.to_dict()
    verdict.ok  # noqa: B018


def seeds_certs() -> list[bytes]:
    from certzoo import chains

    from pciauth.spdm import algorithms as A
    from pciauth.spdm.certs import build_cert_chain

    w = world()
    zoo = [bytes([0x81]) + build_cert_chain(c, A.HASH_SHA384) for c in chains()]
    return [bytes([0x81]) + w.chain_by_hash[A.HASH_SHA384], bytes([0]) + w.chain_by_hash[A.HASH_SHA256], *zoo]


# --- secured records -----------------------------------------------------------------------------
_SESSION_ID = 0xFFFE0001


def _sessions(aead_bit: int, mac_only: bool):
    from pciauth.spdm import algorithms as A
    from pciauth.spdm.keyschedule import SessionKeys
    from pciauth.spdm.secured import RecordFormat, SecuredSession

    keys = SessionKeys.from_dhe(C.V12, A.HASH_SHA384, aead_bit, bytes(range(48)), bytes(48))
    fmt = RecordFormat(encrypt=not mac_only)
    req = SecuredSession.from_keys(_SESSION_ID, keys, role="requester", fmt=fmt)
    rsp = SecuredSession.from_keys(_SESSION_ID, keys, role="responder", fmt=fmt)
    return req, rsp


def fuzz_secured(data: bytes) -> None:
    """[mode][record...]: mode bit 0 MAC-only, bit 1 ChaCha20, bit 2: fuzz the plaintext under a
    valid MAC (the harness seals it), else decrypt the raw record; then up to 3 more records."""
    from pciauth.spdm import algorithms as A
    from pciauth.spdm.algorithms import AeadKey
    from pciauth.spdm.secured import session_id_of

    s = Stream(data)
    mode = s.u8()
    aead = A.AEAD_CHACHA20_POLY1305 if mode & 2 else A.AEAD_AES_256_GCM
    _req, rsp = _sessions(aead, bool(mode & 1))
    records = unpack_chunks(s.rest(), limit=4)
    for i, rec in enumerate(records):
        if mode & 4 and i == 0 and not mode & 1:
            cipher = rsp.receiver
            header = _SESSION_ID.to_bytes(4, "little") + (len(rec) + cipher.suite.tag_size).to_bytes(2, "little")
            aead = AeadKey(cipher.aead_bit, cipher.keys.key)
            rec = header + aead.encrypt(cipher.iv_for(cipher.sequence), header, rec)
        session_id_of(rec)
        try:
            rsp.decrypt(rec)
        except PciauthError:
            continue


def seeds_secured() -> list[bytes]:
    from pciauth.spdm import algorithms as A

    out = []
    for mode in (0, 1, 2, 3):
        aead = A.AEAD_CHACHA20_POLY1305 if mode & 2 else A.AEAD_AES_256_GCM
        req, _rsp = _sessions(aead, bool(mode & 1))
        recs = [req.encrypt(bytes([0x12, 0xE0, 0, 0])), req.encrypt(b"\x12\xec\0\0", padding=b"" if mode & 1 else b"\0\0")]
        out.append(bytes([mode]) + pack_chunks(recs))
    out.append(bytes([4]) + pack_chunks([b"\x04\x00\x12\xe0\x00\x00"]))
    return out


# --- the whole responder -------------------------------------------------------------------------
def _strict_responder():
    """A responder whose internal exceptions propagate: a finding, not ERROR(Unspecified)."""
    from pciauth.spdm.responder import Responder

    return Responder(world().responder_config, strict=True)


def fuzz_responder(data: bytes) -> None:
    """Records [flags][request]: flags bit 0 = secured. Each answer must be an SPDM message."""
    r = _strict_responder()
    for chunk in unpack_chunks(data, limit=32):
        if not chunk:
            continue
        out = r.handle(chunk[1:], secured=bool(chunk[0] & 1))
        if not isinstance(out, (bytes, bytearray)) or len(out) < 4:
            raise FuzzFinding(f"responder answered {out!r}: not an SPDM message")
        if not chunk[0] & 1 and out[1] == C.Code.ERROR:
            M.ErrorResponse.parse(out)


def seeds_responder() -> list[bytes]:
    out = []
    for flow in world().flows.values():
        out.append(pack_chunks([bytes([int(e.secured)]) + e.request for e in flow]))
    return out


# --- the responder inside a secured session -------------------------------------------------------
class _Stop(Exception):
    pass


def open_session(data_phase: bool):
    """A strict responder with an open session, and the requester's side of that session.

    The real requester opens the session; the transport stops it at its first secured request
    (FINISH, for the handshake phase) or its second (the first data-phase request)."""
    from pciauth.spdm.requester import Requester

    responder = _strict_responder()

    class Transport:
        secured = 0

        def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
            if secured:
                self.secured += 1
                if self.secured > int(data_phase):
                    raise _Stop()
            return responder.handle(message, secured=secured)

    req = Requester(Transport(), requester_config(world(), 4))
    req.authenticate()
    session = req.secured_session
    if session is None:
        raise FuzzFinding("the seed session did not open")
    session.sender.sequence -= 1  # the request the transport refused was sealed, never sent
    return responder, session


@functools.lru_cache(maxsize=2)
def _session_template(data_phase: bool):
    return open_session(data_phase)


def _session_copy(data_phase: bool):
    """A private copy of the opened session (opening one costs ~70 ms of ECDH and ECDSA).

    The responder's config is read only: shared. A record cipher (one direction of a session)
    holds its AEAD object, which cannot be deep-copied, and values it rebinds but never mutates
    (keys, sequence number): a shallow copy of it is a private copy."""
    responder, session = _session_template(data_phase)
    memo = {id(responder.config): responder.config}
    for sec in [session] + [s.secured for s in responder.sessions.values()]:
        for cipher in (sec.sender, sec.receiver):
            memo[id(cipher)] = copy.copy(cipher)
    return copy.deepcopy((responder, session), memo)


def fuzz_responder_session(data: bytes) -> None:
    """[phase][plaintext requests as chunks]: the harness encrypts each request in the session
    (phase 0: handshake keys, so the first request should be FINISH; 1: data keys)."""
    if not data:
        return
    responder, session = _session_copy(bool(data[0] & 1))
    for msg in unpack_chunks(data[1:], limit=16):
        out = responder.handle(session.encrypt(msg), secured=True)
        if len(out) < 4:
            raise FuzzFinding(f"responder answered {out!r}: not a record or an SPDM message")
        try:
            session.decrypt(out)
        except PciauthError:
            return  # the responder closed or re-keyed the session: nothing more to say in it


def seeds_responder_session() -> list[bytes]:
    v = REQUESTER_VARIANTS[4]["versions"][0]
    meas = [e.request for e in world().flows[4] if not e.secured and e.request[1] == C.Code.GET_MEASUREMENTS]
    end = bytes((v, C.Code.END_SESSION, 0, 0))
    finish = bytes((v, C.Code.FINISH, 0, 0)) + bytes(48)
    return [b"\x01" + pack_chunks([*meas, end]), b"\x00" + pack_chunks([finish, meas[0]])]


# --- the whole requester -------------------------------------------------------------------------
class ReplayResponses:
    """A transport that answers the i-th request with the i-th fuzzed response."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses = responses
        self.i = 0

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        if self.i >= len(self.responses):
            raise TransportError("fuzz input has no more responses")
        self.i += 1
        return self.responses[self.i - 1]

    def close(self) -> None:
        pass


def fuzz_requester(data: bytes) -> None:
    """[variant][responses as chunks]: a whole authentication against fuzzed responses."""
    import json

    from pciauth.spdm.requester import Requester

    if not data:
        return
    cfg = requester_config(world(), data[0])
    report = Requester(ReplayResponses(unpack_chunks(data[1:], limit=48)), cfg).authenticate()
    exc = report.exception
    if exc is not None and not isinstance(exc, PciauthError):
        raise exc
    json.dumps(report.to_dict())


def seeds_requester() -> list[bytes]:
    return [bytes([v]) + pack_chunks([e.response for e in flow]) for v, flow in world().flows.items()]


TARGETS = {
    "spdm_messages": (fuzz_messages, seeds_messages),
    "spdm_measurements": (fuzz_measurements, seeds_measurements),
    "spdm_certs": (fuzz_certs, seeds_certs),
    "spdm_secured": (fuzz_secured, seeds_secured),
    "responder": (fuzz_responder, seeds_responder),
    "requester": (fuzz_requester, seeds_requester),
    "responder_session": (fuzz_responder_session, seeds_responder_session),
}
