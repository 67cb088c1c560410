"""``pciauth doctor``: check the host for VFIO, iommufd and DMA, and say how to fix what is missing."""

from __future__ import annotations

import argparse

HELP = "check the host for IOMMU, vfio-pci, iommufd, lockdown, memlock and hugepages, with fixes"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_true", help="also exit non-zero on warnings")


def run(args: argparse.Namespace) -> int:
    from pciauth.cli.output import print_json
    from pciauth.errors import ExitCode
    from pciauth.vfio.doctor import diagnose, format_report

    report = diagnose()
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    statuses = {f["status"] for f in report["findings"]}
    if "fail" in statuses or (args.strict and "warn" in statuses):
        return int(ExitCode.HOST)
    return int(ExitCode.OK)
