"""The NVMe Identify driver against a register-level model of an NVMe admin queue."""

from __future__ import annotations

import pytest
from dma_models import NvmeModel, identify_data

from pciauth.dma.check import device_write_check
from pciauth.dma.drivers import DmaTimeout, DriverContext, probe
from pciauth.dma.drivers.nvme import (
    REG_ACQ,
    REG_AQA,
    REG_ASQ,
    REG_CC,
    NvmeDriver,
    NvmeError,
    parse_cap,
    parse_identify,
)
from pciauth.errors import MalformedData
from pciauth.pci.config import BytesConfigSpace


def make(iommu, session, expect_serial=None, clock=None, **kw):
    model = NvmeModel(iommu, **kw)
    cfg = BytesConfigSpace(bytes(256), name="nvme")
    seam = clock.seam() if clock is not None else {}
    ctx = DriverContext("0000:00:05.0", model, cfg, session, 0x1B36, 0x0010, 0x010802,
                        options={"expect_serial": expect_serial} if expect_serial else {}, **seam)
    return model, cfg, NvmeDriver(ctx)


def test_probe_by_class_code():
    assert probe(0x144D, 0xA808, 0x010802).name == "nvme"


def test_parse_cap():
    cap = parse_cap(63 | 20 << 24 | 2 << 32 | 1 << 37 | 1 << 48 | 4 << 52)
    assert cap == {"mqes": 64, "timeout_s": 10.0, "dstrd": 2, "css_nvm": True, "mpsmin": 8192, "mpsmax": 65536}


def test_identify_end_to_end_in_the_recorded_order(iommu, session):
    model, cfg, drv = make(iommu, session, expect_serial="PCIAUTH0001")
    buf = session.alloc(4096)
    with drv:
        w = drv.device_write(buf.iova)
        # enable sequence: CC.EN cleared (already 0 here), AQA, ASQ, ACQ, then CC with EN and entry sizes
        regs = [off for off, _v in model.writes() if off in (REG_AQA, REG_ASQ, REG_ASQ + 4, REG_ACQ, REG_ACQ + 4, REG_CC)]
        assert regs == [REG_AQA, REG_ASQ, REG_ASQ + 4, REG_ACQ, REG_ACQ + 4, REG_CC]
        cc = [v for off, v in model.writes() if off == REG_CC][-1]
        assert cc == 1 | 6 << 16 | 4 << 20
        assert model.aqa == 15 | 15 << 16
        assert model.commands == [(0x06, buf.iova, 1)]
        assert model.cq_head_doorbell == [1]
    assert w.checks == {"identify_parses": True, "serial_present": True, "vendor_matches_config": True,
                        "serial_matches": True}
    assert drv.identity["serial"] == "PCIAUTH0001" and drv.identity["model"] == "QEMU NVMe Ctrl"
    assert model.cc & 1 == 0 and model.csts & 1 == 0  # disabled again on exit
    assert cfg.read16(0x04) == 0  # bus master restored


def test_wrong_serial_is_a_failed_check(iommu, session):
    model, cfg, drv = make(iommu, session, expect_serial="OTHER")
    buf = session.alloc(4096)
    with drv:
        assert drv.device_write(buf.iova).checks["serial_matches"] is False


def test_doorbell_stride_and_phase_wrap(iommu, session):
    model, cfg, drv = make(iommu, session, dstrd=2, mqes=3)  # 4-entry queues, 16-byte doorbell stride
    buf = session.alloc(4096)
    with drv:
        for i in range(9):  # wraps the 4-entry queues twice: the phase bit flips each time
            drv.identify(buf.iova)
            if i == 5:
                assert drv.phase == 0 and model.phase == 0
        assert model.cq_head_doorbell == [1, 2, 3, 0, 1, 2, 3, 0, 1]
        assert drv.phase == 1 and model.phase == 1
    assert parse_identify(bytes(buf.view))["serial"] == "PCIAUTH0001"


def test_error_status_is_reported(iommu, session):
    model, cfg, drv = make(iommu, session, status=0x02 | 1 << 14)  # invalid field, do not retry
    buf = session.alloc(4096)
    with drv, pytest.raises(NvmeError, match=r"status code 0x02, type generic \(do-not-retry\)"):
        drv.identify(buf.iova)


def test_no_completion_times_out(iommu, session):
    model, cfg, drv = make(iommu, session, silent=True)
    buf = session.alloc(4096)
    with drv, pytest.raises(DmaTimeout, match="no NVMe completion"):
        drv.identify(buf.iova, timeout=0.05)


def test_wrong_command_id(iommu, session):
    model, cfg, drv = make(iommu, session, bad_cid=True)
    buf = session.alloc(4096)
    with drv, pytest.raises(NvmeError, match="completion for command"):
        drv.identify(buf.iova)


@pytest.mark.parametrize("to", [1, 20, 255])
def test_controller_never_ready_times_out_after_cap_to(iommu, session, fake_clock, to):
    """CAP.TO is in 500 ms units: up to 127.5 s, simulated on the context's fake clock."""
    model, cfg, drv = make(iommu, session, clock=fake_clock, never_ready=True, to=to)
    with pytest.raises(DmaTimeout, match=f"timed out after {to * 0.5:g} s.*become ready"):
        drv.start()
    assert to * 0.5 <= fake_clock.now < to * 0.5 + 0.01
    drv.close()
    assert session.mappings == []


def test_fatal_status(iommu, session):
    model, cfg, drv = make(iommu, session, cfs=True)
    with pytest.raises(NvmeError, match="CFS"):
        drv.start()
    drv.close()


@pytest.mark.parametrize("kw, msg", [({"css_nvm": False}, "NVM command set"), ({"mpsmin": 1}, "smallest page"),
                                     ({"mqes": 0}, "MQES")])
def test_unsupported_controllers(iommu, session, kw, msg):
    model, cfg, drv = make(iommu, session, **kw)
    with pytest.raises(NvmeError, match=msg):
        drv.start()


def test_garbage_identify_fails_checks_not_crashes(iommu, session):
    model, cfg, drv = make(iommu, session, identify=b"\x01" * 4096)
    buf = session.alloc(4096)
    with drv:
        w = drv.device_write(buf.iova)
    assert w.checks["identify_parses"] is False


def test_parse_identify_checks():
    assert parse_identify(identify_data("SN 1"))["serial"] == "SN 1"
    with pytest.raises(MalformedData):
        parse_identify(b"\x00" * 100)


def test_device_write_check_keeps_the_canary_and_same_data(iommu, session):
    model, cfg, drv = make(iommu, session)
    with drv:
        r = device_write_check(drv, session, 16384, private=False, iterations=3)
    assert r.ok, r.to_dict()
    assert r.checks["same_data_every_time"] and r.verify.ok and r.iterations == 3


def test_device_write_check_catches_a_write_past_the_structure(iommu, session):
    model, cfg, drv = make(iommu, session)
    real = model.iommu.dma_write

    def overwrite(iova, data):
        if len(data) == 4096:
            data = data + b"\xee" * 8  # the device writes 8 bytes too many
        return real(iova, data)

    model.iommu = type("I", (), {"dma_write": staticmethod(overwrite), "dma_read": iommu.dma_read})()
    with drv:
        r = device_write_check(drv, session, 8192)
    assert not r.ok and r.verify.first_mismatch == 4096 and r.verify.mismatches >= 1


def test_identify_into_a_shared_buffer_below_x_faults_in_the_iommu(iommu, session):
    """The IOMMU's T=1/T=0 rule applies to the NVMe DMA too: the completion never comes."""
    from pciauth.dma.buffer import DmaBuffer
    from pciauth.emu.iommu import IommuFault

    model, cfg, drv = make(iommu, session)
    wrong = DmaBuffer(4096, private=False)
    iova = session.allocator.alloc(4096, private=True)
    iommu.map(wrong, iova)
    with drv, pytest.raises(IommuFault, match="t1-to-shared"):
        drv.identify(iova)
    assert bytes(wrong.view) == bytes(4096)
    iommu.unmap(iova, 4096)
    session.allocator.free(iova)
    wrong.close()


def test_doorbell_stride_beyond_the_bar_is_refused(iommu, session):
    model, cfg, drv = make(iommu, session, dstrd=15)
    model.size = 0x4000
    with pytest.raises(NvmeError, match="CAP.DSTRD=15"):
        drv.start()
    assert not any(op == "w" for op, *_ in model.log)  # refused before touching the controller


def test_zero_cap_timeout_still_waits_a_little(iommu, session):
    model, cfg, drv = make(iommu, session, to=0, ready_polls=3)
    buf = session.alloc(4096)
    with drv:
        drv.identify(buf.iova)
