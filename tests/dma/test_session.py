"""DmaSession: windows, refusals, memlock, everything released on close."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.dma.iova import Threshold, ThresholdChangeRefused
from pciauth.dma.session import DmaSession
from pciauth.emu.iommu import EmulatedIommu
from pciauth.errors import DmaError, HostNotReady, IommuError, RefusedError, UsageError

GiB = 1 << 30


def test_alloc_in_windows_sets_memory_attribute(session, iommu):
    p = session.alloc(4096, private=True)
    s = session.alloc(4096, private=False)
    assert p.iova < GiB <= s.iova
    assert p.buffer.private is True and s.buffer.private is False
    assert {m.iova for m in iommu.mappings} == {p.iova, s.iova}
    assert iommu.threshold_units == 512  # the emulated IOMMU learnt X at once


def test_fixed_iova_wrong_window_refused_and_nothing_leaks(session, iommu):
    with pytest.raises(RefusedError):
        session.alloc(4096, private=False, iova=0x10000)
    assert session.mappings == [] and iommu.mappings == [] and session.allocator.live() == []


def test_backend_failure_frees_the_iova(session, iommu, monkeypatch):
    def boom(*a, **k):
        raise IommuError("map failed", step="IommuDmaMap")

    monkeypatch.setattr(iommu, "map", boom)
    with pytest.raises(IommuError):
        session.alloc(4096)
    assert session.allocator.live() == []


def test_threshold_change_refused_while_mapped_then_allowed(session, iommu):
    m = session.alloc(4096, tag="mine")
    with pytest.raises(ThresholdChangeRefused, match="mine"):
        session.set_threshold("2G")
    assert iommu.threshold_units == 512
    session.free(m)
    session.set_threshold("2G")
    assert iommu.threshold_units == 1024 and session.threshold == Threshold.parse("2G")


def test_close_releases_everything_even_after_errors():
    io = EmulatedIommu()
    s = DmaSession(io, threshold=Threshold.parse("1G"))
    bufs = [s.alloc(4096, private=i % 2 == 0) for i in range(6)]
    s.close()
    assert io.mappings == [] and all(b.buffer.closed for b in bufs)
    with pytest.raises(UsageError, match="closed"):
        s.alloc(4096)
    s.close()


def test_free_of_a_foreign_mapping(session):
    m = session.alloc(4096)
    session.free(m)
    with pytest.raises(UsageError, match="not a live mapping"):
        session.free(m)


def test_dma_limit_bounds_iovas(iommu):
    with DmaSession(iommu, threshold=Threshold.parse("128M"), dma_limit=1 << 28) as s:
        m = s.alloc(64 << 20, private=False)
        assert m.iova + m.length <= 1 << 28
        with pytest.raises(DmaError):
            s.alloc(256 << 20, private=False)
        with pytest.raises(UsageError, match="DMA limit"):
            s.alloc(4096, private=False, iova=(1 << 28))


class PinningIommu(EmulatedIommu):
    name = "pinning"
    pins_memory = True


def test_memlock_checked_before_pinning(monkeypatch):
    import pciauth.dma.buffer as bufmod

    monkeypatch.setattr(bufmod, "memlock_limit", lambda: (64 * 1024, 64 * 1024))
    monkeypatch.setattr(bufmod, "_has_ipc_lock", lambda: False)
    with DmaSession(PinningIommu()) as s:
        s.alloc(32 * 1024)
        with pytest.raises(HostNotReady, match="RLIMIT_MEMLOCK is 64 KiB") as e:
            s.alloc(64 * 1024)
        assert "ulimit -l" in e.value.hint
        assert len(s.mappings) == 1


def test_emulated_backend_does_not_need_memlock(monkeypatch):
    import pciauth.dma.buffer as bufmod

    monkeypatch.setattr(bufmod, "memlock_limit", lambda: (4096, 4096))
    monkeypatch.setattr(bufmod, "_has_ipc_lock", lambda: False)
    with DmaSession(EmulatedIommu()) as s:
        s.alloc(1 << 20)


def test_to_dict(session):
    session.alloc(4096, tag="t")
    d = session.to_dict()
    assert d["backend"] == "emulated" and d["live_mappings"] == 1 and d["mappings"][0]["tag"] == "t"
    assert d["private_window"] == [0, GiB]


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 5), st.booleans()),
        st.tuples(st.just("free"), st.integers(0, 10), st.booleans()),
        st.tuples(st.just("x"), st.sampled_from([0, 1, 256, 512, (1 << 31) - 1]), st.booleans()),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(ops=_OPS)
def test_random_session_operations_keep_backend_and_allocator_in_step(ops):
    io = EmulatedIommu()
    with DmaSession(io, threshold=Threshold.parse("1G")) as s:
        for op, arg, private in ops:
            if op == "alloc":
                try:
                    s.alloc(arg * 4096, private=private)
                except DmaError:
                    lo, hi = s.allocator.window(private)
                    assert lo >= hi  # only an empty window refuses such small buffers
            elif op == "free" and s.mappings:
                s.free(s.mappings[arg % len(s.mappings)])
            elif op == "x":
                live = bool(s.mappings)
                changed = Threshold(arg) != s.threshold
                try:
                    s.set_threshold(Threshold(arg))
                    assert not (live and changed)
                except ThresholdChangeRefused:
                    assert live and changed
            assert {m.iova for m in io.mappings} == {m.iova for m in s.mappings}
            assert {a.iova for a in s.allocator.live()} == {m.iova for m in s.mappings}
            assert io.threshold_units == s.threshold.units
            for m in s.mappings:
                assert s.threshold.is_private(m.iova) == m.private == m.buffer.private
    assert io.mappings == []
    io.close()
