"""Human-readable details of the capabilities ``pciauth show`` prints.

A table maps capability ids to small decoders; each reads only inside the capability's
registers and returns a flat dict. An unreadable register gives ``{"error": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable

from pciauth.errors import ConfigSpaceError
from pciauth.pci.config import ConfigSpace

PCIE_TYPES = {
    0x0: "endpoint",
    0x1: "legacy endpoint",
    0x4: "root port",
    0x5: "upstream switch port",
    0x6: "downstream switch port",
    0x7: "PCIe-to-PCI bridge",
    0x8: "PCI-to-PCIe bridge",
    0x9: "RC integrated endpoint",
    0xA: "RC event collector",
}
LINK_SPEEDS = {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"}


def _pcie(cfg: ConfigSpace, off: int) -> dict:
    flags = cfg.read16(off + 2)
    lnkcap = cfg.read32(off + 0x0C)
    lnksta = cfg.read16(off + 0x12)
    return {
        "version": flags & 0xF,
        "type": PCIE_TYPES.get((flags >> 4) & 0xF, f"0x{(flags >> 4) & 0xF:x}"),
        "link_capable": f"{LINK_SPEEDS.get(lnkcap & 0xF, '?')} x{(lnkcap >> 4) & 0x3F}",
        "link_status": f"{LINK_SPEEDS.get(lnksta & 0xF, '?')} x{(lnksta >> 4) & 0x3F}",
    }


def _msi(cfg: ConfigSpace, off: int) -> dict:
    ctrl = cfg.read16(off + 2)
    return {"enabled": bool(ctrl & 1), "vectors": 1 << ((ctrl >> 1) & 7), "64bit": bool(ctrl & 0x80)}


def _msix(cfg: ConfigSpace, off: int) -> dict:
    ctrl = cfg.read16(off + 2)
    return {"enabled": bool(ctrl & 0x8000), "table_size": (ctrl & 0x7FF) + 1}


def _pm(cfg: ConfigSpace, off: int) -> dict:
    return {"version": cfg.read16(off + 2) & 7, "state": f"D{cfg.read16(off + 4) & 3}"}


def _dsn(cfg: ConfigSpace, off: int) -> dict:
    return {"serial": f"{cfg.read32(off + 8):08x}{cfg.read32(off + 4):08x}"}


def _doe(cfg: ConfigSpace, off: int) -> dict:
    cap = cfg.read32(off + 4)
    status = cfg.read32(off + 0x0C)
    return {
        "interrupt_support": bool(cap & 1),
        "interrupt_message": (cap >> 1) & 0x7FF,
        "busy": bool(status & 1),
        "error": bool(status & 4),
        "data_object_ready": bool(status & (1 << 31)),
    }


STD_DECODERS: dict[int, Callable[[ConfigSpace, int], dict]] = {
    0x01: _pm,
    0x05: _msi,
    0x10: _pcie,
    0x11: _msix,
}
EXT_DECODERS: dict[int, Callable[[ConfigSpace, int], dict]] = {
    0x03: _dsn,
    0x2E: _doe,
}


def decode(table: dict, cfg: ConfigSpace, cap_id: int, off: int) -> dict:
    decoder = table.get(cap_id)
    if decoder is None:
        return {}
    try:
        return decoder(cfg, off)
    except ConfigSpaceError as e:
        return {"error": e.message}
