"""A raw-bytes SPDM requester for the responder conformance tests (test_conformance_*.py).

It plays the DMTF SPDM-Responder-Validator's requester against pciauth's ``Responder``: it sends
the bytes a validator test step sends, logs every exchange, and keeps the negotiated algorithms,
the slot digests and chains it read. The transcripts the tests verify signatures over are put
together in each test from the logged bytes (not from pciauth's own ``Transcript``), so a wrong
transcript rule in the responder shows up as a failed signature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from conftest import pki_set

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm import pki
from pciauth.spdm.certs import parse_cert_chain
from pciauth.spdm.keyschedule import REQUESTER, SessionKeys
from pciauth.spdm.messages_session import encode_opaque, sm_supported_versions
from pciauth.spdm.responder import Responder, ResponderConfig, Slot
from pciauth.spdm.secured import SecuredSession, make_session_id

E = C.ErrorCode
#: Versions pciauth's responder speaks, and those with sessions.
ALL = [C.V10, C.V11, C.V12, C.V13]
SESSION_VERSIONS = [C.V11, C.V12, C.V13]

#: The requester flags the validator sends (CERT, CHAL, ENCRYPT, MAC, KEY_EX, ENCAP, HBEAT, KEY_UPD).
REQ_FLAGS = C.make_flags({
    "CERT_CAP": 1, "CHAL_CAP": 1, "ENCRYPT_CAP": 1, "MAC_CAP": 1, "KEY_EX_CAP": 1, "ENCAP_CAP": 1,
    "HBEAT_CAP": 1, "KEY_UPD_CAP": 1}, C.REQUESTER_FLAGS)  # fmt: skip

# What the validator offers in NEGOTIATE_ALGORITHMS: every algorithm DSP0274 names, including
# ones pciauth does not implement (SHA3/SM3, SM2/EdDSA, FFDHE/secp521r1/SM2, SM4): the responder
# must pick among those it has.
OFFER_ASYM = A.ALL_ASYM | 0x0200 | 0x0400 | 0x0800
OFFER_HASH = A.ALL_HASH | 0x0008 | 0x0010 | 0x0020 | 0x0040
OFFER_DHE = A.ALL_DHE | 0x0001 | 0x0002 | 0x0004 | 0x0020 | 0x0040
OFFER_AEAD = A.ALL_AEAD | 0x0008

_SECOND: dict[str, pki.PkiSet] = {}


def responder(alg: str = "ecdsa-p384", **kw: Any) -> Responder:
    """A responder with slots 0 and 2 provisioned (slot 1 is a hole: an unprovisioned slot id)."""
    first = pki_set(alg)
    if alg not in _SECOND:
        _SECOND[alg] = pki.generate_set(alg)
    second = _SECOND[alg]
    slots = [Slot(0, first.der_chain, first.leaf_key), Slot(2, second.der_chain, second.leaf_key)]
    return Responder(ResponderConfig(slots=slots, **kw))


def bump(version: int, delta: int) -> int:
    """NegotiatedVersion+1 / -1 as the validator builds it (minor number +-1)."""
    return version + delta


def assert_error(resp: bytes, version: int, code: int, param2: int | None = 0) -> None:
    """The ERROR assertions of every case: size, code, SPDMVersion, Param1 and (usually) Param2 == 0."""
    assert len(resp) >= 4, resp.hex()
    assert resp[1] == C.Code.ERROR, f"expected ERROR, got {resp.hex()}"
    assert resp[0] == version, f"ERROR SPDMVersion 0x{resp[0]:02x}, negotiated 0x{version:02x}"
    assert resp[2] == code, f"ERROR code {C.error_name(resp[2])}, expected {C.error_name(code)}"
    if param2 is not None:
        assert resp[3] == param2


@dataclass
class Session:
    """The requester's side of one session: keys, records and TH so far."""

    session_id: int
    keys: SessionKeys
    secured: SecuredSession
    th: bytearray
    key_exchange: bytes
    response: M.KeyExchangeRsp


@dataclass
class Peer:
    """One requester connection to ``responder`` at ``version``."""

    responder: Responder
    version: int
    log: list[tuple[bytes, bytes]] = field(default_factory=list)
    vca: bytes = b""
    rsp_flags: int = 0
    hash_bit: int = 0
    asym_bit: int = 0
    meas_hash_bit: int = 0
    dhe_bit: int = 0
    aead_bit: int = 0
    other_params: int = 0
    slot_mask: int = 0
    digests: dict[int, bytes] = field(default_factory=dict)
    chains: dict[int, bytes] = field(default_factory=dict)

    # --- plumbing ---
    def send(self, msg: bytes, session: Session | None = None) -> bytes:
        """One request (in ``session`` when given: encrypted, and the answer decrypted); logged."""
        if session is None:
            resp = self.responder.handle(msg)
        else:
            resp = session.secured.decrypt(self.responder.handle(session.secured.encrypt(msg), secured=True))
        self.log.append((msg, resp))
        return resp

    def ok(self, msg: bytes, code: int, session: Session | None = None) -> bytes:
        resp = self.send(msg, session)
        assert resp[1] == code, f"expected {C.code_name(code)}, got {resp.hex()}"
        return resp

    @property
    def hash_size(self) -> int:
        return A.hash_size(self.hash_bit)

    @property
    def sig_size(self) -> int:
        return A.signature_size(self.asym_bit)

    def valid_slots(self) -> list[int]:
        return [s for s in range(C.SLOT_COUNT) if self.slot_mask >> s & 1]

    def context(self) -> bytes:
        """RequesterContext (1.3+) of CHALLENGE and GET_MEASUREMENTS: random bytes."""
        return os.urandom(C.REQUESTER_CONTEXT_SIZE) if self.version >= C.V13 else b""

    # --- VCA, digests, certificates ---
    def get_version(self) -> None:
        self.log.clear()
        resp = self.ok(M.GetVersion().encode(), C.Code.VERSION)
        assert self.version in [e >> 8 for e in M.Version.parse(resp).entries]
        self.vca = M.GetVersion().encode() + resp

    def get_capabilities(self, req_flags: int = REQ_FLAGS) -> int:
        v = self.version
        req = M.GetCapabilities(v, 12, req_flags if v >= C.V11 else 0, 0x1200, 0x1200).encode()
        resp = self.ok(req, C.Code.CAPABILITIES)
        self.rsp_flags = M.Capabilities.parse(resp).flags
        self.vca += req + resp
        return self.rsp_flags

    def negotiate_algorithms(self) -> None:
        v = self.version
        structs = [M.AlgStruct(C.AlgType.DHE, OFFER_DHE), M.AlgStruct(C.AlgType.AEAD, OFFER_AEAD),
                   M.AlgStruct(C.AlgType.REQ_BASE_ASYM, OFFER_ASYM & 0xFFFF),
                   M.AlgStruct(C.AlgType.KEY_SCHEDULE, C.KEY_SCHEDULE_SPDM)] if v >= C.V11 else []
        other = C.OPAQUE_FMT_1 if v >= C.V12 else 0
        req = M.NegotiateAlgorithms(v, C.MEAS_SPEC_DMTF, other, OFFER_ASYM, OFFER_HASH, structs=structs).encode()
        alg = M.Algorithms.parse(self.ok(req, C.Code.ALGORITHMS))
        self.hash_bit, self.asym_bit, self.meas_hash_bit = alg.base_hash, alg.base_asym, alg.measurement_hash
        self.dhe_bit, self.aead_bit = alg.struct(C.AlgType.DHE), alg.struct(C.AlgType.AEAD)
        self.other_params = alg.other_params
        self.vca += req + alg.raw

    def connect(self, req_flags: int = REQ_FLAGS) -> Peer:
        """GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS (the log then starts after VCA)."""
        self.get_version()
        self.get_capabilities(req_flags)
        self.negotiate_algorithms()
        self.log.clear()
        return self

    def get_digests(self) -> bytes:
        """GET_DIGESTS; returns request || response (B's part) and records slot mask and digests."""
        req = M.GetDigests(self.version).encode()
        d = M.Digests.parse(self.ok(req, C.Code.DIGESTS), self.hash_size)
        self.slot_mask, self.digests = d.slot_mask, d.digests
        return req + d.raw

    def get_certificate(self, slot: int) -> bytes:
        """Read ``slot``'s chain in 0x200-byte portions; returns every request || response."""
        out, chain, offset = b"", b"", 0
        while True:
            req = M.GetCertificate(self.version, slot, offset, 0x200).encode()
            cert = M.Certificate.parse(self.ok(req, C.Code.CERTIFICATE))
            assert cert.slot == slot
            out += req + cert.raw
            chain += cert.portion
            offset += len(cert.portion)
            if cert.remainder == 0:
                break
        self.chains[slot] = chain
        return out

    def public_key(self, slot: int) -> Any:
        return parse_cert_chain(self.chains[slot], self.hash_bit).leaf.public_key()

    def verify(self, slot: int, context: str, transcript: bytes, signature: bytes) -> None:
        """SPDMsignatureVerify: raises SignatureError unless ``signature`` covers ``transcript``."""
        msg = A.signing_message(self.version, context, transcript, self.hash_bit)
        A.verify(self.asym_bit, self.hash_bit, self.public_key(slot), signature, msg)

    def discover(self) -> None:
        """The TestSetup many cases share: GET_DIGESTS, then GET_CERTIFICATE of every valid slot."""
        self.get_digests()
        for slot in self.valid_slots():
            self.get_certificate(slot)
        self.log.clear()

    # --- sessions ---
    def key_exchange_request(self, slot: int, summary: int = C.MEAS_SUMMARY_NONE, *, version: int | None = None,
                             policy: int = 0) -> tuple[bytes, Any, int]:
        """A KEY_EXCHANGE like the validator's: (bytes, DHE private key, ReqSessionID)."""
        v = self.version if version is None else version
        priv, pub = A.dhe_generate(self.dhe_bit)
        req_sid = int.from_bytes(os.urandom(2), "little") | 1
        opaque = encode_opaque(self.version, [sm_supported_versions()])
        ke = M.KeyExchange(v, summary, slot, req_sid, os.urandom(32), pub, opaque, session_policy=policy)
        return ke.encode(), priv, req_sid

    def parse_key_exchange_rsp(self, resp: bytes, summary: int) -> M.KeyExchangeRsp:
        return M.KeyExchangeRsp.parse(resp, dhe_size=A.dhe_group(self.dhe_bit).public_size,
                                      hash_size=self.hash_size, sig_size=self.sig_size, summary=bool(summary))

    def key_exchange(self, slot: int, summary: int = C.MEAS_SUMMARY_NONE, *, policy: int = 0,
                     verify: bool = True) -> Session:
        """KEY_EXCHANGE and KEY_EXCHANGE_RSP; checks the signature and ResponderVerifyData."""
        ke, priv, req_sid = self.key_exchange_request(slot, summary, policy=policy)
        rsp = self.parse_key_exchange_rsp(self.ok(ke, C.Code.KEY_EXCHANGE_RSP), summary)
        th = bytearray(self.vca + A.hash_bytes(self.hash_bit, self.chains[slot]) + ke + rsp.signed_part)
        if verify:
            self.verify(slot, C.CONTEXT_KEY_EXCHANGE_RSP, bytes(th), rsp.signature)
        th += rsp.signature
        secret = A.dhe_shared(self.dhe_bit, priv, rsp.exchange_data)
        th1 = A.hash_bytes(self.hash_bit, bytes(th))
        keys = SessionKeys.from_dhe(self.version, self.hash_bit, self.aead_bit, secret, th1)
        if verify:
            keys.check_responder_verify_data(th1, rsp.verify_data)  # HMACVerify(finished_key, ...)
        th += rsp.verify_data
        sid = make_session_id(req_sid, rsp.rsp_session_id)
        secured = SecuredSession.from_keys(sid, keys, role=REQUESTER)
        return Session(sid, keys, secured, th, ke, rsp)

    def finish_request(self, session: Session, *, version: int | None = None) -> bytes:
        """FINISH {Param1=0, Param2=0, RequesterVerifyData} over TH (not yet added to it)."""
        fin = M.Finish(self.version if version is None else version, b"")
        header = fin.header()
        vd = session.keys.requester_verify_data(A.hash_bytes(self.hash_bit, bytes(session.th) + header))
        return header + vd

    def finish(self, session: Session) -> bytes:
        """FINISH in the session; on FINISH_RSP derive the data keys (TH2) and switch to them."""
        fin = self.finish_request(session)
        resp = self.send(fin, session)
        if resp[1] == C.Code.FINISH_RSP:
            session.th += fin + resp
            session.keys.derive_data_keys(A.hash_bytes(self.hash_bit, bytes(session.th)))
            session.secured.enter_data_phase(session.keys, role=REQUESTER)
        return resp

    def open_session(self, slot: int | None = None, summary: int = C.MEAS_SUMMARY_NONE) -> Session:
        session = self.key_exchange(self.valid_slots()[0] if slot is None else slot, summary)
        assert self.finish(session)[1] == C.Code.FINISH_RSP
        return session


def peer(version: int, *, discover: bool = True, req_flags: int = REQ_FLAGS, alg: str = "ecdsa-p384",
         **kw: Any) -> Peer:
    """A connected peer (VCA done; with ``discover`` also DIGESTS and every slot's chain)."""
    p = Peer(responder(alg, **kw), version).connect(req_flags)
    if discover:
        p.discover()
    return p
