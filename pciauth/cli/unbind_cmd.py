"""``pciauth unbind``: give a device back to its original driver."""

from __future__ import annotations

import argparse

HELP = "take a device off vfio-pci and give it back to its original driver"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", help="PCI address or selector")
    p.add_argument("--force", action="store_true", help="also when a running pciauth session holds it")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="wait this long for drivers (10)")


def run(args: argparse.Namespace) -> int:
    from pciauth.cli.bind_cmd import is_emulated_spec
    from pciauth.cli.output import print_json
    from pciauth.errors import DeviceBusy, UsageError
    from pciauth.pci.select import find_device
    from pciauth.vfio import bind as vbind
    from pciauth.vfio.journal import Journal

    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {args.timeout:g}")
    if is_emulated_spec(args.device):
        raise UsageError("'emu' is pciauth's emulated device: it is never bound, so there is nothing to unbind")
    device = find_device(args.device)  # a crashed session's bindings were replayed at start-up (cli.main)
    journal = Journal()
    entry = journal.read(device.name)
    if entry is not None:
        if entry.mode == "session" and entry.owner_alive() and not args.force:
            raise DeviceBusy(
                f"{device.name} is held by running pciauth process {entry.pid}",
                device=device.name,
                hint="it restores the driver when it ends; --force takes it now",
            )
        result = vbind.restore_entry(entry, journal=journal, timeout=args.timeout)
    else:
        result = vbind.release_to_kernel(device, timeout=args.timeout)
    if args.json:
        print_json({"ok": True, "result": result})
    else:
        driver = result.get("driver") or "no driver"
        messages = {
            "restored": f"{device.name}: restored to {driver}",
            "released": f"{device.name}: released from vfio-pci; now on {driver}",
            "none": f"{device.name}: not bound to vfio-pci (driver: {driver})",
            "left": f"{device.name}: {result.get('note')}",
            "gone": f"{device.name}: {result.get('note')}",
        }
        print(messages.get(result["action"], f"{device.name}: {result['action']}"))
    return 0
