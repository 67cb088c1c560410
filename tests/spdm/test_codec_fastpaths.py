"""The fast measurement-record parser accepts and rejects exactly what the field-by-field one does.

``parse_record`` reads blocks with precompiled structs and falls back to
``_parse_record_checked`` (which names the broken field) on anything unusual; both must agree
on every input, blocks and error messages alike.
"""

from __future__ import annotations

import struct

import pytest
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


# --- AlgStructs and fixed-field runs (NEGOTIATE_ALGORITHMS, ALGORITHMS, CAPABILITIES) ---------------

def _alg_outcome(parse, data: bytes, n: int) -> tuple:
    from pciauth.spdm.messages_base import Reader

    r = Reader(data, "ALGORITHMS")
    try:
        out = parse(r, n, "ALGORITHMS")
    except MalformedData as e:
        return ("error", str(e), e.field)
    return ("ok", [(s.alg_type, s.supported, s.external) for s in out], r.pos)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from([0x20, 0x21, 0x10, 0x22, 0x30]),
                          st.integers(0, 0xFFFF)), max_size=5),
       st.integers(0, 6), st.binary(max_size=9))
def test_alg_struct_fast_and_checked_parsers_agree(structs, n, tail):
    from pciauth.spdm.messages import _parse_alg_structs, _parse_alg_structs_checked

    data = b"".join(struct.pack("<BBH", t, cnt, sup) for t, cnt, sup in structs) + tail
    assert _alg_outcome(_parse_alg_structs, data, n) == _alg_outcome(_parse_alg_structs_checked, data, n)


@pytest.mark.parametrize("version", [0x10, 0x11, 0x12, 0x13])
def test_fixed_field_runs_name_the_field_cut(version):
    """A Layout read of a short message names the first field that does not fit, as field-by-field reads did."""
    from pciauth.spdm import messages as M

    full = M.Capabilities(version, 12, 0x12345678, 0x1200, 0x1400).encode()
    # the field that starts at or straddles each offset from 4 (right after the header) on
    names = ["Reserved", "CTExponent", "Reserved", "Reserved"] + ["Flags"] * 4
    names += ["DataTransferSize"] * 4 + ["MaxSPDMmsgSize"] * 4
    for cut in range(4, len(full)):
        with pytest.raises(MalformedData) as e:
            M.Capabilities.parse(full[:cut])
        assert e.value.field == names[cut - 4]
        assert f"truncated at {e.value.field}" in str(e.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48), st.sampled_from([0x10, 0x11, 0x12, 0x13]), st.integers(0, 4))
def test_algorithm_messages_take_any_bytes(body, version, nstruct):
    """Arbitrary bytes after the header: a message or MalformedData, nothing else escapes."""
    from pciauth.spdm import messages as M

    for cls, code in ((M.Algorithms, 0x63), (M.NegotiateAlgorithms, 0xE3)):
        try:
            cls.parse(bytes((version, code, nstruct, 0)) + body)
        except MalformedData:
            pass
