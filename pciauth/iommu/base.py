"""The IommuBackend seam: put user memory at an IOVA the device can DMA to.

One interface, three implementations: iommufd (``pciauth.iommu.iommufd``, the VFIO
device cdev on kernels >= 6.6 with CONFIG_IOMMUFD), legacy VFIO type1
(``pciauth.iommu.legacy``, container + group, every kernel) and the emulated IOMMU of
the emulated device (``pciauth.emu.iommu``).

The base class keeps the generic bookkeeping: which IOVA ranges are mapped, argument
checks before any system call, checking the length the kernel says it unmapped, and
releasing every mapping (newest first) and then every kernel object on :meth:`close`.
A subclass implements the ``_do_*`` hooks only.
"""

from __future__ import annotations

import abc
import mmap
from dataclasses import dataclass
from typing import Any, Protocol

from pciauth.errors import IommuError, UsageError

#: An inclusive IOVA range ``(start, last)``, as the kernel reports it.
IovaRange = tuple[int, int]

U64_MAX = (1 << 64) - 1


class DmaBufferLike(Protocol):
    """What a backend needs from a buffer (``pciauth.dma.DmaBuffer`` has it)."""

    vaddr: int
    length: int
    view: memoryview


@dataclass(frozen=True)
class Mapping:
    """One live IOVA mapping."""

    iova: int
    length: int
    vaddr: int
    readable: bool
    writable: bool
    buffer: Any = None

    @property
    def last(self) -> int:
        return self.iova + self.length - 1


class IommuBackend(abc.ABC):
    """An IOMMU address space for one device.

    ``name`` is ``"iommufd"``, ``"legacy"`` or ``"emulated"``. Use as a context
    manager, or call :meth:`close`, which unmaps every mapping newest first and then
    releases the kernel objects in reverse order of creation.
    """

    name: str = "iommu"
    #: IOVA, length and vaddr of a mapping must be multiples of this.
    page_size: int = mmap.PAGESIZE

    def __init__(self, *, device: str | None = None) -> None:
        self.device = device
        self._mappings: dict[int, Mapping] = {}
        self._closed = False

    # ---- hooks for implementations ----
    @abc.abstractmethod
    def _do_iova_ranges(self) -> list[IovaRange]:
        """The usable IOVA ranges, inclusive, as the kernel (or emulator) reports them."""

    @abc.abstractmethod
    def _do_map(self, vaddr: int, length: int, iova: int | None, readable: bool, writable: bool) -> int:
        """Map and return the IOVA (``iova`` None: the backend chooses)."""

    @abc.abstractmethod
    def _do_unmap(self, iova: int, length: int) -> int:
        """Unmap and return the length the kernel says it unmapped."""

    def _do_allow_iovas(self, ranges: list[IovaRange]) -> None:  # noqa: B027 - optional
        """Restrict the IOVAs the kernel may choose (iommufd); others ignore it."""

    def _do_release(self) -> None:  # noqa: B027 - optional
        """Release kernel objects (IOAS, container, file descriptors), reverse order."""

    # ---- public API ----
    @property
    def mappings(self) -> list[Mapping]:
        """Live mappings, oldest first."""
        return list(self._mappings.values())

    def iova_ranges(self) -> list[IovaRange]:
        """Usable IOVA ranges ``(start, last)`` (inclusive), sorted."""
        self._check_open()
        return sorted(self._do_iova_ranges())

    def allow_iovas(self, ranges: list[IovaRange]) -> None:
        """Only let the kernel choose IOVAs inside ``ranges`` (iommufd IOMMU_IOAS_ALLOW_IOVAS)."""
        self._check_open()
        for start, last in ranges:
            if not 0 <= start <= last <= U64_MAX:
                raise UsageError(f"bad IOVA range 0x{start:x}-0x{last:x}", device=self.device)
        self._do_allow_iovas(list(ranges))

    def map(
        self,
        buffer: DmaBufferLike,
        iova: int | None = None,
        *,
        readable: bool = True,
        writable: bool = True,
    ) -> int:
        """Map ``buffer`` for device DMA at ``iova`` (or one the backend chooses); returns the IOVA."""
        self._check_open()
        vaddr, length = int(buffer.vaddr), int(buffer.length)
        if length <= 0:
            raise UsageError("cannot map an empty buffer", device=self.device)
        if not (readable or writable):
            raise UsageError("a mapping must be readable or writable", device=self.device)
        for what, value in (("buffer address", vaddr), ("buffer length", length)):
            if value % self.page_size:
                raise UsageError(
                    f"{what} 0x{value:x} is not a multiple of the page size 0x{self.page_size:x}",
                    device=self.device,
                )
        if iova is not None:
            if iova < 0 or iova % self.page_size or iova + length - 1 > U64_MAX:
                raise UsageError(f"bad IOVA 0x{iova:x} for a 0x{length:x}-byte mapping", device=self.device)
            clash = self._overlap(iova, length)
            if clash is not None:
                raise IommuError(
                    f"IOVA 0x{iova:x}+0x{length:x} overlaps the mapping at 0x{clash.iova:x}+0x{clash.length:x}",
                    step="IommuDmaMap",
                    device=self.device,
                )
        got = self._do_map(vaddr, length, iova, readable, writable)
        if iova is not None and got != iova:
            raise IommuError(
                f"asked to map at IOVA 0x{iova:x} but got 0x{got:x}", step="IommuDmaMap", device=self.device
            )
        self._mappings[got] = Mapping(got, length, vaddr, readable, writable, buffer)
        return got

    def unmap(self, iova: int, length: int) -> int:
        """Unmap exactly the mapping at ``iova`` of ``length`` bytes; returns the unmapped length.

        Raises :class:`IommuError` when the kernel unmapped a different length.
        """
        self._check_open()
        mapping = self._mappings.get(iova)
        if mapping is None or mapping.length != length:
            raise UsageError(f"no mapping of 0x{length:x} bytes at IOVA 0x{iova:x}", device=self.device)
        done = self._do_unmap(iova, length)
        del self._mappings[iova]
        if done != length:
            raise IommuError(
                f"unmap at IOVA 0x{iova:x}: asked for 0x{length:x} bytes, the kernel unmapped 0x{done:x}",
                step="IommuDmaUnmap",
                device=self.device,
                hint="the IOMMU state differs from pciauth's bookkeeping: close this device and retry",
            )
        return done

    def close(self) -> None:
        """Unmap every mapping (newest first), then release the kernel objects. Idempotent."""
        if self._closed:
            return
        self._closed = True
        first_error: BaseException | None = None
        for mapping in reversed(list(self._mappings.values())):
            try:
                self._do_unmap(mapping.iova, mapping.length)
            except Exception as exc:  # keep releasing the rest
                first_error = first_error or exc
            self._mappings.pop(mapping.iova, None)
        try:
            self._do_release()
        except Exception as exc:
            first_error = first_error or exc
        if first_error is not None:
            raise first_error

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> IommuBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ----
    def _check_open(self) -> None:
        if self._closed:
            raise IommuError(f"{self.name} backend is closed", step="IommuClosed", device=self.device)

    def _overlap(self, iova: int, length: int) -> Mapping | None:
        last = iova + length - 1
        for m in self._mappings.values():
            if iova <= m.last and m.iova <= last:
                return m
        return None


def choose_iova(ranges: list[IovaRange], taken: list[Mapping], length: int, align: int) -> int | None:
    """The lowest ``align``-aligned IOVA in ``ranges`` where ``length`` bytes fit between ``taken``."""
    busy = sorted((m.iova, m.last) for m in taken)
    for start, last in sorted(ranges):
        candidate = -(-start // align) * align
        for b_start, b_last in busy:
            if b_last < candidate:
                continue
            if b_start > candidate + length - 1:
                break
            candidate = -(-(b_last + 1) // align) * align
        if candidate + length - 1 <= last:
            return candidate
    return None
