"""``pciauth bind``: put a device on vfio-pci (and, with --hold or a command, take it back)."""

from __future__ import annotations

import argparse

HELP = "bind a device to vfio-pci (driver_override; restored by unbind/restore, or at the end of --hold)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", help="PCI address or selector (0000:01:00.0, 01:00.0, d:1b36:0010)")
    p.add_argument(
        "--force", action="store_true", help="bind even if the device looks in use (mounted, up, VGA)"
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="wait this long for vfio-pci (10)"
    )
    p.add_argument(
        "--hold",
        action="store_true",
        help="stay bound until Ctrl-C or SIGTERM, then restore the original driver",
    )
    p.add_argument(
        "command",
        nargs="*",
        help="after --: run this command while the device is bound, then restore (e.g. -- qemu-system-x86_64 ...)",
    )


def _ready_line(b) -> str:
    node = f"/dev/vfio/{b.iommu_group}" if b.iommu_group is not None else "no IOMMU group"
    cdev = f", /dev/vfio/devices/{b.vfio_cdev}" if b.vfio_cdev else ""
    was = f"was {b.original_driver or 'no driver'}" if b.changed else "already bound, left as it was"
    return f"{b.device}: bound to vfio-pci ({was}); IOMMU group {b.iommu_group} ({node}{cdev})"


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from pciauth.cli.output import print_json
    from pciauth.errors import UsageError
    from pciauth.pci.select import find_device
    from pciauth.vfio import bind as vbind

    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if args.hold and command:
        raise UsageError("use either --hold or a command after --, not both")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {args.timeout:g}")
    if is_emulated_spec(args.device):
        raise UsageError("'emu' is pciauth's emulated device: it needs no binding")
    device = find_device(args.device)  # a crashed session's bindings were replayed at start-up (cli.main)

    if not (args.hold or command):
        b = vbind.bind(device, force=args.force, timeout=args.timeout, mode="persistent")
        if args.json:
            print_json({"ok": True, "binding": b.to_dict()})
        else:
            for w in b.warnings:
                print(f"pciauth: warning: {w}", file=sys.stderr)
            print(_ready_line(b))
            if b.changed:
                print(f"undo with: pciauth unbind {b.device}")
        return 0

    code = 0
    b = None
    try:
        with vbind.bound(device, force=args.force, timeout=args.timeout) as b:
            for w in b.warnings:
                print(f"pciauth: warning: {w}", file=sys.stderr)
            if args.json:
                print_json({"ok": True, "binding": b.to_dict(), "held": True})
            else:
                print(_ready_line(b) + ("; Ctrl-C to restore" if args.hold else ""), flush=True)
            sys.stdout.flush()
            if command:
                code = subprocess.run(command, check=False).returncode
            else:
                _wait_forever()
    except KeyboardInterrupt:
        if b is None:
            raise  # interrupted while binding: bind() undid its work
        # Ctrl-C is how --hold ends; bound() restored the driver.
    if not args.json:
        print(f"{device.name}: restored to {b.original_driver or 'no driver'}", file=sys.stderr)
    return code


def is_emulated_spec(spec: str) -> bool:
    """``emu``, ``emu:N`` and ``emu,knob=...``: pciauth's emulated device, never bound."""
    from pciauth.target import names_emulated_device

    return names_emulated_device(spec)


def _wait_forever() -> None:
    import signal

    while True:
        signal.pause()

