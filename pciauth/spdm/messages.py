"""SPDM message codec (DSP0274 1.0-1.3): bytes <-> small dataclasses, no I/O, no crypto.

Every message class has ``encode() -> bytes`` and ``parse(data, ...) -> message``. Parsers
check every length and count before use and raise :class:`SpdmMalformed` (a
:class:`pciauth.errors.MalformedData`) naming the field. A parsed message keeps ``raw``: the
exact bytes of the message (``length`` bytes), which is what goes into transcripts. Up to three
trailing zero bytes are accepted and dropped (PCIe DOE pads objects to a dword); anything longer
is an error.

This module holds the header, ERROR/RESPOND_IF_READY and the negotiation messages (VERSION,
CAPABILITIES, ALGORITHMS). Authentication messages are in :mod:`messages_auth`, session ones in
:mod:`messages_session`; both are re-exported here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pciauth.spdm import constants as C
from pciauth.spdm.messages_base import Header, Layout, Reader, SpdmMalformed, header, parse_header

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

# --- ERROR, RESPOND_IF_READY --------------------------------------------------------------------
@dataclass(slots=True)
class ErrorResponse:
    version: int
    error_code: int
    error_data: int = 0
    extended: bytes = b""
    raw: bytes = b""

    def encode(self) -> bytes:
        return header(self.version, C.Code.ERROR, self.error_code, self.error_data) + self.extended

    @classmethod
    def parse(cls, data: bytes) -> ErrorResponse:
        r = h = Reader(data, "ERROR", C.Code.ERROR)
        ext = r.take(min(r.rest(), 32), "ExtendedErrorData")  # at most 32 bytes per DSP0274
        return cls(h.version, h.param1, h.param2, ext, r.end())

    @property
    def name(self) -> str:
        return C.error_name(self.error_code)

    def not_ready(self) -> tuple[int, int, int, int]:
        """ResponseNotReady data: (RDTExponent, RequestCode, Token, RDTM)."""
        if len(self.extended) < 4:
            raise SpdmMalformed("ERROR ResponseNotReady without its 4-byte extended data",
                                field="ExtendedErrorData")
        e = self.extended
        return e[0], e[1], e[2], e[3]


def get_version() -> bytes:
    """GET_VERSION: always SPDM 1.0."""
    return _GET_VERSION


def respond_if_ready(version: int, request_code: int, token: int) -> bytes:
    return header(version, C.Code.RESPOND_IF_READY, request_code, token)


# --- GET_VERSION / VERSION ----------------------------------------------------------------------
_GET_VERSION = bytes((C.V10, C.Code.GET_VERSION, 0, 0))

@dataclass(slots=True)
class GetVersion:
    raw: bytes = b""

    def encode(self) -> bytes:
        return get_version()

    @classmethod
    def parse(cls, data: bytes) -> GetVersion:
        r = Reader(data, "GET_VERSION", C.Code.GET_VERSION)
        return cls(r.end())


@dataclass(slots=True)
class Version:
    #: VersionNumberEntry values (u16: major<<12 | minor<<8 | update<<4 | alpha)
    entries: list[int] = field(default_factory=list)
    raw: bytes = b""

    def encode(self) -> bytes:
        out = header(C.V10, C.Code.VERSION) + bytes((0, len(self.entries)))
        return out + b"".join(_U16.pack(e) for e in self.entries)

    @classmethod
    def parse(cls, data: bytes) -> Version:
        r = h = Reader(data, "VERSION", C.Code.VERSION)
        if h.version != C.V10:
            raise SpdmMalformed(f"VERSION: header version 0x{h.version:02x}, must be 0x10",
                                field="SPDMVersion")
        r.u8("Reserved")
        n = r.u8("VersionNumberEntryCount")
        if n == 0:
            raise SpdmMalformed("VERSION: VersionNumberEntryCount is 0", field="VersionNumberEntryCount")
        if r.rest() >= 2 * n:  # every entry present: read them at once
            entries = list(struct.unpack_from(f"<{n}H", r.data, r.pos))
            r.pos += 2 * n
        else:  # name the first missing entry
            entries = [r.u16(f"VersionNumberEntry[{i}]") for i in range(n)]
        return cls(entries, r.end())

    @property
    def versions(self) -> list[int]:
        """The SPDMVersion bytes listed (major/minor only)."""
        return sorted({(e >> 8) & 0xFF for e in self.entries})

    @staticmethod
    def entry(version: int) -> int:
        return version << 8


# --- GET_CAPABILITIES / CAPABILITIES ------------------------------------------------------------
def _caps_size(version: int) -> int:
    return 20 if version >= C.V12 else 12


_CAPS_11 = Layout(("Reserved", "x"), ("CTExponent", "B"), ("Reserved", "2x"), ("Flags", "I"))
_CAPS_12 = Layout(("Reserved", "x"), ("CTExponent", "B"), ("Reserved", "2x"), ("Flags", "I"),
                  ("DataTransferSize", "I"), ("MaxSPDMmsgSize", "I"))


@dataclass(slots=True)
class GetCapabilities:
    version: int
    ct_exponent: int = 0
    flags: int = 0
    data_transfer_size: int = 0
    max_spdm_msg_size: int = 0
    raw: bytes = b""

    def encode(self) -> bytes:
        out = header(self.version, C.Code.GET_CAPABILITIES)
        if self.version == C.V10:
            return out
        out += bytes((0, self.ct_exponent, 0, 0)) + _U32.pack(self.flags)
        if self.version >= C.V12:
            out += _U32.pack(self.data_transfer_size) + _U32.pack(self.max_spdm_msg_size)
        return out

    @classmethod
    def parse(cls, data: bytes) -> GetCapabilities:
        r = h = Reader(data, "GET_CAPABILITIES", C.Code.GET_CAPABILITIES)
        v = h.version
        if v >= C.V12:
            return cls(v, *r.fields(_CAPS_12), r.end())
        if v >= C.V11:
            return cls(v, *r.fields(_CAPS_11), raw=r.end())
        return cls(v, raw=r.end())


@dataclass(slots=True)
class Capabilities:
    version: int
    ct_exponent: int = 0
    flags: int = 0
    data_transfer_size: int = 0
    max_spdm_msg_size: int = 0
    raw: bytes = b""

    def encode(self) -> bytes:
        out = header(self.version, C.Code.CAPABILITIES)
        out += bytes((0, self.ct_exponent, 0, 0)) + _U32.pack(self.flags)
        if self.version >= C.V12:
            out += _U32.pack(self.data_transfer_size) + _U32.pack(self.max_spdm_msg_size)
        return out

    @classmethod
    def parse(cls, data: bytes) -> Capabilities:
        r = h = Reader(data, "CAPABILITIES", C.Code.CAPABILITIES)
        v = h.version
        if v >= C.V12:
            return cls(v, *r.fields(_CAPS_12), r.end())
        return cls(v, *r.fields(_CAPS_11), raw=r.end())


# --- NEGOTIATE_ALGORITHMS / ALGORITHMS -----------------------------------------------------------
@dataclass(slots=True)
class AlgStruct:
    """A ReqAlgStruct / RespAlgStruct (1.1+): type, supported (or selected) bits, no external."""

    alg_type: int
    supported: int
    external: tuple[int, ...] = ()

    def encode(self) -> bytes:
        count = 0x20 | len(self.external)  # fixed algorithm field is 2 bytes
        return bytes((self.alg_type, count)) + _U16.pack(self.supported) + b"".join(
            _U32.pack(e) for e in self.external)


def _alg_struct_fields(i: int) -> tuple[str, str, str, str]:
    """Field names of AlgStruct ``i`` for error messages (built once per index)."""
    names = _ALG_STRUCT_FIELDS.get(i)
    if names is None:
        names = (f"AlgStruct[{i}].AlgType", f"AlgStruct[{i}].AlgCount", f"AlgStruct[{i}].AlgSupported",
                 f"AlgStruct[{i}].AlgExternal")
        if i < 256:  # param1 is a u8: at most 256 distinct indices
            _ALG_STRUCT_FIELDS[i] = names
    return names


_ALG_STRUCT_FIELDS: dict[int, tuple[str, str, str, str]] = {}


_ALG_STRUCT = struct.Struct("<BBH")  # AlgType, AlgCount, AlgSupported (no AlgExternal)
_ALG_TYPES = frozenset((2, 3, 4, 5))  # DHE, AEAD, ReqBaseAsymAlg, KeySchedule


def _parse_alg_structs(r: Reader, n: int, what: str) -> list[AlgStruct]:
    """The AlgStructs: the usual ones (fixed width 2, no external) read at once; anything else, or
    anything wrong, goes through the field-by-field parse that names the culprit."""
    pos = r.pos
    if n and r.n - pos >= 4 * n:
        out = []
        seen: set[int] = set()
        for t, cnt, supported in _ALG_STRUCT.iter_unpack(r.data[pos : pos + 4 * n]):
            if cnt != 0x20 or t in seen or t not in _ALG_TYPES:
                break
            seen.add(t)
            out.append(AlgStruct(t, supported))
        else:
            r.pos = pos + 4 * n
            return out
    return _parse_alg_structs_checked(r, n, what)


def _parse_alg_structs_checked(r: Reader, n: int, what: str) -> list[AlgStruct]:
    out = []
    seen = set()
    for i in range(n):
        f_type, f_count, f_supported, f_external = _alg_struct_fields(i)
        t = r.u8(f_type)
        cnt = r.u8(f_count)
        fixed = cnt >> 4
        if fixed != 2:
            raise SpdmMalformed(f"{what}: AlgStruct[{i}] fixed algorithm width {fixed}, must be 2",
                                field=f_count)
        supported = r.u16(f_supported)
        ext = tuple(r.u32(f_external) for _ in range(cnt & 0xF))
        if t in seen:
            raise SpdmMalformed(f"{what}: AlgType {t} repeated", field=f"AlgStruct[{i}].AlgType")
        if t not in (2, 3, 4, 5):
            raise SpdmMalformed(f"{what}: unknown AlgType {t}", field=f"AlgStruct[{i}].AlgType")
        seen.add(t)
        out.append(AlgStruct(t, supported, ext))
    return out


def _struct_bits(structs: list[AlgStruct], alg_type: int) -> int:
    """The algorithm bits of the AlgStruct of ``alg_type`` (0 when there is none)."""
    for s in structs:  # a loop, not next(generator): closing a generator raises GeneratorExit in it
        if s.alg_type == alg_type:
            return s.supported
    return 0


#: NEGOTIATE_ALGORITHMS and ALGORITHMS after Length, up to the external algorithm lists
_NEGOTIATE_FIXED = Layout(("MeasurementSpecification", "B"), ("OtherParamsSupport", "B"), ("BaseAsymAlgo", "I"),
                          ("BaseHashAlgo", "I"), ("Reserved", "12x"), ("ExtAsymCount", "B"),
                          ("ExtHashCount", "B"), ("Reserved", "2x"))
_ALGORITHMS_FIXED = Layout(("MeasurementSpecificationSel", "B"), ("OtherParamsSelection", "B"),
                           ("MeasurementHashAlgo", "I"), ("BaseAsymSel", "I"), ("BaseHashSel", "I"),
                           ("Reserved", "12x"), ("ExtAsymSelCount", "B"), ("ExtHashSelCount", "B"),
                           ("Reserved", "2x"))


@dataclass(slots=True)
class NegotiateAlgorithms:
    version: int
    measurement_spec: int = C.MEAS_SPEC_DMTF
    other_params: int = 0
    base_asym: int = 0
    base_hash: int = 0
    ext_asym: list[int] = field(default_factory=list)
    ext_hash: list[int] = field(default_factory=list)
    structs: list[AlgStruct] = field(default_factory=list)
    raw: bytes = b""

    def struct(self, alg_type: int) -> int:
        return _struct_bits(self.structs, alg_type)

    def encode(self) -> bytes:
        body = bytes((self.measurement_spec, self.other_params))
        body += _U32.pack(self.base_asym) + _U32.pack(self.base_hash) + bytes(12)
        body += bytes((len(self.ext_asym), len(self.ext_hash), 0, 0))
        body += b"".join(_U32.pack(e) for e in self.ext_asym + self.ext_hash)
        structs = self.structs if self.version >= C.V11 else []
        body += b"".join(s.encode() for s in structs)
        length = 6 + len(body)
        return header(self.version, C.Code.NEGOTIATE_ALGORITHMS, len(structs)) + _U16.pack(
            length) + body

    @classmethod
    def parse(cls, data: bytes) -> NegotiateAlgorithms:
        r = h = Reader(data, "NEGOTIATE_ALGORITHMS", C.Code.NEGOTIATE_ALGORITHMS)
        m = cls(h.version)
        length = r.u16("Length")
        if length < 32 or length > len(data) or length > 128 + 4 * 40:
            raise SpdmMalformed(f"NEGOTIATE_ALGORITHMS: Length {length} disagrees with the message "
                                f"({len(data)} bytes)", field="Length")
        m.measurement_spec, m.other_params, m.base_asym, m.base_hash, na, nh = r.fields(_NEGOTIATE_FIXED)
        if na > 20 or nh > 20:
            raise SpdmMalformed("NEGOTIATE_ALGORITHMS: more than 20 external algorithms",
                                field="ExtAsymCount")
        m.ext_asym = [r.u32("ExtAsym") for _ in range(na)]
        m.ext_hash = [r.u32("ExtHash") for _ in range(nh)]
        nstruct = h.param1 if h.version >= C.V11 else 0
        m.structs = _parse_alg_structs(r, nstruct, "NEGOTIATE_ALGORITHMS")
        if r.pos != length:
            raise SpdmMalformed(f"NEGOTIATE_ALGORITHMS: Length {length} but fields end at {r.pos}",
                                field="Length")
        m.raw = r.end()
        return m


@dataclass(slots=True)
class Algorithms:
    version: int
    measurement_spec: int = 0
    other_params: int = 0
    measurement_hash: int = 0
    base_asym: int = 0
    base_hash: int = 0
    ext_asym: list[int] = field(default_factory=list)
    ext_hash: list[int] = field(default_factory=list)
    structs: list[AlgStruct] = field(default_factory=list)
    raw: bytes = b""

    def struct(self, alg_type: int) -> int:
        return _struct_bits(self.structs, alg_type)

    def encode(self) -> bytes:
        body = bytes((self.measurement_spec, self.other_params))
        body += _U32.pack(self.measurement_hash) + _U32.pack(self.base_asym) + _U32.pack(self.base_hash)
        body += bytes(12) + bytes((len(self.ext_asym), len(self.ext_hash), 0, 0))
        body += b"".join(_U32.pack(e) for e in self.ext_asym + self.ext_hash)
        structs = self.structs if self.version >= C.V11 else []
        body += b"".join(s.encode() for s in structs)
        return header(self.version, C.Code.ALGORITHMS, len(structs)) + _U16.pack(
            6 + len(body)) + body

    @classmethod
    def parse(cls, data: bytes) -> Algorithms:
        r = h = Reader(data, "ALGORITHMS", C.Code.ALGORITHMS)
        m = cls(h.version)
        length = r.u16("Length")
        if length < 36 or length > len(data):
            raise SpdmMalformed(f"ALGORITHMS: Length {length} disagrees with the message ({len(data)} bytes)",
                                field="Length")
        (m.measurement_spec, m.other_params, m.measurement_hash, m.base_asym, m.base_hash,
         na, nh) = r.fields(_ALGORITHMS_FIXED)
        if na > 1 or nh > 1:
            raise SpdmMalformed("ALGORITHMS: more than one external algorithm selected",
                                field="ExtAsymSelCount")
        m.ext_asym = [r.u32("ExtAsymSel") for _ in range(na)]
        m.ext_hash = [r.u32("ExtHashSel") for _ in range(nh)]
        nstruct = h.param1 if h.version >= C.V11 else 0
        m.structs = _parse_alg_structs(r, nstruct, "ALGORITHMS")
        if r.pos != length:
            raise SpdmMalformed(f"ALGORITHMS: Length {length} but fields end at {r.pos}", field="Length")
        m.raw = r.end()
        return m


# re-exports: one import place for the whole codec
from pciauth.spdm.messages_auth import (  # noqa: E402
    Certificate,
    Challenge,
    ChallengeAuth,
    Digests,
    GetCertificate,
    GetDigests,
    GetMeasurements,
    Measurements,
    certificate,
    challenge,
    get_certificate,
    get_digests,
    get_measurements,
    measurements,
)
from pciauth.spdm.messages_session import (  # noqa: E402
    EndSession,
    EndSessionAck,
    Finish,
    FinishRsp,
    KeyExchange,
    KeyExchangeRsp,
)

__all__ = [
    "AlgStruct", "Algorithms", "Capabilities", "Certificate", "Challenge", "ChallengeAuth", "Digests",
    "EndSession", "EndSessionAck", "ErrorResponse", "Finish", "FinishRsp", "GetCapabilities",
    "GetCertificate", "GetDigests", "GetMeasurements", "GetVersion", "Header", "KeyExchange",
    "KeyExchangeRsp", "Measurements", "NegotiateAlgorithms", "Reader", "SpdmMalformed", "Version",
    "certificate", "challenge", "get_certificate", "get_digests", "get_measurements", "get_version", "measurements", "parse_header",
    "respond_if_ready",
]
