"""The emulated device's DMA engine: a BAR0 register block that copies between IOVAs.

Software writes descriptors (source IOVA, destination IOVA, length, flags) into slots, sets
COUNT and writes START to CTRL. The engine runs the descriptors in order through the
:class:`~pciauth.emu.iommu.EmulatedIommu`; the first one that faults stops the run (it moved no
byte) and latches FAULT_ADDR/FAULT_INFO. The full register map is in ``docs/dma.md``:

======  ===========  ===  ====================================================================
offset  name         acc  meaning
======  ===========  ===  ====================================================================
0x000   ID           RO   0x70610001 (engine id and version)
0x004   CAPS         RO   [7:0] descriptor slots, [15:8] version
0x008   CTRL         WO   bit 0 START, bit 1 RESET (registers and descriptors), bit 2 CLEAR_FAULT
0x00c   STATUS       RO   bit 0 BUSY, bit 1 DONE, bit 2 FAULT, bit 3 ERROR
0x010   COUNT        RW   descriptors to run, from slot 0 (1..slots)
0x014   COMPLETED    RO   descriptors completed by the last START
0x018   BYTES        RO   u64, bytes copied by the last START
0x020   FAULT_ADDR   RO   u64, IOVA of the fault
0x028   FAULT_INFO   RO   [0] direction (0 read, 1 write), [15:8] reason, [31:16] descriptor
0x02c   FAULT_COUNT  RO   faults since RESET
0x030   ERROR_INFO   RO   [7:0] error code, [31:16] descriptor
0x100   DESC[i]      RW   0x20 bytes each: SRC u64 +0, DST u64 +8, LEN u32 +0x10, FLAGS u32 +0x14
======  ===========  ===  ====================================================================

Accesses are 1, 2, 4 or 8 bytes wide and naturally aligned; anything else raises
:class:`~pciauth.errors.DmaError` (a real BAR would master-abort).
"""

from __future__ import annotations

import struct

from pciauth.emu.iommu import IommuFault
from pciauth.errors import DmaError

ENGINE_ID = 0x70610001
VERSION = 1
SLOTS = 64
BAR_SIZE = 0x1000

REG_ID = 0x000
REG_CAPS = 0x004
REG_CTRL = 0x008
REG_STATUS = 0x00C
REG_COUNT = 0x010
REG_COMPLETED = 0x014
REG_BYTES = 0x018
REG_FAULT_ADDR = 0x020
REG_FAULT_INFO = 0x028
REG_FAULT_COUNT = 0x02C
REG_ERROR_INFO = 0x030
DESC_BASE = 0x100
DESC_SIZE = 0x20
DESC_SRC, DESC_DST, DESC_LEN, DESC_FLAGS = 0x00, 0x08, 0x10, 0x14

CTRL_START = 1 << 0
CTRL_RESET = 1 << 1
CTRL_CLEAR_FAULT = 1 << 2

STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_FAULT = 1 << 2
STATUS_ERROR = 1 << 3

FLAG_VALID = 1 << 0

#: ERROR_INFO codes.
ERR_BAD_COUNT = 1
ERR_ZERO_LENGTH = 2
ERR_NOT_VALID = 3
ERROR_NAMES = {ERR_BAD_COUNT: "bad descriptor count", ERR_ZERO_LENGTH: "zero length",
               ERR_NOT_VALID: "descriptor not marked valid"}

#: Registers software may write (besides CTRL, which acts, and the descriptor slots).
_WRITABLE = {REG_COUNT: 4}
_FMT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
_STRUCTS = {w: struct.Struct(f) for w, f in _FMT.items()}
_DESC = struct.Struct("<QQII")


def desc_offset(slot: int) -> int:
    return DESC_BASE + slot * DESC_SIZE


_DESC_END = DESC_BASE + SLOTS * DESC_SIZE


class DmaEngine:
    """BAR0 of the emulated device. ``iommu`` is an :class:`~pciauth.emu.iommu.EmulatedIommu`."""

    size = BAR_SIZE
    slots = SLOTS

    def __init__(self, iommu) -> None:
        self.iommu = iommu
        self._regs = bytearray(BAR_SIZE)
        self.starts = 0
        self._reset()

    # ---- register access ----
    def _check(self, offset: int, width: int) -> struct.Struct:
        fmt = _STRUCTS.get(width)
        if fmt is None:
            raise DmaError(f"emulated BAR0: invalid access width {width}")
        if not isinstance(offset, int) or offset < 0 or offset + width > BAR_SIZE or offset % width:
            raise DmaError(f"emulated BAR0: bad {width * 8}-bit access at offset {offset!r}")
        return fmt

    def read(self, offset: int, width: int) -> int:
        return self._check(offset, width).unpack_from(self._regs, offset)[0]

    def write(self, offset: int, width: int, value: int) -> None:
        fmt = self._check(offset, width)
        value &= (1 << (8 * width)) - 1
        if offset >= DESC_BASE:
            if offset < _DESC_END:
                fmt.pack_into(self._regs, offset, value)
        elif offset == REG_CTRL and width == 4:
            self._control(value)
        elif _WRITABLE.get(offset) == width:
            fmt.pack_into(self._regs, offset, value)
        # other registers are read-only and ignore writes, like hardware

    def read32(self, offset: int) -> int:
        return self.read(offset, 4)

    def read64(self, offset: int) -> int:
        return self.read(offset, 8)

    def write32(self, offset: int, value: int) -> None:
        self.write(offset, 4, value)

    def write64(self, offset: int, value: int) -> None:
        self.write(offset, 8, value)

    # ---- behaviour ----
    def _put(self, offset: int, width: int, value: int) -> None:
        _STRUCTS[width].pack_into(self._regs, offset, value)

    def _reset(self) -> None:
        self._regs[:] = bytes(BAR_SIZE)
        self._put(REG_ID, 4, ENGINE_ID)
        self._put(REG_CAPS, 4, SLOTS | VERSION << 8)

    def _control(self, value: int) -> None:
        if value & CTRL_RESET:
            self._reset()
            return
        if value & CTRL_CLEAR_FAULT:
            status = self.read(REG_STATUS, 4) & ~(STATUS_FAULT | STATUS_ERROR)
            self._put(REG_STATUS, 4, status)
            self._put(REG_FAULT_ADDR, 8, 0)
            self._put(REG_FAULT_INFO, 4, 0)
            self._put(REG_ERROR_INFO, 4, 0)
        if value & CTRL_START:
            self._run()

    def _error(self, code: int, slot: int) -> None:
        self._put(REG_ERROR_INFO, 4, code | slot << 16)
        self._put(REG_STATUS, 4, STATUS_DONE | STATUS_ERROR)

    def _run(self) -> None:
        """Run descriptors 0..COUNT-1; stop at the first fault or bad descriptor."""
        self.starts += 1
        self._put(REG_STATUS, 4, STATUS_BUSY)
        self._put(REG_COMPLETED, 4, 0)
        self._put(REG_BYTES, 8, 0)
        count = self.read(REG_COUNT, 4)
        if not 1 <= count <= SLOTS:
            self._error(ERR_BAD_COUNT, 0)
            return
        total = 0
        for slot in range(count):
            base = desc_offset(slot)
            src, dst, length, flags = _DESC.unpack_from(self._regs, base)
            if not flags & FLAG_VALID:
                self._error(ERR_NOT_VALID, slot)
                break
            if length == 0:
                self._error(ERR_ZERO_LENGTH, slot)
                break
            try:
                self.iommu.copy(src, dst, length)
            except IommuFault as fault:
                r = fault.record
                info = (1 if r.direction == "write" else 0) | r.code << 8 | slot << 16
                self._put(REG_FAULT_ADDR, 8, r.address)
                self._put(REG_FAULT_INFO, 4, info)
                self._put(REG_FAULT_COUNT, 4, (self.read(REG_FAULT_COUNT, 4) + 1) & 0xFFFFFFFF)
                self._put(REG_STATUS, 4, STATUS_DONE | STATUS_FAULT)
                break
            total += length
            self._put(REG_COMPLETED, 4, slot + 1)
            self._put(REG_BYTES, 8, total)
        else:
            self._put(REG_STATUS, 4, STATUS_DONE)
