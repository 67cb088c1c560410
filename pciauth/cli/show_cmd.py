"""``pciauth show DEVICE``: decoded capabilities and DOE mailboxes of one device."""

from __future__ import annotations

import argparse

HELP = "show one device: ids, driver, decoded capabilities and DOE mailboxes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", help="PCI address (0000:01:00.0, 01:00.0), lspci -s selector, or emu[:N]")


def describe(cfg, base: dict) -> dict:
    """The show report of any config space (a real device's or the emulated one's)."""
    from pciauth.pci.capabilities import walk_capabilities, walk_extended_capabilities
    from pciauth.pci.decode import EXT_DECODERS, STD_DECODERS, decode

    std = walk_capabilities(cfg)
    ext = walk_extended_capabilities(cfg)
    caps = [dict(c.to_dict(), details=decode(STD_DECODERS, cfg, c.id, c.offset)) for c in std]
    ext_caps = [dict(c.to_dict(), details=decode(EXT_DECODERS, cfg, c.id, c.offset)) for c in ext]
    report = dict(base)
    report["capabilities"] = caps
    report["extended_capabilities"] = ext_caps
    report["doe_mailboxes"] = [
        {"offset": c["offset"], "version": c["version"], **c["details"]} for c in ext_caps if c["id"] == 0x2E
    ]
    report["warnings"] = std.warnings + ext.warnings
    return report


def _print_human(report: dict) -> None:
    print(f"{report['address']}  {report.get('vendor')}:{report.get('device')}  class {report.get('class')}")
    for key in ("subsystem_vendor", "subsystem_device", "revision", "driver", "iommu_group", "numa_node", "vfio_cdev"):
        if report.get(key) is not None:
            print(f"  {key.replace('_', ' ')}: {report[key]}")
    if report.get("doe_features"):
        print(f"  doe features (kernel): {', '.join(report['doe_features'])}")
    print("  capabilities:")
    for c in report["capabilities"]:
        detail = ", ".join(f"{k}={v}" for k, v in c["details"].items())
        print(f"    [0x{c['offset']:02x}] {c['name']}{'  ' + detail if detail else ''}")
    if report["extended_capabilities"]:
        print("  extended capabilities:")
    for c in report["extended_capabilities"]:
        detail = ", ".join(f"{k}={v}" for k, v in c["details"].items())
        print(f"    [0x{c['offset']:03x}] {c['name']} v{c['version']}{'  ' + detail if detail else ''}")
    if report["doe_mailboxes"]:
        print("  DOE mailboxes: " + ", ".join(f"0x{m['offset']:03x} (v{m['version']})" for m in report["doe_mailboxes"]))
    for w in report["warnings"]:
        print(f"  warning: {w}")
    if report.get("config_note"):
        print(f"  note: {report['config_note']}")


def run(args: argparse.Namespace) -> int:
    from pciauth.cli.output import print_json
    from pciauth.pci.config import BytesConfigSpace

    if args.device == "emu" or args.device.startswith("emu:"):
        from pciauth.target import open_target

        with open_target(args.device) as target:
            base = {"address": target.name, **target.identity.to_dict(), "emulated": True}
            report = describe(target.config, base)
    else:
        from pciauth.pci.select import find_device

        dev = find_device(args.device)
        base = dev.to_dict()
        report = describe(BytesConfigSpace(dev.config_image, name=dev.name), base)
    if args.json:
        print_json({"ok": True, "device": report})
    else:
        _print_human(report)
    return 0
