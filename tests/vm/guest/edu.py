"""A minimal driver for QEMU's ``edu`` device over a VFIO device fd (guest side of the VM tier).

It is written against the kernel, not against pciauth's DMA drivers, so that the
checks prove pciauth's IOMMU backends (``pciauth.iommu``) and UAPI layer
(``pciauth.uapi``) on a real kernel independently of pciauth's own edu driver.

Registers (FACTS.md section 5): 0x80 DMA source, 0x88 destination, 0x90 count,
0x98 command (bit 0 start, bit 1 direction: 1 = device buffer to RAM). The
device buffer is at device address 0x40000 (4 KiB); DMA addresses are masked to
28 bits.  Registers at 0x80+ need 4- or 8-byte accesses.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

EDU_BUF = 0x40000
EDU_BUF_SIZE = 4096
REG_ID = 0x00
REG_LIVENESS = 0x04
REG_SRC, REG_DST, REG_CNT, REG_CMD = 0x80, 0x88, 0x90, 0x98
CMD_START, CMD_TO_RAM = 1, 2
BAR0_INDEX = 0
CONFIG_INDEX = 7  # VFIO_PCI_CONFIG_REGION_INDEX
PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER = 0x2, 0x4
SYS_PCI = Path("/sys/bus/pci")


class EduError(Exception):
    pass


def region(device_fd: int, index: int) -> tuple[int, int]:
    """``(offset, size)`` of a VFIO region (VFIO_DEVICE_GET_REGION_INFO)."""
    from pciauth.uapi import ioctls
    from pciauth.uapi import sys as usys
    from pciauth.uapi.structs import new

    info = new("vfio_region_info", index=index)
    usys.ioctl(device_fd, ioctls.VFIO_DEVICE_GET_REGION_INFO, info)
    return int(info.offset), int(info.size)


class Edu:
    """The edu device behind an open VFIO device fd (``backend.device_fd``)."""

    def __init__(self, device_fd: int) -> None:
        self.fd = device_fd
        self.bar0, bar0_size = region(device_fd, BAR0_INDEX)
        if bar0_size < 0x100:
            raise EduError(f"edu BAR0 region is only {bar0_size} bytes")
        self.cfg, _ = region(device_fd, CONFIG_INDEX)
        cmd = self._cfg16(PCI_COMMAND)
        self._cfg16(PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)

    def _cfg16(self, off: int, value: int | None = None) -> int:
        from pciauth.uapi import sys as usys

        if value is None:
            return struct.unpack("<H", usys.pread(self.fd, 2, self.cfg + off))[0]
        usys.pwrite(self.fd, struct.pack("<H", value), self.cfg + off)
        return value

    def read32(self, off: int) -> int:
        from pciauth.uapi import sys as usys

        return struct.unpack("<I", usys.pread(self.fd, 4, self.bar0 + off))[0]

    def write32(self, off: int, value: int) -> None:
        from pciauth.uapi import sys as usys

        usys.pwrite(self.fd, struct.pack("<I", value), self.bar0 + off)

    def write64(self, off: int, value: int) -> None:
        from pciauth.uapi import sys as usys

        usys.pwrite(self.fd, struct.pack("<Q", value), self.bar0 + off)

    def liveness(self, value: int) -> int:
        self.write32(REG_LIVENESS, value)
        return self.read32(REG_LIVENESS)

    def dma(self, src: int, dst: int, count: int, to_ram: bool, timeout: float = 10.0) -> float:
        """Run one DMA and wait for it; returns the seconds it took."""
        if not 0 < count <= EDU_BUF_SIZE:
            raise EduError(f"edu DMA count {count} out of range")
        self.write64(REG_SRC, src)
        self.write64(REG_DST, dst)
        self.write64(REG_CNT, count)
        t0 = time.monotonic()
        self.write64(REG_CMD, CMD_START | (CMD_TO_RAM if to_ram else 0))
        while self.read32(REG_CMD) & CMD_START:
            if time.monotonic() - t0 > timeout:
                raise EduError(f"edu DMA did not finish within {timeout} s")
            time.sleep(0.01)
        return time.monotonic() - t0

    def to_device(self, iova: int, count: int) -> float:
        return self.dma(iova, EDU_BUF, count, to_ram=False)

    def to_ram(self, iova: int, count: int) -> float:
        return self.dma(EDU_BUF, iova, count, to_ram=True)


def sysfs_bind_vfio(bdf: str) -> str | None:
    """Bind ``bdf`` to vfio-pci with plain sysfs writes; return the driver it had."""
    dev = SYS_PCI / "devices" / bdf
    old = os.path.basename(os.readlink(dev / "driver")) if (dev / "driver").is_symlink() else None
    if old == "vfio-pci":
        return old
    if old:
        (dev / "driver" / "unbind").write_text(bdf)
    (dev / "driver_override").write_text("vfio-pci")
    (SYS_PCI / "drivers" / "vfio-pci" / "bind").write_text(bdf)
    return old


def sysfs_restore(bdf: str, old: str | None) -> None:
    dev = SYS_PCI / "devices" / bdf
    if (dev / "driver").is_symlink():
        (dev / "driver" / "unbind").write_text(bdf)
    (dev / "driver_override").write_text("\n")
    if old and old != "vfio-pci":
        (SYS_PCI / "drivers" / old / "bind").write_text(bdf)
