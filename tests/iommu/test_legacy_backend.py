"""The legacy VFIO type1 backend against the fake kernel."""

from __future__ import annotations

import errno
import struct

import pytest
from fake_vfio_kernel import FakeKernel, FakePciFunction

from pciauth.errors import HostNotReady, IommuError, MalformedData, RefusedError
from pciauth.iommu.legacy import LegacyBackend, parse_iova_cap
from pciauth.uapi import sys as usys

BDF = "0000:01:00.0"
RANGES = [(0, 0xFEDFFFFF), (0xFEF00000, (1 << 48) - 1)]


def open_legacy(**kw) -> LegacyBackend:
    return LegacyBackend(7, BDF, **kw)


def test_setup_sequence(kernel: FakeKernel) -> None:
    with open_legacy() as be:
        assert kernel.calls == [
            "VFIO_GET_API_VERSION",
            "VFIO_CHECK_EXTENSION",
            "VFIO_GROUP_GET_STATUS",
            "VFIO_GROUP_SET_CONTAINER",
            "VFIO_SET_IOMMU",
            "VFIO_GROUP_GET_DEVICE_FD",
            "VFIO_IOMMU_GET_INFO",  # argsz too small: the kernel says how much it needs
            "VFIO_IOMMU_GET_INFO",
        ]
        assert be.iova_ranges() == RANGES
        assert be.page_size == 4096
        assert kernel.fds[be.device_fd]["kind"] == "device"
    assert kernel.open_fds == 0 and kernel.group_containers == {}


def test_map_chooses_lowest_free_and_unmaps(kernel: FakeKernel, make_buf) -> None:
    with open_legacy() as be:
        a = be.map(make_buf(8192))
        b = be.map(make_buf(4096), 0x20000)
        c = be.map(make_buf(4096))
        assert (a, b, c) == (0, 0x20000, 0x2000)
        maps = kernel.fds[be.container_fd]["maps"]
        assert sorted(maps) == [0, 0x2000, 0x20000]
        assert be.unmap(0x20000, 4096) == 4096
        assert sorted(maps) == [0, 0x2000]
    assert kernel.pinned == 0


def test_allow_iovas_steers_pciauths_choice(kernel: FakeKernel, buf) -> None:
    with open_legacy() as be:
        be.allow_iovas([(0x8000_0000, 0x8FFF_FFFF)])
        assert be.map(buf) == 0x8000_0000


def test_no_free_iova(kernel: FakeKernel, make_buf) -> None:
    with open_legacy() as be:
        be.allow_iovas([(0x1000, 0x1FFF)])
        be.map(make_buf(4096))
        with pytest.raises(IommuError, match="no free IOVA"):
            be.map(make_buf(4096))


def test_unmap_length_mismatch(kernel: FakeKernel, buf) -> None:
    with open_legacy() as be:
        iova = be.map(buf)
        kernel.unmap_shortfall = 4096
        with pytest.raises(IommuError) as e:
            be.unmap(iova, buf.length)
        assert e.value.step == "IommuDmaUnmap"
        kernel.unmap_shortfall = 0


def test_map_outside_ranges_fails_with_step(kernel: FakeKernel, buf) -> None:
    with open_legacy() as be, pytest.raises(IommuError) as e:
        be.map(buf, 0xFEE00000)  # the MSI hole
    assert e.value.step == "IommuDmaMap" and e.value.errno == errno.EINVAL


def test_memlock(make_buf) -> None:
    with usys.use_kernel(FakeKernel(memlock=4096)), open_legacy() as be:
        be.map(make_buf(4096))
        with pytest.raises(IommuError) as e:
            be.map(make_buf(8192))
        assert e.value.errno == errno.ENOMEM
        assert "pciauth has 4 KiB pinned and this map needs 8 KiB more" in e.value.hint


def test_group_not_viable_names_blockers() -> None:
    k = FakeKernel([FakePciFunction(viable=False)])
    with usys.use_kernel(k), pytest.raises(RefusedError) as e:
        open_legacy(group_blockers=lambda: "0000:01:00.1 is bound to snd_hda_intel")
    assert "group 7 is not viable: 0000:01:00.1 is bound to snd_hda_intel" in str(e.value)
    assert k.open_fds == 0


def test_group_busy(kernel: FakeKernel) -> None:
    first = open_legacy()
    with pytest.raises(RefusedError) as e:
        open_legacy()
    assert e.value.errno == errno.EBUSY and e.value.step == "OpenGroup"
    first.close()
    assert kernel.open_fds == 0


def test_no_vfio_at_all() -> None:
    with usys.use_kernel(FakeKernel(legacy=False)), pytest.raises(HostNotReady) as e:
        open_legacy()
    assert e.value.step == "OpenContainer" and "pciauth doctor" in e.value.hint


def test_no_type1v2(kernel: FakeKernel, monkeypatch) -> None:
    monkeypatch.setattr(kernel, "_vfio_check_extension", lambda fd, arg: 0)
    with pytest.raises(HostNotReady, match="type1v2"):
        open_legacy()
    assert kernel.open_fds == 0


def test_set_container_eperm_is_named(kernel: FakeKernel) -> None:
    kernel.fail["VFIO_GROUP_SET_CONTAINER"] = errno.EPERM
    with pytest.raises(IommuError) as e:
        open_legacy()
    assert e.value.step == "GroupSetContainer"
    assert kernel.open_fds == 0


def test_wrong_device_name(kernel: FakeKernel) -> None:
    with pytest.raises(Exception) as e:
        LegacyBackend(7, "0000:09:00.0")
    assert getattr(e.value, "step", None) == "GroupGetDeviceFd"
    assert kernel.open_fds == 0


def test_close_order(kernel: FakeKernel, make_buf) -> None:
    be = open_legacy()
    be.map(make_buf(4096))
    be.map(make_buf(4096))
    kernel.calls.clear()
    be.close()
    assert kernel.calls == ["VFIO_IOMMU_UNMAP_DMA", "VFIO_IOMMU_UNMAP_DMA", "VFIO_GROUP_UNSET_CONTAINER"]
    assert kernel.open_fds == 0 and kernel.pinned == 0


# ---- capability chain ----
def test_chain_with_other_caps_first(kernel: FakeKernel) -> None:
    kernel.info_extra_caps = [(2, b"\x01" * 8), (3, b"\x02" * 4)]
    with open_legacy() as be:
        assert be.iova_ranges() == RANGES


def test_chain_loop_is_detected(kernel: FakeKernel) -> None:
    kernel.info_extra_caps = [(2, b"\x00" * 8)]
    kernel.info_no_iova_cap = True
    kernel.info_cap_loop = True
    with pytest.raises(MalformedData) as e:
        open_legacy()
    assert e.value.field == "cap.next" and "loops" in str(e.value)
    assert kernel.open_fds == 0


def test_chain_without_iova_cap_assumes_64_bits(kernel: FakeKernel) -> None:
    kernel.info_no_iova_cap = True
    with open_legacy() as be:
        assert be.iova_ranges() == [(0, (1 << 64) - 1)]
        assert be.warnings


def test_nr_iovas_past_the_end(kernel: FakeKernel) -> None:
    kernel.info_nr_iovas_override = 1000
    with pytest.raises(MalformedData) as e:
        open_legacy()
    assert e.value.field == "nr_iovas"


def test_absurd_argsz_refused(kernel: FakeKernel, monkeypatch) -> None:
    from pciauth.uapi.structs import ffi

    def greedy(fd, arg):
        ffi.cast("struct vfio_iommu_type1_info *", arg).argsz = 1 << 30
        return 0

    monkeypatch.setattr(kernel, "_vfio_iommu_get_info", greedy)
    with pytest.raises(MalformedData) as e:
        open_legacy()
    assert e.value.field == "argsz"


@pytest.mark.parametrize(
    ("raw", "first", "field"),
    [
        (bytes(24) + struct.pack("<HHI", 1, 1, 0), 24, "nr_iovas"),  # truncated IOVA cap
        (bytes(24) + struct.pack("<HHI", 2, 1, 8), 24, "cap.next"),  # next points into the header
        (bytes(24) + struct.pack("<HHI", 2, 1, 26), 24, "cap.next"),  # misaligned
        (bytes(24) + struct.pack("<HHI", 2, 1, 4096), 24, "cap.next"),  # past the end
        (bytes(24), 8, "cap.next"),  # first cap inside the header
    ],
)
def test_parse_iova_cap_hostile(raw: bytes, first: int, field: str) -> None:
    with pytest.raises(MalformedData) as e:
        parse_iova_cap(raw, first, 24)
    assert e.value.field == field


def test_parse_iova_cap_reversed_range() -> None:
    raw = bytes(24) + struct.pack("<HHIII", 1, 1, 0, 1, 0) + struct.pack("<QQ", 0x2000, 0x1000)
    with pytest.raises(MalformedData) as e:
        parse_iova_cap(raw, 24, 24)
    assert e.value.field == "iova_ranges"
