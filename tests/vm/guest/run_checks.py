"""Entry point of the guest-side checks (see harness.py); runs in the QEMU guest."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

CHECK_MODULES = ("checks_basic", "checks_bind", "checks_dma", "checks_nvme", "checks_iommufd_test")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", required=True)
    p.add_argument("--only", default="", help="comma-separated check names")
    args = p.parse_args()
    import importlib

    for name in CHECK_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    only = set(filter(None, args.only.split(",")))
    return harness.run_checks(args.variant, only or None)


if __name__ == "__main__":
    sys.exit(main())
