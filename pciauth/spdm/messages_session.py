"""SPDM session messages (1.1+): KEY_EXCHANGE(_RSP), FINISH(_RSP), END_SESSION(_ACK), and the
opaque data element that negotiates the DSP0277 secured message version.

Opaque data format: SPDM 1.1 uses DSP0277's table with a ``"DMTF"`` spec id header; 1.2+ uses
the general opaque data table (OpaqueDataFmt1) that pciauth negotiates in NEGOTIATE_ALGORITHMS.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pciauth.spdm import constants as C
from pciauth.spdm.messages_base import Reader, SpdmMalformed, header

_U16 = struct.Struct("<H")


def _opaque(r: Reader, what: str) -> bytes:
    n = r.u16("OpaqueDataLength")
    if n > C.MAX_OPAQUE_SIZE:
        raise SpdmMalformed(f"{what}: OpaqueDataLength {n} exceeds {C.MAX_OPAQUE_SIZE}",
                            field="OpaqueDataLength")
    return r.take(n, "OpaqueData")


# --- opaque data: secured message version negotiation --------------------------------------------
def encode_opaque(version: int, elements: list[bytes]) -> bytes:
    """Wrap DMTF-registry element data blobs in the opaque data table of ``version``."""
    if version >= C.V12:
        out = bytes((len(elements), 0, 0, 0))
    else:
        out = struct.pack("<IBBH", C.OPAQUE_SPEC_ID_DMTF, 1, len(elements), 0)
    for data in elements:
        el = bytes((C.OPAQUE_REGISTRY_DMTF, 0)) + _U16.pack(len(data)) + data
        out += el + bytes(-len(el) % 4)
    return out


def parse_opaque(version: int, data: bytes) -> list[bytes]:
    """The DMTF-registry element data blobs of an opaque data table (others are skipped)."""
    r = Reader(data, "OpaqueData")
    if version >= C.V12:
        total = r.u8("TotalElements")
        r.take(3, "Reserved")
    else:
        spec = r.u32("SpecID")
        if spec != C.OPAQUE_SPEC_ID_DMTF:
            raise SpdmMalformed(f"OpaqueData: SpecID 0x{spec:08x} is not DMTF", field="SpecID")
        r.u8("OpaqueVersion")
        total = r.u8("TotalElements")
        r.u16("Reserved")
    out = []
    for i in range(total):
        begin = r.pos
        reg = r.u8(f"Element[{i}].ID")
        vlen = r.u8(f"Element[{i}].VendorLen")
        r.take(vlen, f"Element[{i}].VendorID")
        dlen = r.u16(f"Element[{i}].OpaqueElementDataLen")
        blob = r.take(dlen, f"Element[{i}].OpaqueElementData")
        r.take(-(r.pos - begin) % 4, f"Element[{i}].AlignPadding")
        if reg == C.OPAQUE_REGISTRY_DMTF:
            out.append(blob)
    if r.rest():
        raise SpdmMalformed(f"OpaqueData: {r.rest()} byte(s) after the last element", field="OpaqueData")
    return out


def sm_supported_versions(versions: tuple[int, ...] = C.SECURED_MESSAGE_VERSIONS) -> bytes:
    return bytes((C.SM_DATA_VERSION, C.SM_DATA_ID_SUPPORTED_VERSIONS, len(versions))) + b"".join(
        _U16.pack(v) for v in versions)


def sm_version_selection(version: int) -> bytes:
    return bytes((C.SM_DATA_VERSION, C.SM_DATA_ID_VERSION_SELECTION)) + _U16.pack(version)


def find_sm_element(blobs: list[bytes], data_id: int) -> list[int] | None:
    """Versions listed (id 2) or selected (id 1) in the secured message element, or None."""
    for blob in blobs:
        if len(blob) < 2 or blob[0] != C.SM_DATA_VERSION or blob[1] != data_id:
            continue
        r = Reader(blob, "secured message opaque element")
        r.take(2, "SMDataID")
        if data_id == C.SM_DATA_ID_VERSION_SELECTION:
            return [r.u16("SelectedVersion")]
        n = r.u8("NumberOfVersions")
        return [r.u16("VersionsList") for _ in range(n)]
    return None


# --- KEY_EXCHANGE / KEY_EXCHANGE_RSP ----------------------------------------------------------------
@dataclass(slots=True)
class KeyExchange:
    version: int
    summary_type: int
    slot: int
    req_session_id: int
    random: bytes
    exchange_data: bytes
    opaque: bytes
    session_policy: int = 0
    raw: bytes = b""

    def encode(self) -> bytes:
        out = header(self.version, C.Code.KEY_EXCHANGE, self.summary_type, self.slot)
        policy = self.session_policy if self.version >= C.V12 else 0
        out += _U16.pack(self.req_session_id) + bytes((policy, 0)) + self.random + self.exchange_data
        return out + _U16.pack(len(self.opaque)) + self.opaque

    @classmethod
    def parse(cls, data: bytes, *, dhe_size: int) -> KeyExchange:
        r = h = Reader(data, "KEY_EXCHANGE", C.Code.KEY_EXCHANGE)
        sid = r.u16("ReqSessionID")
        policy = r.u8("SessionPolicy")
        r.u8("Reserved")
        rnd = r.take(32, "RandomData")
        exch = r.take(dhe_size, "ExchangeData")
        opaque = _opaque(r, "KEY_EXCHANGE")
        return cls(h.version, h.param1, h.param2, sid, rnd, exch, opaque, policy, r.end())


@dataclass(slots=True)
class KeyExchangeRsp:
    version: int
    heartbeat_period: int
    rsp_session_id: int
    mut_auth_requested: int
    req_slot_id: int
    random: bytes
    exchange_data: bytes
    measurement_summary_hash: bytes
    opaque: bytes
    signature: bytes
    verify_data: bytes
    raw: bytes = b""

    def encode_without_sig(self) -> bytes:
        out = header(self.version, C.Code.KEY_EXCHANGE_RSP, self.heartbeat_period)
        out += _U16.pack(self.rsp_session_id) + bytes((self.mut_auth_requested, self.req_slot_id))
        out += self.random + self.exchange_data + self.measurement_summary_hash
        return out + _U16.pack(len(self.opaque)) + self.opaque

    def encode(self) -> bytes:
        return self.encode_without_sig() + self.signature + self.verify_data

    @property
    def signed_part(self) -> bytes:
        """Up to (not including) the signature: what the signature covers (after the TH prefix)."""
        return self.raw[: len(self.raw) - len(self.signature) - len(self.verify_data)]

    @property
    def with_signature(self) -> bytes:
        """Up to and including the signature: what TH1 for the handshake secret holds."""
        return self.raw[: len(self.raw) - len(self.verify_data)]

    @classmethod
    def parse(cls, data: bytes, *, dhe_size: int, hash_size: int, sig_size: int, summary: bool,
              verify_data: bool = True) -> KeyExchangeRsp:
        r = h = Reader(data, "KEY_EXCHANGE_RSP", C.Code.KEY_EXCHANGE_RSP)
        sid = r.u16("RspSessionID")
        mut = r.u8("MutAuthRequested")
        slot = r.u8("ReqSlotIDParam")
        rnd = r.take(32, "RandomData")
        exch = r.take(dhe_size, "ExchangeData")
        msh = r.take(hash_size, "MeasurementSummaryHash") if summary else b""
        opaque = _opaque(r, "KEY_EXCHANGE_RSP")
        sig = r.take(sig_size, "Signature")
        vd = r.take(hash_size, "ResponderVerifyData") if verify_data else b""
        return cls(h.version, h.param1, sid, mut, slot, rnd, exch, msh, opaque, sig, vd, r.end())


# --- FINISH / FINISH_RSP -------------------------------------------------------------------------------
@dataclass(slots=True)
class Finish:
    version: int
    verify_data: bytes
    signature: bytes = b""
    req_slot_id: int = 0
    raw: bytes = b""

    def header(self) -> bytes:
        return header(self.version, C.Code.FINISH, 1 if self.signature else 0, self.req_slot_id)

    def encode(self) -> bytes:
        return self.header() + self.signature + self.verify_data

    @classmethod
    def parse(cls, data: bytes, *, hash_size: int, sig_size: int = 0) -> Finish:
        r = h = Reader(data, "FINISH", C.Code.FINISH)
        sig = r.take(sig_size, "Signature") if h.param1 & 1 else b""
        vd = r.take(hash_size, "RequesterVerifyData")
        return cls(h.version, vd, sig, h.param2, r.end())


@dataclass(slots=True)
class FinishRsp:
    version: int
    verify_data: bytes = b""
    raw: bytes = b""

    def encode(self) -> bytes:
        return header(self.version, C.Code.FINISH_RSP) + self.verify_data

    @classmethod
    def parse(cls, data: bytes, *, hash_size: int = 0) -> FinishRsp:
        r = h = Reader(data, "FINISH_RSP", C.Code.FINISH_RSP)
        vd = r.take(hash_size, "ResponderVerifyData") if hash_size else b""
        return cls(h.version, vd, r.end())


# --- END_SESSION / END_SESSION_ACK -------------------------------------------------------------------
@dataclass(slots=True)
class EndSession:
    version: int
    attributes: int = 0
    raw: bytes = b""

    def encode(self) -> bytes:
        return header(self.version, C.Code.END_SESSION, self.attributes)

    @classmethod
    def parse(cls, data: bytes) -> EndSession:
        r = h = Reader(data, "END_SESSION", C.Code.END_SESSION)
        return cls(h.version, h.param1, r.end())


@dataclass(slots=True)
class EndSessionAck:
    version: int
    raw: bytes = b""

    def encode(self) -> bytes:
        return header(self.version, C.Code.END_SESSION_ACK)

    @classmethod
    def parse(cls, data: bytes) -> EndSessionAck:
        r = h = Reader(data, "END_SESSION_ACK", C.Code.END_SESSION_ACK)
        return cls(h.version, r.end())
