"""DMA buffers: page-aligned anonymous memory that a device can reach through the IOMMU.

A :class:`DmaBuffer` is an anonymous private ``mmap`` (so it is page aligned and zero filled),
optionally backed by 2 MiB hugepages. ``view`` is a zero-copy memoryview over it, ``vaddr`` the
user virtual address the IOMMU backends pin and map.

Hugepages (``hugepages=``):
- ``False``: 4 KiB pages;
- ``True`` / ``"require"``: ``MAP_HUGETLB``; fails with :class:`HostNotReady` naming the fix
  (``/proc/sys/vm/nr_hugepages``) when the kernel has no free hugepages;
- ``"prefer"``: try hugepages, fall back to 4 KiB pages and say why in ``fallback_reason``.

Pinned DMA memory counts against ``RLIMIT_MEMLOCK``; :func:`check_memlock` turns a too-small limit
into an error with the numbers and the ``ulimit -l`` fix *before* the kernel answers ENOMEM.

Pattern fill and verify (:mod:`pciauth.dma.pattern`) work on these views.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import mmap
import os
import resource

from pciauth.errors import DmaError, HostNotReady, UsageError

PAGE_SIZE = mmap.PAGESIZE
HUGEPAGE_SIZE = 2 << 20
#: Linux MAP_HUGETLB (same value on x86-64 and arm64); Python's mmap module does not export it.
MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)
#: The largest buffer pciauth allocates; a bigger request is a typo, not a test.
MAX_BUFFER = 1 << 40

_HUGEPAGE_MODES = {False: "off", None: "off", True: "require", "off": "off", "require": "require",
                   "prefer": "prefer"}


def round_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def format_size(n: int) -> str:
    """``4096`` -> ``"4 KiB"``; exact binary units when they fit, bytes otherwise."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _hugepage_hint() -> str:
    return (
        "reserve hugepages: `echo 64 | sudo tee /proc/sys/vm/nr_hugepages` "
        "(or hugepages=N on the kernel command line), or drop --hugepages"
    )


class DmaBuffer:
    """A page-aligned anonymous buffer for DMA.

    ``length`` is rounded up to the page size (2 MiB with hugepages). ``private`` records the
    memory attribute the buffer was made for (True: private/T=1 memory, False: shared/T=0,
    None: not decided yet); the emulated IOMMU checks it against the IOVA window.
    """

    def __init__(self, length: int, hugepages: bool | str = False, *, private: bool | None = None) -> None:
        if not isinstance(length, int) or isinstance(length, bool):
            raise UsageError(f"buffer length must be an integer, not {type(length).__name__}")
        if length <= 0:
            raise UsageError(f"buffer length must be positive (got {length})")
        if length > MAX_BUFFER:
            raise UsageError(f"buffer length {length} is larger than the {format_size(MAX_BUFFER)} limit")
        mode = _HUGEPAGE_MODES.get(hugepages) if isinstance(hugepages, (bool, str, type(None))) else None
        if mode is None:
            raise UsageError(f"hugepages must be False, True, 'require' or 'prefer' (got {hugepages!r})")
        self.requested_length = length
        self.private = private
        self.hugepages = False
        self.fallback_reason: str | None = None
        self._mmap: mmap.mmap | None = None
        if mode != "off":
            try:
                self._mmap = self._map(round_up(length, HUGEPAGE_SIZE), MAP_HUGETLB)
                self.hugepages = True
            except OSError as e:
                reason = f"no free 2 MiB hugepages ({e.strerror or e})"
                if mode == "require":
                    raise HostNotReady(
                        f"cannot allocate {format_size(round_up(length, HUGEPAGE_SIZE))} of hugepages: {reason}",
                        errno=e.errno,
                        hint=_hugepage_hint(),
                    ) from None
                self.fallback_reason = reason
        if self._mmap is None:
            try:
                self._mmap = self._map(round_up(length, PAGE_SIZE), 0)
            except OSError as e:
                raise DmaError(
                    f"cannot allocate a {format_size(round_up(length, PAGE_SIZE))} DMA buffer: {e.strerror or e}",
                    errno=e.errno,
                ) from None
        self.length = len(self._mmap)
        self.view = memoryview(self._mmap)
        # The address of the first byte; the ctypes object is dropped at once, releasing its export.
        self.vaddr = ctypes.addressof(ctypes.c_char.from_buffer(self._mmap))

    @staticmethod
    def _map(length: int, extra_flags: int) -> mmap.mmap:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | extra_flags
        return mmap.mmap(-1, length, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)

    @property
    def page_size(self) -> int:
        return HUGEPAGE_SIZE if self.hugepages else PAGE_SIZE

    @property
    def closed(self) -> bool:
        return self._mmap is None

    def close(self) -> None:
        """Unmap the memory. Views handed out must be released first (they are checked)."""
        if self._mmap is None:
            return
        self.view.release()
        try:
            self._mmap.close()
        except BufferError:
            raise DmaError(
                "DMA buffer still has live views (a memoryview slice was kept); release them first"
            ) from None
        self._mmap = None

    def __enter__(self) -> DmaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "hugepages" if self.hugepages else "pages"
        state = "closed" if self.closed else f"vaddr=0x{self.vaddr:x}"
        return f"<DmaBuffer {format_size(self.length)} {kind} {state}>"


# ---------------------------------------------------------------------------------------------
# RLIMIT_MEMLOCK

def memlock_limit() -> tuple[int, int]:
    """(soft, hard) RLIMIT_MEMLOCK in bytes; ``resource.RLIM_INFINITY`` when unlimited."""
    return resource.getrlimit(resource.RLIMIT_MEMLOCK)


def _has_ipc_lock() -> bool:
    """True when this process may lock memory beyond its limit (CAP_IPC_LOCK, e.g. root)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 14))  # CAP_IPC_LOCK
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _limit_text(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else format_size(value)


def memlock_error(needed: int, *, errno: int | None = None, limit: int | None = None) -> HostNotReady:
    """The error to raise when pinning ``needed`` bytes exceeds RLIMIT_MEMLOCK."""
    soft = memlock_limit()[0] if limit is None else limit
    return HostNotReady(
        f"RLIMIT_MEMLOCK is {_limit_text(soft)}, the DMA mappings need {format_size(needed)} "
        "of pinned memory",
        errno=errno if errno is not None else errno_mod.ENOMEM,
        hint="raise it with `ulimit -l unlimited` (or memlock in /etc/security/limits.conf), "
        "or run as root; see `pciauth doctor`",
    )


def check_memlock(needed: int, *, limit: int | None = None, privileged: bool | None = None) -> None:
    """Raise :class:`HostNotReady` when ``needed`` pinned bytes exceed RLIMIT_MEMLOCK.

    A process with CAP_IPC_LOCK (root) is not limited. ``limit``/``privileged`` override the
    values read from the process (for tests).
    """
    soft = memlock_limit()[0] if limit is None else limit
    if privileged is None:
        privileged = _has_ipc_lock()
    if privileged or soft == resource.RLIM_INFINITY:
        return
    if needed > soft:
        raise memlock_error(needed, limit=soft)


def _approx(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
    return f"{n} bytes"


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None when it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_available(needed: int, *, available: int | None = None) -> None:
    """Refuse buffers that would not fit in memory (a typo like ``--size 100G``), before the
    kernel's OOM killer decides instead. Unknown availability passes."""
    avail = available_memory() if available is None else available
    if avail is not None and needed > avail * 9 // 10:
        raise HostNotReady(
            f"the DMA buffers need {_approx(needed)}, but only {_approx(avail)} of memory is available",
            hint="use a smaller --size: the copy check maps a source and a destination buffer of that size",
        )

