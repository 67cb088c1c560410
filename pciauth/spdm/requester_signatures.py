"""Signature checks of the requester, and the signature log entries they leave in the report.

What is signed follows the negotiated version (``algorithms.signing_message``): the transcript
itself for SPDM 1.0/1.1, ``combined_prefix || Hash(transcript)`` from 1.2 on. SPDM 1.0/1.1 did not
fix the byte order of signatures; like libspdm, a little-endian signature is accepted there (and
logged in big-endian form so that openssl verifies the log).
"""

from __future__ import annotations

from typing import Any

from pciauth.errors import SignatureError, SpdmError
from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm.report import AuthReport, SignatureRecord


def verify_signature(req: Any, what: str, context: str, transcript: bytes, signature: bytes, slot: int,
                     report: AuthReport, **nonces: bytes) -> SignatureRecord:
    """Verify ``signature`` over ``transcript``; log it; raise SignatureError when it fails."""
    v = req.version
    chain = req.chains.get(slot)
    if chain is None:
        raise SpdmError(f"{what}: signed with slot {slot}, whose chain was not read")
    transcript = bytes(transcript)
    msg = A.signing_message(v, context, transcript, req.hash_bit)
    asym = A.asym_algo(req.asym_bit)
    public_key = req.verdicts[slot].leaf_public_key if slot in req.verdicts else chain.leaf.public_key()
    if v >= C.V12:  # msg = combined_prefix || Hash(transcript): reuse both parts, hash once
        split = len(msg) - req.hash_len
        prefix, digest = msg[:split], msg[split:]
    else:
        prefix, digest = b"", A.hash_bytes(req.hash_bit, transcript)
    rec = SignatureRecord(
        what, C.version_str(v), slot, asym.name, A.describe_hash(req.hash_bit), bytes(signature),
        transcript, digest, prefix, context if v >= C.V12 else "", msg,
        public_key=public_key, asym_bit=req.asym_bit, **nonces)
    if asym.scheme == "rsapss":
        rec.openssl_sigopts = ["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"]
    report.signatures.append(rec)
    try:
        A.verify(req.asym_bit, req.hash_bit, public_key, signature, msg)
    except SignatureError as e:
        swapped = swap_endian(asym, signature) if v < C.V12 and req.config.accept_little_endian_10_11 else None
        if swapped is None or not _verifies(req.asym_bit, req.hash_bit, public_key, swapped, msg):
            rec.reason = str(e)
            raise SignatureError(f"{what}: {e}")
        # SPDM 1.0/1.1 left the byte order open; some devices sign little endian (libspdm
        # accepts either). The log keeps the big-endian form, which openssl verifies.
        rec.signature = swapped  # signature_der follows it
        rec.verified = True
        rec.reason = "verified (little-endian signature, SPDM 1.0/1.1; logged big endian)"
        return rec
    rec.verified = True
    rec.reason = "verified"
    return rec


def swap_endian(asym: Any, signature: bytes) -> bytes | None:
    """The other byte order of a signature: RSA reversed whole, ECDSA r and s each reversed."""
    if len(signature) != asym.signature_size:
        return None
    if asym.scheme == "ecdsa":
        n = asym.coord_size
        return signature[:n][::-1] + signature[n:][::-1]
    return signature[::-1]


def _verifies(asym_bit: int, hash_bit: int, key: Any, signature: bytes, msg: bytes) -> bool:
    try:
        A.verify(asym_bit, hash_bit, key, signature, msg)
    except SignatureError:
        return False
    return True
