"""wait_for, the drivers' one polling loop: back-off, deadline and its clock seam."""

from __future__ import annotations

import time

import pytest

from pciauth.dma.drivers import DmaDriver, DmaTimeout, DriverContext, wait_for


def test_backs_off_doubling_and_stops_at_the_deadline(fake_clock):
    with pytest.raises(DmaTimeout, match="timed out after 0.1 s waiting for the widget") as info:
        wait_for(lambda: False, 0.1, "the widget", first=0.001, longest=0.016, device="dev0",
                 **fake_clock.seam())
    assert info.value.device == "dev0"
    sleeps = fake_clock.sleeps
    assert sleeps[:5] == [0.001, 0.002, 0.004, 0.008, 0.016]
    assert max(sleeps) == 0.016
    assert sleeps[-1] < 0.016  # the last sleep ends at the deadline, not a whole step past it
    assert 0.1 <= fake_clock.now < 0.1 + 0.001


def test_a_condition_that_holds_returns_without_sleeping(fake_clock):
    calls = iter([False, False, True])
    wait_for(lambda: next(calls), 10.0, "x", **fake_clock.seam())
    assert fake_clock.sleeps == [0.0001, 0.0002]


def test_driver_wait_until_uses_the_context_clock_and_name(fake_clock):
    drv = DmaDriver(DriverContext("0000:00:07.0", None, **fake_clock.seam()))
    t0 = time.monotonic()
    with pytest.raises(DmaTimeout, match="after 60 s waiting for the doorbell") as info:
        drv.wait_until(lambda: False, 60.0, "the doorbell", first=0.5, longest=1.0)
    assert time.monotonic() - t0 < 1.0  # a minute, simulated
    assert info.value.device == "0000:00:07.0"
    assert fake_clock.sleeps[:2] == [0.5, 1.0] and 60.0 <= fake_clock.now < 60.01


def test_the_default_context_waits_in_real_time():
    ctx = DriverContext("x", None)
    assert (ctx.clock, ctx.sleep) == (time.monotonic, time.sleep)
    t0 = time.monotonic()
    with pytest.raises(DmaTimeout):
        DmaDriver(ctx).wait_until(lambda: False, 0.03, "nothing")
    assert time.monotonic() - t0 >= 0.03
