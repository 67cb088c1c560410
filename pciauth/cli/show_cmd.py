"""``pciauth show DEVICE``: decoded capabilities and DOE mailboxes of one device."""

from __future__ import annotations

import argparse

HELP = "show one device: ids, driver, decoded capabilities and DOE mailboxes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", help="PCI address (0000:01:00.0, 01:00.0), lspci -s selector, or emu[:N]")


#: Keys of every ``show --json`` device object, emulated or not (null when they do not apply):
#: the ``list --json`` fields, plus the emulated device's ``serial`` and ``emulated``.
STABLE_KEYS = ("address", "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision",
               "driver", "driver_override", "iommu_group", "numa_node", "vfio_cdev", "doe_mailboxes",
               "doe_features", "config_note", "serial", "emulated")


class CapabilityList(list):
    """An empty walk result (with the ``warnings`` the walkers' lists carry)."""

    warnings: list = []


def describe(cfg, base: dict) -> dict:
    """The show report of any config space (a real device's or the emulated one's)."""
    from pciauth.pci.capabilities import walk_capabilities, walk_extended_capabilities
    from pciauth.pci.config import UNPRIVILEGED_SIZE
    from pciauth.pci.decode import EXT_DECODERS, STD_DECODERS, decode

    if cfg.size <= UNPRIVILEGED_SIZE:
        # Capabilities start at 0x40: with only the header readable (non-root) there is nothing to
        # walk, and "pointer past the readable space" would be noise; config_note says why.
        std, ext = CapabilityList(), CapabilityList()
    else:
        std = walk_capabilities(cfg)
        ext = walk_extended_capabilities(cfg)
    caps = [dict(c.to_dict(), details=decode(STD_DECODERS, cfg, c.id, c.offset)) for c in std]
    ext_caps = [dict(c.to_dict(), details=decode(EXT_DECODERS, cfg, c.id, c.offset)) for c in ext]
    report = dict.fromkeys(STABLE_KEYS)
    report.update(base)
    report["capabilities"] = caps
    report["extended_capabilities"] = ext_caps
    report["doe_mailboxes"] = [
        {"offset": c["offset"], "version": c["version"], **c["details"]} for c in ext_caps if c["id"] == 0x2E
    ]
    report["warnings"] = std.warnings + ext.warnings
    return report


def _print_human(report: dict) -> None:
    def known(key: str) -> str:
        return "?" if report.get(key) is None else str(report[key])

    print(f"{report['address']}  {known('vendor')}:{known('device')}  class {known('class')}")
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
    from pciauth.cli.bind_cmd import is_emulated_spec
    from pciauth.cli.output import print_json
    from pciauth.pci.config import BytesConfigSpace

    if is_emulated_spec(args.device):
        from pciauth.target import open_target

        with open_target(args.device) as target:
            base = {"address": target.name, **target.identity.to_dict(), "emulated": True}
            report = describe(target.config, base)
    else:
        from pciauth.pci.select import find_device

        dev = find_device(args.device)
        base = dict(dev.to_dict(), emulated=False, serial=None)
        report = describe(BytesConfigSpace(dev.config_image, name=dev.name), base)
    if args.json:
        print_json({"ok": True, "device": report})
    else:
        _print_human(report)
    return 0
