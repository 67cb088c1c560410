"""The ``pciauth`` command line: a table of subcommands, one module each.

Each subcommand module under ``pciauth.cli`` defines ``HELP`` (one line),
``configure(parser)`` (argparse options; keep module import light) and
``run(args) -> int``. Heavy imports (cryptography, the SPDM stack) go inside
``run``, so ``pciauth --help`` and ``pciauth list`` stay fast.

Errors: every :class:`pciauth.errors.PciauthError` becomes one line on stderr
(``-v`` adds the hint, errno and traceback) and the exit code of its class.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from pciauth import __version__
from pciauth.errors import ExitCode, PciauthError, UsageError, exit_code_for

#: name -> module; the order is the order in ``--help``.
COMMANDS: dict[str, str] = {
    "list": "pciauth.cli.list_cmd",
    "show": "pciauth.cli.show_cmd",
    "doe": "pciauth.cli.doe_cmd",
    "auth": "pciauth.cli.auth_cmd",
    "responder": "pciauth.cli.responder_cmd",
    "pki": "pciauth.cli.pki_cmd",
    "bind": "pciauth.cli.bind_cmd",
    "unbind": "pciauth.cli.unbind_cmd",
    "restore": "pciauth.cli.restore_cmd",
    "iova": "pciauth.cli.iova_cmd",
    "dma": "pciauth.cli.dma_cmd",
    "run": "pciauth.cli.run_cmd",
    "doctor": "pciauth.cli.doctor_cmd",
}


def _available_commands() -> dict[str, object]:
    mods = {}
    for name, modname in COMMANDS.items():
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
    return mods


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError: one error line, exit 2, and a JSON error with --json."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """-v, --json, --sysfs-root: accepted before and after the command name.

    The subcommands' copies default to SUPPRESS so that ``pciauth --json list`` keeps the
    value given before the command instead of resetting it.
    """

    def default(value):
        return argparse.SUPPRESS if suppress else value

    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=default(0), help="more detail on errors")
    common.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output (stable fields)"
    )
    common.add_argument(
        "--sysfs-root",
        metavar="DIR",
        default=default(None),
        help="sysfs root to use instead of /sys (also $PCIAUTH_SYSFS_ROOT)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(suppress=False)
    sub_common = _common_options(suppress=True)
    parser = _Parser(
        prog="pciauth",
        description="Authenticate PCIe devices (CMA/SPDM over DOE) and check their DMA through the IOMMU.",
        epilog="Devices: a PCI address (0000:01:00.0, 01:00.0, 1:0.0), an lspci-style "
        "selector, or 'emu' / 'emu:N' for the built-in emulated device. "
        "Exit codes: 0 ok, 2 usage, 3 not found, 4 permission, 5 device/protocol failure, "
        "6 verification failure, 7 host not ready, 8 refused (use --force).",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"pciauth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _available_commands().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, parents=[sub_common])
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def _report_error(exc: BaseException, args: argparse.Namespace | None, argv: list[str]) -> int:
    from pciauth.cli.output import error_object

    code = exit_code_for(exc)
    verbose = getattr(args, "verbose", 0) if args else sum(a in ("-v", "--verbose") for a in argv)
    if isinstance(exc, PciauthError):
        line = str(exc)
        if exc.hint and not verbose:
            line += f" ({exc.hint})"
        detail = exc.to_dict()
    elif isinstance(exc, OSError):
        line = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
        detail = error_object(type(exc).__name__, line, code, errno=exc.errno, path=exc.filename)
    else:
        line = f"internal error: {type(exc).__name__}: {exc} (please report this; -v for a traceback)"
        detail = error_object(type(exc).__name__, str(exc), code)
    if getattr(args, "json", False) if args is not None else "--json" in argv:
        print(json.dumps({"ok": False, "error": detail}, indent=2))
    print(f"pciauth: error: {line}", file=sys.stderr)
    if verbose:
        if isinstance(exc, PciauthError):
            for key in ("hint", "errno", "path"):
                if getattr(exc, key, None) is not None:
                    print(f"  {key}: {getattr(exc, key)}", file=sys.stderr)
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return int(code)


def _replay_crashed_bindings() -> None:
    """Put back drivers that a crashed or killed pciauth left on vfio-pci (its journal).

    Cheap when nothing was ever journaled: one listdir of the run directory.
    """
    from pciauth.vfio.journal import Journal

    if not Journal().names():
        return
    try:
        from pciauth.vfio.bind import replay_stale

        for r in replay_stale():
            print(
                f"pciauth: restored {r['device']} left bound by a crashed pciauth: {r['action']}"
                + (f" ({r['note']})" if r.get("note") else ""),
                file=sys.stderr,
            )
    except Exception as e:  # start-up goes on; `pciauth restore` reports details
        print(f"pciauth: warning: could not replay the binding journal: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    _replay_crashed_bindings()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.sysfs_root:
            os.environ["PCIAUTH_SYSFS_ROOT"] = args.sysfs_root
        if not getattr(args, "_run", None):
            parser.print_help()
            return int(ExitCode.USAGE)
        return int(args._run(args) or 0)
    except SystemExit as e:  # argparse usage errors exit 2 already
        return int(e.code) if isinstance(e.code, int) else int(ExitCode.USAGE)
    except KeyboardInterrupt:
        print("pciauth: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except BaseException as e:
        return _report_error(e, args, argv)


def entry_point() -> None:
    sys.exit(main())
