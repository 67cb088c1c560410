"""Helpers for the DOE tests: an emulated device whose CMA protocol echoes the request."""

from __future__ import annotations

import pytest

from pciauth.doe import DoeMailbox, find_mailbox, open_mailboxes
from pciauth.emu import EmulatedDevice


def echo(payload: bytes, secured: bool) -> bytes:
    """Stand-in for the SPDM responder: a marker byte (secured or not), then the request."""
    return (b"S" if secured else b"P") + payload


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
