"""The emulated IOMMU: the IommuBackend the emulated device's DMA engine translates through.

Page tables are a sorted list of mappings over the buffers' memoryviews; a DMA copies bytes
between those views, so no root, no VFIO and no kernel are involved.

It models the private IOVA threshold X as a TDISP device with SEV-TIO-style vTOM would see it:
a DMA to an IOVA below X is a T=1 (private) request, at or above X a T=0 (shared) one. Each mapped
buffer carries the memory attribute it was made for (``buffer.private``: True private, False
shared, None ordinary host memory with no attribute check). A DMA faults when:

==================  =====================================================================
reason              when
==================  =====================================================================
``unmapped``        some byte of the access has no mapping
``read-only``       the device writes to a mapping without write permission
``write-only``      the device reads from a mapping without read permission
``t1-to-shared``    a T=1 (private) request, below X, lands on a shared buffer
``t0-to-private``   a T=0 (shared) request, at or above X, lands on a private buffer
==================  =====================================================================

A faulting access transfers nothing: the whole access is translated before a byte moves. Each
fault is recorded (address, direction, reason, length) in :attr:`EmulatedIommu.faults`.
Directions are from the device's point of view: ``read`` = the device reads memory,
``write`` = the device writes memory.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass

from pciauth.errors import DmaError, IommuError, RefusedError
from pciauth.iommu.base import IommuBackend, Mapping

#: An x86-like IOVA space: 48 bits with the MSI window 0xfee00000-0xfeefffff reserved.
DEFAULT_RANGES = [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 48) - 1)]
THRESHOLD_ALL_ONES = (1 << 31) - 1
THRESHOLD_UNIT = 2 << 20

#: Fault reasons and their numeric codes (the DMA engine's FAULT_INFO register uses the codes).
FAULT_REASONS = {
    "unmapped": 1,
    "read-only": 2,
    "write-only": 3,
    "t1-to-shared": 4,
    "t0-to-private": 5,
}
DIRECTIONS = ("read", "write")


@dataclass(frozen=True)
class FaultRecord:
    """One recorded IOMMU fault."""

    address: int
    direction: str
    reason: str
    length: int

    @property
    def code(self) -> int:
        return FAULT_REASONS[self.reason]

    def describe(self) -> str:
        return f"{self.direction} fault at IOVA 0x{self.address:x} ({self.reason})"

    def to_dict(self) -> dict:
        return {"address": self.address, "direction": self.direction, "reason": self.reason,
                "length": self.length}


class IommuFault(DmaError):
    """A DMA faulted in the emulated IOMMU and transferred nothing."""

    def __init__(self, record: FaultRecord) -> None:
        super().__init__(f"IOMMU {record.describe()}")
        self.record = record


class EmulatedIommu(IommuBackend):
    """An IOMMU in Python for the emulated device; see the module docstring for the rules."""

    name = "emulated"
    #: Emulated mappings pin nothing, so RLIMIT_MEMLOCK does not apply.
    pins_memory = False

    def __init__(self, ranges: list[tuple[int, int]] | None = None, *, threshold: int = THRESHOLD_ALL_ONES,
                 fault_log_size: int = 256, device: str | None = "emu") -> None:
        super().__init__(device=device)
        self._ranges = sorted(ranges or DEFAULT_RANGES)
        self._allowed: list[tuple[int, int]] | None = None
        self._starts: list[int] = []
        self._entries: list[tuple] = []  # parallel to _starts: (iova, end, r, w, private, view)
        self._by_start: dict[int, Mapping] = {}
        self.threshold_units = threshold
        self.faults: collections.deque[FaultRecord] = collections.deque(maxlen=fault_log_size)
        self.fault_count = 0
        self.bytes_transferred = 0

    # ---- IommuBackend hooks ----
    def _do_iova_ranges(self) -> list[tuple[int, int]]:
        return list(self._ranges)

    def _do_allow_iovas(self, ranges: list[tuple[int, int]]) -> None:
        self._allowed = sorted(ranges)

    def _do_map(self, vaddr: int, length: int, iova: int | None, readable: bool, writable: bool) -> int:
        if iova is None:
            iova = self._choose(length)
        elif not any(s <= iova and iova + length - 1 <= last for s, last in self._ranges):
            raise IommuError(
                f"IOVA 0x{iova:x}+0x{length:x} is outside the IOVA ranges", step="IommuDmaMap", device=self.device
            )
        return iova

    def _do_unmap(self, iova: int, length: int) -> int:
        m = self._by_start.pop(iova, None)
        if m is None:
            return 0
        i = bisect.bisect_left(self._starts, iova)
        del self._starts[i]
        del self._entries[i]
        return m.length

    def map(self, buffer, iova: int | None = None, *, readable: bool = True, writable: bool = True) -> int:
        got = super().map(buffer, iova, readable=readable, writable=writable)
        m = self._mappings[got]
        i = bisect.bisect_left(self._starts, got)
        self._starts.insert(i, got)
        # The page-table entry: what translate needs, with the memory attribute as mapped.
        self._entries.insert(i, (got, got + m.length, m.readable, m.writable,
                                 getattr(buffer, "private", None), getattr(buffer, "view", None)))
        self._by_start[got] = m
        return got

    def _overlap(self, iova: int, length: int) -> Mapping | None:
        """The live mapping that overlaps ``[iova, iova + length)``: a bisect, not a scan."""
        i = bisect.bisect_left(self._starts, iova + length) - 1
        if i >= 0:
            m = self._by_start[self._starts[i]]
            if m.iova + m.length > iova:
                return m
        return None

    def _choose(self, length: int) -> int:
        """The kernel's job when no IOVA is given: first fit inside the allowed ranges."""
        for start, last in self._allowed if self._allowed is not None else self._ranges:
            cur = max(start, self.page_size)
            for s in self._starts:
                m = self._by_start[s]
                if m.last < cur:
                    continue
                if s >= cur + length:
                    break
                cur = m.iova + m.length
            if cur + length - 1 <= last:
                return cur
        raise IommuError(f"no free IOVA space for 0x{length:x} bytes", step="IommuDmaMap", device=self.device)

    # ---- the threshold X ----
    def set_threshold(self, units: int) -> None:
        """Program X (2 MiB units); refused while mappings exist, like the platform would."""
        if not 0 <= units <= THRESHOLD_ALL_ONES:
            raise IommuError(f"threshold {units} does not fit the 31-bit field", step="SetThreshold")
        if units != self.threshold_units and self._by_start:
            raise RefusedError(
                f"emulated IOMMU: cannot change the IOVA threshold with {len(self._by_start)} live mapping(s)",
                device=self.device,
                hint="unmap everything (or reset the device), then change the threshold",
            )
        self.threshold_units = units

    def is_private_iova(self, iova: int) -> bool:
        return self.threshold_units == THRESHOLD_ALL_ONES or iova < self.threshold_units * THRESHOLD_UNIT

    # ---- DMA ----
    def _fault(self, address: int, direction: str, reason: str, length: int) -> IommuFault:
        record = FaultRecord(address, direction, reason, length)
        self.faults.append(record)
        self.fault_count += 1
        return IommuFault(record)

    def clear_faults(self) -> None:
        self.faults.clear()

    def translate(self, iova: int, length: int, direction: str) -> list[memoryview]:
        """The memory behind ``[iova, iova + length)`` as views, or raise :class:`IommuFault`."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'read' or 'write', not {direction!r}")
        if length <= 0:
            return []
        out: list[memoryview] = []
        cur, end = iova, iova + length
        starts, entries = self._starts, self._entries
        x = (1 << 64) if self.threshold_units == THRESHOLD_ALL_ONES else self.threshold_units * THRESHOLD_UNIT
        writing = direction == "write"
        while cur < end:
            i = bisect.bisect_right(starts, cur) - 1
            if i < 0 or cur >= entries[i][1]:
                raise self._fault(cur, direction, "unmapped", length)
            start, stop, readable, writable, attr, view = entries[i]
            if writing and not writable:
                raise self._fault(cur, direction, "read-only", length)
            if not writing and not readable:
                raise self._fault(cur, direction, "write-only", length)
            n = min(end, stop) - cur
            if attr is not None:
                # The request's T bit follows the IOVA; a segment may straddle X.
                if cur < x and not attr:
                    raise self._fault(cur, direction, "t1-to-shared", length)
                if cur + n > x and attr:
                    raise self._fault(max(cur, x), direction, "t0-to-private", length)
            try:
                off = cur - start
                out.append(view[off : off + n])
            except (TypeError, ValueError):  # buffer closed under the mapping
                raise self._fault(cur, direction, "unmapped", length) from None
            cur += n
        return out

    def copy(self, src_iova: int, dst_iova: int, length: int) -> int:
        """Device copies ``length`` bytes from ``src_iova`` to ``dst_iova``; all or nothing."""
        src = self.translate(src_iova, length, "read")
        dst = self.translate(dst_iova, length, "write")
        if len(src) == 1 and len(dst) == 1:
            dst[0][:] = src[0]
        else:
            data = b"".join(src) if len(src) > 1 else src[0]
            pos = 0
            for d in dst:
                d[:] = data[pos : pos + len(d)]
                pos += len(d)
        self.bytes_transferred += length
        return length

    def dma_write(self, iova: int, data: bytes) -> int:
        """Device writes ``data`` to memory at ``iova`` (e.g. a completion entry)."""
        views = self.translate(iova, len(data), "write")
        pos = 0
        for v in views:
            v[:] = data[pos : pos + len(v)]
            pos += len(v)
        self.bytes_transferred += len(data)
        return len(data)

    def dma_read(self, iova: int, length: int) -> bytes:
        """Device reads ``length`` bytes of memory at ``iova``."""
        data = b"".join(self.translate(iova, length, "read"))
        self.bytes_transferred += length
        return data
