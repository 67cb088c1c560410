"""DMTF measurement blocks (DSP0274 "Measurement block" and "DMTF measurement specification format").

A measurement record is a sequence of blocks::

    Index u8 | MeasurementSpecification u8 | MeasurementSize u16 | Measurement
    Measurement (DMTF) = DMTFSpecMeasurementValueType u8 | DMTFSpecMeasurementValueSize u16 | Value

The value type's bit 7 says raw bit stream (1) or digest (0); bits 6:0 say what was measured
(ROM, firmware, configuration, ...).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pciauth.spdm import constants as C
from pciauth.spdm.messages_base import Reader, SpdmMalformed


class MeasurementBlock(NamedTuple):
    """One measurement block (immutable; a tuple, cheap to build for every block a device sends)."""

    index: int
    spec: int  # MeasurementSpecification bits (DMTF = 1)
    value_type: int  # DMTFSpecMeasurementValueType, bit 7 raw
    value: bytes
    raw: bytes = b""  # the whole block as it travelled

    @property
    def is_raw(self) -> bool:
        return bool(self.value_type & C.DMTF_RAW_BIT)

    @property
    def type_name(self) -> str:
        return C.measurement_type_name(self.value_type)

    def encode(self) -> bytes:
        dmtf = struct.pack("<BH", self.value_type, len(self.value)) + self.value
        return struct.pack("<BBH", self.index, self.spec, len(dmtf)) + dmtf

    def to_dict(self) -> dict:
        vt = self.value_type
        return {
            "index": self.index,
            "spec": "dmtf" if self.spec == C.MEAS_SPEC_DMTF else f"0x{self.spec:02x}",
            "type": C.measurement_type_name(vt),
            "type_value": vt & 0x7F,
            "representation": "raw" if vt & C.DMTF_RAW_BIT else "digest",
            "value": self.value.hex(),
            "raw": (self.raw or self.encode()).hex(),
        }


def make_block(index: int, mtype: int, value: bytes, *, raw: bool) -> MeasurementBlock:
    vt = (mtype & 0x7F) | (C.DMTF_RAW_BIT if raw else 0)
    b = MeasurementBlock(index, C.MEAS_SPEC_DMTF, vt, bytes(value))
    return MeasurementBlock(b.index, b.spec, b.value_type, b.value, b.encode())


#: Index, MeasurementSpecification, MeasurementSize, then the DMTF header that starts the
#: Measurement: DMTFSpecMeasurementValueType, DMTFSpecMeasurementValueSize (7 bytes in all)
_BLOCK_AND_DMTF_HEADERS = struct.Struct("<BBHBH")


def parse_record(record: bytes, count: int) -> list[MeasurementBlock]:
    """Parse ``count`` blocks that must fill ``record`` exactly.

    The loop below checks every field; on the first thing it does not like it hands the whole
    record to :func:`_parse_record_checked`, which walks it field by field and raises the error
    that names the field. Both accept exactly the same records.
    """
    data = record if type(record) is bytes else bytes(record)
    n = len(data)
    pos = 0
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    unpack, dmtf = _BLOCK_AND_DMTF_HEADERS.unpack_from, C.MEAS_SPEC_DMTF
    for _ in range(count):
        if pos + 7 > n:
            break
        index, spec, size, vtype, vsize = unpack(data, pos)
        end = pos + 4 + size
        if end > n or vsize != size - 3 or index in seen or index == 0 or index == 0xFF or spec != dmtf:
            break
        seen.add(index)
        blocks.append(MeasurementBlock(index, spec, vtype, data[pos + 7 : end], data[pos:end]))
        pos = end
    else:
        if pos == n:
            return blocks
    _parse_record_checked(data, count)
    raise SpdmMalformed("MeasurementRecord: inconsistent measurement blocks", field="MeasurementRecord")


def _parse_record_checked(record: bytes, count: int) -> list[MeasurementBlock]:
    """Field-by-field parse of a measurement record; raises naming the first broken field."""
    r = Reader(record, "MeasurementRecord")
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    for i in range(count):
        begin = r.pos
        index = r.u8(f"block[{i}].Index")
        spec = r.u8(f"block[{i}].MeasurementSpecification")
        size = r.u16(f"block[{i}].MeasurementSize")
        body = r.take(size, f"block[{i}].Measurement (MeasurementSize {size})")
        if index in (0, 0xFF):
            raise SpdmMalformed(f"measurement block {i} has reserved index {index}", field=f"block[{i}].Index")
        if index in seen:
            raise SpdmMalformed(f"measurement index {index} repeated", field=f"block[{i}].Index")
        seen.add(index)
        if spec != C.MEAS_SPEC_DMTF:
            raise SpdmMalformed(f"measurement block {index}: specification 0x{spec:02x} is not DMTF",
                                field=f"block[{i}].MeasurementSpecification")
        br = Reader(body, f"measurement block {index}")
        vtype = br.u8("DMTFSpecMeasurementValueType")
        vsize = br.u16("DMTFSpecMeasurementValueSize")
        value = br.take(vsize, f"DMTFSpecMeasurementValue (ValueSize {vsize})")
        if br.rest():
            raise SpdmMalformed(f"measurement block {index}: MeasurementSize {size} disagrees with "
                                f"ValueSize {vsize}", field=f"block[{i}].MeasurementSize")
        blocks.append(MeasurementBlock(index, spec, vtype, value, r.data[begin : r.pos]))
    if r.rest():
        raise SpdmMalformed(f"MeasurementRecord: {r.rest()} byte(s) beyond NumberOfBlocks={count}",
                            field="MeasurementRecordLength")
    return blocks


def summary_input(blocks: list[MeasurementBlock], summary_type: int, version: int) -> bytes:
    """Bytes hashed into a measurement summary hash (CHALLENGE_AUTH, KEY_EXCHANGE_RSP).

    ``all`` takes every block; ``tcb`` the blocks of the device's TCB, which pciauth's responder
    defines as every block that is not informational or a manifest. From SPDM 1.2 on each whole
    block is hashed (header included); 1.0/1.1 hash only each block's Measurement field (the
    DMTF header and value), as libspdm does.
    """
    picked = blocks if summary_type == C.MEAS_SUMMARY_ALL else [
        b for b in blocks if (b.value_type & 0x7F) in _TCB_TYPES]
    raws = [b.raw or b.encode() for b in picked]
    if version < C.V12:
        raws = [r[4:] for r in raws]
    return b"".join(raws)


_TCB_TYPES = {
    C.MeasurementType.IMMUTABLE_ROM, C.MeasurementType.MUTABLE_FIRMWARE, C.MeasurementType.HARDWARE_CONFIG,
    C.MeasurementType.FIRMWARE_CONFIG, C.MeasurementType.FIRMWARE_VERSION, C.MeasurementType.FIRMWARE_SVN,
}
