"""The emulated PCI function: config space, DOE mailboxes, an SPDM responder, a DMA BAR.

``EmulatedDevice(index)`` builds instance ``emu:<index>`` from :data:`PROFILES`; keyword knobs
override a profile (see ``docs/doe.md``). Everything lives in this process: no root, no kernel.

Config space (type 0 header)::

    0x00 vendor/device, command (RW: I/O, memory, bus master, INTx disable), status (RW1C errors)
    0x08 revision, class code; 0x10 BAR0 64-bit memory, 1 MiB (sizing works); 0x2c subsystem ids
    0x34 capability list -> 0x40 PM -> 0x50 MSI (64-bit) -> 0x70 PCI Express (endpoint)
    0x100.. extended: DSN, DOE (CMA/SPDM) at ``doe_offset``, optionally a CDAT DOE mailbox
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any

from pciauth.doe.mailbox import (
    CAP_SIZE,
    TYPE_CMA,
    TYPE_CXL_CDAT,
    TYPE_DISCOVERY,
    TYPE_SECURED_CMA,
    VENDOR_CXL,
    VENDOR_PCISIG,
)
from pciauth.emu.config import CapLayout, EmulatedConfigSpace, first_free
from pciauth.emu.doe import EmulatedDoe, FaultPlan
from pciauth.errors import NotFoundError, UsageError


@dataclass(frozen=True)
class Profile:
    """One emulated device instance (``emu:N``): ids, layout, responder choices."""

    description: str
    vendor: int = 0x1234
    device: int = 0xA11E
    class_code: int = 0x120000
    revision: int = 0x01
    subsystem_vendor: int = 0x1234
    subsystem_device: int = 0x0001
    serial: int | None = 0x0123456789ABCDEF
    doe_offset: int = 0x100
    doe_version: int = 2
    cdat: bool = False
    cdat_offset: int | None = None
    algorithm: str = "ecdsa-p384"
    busy_reads: int = 1
    latency: float = 0.0


#: ``emu:N`` instances. Add rows here; keep row 0 the plain, well-behaved device.
PROFILES: dict[int, Profile] = {
    0: Profile("CMA/SPDM device, DOE at 0x100, ECDSA P-384"),
    1: Profile(
        "CXL-like device: DOE at 0x180 and a second mailbox with CDAT at 0x200, ECDSA P-256",
        device=0xA11F,
        class_code=0x050210,
        serial=0x00000000CAFEF00D,
        doe_offset=0x180,
        cdat=True,
        cdat_offset=0x200,
        algorithm="ecdsa-p256",
    ),
    2: Profile(
        "slow device: DOE capability version 1, 20 ms per response, no serial number",
        device=0xA120,
        serial=None,
        doe_version=1,
        latency=0.02,
        busy_reads=0,
    ),
}

#: Knobs ``EmulatedDevice`` and ``emu:N,knob=value`` accept, with their parsers.
KNOBS: dict[str, Any] = {
    "doe_offset": lambda v: int(v, 0),
    "doe_version": int,
    "cdat": lambda v: v.lower() in ("1", "yes", "true", "on"),
    "cdat_offset": lambda v: int(v, 0),
    "algorithm": str,
    "busy_reads": int,
    "latency": float,
    "vendor": lambda v: int(v, 16),
    "device": lambda v: int(v, 16),
    "fault": str,
    "fault_count": int,
    "fault_after": int,
    "adversary": str,
    "firmware": str,
}

BAR0_SIZE = 1 << 20

#: Numeric profile fields and their allowed ranges (inclusive).
_RANGES: dict[str, tuple[float, float]] = {
    "vendor": (0, 0xFFFE),  # 0xffff means "no device"
    "device": (0, 0xFFFF),
    "class_code": (0, 0xFFFFFF),
    "revision": (0, 0xFF),
    "subsystem_vendor": (0, 0xFFFF),
    "subsystem_device": (0, 0xFFFF),
    "doe_version": (1, 0xF),
    "busy_reads": (0, 1000),
    "latency": (0.0, 10.0),
}


def _validate(profile: Profile) -> None:
    for name, (low, high) in _RANGES.items():
        value = getattr(profile, name)
        if not low <= value <= high:
            raise UsageError(f"emulated device knob {name}={value} is outside {low}..{high}")
    if profile.serial is not None and not 0 <= profile.serial < 1 << 64:
        raise UsageError("emulated device serial number is 64 bits")
    from pciauth.spdm.pki import ALGORITHMS, normalize_algorithm

    try:
        known = normalize_algorithm(profile.algorithm) in ALGORITHMS
    except UsageError:  # an unknown name
        known = False
    if not known:
        raise UsageError(f"emulated device algorithm {profile.algorithm!r} unknown; known: {', '.join(ALGORITHMS)}")


def _optional(module: str, attr: str) -> Any:
    """``module.attr`` if that module exists yet (the DMA area writes them), else None."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None
    return getattr(mod, attr, None)


class EmulatedDevice:
    """One emulated PCI function with DOE mailboxes backed by an SPDM responder.

    ``cma_handler(payload, secured)`` replaces the SPDM responder (tests of the DOE layer use an
    echo). ``responder_config`` replaces the responder's configuration; ``adversary`` names rows
    of the responder's adversarial table (``+`` between several); ``firmware`` changes the
    firmware version the measurements report (indices 2 and 5), as a firmware update would.
    """

    def __init__(
        self,
        index: int = 0,
        *,
        fault: str | None = None,
        fault_count: int = 1,
        fault_after: int = 0,
        adversary: str | None = None,
        firmware: str | None = None,
        cma_handler: Any = None,
        responder_config: Any = None,
        **overrides: Any,
    ) -> None:
        if index not in PROFILES:
            raise NotFoundError(
                f"no emulated device emu:{index} (emu:{min(PROFILES)}..emu:{max(PROFILES)})",
                device=f"emu:{index}",
            )
        unknown = set(overrides) - set(KNOBS)
        if unknown:
            raise UsageError(f"unknown emulated device knob(s): {', '.join(sorted(unknown))}")
        self.index = index
        self.name = f"emu:{index}"
        self.profile = replace(PROFILES[index], **overrides)
        _validate(self.profile)
        self.faults = FaultPlan(fault, fault_count, fault_after)
        self.adversary = adversary
        self.firmware = firmware
        self._cma_handler = cma_handler
        self._responder_config = responder_config
        self._responder: Any = None
        self._pki: Any = None
        self.layout = CapLayout()
        self.config = EmulatedConfigSpace(self.name)
        self.mailboxes: dict[int, EmulatedDoe] = {}
        self._build()
        iommu_cls = _optional("pciauth.emu.iommu", "EmulatedIommu")
        engine_cls = _optional("pciauth.emu.dma_engine", "DmaEngine")
        self.iommu = iommu_cls() if iommu_cls else None
        self.bar0 = engine_cls(self.iommu) if engine_cls and self.iommu is not None else None

    # -- identity and PKI ------------------------------------------------------------------
    @property
    def identity(self) -> Any:
        from pciauth.pci.device import DeviceIdentity

        p = self.profile
        return DeviceIdentity(
            vendor=p.vendor,
            device=p.device,
            class_code=p.class_code,
            revision=p.revision,
            subsystem_vendor=p.subsystem_vendor,
            subsystem_device=p.subsystem_device,
            serial=p.serial,
        )

    @property
    def pki(self) -> Any:
        """The responder's certificates (a cached per-user test PKI; see :mod:`pciauth.emu.pki`)."""
        if self._pki is None:
            from pciauth.emu.pki import emu_pki

            self._pki = emu_pki(self.identity, self.profile.algorithm)
        return self._pki

    @property
    def responder(self) -> Any:
        if self._responder is None:
            from pciauth.emu.pki import make_responder

            self._responder = make_responder(self, self._responder_config)
        return self._responder

    # -- DOE protocol handlers -------------------------------------------------------------
    def _cma(self, payload: bytes) -> bytes:
        if self._cma_handler is not None:
            return self._cma_handler(payload, False)
        return self.responder.handle(payload, secured=False)

    def _secured_cma(self, payload: bytes) -> bytes:
        if self._cma_handler is not None:
            return self._cma_handler(payload, True)
        return self.responder.handle(payload, secured=True)

    def _cdat(self, payload: bytes) -> bytes:
        from pciauth.emu.cdat import read_entry

        return read_entry(payload)

    # -- config space ----------------------------------------------------------------------
    def _build(self) -> None:
        p, cfg = self.profile, self.config
        cfg.put(0x00, 2, p.vendor)
        cfg.put(0x02, 2, p.device)
        cfg.put(0x04, 2, 0x0000, rw=0x0407)  # command: I/O, memory, bus master, INTx disable
        cfg.put(0x06, 2, 0x0010, w1c=0xF900)  # status: capability list; error bits RW1C
        cfg.put(0x08, 1, p.revision)
        cfg.put(0x09, 1, p.class_code & 0xFF)
        cfg.put(0x0A, 2, p.class_code >> 8)
        cfg.put(0x0C, 1, 0, rw=0xFF)  # cache line size
        cfg.put(0x0E, 1, 0x00)  # header type 0, single function
        cfg.put(0x10, 4, 0x0000000C, rw=~(BAR0_SIZE - 1) & 0xFFFFFFF0)  # 64-bit prefetchable memory
        cfg.put(0x14, 4, 0, rw=0xFFFFFFFF)
        cfg.put(0x2C, 2, p.subsystem_vendor)
        cfg.put(0x2E, 2, p.subsystem_device)
        cfg.put(0x34, 1, 0x40)
        cfg.put(0x3C, 1, 0xFF, rw=0xFF)  # interrupt line
        cfg.put(0x3D, 1, 0x01)  # INTA
        # PM (0x40) -> MSI (0x50) -> PCI Express (0x70)
        cfg.put(0x40, 2, 0x5001)
        cfg.put(0x42, 2, 0x0003)  # PM version 3
        cfg.put(0x44, 2, 0x0008, rw=0x0003)  # PMCSR: no soft reset, power state RW
        cfg.put(0x50, 2, 0x7005)
        cfg.put(0x52, 2, 0x0080, rw=0x0071)  # MSI control: 64-bit; enable and multiple enable RW
        cfg.put(0x54, 4, 0, rw=0xFFFFFFFC)
        cfg.put(0x58, 4, 0, rw=0xFFFFFFFF)
        cfg.put(0x5C, 2, 0, rw=0xFFFF)
        self.layout.capabilities.update(pm=0x40, msi=0x50, pcie=0x70)
        cfg.put(0x70, 2, 0x0010)
        cfg.put(0x72, 2, 0x0002)  # PCIe capability version 2, endpoint
        cfg.put(0x74, 4, 0x10008FC2)  # device cap: 512 B payload, FLR capable
        cfg.put(0x78, 2, 0x2810, rw=0x7CFF)  # device control
        cfg.put(0x7A, 2, 0x0000, w1c=0x000F)  # device status: error bits RW1C
        cfg.put(0x7C, 4, 0x00400C43)  # link cap: 8 GT/s x4
        cfg.put(0x80, 2, 0x0000, rw=0x0FFB)
        cfg.put(0x82, 2, 0x1043)  # link status: 8 GT/s x4, slot clock
        cfg.put(0x94, 4, 0x0000000F)  # device cap 2: completion timeout ranges A-D
        self._build_extended()

    def _build_extended(self) -> None:
        p = self.profile
        taken: list[tuple[int, int]] = []

        def reserve(name: str, offset: int | None, size: int) -> int:
            if offset is None:
                offset = first_free(taken, size)
            if offset < 0x100 or offset % 4 or offset + size > 0x1000:
                raise UsageError(f"{name} capability at 0x{offset:x} does not fit extended config space")
            if any(offset < s + n and s < offset + size for s, n in taken):
                raise UsageError(f"{name} capability at 0x{offset:x} overlaps another capability")
            taken.append((offset, size))
            self.layout.extended[name] = offset
            return offset

        caps: list[tuple[int, str]] = []
        caps.append((reserve("doe", p.doe_offset, CAP_SIZE), "doe"))
        if p.cdat:
            caps.append((reserve("doe-cdat", p.cdat_offset, CAP_SIZE), "doe-cdat"))
        if p.serial is not None:
            caps.append((reserve("dsn", None, 0x0C), "dsn"))
        caps.sort()
        if caps[0][0] != 0x100:
            # The extended list starts at 0x100: put a null capability there pointing on.
            caps.insert(0, (reserve("null", 0x100, 4), "null"))
        for i, (offset, kind) in enumerate(caps):
            nxt = caps[i + 1][0] if i + 1 < len(caps) else 0
            self._place(kind, offset, nxt)

    def _place(self, kind: str, offset: int, nxt: int) -> None:
        p, cfg = self.profile, self.config
        if kind == "null":
            cfg.put(offset, 4, (nxt << 20) | (1 << 16))  # id 0 (null), version 1
        elif kind == "dsn":
            cfg.put(offset, 4, 0x0003 | (1 << 16) | (nxt << 20))
            cfg.put(offset + 4, 4, p.serial & 0xFFFFFFFF)
            cfg.put(offset + 8, 4, p.serial >> 32)
        elif kind == "doe":
            protocols = [
                (VENDOR_PCISIG, TYPE_DISCOVERY),
                (VENDOR_PCISIG, TYPE_CMA),
                (VENDOR_PCISIG, TYPE_SECURED_CMA),
            ]
            handlers = {
                (VENDOR_PCISIG, TYPE_CMA): self._cma,
                (VENDOR_PCISIG, TYPE_SECURED_CMA): self._secured_cma,
            }
            self._add_mailbox(offset, nxt, protocols, handlers, self.faults)
        elif kind == "doe-cdat":
            protocols = [(VENDOR_PCISIG, TYPE_DISCOVERY), (VENDOR_CXL, TYPE_CXL_CDAT)]
            self._add_mailbox(offset, nxt, protocols, {(VENDOR_CXL, TYPE_CXL_CDAT): self._cdat}, None)

    def _add_mailbox(self, offset: int, nxt: int, protocols: list, handlers: dict, faults: Any) -> None:
        p = self.profile
        mb = EmulatedDoe(
            protocols,
            handlers,
            version=p.doe_version,
            next_cap=nxt,
            busy_reads=p.busy_reads,
            latency=p.latency,
            faults=faults,
        )
        self.config.add_hook(offset, CAP_SIZE, mb)
        self.mailboxes[offset] = mb

    # -- reports ---------------------------------------------------------------------------
    def info(self) -> dict:
        p = self.profile
        return {
            "name": self.name,
            "emulated": True,
            "description": p.description,
            "vendor": f"{p.vendor:04x}",
            "device": f"{p.device:04x}",
            "class": f"{p.class_code:06x}",
            "doe_mailboxes": sorted(self.mailboxes),
            "algorithm": p.algorithm,
            "fault": self.faults.fault,
            "adversary": self.adversary,
            "firmware": self.firmware,
        }

    def close(self) -> None:
        for obj in (self.bar0, self.iommu):
            close = getattr(obj, "close", None)
            if close:
                close()
