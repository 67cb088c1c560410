"""SPDM certificate chains: the GET_CERTIFICATE wire format and the checks that make one trusted.

Wire format (DSP0274 "Certificate chain format"), as read from a slot:

    u16 Length        (little-endian; the whole chain, this header included)
    u16 Reserved
    RootHash          (negotiated hash of the root certificate's DER)
    Certificates      (DER X.509 v3, concatenated; the first is the root or is issued by the root,
                       each next one is issued by the one before, the leaf is last)

:func:`parse_cert_chain` splits and bounds-checks this (every DER length is checked before the
certificate is handed to ``cryptography``). :func:`verify_chain` then runs every check on its own
and returns a :class:`ChainVerdict` with one verdict per check, so a report says exactly what was
wrong. A chain is trusted only when it reaches a trust anchor by key, never by name: a root with
the right subject and key identifier but another key is not trusted.

The leaf of a PCIe CMA device carries its identity in a Subject Alternative Name ``otherName``
with OID 2.23.147 and a UTF8String value built like Linux's CMA code does (:func:`cma_name`);
policy ``"cma"`` requires it, ``"spdm-only"`` does not.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from pciauth.errors import (
    MalformedData,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from pciauth.pci.device import DeviceIdentity
from pciauth.spdm.algorithms import hash_bytes, hash_size
from pciauth.spdm.cert_checks import (
    CMA_OID,
    Check,
    cert_label,
    check_basic_constraints,
    check_cma_name,
    check_key_usage,
    check_root_hash,
    check_signatures,
    check_validity,
    cma_name,
    cma_names_of,
    find_anchor,
    issue_problem,
)

# A device certificate with, say, a zero serial number is the device's problem: report it through
# the checks, never as a Python warning on the user's terminal.
warnings.filterwarnings(
    "ignore", category=CryptographyDeprecationWarning, module=r"pciauth\.spdm\.(certs|cert_checks)"
)

__all__ = [
    "CMA_OID",
    "POLICIES",
    "CertChain",
    "ChainVerdict",
    "Check",
    "DeviceIdentity",
    "TrustAnchorError",
    "build_cert_chain",
    "certificate_info",
    "cma_name",
    "cma_names_of",
    "issue_problem",
    "load_certificates",
    "load_der_certificate",
    "load_trust_anchors",
    "parse_cert_chain",
    "split_der_certificates",
    "verify_chain",
]


CHAIN_HEADER_SIZE = 4
MAX_CHAIN_SIZE = 0xFFFF
POLICIES = ("cma", "spdm-only")
#: Check names, in the order :func:`verify_chain` reports them.
CHECKS = ("root_hash", "signatures", "trust_anchor", "validity", "basic_constraints", "key_usage", "cma_name")


class TrustAnchorError(UsageError):
    """A ``--trust-anchor`` file or directory could not be used."""


# --------------------------------------------------------------------------------------------
# DER splitting and the chain format
# --------------------------------------------------------------------------------------------


def _der_length(data: bytes, off: int, field: str, index: int) -> tuple[int, int]:
    """(header size, content length) of the DER element at ``off``, every byte bounds-checked."""
    where = f"{field}: certificate {index} at offset {off}"
    if len(data) - off < 2:
        raise MalformedData(
            f"{where}: {len(data) - off} byte(s) left, too short for a DER header", field=field
        )
    if data[off] != 0x30:
        raise MalformedData(f"{where}: not a DER SEQUENCE (tag {data[off]:#04x})", field=field)
    first = data[off + 1]
    if first < 0x80:
        return 2, first
    if first == 0x80:
        raise MalformedData(f"{where}: indefinite length is not DER", field=field)
    n = first & 0x7F
    if n > 4:
        raise MalformedData(f"{where}: length of {n} bytes is too large", field=field)
    if len(data) - off < 2 + n:
        raise MalformedData(f"{where}: truncated DER length", field=field)
    length = int.from_bytes(data[off + 2 : off + 2 + n], "big")
    if data[off + 2] == 0 or length < 0x80:
        raise MalformedData(f"{where}: non-minimal DER length encoding", field=field)
    return 2 + n, length


def split_der_certificates(data: bytes, *, field: str = "certificates") -> list[bytes]:
    """Split concatenated DER certificates; every length is checked against the buffer."""
    data = bytes(data)
    out: list[bytes] = []
    off = 0
    while off < len(data):
        try:
            hdr, length = _der_length(data, off, field, len(out))
        except MalformedData as e:
            if out:
                e.message = (
                    f"{e.message} ({len(data) - off} trailing byte(s) after certificate {len(out) - 1})"
                )
                e.args = (e.message,)
            raise
        end = off + hdr + length
        if end > len(data):
            raise MalformedData(
                f"{field}: certificate {len(out)} at offset {off} claims {length} bytes but only "
                f"{len(data) - off - hdr} remain",
                field=field,
            )
        out.append(data[off:end])
        off = end
    if not out:
        raise MalformedData(f"{field}: no certificate", field=field)
    return out


def force_parse(cert: x509.Certificate) -> None:
    """Touch every lazily parsed part pciauth reads, so later access cannot raise.

    ``cryptography`` parses names, extensions and keys on first access and raises a zoo of
    exceptions on bad input (ValueError, KeyError, InvalidVersion, DuplicateExtension,
    UnsupportedAlgorithm, ...): callers catch ``Exception`` around this one call.
    """
    _ = (cert.version, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
    _ = (cert.extensions, cert.public_key())
    _ = cert.public_bytes(serialization.Encoding.DER)


def load_der_certificate(der: bytes, *, field: str = "certificate") -> x509.Certificate:
    """Load one DER certificate and force the lazy parts to parse; bad input is MalformedData."""
    try:
        cert = x509.load_der_x509_certificate(der)
        force_parse(cert)
    except Exception as e:  # untrusted bytes into a third-party parser: any failure is bad data
        raise MalformedData(f"{field}: not a valid X.509 certificate: {_describe(e)}", field=field)
    return cert


def _describe(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text if type(e).__name__ in text else f"{type(e).__name__}: {text}"


@dataclasses.dataclass
class CertChain:
    """A parsed SPDM certificate chain; ``der`` and ``certificates`` are root-first, leaf last."""

    raw: bytes
    hash_bit: int
    root_hash: bytes
    der: list[bytes]
    certificates: list[x509.Certificate]

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[-1]

    def digest(self) -> bytes:
        """The slot digest GET_DIGESTS reports: Hash(whole chain, header included)."""
        return hash_bytes(self.hash_bit, self.raw)


def parse_cert_chain(data: bytes, hash_bit: int) -> CertChain:
    """Parse the SPDM chain format; raises :class:`MalformedData` naming the broken field."""
    data = bytes(data)
    hsize = hash_size(hash_bit)
    if len(data) < CHAIN_HEADER_SIZE + hsize:
        raise MalformedData(
            f"certificate chain: {len(data)} bytes, shorter than its header and root hash "
            f"({CHAIN_HEADER_SIZE + hsize})",
            field="Length",
        )
    length = int.from_bytes(data[0:2], "little")
    if length != len(data):
        raise MalformedData(
            f"certificate chain: Length field says {length} bytes, got {len(data)}", field="Length"
        )
    root_hash = data[CHAIN_HEADER_SIZE : CHAIN_HEADER_SIZE + hsize]
    der = split_der_certificates(data[CHAIN_HEADER_SIZE + hsize :], field="Certificates")
    certs = [load_der_certificate(d, field=f"Certificates[{i}]") for i, d in enumerate(der)]
    return CertChain(data, hash_bit, root_hash, der, certs)


def build_cert_chain(der_certs: Iterable[bytes], hash_bit: int, *, root_der: bytes | None = None) -> bytes:
    """Build the SPDM chain format from DER certificates (root first).

    ``root_der`` is the root when the chain starts below it (the root hash is then its hash).
    """
    der_list = [bytes(d) for d in der_certs]
    if not der_list:
        raise UsageError("a certificate chain needs at least one certificate")
    root = der_list[0] if root_der is None else bytes(root_der)
    body = hash_bytes(hash_bit, root) + b"".join(der_list)
    total = CHAIN_HEADER_SIZE + len(body)
    if total > MAX_CHAIN_SIZE:
        raise UsageError(f"certificate chain of {total} bytes exceeds the SPDM limit of {MAX_CHAIN_SIZE}")
    return total.to_bytes(2, "little") + b"\0\0" + body


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ChainVerdict:
    """The result of :func:`verify_chain`. ``ok`` only when every check passed."""

    checks: list[Check]
    certificates: list[x509.Certificate]
    leaf_public_key: Any
    policy: str
    trust_anchor: x509.Certificate | None = None
    #: DER of ``certificates`` (same order) when known: the report renders from it
    der: list[bytes] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "policy": self.policy,
            "checks": [c.to_dict() for c in self.checks],
            "trust_anchor": self.trust_anchor.subject.rfc4514_string() if self.trust_anchor else None,
            "certificates": [certificate_info(c, d) for c, d in zip(self.certificates, self._der(), strict=True)],
        }

    def _der(self) -> list[bytes | None]:
        return list(self.der) if len(self.der) == len(self.certificates) else [None] * len(self.certificates)


def der_to_pem(der: bytes) -> str:
    """PEM text of a DER certificate, byte for byte what ``public_bytes(Encoding.PEM)`` gives."""
    b64 = base64.b64encode(der).decode("ascii")
    lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def certificate_info(cert: x509.Certificate, der: bytes | None = None) -> dict:
    """Stable JSON description of a certificate, PEM included (``der``: its encoding, if at hand)."""
    if der is None:
        der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": hashlib.sha256(der).hexdigest(),
        "pem": der_to_pem(der),
    }


def verify_chain(
    chain: CertChain,
    trust_anchors: Iterable[x509.Certificate],
    *,
    policy: str = "cma",
    identity: Any = None,
    at_time: datetime.datetime | None = None,
) -> ChainVerdict:
    """Run every check on ``chain``; each gets its own verdict in the returned :class:`ChainVerdict`.

    ``identity`` (a :class:`DeviceIdentity`) is compared with the leaf's CMA name under policy
    ``"cma"``; ``at_time`` (default now; a naive time is taken as UTC) is the validity instant.
    """
    if policy not in POLICIES:
        raise UsageError(f"unknown certificate policy {policy!r} (known: {', '.join(POLICIES)})")
    at = at_time or datetime.datetime.now(datetime.UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    anchors = list(trust_anchors)
    for i, anchor in enumerate(anchors):
        try:
            force_parse(anchor)
        except Exception as e:  # see force_parse
            raise TrustAnchorError(f"trust anchor {i} is not a usable certificate: {_describe(e)}")
    certs = chain.certificates
    trust, anchor, outside_root = find_anchor(certs, anchors)
    labelled = [(cert_label(i, c), c) for i, c in enumerate(certs)]
    if outside_root is not None:
        labelled.insert(0, (f"trust anchor ({outside_root.subject.rfc4514_string()})", outside_root))
    checks = [
        check_root_hash(chain, outside_root),
        check_signatures(certs),
        trust,
        check_validity(labelled, at),
        check_basic_constraints(labelled),
        check_key_usage(labelled),
        check_cma_name(certs[-1], policy, identity),
    ]
    return ChainVerdict(checks, list(certs), certs[-1].public_key(), policy, anchor, list(chain.der))


# --------------------------------------------------------------------------------------------
# Loading certificates from files
# --------------------------------------------------------------------------------------------

CERT_SUFFIXES = (".pem", ".crt", ".cer", ".cert", ".der")


#: Largest certificate or key file pciauth reads (a chain is at most 64 KiB on the wire).
MAX_FILE_SIZE = 4 << 20


def read_small_file(path: str | os.PathLike, what: str = "file") -> bytes:
    """A regular file of at most :data:`MAX_FILE_SIZE` bytes (never a device, FIFO or huge file).

    Opened non-blocking, so a FIFO cannot hang us. Errors name the file: NotFoundError,
    PermissionDeniedError, TrustAnchorError.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such {what}", path=str(path))
    except PermissionError:
        raise PermissionDeniedError(f"{path}: permission denied", path=str(path))
    except OSError as e:
        raise TrustAnchorError(f"{path}: cannot open: {e.strerror or e}", path=str(path), errno=e.errno)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TrustAnchorError(f"{path}: is a directory, not a {what}", path=str(path))
        if not stat.S_ISREG(st.st_mode):
            raise TrustAnchorError(f"{path}: not a regular file", path=str(path))
        if st.st_size > MAX_FILE_SIZE:
            raise TrustAnchorError(f"{path}: larger than {MAX_FILE_SIZE} bytes: not a {what}", path=str(path))
        chunks, total = [], 0
        while total <= MAX_FILE_SIZE:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise TrustAnchorError(f"{path}: cannot read: {e.strerror or e}", path=str(path), errno=e.errno)
    finally:
        os.close(fd)
    if total > MAX_FILE_SIZE:
        raise TrustAnchorError(f"{path}: larger than {MAX_FILE_SIZE} bytes: not a {what}", path=str(path))
    return b"".join(chunks)


def load_certificates(path: str | os.PathLike) -> list[x509.Certificate]:
    """Every certificate of one file: PEM (any number of CERTIFICATE blocks) or concatenated DER."""
    p = Path(path)
    data = read_small_file(p, "certificate file")
    if b"-----BEGIN" in data:
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise TrustAnchorError(
                f"{p}: PEM file without a CERTIFICATE block (a key or a CSR?)", path=str(p)
            )
        try:
            certs = x509.load_pem_x509_certificates(data)
            for cert in certs:
                force_parse(cert)
        except Exception as e:  # see force_parse
            raise TrustAnchorError(f"{p}: bad PEM certificate: {_describe(e)}", path=str(p))
        return certs
    try:
        return [load_der_certificate(d, field=f"{p}") for d in split_der_certificates(data, field=str(p))]
    except MalformedData as e:
        raise TrustAnchorError(f"neither PEM nor DER certificates: {e.message}", path=str(p))


def load_trust_anchors(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[x509.Certificate]:
    """Trust anchors from files and directories (``*.pem *.crt *.cer *.cert *.der`` inside one).

    Errors name the file: :class:`NotFoundError`, :class:`PermissionDeniedError`,
    :class:`TrustAnchorError` (garbage, a key instead of a certificate, an empty directory).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    anchors: list[x509.Certificate] = []
    for entry in paths:
        p = Path(entry)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in CERT_SUFFIXES)
            if not files:
                raise TrustAnchorError(
                    f"{p}: no certificate file ({' '.join(CERT_SUFFIXES)}) in this directory", path=str(p)
                )
            for f in files:
                anchors.extend(load_certificates(f))
        else:
            anchors.extend(load_certificates(p))
    return anchors
