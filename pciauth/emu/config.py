"""The emulated device's config space: bytes, per-bit write masks, and register hooks.

Each byte has a mask of bits software may write (RW) and a mask of bits that clear when
written with 1 (RW1C); every other bit is read-only, as in hardware. A range of dwords can be
handed to a hook (the DOE registers), whose reads and writes have side effects. Every access is
counted in :attr:`EmulatedConfigSpace.stats`, which the DOE benchmark reports.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pciauth.errors import UsageError
from pciauth.pci.config import EXTENDED_SIZE, ConfigSpace


class RegisterHook(Protocol):
    """Registers with side effects; offsets are relative to the hook's base, dword aligned."""

    def read_reg(self, reg: int) -> int: ...

    def peek_reg(self, reg: int) -> int:
        """The register's value without a read's side effects (snapshots)."""
        ...

    def write_reg(self, reg: int, value: int, byte_mask: int) -> None: ...


@dataclass
class AccessStats:
    reads: int = 0
    writes: int = 0

    @property
    def total(self) -> int:
        return self.reads + self.writes

    def reset(self) -> None:
        self.reads = self.writes = 0


@dataclass
class _Hook:
    base: int
    size: int
    hook: RegisterHook


class EmulatedConfigSpace(ConfigSpace):
    """4 KiB of config space with RO/RW/RW1C bits and hooked register ranges."""

    def __init__(self, name: str = "emu:0", size: int = EXTENDED_SIZE) -> None:
        self.name = name
        self.size = size
        self.data = bytearray(size)
        self.rw = bytearray(size)  # writable bits
        self.w1c = bytearray(size)  # write-1-to-clear bits
        self.hooks: list[_Hook] = []
        self.stats = AccessStats()
        self.log: list[tuple[str, int, int, int]] | None = None  # (r/w, offset, width, value)

    # -- building --------------------------------------------------------------------------
    def put(self, offset: int, width: int, value: int, *, rw: int = 0, w1c: int = 0) -> None:
        """Set the reset value and the RW / RW1C masks of a register."""
        self._claim(offset, width)
        for i in range(width):
            shift = 8 * i
            self.data[offset + i] = (value >> shift) & 0xFF
            self.rw[offset + i] = (rw >> shift) & 0xFF
            self.w1c[offset + i] = (w1c >> shift) & 0xFF

    def put_bytes(self, offset: int, data: bytes) -> None:
        self._claim(offset, len(data))
        self.data[offset : offset + len(data)] = data

    def add_hook(self, base: int, size: int, hook: RegisterHook) -> None:
        if base % 4 or size % 4:
            raise UsageError("register hooks cover whole dwords")
        self._claim(base, size)
        for h in self.hooks:
            if base < h.base + h.size and h.base < base + size:
                raise UsageError(f"register hook at 0x{base:x} overlaps one at 0x{h.base:x}")
        self.hooks.append(_Hook(base, size, hook))

    def _claim(self, offset: int, width: int) -> None:
        if offset < 0 or offset + width > self.size:
            raise UsageError(f"register at 0x{offset:x}+{width} is outside config space")

    # -- access ----------------------------------------------------------------------------
    def _hook_at(self, offset: int) -> _Hook | None:
        for h in self.hooks:
            if h.base <= offset < h.base + h.size:
                return h
        return None

    def _read(self, offset: int, width: int) -> int:
        self.stats.reads += 1
        h = self._hook_at(offset)
        if h is not None:
            dword_off = offset & ~3
            value = h.hook.read_reg(dword_off - h.base)
            value = (value >> (8 * (offset - dword_off))) & ((1 << (8 * width)) - 1)
        else:
            value = int.from_bytes(self.data[offset : offset + width], "little")
        if self.log is not None:
            self.log.append(("r", offset, width, value))
        return value

    def _write(self, offset: int, width: int, value: int) -> None:
        self.stats.writes += 1
        if self.log is not None:
            self.log.append(("w", offset, width, value))
        h = self._hook_at(offset)
        if h is not None:
            dword_off = offset & ~3
            shift = 8 * (offset - dword_off)
            byte_mask = ((1 << width) - 1) << (offset - dword_off)
            h.hook.write_reg(dword_off - h.base, (value << shift) & 0xFFFFFFFF, byte_mask)
            return
        for i in range(width):
            b = (value >> (8 * i)) & 0xFF
            o = offset + i
            keep = self.data[o] & ~self.rw[o] & 0xFF
            new = keep | (b & self.rw[o])
            new &= ~(b & self.w1c[o]) & 0xFF
            self.data[o] = new

    def read_bytes(self, offset: int = 0, length: int | None = None) -> bytes:
        """A snapshot: not counted, and hooked registers are peeked (no side effects)."""
        if length is None:
            length = self.size - offset
        if offset < 0 or length < 0 or offset + length > self.size:
            return super().read_bytes(offset, length)  # raises the bounds error
        out = bytearray(self.data[offset : offset + length])
        for h in self.hooks:
            for reg in range(0, h.size, 4):
                o = h.base + reg
                if offset <= o and o + 4 <= offset + length:
                    struct.pack_into("<I", out, o - offset, h.hook.peek_reg(reg))
        return bytes(out)

    def snapshot(self) -> bytes:
        return bytes(self.data)


@dataclass
class CapLayout:
    """Where each capability went; for docs, reports and tests."""

    capabilities: dict[str, int] = field(default_factory=dict)
    extended: dict[str, int] = field(default_factory=dict)


def first_free(taken: Iterable[tuple[int, int]], size: int, start: int = 0x100, align: int = 0x10) -> int:
    """The first ``align``-aligned offset from ``start`` where ``size`` bytes fit between ``taken``."""
    spans = sorted(taken)
    off = start
    while off + size <= EXTENDED_SIZE:
        clash = next((s for s in spans if off < s[0] + s[1] and s[0] < off + size), None)
        if clash is None:
            return off
        off = (clash[0] + clash[1] + align - 1) // align * align
    raise UsageError(f"no room for a {size}-byte extended capability")
