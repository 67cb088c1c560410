"""Support shared by the fuzz harnesses: input slicing, hostile devices, crash records.

The rule every harness checks: whatever bytes come in, only :class:`pciauth.errors.PciauthError`
subclasses escape (the responder answers an SPDM ERROR), never another exception, a hang or an
unbounded allocation. A harness is a function ``target(data: bytes) -> None``; it raises
:class:`FuzzFinding` for a problem it detects itself (an exception a catch-all would have hidden,
a state that cannot be), any other non-pciauth exception is a finding too.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import traceback
from collections.abc import Callable

from _paths import HERE  # (and the repository root on sys.path)

from pciauth.errors import PciauthError

CRASH_DIR = os.path.join(HERE, "crashes")


class FuzzFinding(Exception):
    """A harness saw a bug that pciauth itself hid (catch-all, impossible result)."""


class Stream:
    """Consume a fuzz input piece by piece; past the end everything reads as zero."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def u8(self) -> int:
        b = self.take(1)
        return b[0] if b else 0

    def u16(self) -> int:
        return int.from_bytes(self.take(2).ljust(2, b"\0"), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4).ljust(4, b"\0"), "little")

    def rest(self) -> bytes:
        return self.take(self.left())


def pack_chunks(chunks: list[bytes]) -> bytes:
    """Chunks as (u32 length, bytes) records: the input format of multi-message harnesses."""
    return b"".join(struct.pack("<I", len(c)) + bytes(c) for c in chunks)


def unpack_chunks(data: bytes, limit: int = 64) -> list[bytes]:
    """The inverse of :func:`pack_chunks`, lenient: a length past the end takes what is left."""
    s = Stream(data)
    out: list[bytes] = []
    while s.left() and len(out) < limit:
        n = s.u32()
        out.append(s.take(min(n, s.left())))
    return out


class FakeClock:
    """A clock whose sleep() advances time at once: timeouts are checked without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        self.now += 1e-6
        return self.now

    time = monotonic

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise FuzzFinding(f"sleep({seconds}) with a negative delay")
        if seconds > 3600:
            raise FuzzFinding(f"sleep({seconds}): a device value turned into an hour-long wait")
        self.now += seconds
        self.slept += seconds


def signature(exc: BaseException) -> str:
    """Exception type and the innermost pciauth frame: one name per distinct bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = "?"
    for fr in reversed(frames):
        if "/pciauth/" in fr.filename:
            where = f"{os.path.basename(fr.filename)}:{fr.lineno}"
            break
    else:
        if frames:
            where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"
    return f"{type(exc).__name__}@{where}"


def run_one(target: Callable[[bytes], None], data: bytes) -> BaseException | None:
    """Run ``target`` on ``data``; the finding (an exception that breaks the rule) or None."""
    try:
        target(data)
    except PciauthError:
        return None
    except Exception as exc:  # RecursionError and FuzzFinding included
        return exc
    return None


def save_crash(target_name: str, data: bytes, exc: BaseException, kind: str = "crash") -> str:
    """Write the input and its traceback to ``crashes/<target>/``; the path of the input."""
    sig = signature(exc) if kind == "crash" else kind
    slug = re.sub(r"[^A-Za-z0-9_.@-]+", "_", sig)[:80]
    digest = hashlib.sha1(data).hexdigest()[:12]
    d = os.path.join(CRASH_DIR, target_name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{slug}-{digest}.bin")
    with open(path, "wb") as f:
        f.write(data)
    with open(path[:-4] + ".txt", "w") as f:
        f.write(f"target: {target_name}\nsignature: {sig}\ninput ({len(data)} bytes): {data[:512].hex()}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return path
