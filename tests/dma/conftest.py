"""Fixtures of the DMA tests: an emulated IOMMU, a session over it, the emulated engine's driver."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pciauth.dma.drivers import DriverContext
from pciauth.dma.iova import Threshold
from pciauth.dma.session import DmaSession
from pciauth.emu.dma_engine import DmaEngine
from pciauth.emu.iommu import EmulatedIommu


class FakeClock:
    """Fake time for ``DriverContext(clock=, sleep=)``: sleeping advances it at once, so a driver
    timeout of seconds takes none; each reading ticks 1 us, as a real poll costs time."""

    TICK = 1e-6

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        self.now += self.TICK
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"sleep({seconds})"
        self.sleeps.append(seconds)
        self.now += seconds

    def seam(self) -> dict:
        """The keyword arguments that put a DriverContext (or wait_for) on this clock."""
        return {"clock": self.monotonic, "sleep": self.sleep}


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


#: The threshold most tests use: private [0, 1 GiB), shared [1 GiB, top).
X_1G = Threshold.parse("1G")


@pytest.fixture
def iommu():
    io = EmulatedIommu()
    yield io
    io.close()


@pytest.fixture
def session(iommu):
    with DmaSession(iommu, threshold=X_1G) as s:
        yield s
    assert iommu.mappings == [], "the session left mappings behind"


@pytest.fixture
def engine(iommu):
    return DmaEngine(iommu)


@pytest.fixture
def emu_driver(engine, session):
    from pciauth.dma.drivers.emu import EmuDmaDriver

    drv = EmuDmaDriver(DriverContext("emu:test", engine, None, session, emulated=True))
    drv.start()
    yield drv
    drv.close()
