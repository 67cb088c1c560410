"""The edu driver against a register-level model of QEMU's edu device."""

from __future__ import annotations

import pytest
from dma_models import EduModel

from pciauth.dma.drivers import DmaTimeout, DriverContext, probe
from pciauth.dma.drivers.edu import (
    DEVICE_BUFFER,
    PCI_COMMAND,
    PCI_COMMAND_MASTER,
    REG_DMA_CMD,
    EduDriver,
)
from pciauth.dma.iova import Threshold
from pciauth.dma.pattern import make_pattern
from pciauth.dma.session import DmaSession
from pciauth.errors import DmaError
from pciauth.pci.config import BytesConfigSpace


@pytest.fixture
def edu_session(iommu):
    with DmaSession(iommu, threshold=Threshold.parse("128M"), dma_limit=EduDriver.dma_limit) as s:
        yield s


def make(iommu, session, clock=None, **kw):
    model = EduModel(iommu, **kw)
    cfg = BytesConfigSpace(bytes(256), name="edu")
    cfg.write16(PCI_COMMAND, 0x0003)
    seam = clock.seam() if clock is not None else {}
    drv = EduDriver(DriverContext("0000:00:04.0", model, cfg, session, 0x1234, 0x11E8, **seam))
    return model, cfg, drv


def test_probe_finds_edu_by_id():
    assert probe(0x1234, 0x11E8).name == "edu"
    assert probe(0x1234, 0x11E8, emulated=False).load() is EduDriver


def test_start_checks_id_liveness_and_sets_bus_master(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    drv.start()
    assert cfg.read16(PCI_COMMAND) == 0x0003 | PCI_COMMAND_MASTER
    assert ("w", 0x04, 4, 0x5A5AA5A5) in model.log
    drv.close()
    assert cfg.read16(PCI_COMMAND) == 0x0003  # restored


def test_copy_goes_through_the_device_buffer_in_4k_steps(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    src = edu_session.alloc(3 * 4096 + 100)
    dst = edu_session.alloc(3 * 4096 + 100)
    assert dst.iova + dst.length <= 1 << 28
    p = make_pattern("offset")
    p.fill(src.view)
    with drv:
        drv.copy(src.iova, dst.iova, src.length)
    assert p.verify(dst.view).ok
    assert model.dmas == 2 * 4  # 4 chunks, each RAM -> device -> RAM
    cmds = [v for op, off, _w, v in model.log if op == "w" and off == REG_DMA_CMD]
    assert cmds == [1, 3] * 4  # direction bit 1 = device buffer to RAM
    # the recorded order of one DMA: src, dst, count, then the command
    first = [(off, v) for off, v in model.writes() if off >= 0x80][:4]
    assert first == [(0x80, src.iova), (0x88, DEVICE_BUFFER), (0x90, 4096), (0x98, 1)]


def test_copy_in_the_shared_window(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    src = edu_session.alloc(4096, private=False)
    dst = edu_session.alloc(4096, private=False)
    assert src.iova >= 128 << 20 and dst.iova + 4096 <= 1 << 28
    src.view[:] = b"\x42" * 4096
    with drv:
        drv.copy(src.iova, dst.iova, 4096)
    assert bytes(dst.view) == b"\x42" * 4096


def test_iova_beyond_the_dma_mask_is_refused_before_touching_the_device(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    with drv:
        n = len(model.log)
        with pytest.raises(DmaError, match="28-bit DMA mask"):
            drv.copy(0x1000, (1 << 28) - 2048, 4096)
        assert len(model.log) == n


def test_unmapped_iova_transfers_nothing_and_verify_catches_it(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    dst = edu_session.alloc(4096)
    with drv:
        drv.copy(0x0800_0000, dst.iova, 4096)  # nothing mapped at the source
    assert model.faults and model.faults[0].reason == "unmapped"
    assert bytes(dst.view) == bytes(4096)


def test_stuck_dma_times_out(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session, stuck=True)
    m = edu_session.alloc(4096)
    with drv, pytest.raises(DmaTimeout, match="edu DMA"):
        drv.copy(m.iova, m.iova, 16, timeout=0.05)


def test_stuck_dma_times_out_on_the_context_clock(iommu, edu_session, fake_clock):
    """The 5 s default timeout on a fake clock; the back-off runs 5 ms doubling to 20 ms."""
    model, cfg, drv = make(iommu, edu_session, clock=fake_clock, stuck=True)
    m = edu_session.alloc(4096)
    with drv, pytest.raises(DmaTimeout, match="timed out after 5 s waiting for the edu DMA"):
        drv.copy(m.iova, m.iova, 16)
    assert 5.0 <= fake_clock.now < 5.01
    assert fake_clock.sleeps[:3] == [0.005, 0.01, 0.02] and max(fake_clock.sleeps) == 0.02


def test_not_an_edu(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    model.read = lambda off, width: 0x12345678
    with pytest.raises(DmaError, match="not a QEMU edu"):
        drv.start()


def test_broken_liveness(iommu, edu_session):
    model, cfg, drv = make(iommu, edu_session)
    real = model.read
    model.read = lambda off, width: 0 if off == 0x04 else real(off, width)
    with pytest.raises(DmaError, match="liveness"):
        drv.start()
    assert cfg.read16(PCI_COMMAND) == 0x0003  # bus master not touched


def test_copy_check_runs_on_edu(iommu, edu_session):
    from pciauth.dma.check import copy_check

    model, cfg, drv = make(iommu, edu_session)
    with drv:
        r = copy_check(drv, edu_session, 8192, private=False, iterations=2)
    assert r.ok, r.to_dict()
    assert r.bytes_moved == 2 * 8192


def test_driver_never_makes_an_access_qemu_ignores(iommu, edu_session):
    """Every register access of a whole run has a width QEMU's edu accepts (the model raises)."""
    model, cfg, drv = make(iommu, edu_session)
    m = edu_session.alloc(4096)
    with drv:
        drv.copy(m.iova, m.iova, 64)
    assert {(w, off < 0x80) for _op, off, w, _v in model.log} <= {(4, True), (4, False), (8, False)}


def test_dma_registers_are_ignored_while_a_dma_runs(iommu):
    model = EduModel(iommu, stuck=True)
    model.write64(0x80, 0x1000)
    model.write32(0x98, 1)
    model.write64(0x80, 0x2000)
    model.write32(0x98, 0)  # no start bit: ignored
    assert model.read64(0x80) == 0x1000 and model.read32(0x98) == 1


def test_probe_by_target_objects():
    from pciauth.dma.drivers import DRIVERS, driver_for
    from pciauth.emu.device import EmulatedDevice
    from pciauth.target import open_target

    emu = EmulatedDevice(0)
    assert driver_for(emu).name == "emu"
    with open_target("emu") as target:
        assert driver_for(target).name == "emu"
        assert [e.name for e in DRIVERS if e.probe(target)] == ["emu"]
    emu.close()

    class Identity:
        vendor, device, class_code = 0x1B36, 0x0010, 0x010802

    class PciLike:
        is_emulated = False

        def identity(self):
            return Identity()

    assert driver_for(PciLike()).name == "nvme"
