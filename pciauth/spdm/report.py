"""The result of an SPDM authentication: what was negotiated, checked, measured and signed.

:class:`AuthReport` is what ``Requester.authenticate()`` returns and what ``pciauth auth --json``
prints (``to_dict()``; field names are stable and documented in docs/spdm.md). The signature
log (:class:`SignatureRecord`) holds everything a remote verifier needs to re-check each
signature with the openssl command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pciauth.errors import DeviceError, ExitCode, PciauthError, VerificationError


@dataclass(slots=True)
class CheckResult:
    """One verdict: ``ok`` and why; ``skipped`` when the check did not apply."""

    name: str
    ok: bool
    reason: str
    skipped: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "skipped": self.skipped}


@dataclass
class SignatureRecord:
    """One verified (or rejected) signature, re-checkable offline.

    ``signed_message`` is exactly what the signature algorithm hashes and signs: the transcript
    itself for SPDM 1.0/1.1, ``combined_prefix || Hash(transcript)`` from 1.2 on.
    ``public_key_pem`` (from ``public_key``) and ``signature_der`` (ECDSA: the signature as DER,
    which openssl takes) are rendered when first read, e.g. by :meth:`to_dict`.
    """

    what: str  # "challenge_auth", "measurements", "key_exchange_rsp"
    version: str
    slot: int
    asym_algorithm: str
    hash_algorithm: str
    signature: bytes
    transcript: bytes
    transcript_hash: bytes
    combined_prefix: bytes
    context: str
    signed_message: bytes
    requester_nonce: bytes = b""
    responder_nonce: bytes = b""
    requester_context: bytes = b""
    public_key: Any = field(default=None, repr=False, compare=False)
    asym_bit: int = 0
    openssl_sigopts: list[str] = field(default_factory=list)
    verified: bool = False
    reason: str = ""

    @property
    def public_key_pem(self) -> str:
        pem = self.__dict__.get("_public_key_pem")
        if pem is None:
            pem = self.__dict__["_public_key_pem"] = _public_pem(self.public_key) if self.public_key else ""
        return pem

    @property
    def signature_der(self) -> bytes:
        """ECDSA: ``signature`` (raw r || s) as a DER SEQUENCE; empty for RSA."""
        from pciauth.spdm import algorithms as A

        if self.asym_bit and A.asym_algo(self.asym_bit).scheme == "ecdsa" and \
                len(self.signature) == A.signature_size(self.asym_bit):
            return A.ecdsa_raw_to_der(self.asym_bit, self.signature)
        return b""

    def to_dict(self) -> dict:
        return {
            "what": self.what,
            "version": self.version,
            "slot": self.slot,
            "asym_algorithm": self.asym_algorithm,
            "hash_algorithm": self.hash_algorithm,
            "signature": self.signature.hex(),
            "signature_der": self.signature_der.hex() or None,
            "transcript": self.transcript.hex(),
            "transcript_hash": self.transcript_hash.hex(),
            "combined_prefix": self.combined_prefix.hex() or None,
            "context": self.context or None,
            "signed_message": self.signed_message.hex(),
            "requester_nonce": self.requester_nonce.hex() or None,
            "responder_nonce": self.responder_nonce.hex() or None,
            "requester_context": self.requester_context.hex() or None,
            "public_key_pem": self.public_key_pem,
            "openssl_sigopts": list(self.openssl_sigopts),
            "verified": self.verified,
            "reason": self.reason,
        }


def _public_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


class SlotReport:
    """One certificate slot: its digest, the chain read, and the chain's verdict.

    ``verdict`` (``certs.ChainVerdict.to_dict()``) and ``certificates_pem`` are rendered from the
    parsed chain the first time they are read (``to_dict()`` reads them), so an authentication
    whose caller only wants ``authenticated`` does not pay for PEM and name strings.
    """

    def __init__(self, slot: int, digest: bytes = b"", chain: bytes = b"",
                 certificates_pem: list[str] | None = None, verdict: dict | None = None,
                 digest_matches: bool | None = None) -> None:
        self.slot = slot
        self.digest = digest
        self.chain = chain
        self.digest_matches = digest_matches
        self._pems = certificates_pem
        self._verdict = verdict
        self._chain_verdict: Any = None
        self._certificates: list[Any] = []

    def __repr__(self) -> str:
        return f"SlotReport(slot={self.slot}, digest_matches={self.digest_matches})"

    def render_later(self, certificates: list[Any], chain_verdict: Any = None) -> None:
        """Keep the parsed certificates (and their verdict) to render when first asked."""
        self._certificates = list(certificates)
        self._chain_verdict = chain_verdict
        self._pems = self._verdict = None

    @property
    def verdict(self) -> dict | None:
        if self._verdict is None and self._chain_verdict is not None:
            self._verdict = self._chain_verdict.to_dict()
        return self._verdict

    @verdict.setter
    def verdict(self, value: dict | None) -> None:
        self._verdict, self._chain_verdict = value, None

    @property
    def certificates_pem(self) -> list[str]:
        if self._pems is None:
            infos = (self.verdict or {}).get("certificates", [])
            if len(infos) == len(self._certificates) and all("pem" in i for i in infos):
                self._pems = [i["pem"] for i in infos]  # same encoding: do not render twice
            else:
                from pciauth.spdm.certs import der_to_pem

                self._pems = [der_to_pem(_der(c)) for c in self._certificates]
        return self._pems

    @certificates_pem.setter
    def certificates_pem(self, value: list[str]) -> None:
        self._pems = list(value)

    def to_dict(self) -> dict:
        return {
            "slot": self.slot,
            "digest": self.digest.hex(),
            "digest_matches": self.digest_matches,
            "chain": self.chain.hex() or None,
            "certificates_pem": list(self.certificates_pem),
            "verdict": self.verdict,
        }


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class AuthReport:
    """Everything ``authenticate()`` learned. ``error`` is set when it stopped early."""

    version: str | None = None
    versions_offered_by_device: list[str] = field(default_factory=list)
    capabilities: dict[str, int] = field(default_factory=dict)
    capability_flags: int = 0
    ct_exponent: int | None = None
    data_transfer_size: int | None = None
    max_spdm_msg_size: int | None = None
    algorithms: dict[str, Any] = field(default_factory=dict)
    slots: list[SlotReport] = field(default_factory=list)
    challenged_slot: int | None = None
    checks: list[CheckResult] = field(default_factory=list)
    #: the MeasurementBlocks read (``measurements`` renders them for the report)
    measurement_blocks: tuple = ()
    session_measurement_blocks: tuple = ()
    measurement_count: int | None = None
    signatures: list[SignatureRecord] = field(default_factory=list)
    session: dict | None = None
    error: dict | None = None
    error_step: str | None = None
    authenticated: bool = False
    _exc: BaseException | None = field(default=None, repr=False)

    @property
    def measurements(self) -> list[dict]:
        """The measurement blocks read, as JSON-ready dicts (rendered when first read)."""
        return _rendered(self.__dict__, "_measurements", self.measurement_blocks)

    @property
    def session_measurements(self) -> list[dict]:
        """The blocks read inside the secured session, as JSON-ready dicts."""
        return _rendered(self.__dict__, "_session_measurements", self.session_measurement_blocks)

    def check(self, name: str, ok: bool, reason: str, *, skipped: bool = False) -> CheckResult:
        c = CheckResult(name, ok, reason, skipped)
        self.checks.append(c)
        return c

    def verdict(self, name: str) -> CheckResult | None:
        for c in reversed(self.checks):  # the latest verdict of that name
            if c.name == name:
                return c
        return None

    def fail(self, step: str, exc: BaseException) -> None:
        """Record why authentication stopped at ``step``."""
        self._exc = exc
        self.error_step = step
        if isinstance(exc, PciauthError):
            self.error = exc.to_dict()
            for key in ("field", "request", "error_code", "check"):
                if getattr(exc, key, None) is not None:
                    self.error[key] = getattr(exc, key)
        else:
            self.error = {"type": type(exc).__name__, "message": f"internal error: {exc}",
                          "exit_code": int(ExitCode.INTERNAL)}
        self.error["step"] = step
        self.check(step, False, str(exc))

    def clear_error(self) -> None:
        """Forget the recorded failure and its check (e.g. a replay that stops on purpose)."""
        step = self.error_step
        self.error = self.error_step = self._exc = None
        self.checks = [c for c in self.checks if c.name != step]

    @property
    def exception(self) -> BaseException | None:
        """The exception that stopped authentication (None when it ran to the end)."""
        return self._exc

    @property
    def exit_code(self) -> int:
        """0 authenticated, 5 could not talk (transport/protocol), 6 not authenticated."""
        if self.authenticated:
            return int(ExitCode.OK)
        if isinstance(self._exc, VerificationError):
            return int(ExitCode.VERIFICATION)
        if isinstance(self._exc, DeviceError):
            return int(ExitCode.DEVICE)
        if self._exc is not None and not isinstance(self._exc, PciauthError):
            return int(ExitCode.INTERNAL)
        return int(ExitCode.VERIFICATION)

    def to_dict(self) -> dict:
        return {
            "authenticated": self.authenticated,
            "exit_code": self.exit_code,
            "version": self.version,
            "versions_offered_by_device": list(self.versions_offered_by_device),
            "capabilities": dict(self.capabilities),
            "capability_flags": self.capability_flags,
            "ct_exponent": self.ct_exponent,
            "data_transfer_size": self.data_transfer_size,
            "max_spdm_msg_size": self.max_spdm_msg_size,
            "algorithms": dict(self.algorithms),
            "slots": [s.to_dict() for s in self.slots],
            "challenged_slot": self.challenged_slot,
            "checks": [c.to_dict() for c in self.checks],
            "measurement_count": self.measurement_count,
            "measurements": list(self.measurements),
            "session_measurements": list(self.session_measurements),
            "signatures": [s.to_dict() for s in self.signatures],
            "session": self.session,
            "error": self.error,
        }


def _rendered(store: dict, key: str, blocks: tuple) -> list[dict]:
    """``[b.to_dict() for b in blocks]``, kept in ``store`` while ``blocks`` is the same tuple."""
    cached = store.get(key)
    if cached is None or cached[0] is not blocks:
        cached = store[key] = (blocks, [b.to_dict() for b in blocks])
    return cached[1]
