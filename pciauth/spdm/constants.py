"""SPDM (DMTF DSP0274 1.0-1.3) numbers: message codes, error codes, capability flags, measurements.

Plain tables, no logic beyond small lookups. Algorithm bits live in :mod:`pciauth.spdm.algorithms`
(they come with their crypto); the masks of the algorithm fields that pciauth negotiates are here
so the codec does not need the crypto module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# --- versions ---------------------------------------------------------------------------------
#: The SPDMVersion byte of each version pciauth speaks (major in the high nibble).
V10, V11, V12, V13 = 0x10, 0x11, 0x12, 0x13
ALL_VERSIONS: tuple[int, ...] = (V10, V11, V12, V13)


def version_str(v: int) -> str:
    """``0x12`` -> ``"1.2"``."""
    return _VERSION_STRS[v & 0xFF]


_VERSION_STRS = [f"{v >> 4}.{v & 0xF}" for v in range(256)]


def parse_version_str(text: str) -> int:
    """``"1.2"`` -> ``0x12``; raises ValueError for anything else."""
    major, _, minor = text.strip().partition(".")
    v = (int(major) << 4) | int(minor or "0")
    if v not in ALL_VERSIONS:
        raise ValueError(f"unsupported SPDM version {text!r} (pciauth speaks 1.0-1.3)")
    return v


NONCE_SIZE = 32
REQUESTER_CONTEXT_SIZE = 8  # 1.3: CHALLENGE and GET_MEASUREMENTS carry it, responses echo it
SLOT_COUNT = 8
MAX_OPAQUE_SIZE = 1024  # DSP0274: OpaqueDataLength shall not exceed 1024
COMBINED_PREFIX_SIZE = 100


class CodeTable:
    """A table of named integer codes.

    The codes are plain class attributes (ints): they are read for every message, and an
    ``enum.IntEnum`` member costs about five times as much to read on Python 3.11.
    ``items()`` lists ``(name, value)`` for the name tables.
    """

    @classmethod
    def items(cls) -> list[tuple[str, int]]:
        return [(k, v) for k, v in vars(cls).items() if k.isupper() and type(v) is int]


class Code(CodeTable):
    """Request and response codes (DSP0274 table "SPDM request and response codes")."""

    # responses
    DIGESTS = 0x01
    CERTIFICATE = 0x02
    CHALLENGE_AUTH = 0x03
    VERSION = 0x04
    CHUNK_SEND_ACK = 0x05
    CHUNK_RESPONSE = 0x06
    ENDPOINT_INFO = 0x07
    MEASUREMENTS = 0x60
    CAPABILITIES = 0x61
    SUPPORTED_EVENT_TYPES = 0x62
    ALGORITHMS = 0x63
    KEY_EXCHANGE_RSP = 0x64
    FINISH_RSP = 0x65
    PSK_EXCHANGE_RSP = 0x66
    PSK_FINISH_RSP = 0x67
    HEARTBEAT_ACK = 0x68
    KEY_UPDATE_ACK = 0x69
    ENCAPSULATED_REQUEST = 0x6A
    ENCAPSULATED_RESPONSE_ACK = 0x6B
    END_SESSION_ACK = 0x6C
    CSR = 0x6D
    SET_CERTIFICATE_RSP = 0x6E
    MEASUREMENT_EXTENSION_LOG = 0x6F
    VENDOR_DEFINED_RESPONSE = 0x7E
    ERROR = 0x7F
    # requests
    GET_DIGESTS = 0x81
    GET_CERTIFICATE = 0x82
    CHALLENGE = 0x83
    GET_VERSION = 0x84
    CHUNK_SEND = 0x85
    CHUNK_GET = 0x86
    GET_ENDPOINT_INFO = 0x87
    GET_MEASUREMENTS = 0xE0
    GET_CAPABILITIES = 0xE1
    GET_SUPPORTED_EVENT_TYPES = 0xE2
    NEGOTIATE_ALGORITHMS = 0xE3
    KEY_EXCHANGE = 0xE4
    FINISH = 0xE5
    PSK_EXCHANGE = 0xE6
    PSK_FINISH = 0xE7
    HEARTBEAT = 0xE8
    KEY_UPDATE = 0xE9
    GET_ENCAPSULATED_REQUEST = 0xEA
    DELIVER_ENCAPSULATED_RESPONSE = 0xEB
    END_SESSION = 0xEC
    GET_CSR = 0xED
    SET_CERTIFICATE = 0xEE
    GET_MEASUREMENT_EXTENSION_LOG = 0xEF
    SUBSCRIBE_EVENT_TYPES = 0xF0
    SEND_EVENT = 0xF1
    GET_KEY_PAIR_INFO = 0xFC
    SET_KEY_PAIR_INFO = 0xFD
    VENDOR_DEFINED_REQUEST = 0xFE
    RESPOND_IF_READY = 0xFF


def code_name(code: int) -> str:
    """The name of a message code, or its hex value when unknown."""
    return _CODE_NAMES.get(code) or f"0x{code:02x}"


_CODE_NAMES = {value: name for name, value in Code.items()}


def response_code_for(request_code: int) -> int:
    """The success response code of a request: the request code with bit 7 cleared."""
    return request_code & 0x7F


class ErrorCode(CodeTable):
    """ERROR response codes (Param1 of ERROR)."""

    INVALID_REQUEST = 0x01
    BUSY = 0x03
    UNEXPECTED_REQUEST = 0x04
    UNSPECIFIED = 0x05
    DECRYPT_ERROR = 0x06
    UNSUPPORTED_REQUEST = 0x07
    REQUEST_IN_FLIGHT = 0x08
    INVALID_RESPONSE_CODE = 0x09
    SESSION_LIMIT_EXCEEDED = 0x0A
    SESSION_REQUIRED = 0x0B
    RESET_REQUIRED = 0x0C
    RESPONSE_TOO_LARGE = 0x0D
    REQUEST_TOO_LARGE = 0x0E
    LARGE_RESPONSE = 0x0F
    MESSAGE_LOST = 0x10
    INVALID_POLICY = 0x11
    VERSION_MISMATCH = 0x41
    RESPONSE_NOT_READY = 0x42
    REQUEST_RESYNCH = 0x43
    OPERATION_FAILED = 0x44
    NO_PENDING_REQUESTS = 0x45
    VENDOR_DEFINED = 0xFF


def error_name(code: int) -> str:
    return _ERROR_NAMES.get(code) or f"0x{code:02x}"


# --- capability flags (GET_CAPABILITIES / CAPABILITIES Flags, u32) -----------------------------
#: name -> (bit offset, width in bits, first version that defines it), responder flags.
RESPONDER_FLAGS: dict[str, tuple[int, int, int]] = {
    "CACHE_CAP": (0, 1, V10),
    "CERT_CAP": (1, 1, V10),
    "CHAL_CAP": (2, 1, V10),
    "MEAS_CAP": (3, 2, V10),  # 0 none, 1 without signature, 2 with signature
    "MEAS_FRESH_CAP": (5, 1, V10),
    "ENCRYPT_CAP": (6, 1, V11),
    "MAC_CAP": (7, 1, V11),
    "MUT_AUTH_CAP": (8, 1, V11),
    "KEY_EX_CAP": (9, 1, V11),
    "PSK_CAP": (10, 2, V11),
    "ENCAP_CAP": (12, 1, V11),
    "HBEAT_CAP": (13, 1, V11),
    "KEY_UPD_CAP": (14, 1, V11),
    "HANDSHAKE_IN_THE_CLEAR_CAP": (15, 1, V11),
    "PUB_KEY_ID_CAP": (16, 1, V11),
    "CHUNK_CAP": (17, 1, V12),
    "ALIAS_CERT_CAP": (18, 1, V12),
    "SET_CERT_CAP": (19, 1, V12),
    "CSR_CAP": (20, 1, V12),
    "CERT_INSTALL_RESET_CAP": (21, 1, V12),
    "EP_INFO_CAP": (22, 2, V13),
    "MEL_CAP": (24, 1, V13),
    "EVENT_CAP": (25, 1, V13),
    "MULTI_KEY_CAP": (26, 2, V13),
    "GET_KEY_PAIR_INFO_CAP": (28, 1, V13),
    "SET_KEY_PAIR_INFO_CAP": (29, 1, V13),
}

#: Requester flags (a subset, same bit positions).
REQUESTER_FLAGS: dict[str, tuple[int, int, int]] = {
    name: RESPONDER_FLAGS[name]
    for name in (
        "CERT_CAP", "CHAL_CAP", "ENCRYPT_CAP", "MAC_CAP", "MUT_AUTH_CAP", "KEY_EX_CAP", "PSK_CAP",
        "ENCAP_CAP", "HBEAT_CAP", "KEY_UPD_CAP", "HANDSHAKE_IN_THE_CLEAR_CAP", "PUB_KEY_ID_CAP",
        "CHUNK_CAP", "EP_INFO_CAP", "EVENT_CAP", "MULTI_KEY_CAP",
    )
}

MEAS_CAP_NONE, MEAS_CAP_NO_SIG, MEAS_CAP_SIG = 0, 1, 2


def flag_value(flags: int, name: str, table: dict[str, tuple[int, int, int]] = RESPONDER_FLAGS) -> int:
    """The value of one (possibly multi-bit) capability field."""
    bit, width, _ = table[name]
    return (flags >> bit) & ((1 << width) - 1)


def make_flags(values: dict[str, int], table: dict[str, tuple[int, int, int]] = RESPONDER_FLAGS) -> int:
    """Build a Flags word from ``{name: value}`` (value 1 for single-bit flags)."""
    return _remembered(_MADE, tuple(values.items()), table, lambda: _make_flags(values, table))


_MADE: dict[tuple, int] = {}


def _remembered(cache: dict, key: Any, table: dict, compute: Callable[[], Any]) -> Any:
    """``compute()`` kept in ``cache`` per (key, flag table): these decodings run on every
    connection. Only the module's own tables are kept (an id can be reused by another dict), and
    at most 256 entries per cache."""
    full = (key, id(table))
    value = cache.get(full, _MISSING)
    if value is _MISSING:
        value = compute()
        if len(cache) < 256 and (table is RESPONDER_FLAGS or table is REQUESTER_FLAGS):
            cache[full] = value
    return value


_MISSING = object()


def _make_flags(values: dict[str, int], table: dict[str, tuple[int, int, int]]) -> int:
    out = 0
    for name, value in values.items():
        bit, width, _ = table[name]
        if not 0 <= value < (1 << width):
            raise ValueError(f"capability {name} value {value} does not fit {width} bit(s)")
        out |= value << bit
    return out


def flag_names(flags: int, table: dict[str, tuple[int, int, int]] = RESPONDER_FLAGS) -> dict[str, int]:
    """Decode a Flags word into ``{name: value}`` for every non-zero field (for reports)."""
    return dict(_remembered(_NAMES, flags, table, lambda: _flag_names(flags, table)))  # the caller's own copy


_NAMES: dict[tuple, dict[str, int]] = {}


def _flag_names(flags: int, table: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    known = 0
    for name, (bit, width, _) in table.items():
        mask = ((1 << width) - 1) << bit
        known |= mask
        if flags & mask:
            out[name] = (flags & mask) >> bit
    if flags & ~known:
        out["UNKNOWN_BITS"] = flags & ~known
    return out


def flags_mask_for_version(version: int, table: dict[str, tuple[int, int, int]] = RESPONDER_FLAGS) -> int:
    """Bits a peer may set in ``version`` (later fields are reserved there)."""
    return _remembered(_MASKS, version, table, lambda: sum(
        ((1 << width) - 1) << bit for bit, width, since in table.values() if version >= since))


_MASKS: dict[tuple, int] = {}


@functools.lru_cache(maxsize=1024)
def flag_problem(flags: int, version: int, *, requester: bool) -> str | None:
    """Why a Flags word breaks DSP0274's rules for ``version`` (None when it is consistent).

    A pure function of its arguments, so its answers are kept.
    """
    return _flag_problem(flags, version, requester=requester)


def _flag_problem(flags: int, version: int, *, requester: bool) -> str | None:
    """The rules of :func:`flag_problem`.

    The same rules libspdm applies to both directions: reserved values, key exchange needing
    ENCRYPT_CAP or MAC_CAP (and session-only flags needing key exchange), CERT_CAP and
    PUB_KEY_ID_CAP exclusive, CHAL_CAP and MUT_AUTH_CAP needing a certificate or public key.
    """
    if version < V11:
        if not requester and flag_value(flags, "MEAS_CAP") == 3:
            return "MEAS_CAP has the reserved value 3"
        return None

    def f(name: str) -> int:
        return flag_value(flags, name)

    if (f("PSK_CAP") in (2, 3) and requester) or f("PSK_CAP") == 3:
        return f"PSK_CAP has the reserved value {f('PSK_CAP')}"
    if not requester and f("MEAS_CAP") == 3:
        return "MEAS_CAP has the reserved value 3"
    if f("KEY_EX_CAP") or f("PSK_CAP"):
        if not (f("MAC_CAP") or f("ENCRYPT_CAP")):
            return "KEY_EX_CAP/PSK_CAP without ENCRYPT_CAP or MAC_CAP"
    else:
        for name in ("MAC_CAP", "ENCRYPT_CAP", "HANDSHAKE_IN_THE_CLEAR_CAP", "HBEAT_CAP", "KEY_UPD_CAP"):
            if f(name):
                return f"{name} without KEY_EX_CAP or PSK_CAP"
    if f("CERT_CAP") and f("PUB_KEY_ID_CAP"):
        return "CERT_CAP and PUB_KEY_ID_CAP are both set"
    if not (f("CERT_CAP") or f("PUB_KEY_ID_CAP")) and (f("CHAL_CAP") or f("MUT_AUTH_CAP")):
        return "CHAL_CAP or MUT_AUTH_CAP without CERT_CAP or PUB_KEY_ID_CAP"
    if version >= V13 and (f("EP_INFO_CAP") == 3 or f("MULTI_KEY_CAP") == 3):
        return "EP_INFO_CAP or MULTI_KEY_CAP has the reserved value 3"
    return None


# --- GET_CAPABILITIES sizes --------------------------------------------------------------------
CT_EXPONENT_MAX = 31  # CTExponent is a power of two in microseconds; cap what we accept
MIN_DATA_TRANSFER_SIZE = 42  # 1.2: DataTransferSize shall be at least MinDataTransferSize (42)

# --- NEGOTIATE_ALGORITHMS ----------------------------------------------------------------------
MEAS_SPEC_DMTF = 0x01  # MeasurementSpecification bit 0: DMTF
#: OtherParamsSupport (1.2+): opaque data format (bits 3:0), 1.3 multi-key connection (bit 4).
OPAQUE_FMT_NONE, OPAQUE_FMT_0, OPAQUE_FMT_1 = 0x00, 0x01, 0x02
OPAQUE_FMT_MASK = 0x0F
MULTI_KEY_CONN = 0x10
KEY_SCHEDULE_SPDM = 0x0001


class AlgType(CodeTable):
    """AlgType of a ReqAlgStruct/RespAlgStruct (1.1+)."""

    DHE = 2
    AEAD = 3
    REQ_BASE_ASYM = 4
    KEY_SCHEDULE = 5


#: MeasurementHashAlgo bits in ALGORITHMS: bit 0 is "raw bit streams only".
MEAS_HASH_RAW = 0x01
#: BaseHashAlgo bit -> MeasurementHashAlgo bit for the same function (SHA-256/384/512, SHA3).
BASE_HASH_TO_MEAS_HASH = {1 << i: 1 << (i + 1) for i in range(6)}
MEAS_HASH_TO_BASE_HASH = {v: k for k, v in BASE_HASH_TO_MEAS_HASH.items()}

# --- CHALLENGE / measurement summary hash ---------------------------------------------------------
MEAS_SUMMARY_NONE, MEAS_SUMMARY_TCB, MEAS_SUMMARY_ALL = 0x00, 0x01, 0xFF
MEAS_SUMMARY_NAMES = {"none": MEAS_SUMMARY_NONE, "tcb": MEAS_SUMMARY_TCB, "all": MEAS_SUMMARY_ALL}

# --- GET_MEASUREMENTS ---------------------------------------------------------------------------
MEAS_ATTR_SIGNATURE = 0x01  # Param1 bit 0: generate a signature
MEAS_ATTR_RAW_BITSTREAM = 0x02  # 1.2+: raw bit stream requested
MEAS_OP_COUNT = 0x00
MEAS_OP_ALL = 0xFF
MEAS_CONTENT_CHANGED_MASK = 0x30  # 1.2+: Param2 bits 5:4 in a signed MEASUREMENTS
MEAS_SLOT_MASK = 0x0F

# --- DMTF measurement block ----------------------------------------------------------------------
DMTF_RAW_BIT = 0x80  # DMTFSpecMeasurementValueType bit 7: raw bit stream (else digest)


class MeasurementType(CodeTable):
    """DMTFSpecMeasurementValueType bits 6:0."""

    IMMUTABLE_ROM = 0
    MUTABLE_FIRMWARE = 1
    HARDWARE_CONFIG = 2
    FIRMWARE_CONFIG = 3
    MEASUREMENT_MANIFEST = 4
    DEVICE_MODE = 5
    FIRMWARE_VERSION = 6
    FIRMWARE_SVN = 7
    HASH_EXTENDED = 8
    INFORMATIONAL = 9
    STRUCTURED_MANIFEST = 10


def measurement_type_name(t: int) -> str:
    return _MEAS_TYPE_NAMES.get(t & 0x7F) or f"type_{t & 0x7F}"


# --- sessions (1.1+) -----------------------------------------------------------------------------
#: KEY_EXCHANGE SessionPolicy (1.2+) bit 0: TerminationPolicy (session ends on runtime update).
SESSION_POLICY_TERMINATION = 0x01
END_SESSION_PRESERVE_STATE = 0x01
#: Secured messages spoken: DSP0277 1.0/1.1 as u16 ``major<<12 | minor<<8``.
SECURED_MESSAGE_VERSIONS = (0x1000, 0x1100)
#: General opaque data (DSP0274 1.2 "general opaque data", DSP0277): the DMTF registry id,
#: secured message data version 1, ids "version selection" (1) and "supported versions" (2).
OPAQUE_SPEC_ID_DMTF = 0x444D5446
OPAQUE_REGISTRY_DMTF = 0x00
SM_DATA_VERSION = 0x01
SM_DATA_ID_VERSION_SELECTION = 0x01
SM_DATA_ID_SUPPORTED_VERSIONS = 0x02

# --- signing contexts (1.2+, DSP0274 "signature generation") ------------------------------------
CONTEXT_CHALLENGE_AUTH = "responder-challenge_auth signing"
CONTEXT_MEASUREMENTS = "responder-measurements signing"
CONTEXT_KEY_EXCHANGE_RSP = "responder-key_exchange_rsp signing"
CONTEXT_FINISH = "requester-finish signing"

# --- limits pciauth applies to untrusted peers ------------------------------------------------------
MAX_CERT_CHAIN_SIZE = 64 * 1024
CERT_CHUNK_SIZE = 0x400  # bytes asked per GET_CERTIFICATE (fits a default DOE mailbox easily)
MAX_MESSAGE_SIZE = 0x10000
MAX_MEASUREMENT_RECORD = 0x10000


# name tables
_ERROR_NAMES = {value: name for name, value in ErrorCode.items()}
_MEAS_TYPE_NAMES = {value: name.lower() for name, value in MeasurementType.items()}
