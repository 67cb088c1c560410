"""DOE objects, transport codecs and frame I/O: bounds, short reads, peer close."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sockhelp import frame

from pciauth.errors import MalformedData, PciauthError, ProtocolError, UsageError
from pciauth.spdm import socket as S


def test_doe_object_layout_and_padding():
    obj = S.encode_doe_object(1, 1, b"\x10\x84\x00\x00\x01")
    assert obj[:4] == bytes([1, 0, 1, 0])  # vendor 0001, type 1
    assert struct.unpack_from("<I", obj, 4)[0] == 4  # 2 header + 2 payload dwords
    assert obj[8:] == b"\x10\x84\x00\x00\x01\x00\x00\x00"
    assert S.decode_doe_object(obj) == (1, 1, b"\x10\x84\x00\x00\x01\x00\x00\x00")


def test_doe_length_zero_means_2_18_dwords():
    header = struct.pack("<II", 0x00010001, 0)
    with pytest.raises(MalformedData, match="262144 dwords"):
        S.decode_doe_object(header + b"\0" * 8)


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"\x01\x00\x01\x00", "shorter than the 8-byte DOE header"),
        (S.encode_doe_object(1, 1, b"abcd") + b"\0", "not a whole number of dwords"),
        (S.encode_doe_object(1, 1, b"abcd") + b"\0" * 4, "length field says 3 dwords"),
        (S.encode_doe_object(1, 1, b"abcdefgh")[:-4], "length field says 4 dwords"),
    ],
)
def test_doe_object_checks(blob, match):
    with pytest.raises(MalformedData, match=match):
        S.decode_doe_object(blob)


def test_encode_refuses_more_than_a_doe_object_holds():
    with pytest.raises(UsageError):
        S.encode_doe_object(1, 1, b"\0" * (4 << 20))


def test_codecs_round_trip():
    for ttype in (S.TRANSPORT_PCI_DOE, S.TRANSPORT_MCTP):
        for secured in (False, True):
            kind, msg, sec = S.unwrap_message(ttype, S.wrap_message(ttype, b"\x12\x84\x00\x00", secured))
            assert (kind, msg[:4], sec) == ("spdm", b"\x12\x84\x00\x00", secured)
    assert S.unwrap_message(S.TRANSPORT_NONE, b"\x12\x84") == ("spdm", b"\x12\x84", False)
    with pytest.raises(UsageError):
        S.wrap_message(S.TRANSPORT_NONE, b"x", True)
    with pytest.raises(ProtocolError, match="1e98:02"):
        S.unwrap_message(S.TRANSPORT_PCI_DOE, S.encode_doe_object(0x1E98, 2, b"cdat"))
    with pytest.raises(ProtocolError, match="not SPDM"):
        S.unwrap_message(S.TRANSPORT_MCTP, b"\x7e\x10")
    with pytest.raises(MalformedData):
        S.unwrap_message(S.TRANSPORT_MCTP, b"")


def test_discovery_answers_walk_the_list():
    entries = S.DEFAULT_DISCOVERY
    values = [
        struct.unpack("<I", S.decode_doe_object(S.discovery_response(entries, i))[2])[0] for i in range(4)
    ]
    assert values == [0x01000001, 0x02010001, 0x00020001, 0x00000001]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3), st.binary(max_size=64))
def test_unwrap_random_payloads_only_raise_pciauth_errors(ttype, data):
    try:
        S.unwrap_message(ttype, data)
    except PciauthError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 0x3FFFF))
def test_decode_with_random_length_fields(body, length):
    blob = struct.pack("<II", 0x00010001, length) + body
    try:
        vendor, type_, payload = S.decode_doe_object(blob)
    except MalformedData:
        return
    assert len(payload) == length * 4 - 8


# --- frame I/O on a socket pair ---


def _pair():
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    return a, b


def test_short_reads_are_reassembled():
    a, b = _pair()
    data = frame(S.COMMAND_NORMAL, 2, b"x" * 3000)

    def trickle():
        for i in range(0, len(data), 7):
            b.sendall(data[i : i + 7])

    t = threading.Thread(target=trickle)
    t.start()
    f = S.recv_frame(a)
    t.join()
    assert (f.command, f.transport_type, f.payload) == (1, 2, b"x" * 3000)


def test_oversized_size_field_is_an_error_not_an_allocation():
    a, b = _pair()
    b.sendall(frame(S.COMMAND_NORMAL, 2, size=0xFFFFFFFF))
    with pytest.raises(S.OversizedFrame, match="4294967295"):
        S.recv_frame(a)
    b.sendall(frame(S.COMMAND_NORMAL, 2, size=101))
    with pytest.raises(S.OversizedFrame):
        S.recv_frame(a, max_payload=100)


def test_peer_close_mid_frame_and_between_frames():
    a, b = _pair()
    b.sendall(frame(S.COMMAND_NORMAL, 2, size=50) + b"only ten b")
    b.close()
    with pytest.raises(S.PeerClosed, match="middle of a frame") as e:
        S.recv_frame(a)
    assert e.value.mid_frame
    c, d = _pair()
    d.close()
    with pytest.raises(S.PeerClosed, match="between frames") as e:
        S.recv_frame(c)
    assert not e.value.mid_frame
    e2, f2 = _pair()
    f2.sendall(b"\x00\x00")  # half a header
    f2.close()
    with pytest.raises(S.PeerClosed) as e:
        S.recv_frame(e2)
    assert e.value.mid_frame


def test_receive_timeout_is_a_transport_error():
    a, _b = _pair()
    a.settimeout(0.05)
    with pytest.raises(S.TransportError, match="timed out"):
        S.recv_frame(a)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2323", ("127.0.0.1", 2323)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:5", ("::1", 5)),
        (":7", ("127.0.0.1", 7)),
    ],
)
def test_parse_endpoint(text, expected):
    assert S.parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["host:", "x", "1:99999", "a:b"])
def test_parse_endpoint_rejects(text):
    with pytest.raises(UsageError):
        S.parse_endpoint(text)


def test_contract_names_resolve():
    """docs/CONTRACTS.md names serve() and the server in pciauth.spdm.socket."""
    from pciauth.spdm import socket_server
    from pciauth.spdm.socket import ResponderServer, serve

    assert serve is socket_server.serve and ResponderServer is socket_server.ResponderServer
    with pytest.raises(AttributeError):
        S.no_such_name  # noqa: B018
