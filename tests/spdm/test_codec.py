"""Message codec: encode/parse round trips per version, layouts pinned to DSP0274 byte offsets."""

from __future__ import annotations

import pytest

from pciauth.spdm import constants as C
from pciauth.spdm import messages as M
from pciauth.spdm.measurements import make_block, parse_record
from pciauth.spdm.messages_base import SpdmMalformed
from pciauth.spdm.messages_session import (
    encode_opaque,
    find_sm_element,
    parse_opaque,
    sm_supported_versions,
    sm_version_selection,
)

VERSIONS = C.ALL_VERSIONS


def test_get_version_is_always_1_0():
    assert M.GetVersion().encode() == bytes.fromhex("10840000")


def test_version_response_layout():
    raw = M.Version([0x1000, 0x1100, 0x1200, 0x1300]).encode()
    assert raw == bytes.fromhex("100400000004") + bytes.fromhex("0010001100120013")
    assert M.Version.parse(raw).versions == [0x10, 0x11, 0x12, 0x13]


@pytest.mark.parametrize("v,size", [(0x10, 4), (0x11, 12), (0x12, 20), (0x13, 20)])
def test_get_capabilities_size_per_version(v, size):
    raw = M.GetCapabilities(v, 20, 0x2C6, 0x1200, 0x1200).encode()
    assert len(raw) == size
    back = M.GetCapabilities.parse(raw)
    if v >= 0x11:
        assert raw[5] == 20 and back.flags == 0x2C6
    if v >= 0x12:
        assert back.data_transfer_size == 0x1200


@pytest.mark.parametrize("v,size", [(0x10, 12), (0x11, 12), (0x12, 20), (0x13, 20)])
def test_capabilities_size_per_version(v, size):
    raw = M.Capabilities(v, 12, 0x1234, 0x1200, 0x1200).encode()
    assert len(raw) == size
    assert M.Capabilities.parse(raw).flags == 0x1234


def test_negotiate_algorithms_offsets():
    structs = [M.AlgStruct(2, 0x18), M.AlgStruct(3, 0x7), M.AlgStruct(4, 0x80), M.AlgStruct(5, 1)]
    raw = M.NegotiateAlgorithms(0x12, 1, 2, 0x80, 0x2, structs=structs).encode()
    assert len(raw) == 32 + 16 and raw[2] == 4
    assert int.from_bytes(raw[4:6], "little") == len(raw)
    assert raw[6] == 1 and raw[7] == 2
    assert int.from_bytes(raw[8:12], "little") == 0x80 and int.from_bytes(raw[12:16], "little") == 2
    assert raw[32:36] == bytes((2, 0x20, 0x18, 0))
    assert M.NegotiateAlgorithms.parse(raw).struct(C.AlgType.AEAD) == 7


def test_negotiate_algorithms_1_0_has_no_structs():
    raw = M.NegotiateAlgorithms(0x10, 1, 0, 0x80, 2, structs=[M.AlgStruct(2, 8)]).encode()
    assert len(raw) == 32 and raw[2] == 0


def test_algorithms_offsets():
    raw = M.Algorithms(0x11, 1, 0, 0x4, 0x80, 0x2, structs=[M.AlgStruct(2, 0x10)]).encode()
    assert len(raw) == 36 + 4
    assert int.from_bytes(raw[8:12], "little") == 4
    assert int.from_bytes(raw[12:16], "little") == 0x80
    assert int.from_bytes(raw[16:20], "little") == 2
    assert M.Algorithms.parse(raw).struct(C.AlgType.DHE) == 0x10


def test_algorithms_length_field_checked():
    raw = bytearray(M.Algorithms(0x12, 1, 0, 4, 0x80, 2).encode())
    raw[4] += 4
    with pytest.raises(SpdmMalformed) as e:
        M.Algorithms.parse(bytes(raw))
    assert e.value.field == "Length"


def test_padding_up_to_three_zero_bytes_is_dropped():
    raw = M.GetDigests(0x12).encode()
    assert M.GetDigests.parse(raw + b"\0\0\0").raw == raw
    with pytest.raises(SpdmMalformed):
        M.GetDigests.parse(raw + b"\0\0\0\0")
    with pytest.raises(SpdmMalformed):
        M.GetDigests.parse(raw + b"\x01")


def test_certificate_portion_length_checked():
    raw = M.Certificate(0x12, 0, b"abcd", 10).encode()
    assert raw[4:8] == bytes((4, 0, 10, 0))
    with pytest.raises(SpdmMalformed) as e:
        M.Certificate.parse(raw[:-1])
    assert "PortionLength" in e.value.field


@pytest.mark.parametrize("v", VERSIONS)
def test_challenge_and_auth_layout(v):
    ctx = b"C" * 8 if v >= 0x13 else b""
    ch = M.Challenge(v, 1, 0xFF, b"N" * 32, ctx).encode()
    assert len(ch) == 36 + len(ctx)
    assert M.Challenge.parse(ch).requester_context == ctx
    auth = M.ChallengeAuth(v, 1, 0x3, b"H" * 48, b"n" * 32, b"M" * 48, b"op", b"S" * 96, ctx)
    raw = auth.encode()
    back = M.ChallengeAuth.parse(raw, hash_size=48, sig_size=96, summary=True)
    assert back.signature == b"S" * 96 and back.opaque == b"op" and back.requester_context == ctx
    assert back.signed_part == raw[:-96]
    # the opaque length sits right after the summary hash
    assert raw[4 + 48 + 32 + 48 : 4 + 48 + 32 + 48 + 2] == b"\x02\x00"


@pytest.mark.parametrize("v", VERSIONS)
def test_get_measurements_layout(v):
    ctx = b"R" * 8 if v >= 0x13 else b""
    signed = M.GetMeasurements(v, 1, 0xFF, b"N" * 32, 2, ctx).encode()
    expect = 4 + 32 + (1 if v >= 0x11 else 0) + len(ctx)
    assert len(signed) == expect
    assert M.GetMeasurements.parse(signed).slot == (2 if v >= 0x11 else 0)
    unsigned = M.GetMeasurements(v, 0, 0, requester_context=ctx).encode()
    assert len(unsigned) == 4 + len(ctx)


@pytest.mark.parametrize("v", VERSIONS)
def test_measurements_layout(v):
    ctx = b"R" * 8 if v >= 0x13 else b""
    block = make_block(1, 0, b"x" * 48, raw=False)
    m = M.Measurements(v, 0, 0, 1, block.raw, b"n" * 32, b"", b"S" * 64, ctx)
    raw = m.encode()
    assert raw[4] == 1 and int.from_bytes(raw[5:8], "little") == len(block.raw)
    back = M.Measurements.parse(raw, sig_size=64)
    assert parse_record(back.record, 1)[0].value == b"x" * 48
    assert back.signed_part == raw[:-64]


def test_measurement_block_format():
    b = make_block(3, C.MeasurementType.HARDWARE_CONFIG, b"abc", raw=True)
    assert b.raw == bytes((3, 1, 6, 0, 0x82, 3, 0)) + b"abc"
    with pytest.raises(SpdmMalformed):
        parse_record(b.raw[:-1], 1)
    bad = bytearray(b.raw)
    bad[2] = 7  # MeasurementSize disagrees with the DMTF value size
    with pytest.raises(SpdmMalformed):
        parse_record(bytes(bad) + b"\0", 1)


def test_error_and_not_ready():
    raw = M.ErrorResponse(0x12, 0x42, 0, bytes((3, 0x83, 7, 2))).encode()
    e = M.ErrorResponse.parse(raw)
    assert e.name == "RESPONSE_NOT_READY" and e.not_ready() == (3, 0x83, 7, 2)
    assert M.respond_if_ready(0x12, 0x83, 7) == bytes((0x12, 0xFF, 0x83, 7))


@pytest.mark.parametrize("v", (0x11, 0x12, 0x13))
def test_opaque_version_elements(v):
    blob = encode_opaque(v, [sm_supported_versions((0x1000, 0x1100))])
    assert len(blob) % 4 == 0
    if v == 0x11:
        assert blob[:4] == (0x444D5446).to_bytes(4, "little")
    assert find_sm_element(parse_opaque(v, blob), 2) == [0x1000, 0x1100]
    sel = encode_opaque(v, [sm_version_selection(0x1100)])
    assert find_sm_element(parse_opaque(v, sel), 1) == [0x1100]


@pytest.mark.parametrize("v", (0x11, 0x12, 0x13))
def test_key_exchange_layout(v):
    ke = M.KeyExchange(v, 0, 0, 0x1234, b"r" * 32, b"D" * 96, b"op", session_policy=1)
    raw = ke.encode()
    assert raw[4:6] == b"\x34\x12" and len(raw) == 4 + 4 + 32 + 96 + 2 + 2
    assert raw[6] == (1 if v >= 0x12 else 0)
    rsp = M.KeyExchangeRsp(v, 0, 0x5678, 0, 0, b"r" * 32, b"D" * 96, b"", b"o", b"S" * 96, b"V" * 48)
    back = M.KeyExchangeRsp.parse(rsp.encode(), dhe_size=96, hash_size=48, sig_size=96, summary=False)
    assert back.rsp_session_id == 0x5678 and back.verify_data == b"V" * 48
    assert back.with_signature == rsp.encode()[:-48]
