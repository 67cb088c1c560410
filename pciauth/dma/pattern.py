"""Data patterns for DMA checks: fill a buffer, then verify every byte after the device moved it.

Both run at memcpy speed: expected bytes are built by slicing one precomputed block per 1 MiB
chunk, and comparisons use ``bytes ==`` (memcmp). Only a chunk that differs is examined further,
with big-integer XOR to find the first mismatching offset and count the mismatching bytes without
a per-byte Python loop.

Pattern names (``--pattern``):

=================  =============================================================================
``offset``         (default) every 4 KiB page starts with its own offset (u64 little-endian,
                   XORed with the seed), then seeded pseudo-random bytes: detects misplaced pages
                   and shifted bytes
``zero``/``ones``  all 0x00 / all 0xff
``inc``            0x00, 0x01, ... 0xff, repeated
``0xAB``           one byte repeated
``hex:DEADBEEF``   these bytes repeated
``random[:SEED]``  a 64 KiB seeded pseudo-random block, repeated
=================  =============================================================================
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from pciauth.errors import DataMismatch, UsageError

CHUNK = 1 << 20
_STAMP_PERIOD = 4096
_RANDOM_BLOCK = 64 << 10
_MAX_HEX_BYTES = 4096


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a verify: ``mismatches`` bytes of ``length`` differ, the first at
    ``first_mismatch`` (an offset into the checked view), where ``expected``/``actual`` are the bytes."""

    length: int
    mismatches: int = 0
    first_mismatch: int | None = None
    expected: int | None = None
    actual: int | None = None

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def describe(self) -> str:
        if self.ok:
            return f"all {self.length} bytes match"
        return (
            f"{self.mismatches} of {self.length} bytes differ, the first at offset "
            f"0x{self.first_mismatch:x} (expected 0x{self.expected:02x}, got 0x{self.actual:02x})"
        )

    def raise_for_mismatch(self, what: str = "DMA data") -> None:
        if not self.ok:
            raise DataMismatch(f"{what}: {self.describe()}")

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "length": self.length,
            "mismatches": self.mismatches,
            "first_mismatch": self.first_mismatch,
            "expected": self.expected,
            "actual": self.actual,
        }


def _first_difference(got: bytes, exp: bytes) -> tuple[int, int]:
    """(index of the first differing byte, number of differing bytes) of two equal-length strings."""
    x = int.from_bytes(got, "little") ^ int.from_bytes(exp, "little")
    first = ((x & -x).bit_length() - 1) // 8
    count = len(got) - x.to_bytes(len(got), "little").count(0)
    return first, count


class Pattern:
    """A repeating byte pattern of period ``len(block)``, optionally stamped per 4 KiB page."""

    def __init__(self, name: str, block: bytes, *, stamp_seed: int | None = None) -> None:
        if not block:
            raise UsageError(f"pattern {name!r} is empty")
        self.name = name
        self.block = bytes(block)
        self.stamp_seed = stamp_seed
        period = len(self.block)
        self._big = self.block * (CHUNK // period + 2)

    def expected(self, offset: int, length: int) -> bytes:
        """The bytes the pattern has at ``[offset, offset + length)`` (``length`` <= 1 MiB)."""
        if length > CHUNK:
            return b"".join(
                self.expected(offset + i, min(CHUNK, length - i)) for i in range(0, length, CHUNK)
            )
        start = offset % len(self.block)
        data = self._big[start : start + length]
        if self.stamp_seed is None:
            return data
        out = bytearray(data)
        first_page = offset // _STAMP_PERIOD * _STAMP_PERIOD
        for page in range(first_page, offset + length, _STAMP_PERIOD):
            pos = page - offset  # negative when the view starts inside this page's stamp
            if pos + 8 <= 0:
                continue
            stamp = struct.pack("<Q", (page ^ self.stamp_seed) & 0xFFFFFFFFFFFFFFFF)
            lo, hi = max(pos, 0), min(pos + 8, length)
            out[lo:hi] = stamp[lo - pos : hi - pos]
        return bytes(out)

    def fill(self, view: memoryview, offset: int = 0) -> None:
        """Write the pattern into ``view``; ``offset`` is the pattern position of ``view[0]``."""
        total = len(view)
        for i in range(0, total, CHUNK):
            n = min(CHUNK, total - i)
            view[i : i + n] = self.expected(offset + i, n)

    def verify(self, view: memoryview, offset: int = 0) -> VerifyResult:
        """Compare every byte of ``view`` with the pattern."""
        total = len(view)
        mismatches = 0
        first = expected = actual = None
        for i in range(0, total, CHUNK):
            n = min(CHUNK, total - i)
            got = bytes(view[i : i + n])
            exp = self.expected(offset + i, n)
            if got == exp:
                continue
            idx, count = _first_difference(got, exp)
            mismatches += count
            if first is None:
                first, expected, actual = i + idx, exp[idx], got[idx]
        return VerifyResult(total, mismatches, first, expected, actual)

    def __repr__(self) -> str:
        return f"<Pattern {self.name}>"


def _random_block(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"bad {what} {text!r}: expected a number like 7 or 0x2a") from None


def make_pattern(spec: str = "offset", *, seed: int = 0x5EED) -> Pattern:
    """Build a :class:`Pattern` from its name (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise UsageError("pattern name is empty")
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "offset":
        s = _parse_int(arg, "pattern seed") if arg else seed
        return Pattern(spec, _random_block(s, _STAMP_PERIOD), stamp_seed=s)
    if name == "zero":
        return Pattern(spec, b"\x00")
    if name == "ones":
        return Pattern(spec, b"\xff")
    if name == "inc":
        return Pattern(spec, bytes(range(256)))
    if name == "random":
        s = _parse_int(arg, "pattern seed") if arg else seed
        return Pattern(spec, _random_block(s, _RANDOM_BLOCK))
    if name == "hex":
        text = arg.replace(" ", "").removeprefix("0x")
        if not text or len(text) > 2 * _MAX_HEX_BYTES:
            raise UsageError(f"pattern hex:... needs 1 to {_MAX_HEX_BYTES} bytes of hex")
        try:
            return Pattern(spec, bytes.fromhex(text))
        except ValueError:
            raise UsageError(f"bad hex in pattern {spec!r}") from None
    if name.startswith("0x") and not arg:
        value = _parse_int(name, "pattern byte")
        if not 0 <= value <= 0xFF:
            raise UsageError(f"pattern byte {spec!r} is not in 0x00..0xff")
        return Pattern(spec, bytes([value]))
    raise UsageError(
        f"unknown pattern {spec!r}: use offset, zero, ones, inc, 0xAB, hex:DEADBEEF or random[:SEED]"
    )


PATTERN_NAMES = ("offset", "zero", "ones", "inc", "0xAB", "hex:...", "random[:SEED]")
