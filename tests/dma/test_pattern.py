"""Patterns: fill/verify every byte, first mismatch offset and count, chunk boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.dma.pattern import CHUNK, make_pattern
from pciauth.errors import DataMismatch, UsageError

NAMES = ["offset", "offset:7", "zero", "ones", "inc", "0xab", "hex:DEADBEEF", "hex:010203", "random", "random:9"]


@pytest.mark.parametrize("name", NAMES)
def test_fill_then_verify(name):
    p = make_pattern(name)
    buf = bytearray(3 * CHUNK + 123)
    p.fill(memoryview(buf))
    r = p.verify(memoryview(buf))
    assert r.ok and r.length == len(buf) and r.first_mismatch is None


def test_expected_matches_fill_at_any_offset():
    p = make_pattern("offset")
    whole = bytearray(5 * 4096)
    p.fill(memoryview(whole))
    for off in (0, 1, 7, 8, 9, 4095, 4096, 4100, 8190):
        assert p.expected(off, 300) == bytes(whole[off : off + 300])


def test_offset_pattern_tells_pages_apart():
    p = make_pattern("offset")
    assert p.expected(0, 4096) != p.expected(4096, 4096)
    assert p.expected(0, 4096)[8:] == p.expected(4096, 4096)[8:]


def test_known_bytes():
    assert make_pattern("inc").expected(254, 4) == b"\xfe\xff\x00\x01"
    assert make_pattern("hex:dead").expected(1, 3) == b"\xad\xde\xad"
    assert make_pattern("0x5a").expected(0, 2) == b"ZZ"
    assert make_pattern("ones").expected(10, 1) == b"\xff"


def test_mismatch_reports_first_offset_and_count_across_chunks():
    p = make_pattern("inc")
    buf = bytearray(2 * CHUNK + 10)
    p.fill(memoryview(buf))
    for pos in (CHUNK - 1, CHUNK + 5, 2 * CHUNK + 9):
        buf[pos] ^= 0xFF
    r = p.verify(memoryview(buf))
    assert not r.ok
    assert r.mismatches == 3
    assert r.first_mismatch == CHUNK - 1
    assert r.expected == (CHUNK - 1) % 256 and r.actual == r.expected ^ 0xFF
    with pytest.raises(DataMismatch, match=f"3 of {len(buf)} bytes differ, the first at offset 0x{CHUNK - 1:x}"):
        r.raise_for_mismatch()


def test_all_wrong():
    r = make_pattern("ones").verify(memoryview(bytes(1000)))
    assert r.mismatches == 1000 and r.first_mismatch == 0


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 20000), flips=st.lists(st.integers(0, 19999), max_size=20), seed=st.integers(0, 99))
def test_verify_counts_exactly(size, flips, seed):
    p = make_pattern(f"random:{seed}")
    buf = bytearray(size)
    p.fill(memoryview(buf))
    flipped = sorted({f for f in flips if f < size})
    for f in flipped:
        buf[f] ^= 0x01
    r = p.verify(memoryview(buf))
    assert r.mismatches == len(flipped)
    assert r.first_mismatch == (flipped[0] if flipped else None)


@pytest.mark.parametrize("bad", ["", "nope", "hex:", "hex:xyz", "0x1ff", "random:abc", "offset:q",
                                 "hex:" + "00" * 5000])
def test_bad_pattern_names(bad):
    with pytest.raises(UsageError):
        make_pattern(bad)
