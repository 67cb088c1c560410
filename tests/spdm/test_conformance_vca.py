"""DMTF SPDM-Responder-Validator, test documents 1 (VERSION), 2 (CAPABILITIES), 3 (ALGORITHMS).

One test per validator case (doc/1.Version.md, doc/2.Capabilities.md, doc/3.Algorithms.md of
DMTF/SPDM-Responder-Validator), named after it, checking every assertion of the case on the raw
bytes ``Responder(config).handle(request)`` returns. Requests are built the way the validator builds
them (its requester offers every algorithm and the capability flags listed in the case). pciauth
speaks SPDM 1.0-1.3: a case written for "1.2 only" is run for 1.3 too (same layout); "1.0+" and
"1.1+" cases run for every version they name. Broader ERROR-code tests are in test_responder.py;
this file is the case-by-case record.
"""

from __future__ import annotations

import struct

import pytest
from conftest import responder_config

from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.responder import Responder

E = C.ErrorCode
VERSIONS = C.ALL_VERSIONS
V11_PLUS = tuple(v for v in VERSIONS if v >= C.V11)
V12_PLUS = tuple(v for v in VERSIONS if v >= C.V12)

# --- the validator's requester --------------------------------------------------------------------
#: GET_CAPABILITIES Flags of the validator's setup steps (its libspdm requester's capabilities).
SETUP_FLAGS = C.make_flags({
    "CERT_CAP": 1, "CHAL_CAP": 1, "ENCRYPT_CAP": 1, "MAC_CAP": 1, "KEY_EX_CAP": 1, "ENCAP_CAP": 1,
    "HBEAT_CAP": 1, "KEY_UPD_CAP": 1,
}, C.REQUESTER_FLAGS)  # fmt: skip
#: The Flags of cases 2.3 / 2.5: everything a requester may set, PSK_CAP=1, MUT_AUTH_CAP.
ALL_REQ_FLAGS = SETUP_FLAGS | C.make_flags({"MUT_AUTH_CAP": 1, "PSK_CAP": 1}, C.REQUESTER_FLAGS)
TRANSFER_SIZE = 0x1200  # libspdm's default DataTransferSize and MaxSPDMmsgSize

# Algorithm bits the validator offers (DSP0274 tables); SM2/EdDSA/SM3/SM4 from 1.2 on.
ASYM_1_0 = 0x01FF  # RSASSA/RSAPSS 2048/3072/4096, ECDSA P-256/P-384/P-521
ASYM_1_2 = ASYM_1_0 | 0x0E00  # + SM2 P-256, EdDSA ed25519, ed448
HASH_1_0 = 0x3F  # SHA-256/384/512, SHA3-256/384/512
HASH_1_2 = HASH_1_0 | 0x40  # + SM3-256
MEAS_HASH_1_0 = 0x7F  # raw bit stream only + the six hashes
MEAS_HASH_1_2 = MEAS_HASH_1_0 | 0x80  # + SM3-256
DHE_1_1 = 0x3F  # ffdhe2048/3072/4096, secp256r1/384r1/521r1
DHE_1_2 = DHE_1_1 | 0x40  # + SM2 P-256
AEAD_1_1 = 0x07  # AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305
AEAD_1_2 = AEAD_1_1 | 0x08  # + SM4-GCM

#: Responder capability sets the cases run against: pciauth's default (sessions, signed
#: measurements), one without sessions, and one that signs nothing (unsigned measurements only).
CAPS = {
    "default": None,
    "no-sessions": {"CERT_CAP": 1, "CHAL_CAP": 1, "MEAS_CAP": 2, "MEAS_FRESH_CAP": 1},
    "unsigned-meas": {"MEAS_CAP": 1},
}


def make_config(caps: str = "default", **kw):
    if CAPS[caps] is not None:
        kw["capabilities"] = dict(CAPS[caps])
    return responder_config(**kw)


def get_capabilities(v: int, flags: int = SETUP_FLAGS, ct: int = 0, dts: int = TRANSFER_SIZE,
                     max_size: int = TRANSFER_SIZE) -> bytes:
    return M.GetCapabilities(v, ct, flags, dts, max_size).encode()


def negotiate_algorithms(v: int, *, structs: bool = True, base_asym: int | None = None,
                         base_hash: int | None = None) -> bytes:
    """The validator's NEGOTIATE_ALGORITHMS for ``v`` (every algorithm it knows, 4 AlgStructs)."""
    new = v >= C.V12
    algs = []
    if v >= C.V11 and structs:
        algs = [M.AlgStruct(C.AlgType.DHE, DHE_1_2 if new else DHE_1_1),
                M.AlgStruct(C.AlgType.AEAD, AEAD_1_2 if new else AEAD_1_1),
                M.AlgStruct(C.AlgType.REQ_BASE_ASYM, ASYM_1_2 if new else ASYM_1_0),
                M.AlgStruct(C.AlgType.KEY_SCHEDULE, C.KEY_SCHEDULE_SPDM)]
    return M.NegotiateAlgorithms(
        v, C.MEAS_SPEC_DMTF, C.OPAQUE_FMT_1 if new else 0,
        (ASYM_1_2 if new else ASYM_1_0) if base_asym is None else base_asym,
        (HASH_1_2 if new else HASH_1_0) if base_hash is None else base_hash,
        structs=algs).encode()


# --- stepping a responder through the setup of a case ---------------------------------------------
def after_version(config=None) -> Responder:
    r = Responder(config or responder_config())
    assert r.handle(M.GetVersion().encode())[1] == C.Code.VERSION
    return r


def after_capabilities(v: int, config=None) -> tuple[Responder, bytes]:
    r = after_version(config)
    caps = r.handle(get_capabilities(v))
    assert caps[1] == C.Code.CAPABILITIES
    return r, caps


def after_algorithms(v: int, config=None) -> tuple[Responder, bytes, bytes]:
    r, caps = after_capabilities(v, config)
    algs = r.handle(negotiate_algorithms(v))
    assert algs[1] == C.Code.ALGORITHMS
    return r, caps, algs


def assert_error(resp: bytes, version: int, code: int) -> None:
    """Assertions x.y.1-5 of every ERROR case: size, code, SPDMVersion, Param1, Param2 == 0."""
    assert len(resp) >= 4  # sizeof(ERROR)
    assert resp[1] == C.Code.ERROR, f"response code 0x{resp[1]:02x}"
    assert resp[0] == version, f"ERROR SPDMVersion 0x{resp[0]:02x}, expected 0x{version:02x}"
    assert resp[2] == code, f"ERROR code 0x{resp[2]:02x} ({C.error_name(resp[2])})"
    assert resp[3] == 0


def flags_of(caps: bytes) -> int:
    return struct.unpack_from("<I", caps, 8)[0]


def cap(flags: int, name: str) -> int:
    return C.flag_value(flags, name)


def at_most_one_bit_of(value: int, allowed: int) -> bool:
    """``value`` is 0 or a single bit, and that bit is one of ``allowed``."""
    return value & (value - 1) == 0 and value & ~allowed == 0


# ==================================================================================================
# 1. VERSION
# ==================================================================================================
def test_case_1_1_version_answers_get_version_1_0():
    """Case 1.1: SPDM responder shall return valid VERSION, if it receives a GET_VERSION with
    version 1.0.

    1.1.5 lists {0x10, 0x11, 0x12}; pciauth also speaks 1.3 (0x13), which the validator's newer
    releases accept the same way, so 0x13 is allowed too (DSP0274 1.3).
    """
    resp = Responder(responder_config()).handle(bytes((0x10, C.Code.GET_VERSION, 0, 0)))
    assert len(resp) >= 6  # 1.1.1: offset(VERSION, VersionNumberEntry)
    assert resp[1] == C.Code.VERSION  # 1.1.2
    assert resp[0] == 0x10  # 1.1.3
    count = resp[5]
    assert 0 < count <= (len(resp) - 6) // 2  # 1.1.4
    for i in range(count):  # 1.1.5
        entry = struct.unpack_from("<H", resp, 6 + 2 * i)[0]
        major, minor = entry >> 12, (entry >> 8) & 0xF
        assert (major << 4) + minor in {0x10, 0x11, 0x12, 0x13}


# ==================================================================================================
# 2. CAPABILITIES
# ==================================================================================================
def check_flag_rules(flags: int) -> None:
    """Assertions 2.3.4-2.3.12 (= 2.5.4-2.5.12) on a responder's CAPABILITIES Flags."""
    def f(name: str) -> int:
        return cap(flags, name)

    assert f("MEAS_CAP") != 3
    if f("ENCRYPT_CAP"):
        assert f("KEY_EX_CAP") or f("PSK_CAP") in (1, 2)
    if f("MAC_CAP"):
        assert f("KEY_EX_CAP") or f("PSK_CAP") in (1, 2)
    if f("KEY_EX_CAP"):
        assert f("ENCRYPT_CAP") or f("MAC_CAP")
    assert f("PSK_CAP") != 3
    if f("PSK_CAP"):
        assert f("ENCRYPT_CAP") or f("MAC_CAP")
    if f("MUT_AUTH_CAP"):
        assert f("ENCAP_CAP")
    if f("HANDSHAKE_IN_THE_CLEAR_CAP"):
        assert f("KEY_EX_CAP")
    if f("PUB_KEY_ID_CAP"):
        assert f("CERT_CAP") == 0


@pytest.mark.parametrize("caps", list(CAPS))
def test_case_2_1_capabilities_1_0(caps):
    """Case 2.1: SPDM responder shall return valid CAPABILITIES(0x10), if it receives a
    GET_CAPABILITIES with negotiated version 1.0."""
    r = after_version(make_config(caps))
    resp = r.handle(bytes((0x10, C.Code.GET_CAPABILITIES, 0, 0)))
    assert len(resp) >= 12  # 2.1.1: sizeof(CAPABILITIES_1.0)
    assert resp[1] == C.Code.CAPABILITIES  # 2.1.2
    assert resp[0] == 0x10  # 2.1.3
    flags = flags_of(resp)
    assert cap(flags, "MEAS_CAP") != 3  # 2.1.4
    assert cap(flags, "PSK_CAP") != 3  # 2.1.5


@pytest.mark.parametrize("versions", [C.ALL_VERSIONS, (C.V11, C.V12)], ids=["1.0-1.3", "1.1-1.2"])
def test_case_2_2_capabilities_version_mismatch(versions):
    """Case 2.2: SPDM responder shall return ERROR(VersionMismatch), if it receives a
    GET_CAPABILITIES with non negotiated version (HighestVersion+1, then LowestVersion-1)."""
    r = after_version(responder_config(versions=versions))
    for version in (max(versions) + 1, min(versions) - 1):
        resp = r.handle(bytes((version, C.Code.GET_CAPABILITIES, 0, 0)) + bytes(8))
        assert_error(resp, 0x10, E.VERSION_MISMATCH)  # 2.2.1-2.2.5


@pytest.mark.parametrize("caps", list(CAPS))
def test_case_2_3_capabilities_1_1(caps):
    """Case 2.3: SPDM responder shall return valid CAPABILITIES(0x11), if it receives a
    GET_CAPABILITIES with negotiated version 1.1."""
    r = after_version(make_config(caps))
    resp = r.handle(get_capabilities(C.V11, ALL_REQ_FLAGS))
    assert len(resp) >= 12  # 2.3.1: sizeof(CAPABILITIES_1.1)
    assert resp[1] == C.Code.CAPABILITIES  # 2.3.2
    assert resp[0] == 0x11  # 2.3.3
    check_flag_rules(flags_of(resp))  # 2.3.4-2.3.12


def _invalid_capabilities_steps(v: int) -> list[tuple[str, bytes]]:
    base = SETUP_FLAGS | C.make_flags({"MUT_AUTH_CAP": 1}, C.REQUESTER_FLAGS)
    without = {name: base & ~C.make_flags({name: 1}, C.REQUESTER_FLAGS)
               for name in ("ENCRYPT_CAP", "MAC_CAP", "KEY_EX_CAP", "ENCAP_CAP")}
    psk = C.make_flags({"PSK_CAP": 1}, C.REQUESTER_FLAGS)
    steps = [
        ("1: KEY_EX_CAP and PSK_CAP without ENCRYPT_CAP or MAC_CAP",
         get_capabilities(v, without["ENCRYPT_CAP"] & without["MAC_CAP"] | psk)),
        ("3: ENCRYPT_CAP and MAC_CAP without KEY_EX_CAP or PSK_CAP", get_capabilities(v, without["KEY_EX_CAP"])),
    ]
    if v == C.V11:
        steps.append(("5: MUT_AUTH_CAP without ENCAP_CAP", get_capabilities(v, without["ENCAP_CAP"] | psk)))
    if v >= C.V12:
        chunk = C.make_flags({"CHUNK_CAP": 1}, C.REQUESTER_FLAGS)
        steps += [
            ("7: DataTransferSize 41", get_capabilities(v, base, dts=41)),
            ("7: DataTransferSize 41 (with CHUNK_CAP)", get_capabilities(v, base | chunk, dts=41)),
            ("9: DataTransferSize MaxSPDMmsgSize+1", get_capabilities(v, base, dts=TRANSFER_SIZE + 1)),
            ("9: DataTransferSize MaxSPDMmsgSize+1 (with CHUNK_CAP)",
             get_capabilities(v, base | chunk, dts=TRANSFER_SIZE + 1)),
        ]
    return steps


@pytest.mark.parametrize("v", V11_PLUS, ids=C.version_str)
def test_case_2_4_capabilities_invalid_fields(v):
    """Case 2.4: SPDM responder shall return ERROR(InvalidRequest), if it receives a
    GET_CAPABILITIES with invalid field.

    Step 5 (MUT_AUTH_CAP without ENCAP_CAP) is sent in 1.1 only: the validator's own code skips
    it from 1.2 on ("the mut_auth_cap == 1 and encap_cap == 0 case need check for version1.1
    only"), and libspdm's capability check applies that rule to 1.1 alone. Steps 7
    and 9 are also sent with CHUNK_CAP set, so the size rule alone is what makes them invalid.
    The ERROR carries the version of the request (2.4.3), which becomes the negotiated one.
    """
    r = after_version()
    for step, request in _invalid_capabilities_steps(v):
        resp = r.handle(request)
        assert resp[1] == C.Code.ERROR, step
        assert_error(resp, v, E.INVALID_REQUEST)  # 2.4.1-2.4.5


@pytest.mark.parametrize("caps", list(CAPS))
@pytest.mark.parametrize("v", V12_PLUS, ids=C.version_str)
def test_case_2_5_capabilities_1_2(v, caps):
    """Case 2.5: SPDM responder shall return valid CAPABILITIES(0x12), if it receives a
    GET_CAPABILITIES with negotiated version 1.2 (run for 1.3 too: same fields)."""
    r = after_version(make_config(caps))
    chunk = C.make_flags({"CHUNK_CAP": 1}, C.REQUESTER_FLAGS)
    resp = r.handle(get_capabilities(v, ALL_REQ_FLAGS | chunk))
    assert len(resp) >= 20  # 2.5.1: sizeof(CAPABILITIES_1.2)
    assert resp[1] == C.Code.CAPABILITIES  # 2.5.2
    assert resp[0] == v  # 2.5.3
    check_flag_rules(flags_of(resp))  # 2.5.4-2.5.12
    dts, max_size = struct.unpack_from("<II", resp, 12)
    assert dts >= C.MIN_DATA_TRANSFER_SIZE  # 2.5.13
    assert max_size >= dts  # 2.5.14


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_2_6_capabilities_twice(v):
    """Case 2.6: SPDM responder shall return ERROR(UnexpectedRequest) or silent drop, if it
    receives two non-identical GET_CAPABILITIES (pciauth answers the ERROR)."""
    r, _ = after_capabilities(v)
    first = bytearray(get_capabilities(v))
    second = [bytes(first[:3]) + b"\x01" + bytes(first[4:])]  # step 1: Param2=1
    if v >= C.V11:  # step 3: CTExponent+1, Flags without HBEAT_CAP
        hbeat = C.make_flags({"HBEAT_CAP": 1}, C.REQUESTER_FLAGS)
        second.append(get_capabilities(v, SETUP_FLAGS & ~hbeat, ct=1))
    if v >= C.V12:  # step 5: DataTransferSize+1, MaxSPDMmsgSize+1
        second.append(get_capabilities(v, SETUP_FLAGS, dts=TRANSFER_SIZE + 1, max_size=TRANSFER_SIZE + 1))
    for request in second:
        assert_error(r.handle(request), v, E.UNEXPECTED_REQUEST)  # 2.6.1-2.6.5


# ==================================================================================================
# 3. ALGORITHMS
# ==================================================================================================
def parse_algorithms(resp: bytes) -> dict:
    """The ALGORITHMS fields the cases check, read straight from the bytes (not the codec)."""
    assert len(resp) >= 36  # sizeof(ALGORITHMS_1.0) / _1.1 (without structs)
    length, spec, other, meas_hash, asym, hsh = struct.unpack_from("<HBBIII", resp, 4)
    n_ext_asym, n_ext_hash = resp[32], resp[33]
    structs = []
    pos = 36 + 4 * (n_ext_asym + n_ext_hash)
    if resp[0] >= C.V11:
        for _ in range(resp[2]):
            alg_type, count, supported = struct.unpack_from("<BBH", resp, pos)
            structs.append((alg_type, count, supported))
            pos += 4 + 4 * (count & 0xF)
    return {"length": length, "spec": spec, "other": other, "meas_hash": meas_hash, "asym": asym,
            "hash": hsh, "ext_asym": n_ext_asym, "ext_hash": n_ext_hash, "structs": structs}


def check_algorithms(v: int, resp: bytes, caps: bytes) -> None:
    """Assertions 3.1.4-10 / 3.5.4-16 / 3.6.4-17 against the CAPABILITIES the responder sent."""
    new = v >= C.V12
    a = parse_algorithms(resp)
    flags = flags_of(caps)
    meas, chal = cap(flags, "MEAS_CAP"), cap(flags, "CHAL_CAP")
    key_ex, psk, mut = cap(flags, "KEY_EX_CAP"), cap(flags, "PSK_CAP"), cap(flags, "MUT_AUTH_CAP")
    n = resp[2] if v >= C.V11 else 0
    assert a["length"] <= len(resp)  # x.4
    assert a["length"] == 36 + 4 * a["ext_asym"] + 4 * a["ext_hash"] + 4 * n  # x.4
    assert a["ext_asym"] == 0  # x.5
    assert a["ext_hash"] == 0  # x.6
    assert a["spec"] in (0, C.MEAS_SPEC_DMTF)  # x.7
    assert at_most_one_bit_of(a["meas_hash"], MEAS_HASH_1_2 if new else MEAS_HASH_1_0)  # x.8
    assert (a["meas_hash"] != 0) == (meas != 0)
    signs = chal or meas == C.MEAS_CAP_SIG or key_ex
    assert at_most_one_bit_of(a["asym"], ASYM_1_2 if new else ASYM_1_0)  # x.9
    assert (a["asym"] != 0) == bool(signs)
    assert at_most_one_bit_of(a["hash"], HASH_1_2 if new else HASH_1_0)  # x.10
    assert (a["hash"] != 0) == bool(signs or psk)
    if v < C.V11:
        return
    types = [t for t, _, _ in a["structs"]]
    assert n <= 4 and len(set(types)) == len(types)  # x.11
    assert set(types) <= {C.AlgType.DHE, C.AlgType.AEAD, C.AlgType.REQ_BASE_ASYM, C.AlgType.KEY_SCHEDULE}
    assert all(count == 0x20 for _, count, _ in a["structs"])  # x.12
    sel = {t: s for t, _, s in a["structs"]}
    rules = [  # (type, allowed bits, required when) for x.13-x.16
        (C.AlgType.DHE, DHE_1_2 if new else DHE_1_1, key_ex),
        (C.AlgType.AEAD, AEAD_1_2 if new else AEAD_1_1, key_ex or psk),
        (C.AlgType.REQ_BASE_ASYM, ASYM_1_2 if new else ASYM_1_0, mut),
        (C.AlgType.KEY_SCHEDULE, C.KEY_SCHEDULE_SPDM, key_ex or psk),
    ]
    for alg_type, allowed, required in rules:
        chosen = sel.get(alg_type, 0)
        assert at_most_one_bit_of(chosen, allowed), alg_type
        assert (chosen != 0) == bool(required), alg_type  # absent or 0 when not required
    if new:  # 3.6.17
        fmt = a["other"] & C.OPAQUE_FMT_MASK
        assert at_most_one_bit_of(fmt, C.OPAQUE_FMT_0 | C.OPAQUE_FMT_1)
        if key_ex or psk:
            assert fmt == C.OPAQUE_FMT_1


@pytest.mark.parametrize("caps", list(CAPS))
def test_case_3_1_algorithms_1_0(caps):
    """Case 3.1: SPDM responder shall return valid ALGORITHMS(0x10), if it receives a
    GET_ALGORITHMS with negotiated version 1.0.

    Run against a responder that signs nothing too ("unsigned-meas": MEAS_CAP=1 only), where
    3.1.9/3.1.10 require BaseAsymSel == 0 and BaseHashSel == 0.
    """
    r, caps_resp = after_capabilities(C.V10, make_config(caps))
    resp = r.handle(negotiate_algorithms(C.V10))
    assert len(resp) >= 36  # 3.1.1
    assert resp[1] == C.Code.ALGORITHMS  # 3.1.2
    assert resp[0] == 0x10  # 3.1.3
    check_algorithms(C.V10, resp, caps_resp)  # 3.1.4-3.1.10


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_3_2_algorithms_version_mismatch(v):
    """Case 3.2: SPDM responder shall return ERROR(VersionMismatch), if it receives a
    NEGOTIATE_ALGORITHMS with non negotiated version (NegotiatedVersion+1, then -1)."""
    r, _ = after_capabilities(v)
    for other in (v + 1, v - 1):
        request = bytearray(negotiate_algorithms(v))
        request[0] = other
        assert_error(r.handle(bytes(request)), v, E.VERSION_MISMATCH)  # 3.2.1-3.2.5


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_3_3_algorithms_before_capabilities(v):
    """Case 3.3: SPDM responder shall return ERROR(UnexpectedRequest), if it receives a
    NEGOTIATE_ALGORITHMS before GET_CAPABILITIES (the ERROR is in version 1.0)."""
    r = after_version()
    assert_error(r.handle(negotiate_algorithms(v)), 0x10, E.UNEXPECTED_REQUEST)  # 3.3.1-3.3.5


def _invalid_algorithms_steps(v: int) -> list[tuple[str, bytes]]:
    good = negotiate_algorithms(v)
    length = len(good)

    def edit(offset: int, value: int, size: int = 1, data: bytes = good) -> bytes:
        out = bytearray(data)
        out[offset:offset + size] = value.to_bytes(size, "little")
        return bytes(out)

    steps = [  # Length-1 / Length+1: the field alone, and the message cut / grown to match it
        ("1: Length-1", edit(4, length - 1, 2)),
        ("1: Length-1, message cut to it", edit(4, length - 1, 2)[:-1]),
        ("3: Length+1", edit(4, length + 1, 2)),
        ("3: Length+1, message grown to it", edit(4, length + 1, 2) + b"\x00"),
        ("5: ExtAsymCount=21", edit(32, 21)),
        ("7: ExtHashCount=21", edit(33, 21)),
    ]
    if v >= C.V11:  # AlgStruct[0].AlgCount at offset 37: FixedAlgCount in bits 7:4
        steps += [
            ("9: FixedAlgCount=1", edit(37, 0x10)),
            ("11: FixedAlgCount=3", edit(37, 0x30)),
            ("13: ExtAlgCount_0=0xF, ExtAlgCount_1=0xF", edit(41, 0x2F, data=edit(37, 0x2F))),
        ]
    return steps


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_3_4_algorithms_invalid_fields(v):
    """Case 3.4: SPDM responder shall return ERROR(InvalidRequest), if it receives a
    NEGOTIATE_ALGORITHMS with invalid field."""
    r, _ = after_capabilities(v)
    for step, request in _invalid_algorithms_steps(v):
        resp = r.handle(request)
        assert resp[1] == C.Code.ERROR, step
        assert_error(resp, v, E.INVALID_REQUEST)  # 3.4.1-3.4.5
    assert r.handle(negotiate_algorithms(v))[1] == C.Code.ALGORITHMS  # the requests changed nothing


@pytest.mark.parametrize("caps", list(CAPS))
def test_case_3_5_algorithms_1_1(caps):
    """Case 3.5: SPDM responder shall return valid ALGORITHMS(0x11), if it receives a
    GET_ALGORITHMS with negotiated version 1.1 (four ReqAlgStructs: DHE, AEAD, ReqBaseAsymAlg,
    KeySchedule). "PSK_EX_CAP" of 3.5.10 is read as PSK_CAP."""
    r, caps_resp = after_capabilities(C.V11, make_config(caps))
    resp = r.handle(negotiate_algorithms(C.V11))
    assert len(resp) >= 36  # 3.5.1: sizeof(ALGORITHMS_1.1)
    assert resp[1] == C.Code.ALGORITHMS  # 3.5.2
    assert resp[0] == 0x11  # 3.5.3
    check_algorithms(C.V11, resp, caps_resp)  # 3.5.4-3.5.16


@pytest.mark.parametrize("caps", list(CAPS))
@pytest.mark.parametrize("v", V12_PLUS, ids=C.version_str)
def test_case_3_6_algorithms_1_2(v, caps):
    """Case 3.6: SPDM responder shall return valid ALGORITHMS(0x12), if it receives a
    GET_ALGORITHMS with negotiated version 1.2 (run for 1.3 too; OtherParamsSupport offers
    OpaqueDataFmt1). "PSK_EX_CAP" of 3.6.10 is read as PSK_CAP."""
    r, caps_resp = after_capabilities(v, make_config(caps))
    resp = r.handle(negotiate_algorithms(v))
    assert len(resp) >= 36  # 3.6.1: sizeof(ALGORITHMS_1.2)
    assert resp[1] == C.Code.ALGORITHMS  # 3.6.2
    assert resp[0] == v  # 3.6.3
    check_algorithms(v, resp, caps_resp)  # 3.6.4-3.6.17


@pytest.mark.parametrize("v", VERSIONS, ids=C.version_str)
def test_case_3_7_algorithms_twice(v):
    """Case 3.7: SPDM responder shall return ERROR(UnexpectedRequest) or silent drop, if it
    receives two non-identical NEGOTIATE_ALGORITHMS (pciauth answers the ERROR)."""
    r, _ = after_capabilities(v)
    first = negotiate_algorithms(v, structs=False)  # the setup's request: Param1=0, no AlgStruct
    a = parse_algorithms(r.handle(first))
    second = [
        first[:3] + b"\x01" + first[4:],  # step 1: Param2=1
        negotiate_algorithms(v, structs=False, base_asym=a["asym"], base_hash=a["hash"]),  # step 3
    ]
    if v >= C.V11:  # step 5: the selected DHE, AEAD and ReqBaseAsymAlg as the offer
        sel = {t: s for t, _, s in a["structs"]}
        second.append(M.NegotiateAlgorithms(
            v, C.MEAS_SPEC_DMTF, C.OPAQUE_FMT_1 if v >= C.V12 else 0, a["asym"], a["hash"],
            structs=[M.AlgStruct(t, sel.get(t, 0)) for t in (C.AlgType.DHE, C.AlgType.AEAD,
                                                              C.AlgType.REQ_BASE_ASYM)]).encode())
    for request in second:
        assert_error(r.handle(request), v, E.UNEXPECTED_REQUEST)  # 3.7.1-3.7.5
