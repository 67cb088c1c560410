"""The emulated config space looks and behaves like a real function's."""

from __future__ import annotations

import pytest

from pciauth.doe.mailbox import CTRL_ABORT, CTRL_GO, CTRL_INT_EN, STATUS_BUSY, STATUS_ERROR, STATUS_READY
from pciauth.emu import PROFILES, EmulatedDevice
from pciauth.emu.doe import EmulatedDoe
from pciauth.errors import NotFoundError, UsageError
from pciauth.pci.capabilities import read_serial_number, walk_capabilities, walk_extended_capabilities


@pytest.mark.parametrize("index", sorted(PROFILES))
def test_header_ids_and_capabilities(index):
    dev = EmulatedDevice(index)
    cfg, p = dev.config, dev.profile
    assert cfg.read16(0) == p.vendor and cfg.read16(2) == p.device
    assert cfg.read8(8) == p.revision and cfg.read32(8) >> 8 == p.class_code
    assert cfg.read16(0x2C) == p.subsystem_vendor and cfg.read16(0x2E) == p.subsystem_device
    assert cfg.read8(0x0E) == 0
    assert [c.id for c in walk_capabilities(cfg)] == [0x01, 0x05, 0x10]
    ext = walk_extended_capabilities(cfg)
    assert not ext.warnings
    assert [c.offset for c in ext if c.id == 0x2E] == sorted(dev.mailboxes)
    assert p.doe_offset in dev.mailboxes
    assert read_serial_number(cfg) == p.serial
    ident = dev.identity
    assert (ident.vendor, ident.device, ident.serial) == (p.vendor, p.device, p.serial)


def test_read_only_bits_ignore_writes():
    cfg = EmulatedDevice().config
    before = cfg.read_bytes(0, 0x100)
    for off in (0x00, 0x08, 0x2C, 0x34, 0x70):
        cfg.write32(off, 0xFFFFFFFF)
    after = cfg.read_bytes(0, 0x100)
    for off in (0x00, 0x08, 0x2C, 0x34, 0x70):
        assert after[off : off + 4] == before[off : off + 4]


def test_command_register_rw_bits_and_status_rw1c():
    cfg = EmulatedDevice().config
    cfg.write16(0x04, 0xFFFF)
    assert cfg.read16(0x04) == 0x0407
    cfg.data[0x07] |= 0x80  # the device logs a parity error (bit 15)
    assert cfg.read16(0x06) & 0x8000
    cfg.write16(0x06, 0x0010)  # writing 0 to the error bit leaves it; cap-list bit is RO
    assert cfg.read16(0x06) == 0x8010
    cfg.write16(0x06, 0x8000)  # write 1 to clear
    assert cfg.read16(0x06) == 0x0010


def test_bar_sizing():
    cfg = EmulatedDevice().config
    cfg.write32(0x10, 0xFFFFFFFF)
    low = cfg.read32(0x10)
    assert low & 0xF == 0xC  # 64-bit prefetchable
    assert (~(low & ~0xF) & 0xFFFFFFFF) + 1 == 1 << 20


def test_doe_offset_knob_and_overlap():
    dev = EmulatedDevice(0, doe_offset=0x300)
    assert 0x300 in dev.mailboxes
    assert [c.id for c in walk_extended_capabilities(dev.config)][0] == 0x03  # DSN at 0x100
    with pytest.raises(UsageError, match="overlaps"):
        EmulatedDevice(1, doe_offset=0x200)
    with pytest.raises(UsageError):
        EmulatedDevice(0, doe_offset=0xFF8)
    with pytest.raises(NotFoundError, match=r"no emulated device emu:99 \(emu:0\.\.emu:2\)"):
        EmulatedDevice(99)
    with pytest.raises(UsageError, match="unknown emulated device knob"):
        EmulatedDevice(0, colour="red")


def _regs(dev):
    off = dev.profile.doe_offset
    return dev.config, off, dev.mailboxes[off]


def test_doe_registers_like_hardware():
    dev = EmulatedDevice(0, cma_handler=lambda p, s: p)
    cfg, off, hook = _regs(dev)
    assert cfg.read32(off) & 0xFFFF == 0x2E
    cfg.write32(off, 0)  # header is read only
    assert cfg.read32(off) & 0xFFFF == 0x2E
    cfg.write32(off + 8, CTRL_INT_EN)
    assert cfg.read32(off + 8) == CTRL_INT_EN  # ABORT and GO read as 0
    # one object: 1,1 length 3
    for d in (0x00010001, 3, 0xDEADBEEF):
        cfg.write32(off + 0x10, d)
    cfg.write32(off + 8, CTRL_GO)
    assert cfg.read32(off + 0x0C) & STATUS_BUSY  # busy while processing
    status = cfg.read32(off + 0x0C)
    assert status & STATUS_READY and not status & STATUS_BUSY
    assert cfg.read32(off + 0x14) == 0x00010001
    assert cfg.read32(off + 0x14) == 0x00010001  # reading does not pop
    cfg.write32(off + 0x14, 0)
    assert cfg.read32(off + 0x14) == 3
    cfg.write32(off + 0x14, 0)
    assert cfg.read32(off + 0x14) == 0xDEADBEEF
    cfg.write32(off + 0x14, 0)
    assert not cfg.read32(off + 0x0C) & STATUS_READY
    assert cfg.read32(off + 0x14) == 0  # nothing left


def test_doe_length_mismatch_sets_error_and_abort_clears_it():
    dev = EmulatedDevice(0, cma_handler=lambda p, s: p)
    cfg, off, _ = _regs(dev)
    for d in (0x00010001, 5, 1):  # says 5 dwords, 3 written
        cfg.write32(off + 0x10, d)
    cfg.write32(off + 8, CTRL_GO)
    assert cfg.read32(off + 0x0C) & STATUS_ERROR
    cfg.write32(off + 0x10, 1)  # still in error
    cfg.write32(off + 8, CTRL_ABORT)
    assert cfg.read32(off + 0x0C) == 0


def test_doe_write_while_busy_sets_error():
    dev = EmulatedDevice(0, cma_handler=lambda p, s: p, busy_reads=5)
    cfg, off, _ = _regs(dev)
    for d in (0x00010001, 2):
        cfg.write32(off + 0x10, d)
    cfg.write32(off + 8, CTRL_GO)
    cfg.write32(off + 0x10, 7)
    assert cfg.read32(off + 0x0C) & STATUS_ERROR


def test_partial_write_to_data_mailbox_sets_error():
    dev = EmulatedDevice(0)
    cfg, off, _ = _regs(dev)
    cfg.write16(off + 0x10, 1)
    assert cfg.read32(off + 0x0C) & STATUS_ERROR


def test_handler_failure_sets_error():
    def broken(p, s):
        raise RuntimeError("firmware crash")

    dev = EmulatedDevice(0, cma_handler=broken)
    cfg, off, _ = _regs(dev)
    for d in (0x00010001, 2):
        cfg.write32(off + 0x10, d)
    cfg.write32(off + 8, CTRL_GO)
    assert cfg.read32(off + 0x0C) & STATUS_ERROR


def test_snapshot_has_no_side_effects():
    dev = EmulatedDevice(0)
    cfg, off, hook = _regs(dev)
    snap = cfg.read_bytes()
    assert len(snap) == 4096 and snap[off] == 0x2E
    assert cfg.stats.total == 0


def test_cdat_mailbox_walks_entries():
    from pciauth.doe import open_mailboxes

    dev = EmulatedDevice(1)
    cdat = open_mailboxes(dev.config)[1]
    handle, entries = 0, []
    while handle != 0xFFFF:
        out = cdat.exchange_object(0x1E98, 2, (handle << 16).to_bytes(4, "little"))
        handle = int.from_bytes(out[:4], "little") >> 16
        entries.append(out[4:])
    assert len(entries) == 3
    assert int.from_bytes(entries[0][:4], "little") == 16 + 48


def test_dma_parts_when_present():
    dev = EmulatedDevice(0)
    try:
        import pciauth.emu.dma_engine
        import pciauth.emu.iommu  # noqa: F401
    except ModuleNotFoundError:
        assert dev.bar0 is None and dev.iommu is None
    else:
        assert dev.bar0 is not None and dev.iommu is not None
    assert isinstance(dev.mailboxes[0x100], EmulatedDoe)


@pytest.mark.parametrize("knobs", [
    {"latency": -1.0}, {"busy_reads": -1}, {"algorithm": "rot13"}, {"doe_version": 16},
    {"vendor": 0xFFFF}, {"device": 0x10000}, {"doe_version": 0},
])
def test_out_of_range_knobs_are_usage_errors(knobs):
    with pytest.raises(UsageError):
        EmulatedDevice(0, **knobs)
