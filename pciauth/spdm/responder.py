"""pciauth's SPDM responder (what the emulated device and ``pciauth responder`` speak), sans-IO.

``Responder(config).handle(message, secured=False) -> bytes`` answers one request. It never
raises on bad input: a malformed, out-of-order or unsupported request gets the SPDM ERROR a
conformant responder sends (as the DMTF SPDM-Responder-Validator's test cases expect):

- GET_VERSION (always version 1.0) resets the connection at any time;
- a request before the negotiation step it needs: UnexpectedRequest;
- a request whose SPDMVersion is not the negotiated one (or, for GET_CAPABILITIES, not one the
  responder lists): VersionMismatch;
- bad lengths, reserved values, unprovisioned slots, unknown measurement indices: InvalidRequest;
- unknown codes and capabilities this responder does not have: UnsupportedRequest;
- session messages outside a session: SessionRequired / UnexpectedRequest.

Sessions (KEY_EXCHANGE, FINISH, END_SESSION) use :mod:`pciauth.spdm.keyschedule` and
:mod:`pciauth.spdm.secured`; ``secured=True`` marks a DSP0277 record (PCI DOE type 2).
The request handlers are in :mod:`responder_handlers`; misbehaviours for tests in :mod:`adversary`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm.adversary import Adversary
from pciauth.spdm.measurements import MeasurementBlock, make_block
from pciauth.spdm.messages import ErrorResponse, parse_header
from pciauth.spdm.responder_handlers import (
    AFTER_CAPABILITIES,
    NOT_STARTED,
    HandlerMixin,
    RequestError,
)
from pciauth.spdm.secured import SecuredMessageError, session_id_of
from pciauth.spdm.transcript import Transcript

# request codes the dispatcher tests on every message (plain module ints: one lookup each)
_GET_VERSION, _GET_CAPABILITIES = C.Code.GET_VERSION, C.Code.GET_CAPABILITIES
_FINISH, _RESPOND_IF_READY = C.Code.FINISH, C.Code.RESPOND_IF_READY
_GET_MEASUREMENTS = C.Code.GET_MEASUREMENTS

#: Capabilities of the default responder: certificates, challenge, signed fresh measurements and
#: encrypted, MAC'd sessions.
DEFAULT_CAPABILITIES = {
    "CERT_CAP": 1, "CHAL_CAP": 1, "MEAS_CAP": C.MEAS_CAP_SIG, "MEAS_FRESH_CAP": 1,
    "ENCRYPT_CAP": 1, "MAC_CAP": 1, "KEY_EX_CAP": 1,
}  # fmt: skip


@dataclass
class Slot:
    """One certificate slot: DER certificates (root first, leaf last) and the leaf private key."""

    slot_id: int
    der_certs: list[bytes]
    key: Any
    _chains: dict[Any, Any] = field(default_factory=dict, repr=False)

    def chain(self, hash_bit: int, transform: Any = None) -> bytes:
        """The SPDM chain format for the negotiated hash (header, root hash, certificates)."""
        if hash_bit not in self._chains:
            from pciauth.spdm.certs import build_cert_chain

            self._chains[hash_bit] = build_cert_chain(self.der_certs, hash_bit)
        chain = self._chains[hash_bit]
        return transform(chain) if transform else chain

    def digest(self, hash_bit: int) -> bytes:
        """Hash of the chain as built (DIGESTS, CertChainHash, TH): fixed, so computed once per hash."""
        key = ("digest", hash_bit)
        if key not in self._chains:
            self._chains[key] = A.hash_bytes(hash_bit, self.chain(hash_bit))
        return self._chains[key]

    @property
    def asym_bits(self) -> int:
        """BaseAsymAlgo bits this slot's key serves (computed once)."""
        if "asym" not in self._chains:
            self._chains["asym"] = A.asym_bits_for_key(self.key)
        return self._chains["asym"]


class MeasurementSpec(NamedTuple):
    """One measurement the device reports: sent raw, or as a digest with the negotiated hash.

    A device-mode measurement is always sent raw (DSP0274 1.2+ defines its value as a bit field
    the verifier reads, DMTF SPDM-Responder-Validator case 7.5). Immutable (a tuple: a
    configuration's measurements key the cache of their blocks, hashed on every connection).
    """

    index: int
    mtype: int
    value: bytes
    raw: bool = False

    def block(self, meas_hash_bit: int) -> MeasurementBlock:
        """The DMTF block for the negotiated measurement hash."""
        if self.raw or meas_hash_bit == C.MEAS_HASH_RAW or self.mtype == C.MeasurementType.DEVICE_MODE:
            return make_block(self.index, self.mtype, self.value, raw=True)
        base = C.MEAS_HASH_TO_BASE_HASH[meas_hash_bit]
        return make_block(self.index, self.mtype, A.hash_bytes(base, self.value), raw=False)



DEFAULT_MEASUREMENTS = (
    MeasurementSpec(1, C.MeasurementType.IMMUTABLE_ROM, b"pciauth emulated device boot ROM v1"),
    MeasurementSpec(2, C.MeasurementType.MUTABLE_FIRMWARE, b"pciauth emulated device firmware 1.0.0"),
    MeasurementSpec(3, C.MeasurementType.HARDWARE_CONFIG, b"\x01\x00\x00\x00strap=0x1", raw=True),
    MeasurementSpec(4, C.MeasurementType.FIRMWARE_CONFIG, b"debug=off secure-boot=on"),
    MeasurementSpec(5, C.MeasurementType.FIRMWARE_VERSION, b"1.0.0", raw=True),
)


@dataclass
class ResponderConfig:
    """What the responder supports and holds. Masks use the SPDM bits of :mod:`algorithms`."""

    slots: list[Slot] = field(default_factory=list)
    versions: tuple[int, ...] = C.ALL_VERSIONS
    capabilities: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CAPABILITIES))
    ct_exponent: int = 12
    base_asym: int = A.ALL_ASYM
    base_hash: int = A.ALL_HASH
    dhe: int = A.ALL_DHE
    aead: int = A.ALL_AEAD
    measurements: tuple[MeasurementSpec, ...] = DEFAULT_MEASUREMENTS
    data_transfer_size: int = 0x1200
    max_spdm_msg_size: int = 0x1200
    cert_chunk_max: int = 0x400
    max_sessions: int = 4
    #: names of :mod:`adversary` rows to apply (tests only)
    adversary: tuple[str, ...] = ()
    #: request codes answered first with ResponseNotReady (exercises RESPOND_IF_READY)
    not_ready_once: tuple[int, ...] = ()

    @classmethod
    def default(cls, algorithms: tuple[str, ...] = ("ecdsa-p384",), **kw: Any) -> ResponderConfig:
        """A responder with fresh in-memory test PKIs (slot 0) for each algorithm (for tests)."""
        from pciauth.spdm import pki

        slots = []
        for alg in algorithms:
            s = pki.generate_set(alg)
            slots.append(Slot(0, s.der_chain, s.leaf_key))
        return cls(slots=slots, **kw)

    @classmethod
    def from_pki(cls, directory: str | os.PathLike, algorithms: tuple[str, ...] | None = None,
                 **kw: Any) -> ResponderConfig:
        """Load slot 0 for each algorithm from a ``pciauth pki init`` directory (or vendor files)."""
        from pciauth.spdm import pki

        algs = tuple(algorithms or pki.available_algorithms(directory))
        slots = []
        for alg in algs:
            der, key = pki.load_slot(directory, alg)
            slots.append(Slot(0, der, key))
        return cls(slots=slots, **kw)

    @property
    def flags(self) -> int:
        return C.make_flags(self.capabilities)


class Responder(HandlerMixin):
    """One SPDM endpoint's responder state; feed it requests with :meth:`handle`."""

    def __init__(self, config: ResponderConfig | None = None, *, strict: bool = False) -> None:
        self.config = config or ResponderConfig.default()
        #: strict: an internal exception propagates (fuzzing: a finding) instead of becoming
        #: the ERROR Unspecified a device answers
        self.strict = strict
        self.adversary = _adversary(self.config.adversary)
        self.transcript = Transcript()
        self.sessions: dict[int, Any] = {}
        self.pending: dict[int, tuple[int, bytes]] = {}
        self._flags = self.config.flags
        self._caps = C.flag_names(self._flags)  # non-zero capability fields
        # None unless a row changes the chain
        self._chain_hook = self.adversary.chain_transform(self) if self.adversary.rows else None
        self._provisioned: tuple[int, dict[int, Slot]] | None = None
        self.reset()

    def reset(self) -> None:
        self.state = NOT_STARTED
        self.version = C.V10
        self.req_flags = 0
        self.req_transfer_size = 0  # 1.2+: the requester's DataTransferSize (0: no limit)
        self.hash_bit = self.asym_bit = self.meas_hash_bit = 0
        self.dhe_bit = self.aead_bit = self.other_params = 0
        self.blocks: list[MeasurementBlock] = []
        self.sessions.clear()
        self.transcript.reset()
        self._delayed = set(self.config.not_ready_once)

    # --- the one entry point ---
    def handle(self, message: bytes, *, secured: bool = False) -> bytes:
        """Answer one request; never raises for anything the peer sends (a ``strict`` responder
        lets its own bugs through)."""
        try:
            if type(message) is not bytes:
                message = bytes(message)
            if secured:
                return self._handle_secured(message)
            return self._answer(message, None)
        except Exception as exc:  # a bug must not kill the device: answer Unspecified
            if self.strict:
                raise
            return self._error(C.ErrorCode.UNSPECIFIED, 0, note=str(exc))

    def _answer(self, message: bytes, session: Any) -> bytes:
        """Dispatch one request to its handler after the checks every request gets (length,
        negotiation step, version, session); a RequestError becomes the ERROR it names."""
        code = message[1] if len(message) >= 2 else -1
        try:
            if len(message) < 4:
                raise RequestError(C.ErrorCode.INVALID_REQUEST)
            version = message[0]
            entry = self.HANDLERS.get(code)
            if entry is None:
                if code != _RESPOND_IF_READY:
                    raise RequestError(C.ErrorCode.UNSUPPORTED_REQUEST, code)
                response = self._respond_if_ready(parse_header(message))
            else:
                method, min_state = entry
                if session is not None and not session.established and code != _FINISH:
                    raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
                if code == _GET_VERSION:
                    if version != C.V10:
                        raise RequestError(C.ErrorCode.VERSION_MISMATCH)
                elif self.state < min_state:
                    raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
                elif code == _GET_CAPABILITIES:
                    if version not in self.config.versions:
                        raise RequestError(C.ErrorCode.VERSION_MISMATCH)
                elif version != self.version:
                    raise RequestError(C.ErrorCode.VERSION_MISMATCH)
                if self._delayed and code in self._delayed:
                    self._not_ready(code, method, message, session)
                # the instance attribute first: tests replace a handler on one responder
                response = getattr(self, method)(message, session)
            if self.req_transfer_size and len(response) > self.req_transfer_size:
                raise RequestError(C.ErrorCode.RESPONSE_TOO_LARGE)  # CHUNK_GET is not implemented
        except RequestError as e:
            if code == _GET_MEASUREMENTS and e.code != C.ErrorCode.RESPONSE_NOT_READY:
                # L1/L2 starts over after an ERROR to GET_MEASUREMENTS, as libspdm's responder does
                # (ResponseNotReady keeps the answer, and its exchange, for RESPOND_IF_READY)
                (session.m if session is not None else self.transcript.m).clear()
            response = self._error(e.code, e.data, e.extended, version=e.version)
        if self.adversary.rows:
            return self.adversary.response(self, code, message, response)
        return response

    def _error(self, code: int, data: int = 0, extended: bytes = b"", note: str = "",
               version: int | None = None) -> bytes:
        if version is None:
            version = self.version if self.state >= AFTER_CAPABILITIES else C.V10
        return ErrorResponse(version, code, data, extended).encode()

    def _not_ready(self, code: int, method: str, message: bytes, session: Any) -> None:
        """``not_ready_once``: compute the answer, keep it for RESPOND_IF_READY, say ResponseNotReady."""
        self._delayed.discard(code)
        response = getattr(self, method)(message, session)
        token = (len(self.pending) + 1) & 0xFF
        self.pending = {code: (token, response)}
        ext = bytes((2, code, token, 2))  # RDTExponent 2 (RDT 4 us), RDTM 2
        raise RequestError(C.ErrorCode.RESPONSE_NOT_READY, 0, ext)

    def _respond_if_ready(self, h: Any) -> bytes:
        if h.version != self.version:
            raise RequestError(C.ErrorCode.VERSION_MISMATCH)
        pending = self.pending.get(h.param1)
        if pending is None or pending[0] != h.param2:
            raise RequestError(C.ErrorCode.UNEXPECTED_REQUEST)
        del self.pending[h.param1]
        return pending[1]

    def _handle_secured(self, record: bytes) -> bytes:
        try:
            sid = session_id_of(record)
        except Exception:
            return self._error(C.ErrorCode.INVALID_REQUEST)
        sess = self.sessions.get(sid)
        if sess is None:
            return self._error(C.ErrorCode.SESSION_REQUIRED)
        try:
            app = sess.secured.decrypt(record)
        except SecuredMessageError:
            self.sessions.pop(sid, None)  # DecryptError terminates the session
            return self._error(C.ErrorCode.DECRYPT_ERROR)
        except Exception:
            self.sessions.pop(sid, None)
            return self._error(C.ErrorCode.DECRYPT_ERROR)
        response = self._answer(app, sess)
        out = sess.secured.encrypt(response)
        after = getattr(sess, "after_send", None)
        if after is not None:
            sess.after_send = None
            after()
        return out

    # --- helpers used by the handlers ---
    def provisioned(self) -> dict[int, Slot]:
        """Slots whose key serves the negotiated signature algorithm (first slot of an id wins)."""
        cached = self._provisioned
        if cached is not None and cached[0] == self.asym_bit:
            return cached[1]
        out: dict[int, Slot] = {}
        for s in self.config.slots:
            if s.asym_bits & self.asym_bit and s.slot_id not in out:
                out[s.slot_id] = s
        self._provisioned = (self.asym_bit, out)
        return out

    def slot_chain(self, slot: Slot) -> bytes:
        return slot.chain(self.hash_bit, self._chain_hook)

    def slot_digest(self, slot: Slot) -> bytes:
        """Hash of the chain this responder serves for ``slot`` (cached unless an adversary row edits it)."""
        if self._chain_hook is None:
            return slot.digest(self.hash_bit)
        return A.hash_bytes(self.hash_bit, self.slot_chain(slot))

    def cap(self, name: str) -> int:
        return self._caps.get(name, 0)

    def supported_asym(self) -> int:
        mask = 0
        for s in self.config.slots:
            mask |= s.asym_bits
        return mask & self.config.base_asym


def _adversary(names: tuple[str, ...]) -> Adversary:
    """The misbehaviours of a responder; one shared, stateless instance for the usual none."""
    return Adversary(names) if names else _HONEST


_HONEST = Adversary(())
