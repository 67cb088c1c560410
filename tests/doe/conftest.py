"""Helpers for the DOE tests: an emulated device whose CMA protocol echoes the request."""

from __future__ import annotations

import pytest

from pciauth.doe import DoeMailbox, find_mailbox, open_mailboxes
from pciauth.emu import EmulatedDevice


def echo(payload: bytes, secured: bool) -> bytes:
    """Stand-in for the SPDM responder: a marker byte (secured or not), then the request."""
    return (b"S" if secured else b"P") + payload


class FakeClock:
    """A fake monotonic clock for the mailbox's ``clock``/``sleep`` seam: sleeping advances it at
    once, so a timeout of seconds takes no time; ``slept`` is the simulated wait. Each reading
    also ticks 1 us, as a real poll costs time (a frozen clock would spin forever)."""

    TICK = 1e-6

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def monotonic(self) -> float:
        self.now += self.TICK
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"sleep({seconds})"
        self.now += seconds
        self.slept += seconds

    def seam(self) -> dict:
        """The keyword arguments that put a DoeMailbox on this clock."""
        return {"clock": self.monotonic, "sleep": self.sleep}


def make_device(index: int = 0, **knobs) -> EmulatedDevice:
    return EmulatedDevice(index, cma_handler=echo, **knobs)


def cma_mailbox(device: EmulatedDevice, **kw) -> DoeMailbox:
    return find_mailbox(open_mailboxes(device.config, **kw))


@pytest.fixture
def device() -> EmulatedDevice:
    return make_device()


@pytest.fixture
def mailbox(device) -> DoeMailbox:
    return cma_mailbox(device, timeout=0.3)
