"""pciauth's SPDM requester: authenticate a device over any Transport (sans-IO).

``Requester(transport, RequesterConfig(...)).authenticate() -> AuthReport`` runs GET_VERSION,
GET_CAPABILITIES, NEGOTIATE_ALGORITHMS, GET_DIGESTS, GET_CERTIFICATE (every provisioned slot),
CHALLENGE, GET_MEASUREMENTS and, when asked, KEY_EXCHANGE/FINISH, measurements inside the session
and END_SESSION. It never raises for what the device does: a failure is recorded in the report
(``error``, ``checks``) and the report is returned.

"Authenticated" (docs/spdm.md): the device has CERT_CAP and CHAL_CAP, the challenged slot's chain
validated to a trust anchor, and CHALLENGE_AUTH's signature with that chain's leaf key verified
over the fresh M1/M2 transcript; and nothing else the requester asked for failed.
"""

from __future__ import annotations

import datetime
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pciauth.errors import (
    DataMismatch,
    PciauthError,
    SpdmError,
    TransportError,
    VerificationError,
)
from pciauth.spdm import algorithms as A
from pciauth.spdm import certs, requester_measurements, requester_signatures
from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.messages_session import parse_opaque
from pciauth.spdm.report import AuthReport, SignatureRecord, SlotReport
from pciauth.spdm.requester_session import run_session
from pciauth.spdm.transcript import Transcript


def swap_endian(asym: Any, signature: bytes) -> bytes | None:
    """Re-exported from :mod:`requester_signatures` (the other byte order of a signature)."""
    return requester_signatures.swap_endian(asym, signature)


class SpdmErrorResponse(SpdmError):
    """The device answered a request with an SPDM ERROR."""

    def __init__(self, message: str, *, request: str, error_code: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.request = request
        self.error_code = error_code


class NotAuthenticated(VerificationError):
    """The device lacks what authentication needs (CERT_CAP, CHAL_CAP, a trusted chain)."""


@dataclass
class RequesterConfig:
    """What the requester offers and does. Algorithm masks use :mod:`algorithms` bits."""

    versions: tuple[int, ...] = C.ALL_VERSIONS
    base_asym: int = A.ALL_ASYM
    base_hash: int = A.ALL_HASH
    dhe: int = A.ALL_DHE
    aead: int = A.ALL_AEAD
    ct_exponent: int = 20
    data_transfer_size: int = 0x1200
    max_spdm_msg_size: int = 0x1200
    slots: tuple[int, ...] | None = None  # None: every provisioned slot
    challenge_slot: int | None = None  # None: the lowest provisioned slot
    summary_type: str = "none"  # none | tcb | all
    measurements: bool = True
    measurement_indices: tuple[int, ...] | None = None  # None: all (operation 0xFF)
    session: bool = False
    session_measurements: bool = True
    trust_anchors: list[Any] = field(default_factory=list)
    policy: str = "spdm-only"
    identity: Any = None
    at_time: datetime.datetime | None = None
    max_chain_size: int = C.MAX_CERT_CHAIN_SIZE
    cert_chunk: int = C.CERT_CHUNK_SIZE
    busy_retries: int = 3
    not_ready_retries: int = 3
    max_wait: float = 1.0  # seconds; a ResponseNotReady asking for more is cut to this
    sleep: Callable[[float], None] = time.sleep
    keep_chain_bytes: bool = True
    #: SPDM 1.0/1.1 did not fix the signature byte order: also accept little endian (as libspdm)
    accept_little_endian_10_11: bool = True
    #: source of nonces, RequesterContexts and session ids (None: os.urandom); record/replay sets it
    random: Callable[[int], bytes] | None = None

    @property
    def flags(self) -> int:
        caps = {"CERT_CAP": 1, "CHAL_CAP": 1}
        if self.session:
            caps.update(ENCRYPT_CAP=1, MAC_CAP=1, KEY_EX_CAP=1)
        return C.make_flags(caps, C.REQUESTER_FLAGS)


#: MeasurementHashAlgo bits pciauth understands: raw bit streams and every base hash it has
_KNOWN_MEAS_HASH = C.MEAS_HASH_RAW | sum(C.BASE_HASH_TO_MEAS_HASH[b] for b in A.HASH_ALGOS)

# Requests fully determined by the configuration are encoded once per distinct configuration.
@functools.lru_cache(maxsize=256)
def _get_capabilities(version: int, ct_exponent: int, flags: int, transfer_size: int, max_size: int) -> bytes:
    return M.GetCapabilities(version, ct_exponent, flags, transfer_size, max_size).encode()


@functools.lru_cache(maxsize=256)
def _negotiate_algorithms(version: int, dhe: int, aead: int, base_asym: int,
                          base_hash: int) -> tuple[bytes, frozenset[int], int]:
    """NEGOTIATE_ALGORITHMS, the AlgTypes it offers and its OtherParamsSupport."""
    structs = []
    if version >= C.V11:
        structs = [M.AlgStruct(C.AlgType.DHE, dhe), M.AlgStruct(C.AlgType.AEAD, aead),
                   M.AlgStruct(C.AlgType.REQ_BASE_ASYM, base_asym),
                   M.AlgStruct(C.AlgType.KEY_SCHEDULE, C.KEY_SCHEDULE_SPDM)]
    other = C.OPAQUE_FMT_1 if version >= C.V12 else 0
    req = M.NegotiateAlgorithms(version, C.MEAS_SPEC_DMTF, other, base_asym, base_hash, structs=structs).encode()
    return req, frozenset(s.alg_type for s in structs), other


@functools.lru_cache(maxsize=256)
def _algorithm_names(hash_bit: int, asym_bit: int, meas_hash_bit: int, measurement_spec: bool, dhe_bit: int,
                     aead_bit: int, key_schedule: bool, other_params: int) -> tuple[tuple[str, Any], ...]:
    """The report's ``algorithms``: names of what was negotiated."""
    return (
        ("base_hash", A.describe_hash(hash_bit)),
        ("base_asym", A.describe_asym(asym_bit)),
        ("measurement_hash", "raw" if meas_hash_bit == C.MEAS_HASH_RAW else
         A.describe_hash(C.MEAS_HASH_TO_BASE_HASH.get(meas_hash_bit, 0)) if meas_hash_bit else None),
        ("measurement_spec", "dmtf" if measurement_spec else None),
        ("dhe", A.describe_dhe(dhe_bit) if dhe_bit else None),
        ("aead", A.describe_aead(aead_bit) if aead_bit else None),
        ("key_schedule", "spdm" if key_schedule else None),
        ("opaque_data_format", {0: None, 1: "fmt0", 2: "fmt1"}.get(other_params)),
    )


def _pick(value: int, offered: int, what: str, required: bool) -> int:
    """An ALGORITHMS selection: exactly one bit, one that was offered (0 allowed when not required)."""
    if value == 0 and not required:
        return 0
    if value == 0 or value & (value - 1):  # not exactly one bit
        raise SpdmError(f"ALGORITHMS: {what} 0x{value:x} must select exactly one algorithm")
    if not value & offered:
        raise SpdmError(f"ALGORITHMS: {what} 0x{value:x} was not offered (offered 0x{offered:x})")
    return value


class Requester:
    """Runs one authentication against one responder through ``transport``."""

    def __init__(self, transport: Any, config: RequesterConfig | None = None) -> None:
        self.transport = transport
        self.config = config or RequesterConfig()
        hint = getattr(transport, "set_response_time", None)
        #: transports that can wait per request take the DSP0274 response time of each one
        self._response_time_hint = hint if callable(hint) else None
        self._reset()

    def _reset(self) -> None:
        """Forget everything learned from the device (each authenticate() starts over)."""
        self.t = Transcript()
        self.version = C.V10
        self.rsp_flags = 0
        self._caps: dict[str, int] = {}  # rsp_flags decoded, for cap()
        self.ct_exponent = 0
        self.max_portion = 0xFFFF
        self.hash_bit = self.asym_bit = self.meas_hash_bit = self.dhe_bit = self.aead_bit = 0
        self.hash_len = self.sig_len = 0  # hash and signature sizes of the negotiated algorithms
        self.other_params = 0
        self.digests: dict[int, bytes] = {}
        self.slot_mask = 0
        self.chains: dict[int, Any] = {}
        self.verdicts: dict[int, Any] = {}
        self.chain_ok: dict[int, bool] = {}  # slot -> its verdict's ok, computed once
        self.chain_hashes: dict[int, bytes] = {}  # slot -> Hash(chain read), computed once
        self.summary: tuple[int, bytes] = (C.MEAS_SUMMARY_NONE, b"")
        #: the secured session KEY_EXCHANGE/FINISH opened (its keys and sequence numbers)
        self.secured_session: Any = None
        self.step = "init"

    # --- public ---
    def authenticate(self) -> AuthReport:
        """Run the whole flow once (again from GET_VERSION if the device asks RequestResynch once)."""
        for attempt in range(2):
            report = AuthReport()
            if self.step != "init":  # a new Requester starts clean; a second run starts over
                self._reset()
            try:
                self._run(report)
            except SpdmErrorResponse as exc:
                if exc.error_code == C.ErrorCode.REQUEST_RESYNCH and attempt == 0:
                    continue  # the device lost its state: start over with GET_VERSION, once
                report.fail(self.step, exc)
            except Exception as exc:  # recorded, never raised: the report survives
                report.fail(self.step, exc)
            break
        report.authenticated = self._authenticated(report)
        return report

    def _run(self, report: AuthReport) -> None:
        cfg = self.config
        self.step = "version"
        self._vca(report)
        if not (self.cap("CERT_CAP") and self.cap("CHAL_CAP")):
            missing = [n for n in ("CERT_CAP", "CHAL_CAP") if not self.cap(n)]
            report.check("capabilities", False, f"device lacks {', '.join(missing)}: it cannot be authenticated")
        else:
            report.check("capabilities", True, "CERT_CAP and CHAL_CAP present")
        if self.cap("CERT_CAP"):
            self.step = "digests"
            self._digests(report)
            self.step = "certificates"
            self._certificates(report)
        if self.cap("CHAL_CAP") and self.chains:
            self.step = "challenge"
            self._challenge(report)
        else:
            report.check("challenge", False, "no CHALLENGE: the device has no CHAL_CAP or no certificate", skipped=True)
        if cfg.measurements and self.cap("MEAS_CAP"):
            self.step = "measurements"
            report.measurement_blocks, report.measurement_count = self._measure(report, None)
            self._check_summary(report)
        if cfg.session:
            self.step = "session"
            run_session(self, report)

    def _authenticated(self, report: AuthReport) -> bool:
        if report.error is not None:
            return False
        if not (self.cap("CERT_CAP") and self.cap("CHAL_CAP")):
            return False
        ch = report.verdict("challenge")
        trust = report.verdict("chain_trust")
        return bool(ch and ch.ok and not ch.skipped and trust and trust.ok)

    def chain_hash(self, slot: int) -> bytes:
        """Hash of the chain read from ``slot`` (the slot digest that was checked), once per slot."""
        h = self.chain_hashes.get(slot)
        if h is None:
            h = self.chain_hashes[slot] = A.hash_bytes(self.hash_bit, self.chains[slot].raw)
        return h

    def cap(self, name: str) -> int:
        """The device's capability field ``name`` (0 when clear)."""
        return self._caps.get(name, 0)

    # --- one exchange, with ERROR handling ---
    def exchange(self, request: bytes, expect: int, *, session: Any = None) -> bytes:
        """Send ``request``; return the response of code ``expect`` (ERRORs raise or are retried)."""
        response = self._send(request, session)
        if len(response) >= 4 and response[1] == expect and response[0] == request[0]:
            return response  # the usual answer: the caller's parser checks the rest
        return self._exchange_slow(request, expect, session, response)

    def _exchange_slow(self, request: bytes, expect: int, session: Any, response: bytes) -> bytes:
        """The rest of :meth:`exchange`: ERRORs (retried or raised) and wrong answers."""
        version = request[0]
        busy = ready = 0
        while True:
            if len(response) >= 4 and response[1] == expect and response[0] == version:
                return response
            name = C.code_name(request[1])
            h = M.parse_header(response)
            if h.code == C.Code.ERROR:
                err = M.ErrorResponse.parse(response)
                if err.version != version:  # report the error, and do not act on it
                    raise SpdmErrorResponse(
                        f"{name}: device answered ERROR {err.name} (0x{err.error_code:02x}) in SPDM version "
                        f"{C.version_str(err.version)}, request was {C.version_str(version)}",
                        request=name, error_code=err.error_code)
                if err.error_code == C.ErrorCode.BUSY and busy < self.config.busy_retries:
                    busy += 1
                    self.config.sleep(0.001 * (2 ** busy))
                    response = self._send(request, session)
                    continue
                if err.error_code == C.ErrorCode.RESPONSE_NOT_READY and ready < self.config.not_ready_retries:
                    ready += 1
                    rdt_exp, code, token, rdtm = err.not_ready()
                    if code != request[1]:
                        raise SpdmError(f"{name}: ResponseNotReady names request 0x{code:02x}, not 0x{request[1]:02x}")
                    if rdtm <= 1 or rdt_exp > C.CT_EXPONENT_MAX:
                        raise SpdmError(f"{name}: ResponseNotReady with RDTExponent {rdt_exp}, RDTM {rdtm} "
                                        "(RDTM must be above 1, the exponent at most 31)")
                    # wait RDT = 2^RDTExponent us, then ask (before WTMax = RDT x RDTM), as libspdm does
                    wait = min((2 ** rdt_exp) / 1e6, self.config.max_wait)
                    self.config.sleep(wait)
                    response = self._send(M.respond_if_ready(version, request[1], token), session)
                    continue
                detail = (f"{name}: device answered ERROR {err.name} (0x{err.error_code:02x}, "
                          f"data 0x{err.error_data:02x})")
                if err.error_code in (C.ErrorCode.BUSY, C.ErrorCode.RESPONSE_NOT_READY):
                    detail += f" after {busy + ready} retries"
                raise SpdmErrorResponse(detail, request=name, error_code=err.error_code)
            if h.code != expect:
                raise SpdmError(f"{name}: device answered code {C.code_name(h.code)} (0x{h.code:02x}), "
                                f"expected {C.code_name(expect)}")
            if h.version != version:
                raise SpdmError(f"{name}: response in SPDM version {C.version_str(h.version)}, "
                                f"request was {C.version_str(version)}")
            return response

    #: Requests whose answer needs cryptography: the responder may take CT (2^CTExponent us) more.
    CRYPTO_REQUESTS = frozenset({C.Code.CHALLENGE, C.Code.GET_MEASUREMENTS, C.Code.KEY_EXCHANGE,
                                 C.Code.FINISH, C.Code.RESPOND_IF_READY})
    ST1 = 0.1  # DSP0274 ST1: 100 ms for a response without cryptography

    def response_time(self, code: int) -> float:
        """Seconds the device may take to answer a request of ``code`` (DSP0274 timing)."""
        ct = (2 ** min(self.ct_exponent, C.CT_EXPONENT_MAX)) / 1e6 if code in self.CRYPTO_REQUESTS else 0.0
        return self.ST1 + ct

    def _send(self, message: bytes, session: Any) -> bytes:
        hint = self._response_time_hint
        if hint is not None:
            hint(self.response_time(message[1] if session is None else C.Code.GET_MEASUREMENTS))
        try:
            if session is None:
                response = self.transport.exchange(message, secured=False)
                return response if type(response) is bytes else bytes(response)
            record = session.encrypt(message)
            response = self.transport.exchange(record, secured=True)
            return session.decrypt(response if type(response) is bytes else bytes(response))
        except PciauthError:
            raise
        except Exception as exc:
            raise TransportError(f"transport failed: {exc}")

    # --- VCA ---
    def _vca(self, report: AuthReport) -> None:
        cfg = self.config
        self.t.reset()
        req = M.get_version()
        ver = M.Version.parse(self.exchange(req, C.Code.VERSION))
        offered = ver.versions
        report.versions_offered_by_device = [C.version_str(v) for v in offered]
        common = set(offered).intersection(cfg.versions)
        if not common:
            raise SpdmError(f"no common SPDM version: device offers {report.versions_offered_by_device}, "
                            f"pciauth offers {[C.version_str(v) for v in cfg.versions]}")
        v = self.version = max(common)
        self.t.version = v
        report.version = C.version_str(v)
        self.t.add_a(req, ver.raw)

        self.step = "capabilities"
        req = _get_capabilities(v, cfg.ct_exponent, cfg.flags, cfg.data_transfer_size, cfg.max_spdm_msg_size)
        caps = M.Capabilities.parse(self.exchange(req, C.Code.CAPABILITIES))
        if caps.ct_exponent > C.CT_EXPONENT_MAX:
            raise SpdmError(f"CAPABILITIES: CTExponent {caps.ct_exponent} is over {C.CT_EXPONENT_MAX}")
        problem = C.flag_problem(caps.flags, v, requester=False)
        if problem:
            raise SpdmError(f"CAPABILITIES: {problem}")
        if v >= C.V12 and (caps.data_transfer_size < C.MIN_DATA_TRANSFER_SIZE
                           or caps.max_spdm_msg_size < caps.data_transfer_size):
            raise SpdmError(f"CAPABILITIES: DataTransferSize {caps.data_transfer_size} / MaxSPDMmsgSize "
                            f"{caps.max_spdm_msg_size} are inconsistent")
        self.rsp_flags = caps.flags & C.flags_mask_for_version(v)
        self._caps = C.flag_names(self.rsp_flags)
        self.ct_exponent = caps.ct_exponent
        # 1.2+: a CERTIFICATE (8-byte header + portion) must fit the device's DataTransferSize
        self.max_portion = max(caps.data_transfer_size - 8, 1) if v >= C.V12 else 0xFFFF
        report.capability_flags = caps.flags
        report.capabilities = C.flag_names(caps.flags)
        report.ct_exponent = caps.ct_exponent
        if v >= C.V12:
            report.data_transfer_size = caps.data_transfer_size
            report.max_spdm_msg_size = caps.max_spdm_msg_size
        self.t.add_a(req, caps.raw)

        self.step = "algorithms"
        self._negotiate(report)

    def _negotiate(self, report: AuthReport) -> None:
        cfg, v = self.config, self.version
        req, offered, other = _negotiate_algorithms(v, cfg.dhe, cfg.aead, cfg.base_asym, cfg.base_hash)
        alg = M.Algorithms.parse(self.exchange(req, C.Code.ALGORITHMS))
        self._check_algorithms(alg, offered, other)
        self.t.add_a(req, alg.raw)
        # sizes the negotiation fixed, read by every later parse
        self.hash_len = A.hash_size(self.hash_bit) if self.hash_bit else 0
        self.sig_len = A.signature_size(self.asym_bit) if self.asym_bit else 0
        names = dict(_algorithm_names(self.hash_bit, self.asym_bit, self.meas_hash_bit, bool(alg.measurement_spec),
                                      self.dhe_bit, self.aead_bit, bool(alg.struct(C.AlgType.KEY_SCHEDULE)),
                                      self.other_params))
        report.algorithms = names
        report.check("algorithms", True, f"{names['base_asym']} / {names['base_hash']}")

    def _check_algorithms(self, alg: M.Algorithms, offered: frozenset[int], other: int) -> None:
        cfg = self.config
        needs = bool(self.cap("CERT_CAP") or self.cap("CHAL_CAP") or self.cap("KEY_EX_CAP")
                     or self.cap("MEAS_CAP") == C.MEAS_CAP_SIG)
        self.hash_bit = _pick(alg.base_hash, cfg.base_hash, "BaseHashSel", needs)
        self.asym_bit = _pick(alg.base_asym, cfg.base_asym, "BaseAsymSel", needs)
        if alg.ext_asym or alg.ext_hash:
            raise SpdmError("ALGORITHMS: selects external algorithms, none were offered")
        if self.cap("MEAS_CAP"):
            _pick(alg.measurement_spec, C.MEAS_SPEC_DMTF, "MeasurementSpecificationSel", True)
            self.meas_hash_bit = _pick(alg.measurement_hash, _KNOWN_MEAS_HASH, "MeasurementHashAlgo", True)
        elif alg.measurement_hash or alg.measurement_spec:
            raise SpdmError("ALGORITHMS: measurement algorithms selected without MEAS_CAP")
        if self.version >= C.V12:
            if alg.other_params & C.OPAQUE_FMT_MASK:
                _pick(alg.other_params & C.OPAQUE_FMT_MASK, other, "OtherParamsSelection", True)
            self.other_params = alg.other_params & C.OPAQUE_FMT_MASK
        sel = {}
        for s in alg.structs:
            if s.alg_type not in offered:
                raise SpdmError(f"ALGORITHMS: answers AlgType {s.alg_type}, which was not sent")
            if s.external:
                raise SpdmError(f"ALGORITHMS: AlgType {s.alg_type} selects external algorithms")
            sel[s.alg_type] = s.supported
        session = bool(cfg.session and self.version >= C.V11 and self.cap("KEY_EX_CAP"))
        if not session and not any(sel.values()):  # nothing selected and nothing needed
            self.dhe_bit = self.aead_bit = 0
            return
        self.dhe_bit = _pick(sel.get(C.AlgType.DHE, 0), cfg.dhe, "DHE", session)
        self.aead_bit = _pick(sel.get(C.AlgType.AEAD, 0), cfg.aead, "AEAD", session)
        _pick(sel.get(C.AlgType.KEY_SCHEDULE, 0), C.KEY_SCHEDULE_SPDM, "KeySchedule", session)
        _pick(sel.get(C.AlgType.REQ_BASE_ASYM, 0), cfg.base_asym, "ReqBaseAsymAlg", False)

    # --- certificates ---
    def _digests(self, report: AuthReport) -> None:
        req = M.get_digests(self.version)
        self.t.on_request(C.Code.GET_DIGESTS)
        d = M.Digests.parse(self.exchange(req, C.Code.DIGESTS), self.hash_len)
        self.t.add_b(req, d.raw)
        self.digests, self.slot_mask = d.digests, d.slot_mask
        report.check("digests", True, f"slots provisioned: {sorted(d.digests)}")

    def _certificates(self, report: AuthReport) -> None:
        wanted = [s for s in sorted(self.digests) if self.config.slots is None or s in self.config.slots]
        for slot in wanted:
            self.step = f"certificate[{slot}]"
            raw = self._read_chain(slot)
            sr = SlotReport(slot, self.digests[slot], raw if self.config.keep_chain_bytes else b"")
            report.slots.append(sr)
            chain = certs.parse_cert_chain(raw, self.hash_bit)
            digest = A.hash_bytes(self.hash_bit, raw)
            sr.digest_matches = digest == self.digests[slot]
            if not sr.digest_matches:
                sr.render_later(chain.certificates)
                raise DataMismatch(f"slot {slot}: DIGESTS digest differs from the hash of the certificate chain read")
            self.chains[slot] = chain
            self.chain_hashes[slot] = digest  # CHALLENGE_AUTH's CertChainHash and TH compare with it
            verdict = certs.verify_chain(chain, self.config.trust_anchors, policy=self.config.policy,
                                   identity=self.config.identity, at_time=self.config.at_time)
            self.verdicts[slot] = verdict
            sr.render_later(chain.certificates, verdict)
            failures = verdict.failures
            why = "; ".join(f"{c.name}: {c.reason}" for c in failures) or "chain validated to a trust anchor"
            self.chain_ok[slot] = ok = bool(verdict.checks) and not failures
            report.check(f"chain[{slot}]", ok, why)

    def _read_chain(self, slot: int) -> bytes:
        chain = bytearray()
        total: int | None = None
        while True:
            ask = min(self.config.cert_chunk, 0xFFFF, self.max_portion)
            req = M.get_certificate(self.version, slot, len(chain), ask)
            self.t.on_request(C.Code.GET_CERTIFICATE)
            cert = M.Certificate.parse(self.exchange(req, C.Code.CERTIFICATE))
            if cert.slot != slot:
                raise SpdmError(f"CERTIFICATE: answers slot {cert.slot}, asked slot {slot}")
            n = len(cert.portion)
            if n == 0 or n > ask:
                raise SpdmError(f"CERTIFICATE: PortionLength {n} for a request of {ask} bytes", )
            this_total = len(chain) + n + cert.remainder
            if total is None:
                total = this_total
                if total > self.config.max_chain_size:
                    raise SpdmError(f"CERTIFICATE: chain of {total} bytes exceeds the "
                                    f"{self.config.max_chain_size}-byte limit")
            elif this_total != total:
                raise SpdmError(f"CERTIFICATE: RemainderLength {cert.remainder} at offset {len(chain)} "
                                f"does not add up to the announced {total} bytes")
            chain += cert.portion
            self.t.add_b(req, cert.raw)
            if cert.remainder == 0:
                return bytes(chain)

    # --- challenge ---
    def _challenge(self, report: AuthReport) -> None:
        cfg, v = self.config, self.version
        slot = cfg.challenge_slot if cfg.challenge_slot is not None else min(self.chains)
        if slot not in self.chains:
            raise SpdmError(f"CHALLENGE: slot {slot} has no certificate chain (slots: {sorted(self.chains)})")
        report.challenged_slot = slot
        stype = C.MEAS_SUMMARY_NAMES[cfg.summary_type]
        if stype and not self.cap("MEAS_CAP"):
            stype = C.MEAS_SUMMARY_NONE
        nonce = self.random(C.NONCE_SIZE)
        ctx = self.random(C.REQUESTER_CONTEXT_SIZE) if v >= C.V13 else b""
        req = M.challenge(v, slot, stype, nonce, ctx)
        self.t.on_request(C.Code.CHALLENGE)
        auth = M.ChallengeAuth.parse(self.exchange(req, C.Code.CHALLENGE_AUTH), hash_size=self.hash_len,
                                     sig_size=self.sig_len, summary=bool(stype))
        if auth.slot != slot:
            raise SpdmError(f"CHALLENGE_AUTH: names slot {auth.slot}, challenged slot {slot}")
        if auth.slot_mask != self.slot_mask:
            raise SpdmError(f"CHALLENGE_AUTH: slot mask 0x{auth.slot_mask:02x} differs from DIGESTS' "
                            f"0x{self.slot_mask:02x}")
        if auth.cert_chain_hash != self.chain_hash(slot):
            raise DataMismatch(f"CHALLENGE_AUTH: CertChainHash is not the hash of slot {slot}'s chain")
        if v >= C.V13 and auth.requester_context != ctx:
            raise SpdmError("CHALLENGE_AUTH: RequesterContext is not the one sent in CHALLENGE")
        self.check_opaque("CHALLENGE_AUTH", auth.opaque)
        self.t.add_c(req, auth.signed_part)
        m1 = self.t.m1()
        rec = self._verify("challenge_auth", C.CONTEXT_CHALLENGE_AUTH, m1, auth.signature, slot, report,
                           requester_nonce=nonce, responder_nonce=auth.nonce, requester_context=ctx)
        self.t.challenge_done()
        trusted = self.chain_ok[slot]
        report.check("challenge", True, f"CHALLENGE_AUTH signature verified with slot {slot}'s leaf key")
        report.check("chain_trust", trusted, "challenged slot's chain validated to a trust anchor" if trusted
                     else f"slot {slot}'s chain did not validate: " + report.verdict(f"chain[{slot}]").reason)
        self.summary = (stype, auth.measurement_summary_hash)
        if auth.measurement_summary_hash:
            rec.reason += f"; measurement summary hash {auth.measurement_summary_hash.hex()}"

    def _check_summary(self, report: AuthReport) -> None:
        requester_measurements.check_summary(self, report)

    def _verify(self, what: str, context: str, transcript: bytes, signature: bytes, slot: int,
                report: AuthReport, **nonces: bytes) -> SignatureRecord:
        """Verify ``signature`` over ``transcript``; log it; raise SignatureError when it fails."""
        return requester_signatures.verify_signature(self, what, context, transcript, signature, slot, report, **nonces)

    def check_opaque(self, what: str, opaque: bytes) -> None:
        """1.2+: opaque data needs a negotiated format; format 1 must parse as general opaque data."""
        if self.version < C.V12 or not opaque:
            return
        if not self.other_params:
            raise SpdmError(f"{what}: opaque data without a negotiated opaque data format")
        if self.other_params == C.OPAQUE_FMT_1:
            parse_opaque(self.version, opaque)

    # --- measurements ---
    def _measure(self, report: AuthReport, session: Any) -> tuple[tuple, int]:
        return requester_measurements.measure(self, report, session)

    def random(self, n: int) -> bytes:
        """Random bytes for nonces, contexts and session ids (``config.random``, else os.urandom)."""
        return (self.config.random or os.urandom)(n)

