"""PCI addresses and lspci-style selectors.

:class:`PciAddress` parses every form lspci prints or accepts for one function:
``0000:01:00.0``, ``01:00.0``, ``1:0.0`` (domain defaults to 0). :class:`SlotSelector`
is ``lspci -s [[[[<domain>]:]<bus>]:][<slot>][.[<func>]]`` with ``*`` or empty fields as
wildcards, and :class:`IdSelector` is ``lspci -d [<vendor>]:[<device>][:<class>[:<prog-if>]]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pciauth.errors import UsageError

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_LIMITS = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "function": 0x7}


def _field(text: str, name: str, what: str) -> int:
    if not _HEX.match(text):
        raise UsageError(f"invalid {name} {text!r} in PCI address {what!r}")
    value = int(text, 16)
    if value > _LIMITS[name]:
        raise UsageError(f"{name} 0x{value:x} out of range in PCI address {what!r} (max 0x{_LIMITS[name]:x})")
    return value


@dataclass(frozen=True, order=True)
class PciAddress:
    """One PCI function: domain, bus, slot (device), function."""

    domain: int
    bus: int
    slot: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``[domain:]bus:slot.func`` (hex, any width); raises UsageError."""
        what = text
        text = text.strip()
        if text.count(".") != 1:
            raise UsageError(f"not a PCI address: {what!r} (expected [domain:]bus:slot.func, e.g. 0000:01:00.0)")
        head, func = text.split(".")
        parts = head.split(":")
        if len(parts) == 2:
            domain, bus, slot = "0", parts[0], parts[1]
        elif len(parts) == 3:
            domain, bus, slot = parts
        else:
            raise UsageError(f"not a PCI address: {what!r} (expected [domain:]bus:slot.func, e.g. 0000:01:00.0)")
        return cls(
            _field(domain, "domain", what),
            _field(bus, "bus", what),
            _field(slot, "slot", what),
            _field(func, "function", what),
        )

    @classmethod
    def looks_like(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except UsageError:
            return False
        return True

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"


@dataclass(frozen=True)
class SlotSelector:
    """``lspci -s``: each field None means any."""

    domain: int | None = None
    bus: int | None = None
    slot: int | None = None
    function: int | None = None

    @classmethod
    def parse(cls, text: str) -> SlotSelector:
        what = text

        def opt(value: str, name: str) -> int | None:
            return None if value in ("", "*") else _field(value, name, what)

        func = None
        if "." in text:
            text, f = text.rsplit(".", 1)
            func = opt(f, "function")
        parts = text.split(":")
        if len(parts) > 3:
            raise UsageError(f"invalid slot selector {what!r}: use [[[domain]:]bus]:][slot][.[func]]")
        domain = bus = slot = None
        if len(parts) == 3:
            domain, bus, slot = opt(parts[0], "domain"), opt(parts[1], "bus"), opt(parts[2], "slot")
        elif len(parts) == 2:
            bus, slot = opt(parts[0], "bus"), opt(parts[1], "slot")
        else:
            slot = opt(parts[0], "slot")
        return cls(domain, bus, slot, func)

    def matches(self, addr: PciAddress) -> bool:
        return all(
            want is None or want == have
            for want, have in (
                (self.domain, addr.domain),
                (self.bus, addr.bus),
                (self.slot, addr.slot),
                (self.function, addr.function),
            )
        )


@dataclass(frozen=True)
class IdSelector:
    """``lspci -d [vendor]:[device][:class[:prog-if]]``: each field None means any."""

    vendor: int | None = None
    device: int | None = None
    class_: int | None = None  # 16-bit base class + subclass
    prog_if: int | None = None

    @classmethod
    def parse(cls, text: str) -> IdSelector:
        what = text
        parts = text.split(":")
        if not 2 <= len(parts) <= 4:
            raise UsageError(f"invalid id selector {what!r}: use [vendor]:[device][:class[:prog-if]]")

        def opt(value: str, bits: int, name: str) -> int | None:
            if value in ("", "*"):
                return None
            if not _HEX.match(value) or int(value, 16) >> bits:
                raise UsageError(f"invalid {name} {value!r} in id selector {what!r}")
            return int(value, 16)

        vendor = opt(parts[0], 16, "vendor")
        device = opt(parts[1], 16, "device")
        class_ = opt(parts[2], 16, "class") if len(parts) > 2 else None
        prog_if = opt(parts[3], 8, "prog-if") if len(parts) > 3 else None
        return cls(vendor, device, class_, prog_if)

    def matches(self, vendor: int, device: int, class_code: int) -> bool:
        return (
            (self.vendor is None or self.vendor == vendor)
            and (self.device is None or self.device == device)
            and (self.class_ is None or self.class_ == class_code >> 8)
            and (self.prog_if is None or self.prog_if == class_code & 0xFF)
        )
