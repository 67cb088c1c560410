"""``pciauth dma DEVICE``: map buffers in one IOVA window, run the device's DMA, verify every byte."""

from __future__ import annotations

import argparse

HELP = "DMA into the private or shared IOVA window, verify every byte, report throughput"


def add_device_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``dma``, ``iova`` and ``run``."""
    p.add_argument("device", help="PCI address (0000:01:00.0, 01:00.0), lspci -s selector, or emu[:N]")
    p.add_argument("--iommu", choices=("auto", "iommufd", "legacy"), default="auto",
                   help="IOMMU backend for PCI devices (default: iommufd when available)")
    p.add_argument("--no-bind", dest="bind", action="store_false",
                   help="the device is already bound to vfio-pci: do not bind or restore it")
    p.add_argument("--force", action="store_true", help="bind even when the device looks in use")
    p.add_argument("--driver", default=None, help="DMA driver name from the table (default: probe by ID)")
    p.add_argument("--expect-serial", default=None, metavar="SN",
                   help="NVMe: the serial number Identify must return")


def driver_options(args: argparse.Namespace) -> dict:
    return {"expect_serial": args.expect_serial} if args.expect_serial else {}


def checked_size(args: argparse.Namespace, *positive: tuple[str, float]) -> int:
    """``--size`` in bytes, once ``--size``, the ``positive`` options and ``--timeout`` are
    positive, ``--pattern`` is known and two buffers of that size fit in memory: argument
    mistakes end here, before any device is touched (``pciauth dma`` and ``pciauth run``)."""
    from pciauth.dma.buffer import check_available
    from pciauth.dma.iova import parse_size
    from pciauth.dma.pattern import make_pattern
    from pciauth.errors import UsageError

    size = parse_size(args.size, "--size")
    for name, value in (("--size", size), *positive, ("--timeout", args.timeout)):
        if value <= 0:
            raise UsageError(f"{name} must be positive, not {value:g}")
    make_pattern(args.pattern)
    check_available(2 * size)  # source and destination buffers
    return size


def check_driver_options(args: argparse.Namespace, dev) -> None:
    """Options meant for another driver are an error, not silently ignored."""
    from pciauth.errors import UsageError

    if args.expect_serial and dev.driver.name != "nvme":
        raise UsageError(f"--expect-serial is for the nvme driver; {dev.name} uses the {dev.driver.name} driver")


def configure(p: argparse.ArgumentParser) -> None:
    add_device_options(p)
    p.add_argument("--size", default="1M", help="bytes per buffer, with K/M/G suffixes (default 1M)")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--private", dest="private", action="store_true", default=True,
                      help="IOVAs below the threshold X, private memory (default)")
    side.add_argument("--shared", dest="private", action="store_false",
                      help="IOVAs at or above X, shared memory")
    p.add_argument("--pattern", default="offset",
                   help="offset (default), zero, ones, inc, 0xAB, hex:DEADBEEF, random[:SEED]")
    p.add_argument("--iterations", type=int, default=1, help="repeat the copy and verify N times")
    p.add_argument("--threshold", default=None,
                   help="X for this run (default: the recorded or programmed one); see `pciauth iova`")
    p.add_argument("--hugepages", nargs="?", const="require", default=False, choices=("require", "prefer"),
                   help="2 MiB hugepage buffers; 'prefer' falls back to 4 KiB pages")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per device request (default 10)")


def _print_human(report: dict) -> None:
    r = report["result"]
    print(f"{report['device']}: {r['kind']} DMA in the {r['window']} window, driver {report['driver']}, "
          f"IOMMU {report['iommu']}")
    print(f"  threshold X: {report['threshold']['describe']}  (enforced by {report['enforcement']})")
    print("  buffers: " + ", ".join(f"{k} at IOVA {v}" for k, v in r["iovas"].items()))
    print(f"  moved {r['bytes_moved']} bytes in {r['iterations']} iteration(s), "
          f"{r['throughput_mib_s']:.1f} MiB/s")
    if r["verify"]:
        v = r["verify"]
        state = "all bytes match" if v["ok"] else (
            f"{v['mismatches']} bytes differ, first at offset 0x{v['first_mismatch']:x}")
        print(f"  verify: {state}")
    for name, ok in r["checks"].items():
        print(f"  check {name}: {'ok' if ok else 'FAILED'}")
    for note in r.get("notes", []):
        print(f"  note: {note}")
    if r["error"]:
        print(f"  error: {r['error']['message']}")
    print("ok" if report["ok"] else "FAILED")


def exit_code(result) -> int:
    from pciauth.errors import ExitCode

    if result.ok:
        return int(ExitCode.OK)
    if result.error is not None:
        return int(result.error.get("exit_code") or ExitCode.DEVICE)
    return int(ExitCode.VERIFICATION)


def run(args: argparse.Namespace) -> int:
    import pciauth.api
    from pciauth.cli.output import print_json
    from pciauth.dma.iova import Threshold
    from pciauth.dma.progress import Progress

    size = checked_size(args, ("--iterations", args.iterations))
    if args.threshold is not None:
        Threshold.parse(args.threshold)
    with pciauth.api.open(args.device, iommu=args.iommu, threshold=args.threshold, hugepages=args.hugepages,
                          driver=args.driver, bind=args.bind, force=args.force,
                          driver_options=driver_options(args)) as dev:
        check_driver_options(args, dev)
        total = size * args.iterations
        with Progress(total, f"dma {args.device}") as bar:
            result = dev.dma.check(size, private=args.private, pattern=args.pattern,
                                   iterations=args.iterations, timeout=args.timeout, progress=bar.update)
        report = {
            "ok": result.ok,
            "device": dev.name,
            "driver": dev.driver.name,
            "iommu": getattr(dev.backend, "name", "?"),
            "threshold": dict(dev.iova.threshold.to_dict(), describe=dev.iova.threshold.describe()),
            "enforcement": dev.iova.enforcement,
            "result": result.to_dict(),
            "error": None if result.ok else failure(result, exit_code(result), dev.name),
        }
    if args.json:
        print_json(report)
    else:
        _print_human(report)
    if not result.ok:
        import sys

        print(f"pciauth: error: dma {dev.name}: {report['error']['message']}", file=sys.stderr)
    return exit_code(result)


def failure(result, code: int, device: str) -> dict:
    """The README's error object for a failed check (the same keys as every other failure)."""
    from pciauth.cli.output import error_object

    err = dict(result.error or {})
    if err:
        message = err.get("message") or err.get("type") or "DMA failed"
    elif result.verify is not None and not result.verify.ok:
        v = result.verify
        message = f"data mismatch: {v.mismatches} byte(s) differ, first at offset 0x{v.first_mismatch:x}"
    else:
        message = "check failed: " + ", ".join(k for k, ok in result.checks.items() if not ok)
    return error_object(err.get("type") or "DataMismatch", message, code, errno=err.get("errno"),
                        device=err.get("device") or device, path=err.get("path"), hint=err.get("hint"))
