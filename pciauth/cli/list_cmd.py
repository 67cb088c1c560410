"""``pciauth list``: one line per PCI function, lspci-style selection."""

from __future__ import annotations

import argparse

HELP = "list PCI devices with ids, driver, IOMMU group and DOE protocols"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", dest="slot", metavar="[[[DOMAIN]:]BUS]:][SLOT][.[FUNC]]", help="select by address, as lspci -s")
    p.add_argument("-d", dest="ids", metavar="[VENDOR]:[DEVICE][:CLASS]", help="select by ids, as lspci -d")
    p.add_argument("--doe", action="store_true", help="only devices with a DOE mailbox")


def _doe_column(dev) -> str:
    protocols = dev.doe_protocols()
    if protocols:
        return ",".join(protocols)
    boxes = dev.doe_mailboxes
    if boxes:
        return ",".join(f"doe@0x{m.offset:03x}" for m in boxes)
    return "-"


def _hx(value: int | None, width: int) -> str:
    """Hex of an id, or question marks when sysfs did not say (never a made-up 0000)."""
    return "?" * width if value is None else f"{value:0{width}x}"


def run(args: argparse.Namespace) -> int:
    import os

    from pciauth.cli.output import print_json, print_table
    from pciauth.errors import NotFoundError
    from pciauth.pci.select import list_devices
    from pciauth.pci.sysfs import sysfs_root

    root = sysfs_root()
    if not os.path.isdir(root):
        # The library lists nothing there; on the command line a mistyped --sysfs-root must not
        # look like "no devices" with exit 0.
        raise NotFoundError(f"sysfs root {root} is not a directory", path=root,
                            hint="check --sysfs-root or $PCIAUTH_SYSFS_ROOT")
    devices = list_devices(slot=args.slot, ids=args.ids)
    if args.doe:
        devices = [d for d in devices if d.doe_mailboxes or d.doe_features]
    if args.json:
        print_json({"ok": True, "devices": [d.to_dict() for d in devices]})
        return 0
    rows = []
    notes = set()
    for d in devices:
        group = "-" if d.iommu_group is None else str(d.iommu_group)
        rows.append(
            [
                d.name,
                f"{_hx(d.vendor, 4)}:{_hx(d.device, 4)}",
                _hx(d.class_code, 6),
                d.driver or "-",
                group,
                _doe_column(d),
            ]
        )
        if d.config_note and "root" in d.config_note:
            notes.add(d.config_note)
    print_table(rows, ["ADDRESS", "ID", "CLASS", "DRIVER", "GROUP", "DOE"])
    for note in sorted(notes):
        print(f"note: {note}")
    return 0
