"""The PCI path end to end without hardware: fake sysfs + the fake VFIO kernel (iommufd and legacy
backends) + VfioDevice regions + a register model of edu whose DMA walks the fake kernel's IOMMU
page tables into pciauth's real buffers."""

from __future__ import annotations

import ctypes
import os
import sys

import pytest
from dma_models import EduModel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "iommu"))
from fake_vfio_kernel import FakeKernel, FakePciFunction

import pciauth.api
from pciauth.dma.iova import ThresholdChangeRefused
from pciauth.emu.iommu import FaultRecord, IommuFault
from pciauth.errors import DmaError, HostNotReady
from pciauth.uapi import ioctls
from pciauth.uapi import sys as usys

BDF = "0000:01:00.0"


class KernelDma:
    """Device DMA through the fake kernel's mappings (IOVA -> user address), like an IOMMU."""

    def __init__(self, kernel: FakeKernel, backend) -> None:
        self.kernel = kernel
        self.backend = backend

    def _maps(self) -> dict:
        if self.backend.name == "iommufd":
            return {iova: (length, va, bool(flags & ioctls.IOMMU_IOAS_MAP_READABLE),
                           bool(flags & ioctls.IOMMU_IOAS_MAP_WRITEABLE))
                    for iova, (length, va, flags) in self.kernel.objects[self.backend.ioas_id].maps.items()}
        return {m.iova: (m.length, m.vaddr, m.readable, m.writable) for m in self.backend.mappings}

    def _find(self, iova: int, n: int, direction: str) -> int:
        for start, (length, va, readable, writable) in self._maps().items():
            if start <= iova and iova + n <= start + length:
                if (direction == "read" and not readable) or (direction == "write" and not writable):
                    break
                return va + (iova - start)
        raise IommuFault(FaultRecord(iova, direction, "unmapped", n))

    def dma_read(self, iova: int, n: int) -> bytes:
        return ctypes.string_at(self._find(iova, n, "read"), n)

    def dma_write(self, iova: int, data: bytes) -> None:
        ctypes.memmove(self._find(iova, len(data), "write"), data, len(data))


@pytest.fixture(params=["iommufd", "legacy"])
def pci_edu(request, fake_sysfs, monkeypatch):
    fake_sysfs.add_device(BDF, vendor=0x1234, device=0x11E8, class_code=0x00FF00, driver="vfio-pci",
                          iommu_group=7, vfio_cdev="vfio0")
    kernel = FakeKernel([FakePciFunction(bdf=BDF, group=7, cdev="vfio0")])
    models = []

    def fake_bar(self, index):
        model = EduModel(KernelDma(kernel, self.backend), polls=1)
        models.append(model)
        return model

    from pciauth.vfio.device import VfioDevice

    monkeypatch.setattr(VfioDevice, "bar", fake_bar)
    with usys.use_kernel(kernel):
        yield request.param, kernel, models


def test_open_dma_and_release_everything(pci_edu):
    kind, kernel, models = pci_edu
    with pciauth.api.open(BDF, iommu=kind, bind=False, threshold="128M") as dev:
        assert dev.backend.name == kind and dev.driver.name == "edu" and not dev.emulated
        assert dev.iova.enforcement.startswith("pciauth")
        r_priv = dev.dma.check(8192, private=True)
        r_shared = dev.dma.check(8192, private=False)
        assert r_priv.ok and r_shared.ok, (r_priv.to_dict(), r_shared.to_dict())
        assert int(r_shared.iovas["src"]) >= 128 << 20 and int(r_shared.iovas["dst"]) + 8192 <= 1 << 28
        assert models[0].dmas == 2 * 2 * 2  # two checks, two pages, two DMAs per page
        # Bus Master went on through the VFIO config region
        assert dev.config.read16(0x04) & 0x4
    assert kernel.open_fds == 0 and kernel.pinned == 0
    assert kernel.objects == {}


def test_a_failing_driver_start_releases_everything(pci_edu, monkeypatch):
    kind, kernel, models = pci_edu
    monkeypatch.setattr(EduModel, "read", lambda self, off, width: 0xFFFFFFFF)
    with pciauth.api.open(BDF, iommu=kind, bind=False) as dev, pytest.raises(DmaError, match="not a QEMU edu"):
        dev.dma.check(4096)
    assert kernel.open_fds == 0 and kernel.objects == {}
    with pciauth.api.open(BDF, iommu=kind, bind=False) as dev:
        with pytest.raises(DmaError, match="not a QEMU edu"):
            dev.dma.copy(dev.dma.alloc(4096), dev.dma.alloc(4096))
        assert not dev.dma.started and len(dev.session.mappings) == 2
    assert kernel.open_fds == 0 and kernel.pinned == 0


def test_memlock_refusal_on_a_pinning_backend(pci_edu, monkeypatch):
    import pciauth.dma.buffer as bufmod

    kind, kernel, models = pci_edu
    monkeypatch.setattr(bufmod, "memlock_limit", lambda: (16 * 1024, 16 * 1024))
    monkeypatch.setattr(bufmod, "_has_ipc_lock", lambda: False)
    with pciauth.api.open(BDF, iommu=kind, bind=False) as dev, pytest.raises(HostNotReady, match="RLIMIT_MEMLOCK"):
        dev.dma.check(64 * 1024)
    assert kernel.pinned == 0


def test_iommufd_ioas_restricted_to_the_windows(pci_edu):
    kind, kernel, models = pci_edu
    if kind != "iommufd":
        pytest.skip("IOMMU_IOAS_ALLOW_IOVAS is iommufd only")
    with pciauth.api.open(BDF, iommu=kind, bind=False, threshold="128M") as dev:
        ioas = kernel.objects[dev.backend.ioas_id]
        assert ioas.allowed == dev.session.allocator.allowed_ranges()
        assert ioas.allowed[0] == (0, (128 << 20) - 1)


def test_run_command_on_the_fake_pci_device(pci_edu, capsys):
    import json

    from pciauth.cli import main

    kind, kernel, models = pci_edu
    code = main(["run", BDF, "--iommu", kind, "--no-bind", "--no-auth", "--size", "8K", "--json"])
    report = json.loads(capsys.readouterr().out)
    steps = {s["name"]: s["status"] for s in report["steps"]}
    assert steps == {"bind": "skipped", "authenticate": "skipped", "threshold": "passed", "dma-private": "passed",
                     "dma-shared": "passed", "enforcement": "skipped", "restore-threshold": "passed",
                     "restore": "passed"}, report
    assert code == 0 and report["iommu"] == kind
    assert kernel.open_fds == 0


@pytest.fixture
def pci_nvme(fake_sysfs, monkeypatch):
    from dma_models import NvmeModel

    fake_sysfs.add_device(BDF, vendor=0x1B36, device=0x0010, class_code=0x010802, driver="vfio-pci",
                          iommu_group=7, vfio_cdev="vfio0")
    kernel = FakeKernel([FakePciFunction(bdf=BDF, group=7, cdev="vfio0")])
    models = []

    def fake_bar(self, index):
        model = NvmeModel(KernelDma(kernel, self.backend), serial="QEMU-SN-42")
        model.size = 0x4000
        models.append(model)
        return model

    from pciauth.vfio.device import VfioDevice

    monkeypatch.setattr(VfioDevice, "bar", fake_bar)
    with usys.use_kernel(kernel):
        yield kernel, models


def test_run_on_a_fake_nvme(pci_nvme, capsys):
    import json

    from pciauth.cli import main

    kernel, models = pci_nvme
    code = main(["run", BDF, "--no-bind", "--no-auth", "--expect-serial", "QEMU-SN-42", "--json"])
    report = json.loads(capsys.readouterr().out)
    steps = {s["name"]: s for s in report["steps"]}
    assert report["driver"] == "nvme" and code == 0, report
    for window in ("private", "shared"):
        r = steps[f"dma-{window}"]["result"]
        assert r["kind"] == "device-write" and r["window"] == window
        assert r["checks"] == {"identify_parses": True, "serial_present": True, "vendor_matches_config": True,
                               "serial_matches": True, "same_data_every_time": True}
    assert steps["enforcement"]["status"] == "skipped"
    assert models[0].cc & 1 == 0  # the controller is disabled again
    assert kernel.open_fds == 0 and kernel.pinned == 0


def test_nvme_wrong_serial_fails_the_run(pci_nvme, capsys):
    from pciauth.cli import main

    code = main(["run", BDF, "--no-bind", "--no-auth", "--expect-serial", "OTHER"])
    out = capsys.readouterr().out
    assert code == 6 and "[FAIL] dma-private" in out and "serial_matches" in out


def test_platform_knob_programmed_for_the_run_and_restored(pci_edu, fake_sysfs):
    from pathlib import Path

    kind, kernel, models = pci_edu
    knob_dir = Path(fake_sysfs.root) / "module" / "tsm_guest" / "parameters"
    knob_dir.mkdir(parents=True)
    knob = knob_dir / "tsm_vtom"
    knob.write_text("2147483647\n")
    with pciauth.api.open(BDF, iommu=kind, bind=False, threshold="64M") as dev:
        assert knob.read_text().strip() == "32"  # 64 MiB in 2 MiB units, programmed before any map
        assert dev.iova.enforcement.startswith("platform (tsm_vtom")
        assert dev.dma.check(4096, private=False).ok
        live = dev.dma.alloc(4096, private=False)
        with pytest.raises(ThresholdChangeRefused):
            dev.iova.set_threshold("128M")
        assert knob.read_text().strip() == "32"  # the platform was not touched either
        dev.dma.free(live)
        dev.iova.set_threshold("128M")
        assert knob.read_text().strip() == "64"
    assert knob.read_text().strip() == "2147483647"  # restored after everything was unmapped


def test_iova_command_programs_the_knob_persistently(pci_edu, fake_sysfs, capsys):
    import json
    from pathlib import Path

    from pciauth.cli import main

    kind, kernel, models = pci_edu
    knob_dir = Path(fake_sysfs.root) / "module" / "tsm_guest" / "parameters"
    knob_dir.mkdir(parents=True)
    knob = knob_dir / "tsm_vtom"
    knob.write_text("0\n")
    assert main(["iova", BDF, "--iommu", kind, "--no-bind", "--threshold", "1G", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert knob.read_text().strip() == "512" and report["knob"]["unit"] == "units"
    assert report["enforcement"].startswith("platform") and report["notes"] == []
