"""Hypothesis: the emulated DOE never wedges, and the driver recovers after any fault."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.doe import DoeMailbox
from pciauth.emu import FAULTS, EmulatedDevice
from pciauth.errors import DoeError

from .helpers import echo

REGS = st.sampled_from([0x00, 0x04, 0x08, 0x0C, 0x10, 0x14])
OPS = st.lists(
    st.tuples(st.sampled_from(["r", "w"]), REGS, st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_random_register_traffic_then_driver_works(ops):
    dev = EmulatedDevice(0, cma_handler=echo)
    cfg, base = dev.config, 0x100
    for op, reg, width, value in ops:
        off = base + reg + (0 if width == 4 else (value % (4 // width)) * width)
        if op == "r":
            cfg._check(off, width)
            assert 0 <= cfg._read(off, width) < (1 << (8 * width))
        else:
            cfg._write(off, width, value & ((1 << (8 * width)) - 1))
    mb = DoeMailbox(cfg, base, timeout=0.2)  # aborts first: whatever state software left
    assert mb.exchange_object(1, 1, b"hello")[:6] == b"Phello"


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(sorted(FAULTS)),
    st.integers(0, 3),
    st.binary(max_size=200),
)
def test_any_fault_any_payload_then_recovery(fault, after, payload):
    dev = EmulatedDevice(0, cma_handler=echo, fault=fault, fault_after=after)
    mb = DoeMailbox(dev.config, 0x100, timeout=0.02)
    results = []
    for _ in range(after + 2):
        try:
            results.append(mb.exchange_object(1, 1, payload))
        except DoeError:
            results.append(None)
    assert results.count(None) == 1 and results[after] is None
    good = [r for r in results if r is not None]
    assert all(r[: 1 + len(payload)] == b"P" + payload for r in good)
