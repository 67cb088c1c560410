"""``pciauth run DEVICE``: the lab flow in one command, with one report.

Steps: bind to vfio-pci (skipped on the emulated device), authenticate (CMA/SPDM over DOE), set
the IOVA threshold X, DMA into a private and a shared buffer and verify every byte, check that the
IOMMU enforces the windows (where it models T=1/T=0), restore X, unbind and restore the driver.
Each step is ``passed``, ``failed``, ``skipped`` or ``unavailable``; the run is ok when none
failed or was unavailable. The exit code is the first failing step's (see ``pciauth --help``).
"""

from __future__ import annotations

import argparse
import sys
import time

HELP = "lab flow: bind, authenticate, set the IOVA threshold, DMA private and shared, verify, restore"

#: X when none is given: 1 GiB, or half the device's DMA reach (edu: 128 MiB).
DEFAULT_THRESHOLD_BYTES = 1 << 30


def configure(p: argparse.ArgumentParser) -> None:
    from pciauth.cli.dma_cmd import add_device_options

    add_device_options(p)
    p.add_argument("--threshold", metavar="X", default=None,
                   help="X for the run (default 1G, or half the device's DMA reach); restored afterwards")
    p.add_argument("--size", default="1M", help="bytes per DMA buffer (default 1M)")
    p.add_argument("--pattern", default="offset", help="data pattern (see `pciauth dma --help`)")
    p.add_argument("--no-auth", dest="auth", action="store_false", help="skip authentication")
    p.add_argument("--trust-anchor", action="append", default=None, metavar="PEM",
                   help="trust anchor for authentication (repeatable; the emulated device's own root by default)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per device request (default 10)")


class Steps:
    """The step list of the report."""

    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, name: str, status: str, detail: str = "", **data) -> dict:
        step = {"name": name, "status": status, "detail": detail, **data}
        self.items.append(step)
        return step

    def run(self, name: str, fn, *args, **kw) -> dict:
        """Run ``fn`` -> (status, detail, data); a pciauth error fails the step."""
        from pciauth.dma.auth_step import AuthUnavailable
        from pciauth.errors import PciauthError, exit_code_for

        t0 = time.monotonic()
        try:
            status, detail, data = fn(*args, **kw)
        except AuthUnavailable as exc:
            status, detail, data = "unavailable", str(exc), {"error": exc.to_dict()}
        except PciauthError as exc:
            status, detail, data = "failed", str(exc), {"error": exc.to_dict()}
        except OSError as exc:  # a system call pciauth did not wrap: still a failed step, not a crash
            status, detail = "failed", f"{exc.strerror or exc}"
            data = {"error": {"type": type(exc).__name__, "message": detail, "errno": exc.errno,
                              "exit_code": int(exit_code_for(exc)) or 1}}
        return self.add(name, status, detail, seconds=round(time.monotonic() - t0, 4), **data)

    def first_failure(self) -> dict | None:
        for status in ("failed", "unavailable"):
            for s in self.items:
                if s["status"] == status:
                    return s
        return None

    @property
    def ok(self) -> bool:
        return all(s["status"] in ("passed", "skipped") for s in self.items)

    def exit_code(self) -> int:
        from pciauth.errors import ExitCode

        for s in self.items:
            if s["status"] == "failed":
                return int((s.get("error") or {}).get("exit_code") or ExitCode.VERIFICATION)
        for s in self.items:
            if s["status"] == "unavailable":
                return int(ExitCode.HOST)
        return int(ExitCode.OK)


def _auth(dev, anchors, force):
    result = dev.auth.authenticate(trust_anchors=anchors, force=force)
    report = getattr(result, "report", result)
    ok = bool(result.authenticated)
    error = getattr(report, "error", None)
    if isinstance(error, dict):
        error = error.get("message") or error.get("type")
    detail = "authenticated" if ok else f"not authenticated{': ' + str(error) if error else ''}"
    out = {"report": _auth_summary(result)}
    if not ok:
        out["error"] = {"message": detail, "exit_code": int(getattr(result, "exit_code", 6) or 6)}
    return ("passed" if ok else "failed"), detail, out


def _auth_summary(result) -> dict:
    """The authentication fields a run report keeps (``pciauth auth --json`` has them all)."""
    full = result.to_dict() if hasattr(result, "to_dict") else {}
    keep = ("ok", "authenticated", "exit_code", "error", "version", "algorithms", "notes", "trust_anchors",
            "mailbox", "measurements_summary")
    summary = {k: full[k] for k in keep if k in full}
    slots = full.get("slots") or []
    summary["slots"] = [{k: s.get(k) for k in ("slot", "digest", "digest_matches") if k in s} for s in slots]
    verdicts = full.get("checks") or full.get("verdicts")
    if verdicts is not None:
        summary["checks"] = verdicts
    return summary


def _default_threshold(dev, size: int = 0):
    """1 GiB (or half the device's DMA reach), raised so that the private window holds the
    source and destination buffers of a big ``--size`` when the IOVA space allows it."""
    from pciauth.dma.iova import THRESHOLD_UNIT, Threshold

    limit = dev.session.dma_limit
    top = dev.session.allocator.top
    x = DEFAULT_THRESHOLD_BYTES if limit is None else limit // 2
    need = 2 * size + 2 * THRESHOLD_UNIT  # two buffers, the first page kept free, alignment
    x = max(x, -(-need // THRESHOLD_UNIT) * THRESHOLD_UNIT)
    x = min(x, (limit or top) // 2, top // 2) // THRESHOLD_UNIT * THRESHOLD_UNIT
    return Threshold.from_bytes(max(x, THRESHOLD_UNIT))


def _threshold(dev, wanted, size: int = 0):
    new = wanted or _default_threshold(dev, size)
    dev.iova.set_threshold(new)
    lo, hi = dev.iova.window(False)
    if hi <= lo:
        return "failed", f"X = {new.describe()} leaves no shared window", {
            "error": {"message": "empty shared window", "exit_code": 2}}
    return "passed", f"X = {new.describe()}, enforced by {dev.iova.enforcement}", {"iova": dev.iova.to_dict()}


def _dma(dev, size, private, pattern, timeout):
    from pciauth.dma.progress import Progress

    label = f"run {dev.name} dma-{'private' if private else 'shared'}"
    with Progress(size, label) as bar:  # drawn on a terminal, for runs longer than half a second
        result = dev.dma.check(size, private=private, pattern=pattern, timeout=timeout, progress=bar.update)
    d = result.to_dict()
    if result.ok:
        detail = f"{result.bytes_moved} bytes, every byte verified, {d['throughput_mib_s']} MiB/s"
    elif result.error:
        detail = result.error.get("message", "DMA failed")
    elif result.verify is not None and not result.verify.ok:
        detail = result.verify.describe()
    else:
        detail = "checks failed: " + ", ".join(k for k, v in result.checks.items() if not v)
    out = {"result": d}
    if not result.ok:
        out["error"] = {"message": detail, "exit_code": int((result.error or {}).get("exit_code") or 6)}
    return ("passed" if result.ok else "failed"), detail, out


def _enforcement(dev, timeout):
    from pciauth.dma.check import enforcement_check

    if not dev.driver.can_copy or not hasattr(dev.backend, "set_threshold"):
        return "skipped", f"the {getattr(dev.backend, 'name', '?')} IOMMU does not model T=1/T=0 here; " \
            "X is enforced by the platform or pciauth's allocator", {}
    result = enforcement_check(dev.dma.driver, dev.session, timeout=timeout)
    ok = result.ok and bool(result.checks)
    if ok:
        detail = "wrong-window DMAs fault and transfer nothing"
    elif result.error:
        detail = f"enforcement check failed: {result.error.get('message', result.error.get('type'))}"
    else:
        detail = "enforcement check failed: " + ", ".join(k for k, v in result.checks.items() if not v)
    out = {"result": result.to_dict()}
    if not ok:
        out["error"] = {"message": detail, "exit_code": 6}
    return ("passed" if ok else "failed"), detail, out


def _restore_threshold(dev, previous):
    # The supported transition: stop the driver (it unmaps its own queues), then change X.
    dev.dma.stop()
    dev.iova.set_threshold(previous)
    return "passed", f"driver stopped, X back to {previous.describe()}", {}


def run(args: argparse.Namespace) -> int:
    import pciauth.api
    from pciauth.cli.dma_cmd import checked_size, driver_options
    from pciauth.cli.output import print_json
    from pciauth.dma.iova import Threshold
    from pciauth.errors import PciauthError, UsageError

    # Argument mistakes end here, before any device is touched.
    size = checked_size(args)
    wanted = Threshold.parse(args.threshold) if args.threshold else None
    if wanted is not None and (wanted.all_ones or wanted.units == 0):
        window = "shared" if wanted.all_ones else "private"
        raise UsageError(f"--threshold {args.threshold}: X = {wanted.describe()} leaves no {window} window, "
                         "and the run checks DMA in both", hint="pick X between 2M and the top of the IOVA space, "
                         "e.g. --threshold 1G")
    steps = Steps()
    t0 = time.monotonic()
    # Every key is present on success and failure alike (null when the step never got there).
    report: dict = {"ok": False, "device": args.device, "emulated": None, "driver": None, "iommu": None,
                    "seconds": None, "error": None, "steps": []}
    try:
        dev = pciauth.api.open(args.device, iommu=args.iommu, bind=args.bind, force=args.force,
                               driver=args.driver, driver_options=driver_options(args))
    except PciauthError as exc:
        steps.add("open", "failed", str(exc), error=exc.to_dict())
        dev = None
    if dev is not None:
        from pciauth.cli.dma_cmd import check_driver_options

        try:  # from here on every exit closes the device (restores its driver)
            check_driver_options(args, dev)
            report.update(device=dev.name, emulated=dev.emulated, driver=dev.driver.name,
                          iommu=getattr(dev.backend, "name", "?"))
            if dev.emulated:
                steps.add("bind", "skipped", "emulated device: nothing to bind, no root needed")
            for s in dev.steps:
                steps.add(**s)
            if args.auth:
                steps.run("authenticate", _auth, dev, args.trust_anchor, args.force)
            else:
                steps.add("authenticate", "skipped", "--no-auth")
            previous = dev.iova.threshold
            if steps.run("threshold", _threshold, dev, wanted, size)["status"] == "passed":
                steps.run("dma-private", _dma, dev, size, True, args.pattern, args.timeout)
                steps.run("dma-shared", _dma, dev, size, False, args.pattern, args.timeout)
                steps.run("enforcement", _enforcement, dev, args.timeout)
            steps.run("restore-threshold", _restore_threshold, dev, previous)
        finally:
            steps.run("restore", _close, dev)
    failed = steps.first_failure()
    report.update(ok=steps.ok, seconds=round(time.monotonic() - t0, 3), steps=steps.items,
                  error=_error_of(failed, steps.exit_code()) if failed else None)
    if args.json:
        print_json(report)
    else:
        _print_human(report)
    if failed:
        # The one line a script or a lab engineer greps for; the report above has the details.
        print(f"pciauth: error: run {report['device']}: {failed['name']}: {failed['detail']}", file=sys.stderr)
    return steps.exit_code()


def _error_of(step: dict, code: int) -> dict:
    """The README's error object for the first failing step (its own error fields when it has them)."""
    from pciauth.cli.output import error_object

    err = dict(step.get("error") or {})
    return error_object(err.get("type") or "StepFailed", f"{step['name']}: {step['detail']}",
                        err.get("exit_code") or code, errno=err.get("errno"), device=err.get("device"),
                        path=err.get("path"), hint=err.get("hint"), step=step["name"])


def _close(dev):
    dev.close()
    what = "emulated device closed" if dev.emulated else "mappings released, original driver restored"
    return "passed", what, {}


_MARK = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip", "unavailable": "n/a "}


def _print_human(report: dict) -> None:
    print(f"pciauth run {report['device']}")
    for s in report["steps"]:
        print(f"  [{_MARK.get(s['status'], s['status'])}] {s['name']:<18} {s['detail']}")
    print("ok" if report["ok"] else "FAILED")
