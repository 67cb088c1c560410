"""Helpers for the emulated-device tests: a device whose CMA protocol echoes the request."""

from __future__ import annotations

from pciauth.doe import DoeMailbox, find_mailbox, open_mailboxes
from pciauth.emu import EmulatedDevice


def echo(payload: bytes, secured: bool) -> bytes:
    """Stand-in for the SPDM responder: a marker byte (secured or not), then the request."""
    return (b"S" if secured else b"P") + payload


def make_device(index: int = 0, **knobs) -> EmulatedDevice:
    return EmulatedDevice(index, cma_handler=echo, **knobs)


def cma_mailbox(device: EmulatedDevice, **kw) -> DoeMailbox:
    return find_mailbox(open_mailboxes(device.config, **kw))
