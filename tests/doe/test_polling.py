"""The polling schedule: spin briefly, back off exponentially, respect the deadline."""

from __future__ import annotations

from pciauth.doe.polling import Backoff, poll_until


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_spins_then_backs_off_and_caps():
    fc = FakeClock()
    reads = []

    def read():
        reads.append(fc.now)
        fc.now += 1e-6  # one config read
        return 0

    ok, _, polls = poll_until(read, bool, 0.1, Backoff(spin=20e-6, first_sleep=10e-6, max_sleep=1e-3),
                              clock=fc.clock, sleep=fc.sleep)
    assert not ok
    assert fc.sleeps[0] == 10e-6 and fc.sleeps[1] == 20e-6
    assert max(fc.sleeps) <= 1e-3
    assert 0.1 <= fc.now < 0.1 + 1e-3 + 1e-5  # stops at the deadline
    assert polls < 200  # about 100 ms / 1 ms plus the spin and the ramp


def test_condition_seen_first_read_and_at_deadline():
    fc = FakeClock()
    assert poll_until(lambda: 1, bool, 1.0, clock=fc.clock, sleep=fc.sleep) == (True, 1, 1)
    fc = FakeClock()

    def late():
        fc.now += 1e-6  # one config read
        return 1 if fc.now >= 0.5 else 0

    ok, value, _ = poll_until(late, bool, 0.5, clock=fc.clock, sleep=fc.sleep)
    assert ok and value == 1


def test_never_sleeps_past_the_deadline():
    fc = FakeClock()
    poll_until(lambda: 0, bool, 0.003, Backoff(spin=0, first_sleep=0.002, max_sleep=0.01),
               clock=fc.clock, sleep=fc.sleep)
    assert abs(fc.now - 0.003) < 1e-9


def test_a_clock_that_moves_only_when_sleeping_still_times_out():
    """The spin phase is bounded in polls too: a clock frozen between sleeps cannot make it spin forever."""
    fc = FakeClock()
    ok, _, polls = poll_until(lambda: 0, bool, 0.01, Backoff(max_spins=100), clock=fc.clock, sleep=fc.sleep)
    assert not ok and fc.now >= 0.01
    assert 100 < polls < 200  # the capped spin, then the sleeping back-off up to the deadline
