"""SPDM authentication messages: DIGESTS, CERTIFICATE, CHALLENGE(_AUTH), (GET_)MEASUREMENTS.

Layouts follow DSP0274 for each version (1.3 adds the 8-byte RequesterContext to CHALLENGE and
GET_MEASUREMENTS, echoed by the responses after the opaque data). Response parsers take the sizes
the negotiation fixed (hash size, signature size) because the messages do not carry them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pciauth.spdm import constants as C
from pciauth.spdm.messages_base import Layout, Reader, SpdmMalformed, header

_U16 = struct.Struct("<H")


def _opaque(r, what: str, n: int | None = None) -> bytes:
    """OpaqueData; ``n`` is OpaqueDataLength when the caller read it with its fixed fields."""
    if n is None:
        n = r.u16("OpaqueDataLength")
    if n > C.MAX_OPAQUE_SIZE:
        raise SpdmMalformed(f"{what}: OpaqueDataLength {n} exceeds {C.MAX_OPAQUE_SIZE}",
                            field="OpaqueDataLength")
    return r.take(n, "OpaqueData")


# --- requests as bytes (the requester encodes these on every authentication) ------------------------
def get_digests(version: int) -> bytes:
    return header(version, C.Code.GET_DIGESTS)


def get_certificate(version: int, slot: int, offset: int, length: int, attributes: int = 0) -> bytes:
    return header(version, C.Code.GET_CERTIFICATE, slot, attributes) + _U16_U16.pack(offset, length)


def challenge(version: int, slot: int, summary_type: int, nonce: bytes, requester_context: bytes = b"") -> bytes:
    out = header(version, C.Code.CHALLENGE, slot, summary_type) + nonce
    return out + requester_context if version >= C.V13 else out


def get_measurements(version: int, attributes: int, operation: int, nonce: bytes = b"", slot: int = 0,
                     requester_context: bytes = b"") -> bytes:
    """GET_MEASUREMENTS; the nonce and slot travel only when a signature is asked for."""
    out = header(version, C.Code.GET_MEASUREMENTS, attributes, operation)
    if attributes & C.MEAS_ATTR_SIGNATURE:
        out += nonce + bytes((slot,)) if version >= C.V11 else nonce
    return out + requester_context if version >= C.V13 else out


_U16_U16 = struct.Struct("<HH")


# --- responses as bytes (the responder encodes these on every connection) ---------------------------
def certificate(version: int, slot: int, portion: bytes, remainder: int, param2: int = 0) -> bytes:
    return header(version, C.Code.CERTIFICATE, slot, param2) + _U16_U16.pack(len(portion), remainder) + portion


def measurements(version: int, param1: int, param2: int, number_of_blocks: int, record: bytes, nonce: bytes,
                 opaque: bytes = b"", requester_context: bytes = b"") -> bytes:
    """MEASUREMENTS without its signature (what L1/L2 holds); a signed one appends the signature."""
    out = (header(version, C.Code.MEASUREMENTS, param1, param2)
           + bytes((number_of_blocks,)) + len(record).to_bytes(3, "little") + record
           + nonce + _U16.pack(len(opaque)) + opaque)
    return out + requester_context if version >= C.V13 else out


# --- GET_DIGESTS / DIGESTS ----------------------------------------------------------------------
@dataclass(slots=True)
class GetDigests:
    version: int
    raw: bytes = b""

    def encode(self) -> bytes:
        return get_digests(self.version)

    @classmethod
    def parse(cls, data: bytes) -> GetDigests:
        r = h = Reader(data, "GET_DIGESTS", C.Code.GET_DIGESTS)
        return cls(h.version, r.end())


@dataclass(slots=True)
class Digests:
    version: int
    slot_mask: int
    digests: dict[int, bytes]
    supported_mask: int = 0  # 1.3 Param1
    raw: bytes = b""

    def encode(self) -> bytes:
        out = header(self.version, C.Code.DIGESTS, self.supported_mask, self.slot_mask)
        return out + b"".join(self.digests[s] for s in sorted(self.digests))

    @classmethod
    def parse(cls, data: bytes, hash_size: int) -> Digests:
        r = h = Reader(data, "DIGESTS", C.Code.DIGESTS)
        if h.param2 == 0:
            raise SpdmMalformed("DIGESTS: no slot is provisioned (slot mask 0)", field="Param2")
        digests = {s: r.take(hash_size, f"Digest[{s}]") for s in range(8) if h.param2 >> s & 1}
        return cls(h.version, h.param2, digests, h.param1 if h.version >= C.V13 else 0, r.end())


# --- GET_CERTIFICATE / CERTIFICATE ---------------------------------------------------------------
_GET_CERTIFICATE = Layout(("Offset", "H"), ("Length", "H"))
_CERTIFICATE = Layout(("PortionLength", "H"), ("RemainderLength", "H"))

@dataclass(slots=True)
class GetCertificate:
    version: int
    slot: int
    offset: int
    length: int
    raw: bytes = b""
    attributes: int = 0  # 1.3 Param2: bit 0 SlotSizeRequested

    def encode(self) -> bytes:
        return get_certificate(self.version, self.slot, self.offset, self.length, self.attributes)

    @classmethod
    def parse(cls, data: bytes) -> GetCertificate:
        r = h = Reader(data, "GET_CERTIFICATE", C.Code.GET_CERTIFICATE)
        off, ln = r.fields(_GET_CERTIFICATE)
        attrs = h.param2 if h.version >= C.V13 else 0
        return cls(h.version, h.param1 & 0x0F, off, ln, r.end(), attrs)


@dataclass(slots=True)
class Certificate:
    version: int
    slot: int
    portion: bytes
    remainder: int
    param2: int = 0
    raw: bytes = b""

    def encode(self) -> bytes:
        return certificate(self.version, self.slot, self.portion, self.remainder, self.param2)

    @classmethod
    def parse(cls, data: bytes) -> Certificate:
        r = h = Reader(data, "CERTIFICATE", C.Code.CERTIFICATE)
        portion_len, remainder = r.fields(_CERTIFICATE)
        portion = r.take(portion_len, "CertChain (PortionLength)")
        return cls(h.version, h.param1 & 0x0F, portion, remainder, h.param2, r.end())


# --- CHALLENGE / CHALLENGE_AUTH ---------------------------------------------------------------------
@dataclass(slots=True)
class Challenge:
    version: int
    slot: int
    summary_type: int
    nonce: bytes
    requester_context: bytes = b""
    raw: bytes = b""

    def encode(self) -> bytes:
        return challenge(self.version, self.slot, self.summary_type, self.nonce, self.requester_context)

    @classmethod
    def parse(cls, data: bytes) -> Challenge:
        r = h = Reader(data, "CHALLENGE", C.Code.CHALLENGE)
        nonce = r.take(C.NONCE_SIZE, "Nonce")
        ctx = r.take(C.REQUESTER_CONTEXT_SIZE, "RequesterContext") if h.version >= C.V13 else b""
        return cls(h.version, h.param1, h.param2, nonce, ctx, r.end())


@dataclass(slots=True)
class ChallengeAuth:
    version: int
    slot: int  # Param1 bits 3:0
    slot_mask: int  # Param2
    cert_chain_hash: bytes
    nonce: bytes
    measurement_summary_hash: bytes
    opaque: bytes
    signature: bytes
    requester_context: bytes = b""
    attributes: int = 0  # Param1 bits 7:4
    raw: bytes = b""

    def encode(self) -> bytes:
        p1 = (self.slot & 0x0F) | (self.attributes & 0xF0)
        out = header(self.version, C.Code.CHALLENGE_AUTH, p1, self.slot_mask)
        out += self.cert_chain_hash + self.nonce + self.measurement_summary_hash
        out += _U16.pack(len(self.opaque)) + self.opaque
        if self.version >= C.V13:
            out += self.requester_context
        return out + self.signature

    @property
    def signed_part(self) -> bytes:
        """The message without its signature: what the M1/M2 transcript holds."""
        return self.raw[: len(self.raw) - len(self.signature)]

    @classmethod
    def parse(cls, data: bytes, *, hash_size: int, sig_size: int, summary: bool) -> ChallengeAuth:
        r = h = Reader(data, "CHALLENGE_AUTH", C.Code.CHALLENGE_AUTH)
        hs = f"{hash_size}s"
        if summary:
            chain_hash, nonce, msh, n = r.fields(Layout.of(
                ("CertChainHash", hs), ("Nonce", "32s"), ("MeasurementSummaryHash", hs), ("OpaqueDataLength", "H")))
        else:
            chain_hash, nonce, n = r.fields(Layout.of(("CertChainHash", hs), ("Nonce", "32s"),
                                                      ("OpaqueDataLength", "H")))
            msh = b""
        opaque = _opaque(r, "CHALLENGE_AUTH", n)
        ctx = r.take(C.REQUESTER_CONTEXT_SIZE, "RequesterContext") if h.version >= C.V13 else b""
        sig = r.take(sig_size, "Signature")
        return cls(h.version, h.param1 & 0x0F, h.param2, chain_hash, nonce, msh, opaque, sig, ctx,
                   h.param1 & 0xF0, r.end())


# --- GET_MEASUREMENTS / MEASUREMENTS -----------------------------------------------------------------
@dataclass(slots=True)
class GetMeasurements:
    version: int
    attributes: int
    operation: int
    nonce: bytes = b""
    slot: int = 0
    requester_context: bytes = b""
    raw: bytes = b""

    @property
    def signed(self) -> bool:
        return bool(self.attributes & C.MEAS_ATTR_SIGNATURE)

    def encode(self) -> bytes:
        return get_measurements(self.version, self.attributes, self.operation, self.nonce, self.slot,
                                self.requester_context)

    @classmethod
    def parse(cls, data: bytes) -> GetMeasurements:
        r = h = Reader(data, "GET_MEASUREMENTS", C.Code.GET_MEASUREMENTS)
        m = cls(h.version, h.param1, h.param2)
        if h.param1 & C.MEAS_ATTR_SIGNATURE:
            m.nonce = r.take(C.NONCE_SIZE, "Nonce")
            if h.version >= C.V11:
                m.slot = r.u8("SlotIDParam")
        if h.version >= C.V13:
            m.requester_context = r.take(C.REQUESTER_CONTEXT_SIZE, "RequesterContext")
        m.raw = r.end()
        return m


_MEASUREMENTS_HEAD = Layout(("NumberOfBlocks", "B"), ("MeasurementRecordLength", "3s"))
_MEASUREMENTS_NONCE = Layout(("Nonce", "32s"), ("OpaqueDataLength", "H"))


@dataclass(slots=True)
class Measurements:
    version: int
    param1: int  # the total number of indices for operation 0
    param2: int  # slot id (bits 3:0) and, 1.2+, content changed (bits 5:4)
    number_of_blocks: int
    record: bytes
    nonce: bytes
    opaque: bytes
    signature: bytes = b""
    requester_context: bytes = b""
    raw: bytes = b""

    def encode(self) -> bytes:
        return measurements(self.version, self.param1, self.param2, self.number_of_blocks, self.record,
                            self.nonce, self.opaque, self.requester_context) + self.signature

    @property
    def signed_part(self) -> bytes:
        return self.raw[: len(self.raw) - len(self.signature)]

    @classmethod
    def parse(cls, data: bytes, *, sig_size: int) -> Measurements:
        """``sig_size`` is 0 for an unsigned response."""
        r = h = Reader(data, "MEASUREMENTS", C.Code.MEASUREMENTS)
        nblocks, rec_len = r.fields(_MEASUREMENTS_HEAD)
        rec_len = int.from_bytes(rec_len, "little")
        if rec_len > C.MAX_MEASUREMENT_RECORD:
            raise SpdmMalformed(f"MEASUREMENTS: MeasurementRecordLength {rec_len} over the "
                                f"{C.MAX_MEASUREMENT_RECORD}-byte limit", field="MeasurementRecordLength")
        record = r.take(rec_len, "MeasurementRecord (MeasurementRecordLength)")
        nonce, n = r.fields(_MEASUREMENTS_NONCE)
        opaque = _opaque(r, "MEASUREMENTS", n)
        ctx = r.take(C.REQUESTER_CONTEXT_SIZE, "RequesterContext") if h.version >= C.V13 else b""
        sig = r.take(sig_size, "Signature") if sig_size else b""
        return cls(h.version, h.param1, h.param2, nblocks, record, nonce, opaque, sig, ctx, r.end())
