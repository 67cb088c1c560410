"""Finding PCI devices: list them, and resolve a user's device argument.

A device argument is a full or short address (``0000:01:00.0``, ``01:00.0``, ``1:0.0``), an
``lspci -s`` slot selector (``01:``, ``.1``), or ``vendor:device`` ids as ``lspci -d`` takes
them, written ``d:1af4:1000``. It must match exactly one device.
"""

from __future__ import annotations

import os

from pciauth.errors import DeviceNotFound, UsageError
from pciauth.pci import sysfs
from pciauth.pci.address import IdSelector, PciAddress, SlotSelector
from pciauth.pci.device import PciDevice


def list_devices(
    sysfs_root: str | None = None,
    *,
    slot: str | SlotSelector | None = None,
    ids: str | IdSelector | None = None,
) -> list[PciDevice]:
    """Every PCI function, optionally filtered like ``lspci -s SLOT -d IDS``."""
    if isinstance(slot, str):
        slot = SlotSelector.parse(slot)
    if isinstance(ids, str):
        ids = IdSelector.parse(ids)
    base = sysfs.pci_devices_dir(sysfs_root)
    devices = []
    for name in sysfs.enumerate_pci_names(sysfs_root):
        try:
            addr = PciAddress.parse(name)
        except UsageError:
            continue  # not a PCI function directory
        dev = PciDevice(addr, os.path.join(base, name))
        if slot is not None and not slot.matches(addr):
            continue
        if ids is not None and not ids.matches(dev.vendor or 0, dev.device or 0, dev.class_code or 0):
            continue
        devices.append(dev)
    return sorted(devices, key=lambda d: d.address)


def find_device(spec: str, sysfs_root: str | None = None) -> PciDevice:
    """The one device a user's argument names; DeviceNotFound or UsageError otherwise."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty device argument")
    root = sysfs.sysfs_root(sysfs_root)
    if spec.startswith("d:"):
        matches = list_devices(sysfs_root, ids=spec[2:])
    elif PciAddress.looks_like(spec):
        addr = PciAddress.parse(spec)
        path = os.path.join(sysfs.pci_devices_dir(sysfs_root), str(addr))
        if not os.path.isdir(path):
            raise DeviceNotFound(
                f"no PCI device {addr} (looked in {sysfs.pci_devices_dir(sysfs_root)})",
                device=str(addr),
                path=path,
                hint="`pciauth list` shows the devices",
            )
        return PciDevice(addr, path)
    else:
        try:
            matches = list_devices(sysfs_root, slot=spec)
        except UsageError as exc:
            # "invalid slot 'nosuch' in PCI address 'nosuch'" alone does not say what is accepted.
            raise UsageError(
                f"{spec!r} is not a PCI address (0000:01:00.0, 01:00.0), an lspci -s selector (01:, .1), "
                f"d:VENDOR:DEVICE or emu[:N] ({exc.message})"
            ) from None
    if not matches:
        raise DeviceNotFound(
            f"no PCI device matches {spec!r} in {root}", device=spec, hint="`pciauth list` shows the devices"
        )
    if len(matches) > 1:
        names = ", ".join(d.name for d in matches[:8]) + (" ..." if len(matches) > 8 else "")
        raise UsageError(f"{spec!r} matches {len(matches)} devices ({names}): name one")
    return matches[0]
