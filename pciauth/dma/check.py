"""DMA checks: make the device move bytes into a window and verify every byte.

Used by ``pciauth dma``, ``pciauth run`` and the Python API. Three checks:

- :func:`copy_check`: fill a source buffer with a pattern, the device copies it to a destination
  buffer in the same window, every destination byte is verified (drivers that can copy);
- :func:`device_write_check`: the device writes a structure it defines (NVMe Identify) into a
  buffer pre-filled with a canary; the driver's checks must pass and every byte after the
  structure must still hold the canary;
- :func:`enforcement_check`: on an IOMMU that models T=1/T=0 (the emulated one), a DMA that
  would cross into the wrong kind of memory must fault and transfer nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pciauth.dma.buffer import DmaBuffer
from pciauth.dma.pattern import VerifyResult, make_pattern
from pciauth.errors import DmaError, PciauthError, UsageError

#: Bytes per device request in a copy check, so progress moves and faults stay local.
COPY_SEGMENT = 64 << 20


@dataclass
class CheckResult:
    """The outcome of one check; ``to_dict`` is the stable JSON form."""

    kind: str
    window: str
    size: int
    iterations: int = 0
    bytes_moved: int = 0
    seconds: float = 0.0
    verify: VerifyResult | None = None
    iovas: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    error: dict | None = None
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and (self.verify is None or self.verify.ok) and all(self.checks.values())

    @property
    def throughput(self) -> float:
        """Bytes per second of device time (copies only, fill and verify excluded)."""
        return self.bytes_moved / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "kind": self.kind,
            "window": self.window,
            "size": self.size,
            "iterations": self.iterations,
            "bytes_moved": self.bytes_moved,
            "seconds": round(self.seconds, 6),
            "throughput_mib_s": round(self.throughput / (1 << 20), 2),
            "verify": self.verify.to_dict() if self.verify else None,
            "iovas": {k: f"0x{v:x}" for k, v in self.iovas.items()},
            "checks": self.checks,
            "error": self.error,
            "notes": self.notes,
        }


def _window(private: bool) -> str:
    return "private" if private else "shared"


def _error_dict(exc: PciauthError) -> dict:
    return exc.to_dict()


def _release(session, *mappings, quiet: bool) -> None:
    """Free ``mappings`` (None ones skipped), every one even when one fails.

    ``quiet`` when an exception (Ctrl-C, a bug) is already on its way out: a memoryview its
    traceback still holds makes the buffer's close refuse, and that refusal must not replace the
    real error; the mapping is gone from the IOMMU and the allocator either way, and the memory
    goes with the last view."""
    first: DmaError | None = None
    for m in mappings:
        if m is None:
            continue
        try:
            session.free(m)
        except DmaError as exc:
            first = first or exc
    if first is not None and not quiet:
        raise first


def _buffer_notes(result: CheckResult, *mappings) -> None:
    for m in mappings:
        reason = getattr(m.buffer, "fallback_reason", None)
        note = f"{m.tag or 'buffer'}: 4 KiB pages instead of hugepages: {reason}"
        if reason and note not in result.notes:
            result.notes.append(note)


def copy_check(driver, session, size: int, *, private: bool = True, pattern: str = "offset",
               iterations: int = 1, timeout: float = 10.0,
               progress: Callable[[int], None] | None = None) -> CheckResult:
    """Copy ``size`` bytes ``iterations`` times inside one window and verify every byte."""
    if size <= 0 or iterations <= 0:
        raise UsageError(f"size and iterations must be positive (got {size}, {iterations})")
    result = CheckResult("copy", _window(private), size)
    src = session.alloc(size, private=private, tag="src")
    try:
        dst = session.alloc(size, private=private, tag="dst")
    except BaseException:
        session.free(src)
        raise
    result.iovas = {"src": src.iova, "dst": dst.iova}
    _buffer_notes(result, src, dst)
    zero = make_pattern("zero")
    segment = min(COPY_SEGMENT, getattr(driver, "segment", COPY_SEGMENT))
    finished = False
    try:
        for it in range(iterations):
            pat = make_pattern(pattern, seed=0x5EED + it)  # a new seed each time: no stale passes
            pat.fill(src.view[:size])
            zero.fill(dst.view[:size])
            for off in range(0, size, segment):
                n = min(segment, size - off)
                t0 = time.perf_counter()
                driver.copy(src.iova + off, dst.iova + off, n, timeout=timeout)
                result.seconds += time.perf_counter() - t0
                result.bytes_moved += n
                if progress:
                    progress(result.bytes_moved)
            result.iterations += 1
            result.verify = pat.verify(dst.view[:size])
            if not result.verify.ok:
                break
        finished = True
    except DmaError as exc:
        result.error = _error_dict(exc)
        finished = True
    finally:
        _release(session, dst, src, quiet=not finished)
    return result


def device_write_check(driver, session, size: int, *, private: bool = True, iterations: int = 1,
                       timeout: float = 10.0, progress: Callable[[int], None] | None = None) -> CheckResult:
    """The device writes its own structure; driver checks pass, the canary after it survives,
    and every iteration returns the same bytes."""
    result = CheckResult("device-write", _window(private), size)
    dst = session.alloc(max(size, 4096), private=private, tag="dst")
    result.iovas = {"dst": dst.iova}
    _buffer_notes(result, dst)
    canary = make_pattern("offset", seed=0xCA7A)
    first: bytes | None = None
    finished = False
    try:
        for _ in range(iterations):
            canary.fill(dst.view)
            t0 = time.perf_counter()
            written = driver.device_write(dst.iova, timeout=timeout)
            result.seconds += time.perf_counter() - t0
            result.bytes_moved += written.length
            result.iterations += 1
            result.checks.update(written.checks)
            rest = canary.verify(dst.view[written.length :], offset=written.length)
            result.verify = VerifyResult(dst.length, rest.mismatches,
                                         None if rest.ok else rest.first_mismatch + written.length,
                                         rest.expected, rest.actual)
            data = bytes(dst.view[: written.length])
            first = data if first is None else first
            result.checks["same_data_every_time"] = data == first
            if progress:
                progress(result.iterations * size)  # the caller's total is size x iterations
            if not result.ok:
                break
        finished = True
    except DmaError as exc:
        result.error = _error_dict(exc)
        finished = True
    finally:
        _release(session, dst, quiet=not finished)
    return result


def run_check(driver, session, size: int, **kw) -> CheckResult:
    """:func:`copy_check` or :func:`device_write_check`, whichever the driver supports."""
    if getattr(driver, "can_copy", False):
        return copy_check(driver, session, size, **kw)
    kw.pop("pattern", None)
    return device_write_check(driver, session, size, **kw)


#: The enforcement cases: (name, source memory private?, destination memory private?,
#: destination IOVA window private?, expected fault reason).
ENFORCEMENT_CASES = [
    ("t1-to-shared", True, False, True, "t1-to-shared"),
    ("t0-to-private", False, True, False, "t0-to-private"),
]


def enforcement_check(driver, session, *, size: int = 4096, timeout: float = 5.0) -> CheckResult:
    """On an IOMMU that models T=1/T=0, a DMA into the wrong kind of memory must fault.

    The wrong-window buffer is mapped straight through the backend at an IOVA the allocator
    reserved (the allocator itself would refuse it). Needs a threshold with both windows.
    """
    result = CheckResult("enforcement", "both", size)
    backend = session.backend
    if not hasattr(backend, "set_threshold"):
        result.error = {"type": "Unavailable", "message": f"the {backend.name} IOMMU does not model T=1/T=0"}
        return result
    try:
        _enforcement_cases(driver, session, result, size, timeout)
    except DmaError as exc:
        result.error = _error_dict(exc)
    return result


def _enforcement_cases(driver, session, result: CheckResult, size: int, timeout: float) -> None:
    backend = session.backend
    for name, src_private, dst_private, dst_window_private, reason in ENFORCEMENT_CASES:
        # Each resource is released on every path, even when a later allocation of the case fails
        # (an empty window, memlock): the session must come out of the check as it went in.
        src = session.alloc(size, private=src_private, tag="src")
        iova = wrong = None
        mapped = finished = False
        try:
            iova = session.allocator.alloc(size, private=dst_window_private, limit=session.dma_limit, tag="wrong")
            wrong = DmaBuffer(size, private=dst_private)
            make_pattern("0x5a").fill(wrong.view)
            make_pattern("inc").fill(src.view)
            backend.map(wrong, iova)
            mapped = True
            try:
                driver.copy(src.iova, iova, size, timeout=timeout)
                result.checks[f"{name}_faults"] = False
            except DmaError as exc:
                result.checks[f"{name}_faults"] = getattr(exc, "reason", None) == reason
            result.checks[f"{name}_transfers_nothing"] = make_pattern("0x5a").verify(wrong.view).ok
            finished = True
        finally:
            if mapped:
                backend.unmap(iova, wrong.length)
            if iova is not None:
                session.allocator.free(iova)
            if wrong is not None:
                try:
                    wrong.close()
                except DmaError:
                    if finished:
                        raise
            _release(session, src, quiet=not finished)
        result.iterations += 1
