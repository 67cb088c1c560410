"""``pciauth auth DEVICE``: authenticate a device with CMA/SPDM over its DOE mailbox.

Exit codes: 0 authenticated, 6 not authenticated (or differs from ``--expect``), 5 could not
talk to the device, 8 mailbox in use (``--force`` / ``--lock-timeout``).
"""

from __future__ import annotations

import argparse

HELP = "authenticate a device (CMA/SPDM over DOE); emu for the built-in emulated device"

#: Options whose recorded value a --replay keeps unless given on the command line.
_REPLAYED = ("slot", "measurements", "session", "policy")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("device", nargs="?",
                        help="PCI device (01:00.0, lspci-style selector), emu or emu:N[,knob=value] (docs/doe.md)")
    parser.add_argument("--trust-anchor", action="append", default=[], metavar="PATH",
                        help="trusted root certificate file or directory, PEM or DER (repeatable)")
    parser.add_argument("--slot", type=int, default=None, help="certificate slot to CHALLENGE (default: lowest)")
    parser.add_argument("--measurements", default=None, metavar="all|none|1,2,5",
                        help="which measurements to fetch (default all)")
    parser.add_argument("--session", action=argparse.BooleanOptionalAction, default=None,
                        help="also set up a secured session and read measurements inside it")
    parser.add_argument("--policy", choices=("cma", "spdm-only"), default=None,
                        help="cma (default for PCI devices) requires the CMA name in the leaf")
    parser.add_argument("--timeout", type=float, default=1.0, help="DOE response timeout in s (1)")
    parser.add_argument("--lock-timeout", type=float, default=10.0,
                        help="wait this long for another pciauth using the device (10 s)")
    parser.add_argument("--pcap", metavar="FILE", help="write every SPDM message to a pcap (link type 292)")
    parser.add_argument("--record", metavar="FILE", help="record the DOE exchanges for --replay")
    parser.add_argument("--replay", metavar="FILE", help="re-verify a recording offline (no device)")
    parser.add_argument("--socket", metavar="HOST:PORT", help="talk to an spdm-emu compatible responder")
    parser.add_argument("--save-reference", metavar="FILE", help="write chain digests and measurements")
    parser.add_argument("--expect", metavar="FILE", help="compare with a saved reference; differences fail")
    parser.add_argument("--force", action="store_true",
                        help="drive the mailbox even if the kernel may be using it")


def _options(args: argparse.Namespace):
    from pciauth.doe.authenticate import AuthOptions

    return AuthOptions(
        trust_anchors=list(args.trust_anchor),
        slot=args.slot,
        measurements=args.measurements or "all",
        session=bool(args.session),
        policy=args.policy,
        timeout=args.timeout,
        lock_timeout=args.lock_timeout,
        force=args.force,
        pcap=args.pcap,
        record=args.record,
    )


def run(args: argparse.Namespace) -> int:
    from pciauth.doe import authenticate as auth
    from pciauth.errors import UsageError

    sources = [x for x in (args.device, args.socket, args.replay) if x]
    if len(sources) != 1:
        raise UsageError("give exactly one of DEVICE, --socket HOST:PORT or --replay FILE")
    if args.timeout <= 0 or args.lock_timeout < 0:
        raise UsageError("--timeout must be positive and --lock-timeout not negative")
    from pciauth.reference import check_writable

    if args.save_reference:
        check_writable(args.save_reference)
    if args.record and not args.replay:
        check_writable(args.record, "the recording")
    opts = _options(args)
    auth.check_options(opts)  # before opening anything: a usage error is instant
    if args.replay:
        if args.record:
            raise UsageError("--record and --replay do not mix")
        explicit = {k for k in _REPLAYED if getattr(args, k) is not None}
        result = auth.replay(args.replay, opts, explicit=explicit)
    elif args.socket:
        result = auth.authenticate_socket(args.socket, opts)
    else:
        result = auth.authenticate_device(args.device, opts, sysfs_root=args.sysfs_root)
    return _finish(args, result)


def _finish(args: argparse.Namespace, result) -> int:
    from pciauth.cli.output import print_json
    from pciauth.doe.authenticate import expect_exit
    from pciauth.reference import compare, load_reference, reference_from_report, save_reference

    report = result.report.to_dict()
    current = reference_from_report(report, device=result.device, identity=result.target.get("identity"))
    differences = []
    if args.save_reference:
        if result.authenticated:
            save_reference(args.save_reference, current)
            result.notes.append(f"reference written to {args.save_reference}")
        else:
            result.notes.append("not authenticated: no reference written")
    if args.expect:
        expected = load_reference(args.expect)
        differences = compare(expected, current, path=args.expect)
        result.extra["reference"] = {"file": args.expect, "matches": not differences,
                                     "differences": [d.to_dict() for d in differences]}  # fmt: skip
    code = expect_exit(result, differences)
    if args.json:
        out = result.to_dict()
        out["ok"] = code == 0
        out["exit_code"] = code
        print_json(out)
    else:
        _summary(result, report, differences, code)
    _error_line(result, report, code)
    return code


def _error_line(result, report: dict, code: int) -> None:
    """One ``pciauth: error:`` line on stderr when the device was not authenticated."""
    import sys

    if code == 0 or result.authenticated:
        return
    what = "not authenticated" if code == 6 else "could not talk"
    error = report.get("error") or {}
    step, reason = error.get("step"), error.get("message")
    if reason and reason.startswith(f"{result.device} "):
        reason = reason[len(result.device) + 1:]
    if not reason:
        failed = [c for c in report.get("checks") or [] if not c["ok"] and not c.get("skipped")]
        if failed:
            step, reason = failed[0]["name"], failed[0]["reason"]
    detail = f"{step}: {reason}" if step and reason else (reason or "no verdict")
    print(f"pciauth: error: {result.device}: {what}: {detail}", file=sys.stderr)


def _summary(result, report: dict, differences: list, code: int) -> None:
    verdict = "AUTHENTICATED" if result.authenticated else "NOT AUTHENTICATED"
    print(f"{result.device}: {verdict}")
    if report.get("version"):
        alg = report.get("algorithms") or {}
        print(f"  SPDM {report['version']}, {alg.get('base_asym')} / {alg.get('base_hash')}"
              + (f", mailbox 0x{result.extra['mailbox']:03x}" if "mailbox" in result.extra else ""))
    for slot in report.get("slots") or []:
        verdict_ = slot.get("verdict") or {}
        print(f"  slot {slot['slot']}: {len(slot.get('certificates_pem') or [])} certificates, "
              f"chain {'trusted' if verdict_.get('ok') else 'NOT trusted'}"
              + (f" ({verdict_.get('trust_anchor')})" if verdict_.get("trust_anchor") else ""))
    stopped = (report.get("error") or {}).get("step")
    for check in report.get("checks") or []:
        if not check["ok"] and not check.get("skipped") and check["name"] != stopped:  # said once, below
            print(f"  FAILED {check['name']}: {check['reason']}")
    if report.get("measurement_count") is not None:
        print(f"  {len(report.get('measurements') or [])} measurements"
              + (" (signed)" if any(s.get("what", "").startswith("meas") for s in report.get("signatures") or [])
                 else ""))
        for m in report.get("measurements") or []:
            print(f"    {m['index']:3d} {m.get('type', ''):<20} {str(m.get('value', ''))[:32]}")
    if report.get("session"):
        print("  secured session: established")
    if report.get("error"):
        print(f"  stopped at {report['error'].get('step')}: {report['error'].get('message')}")
    for d in differences:
        print(f"  DIFFERS: {d.message}")
    if "reference" in result.extra and not differences:
        print(f"  matches the reference {result.extra['reference']['file']}")
    for note in result.notes:
        if "--trust-anchor" in note and not report.get("slots"):
            continue  # no chain was read: which root would have been trusted does not matter
        print(f"  note: {note}")
    if code not in (0, 6) or not result.authenticated:
        print(f"  exit code {code}")
