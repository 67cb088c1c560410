"""Responder misbehaviours, for testing requesters (pciauth's and others') against a hostile device.

Each row of :data:`MISBEHAVIOURS` is a name, what it simulates, the request code it hits and a
transform of the responder's answer (or of the certificate chain the responder serves, or of the
CHALLENGE it signs). ``ResponderConfig(adversary=("bad-signature",))`` turns rows on; ``pciauth
responder --adversary NAME`` does the same on the command line. A requester must reject every row
with a clear error and never report the device authenticated.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pciauth.errors import UsageError
from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C

Code = C.Code


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    b = bytearray(data)
    if not b:
        return data
    b[offset % len(b)] ^= mask
    return bytes(b)


def _put16(data: bytes, offset: int, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into("<H", b, offset, value & 0xFFFF)
    return bytes(b)


def _put32(data: bytes, offset: int, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into("<I", b, offset, value)
    return bytes(b)


def _is_error(resp: bytes) -> bool:
    return len(resp) >= 2 and resp[1] == Code.ERROR


def _error(version: int, code: int, data: int = 0, ext: bytes = b"") -> bytes:
    return bytes((version, Code.ERROR, code, data)) + ext


def _rc_offset(rsp: Any, resp: bytes) -> int:
    """Offset of RequesterContext in a 1.3 CHALLENGE_AUTH or signed MEASUREMENTS."""
    return len(resp) - A.signature_size(rsp.asym_bit) - C.REQUESTER_CONTEXT_SIZE


def _opaque_offset(rsp: Any, req: bytes) -> int:
    h = A.hash_size(rsp.hash_bit)
    return 4 + h + C.NONCE_SIZE + (h if req[3] else 0)


def _with_opaque(resp: bytes, req: bytes, rsp: Any, opaque: bytes) -> bytes:
    """Put ``opaque`` into a CHALLENGE_AUTH that had none (its signature then covers other bytes)."""
    at = _opaque_offset(rsp, req)
    return resp[:at] + struct.pack("<H", len(opaque)) + opaque + resp[at + 2 :]


def _second_cert_tail(chain: bytes, rsp: Any) -> bytes:
    """Flip the last signature byte of the intermediate (second) certificate of the chain."""
    from pciauth.spdm.certs import split_der_certificates

    start = 4 + A.hash_size(rsp.hash_bit)
    ders = split_der_certificates(chain[start:])
    idx = 1 if len(ders) > 1 else 0
    end = start + sum(len(d) for d in ders[: idx + 1])
    return _flip(chain, end - 1)


def _version_swap(resp: bytes) -> bytes:
    return bytes((C.V10 if resp[0] != C.V10 else C.V11,)) + resp[1:]


Transform = Callable[[bytes, bytes, Any], bytes]  # (response, request, responder) -> response


@dataclass(frozen=True)
class Misbehaviour:
    name: str
    description: str
    request: int | None  # request code whose answer is changed (None: see chain/sign hooks)
    transform: Transform | None = None
    chain: Callable[[bytes, Any], bytes] | None = None
    min_version: int = C.V10
    needs_session: bool = False
    needs_signed_measurements: bool = False


MISBEHAVIOURS: tuple[Misbehaviour, ...] = (
    Misbehaviour("truncated-version", "VERSION cut after 5 bytes", Code.GET_VERSION,
                 lambda r, q, s: r[:5]),
    Misbehaviour("truncated-certificate", "CERTIFICATE cut in half", Code.GET_CERTIFICATE,
                 lambda r, q, s: r[: len(r) // 2]),
    Misbehaviour("truncated-challenge-auth", "CHALLENGE_AUTH missing its last 10 bytes", Code.CHALLENGE,
                 lambda r, q, s: r[:-10]),
    Misbehaviour("oversized-algorithms", "ALGORITHMS with 16 extra bytes", Code.NEGOTIATE_ALGORITHMS,
                 lambda r, q, s: r + b"\xaa" * 16),
    Misbehaviour("algorithms-length-disagrees", "ALGORITHMS Length field 4 more than the message",
                 Code.NEGOTIATE_ALGORITHMS, lambda r, q, s: _put16(r, 4, len(r) + 4)),
    Misbehaviour("wrong-response-code", "GET_DIGESTS answered with code CERTIFICATE", Code.GET_DIGESTS,
                 lambda r, q, s: r[:1] + bytes((Code.CERTIFICATE,)) + r[2:]),
    Misbehaviour("version-downgrade", "CAPABILITIES in another version than requested",
                 Code.GET_CAPABILITIES, lambda r, q, s: _version_swap(r)),
    Misbehaviour("capabilities-reserved-value", "CAPABILITIES with MEAS_CAP 3 (reserved)", Code.GET_CAPABILITIES,
                 lambda r, q, s: _put32(r, 8, struct.unpack_from("<I", r, 8)[0] | (3 << 3))),
    Misbehaviour("response-version-mismatch", "CHALLENGE_AUTH in another SPDM version", Code.CHALLENGE,
                 lambda r, q, s: _version_swap(r)),
    Misbehaviour("algorithm-not-offered", "ALGORITHMS selects SM2, which was not offered",
                 Code.NEGOTIATE_ALGORITHMS, lambda r, q, s: _put32(r, 12, 0x0200)),
    Misbehaviour("two-hashes-selected", "ALGORITHMS selects two base hash algorithms",
                 Code.NEGOTIATE_ALGORITHMS, lambda r, q, s: _put32(r, 16, 0x0003)),
    Misbehaviour("measurement-hash-inconsistent", "ALGORITHMS selects two measurement hashes",
                 Code.NEGOTIATE_ALGORITHMS, lambda r, q, s: _put32(r, 8, 0x0006)),
    Misbehaviour("digest-mismatch", "DIGESTS reports a digest that is not the chain's", Code.GET_DIGESTS,
                 lambda r, q, s: _flip(r, -1)),
    Misbehaviour("zero-slot-mask", "DIGESTS with no slot provisioned", Code.GET_DIGESTS,
                 lambda r, q, s: r[:3] + b"\x00"),
    Misbehaviour("portion-length-overflow", "CERTIFICATE PortionLength 100 bytes beyond the message",
                 Code.GET_CERTIFICATE, lambda r, q, s: _put16(r, 4, len(r) - 8 + 100)),
    Misbehaviour("remainder-inconsistent", "first CERTIFICATE announces 7 bytes more than the chain",
                 Code.GET_CERTIFICATE,
                 lambda r, q, s: _put16(r, 6, struct.unpack_from("<H", r, 6)[0] + 7) if q[4:6] == b"\0\0" else r),
    Misbehaviour("wrong-root-hash", "chain whose root hash is not the root certificate's hash", None,
                 chain=lambda c, s: _flip(c, 4)),
    Misbehaviour("broken-chain-link", "chain whose intermediate certificate signature is corrupted", None,
                 chain=_second_cert_tail),
    Misbehaviour("cert-chain-hash-mismatch", "CHALLENGE_AUTH CertChainHash not the chain's hash",
                 Code.CHALLENGE, lambda r, q, s: _flip(r, 4)),
    Misbehaviour("wrong-slot", "CHALLENGE_AUTH names another slot", Code.CHALLENGE,
                 lambda r, q, s: r[:2] + bytes(((r[2] & 0xF0) | 3,)) + r[3:]),
    Misbehaviour("opaque-length-overflow", "CHALLENGE_AUTH OpaqueDataLength 0xFFFF", Code.CHALLENGE,
                 lambda r, q, s: _put16(r, _opaque_offset(s, q), 0xFFFF)),
    Misbehaviour("malformed-opaque-data", "CHALLENGE_AUTH opaque data that is not general opaque data",
                 Code.CHALLENGE, lambda r, q, s: _with_opaque(r, q, s, b"\x05\x00\x00\x00junk"), min_version=C.V12),
    Misbehaviour("bad-signature", "CHALLENGE_AUTH signature corrupted", Code.CHALLENGE,
                 lambda r, q, s: _flip(r, -1)),
    Misbehaviour("stale-nonce", "CHALLENGE_AUTH signed over another nonce (a replayed answer)", Code.CHALLENGE),
    Misbehaviour("wrong-requester-context", "CHALLENGE_AUTH echoes another RequesterContext", Code.CHALLENGE,
                 lambda r, q, s: _flip(r, _rc_offset(s, r)), min_version=C.V13),
    Misbehaviour("wrong-measurements-context", "signed MEASUREMENTS echo another RequesterContext",
                 Code.GET_MEASUREMENTS,
                 lambda r, q, s: _flip(r, _rc_offset(s, r)) if q[2] & 1 else r, min_version=C.V13,
                 needs_signed_measurements=True),
    Misbehaviour("bad-measurement-signature", "signed MEASUREMENTS signature corrupted", Code.GET_MEASUREMENTS,
                 lambda r, q, s: _flip(r, -1) if q[2] & 1 else r, needs_signed_measurements=True),
    Misbehaviour("measurement-block-overflow", "MeasurementSize of the first block beyond the record",
                 Code.GET_MEASUREMENTS, lambda r, q, s: _put16(r, 10, 0xFFFF) if q[3] else r,
                 needs_signed_measurements=True),
    Misbehaviour("measurement-count-mismatch", "NumberOfBlocks one more than the record holds",
                 Code.GET_MEASUREMENTS,
                 lambda r, q, s: r[:4] + bytes(((r[4] + 1) & 0xFF,)) + r[5:] if q[3] else r,
                 needs_signed_measurements=True),
    Misbehaviour("never-ready", "ERROR ResponseNotReady to CHALLENGE and every RESPOND_IF_READY",
                 Code.CHALLENGE,
                 lambda r, q, s: _error(q[0], C.ErrorCode.RESPONSE_NOT_READY, 0, bytes((1, Code.CHALLENGE, 1, 2)))),
    Misbehaviour("busy-forever", "ERROR Busy to every CHALLENGE", Code.CHALLENGE,
                 lambda r, q, s: _error(q[0], C.ErrorCode.BUSY)),
    Misbehaviour("unspecified-error", "ERROR Unspecified to CHALLENGE", Code.CHALLENGE,
                 lambda r, q, s: _error(q[0], C.ErrorCode.UNSPECIFIED)),
    Misbehaviour("garbage-response", "three random bytes instead of CHALLENGE_AUTH", Code.CHALLENGE,
                 lambda r, q, s: b"\x12\x03\x00"),
    Misbehaviour("bad-key-exchange-signature", "KEY_EXCHANGE_RSP signature corrupted", Code.KEY_EXCHANGE,
                 lambda r, q, s: _flip(r, -1 - A.hash_size(s.hash_bit)), min_version=C.V11, needs_session=True),
    Misbehaviour("bad-responder-verify-data", "KEY_EXCHANGE_RSP ResponderVerifyData corrupted",
                 Code.KEY_EXCHANGE, lambda r, q, s: _flip(r, -1), min_version=C.V11, needs_session=True),
)

BY_NAME: dict[str, Misbehaviour] = {m.name: m for m in MISBEHAVIOURS}


class Adversary:
    """The active misbehaviours of one responder."""

    def __init__(self, names: tuple[str, ...] | list[str] = ()) -> None:
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise UsageError(f"unknown adversary row(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        self.rows = [BY_NAME[n] for n in names]
        self.names = {r.name for r in self.rows}

    def response(self, responder: Any, code: int, request: bytes, response: bytes) -> bytes:
        if code == Code.RESPOND_IF_READY and "never-ready" in self.names:
            return _error(request[0], C.ErrorCode.RESPONSE_NOT_READY, 0, bytes((1, request[2], 1, 2)))
        for row in self.rows:
            if row.transform is not None and row.request == code and not _is_error(response):
                response = row.transform(response, request, responder)
        return response

    def chain_transform(self, responder: Any) -> Callable[[bytes], bytes] | None:
        """The chain hooks bound to ``responder`` (None when no row changes the chain)."""
        hooks = [r.chain for r in self.rows if r.chain is not None]
        if not hooks:
            return None

        def apply(chain: bytes) -> bytes:
            for hook in hooks:
                chain = hook(chain, responder)
            return chain

        return apply

    def signed_request(self, challenge: bytes) -> bytes:
        """The CHALLENGE bytes the responder puts in M1/M2 (``stale-nonce`` changes the nonce)."""
        if "stale-nonce" in self.names:
            return _flip(challenge, 4)
        return challenge
