"""Driver for QEMU's ``edu`` teaching device (``-device edu``, 1234:11e8).

BAR0 registers (QEMU ``hw/misc/edu.c``): 0x00 identification (0xRRrr00ed: major, minor, 0xed),
0x04 liveness (reads back the complement of what was written), 0x80 DMA source, 0x88 DMA
destination, 0x90 DMA count, 0x98 DMA command (bit 0 start/running, bit 1 direction: 1 = from the
device's buffer to RAM, bit 2 raise an interrupt). The device buffer is 4 KiB at device address
0x40000. DMA addresses are masked to 28 bits (``dma_mask``), so IOVAs must stay below 256 MiB.
Registers from 0x80 on take 4- or 8-byte accesses only. Each DMA takes about 100 ms (a timer);
the driver polls bit 0 of the command register with a timeout.

A copy between two IOVAs goes through the device buffer, 4 KiB at a time: RAM -> device, then
device -> RAM. Bus Master is enabled in PCI_COMMAND for the run and restored afterwards.
"""

from __future__ import annotations

from pciauth.dma.drivers import DmaDriver
from pciauth.errors import DmaError

REG_ID = 0x00
REG_LIVENESS = 0x04
REG_DMA_SRC = 0x80
REG_DMA_DST = 0x88
REG_DMA_COUNT = 0x90
REG_DMA_CMD = 0x98

CMD_START = 1 << 0
CMD_TO_RAM = 1 << 1

ID_MAGIC = 0xED
DEVICE_BUFFER = 0x40000
DEVICE_BUFFER_SIZE = 4096
DMA_MASK_BITS = 28

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 1 << 1
PCI_COMMAND_MASTER = 1 << 2

LIVENESS_PROBE = 0x5A5AA5A5


class EduDriver(DmaDriver):
    """Copies RAM -> device buffer -> RAM in 4 KiB steps."""

    name = "edu"
    dma_limit = 1 << DMA_MASK_BITS
    #: Bytes per device request (the device buffer).
    segment = DEVICE_BUFFER_SIZE

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._saved_command: int | None = None

    def start(self) -> None:
        ident = self.bar.read32(REG_ID)
        if ident & 0xFF != ID_MAGIC:
            raise DmaError(f"BAR0 ID register reads 0x{ident:08x}: not a QEMU edu device", device=self.ctx.name)
        self.bar.write32(REG_LIVENESS, LIVENESS_PROBE)
        back = self.bar.read32(REG_LIVENESS)
        if back != (~LIVENESS_PROBE & 0xFFFFFFFF):
            raise DmaError(f"edu liveness check failed: wrote 0x{LIVENESS_PROBE:08x}, read 0x{back:08x}",
                           device=self.ctx.name)
        if self.bar.read32(REG_DMA_CMD) & CMD_START:
            raise DmaError("edu reports a DMA already running", device=self.ctx.name,
                           hint="another user drives this device; wait or reset it")
        cfg = self.ctx.config
        if cfg is not None:
            self._saved_command = cfg.read16(PCI_COMMAND)
            cfg.write16(PCI_COMMAND, self._saved_command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)

    def _dma(self, src: int, dst: int, count: int, to_ram: bool, timeout: float) -> None:
        self.bar.write64(REG_DMA_SRC, src)
        self.bar.write64(REG_DMA_DST, dst)
        self.bar.write64(REG_DMA_COUNT, count)
        self.bar.write32(REG_DMA_CMD, CMD_START | (CMD_TO_RAM if to_ram else 0))
        self.wait_until(lambda: not self.bar.read32(REG_DMA_CMD) & CMD_START, timeout,
                        "the edu DMA (command bit 0)", first=0.005, longest=0.02)

    def _check_iova(self, iova: int, length: int, what: str) -> None:
        if iova < 0 or iova + length > self.dma_limit:
            raise DmaError(
                f"{what} IOVA 0x{iova:x}+0x{length:x} is beyond edu's {DMA_MASK_BITS}-bit DMA mask",
                device=self.ctx.name, hint="map buffers below 256 MiB (the session's dma_limit does this)",
            )

    def copy(self, src_iova: int, dst_iova: int, length: int, *, timeout: float = 5.0) -> None:
        if length <= 0:
            raise DmaError(f"copy length must be positive (got {length})")
        self._check_iova(src_iova, length, "source")
        self._check_iova(dst_iova, length, "destination")
        for off in range(0, length, DEVICE_BUFFER_SIZE):
            n = min(DEVICE_BUFFER_SIZE, length - off)
            self._dma(src_iova + off, DEVICE_BUFFER, n, False, timeout)
            self._dma(DEVICE_BUFFER, dst_iova + off, n, True, timeout)

    def close(self) -> None:
        if self._saved_command is not None and self.ctx.config is not None:
            self.ctx.config.write16(PCI_COMMAND, self._saved_command)
            self._saved_command = None
