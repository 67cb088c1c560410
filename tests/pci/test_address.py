import pytest

from pciauth.errors import UsageError
from pciauth.pci.address import IdSelector, PciAddress, SlotSelector


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0000:01:00.0", (0, 1, 0, 0)),
        ("01:00.0", (0, 1, 0, 0)),
        ("1:0.0", (0, 1, 0, 0)),
        ("10000:ff:1f.7".replace("10000", "ffff"), (0xFFFF, 0xFF, 0x1F, 7)),
        (" 0001:3a:02.3 ", (1, 0x3A, 2, 3)),
    ],
)
def test_parse_forms(text, expected):
    addr = PciAddress.parse(text)
    assert (addr.domain, addr.bus, addr.slot, addr.function) == expected


def test_str_is_canonical():
    assert str(PciAddress.parse("1:2.3")) == "0000:01:02.3"


@pytest.mark.parametrize("text", ["", "01:00", "0000:01:00", "01:20.0", "01:00.8", "100:00.0", "x:00.0",
                                  "0:0:0:0.0", "01:00.0.1", "10000:00:00.0"])
def test_parse_rejects(text):
    with pytest.raises(UsageError):
        PciAddress.parse(text)


@pytest.mark.parametrize(
    "sel, addr, ok",
    [
        ("01:", "0000:01:00.0", True),
        ("01:", "0000:02:00.0", False),
        (".1", "0000:05:03.1", True),
        (".1", "0000:05:03.0", False),
        ("03", "0000:07:03.2", True),
        ("0001::", "0001:07:03.2", True),
        ("0001::", "0000:07:03.2", False),
        ("*:*.*", "0000:07:03.2", True),
        ("07:03.2", "0000:07:03.2", True),
    ],
)
def test_slot_selector(sel, addr, ok):
    assert SlotSelector.parse(sel).matches(PciAddress.parse(addr)) is ok


def test_slot_selector_rejects_garbage():
    with pytest.raises(UsageError):
        SlotSelector.parse("1:2:3:4")
    with pytest.raises(UsageError):
        SlotSelector.parse("g:")


def test_id_selector():
    sel = IdSelector.parse("1af4:")
    assert sel.matches(0x1AF4, 0x1000, 0x020000)
    assert not sel.matches(0x8086, 0x1000, 0x020000)
    assert IdSelector.parse(":1000").matches(0x1AF4, 0x1000, 0)
    assert IdSelector.parse("::0108").matches(1, 2, 0x010802)
    assert not IdSelector.parse("::0108:01").matches(1, 2, 0x010802)
    assert IdSelector.parse("::0108:02").matches(1, 2, 0x010802)
    for bad in ("1af4", "12345:", "1:2:3:4:5", "zz:"):
        with pytest.raises(UsageError):
            IdSelector.parse(bad)
