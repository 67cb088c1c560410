"""``pciauth doctor``: check the host for VFIO, iommufd and DMA, and say how to fix what is missing."""

from __future__ import annotations

import argparse

HELP = "check the host for IOMMU, vfio-pci, iommufd, lockdown, memlock and hugepages, with fixes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true", help="also exit non-zero on warnings")


def run(args: argparse.Namespace) -> int:
    from pciauth.cli.output import print_json
    from pciauth.errors import ExitCode, HostNotReady
    from pciauth.vfio.doctor import diagnose, format_report

    report = diagnose()
    statuses = {f["status"] for f in report["findings"]}
    failing = [f for f in report["findings"]
               if f["status"] == "fail" or (args.strict and f["status"] == "warn")]
    report["error"] = None
    if failing:
        names = ", ".join(f["check"] for f in failing)
        hint = "fix the FAIL" + (" and WARN" if args.strict and "warn" in statuses else "") + " lines"
        report["error"] = HostNotReady(f"host not ready: {names}", hint=hint).to_dict()
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    if failing:
        import sys

        print(f"pciauth: error: {report['error']['message']} (see the fixes above)", file=sys.stderr)
        return int(ExitCode.HOST)
    return int(ExitCode.OK)
