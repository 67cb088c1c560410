"""A tiny progress bar on stderr for long DMA runs (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(done)`` redraws at most ten times a second, and only once the work has taken
    ``delay`` seconds (short runs never show a bar); ``close()`` clears the line."""

    def __init__(self, total: int, label: str = "dma", *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 30, delay: float = 0.5) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.width = width
        self.delay = delay
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < self.delay or (now - self._last < 0.1 and done < self.total):
            return
        self._last = now
        frac = min(1.0, done / self.total)
        fill = int(frac * self.width)
        rate = done / max(now - self.start, 1e-9) / (1 << 20)
        self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {frac * 100:5.1f}% "
                          f"{rate:8.1f} MiB/s")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * (self.width + 40) + "\r")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
