"""The emulated IOMMU: mapping, T=1/T=0 rules, every fault case, nothing transferred on a fault."""

from __future__ import annotations

import pytest

from pciauth.dma.buffer import DmaBuffer
from pciauth.emu.iommu import FAULT_REASONS, EmulatedIommu, IommuFault
from pciauth.errors import IommuError, RefusedError, UsageError

GiB = 1 << 30
X_1G_UNITS = 512


@pytest.fixture
def io():
    iommu = EmulatedIommu(threshold=X_1G_UNITS)
    yield iommu
    iommu.close()


def buf(n=8192, private=None, fill=0):
    b = DmaBuffer(n, private=private)
    b.view[:] = bytes([fill]) * b.length
    return b


def test_copy_between_mappings(io):
    a, b = buf(fill=7, private=True), buf(private=True)
    ia, ib = io.map(a, 0x10000), io.map(b, 0x20000)
    assert io.copy(ia + 100, ib + 200, 1000) == 1000
    assert bytes(b.view[200:1200]) == b"\x07" * 1000
    assert bytes(b.view[:200]) == bytes(200) and bytes(b.view[1200:]) == bytes(b.length - 1200)
    assert io.bytes_transferred == 1000 and io.fault_count == 0


def test_copy_across_adjacent_mappings(io):
    a1, a2 = buf(4096, fill=1), buf(4096, fill=2)
    d = buf(8192)
    io.map(a1, 0x10000)
    io.map(a2, 0x11000)
    io.map(d, 0x40000)
    io.copy(0x10800, 0x40000, 4096)
    assert bytes(d.view[:4096]) == b"\x01" * 2048 + b"\x02" * 2048


def test_overlapping_copy_in_one_buffer_behaves_like_memmove(io):
    a = buf(8192)
    a.view[:8] = b"abcdefgh"
    io.map(a, 0x10000)
    io.copy(0x10000, 0x10002, 6)
    assert bytes(a.view[:8]) == b"ababcdef"


FAULT_CASES = [
    # (name, src mapping kwargs, dst mapping kwargs, src iova, dst iova, faulting address, direction)
    ("unmapped", {}, {}, 0x10000, 0x90000, 0x90000, "write"),
    ("unmapped", {}, {}, 0x90000, 0x20000, 0x90000, "read"),
    ("read-only", {}, {"writable": False}, 0x10000, 0x20000, 0x20000, "write"),
    ("write-only", {"readable": False}, {}, 0x10000, 0x20000, 0x10000, "read"),
]


@pytest.mark.parametrize("reason, skw, dkw, src, dst, addr, direction", FAULT_CASES)
def test_permission_and_unmapped_faults_transfer_nothing(io, reason, skw, dkw, src, dst, addr, direction):
    a, b = buf(fill=0xAA), buf(fill=0x55)
    io.map(a, 0x10000, **skw)
    io.map(b, 0x20000, **dkw)
    with pytest.raises(IommuFault) as e:
        io.copy(src, dst, 4096)
    r = e.value.record
    assert (r.reason, r.address, r.direction, r.length) == (reason, addr, direction, 4096)
    assert r.code == FAULT_REASONS[reason]
    assert io.faults[-1] == r and io.fault_count == 1
    assert bytes(b.view) == b"\x55" * b.length and bytes(a.view) == b"\xaa" * a.length
    assert io.bytes_transferred == 0


def test_partially_unmapped_access_faults_at_the_first_missing_byte(io):
    a, b = buf(8192, fill=1), buf(8192)
    io.map(a, 0x10000)
    io.map(b, 0x20000)
    with pytest.raises(IommuFault) as e:
        io.copy(0x11000, 0x20000, 8192)  # the source runs off the end of its mapping
    assert e.value.record.address == 0x12000 and e.value.record.reason == "unmapped"
    assert bytes(b.view) == bytes(8192)


def test_t1_request_to_shared_memory_faults(io):
    src, shared = buf(private=True, fill=3), buf(private=False, fill=9)
    io.map(src, 0x10000)
    io.map(shared, 0x20000)  # below X: a T=1 request, but the memory is shared
    with pytest.raises(IommuFault) as e:
        io.copy(0x10000, 0x20000, 4096)
    assert e.value.record.reason == "t1-to-shared" and e.value.record.direction == "write"
    assert bytes(shared.view) == b"\x09" * shared.length
    with pytest.raises(IommuFault) as e:
        io.copy(0x20000, 0x10000, 4096)  # reading shared memory with a T=1 request faults too
    assert e.value.record.reason == "t1-to-shared" and e.value.record.direction == "read"
    assert bytes(src.view) == b"\x03" * src.length


def test_t0_request_to_private_memory_faults(io):
    priv, shared = buf(private=True, fill=4), buf(private=False, fill=5)
    io.map(shared, GiB)
    io.map(priv, GiB + 0x10000)  # at or above X: a T=0 request, but the memory is private
    with pytest.raises(IommuFault) as e:
        io.copy(GiB, GiB + 0x10000, 4096)
    assert e.value.record.reason == "t0-to-private" and e.value.record.address == GiB + 0x10000
    assert bytes(priv.view) == b"\x04" * priv.length


def test_mapping_straddling_x_faults_only_past_x(io):
    priv = buf(8192, private=True, fill=1)
    dst = buf(8192, private=True)
    io.map(priv, GiB - 4096)  # its second page lies at or above X
    io.map(dst, 0x10000)
    io.copy(GiB - 4096, 0x10000, 4096)  # the private half is fine
    with pytest.raises(IommuFault) as e:
        io.copy(GiB - 4096, 0x10000, 8192)
    assert e.value.record.reason == "t0-to-private" and e.value.record.address == GiB
    assert bytes(dst.view[4096:]) == bytes(4096)


def test_shared_and_private_in_their_windows_work(io):
    p1, p2 = buf(private=True, fill=1), buf(private=True)
    s1, s2 = buf(private=False, fill=2), buf(private=False)
    io.map(p1, 0x10000)
    io.map(p2, 0x20000)
    io.map(s1, GiB)
    io.map(s2, GiB + 0x10000)
    io.copy(0x10000, 0x20000, 8192)
    io.copy(GiB, GiB + 0x10000, 8192)
    assert bytes(p2.view) == b"\x01" * 8192 and bytes(s2.view) == b"\x02" * 8192


def test_all_ones_threshold_makes_shared_memory_fault_everywhere():
    io = EmulatedIommu()
    s, d = buf(private=False, fill=1), buf(private=True)
    io.map(s, 1 << 40)
    io.map(d, 0x10000)
    with pytest.raises(IommuFault, match="t1-to-shared"):
        io.copy(1 << 40, 0x10000, 16)
    io.close()


def test_unattributed_memory_is_not_checked(io):
    a, b = buf(fill=6), buf()
    io.map(a, GiB + 0x1000)
    io.map(b, 0x1000)
    io.copy(GiB + 0x1000, 0x1000, 4096)
    assert bytes(b.view[:4096]) == b"\x06" * 4096


def test_threshold_change_with_live_mappings_is_refused(io):
    a = buf()
    io.map(a, 0x10000)
    with pytest.raises(RefusedError, match="1 live mapping"):
        io.set_threshold(1024)
    io.set_threshold(X_1G_UNITS)  # unchanged is fine
    io.unmap(0x10000, a.length)
    io.set_threshold(1024)
    assert io.is_private_iova(2 * GiB - 1) and not io.is_private_iova(2 * GiB)
    with pytest.raises(IommuError):
        io.set_threshold(1 << 31)


def test_map_checks(io):
    a = buf()
    io.map(a, 0x10000)
    with pytest.raises(IommuError, match="overlaps"):
        io.map(buf(), 0x11000)
    with pytest.raises(IommuError, match="outside"):
        io.map(buf(), 0xFEE00000)
    with pytest.raises(UsageError):
        io.map(buf(), 0x10001)
    with pytest.raises(UsageError):
        io.unmap(0x10000, 4096)  # not the mapping's length
    assert io.unmap(0x10000, a.length) == a.length
    assert io.mappings == []


def test_kernel_chosen_iova_stays_in_allowed_ranges(io):
    io.allow_iovas([(0x40000000, 0x4000FFFF)])
    got = [io.map(buf(4096)) for _ in range(4)]
    assert got == [0x40000000, 0x40001000, 0x40002000, 0x40003000]
    io.unmap(0x40001000, 4096)
    assert io.map(buf(4096)) == 0x40001000
    with pytest.raises(IommuError, match="no free IOVA"):
        io.map(buf(1 << 20))


def test_close_releases_every_mapping():
    io = EmulatedIommu()
    for i in range(5):
        io.map(buf(4096), 0x10000 * (i + 1))
    io.close()
    assert io.mappings == [] and io.closed
    with pytest.raises(IommuError, match="closed"):
        io.map(buf(4096), 0x10000)


def test_freed_buffer_under_a_mapping_faults_instead_of_crashing(io):
    a = DmaBuffer(4096)
    io.map(a, 0x10000)
    a.close()
    with pytest.raises(IommuFault, match="unmapped"):
        io.dma_read(0x10000, 16)


def test_fault_log_is_bounded():
    io = EmulatedIommu(fault_log_size=3)
    for i in range(10):
        with pytest.raises(IommuFault):
            io.dma_read(0x1000 * i, 1)
    assert len(io.faults) == 3 and io.fault_count == 10
    io.clear_faults()
    assert not io.faults
