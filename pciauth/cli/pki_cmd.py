"""``pciauth pki``: make a test PKI (root, intermediate, CMA leaf per algorithm), or show one.

``pciauth pki init DIR`` asks nothing: the leaf's CMA name defaults to the built-in emulated
device's ids; ``--vendor/--device/--class/--revision`` (hex) name another device. RSA keys are
slow to make, so only ECDSA P-256 and P-384 are made unless ``--algorithms`` says otherwise
(``all``, or a comma list such as ``ecdsa-p521,rsa3072``).
"""

from __future__ import annotations

import argparse

HELP = "create (init) or describe (show) a test PKI for the SPDM responder"


def _hex(bits: int):
    def parse(text: str) -> int:
        try:
            value = int(text, 16)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a hex number")
        if not 0 <= value < (1 << bits):
            raise argparse.ArgumentTypeError(f"{text!r} does not fit in {bits} bits")
        return value

    return parse


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="pki_action", metavar="ACTION")
    init = sub.add_parser("init", help="generate a PKI into DIR", description="generate a test PKI into DIR")
    init.add_argument("dir", metavar="DIR")
    init.add_argument(
        "--algorithms",
        metavar="LIST",
        default=None,
        help="comma list of ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa2048, rsa3072, rsa4096, or 'all' "
        "(default: ecdsa-p256,ecdsa-p384)",
    )
    init.add_argument("--vendor", type=_hex(16), help="vendor id in the leaf's CMA name (hex)")
    init.add_argument("--device", type=_hex(16), help="device id (hex)")
    init.add_argument("--class", dest="class_code", type=_hex(24), help="class code, 24 bits (hex)")
    init.add_argument("--revision", type=_hex(8), help="revision id (hex)")
    init.add_argument("--ssvid", type=_hex(16), help="subsystem vendor id (hex)")
    init.add_argument("--ssid", type=_hex(16), help="subsystem id (hex)")
    init.add_argument("--no-subsystem", action="store_true", help="leave SSVID/SSID out (a bridge)")
    init.add_argument("--serial", type=_hex(64), help="Device Serial Number (hex) to append")
    init.add_argument("--force", action="store_true", help="replace an existing PKI in DIR")
    show = sub.add_parser("show", help="describe the PKI in DIR", description="describe the PKI in DIR")
    show.add_argument("dir", metavar="DIR")
    for action in (init, show):  # accept the common options after the action too
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
        action.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more detail")


def _identity(args: argparse.Namespace):
    import dataclasses

    from pciauth.spdm.pki import DEFAULT_IDENTITY

    changes = {
        k: v
        for k, v in (
            ("vendor", args.vendor),
            ("device", args.device),
            ("class_code", args.class_code),
            ("revision", args.revision),
            ("subsystem_vendor", args.ssvid),
            ("subsystem_device", args.ssid),
            ("serial", args.serial),
        )
        if v is not None
    }
    if args.no_subsystem:
        changes.update(subsystem_vendor=None, subsystem_device=None)
    return dataclasses.replace(DEFAULT_IDENTITY, **changes)


def _check_files(directory: str, desc: dict) -> None:
    """Parse every chain and load every key ``show`` describes: a corrupt file fails, naming it."""
    from pathlib import Path

    from pciauth.errors import UsageError
    from pciauth.spdm import pki

    algorithms = desc.get("algorithms")
    if not isinstance(algorithms, dict):
        raise UsageError(f"{directory}/pki.json: algorithms is not an object", path=str(directory))
    for alg in sorted(set(algorithms) | set(pki.available_algorithms(directory))):
        pki.load_slot(directory, alg)  # the chain links up and leaf.key belongs to the leaf
        entry = algorithms.get(alg)
        for role in entry.values() if isinstance(entry, dict) else ():
            key = role.get("key") if isinstance(role, dict) else None
            if isinstance(key, str) and (Path(directory) / key).is_file():
                pki.load_private_key(Path(directory) / key)


def run(args: argparse.Namespace) -> int:
    import sys

    from pciauth.cli.output import print_json
    from pciauth.errors import UsageError
    from pciauth.spdm import pki

    action = getattr(args, "pki_action", None)
    if action is None:
        raise UsageError("pciauth pki needs an action: init DIR or show DIR")
    if action == "show":
        desc = pki.read_pki_json(args.dir)
        _check_files(args.dir, desc)
    else:
        if (args.ssvid is None) != (args.ssid is None):
            raise UsageError("--ssvid and --ssid go together")

        def progress(alg: str) -> None:
            if not args.json:
                print(f"generating {alg} ...", file=sys.stderr, flush=True)

        desc = pki.init_pki(
            args.dir, args.algorithms, identity=_identity(args), force=args.force, progress=progress
        )
    if args.json:
        print_json({"ok": True, "dir": str(args.dir), **desc})
        return 0
    print(f"PKI in {args.dir}")
    print(f"  CMA name: {desc.get('cma_name')}")
    for alg, entry in desc.get("algorithms", {}).items():
        print(f"  {alg}: chain {entry.get('chain')}, leaf key {entry.get('leaf', {}).get('key')}")
    if action == "init":
        print(f"  trust anchor for pciauth auth: --trust-anchor {args.dir}/<alg>/root.pem")
    return 0
