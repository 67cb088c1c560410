"""``pciauth iova DEVICE [--threshold X]``: show or set the private IOVA threshold X.

IOVAs below X are private (T=1), at or above X shared (T=0). X is written as:

- ``all`` (also ``all-ones``, ``max``): all ones, everything private (the default);
- a plain number, ``512`` or ``0x200``: 2 MiB units, the value of the SEV-TIO vTOM field;
  ``512u`` says so explicitly;
- a number with a size suffix, ``1G``, ``512M``, ``4096MiB``, or ``bytes:0x40000000``: bytes,
  a multiple of 2 MiB.

Where the platform has a knob (the SEV-TIO guest's ``tsm_vtom``) X is programmed there;
elsewhere pciauth enforces it (its allocator, the emulated IOMMU) and records it under the run
directory for later ``pciauth dma`` runs; the output says which.
"""

from __future__ import annotations

import argparse

HELP = "show or set the private IOVA threshold X (below X private/T=1, at or above X shared/T=0)"


def configure(p: argparse.ArgumentParser) -> None:
    from pciauth.cli.dma_cmd import add_device_options

    add_device_options(p)
    p.add_argument("--threshold", metavar="X", default=None,
                   help="set X: 'all' (everything private), 2 MiB units (512, 0x200, 512u) or bytes "
                   "with a suffix (1G, 512M, bytes:0x40000000)")


def _print_human(report: dict) -> None:
    t = report["threshold"]
    print(f"{report['device']}: IOVA threshold X = {t['describe']}")
    print(f"  enforced by: {report['enforcement']}")
    lo, hi = report["private_window"]
    print(f"  private window (T=1): [0x{lo:x}, 0x{hi:x})")
    lo, hi = report["shared_window"]
    print(f"  shared window (T=0):  [0x{lo:x}, 0x{hi:x})" + ("  (empty)" if hi <= lo else ""))
    print("  kernel IOVA ranges: " + ", ".join(f"0x{a:x}-0x{b:x}" for a, b in report["iova_ranges"]))
    if report.get("changed"):
        print(f"  changed from {report['previous']}")
    for note in report.get("notes", []):
        print(f"  note: {note}")


def run(args: argparse.Namespace) -> int:
    import pciauth.api
    from pciauth.cli.output import print_json
    from pciauth.dma.iova import Threshold
    from pciauth.dma.threshold import save_threshold

    new = Threshold.parse(args.threshold) if args.threshold is not None else None
    with pciauth.api.open(args.device, iommu=args.iommu, bind=args.bind, force=args.force,
                          driver=args.driver) as dev:
        before = dev.iova.threshold
        notes = []
        if new is not None:
            dev.iova.set_threshold(new)
            if dev.session.policy.knob is None:
                path = save_threshold(dev.name, new)
                notes.append(f"no platform knob: pciauth enforces X itself; recorded in {path}")
        report = dev.iova.to_dict()
        report.update(
            ok=True,
            device=dev.name,
            threshold=dict(dev.iova.threshold.to_dict(), describe=dev.iova.threshold.describe()),
            changed=new is not None and new != before,
            previous=before.describe(),
            notes=notes,
        )
        if dev.session.policy.knob is not None:
            report["knob"] = dev.session.policy.knob.to_dict()
    if args.json:
        print_json(report)
    else:
        _print_human(report)
    return 0
