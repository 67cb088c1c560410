"""DmaBuffer: alignment, views, hugepage policy, memlock checks."""

from __future__ import annotations

import ctypes
import mmap
import resource

import pytest

from pciauth.dma import buffer as bufmod
from pciauth.dma.buffer import HUGEPAGE_SIZE, PAGE_SIZE, DmaBuffer, check_memlock, format_size
from pciauth.errors import DmaError, HostNotReady, UsageError


def test_buffer_is_page_aligned_rounded_and_zeroed():
    with DmaBuffer(5000) as b:
        assert b.length == 2 * PAGE_SIZE
        assert b.vaddr % PAGE_SIZE == 0
        assert bytes(b.view) == bytes(b.length)
        assert not b.hugepages


def test_vaddr_is_the_address_of_the_view():
    with DmaBuffer(PAGE_SIZE) as b:
        b.view[0:4] = b"\x11\x22\x33\x44"
        assert ctypes.string_at(b.vaddr, 4) == b"\x11\x22\x33\x44"
        ctypes.memmove(b.vaddr + 100, b"xyz", 3)
        assert bytes(b.view[100:103]) == b"xyz"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4096", True, bufmod.MAX_BUFFER + 1])
def test_bad_lengths_are_usage_errors(bad):
    with pytest.raises(UsageError):
        DmaBuffer(bad)


def test_bad_hugepage_mode():
    with pytest.raises(UsageError, match="hugepages"):
        DmaBuffer(4096, hugepages="always")


def _no_hugetlb(monkeypatch):
    real = DmaBuffer._map

    def fake(length, flags):
        if flags & bufmod.MAP_HUGETLB:
            raise OSError(12, "Cannot allocate memory")
        return real(length, flags)

    monkeypatch.setattr(DmaBuffer, "_map", staticmethod(fake))


def test_hugepages_required_but_missing_names_the_fix(monkeypatch):
    _no_hugetlb(monkeypatch)
    with pytest.raises(HostNotReady) as e:
        DmaBuffer(4096, hugepages=True)
    assert "nr_hugepages" in e.value.hint
    assert e.value.errno == 12


def test_hugepages_prefer_falls_back_and_says_why(monkeypatch):
    _no_hugetlb(monkeypatch)
    with DmaBuffer(4096, hugepages="prefer") as b:
        assert not b.hugepages
        assert b.length == PAGE_SIZE
        assert "hugepages" in b.fallback_reason


def test_hugepages_when_the_kernel_has_them(monkeypatch):
    calls = []
    real = DmaBuffer._map

    def fake(length, flags):
        calls.append((length, flags))
        return real(length, flags & ~bufmod.MAP_HUGETLB)  # pretend: plain pages of the same size

    monkeypatch.setattr(DmaBuffer, "_map", staticmethod(fake))
    with DmaBuffer(4096, hugepages="require") as b:
        assert b.hugepages and b.length == HUGEPAGE_SIZE and b.page_size == HUGEPAGE_SIZE
    assert calls == [(HUGEPAGE_SIZE, bufmod.MAP_HUGETLB)]


def test_close_is_idempotent_and_refuses_live_views():
    b = DmaBuffer(PAGE_SIZE)
    keep = b.view[0:16]
    with pytest.raises(DmaError, match="live views"):
        b.close()
    keep.release()
    b.close()
    b.close()
    assert b.closed


def test_memlock_check_numbers_and_fix():
    check_memlock(1 << 20, limit=8 << 20, privileged=False)
    with pytest.raises(HostNotReady) as e:
        check_memlock(64 << 20, limit=8 << 20, privileged=False)
    assert "RLIMIT_MEMLOCK is 8 MiB" in str(e.value)
    assert "64 MiB" in str(e.value)
    assert "ulimit -l" in e.value.hint


def test_memlock_unlimited_or_privileged_passes():
    check_memlock(1 << 40, limit=resource.RLIM_INFINITY, privileged=False)
    check_memlock(1 << 40, limit=4096, privileged=True)


def test_format_size():
    assert format_size(4096) == "4 KiB"
    assert format_size(2 << 20) == "2 MiB"
    assert format_size(1000) == "1000 bytes"
    assert mmap.PAGESIZE == PAGE_SIZE


def test_available_memory_check():
    from pciauth.dma.buffer import available_memory, check_available

    check_available(1 << 20, available=1 << 30)
    with pytest.raises(HostNotReady, match="only 1 GiB of memory is available") as e:
        check_available(2 << 30, available=1 << 30)
    assert "--size" in e.value.hint
    avail = available_memory()
    assert avail is None or avail > 0
