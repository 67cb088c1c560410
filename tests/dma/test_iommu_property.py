"""Property tests: the emulated IOMMU against a byte-level reference model, and register fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.dma.buffer import DmaBuffer
from pciauth.emu import dma_engine as reg
from pciauth.emu.dma_engine import DmaEngine
from pciauth.emu.iommu import EmulatedIommu, IommuFault
from pciauth.errors import DmaError

PAGE = 4096
X_PAGES = 8  # threshold X at page 8 for the model (the IOMMU's X is in 2 MiB units: scaled below)
UNIT = 2 << 20

mapping = st.tuples(
    st.integers(0, 15),  # first page (scaled so that page 8 is X)
    st.integers(1, 3),  # pages
    st.booleans(),  # readable
    st.booleans(),  # writable
    st.sampled_from([True, False, None]),  # memory attribute
)


def page_iova(p: int) -> int:
    """Pages 0-7 lie below X = 1 unit (2 MiB), pages 8-15 at or above it."""
    return (p - X_PAGES) * PAGE + UNIT if p >= X_PAGES else p * PAGE + UNIT - X_PAGES * PAGE


def expected_fault(pages: dict, first: int, n: int, direction: str):
    """The reference: first faulting byte's reason, or None."""
    addr = first
    while addr < first + n:  # every page has one set of properties: check each page touched
        p = next((k for k, v in pages.items() if v[0] <= addr < v[0] + PAGE), None)
        if p is None:
            return "unmapped"
        _start, readable, writable, attr = pages[p]
        if direction == "write" and not writable:
            return "read-only"
        if direction == "read" and not readable:
            return "write-only"
        private_req = addr < UNIT
        if attr is not None and private_req and not attr:
            return "t1-to-shared"
        if attr is not None and not private_req and attr:
            return "t0-to-private"
        addr = (addr // PAGE + 1) * PAGE
    return None


@settings(max_examples=200, deadline=None)
@given(maps=st.lists(mapping, max_size=6), src_page=st.integers(0, 15), dst_page=st.integers(0, 15),
       src_off=st.integers(0, PAGE - 1), dst_off=st.integers(0, PAGE - 1), n=st.integers(1, 2 * PAGE))
def test_copy_matches_the_reference_model(maps, src_page, dst_page, src_off, dst_off, n):
    io = EmulatedIommu(threshold=1)
    pages: dict[int, tuple] = {}
    bufs = []
    try:
        for first, count, readable, writable, attr in maps:
            if any(p in pages for p in range(first, first + count)) or first + count > 16:
                continue
            if first < X_PAGES < first + count or not (readable or writable):
                continue  # one half each, so page_iova stays contiguous; some permission
            b = DmaBuffer(count * PAGE, private=attr)
            b.view[:] = bytes([first + 1]) * b.length
            io.map(b, page_iova(first), readable=readable, writable=writable)
            bufs.append(b)
            for i in range(count):
                pages[first + i] = (page_iova(first + i), readable, writable, attr)
        src, dst = page_iova(src_page) + src_off, page_iova(dst_page) + dst_off
        before = [bytes(b.view) for b in bufs]
        want = expected_fault(pages, src, n, "read") or expected_fault(pages, dst, n, "write")
        try:
            io.copy(src, dst, n)
            got = None
        except IommuFault as f:
            got = f.record.reason
        assert got == want
        if got is not None:
            assert [bytes(b.view) for b in bufs] == before  # a fault transfers nothing
            assert io.fault_count == 1
    finally:
        io.close()
        for b in bufs:
            b.close()


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(-8, 0x1010), st.sampled_from([1, 2, 3, 4, 8, 16]),
                              st.integers(0, (1 << 64) - 1), st.booleans()), max_size=60))
def test_register_fuzz_only_raises_dma_errors_and_recovers(ops):
    io = EmulatedIommu()
    eng = DmaEngine(io)
    buf = DmaBuffer(PAGE)
    io.map(buf, 0x10000)
    for off, width, value, is_write in ops:
        try:
            if is_write:
                eng.write(off, width, value)
            else:
                eng.read(off, width)
        except DmaError:
            pass
    assert eng.read32(reg.REG_ID) == reg.ENGINE_ID  # read-only identity survives anything
    eng.write32(reg.REG_CTRL, reg.CTRL_RESET)
    b = reg.desc_offset(0)
    eng.write64(b, 0x10000)
    eng.write64(b + 8, 0x10800)
    eng.write32(b + 0x10, 16)
    eng.write32(b + 0x14, reg.FLAG_VALID)
    eng.write32(reg.REG_COUNT, 1)
    eng.write32(reg.REG_CTRL, reg.CTRL_START)
    assert eng.read32(reg.REG_STATUS) == reg.STATUS_DONE
    io.close()
    buf.close()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_threshold_parse_only_raises_usage_errors(text):
    from pciauth.dma.iova import Threshold
    from pciauth.errors import UsageError

    try:
        t = Threshold.parse(text)
    except UsageError:
        return
    assert 0 <= t.units <= (1 << 31) - 1


@settings(max_examples=150, deadline=None)
@given(cqe=st.binary(min_size=16, max_size=16), identify=st.binary(min_size=0, max_size=4096))
def test_nvme_driver_survives_any_completion_and_identify_bytes(cqe, identify):
    """Whatever the controller writes into the completion queue and the Identify buffer, the
    driver ends in a pciauth error or a result whose checks say what is wrong."""
    import struct

    from dma_models import NvmeModel

    from pciauth.dma.drivers import DriverContext
    from pciauth.dma.drivers.nvme import NvmeDriver
    from pciauth.dma.iova import Threshold
    from pciauth.dma.session import DmaSession
    from pciauth.errors import PciauthError

    io = EmulatedIommu()
    with DmaSession(io, threshold=Threshold.parse("1G")) as session:
        model = NvmeModel(io, identify=identify.ljust(4096, b"\x00"))
        real = model._doorbell

        def forged(tail):
            real(tail)
            # overwrite the posted completion with arbitrary bytes, keeping its phase bit set
            # half of the time so the driver does look at it
            raw = bytearray(cqe)
            if raw[0] & 1:
                struct.pack_into("<H", raw, 14, struct.unpack_from("<H", raw, 14)[0] | 1)
            io.dma_write(model.acq, bytes(raw))

        model._doorbell = forged
        drv = NvmeDriver(DriverContext("nvme", model, None, session, 0x1B36, 0x10, 0x010802))
        buf = session.alloc(4096)
        try:
            drv.start()
            w = drv.device_write(buf.iova, timeout=0.01)
            assert set(w.checks) >= {"identify_parses", "serial_present"}
        except PciauthError:
            pass
        finally:
            drv.close()
    io.close()
