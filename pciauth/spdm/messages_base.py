"""Shared pieces of the SPDM codec: the bounds-checked reader, the header, the error class."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pciauth.errors import MalformedData

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<BBBB")


class SpdmMalformed(MalformedData):
    """An SPDM message breaks DSP0274's layout; ``field`` names the culprit."""


class Reader:
    """Bounds-checked little-endian reader over one message.

    After :func:`start` it also carries the message's header fields (``version``, ``code``,
    ``param1``, ``param2``), so a parser reads them without another object.
    """

    __slots__ = ("code", "data", "n", "param1", "param2", "pos", "version", "what")

    def __init__(self, data: bytes, what: str, code: int | None = None) -> None:
        """A reader over ``data``; with ``code``, past the 4-byte header of a message of that code
        (the reader then also is the header: ``version``, ``code``, ``param1``, ``param2``)."""
        if type(data) is not bytes:
            data = bytes(data)
        self.data = data
        self.n = n = len(data)
        self.pos = 0
        self.what = what
        if code is None:
            return
        if n < 4:
            self.need(4, "header")
        self.version, self.code, self.param1, self.param2 = _HEADER.unpack_from(data)
        self.pos = 4
        if self.code != code:
            raise SpdmMalformed(f"{what}: code 0x{self.code:02x} is not 0x{code:02x}",
                                field="RequestResponseCode")

    def need(self, n: int, fld: str) -> None:
        if n < 0 or self.pos + n > self.n:
            raise SpdmMalformed(
                f"{self.what}: truncated at {fld} (needs {n} bytes at offset {self.pos}, "
                f"message has {self.n})",
                field=fld,
            )

    def take(self, n: int, fld: str) -> bytes:
        pos = self.pos
        if n < 0 or pos + n > self.n:
            self.need(n, fld)
        self.pos = pos + n
        return self.data[pos : pos + n]

    def u8(self, fld: str) -> int:
        pos = self.pos
        if pos >= self.n:
            self.need(1, fld)
        self.pos = pos + 1
        return self.data[pos]

    def u16(self, fld: str) -> int:
        pos = self.pos
        if pos + 2 > self.n:
            self.need(2, fld)
        self.pos = pos + 2
        return _U16.unpack_from(self.data, pos)[0]

    def u24(self, fld: str) -> int:
        return int.from_bytes(self.take(3, fld), "little")

    def u32(self, fld: str) -> int:
        pos = self.pos
        if pos + 4 > self.n:
            self.need(4, fld)
        self.pos = pos + 4
        return _U32.unpack_from(self.data, pos)[0]

    def fields(self, layout: Layout) -> tuple[int, ...]:
        """Read a run of fixed-size fields at once; when the message is short, name the field cut."""
        pos = self.pos
        if pos + layout.size > self.n:
            for name, offset, size in layout.fields:
                self.pos = pos + offset
                self.need(size, name)
        self.pos = pos + layout.size
        return layout.struct.unpack_from(self.data, pos)

    def rest(self) -> int:
        return self.n - self.pos

    def end(self) -> bytes:
        """Finish: allow up to 3 zero padding bytes; return the exact message bytes."""
        if self.pos == self.n:
            return self.data
        extra = self.data[self.pos :]
        if len(extra) > 3 or any(extra):
            raise SpdmMalformed(
                f"{self.what}: {len(extra)} unexpected trailing byte(s) after offset {self.pos}",
                field="length",
            )
        return self.data[: self.pos]


class Layout:
    """A run of fixed-size little-endian fields, read with one ``struct`` call.

    ``fields`` is a table of ``(name, code)`` with a ``struct`` code per field (``B`` u8, ``H``
    u16, ``I`` u32, ``12x`` 12 reserved bytes...). Reserved (``x``) fields are checked for length
    but not returned.
    """

    __slots__ = ("fields", "size", "struct")

    def __init__(self, *fields: tuple[str, str]) -> None:
        self.struct = struct.Struct("<" + "".join(code for _, code in fields))
        self.fields: list[tuple[str, int, int]] = []
        offset = 0
        for name, code in fields:
            size = struct.calcsize("<" + code)
            self.fields.append((name, offset, size))
            offset += size
        self.size = offset

    @classmethod
    def of(cls, *fields: tuple[str, str]) -> Layout:
        """The layout of ``fields``, built once (layouts with negotiated sizes, e.g. ``48s``)."""
        layout = _LAYOUTS.get(fields)
        if layout is None:
            layout = cls(*fields)
            if len(_LAYOUTS) < 512:
                _LAYOUTS[fields] = layout
        return layout


_LAYOUTS: dict[tuple[tuple[str, str], ...], Layout] = {}


@dataclass(slots=True)
class Header:
    version: int
    code: int
    param1: int = 0
    param2: int = 0

    def encode(self) -> bytes:
        return header(self.version, self.code, self.param1, self.param2)


def header(version: int, code: int, param1: int = 0, param2: int = 0) -> bytes:
    """The 4 header bytes of a message (what ``Header(...).encode()`` gives, without the object)."""
    return bytes((version, code, param1 & 0xFF, param2 & 0xFF))


def parse_header(data: bytes) -> Header:
    """The 4-byte header of any SPDM message."""
    if len(data) < 4:
        raise SpdmMalformed(f"SPDM message of {len(data)} bytes is shorter than its 4-byte header",
                            field="header")
    return Header(data[0], data[1], data[2], data[3])


def start(data: bytes, code: int, what: str) -> tuple[Reader, Reader]:
    """A reader past the 4-byte header of a message of ``code``; the reader is also the header."""
    r = Reader(data, what, code)
    return r, r
