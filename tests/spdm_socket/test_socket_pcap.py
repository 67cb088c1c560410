"""pcap files: DMTF layout (link type 292, one DOE object per record), reader checks, recording."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sockhelp import EchoHandler

from pciauth.errors import MalformedData, NotFoundError, PciauthError
from pciauth.pcap import (
    LINKTYPE_PCI_DOE,
    PcapTransport,
    PcapWriter,
    doe_direction,
    read_pcap,
    read_pcap_bytes,
)
from pciauth.spdm import socket as S
from pciauth.spdm.socket_server import ResponderServer
from pciauth.transport import CallableTransport

GET_VERSION = S.encode_doe_object(1, 1, b"\x10\x84\x00\x00")
VERSION = S.encode_doe_object(1, 1, b"\x10\x04\x00\x00\x00\x01\x00\x12")


def test_round_trip_and_layout(tmp_path):
    path = tmp_path / "a.pcap"
    with PcapWriter(path) as w:
        w.write_doe(GET_VERSION, from_device=False, timestamp=1000.25)
        w.write_doe(VERSION, from_device=True, timestamp=1000.5)
    blob = path.read_bytes()
    # global header: magic, 2.4, zone 0, sigfigs 0, snaplen, link type 292 (little-endian)
    assert struct.unpack_from("<IHHiIII", blob) == (0xA1B2C3D4, 2, 4, 0, 0, 1 << 20, 292)
    # first record: ts 1000 s 250000 us, lengths, then the DOE object with its header
    assert struct.unpack_from("<IIII", blob, 24) == (1000, 250000, len(GET_VERSION), len(GET_VERSION))
    assert blob[40 : 40 + len(GET_VERSION)] == GET_VERSION
    link, records = read_pcap(path)
    assert link == LINKTYPE_PCI_DOE
    assert [r.data for r in records] == [GET_VERSION, VERSION]
    assert [r.timestamp for r in records] == [1000.25, 1000.5]
    assert [doe_direction(r.data) for r in records] == [False, True]
    assert w.directions == [False, True]


def test_snaplen_truncates_but_keeps_orig_len(tmp_path):
    with PcapWriter(tmp_path / "s.pcap", snaplen=12) as w:
        w.write_doe(VERSION, from_device=True)
    _, (rec,) = read_pcap(tmp_path / "s.pcap")
    assert rec.data == VERSION[:12] and rec.orig_len == len(VERSION)


def test_big_endian_and_nanosecond_files_read():
    body = struct.pack(">IIII", 7, 500_000_000, 4, 4) + b"abcd"
    link, recs = read_pcap_bytes(struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 292) + body)
    assert link == 292 and recs[0].timestamp == 7.5 and recs[0].data == b"abcd"


@pytest.mark.parametrize(
    "blob, field",
    [
        (b"\xd4\xc3\xb2", "header"),
        (b"\x00" * 24, "magic"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 0, 292), "version"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0, 292) + b"\0" * 10, "record"),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0, 292)
            + struct.pack("<IIII", 0, 0, 100, 100)
            + b"x",
            "incl_len",
        ),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0, 292)
            + struct.pack("<IIII", 0, 0, 4, 2)
            + b"abcd",
            "incl_len",
        ),
    ],
)
def test_reader_checks(blob, field):
    with pytest.raises(MalformedData) as e:
        read_pcap_bytes(blob)
    assert e.value.field == field


def test_missing_file_fifo_and_device(tmp_path):
    import os

    with pytest.raises(NotFoundError):
        read_pcap(tmp_path / "none.pcap")
    os.mkfifo(tmp_path / "fifo.pcap")
    with pytest.raises(MalformedData, match="regular file"):
        read_pcap(tmp_path / "fifo.pcap")
    with pytest.raises(MalformedData, match="regular file"):
        read_pcap("/dev/zero")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_reader_on_random_bytes(data):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0, 292)
    for blob in (data, header + data):
        try:
            read_pcap_bytes(blob)
        except PciauthError:
            pass


def test_direction_rule():
    assert doe_direction(S.encode_doe_object(1, 1, b"\x12\xe0\x00\x00")) is False  # request code
    assert doe_direction(S.encode_doe_object(1, 1, b"\x12\x60\x00\x00")) is True  # response code
    assert doe_direction(S.encode_doe_object(1, 2, b"\x12\x60\x00\x00")) is None  # secured: unknown
    assert doe_direction(S.encode_doe_object(1, 0, b"\x00\x00\x00\x00")) is None
    assert doe_direction(b"\x01") is None


def test_pcap_transport_wraps_any_transport(tmp_path):
    inner = CallableTransport(lambda m, secured=False: b"\x12\x04" + m[2:])
    with PcapWriter(tmp_path / "t.pcap") as w:
        t = PcapTransport(inner, w)
        assert t.exchange(b"\x12\x84\x00\x00") == b"\x12\x04\x00\x00"
        t.exchange(b"\x12\x84\x00\x00\x05", secured=True)
        assert t.exchanges == 2
    _, recs = read_pcap(tmp_path / "t.pcap")
    assert [S.decode_doe_object(r.data)[:2] for r in recs] == [(1, 1), (1, 1), (1, 2), (1, 2)]
    assert S.decode_doe_object(recs[1].data)[2] == b"\x12\x04\x00\x00"


def test_server_records_discovery_and_spdm(tmp_path):
    with (
        PcapWriter(tmp_path / "srv.pcap") as w,
        ResponderServer(EchoHandler, "127.0.0.1", 0, pcap=w) as srv,
        S.SocketTransport("127.0.0.1", srv.port) as t,
    ):
        t.discover()
        t.exchange(b"\x12\x84\x00\x00")
    _, recs = read_pcap(tmp_path / "srv.pcap")
    kinds = [S.decode_doe_object(r.data)[:2] for r in recs]
    assert kinds == [(1, 0)] * 6 + [(1, 1), (1, 1)]
    assert S.decode_doe_object(recs[-1].data)[2] == b"RP\x00\x00\x84\x12\x00\x00"
