from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.doe import CMA, DoeMailbox, DoeTransport, find_mailbox, open_mailboxes
from pciauth.doe.mailbox import (
    MAX_OBJECT_DWORDS,
    SPEC_TIMEOUT,
    STATUS_BUSY,
    STATUS_ERROR,
    STATUS_READY,
    DoeProtocol,
    bytes_to_dwords,
    decode_length,
    object_header,
)
from pciauth.emu.doe import EmulatedDoe
from pciauth.errors import DoeError, DoeTimeout, MalformedData, NotFoundError, UsageError

from .conftest import FakeClock, cma_mailbox, make_device


def test_length_field_zero_means_2_to_the_18():
    assert decode_length(0) == MAX_OBJECT_DWORDS
    assert decode_length(5) == 5
    assert object_header(1, 1, MAX_OBJECT_DWORDS)[1] == 0
    with pytest.raises(UsageError):
        object_header(1, 1, 1)


def test_discovery_lists_every_protocol_on_every_mailbox():
    dev = make_device(1)
    mbs = open_mailboxes(dev.config)
    assert [mb.offset for mb in mbs] == [0x180, 0x200]
    assert [str(p) for p in mbs[0].discover()] == ["0001:00", "0001:01", "0001:02"]
    assert [str(p) for p in mbs[1].discover()] == ["0001:00", "1e98:02"]
    assert mbs[1].discover()[1].name == "CXL table access (CDAT)"
    assert find_mailbox(mbs).offset == 0x180


def test_discovery_version_field_follows_capability_version():
    for index, want in ((0, 2), (2, 0)):  # emu:2 has a version 1 DOE capability
        dev = make_device(index, latency=0.0)
        dev.config.log = []
        mb = cma_mailbox(dev)
        mb.discover()
        base = mb.offset + 0x10
        writes = [v for (op, off, _w, v) in dev.config.log if op == "w" and off == base]
        requests = writes[2::3]  # header, header, request dword
        assert requests and all((r >> 8) & 0xFF == want for r in requests)


def test_discovery_index_loop_is_refused():
    class Looping(EmulatedDoe):
        def _discovery(self, payload):
            return [0x0001 | (1 << 24)]  # next index 1, forever

    dev = make_device()
    hook = Looping([(1, 0)], {})
    dev.config.hooks[0].hook = hook
    mb = DoeMailbox(dev.config, dev.config.hooks[0].base, timeout=0.2)
    with pytest.raises(MalformedData, match="loops back"):
        mb.discover()


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 63, 64, 1000])
def test_echo_roundtrip_pads_to_dwords(mailbox, size):
    payload = bytes(range(256)) * 4
    payload = payload[:size]
    t = DoeTransport(mailbox)
    out = t.exchange(payload)
    assert out[:1] == b"P" and out[1 : 1 + size] == payload
    assert len(out) % 4 == 0 and set(out[1 + size :]) <= {0}
    assert t.exchange(b"\x11\x84\0\0", secured=True)[:1] == b"S"


def test_access_count_is_dwords_plus_twice_read_plus_constant(device, mailbox):
    mailbox.discover()
    for size in (4, 40, 400):
        device.config.stats.reset()
        response = mailbox.exchange_object(1, 1, b"\xaa" * size)
        written = 2 + size // 4
        read = 2 + len(response) // 4
        assert device.config.stats.total <= written + 2 * read + 8


def test_missing_capability_and_bad_offsets(device):
    with pytest.raises(NotFoundError):
        DoeMailbox(device.config, 0x104 if 0x104 not in device.mailboxes else 0x150)
    with pytest.raises(UsageError):
        DoeMailbox(device.config, 0x102)
    with pytest.raises(UsageError):
        DoeMailbox(device.config, 0xFF0)
    with pytest.raises(UsageError):
        DoeMailbox(device.config, 0x100, max_object_dwords=1)


def test_request_above_bound_is_refused_before_touching_the_device(device):
    mb = cma_mailbox(device, max_object_dwords=16)
    device.config.stats.reset()
    with pytest.raises(UsageError, match="exceeds the bound"):
        mb.exchange_object(1, 1, b"x" * 64)
    assert device.config.stats.total == 0


def test_response_above_bound_is_refused(device):
    mb = cma_mailbox(device, max_object_dwords=8, timeout=0.3)
    with pytest.raises(DoeError, match="above the bound of 8"):
        mb.exchange_object(1, 1, b"x" * 24)  # request 8 dwords; echo + marker: 9
    assert mb.exchange_object(1, 1, b"ok")[:3] == b"Pok"  # aborted, works again


def test_unsupported_protocol_gets_error_then_recovers(mailbox):
    with pytest.raises(DoeError, match="set ERROR"):
        mailbox.exchange_object(0x1234, 7, b"abcd")
    assert mailbox.exchange_object(1, 1, b"abcd")[:5] == b"Pabcd"


def test_stale_error_and_stale_response_are_cleared_before_sending(device, mailbox):
    mailbox.exchange_object(1, 1, b"warm")
    hook = device.mailboxes[mailbox.offset]
    hook.error = True
    assert mailbox.exchange_object(1, 1, b"abcd")[:5] == b"Pabcd"
    hook.response, hook.read_pos = [1, 2, 3], 0  # someone left a response behind
    assert mailbox.exchange_object(1, 1, b"abcd")[:5] == b"Pabcd"


def test_first_exchange_starts_with_an_abort(device):
    mb = cma_mailbox(device)
    hook = device.mailboxes[mb.offset]
    assert hook.aborts >= 1  # discovery during find_mailbox already aborted once
    before = hook.aborts
    mb.exchange_object(1, 1, b"x")
    assert hook.aborts == before  # not once per exchange


def test_slow_device_is_polled_without_burning_a_core():
    dev = make_device(2)  # 20 ms per response
    mb = cma_mailbox(dev, timeout=1.0)
    dev.config.stats.reset()
    t0, c0 = time.monotonic(), time.process_time()
    mb.exchange_object(1, 1, b"slow")
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    assert 0.02 <= wall < 0.2
    assert dev.config.stats.reads < 80  # backoff, not a spin for 20 ms
    assert cpu < wall  # slept most of the time


def test_protocol_names():
    assert CMA.name == "CMA/SPDM"
    assert DoeProtocol(0xABCD, 9).name == "unknown"
    assert CMA.to_dict()["id"] == "0001:01"


class FuzzDoe:
    """A hostile mailbox: registers return whatever hypothesis chose."""

    def __init__(self, status_seq, read_seq):
        self.status_seq, self.read_seq = list(status_seq), list(read_seq)

    def peek_reg(self, reg):
        return 0x0001002E if reg == 0 else 0

    def read_reg(self, reg):
        if reg == 0:
            return 0x0001002E
        if reg == 0x0C:
            return self.status_seq.pop(0) if self.status_seq else STATUS_READY
        if reg == 0x14:
            return self.read_seq.pop(0) if self.read_seq else 0
        return 0

    def write_reg(self, reg, value, mask):
        pass


dwords = st.integers(min_value=0, max_value=0xFFFFFFFF)
interesting_status = st.sampled_from([0, STATUS_BUSY, STATUS_ERROR, STATUS_READY, STATUS_READY | STATUS_BUSY])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(interesting_status, dwords), max_size=8),
    st.lists(st.one_of(dwords, st.sampled_from([0x00010001, 0, 1, 2, 3, 0x3FFFF])), max_size=12),
)
def test_hostile_mailbox_raises_only_pciauth_errors(status_seq, read_seq):
    from pciauth.emu.config import EmulatedConfigSpace
    from pciauth.errors import PciauthError

    cfg = EmulatedConfigSpace("fuzz")
    hook = FuzzDoe(status_seq, read_seq)
    cfg.add_hook(0x100, 0x18, hook)
    fake = FakeClock()  # the spec timeout, simulated: every path that waits is reached at once
    mb = DoeMailbox(cfg, 0x100, max_object_dwords=64, **fake.seam())
    t0 = time.monotonic()
    try:
        out = mb.exchange_object(1, 1, b"abcd")
    except PciauthError:
        out = b""
    # Never a hang: at most a few timeouts (first abort, idle wait, ready wait, their aborts).
    assert fake.slept <= 5 * SPEC_TIMEOUT
    assert time.monotonic() - t0 < 0.5
    assert len(out) <= 62 * 4


def test_bytes_to_dwords():
    assert bytes_to_dwords(b"\x01") == [1]
    assert bytes_to_dwords(b"") == []
    assert struct.pack("<I", bytes_to_dwords(b"abcd")[0]) == b"abcd"


def test_interrupt_mid_exchange_aborts_the_mailbox():
    calls = {"n": 0}

    def handler(payload, secured):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # Ctrl-C while the device "processes"
        return b"P" + payload

    from pciauth.emu import EmulatedDevice

    dev = EmulatedDevice(0, cma_handler=handler)
    mb = cma_mailbox(dev)
    hook = dev.mailboxes[0x100]
    before = hook.aborts
    with pytest.raises(KeyboardInterrupt):
        mb.exchange_object(1, 1, b"abcd")
    assert hook.aborts == before + 1
    assert mb.exchange_object(1, 1, b"abcd")[:5] == b"Pabcd"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 4), st.integers(8, 1024))
def test_roundtrip_property(payload, busy_reads, bound):
    dev = make_device(0, busy_reads=busy_reads)
    mb = DoeMailbox(dev.config, 0x100, timeout=0.2, max_object_dwords=bound)
    request_dwords = 2 + (len(payload) + 3) // 4
    padded = 4 * (request_dwords - 2)  # the device sees the request zero-padded to dwords
    response_dwords = 2 + (1 + padded + 3) // 4
    if request_dwords > bound:
        with pytest.raises(UsageError):
            mb.exchange_object(1, 1, payload)
    elif response_dwords > bound:
        with pytest.raises(DoeError, match="above the bound"):
            mb.exchange_object(1, 1, payload)
    else:
        out = mb.exchange_object(1, 1, payload)
        assert out[: 1 + len(payload)] == b"P" + payload and len(out) == 4 * (response_dwords - 2)


def test_discover_returns_vendor_type_pairs(mailbox):
    pairs = mailbox.discover()
    assert (1, 1) in pairs and all(len(p) == 2 for p in pairs)
    vendor, type_ = pairs[0]
    assert (vendor, type_) == (1, 0)


# -- the clock seam: timeouts on a fake clock, measured in simulated seconds -------------------
@pytest.mark.parametrize("fault,words", [("stuck_busy", "stayed BUSY for 1 s after GO"),
                                         ("never_ready", r"DATA_OBJECT_READY never set\) within 1 s")])
def test_spec_timeout_runs_on_the_mailbox_clock(fault, words):
    """A wedged mailbox times out after the 1 s spec timeout of *its* clock, aborts, and works
    again; with a fake clock that takes no real time."""
    fake = FakeClock()
    dev = make_device(0, fault=fault, fault_after=3)  # discovery takes the first 3 exchanges
    mb = cma_mailbox(dev, **fake.seam())
    assert (mb.clock, mb.sleep) == (fake.monotonic, fake.sleep)
    t0, start = time.monotonic(), fake.now
    with pytest.raises(DoeTimeout, match=words):
        mb.exchange_object(1, 1, b"x")
    assert SPEC_TIMEOUT <= fake.now - start < 2 * SPEC_TIMEOUT  # the timeout, then the abort's bound
    assert time.monotonic() - t0 < 0.5
    assert mb.exchange_object(1, 1, b"x")[:2] == b"Px"


def test_wedged_abort_times_out_on_the_mailbox_clock():
    """An abort that never completes (BUSY forever) is a DoeTimeout after ``timeout`` fake seconds."""
    from pciauth.emu.config import EmulatedConfigSpace

    fake = FakeClock()
    cfg = EmulatedConfigSpace("wedged")
    cfg.add_hook(0x100, 0x18, FuzzDoe([STATUS_BUSY] * 100_000, []))
    mb = DoeMailbox(cfg, 0x100, timeout=30.0, **fake.seam())
    with pytest.raises(DoeTimeout, match="abort did not complete within 30 s"):
        mb.abort()
    assert 30.0 <= fake.now < 30.1


def test_open_mailboxes_passes_the_clock_on():
    fake = FakeClock()
    for mb in open_mailboxes(make_device(1).config, **fake.seam()):
        assert (mb.clock, mb.sleep) == (fake.monotonic, fake.sleep)
