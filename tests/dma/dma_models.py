"""Register-level models of QEMU edu and an NVMe admin queue, for the driver unit tests.

Each model is a fake BAR (``read32/write32/read64/write64``) whose DMA goes through an
:class:`~pciauth.emu.iommu.EmulatedIommu` (the fake DMA memory), behaving as recorded from QEMU
(``hw/misc/edu.c``, ``hw/nvme/ctrl.c``) and the NVMe base specification. Every register access is
logged in ``.log`` as ``(op, offset, width, value)`` so tests can check the sequence.
"""

from __future__ import annotations

import struct

from pciauth.emu.iommu import IommuFault


class RecordingBar:
    def __init__(self) -> None:
        self.log: list[tuple[str, int, int, int]] = []

    def read32(self, off: int) -> int:
        v = self.read(off, 4)
        self.log.append(("r", off, 4, v))
        return v

    def read64(self, off: int) -> int:
        v = self.read(off, 8)
        self.log.append(("r", off, 8, v))
        return v

    def write32(self, off: int, value: int) -> None:
        self.log.append(("w", off, 4, value))
        self.write(off, 4, value)

    def write64(self, off: int, value: int) -> None:
        self.log.append(("w", off, 8, value))
        self.write(off, 8, value)

    def writes(self) -> list[tuple[int, int]]:
        return [(off, v) for op, off, _w, v in self.log if op == "w"]


class EduModel(RecordingBar):
    """QEMU edu (hw/misc/edu.c, read for this model): ID 0x010000ed, liveness (the complement of
    what was written), DMA through a 4 KiB buffer at 0x40000, addresses masked to 28 bits,
    DMA registers ignored while a DMA runs, a command write without bit 0 ignored.

    A started DMA completes after ``polls`` reads of the command register (QEMU: a 100 ms timer).
    A DMA that faults in the IOMMU transfers nothing and still clears the run bit (the guest sees
    a DMAR fault, the device does not know). ``stuck`` never completes.
    """

    DMA_START, DMA_SIZE = 0x40000, 4096

    def __init__(self, iommu, *, polls: int = 2, stuck: bool = False, dma_mask_bits: int = 28) -> None:
        super().__init__()
        self.iommu = iommu
        self.polls = polls
        self.stuck = stuck
        self.mask = (1 << dma_mask_bits) - 1
        self.buf = bytearray(self.DMA_SIZE)
        self.liveness = 0
        self.src = self.dst = self.cnt = self.cmd = 0
        self.pending = 0
        self.faults: list = []
        self.dmas = 0

    @staticmethod
    def _width_ok(off: int, width: int) -> None:
        # QEMU edu_mmio_read/write: below 0x80 only 4-byte accesses, from 0x80 on 4 or 8 bytes;
        # anything else is silently ignored (reads return all ones): a driver bug we flag.
        if width not in ((4,) if off < 0x80 else (4, 8)):
            raise AssertionError(f"edu: {width}-byte access at 0x{off:x} is ignored by QEMU")

    def read(self, off: int, width: int) -> int:
        self._width_ok(off, width)
        if off == 0x00:
            return 0x010000ED
        if off == 0x04:
            return ~self.liveness & 0xFFFFFFFF
        if off == 0x98:
            if self.cmd & 1 and not self.stuck:
                self.pending -= 1
                if self.pending <= 0:
                    self._run()
            return self.cmd
        return {0x80: self.src, 0x88: self.dst, 0x90: self.cnt}.get(off, 0)

    def write(self, off: int, width: int, value: int) -> None:
        self._width_ok(off, width)
        running = self.cmd & 1
        if off == 0x04:
            self.liveness = value
        elif off == 0x80 and not running:
            self.src = value
        elif off == 0x88 and not running:
            self.dst = value
        elif off == 0x90 and not running:
            self.cnt = value
        elif off == 0x98 and value & 1 and not running:
            self.cmd = value
            self.pending = self.polls

    def _check_range(self, addr: int) -> int:
        end = addr + self.cnt
        if not (addr >= self.DMA_START and end <= self.DMA_START + self.DMA_SIZE and end > addr):
            raise AssertionError(f"edu: DMA range 0x{addr:x}+0x{self.cnt:x} outside the device buffer "
                                 "(QEMU logs a guest error and runs past its buffer)")
        return addr - self.DMA_START

    def _run(self) -> None:
        self.dmas += 1
        try:
            if self.cmd & 2:  # device buffer -> RAM
                off = self._check_range(self.src)
                self.iommu.dma_write(self.dst & self.mask, bytes(self.buf[off : off + self.cnt]))
            else:  # RAM -> device buffer
                off = self._check_range(self.dst)
                self.buf[off : off + self.cnt] = self.iommu.dma_read(self.src & self.mask, self.cnt)
        except IommuFault as fault:
            self.faults.append(fault.record)
        self.cmd &= ~1


def identify_data(serial: str, vid: int = 0x1B36, model: str = "QEMU NVMe Ctrl", fw: str = "10.0.2") -> bytes:
    data = bytearray(4096)
    struct.pack_into("<HH", data, 0, vid, 0x1AF4)
    data[4:24] = serial.encode().ljust(20)
    data[24:64] = model.encode().ljust(40)
    data[64:72] = fw.encode().ljust(8)
    data[4095] = 0x5A  # a last byte the model sets, so a short DMA shows
    return bytes(data)


class NvmeModel(RecordingBar):
    """An NVMe controller's registers and admin queue.

    ``ready_polls``: CSTS reads before RDY follows CC.EN. Knobs: ``never_ready``, ``cfs`` (fatal
    status when enabling), ``status`` (status field to return for Identify), ``silent`` (never
    posts completions), ``identify`` (the 4 KiB structure to return), ``bad_cid``.
    """

    def __init__(self, iommu, *, serial: str = "PCIAUTH0001", dstrd: int = 0, mqes: int = 63, to: int = 2,
                 mpsmin: int = 0, ready_polls: int = 2, never_ready: bool = False, cfs: bool = False,
                 status: int = 0, silent: bool = False, identify: bytes | None = None,
                 bad_cid: bool = False, css_nvm: bool = True) -> None:
        super().__init__()
        self.iommu = iommu
        self.cap = mqes | to << 24 | dstrd << 32 | (1 if css_nvm else 0) << 37 | mpsmin << 48
        self.cc = self.csts = self.aqa = self.asq = self.acq = 0
        self.ready_polls = ready_polls
        self.polls_left = 0
        self.never_ready, self.cfs = never_ready, cfs
        self.status, self.silent, self.bad_cid = status, silent, bad_cid
        self.identify = identify if identify is not None else identify_data(serial)
        self.stride = 4 << dstrd
        self.sq_head = self.cq_tail = 0
        self.phase = 1
        self.cq_head_doorbell: list[int] = []
        self.commands: list[tuple[int, int, int]] = []

    def _q64(self, off: int, value: int, width: int, cur: int) -> int:
        if width == 8:
            return value
        return (cur & ~0xFFFFFFFF) | value if off % 8 == 0 else (cur & 0xFFFFFFFF) | value << 32

    def read(self, off: int, width: int) -> int:
        if off == 0x1C:
            self._tick()
            return self.csts
        wide = {0x00: self.cap, 0x28: self.asq, 0x30: self.acq}.get(off & ~7)
        if wide is None:
            return {0x08: 0x00010400, 0x14: self.cc, 0x24: self.aqa}.get(off, 0)
        return wide if width == 8 else (wide >> 32 if off % 8 else wide & 0xFFFFFFFF)

    def _tick(self) -> None:
        want = self.cc & 1
        if (self.csts & 1) == want:
            return
        self.polls_left -= 1
        if self.polls_left > 0:
            return
        if want and self.cfs:
            self.csts |= 2
            return
        if want and self.never_ready:
            return
        self.csts = (self.csts & ~1) | want
        if not want:
            self.sq_head = self.cq_tail = 0
            self.phase = 1

    def write(self, off: int, width: int, value: int) -> None:
        if off == 0x14:
            if (value ^ self.cc) & 1:
                self.polls_left = self.ready_polls
            self.cc = value
        elif off == 0x24:
            self.aqa = value
        elif off in (0x28, 0x2C):
            assert not self.cc & 1, "ASQ written while enabled"
            self.asq = self._q64(off, value, width, self.asq)
        elif off in (0x30, 0x34):
            assert not self.cc & 1, "ACQ written while enabled"
            self.acq = self._q64(off, value, width, self.acq)
        elif off == 0x1000:
            self._doorbell(value)
        elif off == 0x1000 + self.stride:
            self.cq_head_doorbell.append(value)

    def _doorbell(self, tail: int) -> None:
        assert self.csts & 1, "SQ doorbell rung while not ready"
        sq_size = (self.aqa & 0xFFF) + 1
        cq_size = ((self.aqa >> 16) & 0xFFF) + 1
        while self.sq_head != tail:
            entry = self.iommu.dma_read(self.asq + self.sq_head * 64, 64)
            cdw0, _nsid = struct.unpack_from("<II", entry, 0)
            prp1 = struct.unpack_from("<Q", entry, 24)[0]
            cdw10 = struct.unpack_from("<I", entry, 40)[0]
            opcode, cid = cdw0 & 0xFF, cdw0 >> 16
            self.commands.append((opcode, prp1, cdw10))
            self.sq_head = (self.sq_head + 1) % sq_size
            status = self.status
            if opcode == 0x06 and cdw10 & 0xFF == 1 and not status:
                self.iommu.dma_write(prp1, self.identify)
            elif opcode != 0x06:
                status = 0x01  # invalid opcode
            if self.silent:
                continue
            cqe = struct.pack("<IIHHHH", 0, 0, self.sq_head, 0, cid ^ (1 if self.bad_cid else 0),
                              (status << 1) | self.phase)
            self.iommu.dma_write(self.acq + self.cq_tail * 16, cqe)
            self.cq_tail = (self.cq_tail + 1) % cq_size
            if self.cq_tail == 0:
                self.phase ^= 1
