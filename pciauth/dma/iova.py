"""The IOVA allocator and the private IOVA threshold X.

A device's DMA addresses (IOVAs) are split by the threshold X: IOVAs in ``[0, X)`` are *private*
(a TDISP device issues them as T=1 requests, reaching private memory) and IOVAs in ``[X, top)``
are *shared* (T=0, reaching shared memory). X is kept in 2 MiB units as in the AMD SEV-TIO device
table entry (``vtom``, 31 bits); the default, all ones, means *everything is private*.

:class:`IovaAllocator` hands out IOVAs from the window a mapping belongs to, inside the ranges the
kernel reports for the device, and refuses a fixed IOVA in the wrong window. Changing X while
mappings exist is refused (:class:`ThresholdChangeRefused`): DMA behaviour must never change under
live mappings. The supported transition is to unmap everything (or reset the device), then change
X. :class:`ThresholdPolicy` does that change for the allocator, the IOMMU backend and the platform
knob together.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from pciauth.errors import DmaError, RefusedError, UsageError

THRESHOLD_UNIT = 2 << 20
THRESHOLD_BITS = 31
THRESHOLD_ALL_ONES = (1 << THRESHOLD_BITS) - 1
PAGE_SIZE = 4096
HUGE_ALIGN = 2 << 20
IOVA_LIMIT = 1 << 64

_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"^(0x[0-9a-f]+|\d+)\s*([kmgtp]?)(i?b)?$")
_ALL_WORDS = {"all", "all-ones", "allones", "max", "private", "default"}


def parse_size(text: str, what: str = "size") -> int:
    """``"4096"``, ``"64K"``, ``"2MiB"``, ``"1G"``, ``"0x1000"`` -> bytes (binary suffixes)."""
    m = _SIZE_RE.match(str(text).strip().lower())
    if not m:
        raise UsageError(f"bad {what} {text!r}: use a number with an optional K, M, G or T suffix")
    return int(m.group(1), 0) * _SUFFIXES[m.group(2)]


@dataclass(frozen=True)
class Threshold:
    """The private IOVA threshold X, in 2 MiB units; ``Threshold.ALL`` (all ones) = all private."""

    units: int

    ALL = None  # replaced below by Threshold(THRESHOLD_ALL_ONES)

    def __post_init__(self) -> None:
        if not isinstance(self.units, int) or not 0 <= self.units <= THRESHOLD_ALL_ONES:
            raise UsageError(
                f"IOVA threshold {self.units!r} is out of range: 0 to 0x{THRESHOLD_ALL_ONES:x} "
                "units of 2 MiB"
            )

    @property
    def all_ones(self) -> bool:
        return self.units == THRESHOLD_ALL_ONES

    @property
    def bytes(self) -> int | None:
        """X in bytes; None for all ones (no shared window)."""
        return None if self.all_ones else self.units * THRESHOLD_UNIT

    def is_private(self, iova: int) -> bool:
        return self.all_ones or iova < self.units * THRESHOLD_UNIT

    @classmethod
    def from_bytes(cls, value: int) -> Threshold:
        if value < 0 or value % THRESHOLD_UNIT:
            raise UsageError(f"IOVA threshold 0x{value:x} is not a multiple of 2 MiB (0x200000)")
        return cls(value // THRESHOLD_UNIT)

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Parse a threshold from the command line.

        - ``all`` (also ``all-ones``, ``max``): all ones, everything private;
        - a plain number (``512``, ``0x200``): 2 MiB units, the value of the hardware field;
        - a number with a size suffix (``1G``, ``512MiB``, ``4096M``) or ``bytes:N``
          (``bytes:0x40000000``): bytes, a multiple of 2 MiB;
        - a number with ``u`` (``512u``): 2 MiB units, explicitly.
        """
        t = str(text).strip().lower().replace("_", "")
        if t.startswith("bytes:"):
            return cls.from_bytes(parse_size(t[6:], "IOVA threshold"))
        if t in _ALL_WORDS:
            return cls(THRESHOLD_ALL_ONES)
        m = _SIZE_RE.match(t)
        if t.endswith("u") and re.fullmatch(r"(0x[0-9a-f]+|\d+)u", t):
            return cls(int(t[:-1], 0))
        if not m:
            raise UsageError(
                f"bad IOVA threshold {text!r}: use 'all', 2 MiB units (512) or bytes with a suffix (1G)"
            )
        if not m.group(2) and not m.group(3):
            units = int(m.group(1), 0)
            if units > THRESHOLD_ALL_ONES:
                raise UsageError(
                    f"IOVA threshold {text} units is larger than the 31-bit field; for bytes add a "
                    "suffix (B, K, M, G)"
                )
            return cls(units)
        return cls.from_bytes(parse_size(t, "IOVA threshold"))

    def describe(self) -> str:
        if self.all_ones:
            return "all ones (everything private)"
        return f"0x{self.bytes:x} ({self.units} x 2 MiB)"

    def to_dict(self) -> dict:
        return {"units": self.units, "bytes": self.bytes, "all_ones": self.all_ones}


Threshold.ALL = Threshold(THRESHOLD_ALL_ONES)


class ThresholdChangeRefused(RefusedError):
    """Changing X with live mappings: the DMA behaviour would change under them."""

    def __init__(self, message: str, *, live: list | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.live = live or []


@dataclass
class Allocation:
    iova: int
    length: int
    private: bool
    tag: str = ""

    @property
    def end(self) -> int:
        return self.iova + self.length

    def describe(self) -> str:
        window = "private" if self.private else "shared"
        tag = f" {self.tag}" if self.tag else ""
        return f"0x{self.iova:x}+0x{self.length:x} {window}{tag}"


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def normalize_ranges(ranges, page_size: int = PAGE_SIZE) -> list[tuple[int, int]]:
    """Check kernel-reported inclusive ranges; sort, merge and trim them to whole pages."""
    out: list[tuple[int, int]] = []
    for i, r in enumerate(ranges):
        try:
            start, last = (int(x) for x in r)
        except (TypeError, ValueError):
            raise DmaError(f"IOVA range #{i} {r!r} is not a (start, last) pair") from None
        if not 0 <= start <= last < IOVA_LIMIT:
            raise DmaError(f"IOVA range #{i} (0x{start:x}, 0x{last:x}) is invalid")
        lo, hi = _align_up(start, page_size), (last + 1) // page_size * page_size
        if hi > lo:
            out.append((lo, hi - 1))
    out.sort()
    merged: list[tuple[int, int]] = []
    for start, last in out:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((start, last))
    if not merged:
        raise DmaError("the device has no usable IOVA range (the kernel reported none)")
    return merged


@dataclass
class IovaAllocator:
    """IOVAs from the kernel-reported ``ranges`` (inclusive ``(start, last)``), split by X.

    ``floor``: the lowest IOVA handed out automatically (default one page, so that a device that
    ignores the address and writes to 0 is never mistaken for a correct one).
    """

    ranges: list
    threshold: Threshold = field(default_factory=lambda: Threshold.ALL)
    page_size: int = PAGE_SIZE
    floor: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if isinstance(self.threshold, int):
            self.threshold = Threshold(self.threshold)
        self.ranges = normalize_ranges(self.ranges, self.page_size)
        self._allocs: dict[int, Allocation] = {}
        self._starts: list[int] = []  # sorted; _ends[i] is the end of the allocation at _starts[i]
        self._ends: list[int] = []
        self._hints: dict[int, int] = {}  # range start -> where the next search begins

    # -- windows -------------------------------------------------------------------------------
    @property
    def top(self) -> int:
        """One past the highest usable IOVA."""
        return self.ranges[-1][1] + 1

    def window(self, private: bool) -> tuple[int, int]:
        """The half-open window ``[lo, hi)`` for private or shared IOVAs."""
        x = self.top if self.threshold.all_ones else min(self.threshold.bytes, self.top)
        return (0, x) if private else (x, self.top)

    def window_ranges(self, private: bool) -> list[tuple[int, int]]:
        """The kernel ranges clipped to a window, inclusive ``(start, last)``."""
        lo, hi = self.window(private)
        return [(max(s, lo), min(last, hi - 1)) for s, last in self.ranges if max(s, lo) <= min(last, hi - 1)]

    def allowed_ranges(self) -> list[tuple[int, int]]:
        """Every IOVA this allocator may hand out (both windows): for ``allow_iovas``."""
        return self.window_ranges(True) + self.window_ranges(False)

    def is_private(self, iova: int) -> bool:
        return self.threshold.is_private(iova)

    # -- allocation ----------------------------------------------------------------------------
    def live(self) -> list[Allocation]:
        return [self._allocs[s] for s in self._starts]

    def _check_length(self, length: int) -> int:
        if not isinstance(length, int) or length <= 0:
            raise UsageError(f"IOVA length must be a positive integer (got {length!r})")
        return _align_up(length, self.page_size)

    def _fits(self, lo: int, hi: int, length: int, align: int) -> int | None:
        """First-fit in ``[lo, hi)`` avoiding live allocations; None when nothing fits.

        A tight loop over the gaps between the sorted allocations (``align`` is a power of two).
        """
        starts, ends = self._starts, self._ends
        mask = align - 1
        cur = (lo + mask) & ~mask
        i = bisect.bisect_right(starts, cur) - 1
        if i >= 0 and ends[i] > cur:
            cur = (ends[i] + mask) & ~mask
        i += 1
        n = len(starts)
        while cur + length <= hi:
            if i >= n or starts[i] >= cur + length:
                return cur
            end = ends[i]
            if end > cur:
                cur = (end + mask) & ~mask
            i += 1
        return None

    def alloc(
        self, length: int, *, private: bool = True, align: int | None = None, limit: int | None = None,
        tag: str = "",
    ) -> int:
        """Take ``length`` bytes of IOVA from the private or shared window.

        ``align`` defaults to 2 MiB for multiples of 2 MiB (IOMMU superpages), else a page.
        ``limit``: one past the highest IOVA the device can address (its DMA mask).
        """
        length = self._check_length(length)
        if align is None:
            align = HUGE_ALIGN if length % HUGE_ALIGN == 0 else self.page_size
        if align <= 0 or align & (align - 1) or align % self.page_size:
            raise UsageError(f"IOVA alignment 0x{align:x} must be a power of two and a page multiple")
        for start, last in self.window_ranges(private):
            lo, hi = max(start, self.floor), last + 1
            if limit is not None:
                hi = min(hi, limit)
            if hi <= lo:
                continue
            # Next fit from where the last allocation of this range ended (rewound by frees), so
            # that many live mappings do not make every allocation walk them all; first fit
            # from the start of the range when that finds nothing.
            hint = self._hints.get(lo, lo)
            iova = self._fits(hint, hi, length, align) if hint > lo else None
            if iova is None:
                iova = self._fits(lo, hi, length, align)
            if iova is not None:
                self._hints[lo] = iova + length
                return self._insert(Allocation(iova, length, private, tag))
        name = "private" if private else "shared"
        lo, hi = self.window(private)
        extra = f" below 0x{limit:x}" if limit is not None else ""
        hint = None
        if limit is not None and lo >= limit:
            hint = (
                f"the device reaches only IOVAs below 0x{limit:x} (its DMA mask): set a threshold "
                "below that to have a shared window it can reach"
            )
        elif hi <= lo:
            hint = (
                "the shared window is empty: set a threshold below the top of the IOVA space, "
                "e.g. --threshold 1G"
                if not private
                else "the private window is empty: raise the threshold"
            )
        raise DmaError(
            f"no free {name} IOVA space for 0x{length:x} bytes{extra} (window [0x{lo:x}, 0x{hi:x}), "
            f"{len(self._allocs)} live mappings)",
            hint=hint,
        )

    def reserve(self, iova: int, length: int, *, private: bool, tag: str = "") -> int:
        """Take a fixed ``iova``; refused when it is in the wrong window, misaligned or in use."""
        length = self._check_length(length)
        if not isinstance(iova, int) or iova < 0 or iova % self.page_size:
            raise UsageError(f"fixed IOVA {iova!r} is not aligned to 0x{self.page_size:x}")
        end = iova + length
        lo, hi = self.window(private)
        name = "private" if private else "shared"
        if not (lo <= iova and end <= hi):
            raise RefusedError(
                f"IOVA 0x{iova:x}+0x{length:x} is not in the {name} window [0x{lo:x}, 0x{hi:x}) "
                f"(threshold {self.threshold.describe()})",
                hint="pick an IOVA below the threshold for private buffers, at or above it for shared ones",
            )
        if not any(s <= iova and end - 1 <= last for s, last in self.ranges):
            raise DmaError(f"IOVA 0x{iova:x}+0x{length:x} is outside the ranges the kernel reports")
        i = bisect.bisect_left(self._starts, end)
        if i > 0 and self._allocs[self._starts[i - 1]].end > iova:
            other = self._allocs[self._starts[i - 1]]
            raise DmaError(f"IOVA 0x{iova:x}+0x{length:x} overlaps the live mapping {other.describe()}")
        return self._insert(Allocation(iova, length, private, tag))

    def _insert(self, a: Allocation) -> int:
        i = bisect.bisect_left(self._starts, a.iova)
        self._starts.insert(i, a.iova)
        self._ends.insert(i, a.end)
        self._allocs[a.iova] = a
        return a.iova

    def get(self, iova: int) -> Allocation | None:
        return self._allocs.get(iova)

    def free(self, iova: int) -> int:
        """Give back the allocation starting at ``iova``; returns its length."""
        a = self._allocs.pop(iova, None)
        if a is None:
            raise DmaError(f"IOVA 0x{iova:x} is not allocated")
        i = bisect.bisect_left(self._starts, iova)
        del self._starts[i]
        del self._ends[i]
        for lo, hint in self._hints.items():
            if lo <= iova < hint:
                self._hints[lo] = iova  # the freed space is reused first
        return a.length

    # -- threshold -----------------------------------------------------------------------------
    def check_threshold_change(self, new: Threshold) -> None:
        """Raise :class:`ThresholdChangeRefused` when mappings are live and X would change."""
        if new == self.threshold or not self._allocs:
            return
        live = self.live()
        shown = ", ".join(a.describe() for a in live[:4]) + (", ..." if len(live) > 4 else "")
        raise ThresholdChangeRefused(
            f"cannot change the IOVA threshold from {self.threshold.describe()} to {new.describe()}: "
            f"{len(live)} mapping(s) live ({shown}); DMA behaviour must not change under live mappings",
            live=live,
            hint="unmap everything (or reset the device), then change the threshold",
        )

    def set_threshold(self, new: Threshold | int) -> None:
        new = new if isinstance(new, Threshold) else Threshold(new)
        self.check_threshold_change(new)
        self.threshold = new
        self._hints.clear()


class ThresholdPolicy:
    """Changes X for the allocator, the IOMMU backend and the platform knob together.

    The backend hears about X through ``set_threshold(units)`` when it has one (the emulated
    IOMMU enforces T=1/T=0 like hardware) and ``allow_iovas(ranges)`` (iommufd restricts the IOAS
    so kernel-chosen IOVAs stay inside the windows). ``knob`` is a
    :class:`pciauth.dma.threshold.PlatformKnob` or None.
    """

    def __init__(self, allocator: IovaAllocator, backend=None, knob=None) -> None:
        self.allocator = allocator
        self.backend = backend
        self.knob = knob

    @property
    def threshold(self) -> Threshold:
        return self.allocator.threshold

    @property
    def enforcement(self) -> str:
        if self.knob is not None:
            return f"platform ({self.knob.describe()})"
        if self.backend is not None and hasattr(self.backend, "set_threshold"):
            return f"{getattr(self.backend, 'name', 'iommu')} IOMMU"
        return "pciauth (allocator only: no platform knob on this host)"

    def set(self, new: Threshold | int) -> Threshold:
        """Change X; refused while mappings exist (in pciauth or, for the emulated IOMMU, there)."""
        new = new if isinstance(new, Threshold) else Threshold(new)
        self.allocator.check_threshold_change(new)
        if self.backend is not None and hasattr(self.backend, "set_threshold"):
            self.backend.set_threshold(new.units)
        if self.knob is not None:
            self.knob.write(new)
        self.allocator.set_threshold(new)
        self.apply_windows()
        return new

    def apply_windows(self) -> None:
        if self.backend is not None and hasattr(self.backend, "allow_iovas"):
            self.backend.allow_iovas(self.allocator.allowed_ranges())

    def to_dict(self) -> dict:
        a = self.allocator
        return {
            "threshold": self.threshold.to_dict(),
            "enforcement": self.enforcement,
            "private_window": list(a.window(True)),
            "shared_window": list(a.window(False)),
            "iova_ranges": [list(r) for r in a.ranges],
            "live_mappings": len(a.live()),
        }
