"""CDAT-like table served by the emulated device's second DOE mailbox (CXL vendor 0x1e98, type 2).

A CXL "table access" request is one dword: request code [7:0] (0 = read entry), table type
[15:8] (0 = CDAT), entry handle [31:16]. The response starts with one dword: response code,
table type, and the next entry handle (0xffff after the last), then the entry's bytes. Entry 0
is the CDAT header; the table here holds one DSMAS and one DSLBIS entry, enough for tools that
walk CDAT to see something realistic.
"""

from __future__ import annotations

import struct

from pciauth.errors import MalformedData

END_HANDLE = 0xFFFF


def _entries() -> list[bytes]:
    dsmas = struct.pack("<BBHBBHQQ", 0, 0, 24, 0, 0, 0, 0, 1 << 30)  # 1 GiB at DPA 0
    dslbis = struct.pack("<BBHBBBBQHHHH", 1, 0, 24, 0, 0, 0, 0, 1000, 100, 0, 0, 0)  # latency
    body = dsmas + dslbis
    length = 16 + len(body)
    header = bytearray(struct.pack("<IBB6sI", length, 1, 0, b"\0" * 6, 1))
    header[5] = (-(sum(header) + sum(body))) & 0xFF  # checksum: all bytes sum to 0
    return [bytes(header), dsmas, dslbis]


ENTRIES = _entries()


def read_entry(payload: bytes) -> bytes:
    """Answer one table access request (raises on a malformed one: the mailbox sets ERROR)."""
    if len(payload) < 4:
        raise MalformedData("CDAT request without its dword", field="cdat request")
    (request,) = struct.unpack_from("<I", payload)
    code, table, handle = request & 0xFF, (request >> 8) & 0xFF, request >> 16
    if code != 0 or table != 0 or handle >= len(ENTRIES):
        raise MalformedData(f"unsupported CDAT request 0x{request:08x}", field="cdat request")
    nxt = handle + 1 if handle + 1 < len(ENTRIES) else END_HANDLE
    return struct.pack("<I", (table << 8) | (nxt << 16)) + ENTRIES[handle]
