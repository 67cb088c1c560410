"""An open VFIO device: its regions, its config space and its BARs.

A :class:`VfioDevice` wraps the device file descriptor of an IOMMU backend (the bound
cdev for iommufd, the fd from VFIO_GROUP_GET_DEVICE_FD for legacy). Region N of a
vfio-pci device is at the file offset that VFIO_DEVICE_GET_REGION_INFO reports: BARs
are indexes 0-5, config space is index 7 (FACTS.md section 1).

- :class:`VfioConfigSpace` implements the ConfigSpace seam over region 7 with
  pread/pwrite. vfio-pci virtualizes parts of it (and hides the DOE capability from the
  capability list), but DOE registers stay raw read/write at their physical offset.
- :class:`BarRegion` reads and writes a BAR with 8/16/32/64-bit accesses: through an
  mmap when the region allows it (one load or store of the exact width), else pread/pwrite.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pciauth.errors import ConfigSpaceError, DeviceError, NotFoundError, UsageError, VfioError
from pciauth.iommu.steps import call
from pciauth.pci.config import EXTENDED_SIZE, ConfigSpace
from pciauth.uapi import ioctls
from pciauth.uapi import sys as usys
from pciauth.uapi.structs import ffi, new

_FORMATS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
_CTYPES = {1: "uint8_t *", 2: "uint16_t *", 4: "uint32_t *", 8: "uint64_t *"}
U64 = (1 << 64) - 1


@dataclass(frozen=True)
class RegionInfo:
    """What VFIO_DEVICE_GET_REGION_INFO says about one region."""

    index: int
    size: int
    offset: int
    flags: int

    @property
    def readable(self) -> bool:
        return bool(self.flags & ioctls.VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & ioctls.VFIO_REGION_INFO_FLAG_WRITE)

    @property
    def mmappable(self) -> bool:
        return bool(self.flags & ioctls.VFIO_REGION_INFO_FLAG_MMAP)

    def to_dict(self) -> dict:
        return {"index": self.index, "size": self.size, "offset": self.offset, "flags": self.flags}


class VfioConfigSpace(ConfigSpace):
    """Config space through the VFIO config region (index 7), with pread/pwrite."""

    def __init__(self, fd: int, region: RegionInfo, name: str) -> None:
        self.fd = fd
        self.region = region
        self.name = name
        self.size = min(region.size, EXTENDED_SIZE)

    def _read(self, offset: int, width: int) -> int:
        return struct.unpack(_FORMATS[width], self._pread(offset, width))[0]

    def _pread(self, offset: int, length: int) -> bytes:
        try:
            data = usys.pread(self.fd, length, self.region.offset + offset)
        except OSError as e:
            raise ConfigSpaceError(
                f"VFIO config read at 0x{offset:x} failed: {e.strerror}", errno=e.errno, device=self.name
            ) from None
        if len(data) != length:
            raise ConfigSpaceError(
                f"short VFIO config read at 0x{offset:x} ({len(data)} of {length} bytes)", device=self.name
            )
        return data

    def _write(self, offset: int, width: int, value: int) -> None:
        try:
            n = usys.pwrite(self.fd, struct.pack(_FORMATS[width], value), self.region.offset + offset)
        except OSError as e:
            raise ConfigSpaceError(
                f"VFIO config write at 0x{offset:x} failed: {e.strerror}", errno=e.errno, device=self.name
            ) from None
        if n != width:
            raise ConfigSpaceError(f"short VFIO config write at 0x{offset:x}", device=self.name)

    def _read_span(self, offset: int, length: int) -> bytes:
        return self._pread(offset, length) if length else b""


class BarRegion:
    """A BAR: ``read(off, width)`` / ``write(off, width, value)``, widths 1, 2, 4, 8 bytes."""

    def __init__(self, fd: int, region: RegionInfo, name: str, *, use_mmap: bool = True) -> None:
        self.fd = fd
        self.region = region
        self.index = region.index
        self.size = region.size
        self.name = f"{name} BAR{region.index}"
        self._mapping: Any = None
        self._ptr: Any = None
        if use_mmap and region.mmappable:
            try:
                self._mapping = usys.mmap(fd, region.size, region.offset, writable=region.writable)
                self._ptr = ffi.from_buffer("uint8_t[]", self._mapping, require_writable=False)
            except (OSError, ValueError, TypeError):
                self._mapping = None  # some BARs refuse mmap (MSI-X table): use pread/pwrite
                self._ptr = None

    @property
    def mapped(self) -> bool:
        return self._ptr is not None

    def _check(self, offset: int, width: int) -> None:
        if width not in _FORMATS:
            raise UsageError(f"{self.name}: invalid access width {width}")
        if offset < 0 or offset % width or offset + width > self.size:
            raise DeviceError(
                f"{self.name}: {width * 8}-bit access at 0x{offset:x} is misaligned or beyond 0x{self.size:x}",
                device=self.name,
            )

    def read(self, offset: int, width: int) -> int:
        self._check(offset, width)
        if self._ptr is not None:
            return int(ffi.cast(_CTYPES[width], self._ptr + offset)[0])
        try:
            data = usys.pread(self.fd, width, self.region.offset + offset)
        except OSError as e:
            raise DeviceError(
                f"{self.name}: read at 0x{offset:x} failed: {e.strerror}", errno=e.errno
            ) from None
        if len(data) != width:
            raise DeviceError(f"{self.name}: short read at 0x{offset:x}")
        return struct.unpack(_FORMATS[width], data)[0]

    def write(self, offset: int, width: int, value: int) -> None:
        self._check(offset, width)
        value &= (1 << (8 * width)) - 1
        if not self.region.writable:
            raise DeviceError(f"{self.name} is read-only", device=self.name)
        if self._ptr is not None:
            ffi.cast(_CTYPES[width], self._ptr + offset)[0] = value
            return
        try:
            n = usys.pwrite(self.fd, struct.pack(_FORMATS[width], value), self.region.offset + offset)
        except OSError as e:
            raise DeviceError(
                f"{self.name}: write at 0x{offset:x} failed: {e.strerror}", errno=e.errno
            ) from None
        if n != width:
            raise DeviceError(f"{self.name}: short write at 0x{offset:x}")

    def read8(self, offset: int) -> int:
        return self.read(offset, 1)

    def read16(self, offset: int) -> int:
        return self.read(offset, 2)

    def read32(self, offset: int) -> int:
        return self.read(offset, 4)

    def read64(self, offset: int) -> int:
        return self.read(offset, 8)

    def write8(self, offset: int, value: int) -> None:
        self.write(offset, 1, value)

    def write16(self, offset: int, value: int) -> None:
        self.write(offset, 2, value)

    def write32(self, offset: int, value: int) -> None:
        self.write(offset, 4, value)

    def write64(self, offset: int, value: int) -> None:
        self.write(offset, 8, value)

    def close(self) -> None:
        if self._ptr is not None:
            ffi.release(self._ptr)
            self._ptr = None
        if self._mapping is not None:
            usys.munmap(self._mapping)
            self._mapping = None


class VfioDevice:
    """The VFIO device of an IOMMU backend (``backend.device_fd``).

    ``VfioDevice.open(pci_device, iommu="auto")`` opens a backend and owns it;
    ``VfioDevice.from_backend(backend, pci_device)`` borrows one (the caller closes it).
    """

    def __init__(self, backend: Any, pci_device: Any = None, *, owns_backend: bool = False) -> None:
        self.backend = backend
        self.fd: int = backend.device_fd
        self.name: str = getattr(pci_device, "name", None) or getattr(backend, "device", None) or "vfio"
        self.pci = pci_device
        self._owns_backend = owns_backend
        self._regions: dict[int, RegionInfo] = {}
        self._bars: dict[int, BarRegion] = {}
        self._config: VfioConfigSpace | None = None
        info = new("vfio_device_info")
        call("DeviceGetInfo", self.fd, "VFIO_DEVICE_GET_INFO", info, device=self.name)
        self.flags = int(info.flags)
        self.num_regions = int(info.num_regions)
        self.num_irqs = int(info.num_irqs)
        if not self.flags & ioctls.VFIO_DEVICE_FLAGS_PCI:
            raise VfioError(f"{self.name} is not a VFIO PCI device", device=self.name, step="DeviceGetInfo")
        if self.num_regions <= ioctls.VFIO_PCI_CONFIG_REGION_INDEX or self.num_regions > 64:
            raise VfioError(
                f"{self.name}: VFIO reports {self.num_regions} regions (a PCI device has at least 8)",
                device=self.name,
                step="DeviceGetInfo",
            )

    @classmethod
    def from_backend(cls, backend: Any, pci_device: Any = None) -> VfioDevice:
        return cls(backend, pci_device)

    @classmethod
    def open(cls, pci_device: Any, iommu: str = "auto") -> VfioDevice:
        from pciauth.iommu import open_backend

        backend = open_backend(pci_device, iommu)
        try:
            return cls(backend, pci_device, owns_backend=True)
        except BaseException:
            backend.close()
            raise

    def region_info(self, index: int) -> RegionInfo:
        """VFIO_DEVICE_GET_REGION_INFO for ``index`` (cached)."""
        if index in self._regions:
            return self._regions[index]
        if not 0 <= index < self.num_regions:
            raise UsageError(f"{self.name}: no region {index} (the device has {self.num_regions})")
        req = new("vfio_region_info", index=index)
        call(
            "DeviceGetRegionInfo",
            self.fd,
            "VFIO_DEVICE_GET_REGION_INFO",
            req,
            device=self.name,
            detail=f"(index {index})",
        )
        info = RegionInfo(index, int(req.size), int(req.offset), int(req.flags))
        if info.offset + info.size > U64 + 1:
            raise VfioError(
                f"{self.name}: region {index} runs past the end of the file",
                device=self.name,
                step="DeviceGetRegionInfo",
            )
        self._regions[index] = info
        return info

    @property
    def config(self) -> VfioConfigSpace:
        """Config space through the VFIO config region."""
        if self._config is None:
            region = self.region_info(ioctls.VFIO_PCI_CONFIG_REGION_INDEX)
            if region.size == 0 or not region.readable:
                raise VfioError(
                    f"{self.name}: the VFIO config region is not readable",
                    device=self.name,
                    step="DeviceGetRegionInfo",
                )
            self._config = VfioConfigSpace(self.fd, region, self.name)
        return self._config

    def config_space(self) -> VfioConfigSpace:
        return self.config

    def bar(self, index: int) -> BarRegion:
        """BAR ``index`` (0-5), mmap'ed when VFIO allows it."""
        if not 0 <= index <= ioctls.VFIO_PCI_BAR5_REGION_INDEX:
            raise UsageError(f"BAR index {index} is not 0-5")
        if index not in self._bars:
            region = self.region_info(index)
            if region.size == 0:
                raise NotFoundError(f"{self.name} has no BAR{index}", device=self.name)
            self._bars[index] = BarRegion(self.fd, region, self.name)
        return self._bars[index]

    def reset(self) -> None:
        """VFIO_DEVICE_RESET (function-level or bus reset, as the kernel can)."""
        if not self.flags & ioctls.VFIO_DEVICE_FLAGS_RESET:
            raise VfioError(
                f"{self.name} does not support reset through VFIO", device=self.name, step="DeviceReset"
            )
        call("DeviceReset", self.fd, "VFIO_DEVICE_RESET", device=self.name)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._owns_backend:
            self._owns_backend = False
            self.backend.close()

    def __enter__(self) -> VfioDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
