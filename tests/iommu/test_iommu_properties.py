"""Property tests: the capability-chain parser, IOVA choice, and backend bookkeeping."""

from __future__ import annotations

import struct

import pytest
from fake_vfio_common import Buf
from fake_vfio_kernel import FakeKernel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pciauth.errors import IommuError, MalformedData, UsageError
from pciauth.iommu.base import Mapping, choose_iova
from pciauth.iommu.iommufd import IommufdBackend
from pciauth.iommu.legacy import LegacyBackend, parse_iova_cap
from pciauth.uapi import sys as usys

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def cap_chains(draw):
    """A 24-byte info header plus caps with arbitrary next pointers and counts."""
    body = bytearray(24)
    for _ in range(draw(st.integers(0, 4))):
        cap_id = draw(st.sampled_from([1, 2, 3, 0xFFFF]))
        nxt = draw(st.integers(0, 200))
        count = draw(st.integers(0, 6))
        ranges = b"".join(
            struct.pack("<QQ", draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)))
            for _ in range(draw(st.integers(0, count)))
        )
        body += struct.pack("<HHIII", cap_id, 1, nxt, count, 0) + ranges
    body += draw(st.binary(max_size=32))
    return bytes(body), draw(st.integers(0, len(body) + 8))


@SETTINGS
@given(cap_chains())
def test_parse_iova_cap_only_raises_malformed(chain) -> None:
    raw, first = chain
    try:
        ranges = parse_iova_cap(raw, first, 24)
    except MalformedData as e:
        assert e.field in ("cap.next", "nr_iovas", "iova_ranges")
        return
    if ranges is not None:
        assert all(0 <= s <= e < 2**64 for s, e in ranges)


@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 400))
def test_parse_iova_cap_random_bytes(raw: bytes, first: int) -> None:
    try:
        parse_iova_cap(raw, first, 24)
    except MalformedData:
        pass


@st.composite
def iova_problems(draw):
    align = draw(st.sampled_from([1, 2, 4]))
    ranges = [
        tuple(sorted(draw(st.tuples(st.integers(0, 63), st.integers(0, 63)))))
        for _ in range(draw(st.integers(1, 3)))
    ]
    taken = []
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, 60))
        length = draw(st.integers(1, 6))
        if all(start + length - 1 < m.iova or start > m.last for m in taken):
            taken.append(Mapping(start, length, 0, True, True))
    return ranges, taken, draw(st.integers(1, 10)), align


@SETTINGS
@given(iova_problems())
def test_choose_iova_is_lowest_valid(problem) -> None:
    ranges, taken, length, align = problem

    def valid(iova: int) -> bool:
        last = iova + length - 1
        in_range = any(s <= iova and last <= e for s, e in ranges)
        free = all(last < m.iova or iova > m.last for m in taken)
        return iova % align == 0 and in_range and free

    got = choose_iova(ranges, taken, length, align)
    brute = next((i for i in range(0, 64) if valid(i)), None)
    assert got == brute


@pytest.mark.parametrize("kind", ["iommufd", "legacy"])
@settings(max_examples=80, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(1, 4), st.booleans()), max_size=12))
def test_backend_bookkeeping_matches_the_kernel(kind: str, ops) -> None:
    kernel = FakeKernel()
    with usys.use_kernel(kernel):
        be = (
            IommufdBackend("/dev/vfio/devices/vfio0")
            if kind == "iommufd"
            else LegacyBackend(7, "0000:01:00.0")
        )
        buffers = []
        for do_map, pages, fixed in ops:
            if do_map or not be.mappings:
                buf = Buf(pages * 4096)
                buffers.append(buf)
                iova = 0x100000 * len(buffers) if fixed else None
                try:
                    be.map(buf, iova)
                except (IommuError, UsageError):
                    pass
            else:
                m = be.mappings[pages % len(be.mappings)]
                assert be.unmap(m.iova, m.length) == m.length
            if kind == "iommufd":
                kmaps = kernel.objects[be.ioas_id].maps
            else:
                kmaps = kernel.fds[be.container_fd]["maps"]
            assert {m.iova: m.length for m in be.mappings} == {i: v[0] for i, v in kmaps.items()}
        be.close()
        assert kernel.open_fds == 0 and kernel.pinned == 0
