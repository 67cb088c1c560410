"""The fast measurement-record parser accepts and rejects exactly what the field-by-field one does.

``parse_record`` reads blocks with precompiled structs and falls back to
``_parse_record_checked`` (which names the broken field) on anything unusual; both must agree
on every input, blocks and error messages alike.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.errors import MalformedData
from pciauth.spdm.measurements import _parse_record_checked, parse_record


def _record(blocks: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for i, (vtype, value) in enumerate(blocks):
        dmtf = struct.pack("<BH", vtype, len(value)) + value
        out += struct.pack("<BBH", i + 1, 1, len(dmtf)) + dmtf
    return out


def _outcome(parse, record: bytes, count: int) -> tuple:
    try:
        return ("ok", [(b.index, b.spec, b.value_type, b.value, b.raw) for b in parse(record, count)])
    except MalformedData as e:
        return ("error", str(e), e.field)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=8)), max_size=4),
    st.integers(0, 6),
    st.binary(max_size=6),
    st.integers(0, 48),
    st.integers(0, 255),
)
def test_fast_and_checked_parsers_agree(blocks, count, junk, pos, value):
    record = bytearray(_record(blocks) + junk)
    if pos < len(record):
        record[pos] = value  # one mutated byte: lengths, indices, specs, sizes
    data = bytes(record)
    assert _outcome(parse_record, data, count) == _outcome(_parse_record_checked, data, count)


def test_well_formed_record_parses_fast():
    data = _record([(0x01, b"\xaa" * 32), (0x83, b"cfg")])
    blocks = parse_record(data, 2)
    assert [(b.index, b.value) for b in blocks] == [(1, b"\xaa" * 32), (2, b"cfg")]
    assert b"".join(b.raw for b in blocks) == data


def test_disagreeing_sizes_name_the_field():
    data = bytearray(_record([(0x01, b"\xaa" * 4)]))
    data[2] += 1  # MeasurementSize one more than the DMTF value needs
    data += b"\0"
    try:
        parse_record(bytes(data), 1)
    except MalformedData as e:
        assert e.field == "block[0].MeasurementSize"
    else:
        raise AssertionError("accepted a MeasurementSize that disagrees with ValueSize")
