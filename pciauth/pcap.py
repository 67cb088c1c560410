"""pcap captures of SPDM traffic, one DOE data object per record (``--pcap FILE``).

The file is a classic libpcap file (magic 0xa1b2c3d4, version 2.4, microsecond timestamps)
with link type 292, LINKTYPE_PCI_DOE: each record's data starts with the first DOE header
dword, exactly as DMTF's spdm-emu writes its captures, so DMTF ``spdm_dump`` and Wireshark's
SPDM dissectors read them.

Direction: classic pcap has no direction field and DMTF's tools add no pseudo header; they tell
requests from responses by the SPDM request/response code (bit 7 set in a request code).
:func:`doe_direction` applies the same rule; ``write_doe(..., from_device=)`` keeps the direction
in :attr:`PcapWriter.directions` for callers and tests, but not in the file.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import struct
import threading
import time
from typing import Any, BinaryIO

from pciauth.errors import (
    MalformedData,
    NotFoundError,
    PciauthError,
    PermissionDeniedError,
    TransportError,
    UsageError,
)

LINKTYPE_MCTP = 291
LINKTYPE_PCI_DOE = 292
MAGIC = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D
GLOBAL_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
DEFAULT_SNAPLEN = 1 << 20  # a whole DOE object (2^18 dwords)
#: Reader bound on one record, whatever the file claims.
MAX_RECORD = (1 << 20) + 64


#: Why a file the user named cannot be created, by errno: the user's path, not the transport.
OPEN_ERRORS: dict[int, type[PciauthError]] = {
    errno.ENOENT: NotFoundError,
    errno.ENOTDIR: NotFoundError,
    errno.EACCES: PermissionDeniedError,
    errno.EPERM: PermissionDeniedError,
    errno.EROFS: PermissionDeniedError,
    errno.EISDIR: UsageError,
}


class PcapWriter:
    """Append DOE objects to a pcap file. Thread safe; flushes every record."""

    def __init__(
        self, path: str | os.PathLike, *, link_type: int = LINKTYPE_PCI_DOE, snaplen: int = DEFAULT_SNAPLEN
    ):
        self.path = str(path)
        self.snaplen = snaplen
        self.link_type = link_type
        self.records = 0
        self.directions: list[bool] = []
        self._lock = threading.Lock()
        try:
            self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed by close()
            self._file.write(GLOBAL_HEADER.pack(MAGIC, 2, 4, 0, 0, snaplen, link_type))
            self._file.flush()
        except OSError as e:
            kind = OPEN_ERRORS.get(e.errno, TransportError)
            raise kind(f"{self.path}: cannot write pcap: {e.strerror or e}", path=self.path, errno=e.errno) from None

    def write_doe(self, obj_bytes: bytes, *, from_device: bool, timestamp: float | None = None) -> None:
        """Record one whole DOE object (header included)."""
        data = bytes(obj_bytes)
        ts = time.time() if timestamp is None else timestamp
        sec = int(ts)
        usec = min(int((ts - sec) * 1_000_000), 999_999)
        incl = data[: self.snaplen]
        with self._lock:
            if self._file is None:
                raise TransportError(f"{self.path}: pcap already closed", path=self.path)
            self._file.write(RECORD_HEADER.pack(sec, usec, len(incl), len(data)) + incl)
            self._file.flush()
            self.records += 1
            self.directions.append(from_device)

    def close(self) -> None:
        with self._lock:
            f, self._file = self._file, None
        if f is not None:
            f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class PcapRecord:
    timestamp: float
    data: bytes
    orig_len: int


def read_pcap_bytes(blob: bytes, *, name: str = "pcap") -> tuple[int, list[PcapRecord]]:
    """(link type, records) of a classic pcap image; every length is checked."""
    if len(blob) < GLOBAL_HEADER.size:
        raise MalformedData(f"{name}: {len(blob)} bytes, too short for a pcap header", field="header")
    (magic,) = struct.unpack_from("<I", blob)
    for endian in ("<", ">"):
        (m,) = struct.unpack_from(endian + "I", blob)
        if m in (MAGIC, MAGIC_NANO):
            break
    else:
        raise MalformedData(f"{name}: bad magic {magic:#010x}, not a classic pcap file", field="magic")
    nano = m == MAGIC_NANO
    _, major, _minor, _zone, _sig, snaplen, link_type = struct.unpack_from(endian + "IHHiIII", blob)
    if major != 2:
        raise MalformedData(f"{name}: pcap version {major} unsupported", field="version")
    rec = struct.Struct(endian + "IIII")
    records: list[PcapRecord] = []
    off = GLOBAL_HEADER.size
    while off < len(blob):
        if len(blob) - off < rec.size:
            raise MalformedData(f"{name}: truncated record header at offset {off}", field="record")
        sec, frac, incl, orig = rec.unpack_from(blob, off)
        off += rec.size
        if incl > MAX_RECORD or incl > len(blob) - off:
            raise MalformedData(
                f"{name}: record {len(records)} claims {incl} bytes, {len(blob) - off} left", field="incl_len"
            )
        if incl > orig:
            raise MalformedData(
                f"{name}: record {len(records)} incl_len {incl} > orig_len {orig}", field="incl_len"
            )
        ts = sec + frac / (1e9 if nano else 1e6)
        records.append(PcapRecord(ts, blob[off : off + incl], orig))
        off += incl
    return link_type, records


#: Largest pcap file :func:`read_pcap` loads.
MAX_FILE = 64 << 20


def read_pcap(path: str | os.PathLike) -> tuple[int, list[PcapRecord]]:
    """(link type, records) of a pcap file (a regular file of at most 64 MiB)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file", path=str(path))
    except OSError as e:
        raise TransportError(f"{path}: cannot open pcap: {e.strerror or e}", path=str(path), errno=e.errno)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            raise MalformedData(f"{path}: not a regular file of at most {MAX_FILE} bytes", field="file")
        blob = f.read(MAX_FILE + 1)
    if len(blob) > MAX_FILE:
        raise MalformedData(f"{path}: larger than {MAX_FILE} bytes", field="file")
    return read_pcap_bytes(blob, name=str(path))


def doe_direction(obj: bytes) -> bool | None:
    """True for a response (from the device), False for a request, None when unknown.

    The DMTF rule: in a CMA object (vendor 1 type 1) the SPDM code byte has bit 7 set in a
    request. Secured and discovery objects carry no such mark.
    """
    if len(obj) < 10:
        return None
    h1 = int.from_bytes(obj[0:4], "little")
    if h1 & 0xFFFF != 0x0001 or (h1 >> 16) & 0xFF != 1:
        return None
    return not obj[9] & 0x80


class PcapTransport:
    """A Transport wrapper that records every exchange of ``inner`` as DOE objects."""

    def __init__(self, inner: Any, writer: PcapWriter) -> None:
        self.inner = inner
        self.writer = writer

    @property
    def exchanges(self) -> int:
        return getattr(self.inner, "exchanges", 0)

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        from pciauth.spdm.socket import (
            DOE_TYPE_CMA,
            DOE_TYPE_SECURED_CMA,
            DOE_VENDOR_PCISIG,
            encode_doe_object,
        )

        type_ = DOE_TYPE_SECURED_CMA if secured else DOE_TYPE_CMA
        self.writer.write_doe(encode_doe_object(DOE_VENDOR_PCISIG, type_, message), from_device=False)
        response = self.inner.exchange(message, secured=secured)
        self.writer.write_doe(encode_doe_object(DOE_VENDOR_PCISIG, type_, response), from_device=True)
        return response

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.writer.close()

    def __getattr__(self, name: str) -> Any:  # discover(), test(), ... of the inner transport
        if name in ("inner", "writer"):
            raise AttributeError(name)
        return getattr(self.inner, name)
