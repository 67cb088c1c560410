"""Waiting for a DOE status bit without wasting time or a CPU core.

A DOE response to a small object (a discovery entry, GET_VERSION) is usually ready within
microseconds; a signature from a slow device can take hundreds of milliseconds. The kernel
sleeps 1/128 s between polls, which adds up to 8 ms to every exchange. pciauth instead spins
for a short while (each poll is one config read), then sleeps with an exponentially growing
delay capped at :attr:`Backoff.max_sleep`, so a long wait costs a handful of wake-ups per
millisecond at most and never a whole core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """The polling schedule: spin for ``spin`` seconds, then sleep ``first_sleep`` doubling
    up to ``max_sleep`` between polls."""

    spin: float = 50e-6
    first_sleep: float = 20e-6
    max_sleep: float = 2e-3
    #: at most this many polls without sleeping, whatever the clock says (a clock that does not
    #: move while nothing sleeps, such as a test's fake clock or a coarse one, still ends the spin)
    max_spins: int = 1000

    def delays(self, start: float) -> _DelayIter:
        return _DelayIter(self, start)


class _DelayIter:
    def __init__(self, backoff: Backoff, start: float) -> None:
        self.backoff = backoff
        self.start = start
        self.sleep = backoff.first_sleep
        self.spins = 0

    def next_delay(self, now: float) -> float:
        if now - self.start < self.backoff.spin and self.spins < self.backoff.max_spins:
            self.spins += 1
            return 0.0
        delay = self.sleep
        self.sleep = min(self.sleep * 2, self.backoff.max_sleep)
        return delay


DEFAULT_BACKOFF = Backoff()


def poll_until(
    read: Callable[[], int],
    done: Callable[[int], bool],
    timeout: float,
    backoff: Backoff = DEFAULT_BACKOFF,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, int, int]:
    """Call ``read()`` until ``done(value)`` or ``timeout`` seconds pass.

    Returns ``(satisfied, last_value, polls)``. The first read happens at once; the last one
    happens at (or just after) the deadline, so a condition that becomes true just in time
    is seen.
    """
    start = clock()
    deadline = start + timeout
    delays = backoff.delays(start)
    polls = 0
    while True:
        value = read()
        polls += 1
        if done(value):
            return True, value, polls
        now = clock()
        if now >= deadline:
            return False, value, polls
        delay = delays.next_delay(now)
        if delay:
            sleep(min(delay, max(deadline - now, 0.0)))
