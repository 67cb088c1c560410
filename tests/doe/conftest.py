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


@pytest.fixture(scope="session", autouse=True)
def _emu_pki_cache(tmp_path_factory):
    """The emulated device's PKI goes to a temporary cache, never the user's ~/.cache."""
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
