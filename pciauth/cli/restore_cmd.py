"""``pciauth restore``: undo every binding in the journal (after a crash or ``pciauth bind``)."""

from __future__ import annotations

import argparse

HELP = "restore the original drivers of every device pciauth bound (replays the journal)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", nargs="?", help="only this device (a PCI address, e.g. 01:00.0)")
    p.add_argument("--force", action="store_true", help="also devices held by a running pciauth process")


def run(args: argparse.Namespace) -> int:
    from pciauth.cli.output import print_json
    from pciauth.errors import BindError, PermissionDeniedError
    from pciauth.vfio import bind as vbind
    from pciauth.vfio.journal import Journal

    device = None
    from pciauth.cli.bind_cmd import is_emulated_spec

    if args.device and is_emulated_spec(args.device):
        from pciauth.errors import UsageError

        raise UsageError("'emu' is pciauth's emulated device: it is never bound, so there is nothing to restore")
    if args.device:
        from pciauth.pci.address import PciAddress

        device = str(PciAddress.parse(args.device))
    journal = Journal()
    results = vbind.restore_all(journal, device=device, force=args.force)
    failed = [r for r in results if r["action"] == "failed"]
    error = None
    if failed:
        if {r.get("exit_code") for r in failed} == {int(PermissionDeniedError.exit_code)}:
            error = PermissionDeniedError(f"{len(failed)} device(s) could not be restored: permission denied",
                                          hint="run `sudo pciauth restore`")
        else:
            error = BindError(f"{len(failed)} device(s) could not be restored", step="Restore",
                              hint="see the lines above; fix the cause and run `pciauth restore` again")
    if args.json:
        print_json({"ok": not failed, "journal": journal.directory, "results": results,
                    "error": error.to_dict() if error else None})
    else:
        if not results:
            print(f"nothing to restore (journal: {journal.directory})")
        for r in results:
            line = f"{r['device'] or '?'}: {r['action']}"
            if r.get("driver"):
                line += f" ({r['driver']})"
            if r.get("note"):
                line += f": {r['note']}"
            print(line)
    if error is None:
        return 0
    if args.json:  # the JSON above carries the error; the one stderr line still goes out
        import sys

        print(f"pciauth: error: {error}", file=sys.stderr)
        return int(error.exit_code)
    raise error
