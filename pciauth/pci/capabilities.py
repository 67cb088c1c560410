"""Walkers for the standard and extended PCI capability lists.

Config space comes from a device, so it is untrusted: the walkers stop at loops, at pointers
into the header or misaligned ones, and at reads past the readable size, and record each such
stop as a warning on the returned list instead of failing the whole listing. ``strict=True``
turns the first warning into :class:`~pciauth.errors.MalformedData` naming the pointer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pciauth.errors import ConfigSpaceError, MalformedData
from pciauth.pci.config import ConfigSpace

PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34
PCI_HEADER_TYPE = 0x0E
PCI_CB_CAPABILITY_LIST = 0x14  # CardBus bridges (header type 2)
EXT_CAP_START = 0x100
STD_HEADER_END = 0x40
#: More capabilities than fit in config space means a loop we did not catch otherwise.
MAX_STD_CAPS = (256 - STD_HEADER_END) // 2
MAX_EXT_CAPS = (4096 - EXT_CAP_START) // 4

PCI_EXT_CAP_ID_DSN = 0x03
PCI_EXT_CAP_ID_DOE = 0x2E
PCI_CAP_ID_EXP = 0x10

#: Standard capability ids (PCI Code and ID Assignment spec).
CAP_NAMES: dict[int, str] = {
    0x01: "Power Management",
    0x02: "AGP",
    0x03: "VPD",
    0x04: "Slot Identification",
    0x05: "MSI",
    0x06: "CompactPCI Hot Swap",
    0x07: "PCI-X",
    0x08: "HyperTransport",
    0x09: "Vendor Specific",
    0x0A: "Debug port",
    0x0B: "CompactPCI Central Resource Control",
    0x0C: "PCI Hot-Plug",
    0x0D: "Bridge Subsystem Vendor ID",
    0x0E: "AGP 8x",
    0x0F: "Secure Device",
    0x10: "PCI Express",
    0x11: "MSI-X",
    0x12: "SATA",
    0x13: "Advanced Features",
    0x14: "Enhanced Allocation",
    0x15: "Flattening Portal Bridge",
}

#: Extended capability ids.
EXT_CAP_NAMES: dict[int, str] = {
    0x01: "Advanced Error Reporting",
    0x02: "Virtual Channel",
    0x03: "Device Serial Number",
    0x04: "Power Budgeting",
    0x05: "Root Complex Link Declaration",
    0x06: "Root Complex Internal Link Control",
    0x07: "Root Complex Event Collector Endpoint Association",
    0x08: "Multi-Function VC",
    0x09: "Virtual Channel (MFVC)",
    0x0A: "Root Complex Register Block",
    0x0B: "Vendor Specific",
    0x0C: "Configuration Access Correlation",
    0x0D: "Access Control Services",
    0x0E: "Alternative Routing-ID Interpretation",
    0x0F: "Address Translation Services",
    0x10: "Single Root I/O Virtualization",
    0x11: "Multi-Root I/O Virtualization",
    0x12: "Multicast",
    0x13: "Page Request Interface",
    0x15: "Resizable BAR",
    0x16: "Dynamic Power Allocation",
    0x17: "TPH Requester",
    0x18: "Latency Tolerance Reporting",
    0x19: "Secondary PCI Express",
    0x1A: "Protocol Multiplexing",
    0x1B: "Process Address Space ID",
    0x1C: "LN Requester",
    0x1D: "Downstream Port Containment",
    0x1E: "L1 PM Substates",
    0x1F: "Precision Time Measurement",
    0x20: "PCI Express over M-PHY",
    0x21: "FRS Queueing",
    0x22: "Readiness Time Reporting",
    0x23: "Designated Vendor-Specific",
    0x24: "VF Resizable BAR",
    0x25: "Data Link Feature",
    0x26: "Physical Layer 16.0 GT/s",
    0x27: "Lane Margining at the Receiver",
    0x28: "Hierarchy ID",
    0x29: "Native PCIe Enclosure Management",
    0x2A: "Physical Layer 32.0 GT/s",
    0x2B: "Alternate Protocol",
    0x2C: "System Firmware Intermediary",
    0x2D: "Shadow Functions",
    0x2E: "Data Object Exchange",
    0x2F: "Device 3",
    0x30: "Integrity and Data Encryption",
    0x31: "Physical Layer 64.0 GT/s",
    0x32: "Flit Logging",
    0x33: "Flit Performance Measurement",
    0x34: "Flit Error Injection",
}


@dataclass(frozen=True)
class Capability:
    id: int
    offset: int

    @property
    def name(self) -> str:
        return CAP_NAMES.get(self.id, f"Unknown (0x{self.id:02x})")

    def to_dict(self) -> dict:
        return {"id": self.id, "offset": self.offset, "name": self.name}


@dataclass(frozen=True)
class ExtCapability:
    id: int
    version: int
    offset: int

    @property
    def name(self) -> str:
        return EXT_CAP_NAMES.get(self.id, f"Unknown (0x{self.id:04x})")

    def to_dict(self) -> dict:
        return {"id": self.id, "version": self.version, "offset": self.offset, "name": self.name}


@dataclass
class CapabilityList:
    """What a walk found, and why it stopped early if it did."""

    items: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _stop(result: CapabilityList, strict: bool, message: str, field_name: str, cfg: ConfigSpace) -> None:
    if strict:
        raise MalformedData(message, field=field_name, device=cfg.name)
    result.warnings.append(message)


def walk_capabilities(cfg: ConfigSpace, *, strict: bool = False) -> CapabilityList:
    """The standard capability list (from 0x34, or 0x14 on CardBus bridges)."""
    result = CapabilityList()
    try:
        if not cfg.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST:
            return result
        header_type = cfg.read8(PCI_HEADER_TYPE) & 0x7F
        start = PCI_CB_CAPABILITY_LIST if header_type == 2 else PCI_CAPABILITY_LIST
        ptr = cfg.read8(start) & 0xFC
    except ConfigSpaceError as e:
        _stop(result, strict, f"cannot read the capability pointer: {e.message}", "capabilities_pointer", cfg)
        return result
    seen: set[int] = set()
    where = f"capability pointer at 0x{start:02x}"
    while ptr:
        if ptr < STD_HEADER_END:
            _stop(result, strict, f"{where} points into the header (0x{ptr:02x})", "next_pointer", cfg)
            break
        if ptr in seen or len(result.items) >= MAX_STD_CAPS:
            _stop(result, strict, f"{where} loops back to 0x{ptr:02x}", "next_pointer", cfg)
            break
        if ptr + 2 > min(cfg.size, 256):
            _stop(
                result,
                strict,
                f"{where} points past the readable config space (0x{ptr:02x} >= {min(cfg.size, 256)})",
                "next_pointer",
                cfg,
            )
            break
        seen.add(ptr)
        cap_id = cfg.read8(ptr)
        nxt = cfg.read8(ptr + 1) & 0xFC
        result.items.append(Capability(cap_id, ptr))
        where = f"next pointer of capability 0x{cap_id:02x} at 0x{ptr:02x}"
        ptr = nxt
    return result


def walk_extended_capabilities(cfg: ConfigSpace, *, strict: bool = False) -> CapabilityList:
    """The extended capability list from 0x100; empty when only 256 (or 64) bytes are readable."""
    result = CapabilityList()
    if cfg.size <= EXT_CAP_START:
        return result
    seen: set[int] = set()
    ptr = EXT_CAP_START
    where = "extended capability list at 0x100"
    while True:
        if ptr in seen or len(result.items) >= MAX_EXT_CAPS:
            _stop(result, strict, f"{where} loops back to 0x{ptr:03x}", "next_pointer", cfg)
            break
        if ptr + 4 > cfg.size:
            _stop(result, strict, f"{where} points past the end of config space (0x{ptr:03x})", "next_pointer", cfg)
            break
        seen.add(ptr)
        header = cfg.read32(ptr)
        if header in (0, 0xFFFFFFFF):
            if ptr != EXT_CAP_START:
                _stop(result, strict, f"{where} points to an empty header at 0x{ptr:03x}", "next_pointer", cfg)
            break
        cap_id, version, nxt = header & 0xFFFF, (header >> 16) & 0xF, (header >> 20) & 0xFFC
        result.items.append(ExtCapability(cap_id, version, ptr))
        where = f"next pointer of extended capability 0x{cap_id:04x} at 0x{ptr:03x}"
        if nxt == 0:
            break
        if nxt < EXT_CAP_START:
            _stop(result, strict, f"{where} points below 0x100 (0x{nxt:03x})", "next_pointer", cfg)
            break
        ptr = nxt
    return result


def find_capability(cfg: ConfigSpace, cap_id: int) -> int | None:
    """Offset of the first standard capability with this id, or None."""
    for cap in walk_capabilities(cfg):
        if cap.id == cap_id:
            return cap.offset
    return None


def find_extended(cfg: ConfigSpace, cap_id: int) -> list[int]:
    """Offsets of every extended capability with this id (a device may have several DOEs)."""
    return [cap.offset for cap in walk_extended_capabilities(cfg) if cap.id == cap_id]


def read_serial_number(cfg: ConfigSpace) -> int | None:
    """The Device Serial Number (64 bit) if the capability exists and is readable."""
    for off in find_extended(cfg, PCI_EXT_CAP_ID_DSN):
        if off + 12 <= cfg.size:
            return cfg.read32(off + 4) | (cfg.read32(off + 8) << 32)
    return None
