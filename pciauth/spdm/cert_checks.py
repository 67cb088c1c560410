"""The individual checks of an SPDM certificate chain, one verdict each (see ``certs``).

Each ``check_*`` function returns a :class:`Check` whose reason names the certificate and the
exact problem, so a report tells a lab engineer what to fix. :func:`pciauth.spdm.certs.verify_chain`
runs them all; they are also usable on their own. Certificates are ``cryptography`` objects,
root first, leaf last; "labelled" lists pair each with a label for the messages.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from pciauth.spdm.algorithms import hash_bytes

CMA_OID = x509.ObjectIdentifier("2.23.147")
_UTF8STRING = 0x0C

# --------------------------------------------------------------------------------------------
# CMA name
# --------------------------------------------------------------------------------------------


def cma_name(identity: Any) -> str:
    """The CMA Subject Alternative Name a device with ``identity`` must have (PCIe r6.x 6.31.3).

    Built like Linux's CMA: ``Vendor=%04x:Device=%04x:CC=%06x:REV=%02x``, then
    ``:SSVID=%04x:SSID=%04x`` when the function has subsystem ids (type 0 header), then
    ``:%016x`` with the Device Serial Number when it has a non-zero one. Lower-case hex.
    """
    name = (
        f"Vendor={identity.vendor:04x}:Device={identity.device:04x}:"
        f"CC={identity.class_code:06x}:REV={identity.revision:02x}"
    )
    ssvid, ssid = getattr(identity, "subsystem_vendor", None), getattr(identity, "subsystem_device", None)
    if ssvid is not None and ssid is not None:
        name += f":SSVID={ssvid:04x}:SSID={ssid:04x}"
    serial = getattr(identity, "serial", None)
    if serial:
        name += f":{serial:016x}"
    return name


def cma_names_of(cert: x509.Certificate) -> list[str | bytes]:
    """Every CMA otherName value of a certificate: str for a UTF8String, raw bytes otherwise.

    Raises :class:`MalformedData` when the SAN extension itself cannot be read.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str | bytes] = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != CMA_OID:
            continue
        text = _utf8string(bytes(other.value))
        out.append(text if text is not None else bytes(other.value))
    return out


def _utf8string(value: bytes) -> str | None:
    """The text of a DER UTF8String that fills ``value`` exactly, else None."""
    if len(value) < 2 or value[0] != _UTF8STRING:
        return None
    first, off = value[1], 2
    if first >= 0x80:
        n = first & 0x7F
        if n == 0 or n > 2 or len(value) < 2 + n:
            return None
        first, off = int.from_bytes(value[2 : 2 + n], "big"), 2 + n
    if len(value) != off + first:
        return None
    try:
        return value[off:].decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclasses.dataclass
class Check:
    """One verdict: ``ok`` with a ``reason`` that says exactly why (``skipped``: not required)."""

    name: str
    ok: bool
    reason: str
    skipped: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "skipped": self.skipped}


def cert_label(i: int, cert: x509.Certificate) -> str:
    return f"certificate {i} ({cert.subject.rfc4514_string() or '<empty subject>'})"


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def same_anchor(cert: x509.Certificate, anchor: x509.Certificate) -> bool:
    """The same certificate, or the same subject with the same public key (a re-issued root)."""
    if cert.public_bytes(serialization.Encoding.DER) == anchor.public_bytes(serialization.Encoding.DER):
        return True
    return cert.subject == anchor.subject and _spki(cert) == _spki(anchor)


def issue_problem(child: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """None when ``issuer`` issued ``child`` (name match and signature), else why not."""
    if child.issuer != issuer.subject:
        return (
            f"issuer name '{child.issuer.rfc4514_string()}' does not match subject "
            f"'{issuer.subject.rfc4514_string()}'"
        )
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return "signature does not verify with the issuer's public key"
    except Exception as e:  # unsupported or malformed algorithm parameters from untrusted data
        return f"signature cannot be verified: {type(e).__name__}: {e}"
    return None


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issue_problem(cert, cert) is None


def check_signatures(certs: list[x509.Certificate]) -> Check:
    first = certs[0]
    if first.issuer == first.subject and not is_self_signed(first):
        return Check(
            "signatures",
            False,
            f"{cert_label(0, first)} claims to be self-signed but its signature does not verify",
        )
    for i in range(1, len(certs)):
        problem = issue_problem(certs[i], certs[i - 1])
        if problem:
            reason = f"{cert_label(i, certs[i])} is not issued by certificate {i - 1}: {problem}"
            if issue_problem(certs[i - 1], certs[i]) is None:
                reason += " (the chain seems to be leaf-first; SPDM wants the root first)"
            return Check("signatures", False, reason)
    return Check(
        "signatures", True, f"{len(certs) - 1} link(s) verified" if len(certs) > 1 else "single certificate"
    )


def find_anchor(
    certs: list[x509.Certificate], anchors: list[x509.Certificate]
) -> tuple[Check, x509.Certificate | None, x509.Certificate | None]:
    """(check, the anchor reached, the anchor that issued the first certificate if outside)."""
    first = certs[0]
    if not anchors:
        return Check("trust_anchor", False, "no trust anchor given (use --trust-anchor FILE|DIR)"), None, None
    for i, cert in enumerate(certs):
        for anchor in anchors:
            if same_anchor(cert, anchor):
                return Check("trust_anchor", True, f"{cert_label(i, cert)} is a trust anchor"), anchor, None
    for anchor in anchors:
        if issue_problem(first, anchor) is None:
            reason = f"{cert_label(0, first)} is issued by trust anchor '{anchor.subject.rfc4514_string()}'"
            return Check("trust_anchor", True, reason), anchor, anchor
    for anchor in anchors:
        if anchor.subject == first.subject or anchor.subject == first.issuer:
            return (
                Check(
                    "trust_anchor",
                    False,
                    f"{cert_label(0, first)} has the name of trust anchor '{anchor.subject.rfc4514_string()}' "
                    "but not its key (an impostor with the same subject and key id is not trusted)",
                ),
                None,
                None,
            )
    return (
        Check(
            "trust_anchor",
            False,
            f"no trust anchor is, or issued, {cert_label(0, first)} ({len(anchors)} anchor(s) given)",
        ),
        None,
        None,
    )


def check_root_hash(chain: Any, outside_root: x509.Certificate | None) -> Check:
    first = chain.certificates[0]
    if is_self_signed(first):
        root_der, what = chain.der[0], "the first (root) certificate"
    elif outside_root is not None:
        root_der = outside_root.public_bytes(serialization.Encoding.DER)
        what = f"the root trust anchor '{outside_root.subject.rfc4514_string()}'"
    else:
        return Check(
            "root_hash",
            False,
            "the chain starts below its root and no trust anchor issued its first certificate: the root hash cannot be checked",
        )
    expected = hash_bytes(chain.hash_bit, root_der)
    if expected != chain.root_hash:
        return Check(
            "root_hash",
            False,
            f"root hash {chain.root_hash.hex()} does not match the hash of {what} ({expected.hex()})",
        )
    return Check("root_hash", True, f"matches {what}")


def check_validity(certs: list[tuple[str, x509.Certificate]], at: datetime.datetime) -> Check:
    when = at.isoformat()
    for label, cert in certs:
        if at < cert.not_valid_before_utc:
            return Check(
                "validity",
                False,
                f"{label} is not valid before {cert.not_valid_before_utc.isoformat()} (time checked: {when})",
            )
        if at > cert.not_valid_after_utc:
            return Check(
                "validity",
                False,
                f"{label} expired on {cert.not_valid_after_utc.isoformat()} (time checked: {when})",
            )
    return Check("validity", True, f"all {len(certs)} certificate(s) valid at {when}")


def _ext(cert: x509.Certificate, cls: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def check_basic_constraints(certs: list[tuple[str, x509.Certificate]]) -> Check:
    """Every certificate above the leaf is a CA whose pathLen allows the CAs below it."""
    cas = certs[:-1]
    for pos, (label, cert) in enumerate(cas):
        bc = _ext(cert, x509.BasicConstraints)
        if bc is None:
            return Check(
                "basic_constraints",
                False,
                f"{label} issues certificates but has no basicConstraints extension",
            )
        if not bc.ca:
            return Check(
                "basic_constraints",
                False,
                f"{label} issues certificates but its basicConstraints say CA:FALSE",
            )
        below = len(cas) - pos - 1  # intermediate CAs between this one and the leaf
        if bc.path_length is not None and below > bc.path_length:
            return Check(
                "basic_constraints",
                False,
                f"{label} has pathLen {bc.path_length} but {below} CA(s) follow it",
            )
    label, leaf = certs[-1]
    bc = _ext(leaf, x509.BasicConstraints)
    if bc is not None and bc.ca and len(certs) > 1:
        return Check("basic_constraints", False, f"the leaf {label} is a CA (basicConstraints CA:TRUE)")
    return Check("basic_constraints", True, f"{len(cas)} CA certificate(s) marked CA, leaf is not a CA")


def check_key_usage(certs: list[tuple[str, x509.Certificate]]) -> Check:
    for label, cert in certs[:-1]:
        ku = _ext(cert, x509.KeyUsage)
        if ku is None:
            return Check("key_usage", False, f"{label} is a CA without a keyUsage extension")
        if not ku.key_cert_sign:
            return Check("key_usage", False, f"{label} is a CA whose keyUsage lacks keyCertSign")
    label, leaf = certs[-1]
    ku = _ext(leaf, x509.KeyUsage)
    if ku is None:
        return Check(
            "key_usage", False, f"the leaf {label} has no keyUsage extension (digitalSignature is required)"
        )
    if not ku.digital_signature:
        return Check("key_usage", False, f"the leaf {label} keyUsage lacks digitalSignature")
    return Check("key_usage", True, "keyCertSign on every CA, digitalSignature on the leaf")


def check_cma_name(leaf: x509.Certificate, policy: str, identity: Any) -> Check:
    names = cma_names_of(leaf)
    found = "; ".join(repr(n) for n in names) if names else "none"
    if policy == "spdm-only":
        return Check(
            "cma_name", True, f"not required under policy spdm-only (CMA names found: {found})", skipped=True
        )
    if _ext(leaf, x509.SubjectAlternativeName) is None:
        return Check(
            "cma_name", False, "the leaf has no Subject Alternative Name (policy cma requires the CMA name)"
        )
    if not names:
        return Check(
            "cma_name", False, "the leaf's Subject Alternative Name has no otherName with OID 2.23.147 (CMA)"
        )
    for n in names:
        if isinstance(n, bytes):
            return Check("cma_name", False, f"the CMA name is not a UTF8String (DER {n.hex()})")
    if identity is None:
        return Check(
            "cma_name", True, f"CMA name {names[0]!r} present; not compared: the device ids are unknown"
        )
    expected = cma_name(identity)
    for n in names:
        if n != expected:
            hint = (
                " (differs only in letter case; Linux compares exactly)"
                if n.lower() == expected.lower()
                else ""
            )
            return Check("cma_name", False, f"CMA name {n!r} does not match the device {expected!r}{hint}")
    return Check("cma_name", True, f"CMA name {expected!r} matches the device")
