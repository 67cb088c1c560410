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
