import struct

import pytest
from fakesysfs import ConfigImage
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.errors import MalformedData, PciauthError
from pciauth.pci.capabilities import (
    find_extended,
    read_serial_number,
    walk_capabilities,
    walk_extended_capabilities,
)
from pciauth.pci.config import BytesConfigSpace


def cs(img):
    return BytesConfigSpace(img.bytes() if isinstance(img, ConfigImage) else img)


def test_standard_chain():
    img = ConfigImage().add_cap(0x40, 0x01).add_cap(0x50, 0x05).add_cap(0x70, 0x10)
    caps = walk_capabilities(cs(img))
    assert [(c.id, c.offset) for c in caps] == [(1, 0x40), (5, 0x50), (0x10, 0x70)]
    assert [c.name for c in caps] == ["Power Management", "MSI", "PCI Express"]
    assert caps.warnings == []


def test_no_capability_list_bit():
    img = ConfigImage().add_cap(0x40, 0x01)
    img.data[0x06] = 0
    assert len(walk_capabilities(cs(img))) == 0


def test_standard_loop_is_stopped():
    img = ConfigImage().add_cap(0x40, 0x01).add_cap(0x50, 0x05).set_std_next(0x50, 0x40)
    caps = walk_capabilities(cs(img))
    assert len(caps) == 2
    assert "loops" in caps.warnings[0]
    with pytest.raises(MalformedData) as e:
        walk_capabilities(cs(img), strict=True)
    assert e.value.field == "next_pointer"


def test_standard_pointer_into_header():
    img = ConfigImage().add_cap(0x40, 0x01).set_std_next(0x40, 0x10)
    caps = walk_capabilities(cs(img))
    assert len(caps) == 1 and "into the header" in caps.warnings[0]


def test_standard_pointer_past_end_of_truncated_config():
    img = ConfigImage(size=256).add_cap(0x40, 0x01).set_std_next(0x40, 0xA0)
    caps = walk_capabilities(BytesConfigSpace(img.bytes()[:0x80]))
    assert len(caps) == 1 and "past the readable" in caps.warnings[0]


def test_extended_chain_with_two_does_and_dsn():
    img = ConfigImage().add_ext_cap(0x100, 0x01, 2).add_ext_cap(0x140, 0x03, 1, struct.pack("<Q", 0x1122334455667788))
    img.add_ext_cap(0x160, 0x2E, 1).add_ext_cap(0x200, 0x2E, 2)
    caps = walk_extended_capabilities(cs(img))
    assert [(c.id, c.version, c.offset) for c in caps] == [(1, 2, 0x100), (3, 1, 0x140), (0x2E, 1, 0x160), (0x2E, 2, 0x200)]
    assert find_extended(cs(img), 0x2E) == [0x160, 0x200]
    assert read_serial_number(cs(img)) == 0x1122334455667788


def test_extended_loop_and_backward_pointer():
    img = ConfigImage().add_ext_cap(0x100, 0x01).add_ext_cap(0x140, 0x2E).set_ext_next(0x140, 0x100)
    caps = walk_extended_capabilities(cs(img))
    assert len(caps) == 2 and "loops" in caps.warnings[0]
    img = ConfigImage().add_ext_cap(0x100, 0x01).set_ext_next(0x100, 0x40)
    caps = walk_extended_capabilities(cs(img))
    assert len(caps) == 1 and "below 0x100" in caps.warnings[0]


def test_extended_past_end_and_empty_target():
    img = ConfigImage().add_ext_cap(0x100, 0x01)
    data = img.bytes()[:0x180]
    struct.pack_into("<I", bytearray(data), 0x100, 0)
    img.set_ext_next(0x100, 0x200)
    caps = walk_extended_capabilities(BytesConfigSpace(img.bytes()[:0x180]))
    assert len(caps) == 1 and "past the end" in caps.warnings[0]
    caps = walk_extended_capabilities(cs(img))  # 0x200 is all zeroes
    assert len(caps) == 1 and "empty header" in caps.warnings[0]


def test_no_extended_space_when_only_256_or_64_bytes():
    img = ConfigImage().add_ext_cap(0x100, 0x2E)
    assert len(walk_extended_capabilities(BytesConfigSpace(img.bytes()[:256]))) == 0
    assert len(walk_extended_capabilities(BytesConfigSpace(img.bytes()[:64]))) == 0
    assert len(walk_capabilities(BytesConfigSpace(img.bytes()[:64]))) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=4096), st.booleans())
def test_walkers_never_crash_on_random_config(data, strict):
    cfg = BytesConfigSpace(data)
    for walker in (walk_capabilities, walk_extended_capabilities):
        try:
            caps = walker(cfg, strict=strict)
        except PciauthError:
            continue
        offsets = [c.offset for c in caps]
        assert len(offsets) == len(set(offsets))
        assert all(0 <= o < len(data) for o in offsets)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 0xFF), min_size=1, max_size=64))
def test_random_pointer_chains_terminate(pointers):
    img = ConfigImage(size=256)
    img.data[0x06] |= 0x10
    img.data[0x34] = pointers[0]
    for i, p in enumerate(pointers):
        off = p & 0xFC
        if off >= 0x40 and off + 1 < 256:
            img.data[off] = 0x01
            img.data[off + 1] = pointers[(i + 1) % len(pointers)]
    caps = walk_capabilities(cs(img))
    assert len(caps) <= 48
