"""Every fault knob gives a specific, clean error within the timeout; the mailbox works after."""

from __future__ import annotations

import time

import pytest

from pciauth.doe import DoeTransport
from pciauth.emu import FAULTS
from pciauth.errors import DoeError, DoeTimeout

from .helpers import cma_mailbox, make_device

TIMEOUT = 0.25

#: fault -> (error class, words the message must contain)
EXPECTED = {
    "stuck_busy": (DoeTimeout, "stayed BUSY"),
    "error": (DoeError, "set ERROR for the request"),
    "never_ready": (DoeTimeout, "DATA_OBJECT_READY never set"),
    "wrong_length": (DoeError, "the response ended before the"),
    "short_length": (DoeError, "more data than the response length field"),
    "huge_length": (DoeError, "above the bound"),
    "wrong_type": (DoeError, "the request was 0001:01"),
    "error_on_read": (DoeError, "set ERROR while the response was read"),
}


def test_every_fault_is_covered():
    assert set(EXPECTED) == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_gives_clean_error_then_mailbox_recovers(fault):
    dev = make_device(0, fault=fault, fault_after=3)  # discovery takes the first 3 exchanges
    mb = cma_mailbox(dev, timeout=TIMEOUT)
    transport = DoeTransport(mb)
    exc_type, words = EXPECTED[fault]
    t0 = time.monotonic()
    with pytest.raises(exc_type) as info:
        transport.exchange(b"\x12\x84\x00\x00" + b"z" * 16)
    elapsed = time.monotonic() - t0
    assert words in str(info.value)
    assert elapsed < 2 * TIMEOUT + 0.1  # the timeout, plus the abort's own bound at most
    assert transport.exchange(b"\x12\x84\x00\x00")[:5] == b"P\x12\x84\x00\x00"


def test_error_on_read_is_named():
    dev = make_device(0, fault="error_on_read", fault_after=3)
    mb = cma_mailbox(dev, timeout=TIMEOUT)
    with pytest.raises(DoeError, match="ERROR while the response was read"):
        mb.exchange_object(1, 1, b"q" * 40)


def test_stuck_busy_with_the_spec_timeout_is_bounded():
    dev = make_device(0, fault="stuck_busy", fault_after=3)
    mb = cma_mailbox(dev)  # default: the 1 s spec timeout
    t0 = time.monotonic()
    with pytest.raises(DoeTimeout):
        mb.exchange_object(1, 1, b"x")
    assert 1.0 <= time.monotonic() - t0 < 1.5
    assert mb.exchange_object(1, 1, b"x")[:2] == b"Px"


def test_persistent_fault_keeps_failing_cleanly():
    dev = make_device(0, fault="never_ready", fault_count=-1, fault_after=3)
    mb = cma_mailbox(dev, timeout=0.05)
    for _ in range(3):
        with pytest.raises(DoeTimeout):
            mb.exchange_object(1, 1, b"x")


def test_unknown_fault_is_a_usage_error():
    from pciauth.errors import UsageError

    with pytest.raises(UsageError, match="unknown DOE fault"):
        make_device(0, fault="melt")
