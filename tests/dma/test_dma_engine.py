"""The emulated DMA engine's register block and its driver."""

from __future__ import annotations

import pytest

from pciauth.dma.drivers import DmaFault
from pciauth.emu import dma_engine as reg
from pciauth.errors import DmaError

GiB = 1 << 30


def test_identity_and_caps(engine):
    assert engine.read32(reg.REG_ID) == reg.ENGINE_ID
    assert engine.read32(reg.REG_CAPS) & 0xFF == reg.SLOTS
    assert engine.read(reg.REG_CAPS + 1, 1) == reg.VERSION


def test_read_only_registers_ignore_writes(engine):
    for off in (reg.REG_ID, reg.REG_CAPS, reg.REG_STATUS, reg.REG_COMPLETED, reg.REG_FAULT_ADDR):
        before = engine.read32(off)
        engine.write32(off, 0xFFFFFFFF)
        assert engine.read32(off) == before


@pytest.mark.parametrize("off, width", [(0x1001, 1), (0x1000, 4), (0x2, 4), (0x4, 8), (-4, 4), (0, 3)])
def test_bad_accesses_raise(engine, off, width):
    with pytest.raises(DmaError, match="emulated BAR0"):
        engine.read(off, width)
    with pytest.raises(DmaError, match="emulated BAR0"):
        engine.write(off, width, 0)


def test_descriptor_slots_read_back(engine):
    base = reg.desc_offset(reg.SLOTS - 1)
    engine.write64(base, 0x1122334455667788)
    engine.write(base + 8, 2, 0xBEEF)
    assert engine.read64(base) == 0x1122334455667788
    assert engine.read(base + 8, 2) == 0xBEEF


def _desc(engine, slot, src, dst, length, flags=reg.FLAG_VALID):
    b = reg.desc_offset(slot)
    engine.write64(b + reg.DESC_SRC, src)
    engine.write64(b + reg.DESC_DST, dst)
    engine.write32(b + reg.DESC_LEN, length)
    engine.write32(b + reg.DESC_FLAGS, flags)


def test_many_descriptors_run_in_order(engine, session):
    src = session.alloc(64 * 1024)
    dst = session.alloc(64 * 1024)
    for i in range(16):
        src.view[i * 4096 : (i + 1) * 4096] = bytes([i]) * 4096
    for i in range(16):  # reversed page order
        _desc(engine, i, src.iova + i * 4096, dst.iova + (15 - i) * 4096, 4096)
    engine.write32(reg.REG_COUNT, 16)
    engine.write32(reg.REG_CTRL, reg.CTRL_START)
    assert engine.read32(reg.REG_STATUS) == reg.STATUS_DONE
    assert engine.read32(reg.REG_COMPLETED) == 16 and engine.read64(reg.REG_BYTES) == 64 * 1024
    for i in range(16):
        assert bytes(dst.view[(15 - i) * 4096 : (16 - i) * 4096]) == bytes([i]) * 4096


def test_fault_stops_the_run_and_latches_registers(engine, session, iommu):
    src = session.alloc(4096)
    dst = session.alloc(4096)
    src.view[:4] = b"abcd"
    _desc(engine, 0, src.iova, dst.iova, 4)
    _desc(engine, 1, src.iova, 0x7000_0000, 4)  # unmapped destination
    _desc(engine, 2, src.iova, dst.iova + 8, 4)
    engine.write32(reg.REG_COUNT, 3)
    engine.write32(reg.REG_CTRL, reg.CTRL_START)
    status = engine.read32(reg.REG_STATUS)
    assert status == reg.STATUS_DONE | reg.STATUS_FAULT
    assert engine.read32(reg.REG_COMPLETED) == 1
    assert engine.read64(reg.REG_FAULT_ADDR) == 0x7000_0000
    info = engine.read32(reg.REG_FAULT_INFO)
    assert info & 1 == 1 and info >> 8 & 0xFF == 1 and info >> 16 == 1
    assert engine.read32(reg.REG_FAULT_COUNT) == 1
    assert bytes(dst.view[:4]) == b"abcd" and bytes(dst.view[8:12]) == bytes(4)  # descriptor 2 never ran
    engine.write32(reg.REG_CTRL, reg.CTRL_CLEAR_FAULT)
    assert engine.read32(reg.REG_STATUS) == reg.STATUS_DONE and engine.read64(reg.REG_FAULT_ADDR) == 0
    assert engine.read32(reg.REG_FAULT_COUNT) == 1  # counts until RESET
    engine.write32(reg.REG_CTRL, reg.CTRL_RESET)
    assert engine.read32(reg.REG_FAULT_COUNT) == 0 and engine.read32(reg.REG_ID) == reg.ENGINE_ID
    assert engine.read64(reg.desc_offset(0)) == 0


@pytest.mark.parametrize(
    "count, flags, length, code",
    [(0, reg.FLAG_VALID, 4, reg.ERR_BAD_COUNT), (reg.SLOTS + 1, reg.FLAG_VALID, 4, reg.ERR_BAD_COUNT),
     (1, 0, 4, reg.ERR_NOT_VALID), (1, reg.FLAG_VALID, 0, reg.ERR_ZERO_LENGTH)],
)
def test_bad_descriptors_set_error(engine, session, count, flags, length, code):
    m = session.alloc(4096)
    _desc(engine, 0, m.iova, m.iova, length, flags)
    engine.write32(reg.REG_COUNT, count)
    engine.write32(reg.REG_CTRL, reg.CTRL_START)
    assert engine.read32(reg.REG_STATUS) & reg.STATUS_ERROR
    assert engine.read32(reg.REG_ERROR_INFO) & 0xFF == code


# ---- the driver ----

def test_driver_copy_and_big_copy_split_over_descriptors(emu_driver, session, monkeypatch):
    from pciauth.dma.drivers import emu as emu_drv

    monkeypatch.setattr(emu_drv, "MAX_DESC_LEN", 4096)  # force > 64 descriptors
    src = session.alloc(300 * 4096)
    dst = session.alloc(300 * 4096)
    src.view[:] = bytes(range(256)) * (src.length // 256)
    emu_driver.copy(src.iova, dst.iova, src.length)
    assert bytes(dst.view) == bytes(src.view)
    assert emu_driver.bar.starts >= 5


@pytest.mark.parametrize(
    "case, reason, direction",
    [("unmapped", "unmapped", "write"), ("readonly", "read-only", "write"),
     ("writeonly", "write-only", "read"), ("t1-shared", "t1-to-shared", "write"),
     ("t0-private", "t0-to-private", "write")],
)
def test_driver_reports_every_fault_case(emu_driver, session, iommu, case, reason, direction):
    from pciauth.dma.buffer import DmaBuffer

    src = session.alloc(4096, readable=case != "writeonly")
    dst_iova = 0x7000_0000
    extra = None
    if case == "readonly":
        dst_iova = session.alloc(4096, writable=False).iova
    elif case == "t1-shared":
        extra = DmaBuffer(4096, private=False)
        dst_iova = 0x3000_0000
        iommu.map(extra, dst_iova)
    elif case == "t0-private":
        extra = DmaBuffer(4096, private=True)
        dst_iova = 2 * GiB
        iommu.map(extra, dst_iova)
    elif case == "writeonly":
        dst_iova = session.alloc(4096).iova
    with pytest.raises(DmaFault) as e:
        emu_driver.copy(src.iova, dst_iova, 4096)
    f = e.value
    assert (f.reason, f.direction) == (reason, direction)
    assert f.address == (src.iova if direction == "read" else dst_iova)
    assert f.exit_code == 5 and "nothing was transferred" in str(f)
    if extra is not None:
        assert bytes(extra.view) == bytes(4096)
        iommu.unmap(dst_iova, 4096)
        extra.close()
    # the engine works again after a fault
    ok = session.alloc(4096)
    emu_driver.copy(src.iova if case != "writeonly" else ok.iova, ok.iova, 16)


def test_driver_refuses_a_device_that_is_not_the_engine(session):
    from pciauth.dma.drivers import DriverContext
    from pciauth.dma.drivers.emu import EmuDmaDriver

    class Bar:
        def read32(self, off):
            return 0xFFFFFFFF

    with pytest.raises(DmaError, match="not the emulated DMA engine"):
        EmuDmaDriver(DriverContext("x", Bar(), session=session)).start()


def test_driver_times_out_when_done_never_comes(emu_driver, engine, monkeypatch):
    from pciauth.dma.drivers import DmaTimeout

    monkeypatch.setattr(engine, "_run", lambda: None)  # START does nothing: DONE never sets
    with pytest.raises(DmaTimeout, match="timed out after 0.05 s"):
        emu_driver.copy(0x1000, 0x2000, 16, timeout=0.05)


def test_driver_waits_on_the_context_clock(engine, session, fake_clock, monkeypatch):
    """The default 5 s timeout, on a fake clock: reached at once, after 5 simulated seconds."""
    import time

    from pciauth.dma.drivers import DmaTimeout, DriverContext
    from pciauth.dma.drivers.emu import EmuDmaDriver

    monkeypatch.setattr(engine, "_run", lambda: None)
    drv = EmuDmaDriver(DriverContext("emu:test", engine, None, session, emulated=True, **fake_clock.seam()))
    t0 = time.monotonic()
    with drv, pytest.raises(DmaTimeout, match="timed out after 5 s waiting for the emulated DMA engine"):
        drv.copy(0x1000, 0x2000, 16)
    assert 5.0 <= fake_clock.now < 5.01
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("slots", [0, 121, 255])
def test_driver_checks_the_slot_count_against_the_bar(session, engine, slots):
    from pciauth.dma.drivers import DriverContext
    from pciauth.dma.drivers.emu import EmuDmaDriver

    engine._put(reg.REG_CAPS, 4, slots | reg.VERSION << 8)
    engine._reset = lambda: None  # keep the forged CAPS
    with pytest.raises(DmaError, match=f"reports {slots} descriptor slots"):
        EmuDmaDriver(DriverContext("x", engine, session=session)).start()
