"""Driver for the emulated device's DMA engine (:mod:`pciauth.emu.dma_engine`).

It only talks to BAR0 registers, so the same code would drive a hardware implementation of the
register map in ``docs/dma.md``.
"""

from __future__ import annotations

from pciauth.dma.drivers import DmaDriver, DmaFault
from pciauth.emu import dma_engine as reg
from pciauth.errors import DmaError

#: Bytes per descriptor: the LEN field is 32 bits; keep chunks a power of two for alignment.
MAX_DESC_LEN = 1 << 30
_DIRECTION = {0: "read", 1: "write"}
_REASONS = {1: "unmapped", 2: "read-only", 3: "write-only", 4: "t1-to-shared", 5: "t0-to-private"}


class EmuDmaDriver(DmaDriver):
    """Copies with up to ``CAPS.slots`` descriptors per START."""

    name = "emu"

    def start(self) -> None:
        ident = self.bar.read32(reg.REG_ID)
        if ident != reg.ENGINE_ID:
            raise DmaError(f"BAR0 ID register reads 0x{ident:08x}, not the emulated DMA engine 0x{reg.ENGINE_ID:08x}",
                           device=self.ctx.name)
        self.slots = self.bar.read32(reg.REG_CAPS) & 0xFF
        bar_size = getattr(self.bar, "size", reg.BAR_SIZE)
        room = (bar_size - reg.DESC_BASE) // reg.DESC_SIZE
        if not 1 <= self.slots <= room:
            raise DmaError(f"the DMA engine reports {self.slots} descriptor slots; BAR0 has room for 1 to {room}",
                           device=self.ctx.name)
        self.bar.write32(reg.REG_CTRL, reg.CTRL_RESET)

    def submit(self, descriptors: list[tuple[int, int, int]]) -> None:
        """Write up to ``slots`` (src, dst, length) descriptors and START."""
        if not 1 <= len(descriptors) <= self.slots:
            raise DmaError(f"{len(descriptors)} descriptors; the engine takes 1 to {self.slots}")
        for slot, (src, dst, length) in enumerate(descriptors):
            if not 0 < length <= 0xFFFFFFFF:
                raise DmaError(f"descriptor {slot}: length {length} does not fit the 32-bit LEN field")
            base = reg.desc_offset(slot)
            self.bar.write64(base + reg.DESC_SRC, src)
            self.bar.write64(base + reg.DESC_DST, dst)
            self.bar.write32(base + reg.DESC_LEN, length)
            self.bar.write32(base + reg.DESC_FLAGS, reg.FLAG_VALID)
        self.bar.write32(reg.REG_COUNT, len(descriptors))
        self.bar.write32(reg.REG_CTRL, reg.CTRL_START)

    def wait(self, *, timeout: float = 5.0) -> int:
        """Wait for DONE; raise :class:`DmaFault` on a fault, :class:`DmaError` on a bad descriptor.

        Returns the number of bytes copied.
        """
        status = self.bar.read32(reg.REG_STATUS)

        def done() -> bool:
            nonlocal status
            status = self.bar.read32(reg.REG_STATUS)
            return bool(status & reg.STATUS_DONE)

        if not status & reg.STATUS_DONE:
            self.wait_until(done, timeout, "the emulated DMA engine")
        if status & reg.STATUS_FAULT:
            addr = self.bar.read64(reg.REG_FAULT_ADDR)
            info = self.bar.read32(reg.REG_FAULT_INFO)
            self.bar.write32(reg.REG_CTRL, reg.CTRL_CLEAR_FAULT)
            direction = _DIRECTION[info & 1]
            reason = _REASONS.get(info >> 8 & 0xFF, f"code {info >> 8 & 0xFF}")
            raise DmaFault(
                f"DMA fault in descriptor {info >> 16}: device {direction} at IOVA 0x{addr:x} ({reason}); "
                "nothing was transferred by it",
                address=addr, direction=direction, reason=reason, device=self.ctx.name,
            )
        if status & reg.STATUS_ERROR:
            info = self.bar.read32(reg.REG_ERROR_INFO)
            self.bar.write32(reg.REG_CTRL, reg.CTRL_CLEAR_FAULT)
            what = reg.ERROR_NAMES.get(info & 0xFF, f"error {info & 0xFF}")
            raise DmaError(f"DMA engine rejected descriptor {info >> 16}: {what}", device=self.ctx.name)
        return self.bar.read64(reg.REG_BYTES)

    def copy(self, src_iova: int, dst_iova: int, length: int, *, timeout: float = 5.0) -> None:
        if length <= 0:
            raise DmaError(f"copy length must be positive (got {length})")
        descs = [(src_iova + off, dst_iova + off, min(MAX_DESC_LEN, length - off))
                 for off in range(0, length, MAX_DESC_LEN)]
        for i in range(0, len(descs), self.slots):
            batch = descs[i : i + self.slots]
            self.submit(batch)
            moved = self.wait(timeout=timeout)
            if moved != sum(d[2] for d in batch):
                raise DmaError(f"DMA engine copied {moved} bytes of {sum(d[2] for d in batch)}")

    def close(self) -> None:
        try:
            self.bar.write32(reg.REG_CTRL, reg.CTRL_RESET)
        except DmaError:
            pass
