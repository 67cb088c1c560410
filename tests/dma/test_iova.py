"""The IOVA allocator, the threshold X and its refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.dma.iova import (
    THRESHOLD_ALL_ONES,
    IovaAllocator,
    Threshold,
    ThresholdChangeRefused,
    ThresholdPolicy,
    parse_size,
)
from pciauth.errors import DmaError, RefusedError, UsageError

MiB, GiB = 1 << 20, 1 << 30
RANGES = [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 48) - 1)]


@pytest.mark.parametrize(
    "text, units",
    [
        ("all", THRESHOLD_ALL_ONES), ("all-ones", THRESHOLD_ALL_ONES), ("max", THRESHOLD_ALL_ONES),
        ("512", 512), ("0x200", 512), ("512u", 512), ("0", 0),
        ("1G", 512), ("1GiB", 512), ("512M", 256), ("2MiB", 1), ("4096M", 2048), ("bytes:0x40000000", 512),
        ("0x40000000 B", 512), ("2147483647", THRESHOLD_ALL_ONES),
    ],
)
def test_threshold_parse(text, units):
    assert Threshold.parse(text).units == units


@pytest.mark.parametrize("text", ["1M", "3M", "2147483648", "x", "-1", "1Q", "bytes:4097", "0x100000000000000u"])
def test_threshold_parse_refuses(text):
    with pytest.raises(UsageError):
        Threshold.parse(text)


def test_threshold_all_ones_is_everything_private():
    t = Threshold.ALL
    assert t.all_ones and t.bytes is None
    assert t.is_private(0) and t.is_private((1 << 64) - 1)
    x = Threshold.parse("1G")
    assert x.is_private(GiB - 1) and not x.is_private(GiB)
    assert x.to_dict() == {"units": 512, "bytes": GiB, "all_ones": False}


def test_parse_size():
    assert parse_size("4096") == 4096
    assert parse_size("64K") == 65536
    with pytest.raises(UsageError):
        parse_size("lots")


def test_default_is_everything_private():
    a = IovaAllocator(RANGES)
    assert a.window(True) == (0, 1 << 48)
    assert a.window(False) == (1 << 48, 1 << 48)
    iova = a.alloc(4096)
    assert iova == 4096  # the floor keeps IOVA 0 out
    with pytest.raises(DmaError, match="no free shared IOVA space") as e:
        a.alloc(4096, private=False)
    assert "threshold" in e.value.hint


def test_windows_split_by_x():
    a = IovaAllocator(RANGES, Threshold.parse("1G"))
    p = a.alloc(8192, private=True)
    s = a.alloc(8192, private=False)
    assert p < GiB <= s
    assert a.get(p).private and not a.get(s).private
    assert a.window_ranges(True) == [(0, GiB - 1)]
    assert a.window_ranges(False) == [(GiB, 0xFEDFFFFF), (0xFEF00000, (1 << 48) - 1)]


def test_x_zero_is_everything_shared():
    a = IovaAllocator(RANGES, Threshold(0))
    with pytest.raises(DmaError, match="private"):
        a.alloc(4096, private=True)
    assert a.alloc(4096, private=False) == 4096


def test_fixed_iova_in_the_wrong_window_is_refused():
    a = IovaAllocator(RANGES, Threshold.parse("1G"))
    with pytest.raises(RefusedError, match="not in the shared window"):
        a.reserve(0x100000, 4096, private=False)
    with pytest.raises(RefusedError, match="not in the private window"):
        a.reserve(GiB, 4096, private=True)
    with pytest.raises(RefusedError, match="private window"):
        a.reserve(GiB - 4096, 8192, private=True)  # straddles X
    assert a.reserve(GiB - 4096, 4096, private=True) == GiB - 4096
    assert a.reserve(GiB, 4096, private=False) == GiB


def test_fixed_iova_checks():
    a = IovaAllocator(RANGES, Threshold.parse("8G"))
    with pytest.raises(UsageError, match="aligned"):
        a.reserve(0x1001, 4096, private=True)
    with pytest.raises(DmaError, match="outside the ranges"):
        a.reserve(0xFEE00000, 4096, private=True)  # the MSI hole
    a.reserve(0x10000, 0x4000, private=True)
    with pytest.raises(DmaError, match="overlaps"):
        a.reserve(0x12000, 4096, private=True)
    with pytest.raises(DmaError, match="overlaps"):
        a.reserve(0xF000, 0x2000, private=True)


def test_alignment_and_reuse_after_free():
    a = IovaAllocator(RANGES, Threshold.parse("1G"))
    small = a.alloc(4096)
    huge = a.alloc(2 * MiB)
    assert huge % (2 * MiB) == 0 and huge != small
    assert a.alloc(4096, align=64 * 1024) % (64 * 1024) == 0
    assert a.free(small) == 4096
    assert a.alloc(4096) == small  # first fit reuses the hole
    with pytest.raises(DmaError, match="not allocated"):
        a.free(0x123000)
    with pytest.raises(UsageError):
        a.alloc(4096, align=3 * 4096)
    with pytest.raises(UsageError):
        a.alloc(0)


def test_allocation_skips_the_hole_and_respects_limit():
    a = IovaAllocator([(0, 0x3FFF), (0x10000, 0x1FFFF)], floor=0)
    assert a.alloc(0x4000) == 0
    assert a.alloc(0x4000) == 0x10000  # the first range is full
    with pytest.raises(DmaError, match="below 0x14000"):
        a.alloc(0x4000, limit=0x14000)


def test_ranges_are_checked_and_trimmed():
    a = IovaAllocator([(0x1800, 0x4FFF), (0x5000, 0x7FFE)], floor=0)
    assert a.ranges == [(0x2000, 0x6FFF)]
    for bad in ([], [(5, 1)], [("x", 2)], [(0, 1 << 64)], [(0, 0x7FF)]):
        with pytest.raises(DmaError):
            IovaAllocator(bad)


def test_changing_x_with_live_mappings_is_refused_and_names_them():
    a = IovaAllocator(RANGES, Threshold.parse("1G"))
    p = a.alloc(4096, tag="src")
    s = a.alloc(4096, private=False, tag="dst")
    with pytest.raises(ThresholdChangeRefused) as e:
        a.set_threshold(Threshold.parse("2G"))
    msg = str(e.value)
    assert f"0x{p:x}" in msg and f"0x{s:x}" in msg and "2 mapping(s) live" in msg
    assert "unmap everything" in e.value.hint
    assert [x.iova for x in e.value.live] == [p, s]
    assert a.threshold == Threshold.parse("1G")
    a.set_threshold(Threshold.parse("1G"))  # the same X is no change
    a.free(p)
    with pytest.raises(ThresholdChangeRefused):
        a.set_threshold(Threshold.ALL)
    a.free(s)
    a.set_threshold(Threshold.parse("2G"))  # the supported transition: unmap all, then change
    assert a.window(True) == (0, 2 * GiB)


class _Backend:
    name = "fake"

    def __init__(self):
        self.allowed = []
        self.units = []

    def allow_iovas(self, ranges):
        self.allowed.append(ranges)

    def set_threshold(self, units):
        self.units.append(units)


class _Knob:
    def __init__(self):
        self.written = []

    def write(self, t):
        self.written.append(t)

    def describe(self):
        return "tsm_vtom at /fake"


def test_policy_programs_backend_knob_and_allowed_windows():
    a = IovaAllocator(RANGES)
    be, knob = _Backend(), _Knob()
    pol = ThresholdPolicy(a, be, knob)
    pol.set(Threshold.parse("1G"))
    assert be.units == [512] and knob.written == [Threshold.parse("1G")]
    assert be.allowed[-1] == a.allowed_ranges()
    assert pol.enforcement.startswith("platform (tsm_vtom")
    a.alloc(4096)
    with pytest.raises(ThresholdChangeRefused):
        pol.set(Threshold.ALL)
    assert be.units == [512] and len(knob.written) == 1  # nothing was touched
    assert pol.to_dict()["live_mappings"] == 1


def test_policy_enforcement_names():
    a = IovaAllocator(RANGES)
    assert "allocator only" in ThresholdPolicy(a).enforcement
    assert ThresholdPolicy(a, _Backend()).enforcement == "fake IOMMU"


@settings(max_examples=150, deadline=None)
@given(
    x_units=st.integers(0, 600),
    ops=st.lists(st.tuples(st.booleans(), st.integers(1, 64), st.booleans()), max_size=40),
)
def test_random_alloc_free_keeps_invariants(x_units, ops):
    a = IovaAllocator([(0, 0x4FFFFFFF), (0x60000000, 0x7FFFFFFF)], Threshold(x_units))
    live = []
    for do_alloc, pages, private in ops:
        if do_alloc or not live:
            try:
                iova = a.alloc(pages * 4096, private=private)
            except DmaError:
                continue
            live.append(iova)
        else:
            a.free(live.pop(0))
        allocs = sorted(a.live(), key=lambda x: x.iova)
        for x, y in zip(allocs, allocs[1:], strict=False):
            assert x.end <= y.iova
        for x in allocs:
            assert a.threshold.is_private(x.iova) == x.private
            assert a.threshold.is_private(x.end - 1) == x.private
            assert any(s <= x.iova and x.end - 1 <= last for s, last in a.ranges)
            assert x.iova >= a.floor


def test_shared_window_beyond_the_dma_mask_says_so():
    a = IovaAllocator(RANGES, Threshold.parse("1G"))
    with pytest.raises(DmaError) as e:
        a.alloc(4096, private=False, limit=1 << 28)
    assert "DMA mask" in e.value.hint and "0x10000000" in e.value.hint
