"""Shared pieces of the fake VFIO kernel: errors, regions, functions, IOVA helpers."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field

from pciauth.uapi import ioctls
from pciauth.uapi.structs import ffi

U64 = (1 << 64) - 1
REGION_SHIFT = 40  # vfio-pci puts region N at offset N << 40

# ioctl name -> (struct, minimum size the kernel accepts)
IOMMUFD_MIN = {
    "IOMMU_DESTROY": ("iommu_destroy", 8),
    "IOMMU_IOAS_ALLOC": ("iommu_ioas_alloc", 12),
    "IOMMU_IOAS_ALLOW_IOVAS": ("iommu_ioas_allow_iovas", 24),
    "IOMMU_IOAS_IOVA_RANGES": ("iommu_ioas_iova_ranges", 32),
    "IOMMU_IOAS_MAP": ("iommu_ioas_map", 40),
    "IOMMU_IOAS_UNMAP": ("iommu_ioas_unmap", 24),
    "IOMMU_GET_HW_INFO": ("iommu_hw_info", 24),
    "VFIO_DEVICE_BIND_IOMMUFD": ("vfio_device_bind_iommufd", 16),
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT": ("vfio_device_attach_iommufd_pt", 12),
    "VFIO_DEVICE_DETACH_IOMMUFD_PT": ("vfio_device_detach_iommufd_pt", 8),
}


class FakeErr(OSError):
    def __init__(self, err: int) -> None:
        super().__init__(err, os.strerror(err))


@dataclass
class FakeRegion:
    size: int
    flags: int = ioctls.VFIO_REGION_INFO_FLAG_READ | ioctls.VFIO_REGION_INFO_FLAG_WRITE
    data: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if not self.data:
            self.data = bytearray(self.size)


@dataclass
class FakePciFunction:
    """A VFIO device as the fake kernel exposes it."""

    bdf: str = "0000:01:00.0"
    group: int = 7
    cdev: str | None = "vfio0"
    viable: bool = True
    regions: dict[int, FakeRegion] = field(default_factory=dict)
    #: IOVA holes the device imposes when attached (MSI window on x86).
    reserved: list[tuple[int, int]] = field(default_factory=lambda: [(0xFEE00000, 0xFEEFFFFF)])

    def __post_init__(self) -> None:
        if not self.regions:
            config = FakeRegion(4096)
            struct.pack_into("<HH", config.data, 0, 0x1234, 0x11E8)
            bar0 = FakeRegion(
                1 << 20,
                flags=ioctls.VFIO_REGION_INFO_FLAG_READ
                | ioctls.VFIO_REGION_INFO_FLAG_WRITE
                | ioctls.VFIO_REGION_INFO_FLAG_MMAP,
            )
            self.regions = {0: bar0, ioctls.VFIO_PCI_CONFIG_REGION_INDEX: config}


def _subtract(ranges: list[tuple[int, int]], hole: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    for s, e in ranges:
        if hole[1] < s or hole[0] > e:
            out.append((s, e))
            continue
        if s < hole[0]:
            out.append((s, hole[0] - 1))
        if e > hole[1]:
            out.append((hole[1] + 1, e))
    return out


@dataclass
class Ioas:
    id: int
    ranges: list[tuple[int, int]]
    allowed: list[tuple[int, int]] | None = None
    maps: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # iova -> (length, va, flags)
    users: int = 0


class Buf:
    """A page-aligned anonymous buffer with the fields IommuBackend.map wants."""

    def __init__(self, length: int) -> None:
        self._map = mmap.mmap(-1, length)
        self.view = memoryview(self._map)
        self.vaddr = int(ffi.cast("uintptr_t", ffi.from_buffer(self._map)))
        self.length = length
