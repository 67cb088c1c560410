"""open_target: emu specs and PCI devices (fake sysfs), VFIO-style hidden DOE headers."""

from __future__ import annotations

import pytest

from pciauth.doe import find_mailbox
from pciauth.emu import EmulatedDevice
from pciauth.errors import DeviceBusy, DeviceNotFound, NotFoundError, UsageError
from pciauth.target import open_target, parse_emu_spec


def test_emu_specs():
    assert parse_emu_spec("emu") == (0, {})
    assert parse_emu_spec("emu:2") == (2, {})
    assert parse_emu_spec("emu:1,fault=error,latency=0.5,doe_offset=0x300") == (
        1,
        {"fault": "error", "latency": 0.5, "doe_offset": 0x300},
    )
    assert parse_emu_spec("01:00.0") is None
    assert parse_emu_spec("emulator") is None
    for bad in ("emu,color=red", "emu,latency=fast", "emu,fault"):
        with pytest.raises(UsageError):
            parse_emu_spec(bad)


def test_open_emu_target():
    with open_target("emu:1") as t:
        assert t.is_emulated and t.name == "emu:1"
        assert t.doe_offsets == [0x180, 0x200]
        assert t.identity.device == 0xA11F
        assert t.check_kernel_use(force=False) == []
        assert [mb.offset for mb in t.mailboxes()] == [0x180, 0x200]
    with pytest.raises(NotFoundError):
        open_target("emu:42")


class _Hidden:
    """Wraps a DOE hook so its capability header reads 0, as in vfio-pci's config view."""

    def __init__(self, inner):
        self.inner = inner

    def read_reg(self, reg):
        return 0 if reg == 0 else self.inner.read_reg(reg)

    def peek_reg(self, reg):
        return 0 if reg == 0 else self.inner.peek_reg(reg)

    def write_reg(self, reg, value, mask):
        self.inner.write_reg(reg, value, mask)


def test_pci_target_takes_doe_offsets_from_sysfs_when_config_hides_them(fake_sysfs):
    emu = EmulatedDevice(1, cma_handler=lambda p, s: b"ok" + p)
    fake_sysfs.add_device("0000:01:00.0", vendor=0x1234, device=0xA11F, config=emu.config.read_bytes())
    for hook in emu.config.hooks:
        hook.hook = _Hidden(hook.hook)  # now the "VFIO region" hides both DOE headers
    with open_target("01:00.0", config=emu.config) as t:
        assert not t.is_emulated and t.name == "0000:01:00.0"
        assert t.doe_offsets == [0x180, 0x200]
        mb = find_mailbox(t.mailboxes(timeout=0.2))
        assert mb.offset == 0x180 and mb.version == 2
        assert mb.exchange_object(1, 1, b"hi")[:4] == b"okhi"


def test_pci_target_refuses_kernel_users(fake_sysfs):
    emu = EmulatedDevice(0)
    fake_sysfs.add_device("0000:02:00.0", driver="cxl_pci", config=emu.config.read_bytes())
    with open_target("02:00.0", writable=False) as t:
        assert t.doe_offsets == [0x100]
        with pytest.raises(DeviceBusy, match="cxl_pci"):
            t.check_kernel_use(force=False)
        assert t.check_kernel_use(force=True)


def test_missing_pci_device(fake_sysfs):
    with pytest.raises(DeviceNotFound):
        open_target("0000:09:00.0")


def test_doe_over_the_vfio_config_region_class(fake_sysfs, monkeypatch):
    """VfioConfigSpace (pread/pwrite on the VFIO device fd at the region offset) drives the
    mailbox; the region hides the DOE header, so the offsets come from sysfs."""
    vfio_device = pytest.importorskip("pciauth.vfio.device")
    emu = EmulatedDevice(0, cma_handler=lambda p, s: b"vfio" + p)
    fake_sysfs.add_device("0000:05:00.0", vendor=0x1234, device=0xA11E, config=emu.config.read_bytes())
    for hook in emu.config.hooks:
        hook.hook = _Hidden(hook.hook)
    region_base = 0x70000000000

    def pread(fd, length, offset):
        assert fd == 99 and offset >= region_base
        off = offset - region_base
        if length == 4:
            return emu.config.read32(off).to_bytes(4, "little")
        return bytes(emu.config.read8(off + i) for i in range(length))

    def pwrite(fd, data, offset):
        assert fd == 99 and len(data) == 4
        emu.config.write32(offset - region_base, int.from_bytes(data, "little"))
        return 4

    monkeypatch.setattr(vfio_device.usys, "pread", pread)
    monkeypatch.setattr(vfio_device.usys, "pwrite", pwrite)
    region = vfio_device.RegionInfo(index=7, size=4096, offset=region_base, flags=3)
    cfg = vfio_device.VfioConfigSpace(99, region, "0000:05:00.0")
    assert cfg.read32(0x100) == 0  # what vfio-pci shows
    with open_target("05:00.0", config=cfg) as t:
        mb = find_mailbox(t.mailboxes(timeout=0.2))
        assert mb.offset == 0x100
        assert mb.exchange_object(1, 1, b"abcd")[:8] == b"vfioabcd"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"emu(:[0-9]{1,3})?(,[a-z_]{1,12}=[-a-z0-9.x+]{0,8}){0,3}",
                                                     fullmatch=True)))
def test_emu_spec_parser_only_raises_usage_errors(spec):
    from pciauth.doe.authenticate import parse_measurements

    try:
        parsed = parse_emu_spec(spec)
    except UsageError:
        return
    if parsed is not None:
        index, knobs = parsed
        assert index >= 0 and isinstance(knobs, dict)
        from pciauth.errors import PciauthError

        try:
            open_target(spec).close()
        except PciauthError:
            pass
    try:
        measure, indices = parse_measurements(spec)
    except UsageError:
        return
    assert indices is None or all(1 <= i <= 254 for i in indices)


@pytest.mark.parametrize("spec", ["emu:-1", "emu:x", "emu:", "emu:1x", "emu:1:2"])
def test_misspelt_emu_spec_says_how_to_name_the_emulated_device(spec):
    with pytest.raises(UsageError) as e:
        open_target(spec)
    assert "bad emulated device" in e.value.message and "emu:N (0-2)" in e.value.message
    assert parse_emu_spec("01:00.0") is None and parse_emu_spec("emulator") is None  # not emu specs


def test_misspelt_emu_spec_on_the_command_line(capsys):
    from pciauth.cli import main

    assert main(["show", "emu:-1"]) == 2
    assert "bad emulated device 'emu:-1'" in capsys.readouterr().err
