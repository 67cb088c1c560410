"""``pciauth responder``: serve pciauth's SPDM responder over the spdm-emu socket protocol.

Other requesters (DMTF ``spdm_requester_emu``, ``pciauth auth --socket``) and QEMU's NVMe
(``-device nvme,spdm_port=PORT``) connect to it; each connection gets a fresh responder with the
certificate slots of ``--pki DIR`` (made by ``pciauth pki init DIR`` or any vendor's PEM/DER
files laid out the same way). Runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse

HELP = "serve pciauth's SPDM responder on a TCP port (spdm-emu protocol, PCI_DOE framing)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        default="127.0.0.1:2323",
        help="address to listen on (default 127.0.0.1:2323; QEMU connects to 127.0.0.1)",
    )
    p.add_argument("--pki", metavar="DIR", help="PKI directory (pciauth pki init DIR); required to serve")
    p.add_argument(
        "--algorithm",
        dest="algorithms",
        metavar="ALG",
        action="append",
        help="slot algorithm(s) to load from DIR (repeat or comma list; default: every one in DIR)",
    )
    p.add_argument(
        "--versions", metavar="LIST", help="SPDM versions to offer, e.g. 1.2,1.3 (default 1.0-1.3)"
    )
    p.add_argument(
        "--adversary",
        metavar="ROW",
        action="append",
        default=[],
        help="misbehave as this adversary row (tests; repeatable; 'list' shows the rows)",
    )
    p.add_argument("--pcap", metavar="FILE", help="record every DOE object to FILE (link type 292)")
    p.add_argument("--max-connections", type=int, default=64, metavar="N", help="concurrent requesters (64)")


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _adversary_rows() -> list[tuple[str, str]]:
    from pciauth.spdm.adversary import MISBEHAVIOURS

    return [(m.name, m.description) for m in MISBEHAVIOURS]


def build_config(args: argparse.Namespace):
    """The ResponderConfig the options describe (for ``run`` and for tests)."""
    import os

    from pciauth.errors import NotFoundError, UsageError
    from pciauth.spdm import constants as C
    from pciauth.spdm.pki import normalize_algorithm
    from pciauth.spdm.responder import ResponderConfig

    kw = {}
    if args.versions:
        try:
            kw["versions"] = tuple(sorted({C.parse_version_str(v) for v in _split([args.versions])}))
        except ValueError as e:
            raise UsageError(f"--versions: {e}")
    adversary = _split(args.adversary)
    if adversary:
        from pciauth.spdm.adversary import Adversary

        Adversary(tuple(adversary))  # unknown rows are a usage error, before the PKI is read
        kw["adversary"] = tuple(adversary)
    algs = tuple(normalize_algorithm(a) for a in _split(args.algorithms)) or None
    if not os.path.isdir(args.pki):
        raise NotFoundError(f"{args.pki}: no such PKI directory", path=str(args.pki),
                            hint=f"make one with `pciauth pki init {args.pki}`")  # fmt: skip
    config = ResponderConfig.from_pki(args.pki, algs, **kw)
    if not config.slots:
        raise UsageError(f"{args.pki}: no certificate slot found", hint=f"run `pciauth pki init {args.pki}`")
    return config


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from pciauth.cli.output import print_json, print_table
    from pciauth.errors import UsageError
    from pciauth.spdm import constants as C
    from pciauth.spdm.responder import Responder
    from pciauth.spdm.socket import parse_endpoint
    from pciauth.spdm.socket_server import serve

    if "list" in _split(args.adversary):
        rows = _adversary_rows()
        if args.json:
            print_json({"ok": True, "adversary": [{"name": n, "description": d} for n, d in rows]})
        else:
            print_table([list(r) for r in rows], ["ROW", "MISBEHAVIOUR"])
        return 0
    if not args.pki:
        raise UsageError("--pki DIR is required (make one with `pciauth pki init DIR`)")
    if args.max_connections < 1:
        raise UsageError(f"--max-connections must be at least 1, not {args.max_connections}")
    host, port = parse_endpoint(args.listen)
    config = build_config(args)
    Responder(config)  # validate the adversary rows and the slots before listening
    if args.verbose:
        logging.basicConfig(level=logging.INFO if args.verbose == 1 else logging.DEBUG, format="%(message)s")
    pcap = None
    if args.pcap:
        from pciauth.pcap import PcapWriter

        pcap = PcapWriter(args.pcap)

    def ready(server) -> None:
        versions = ",".join(C.version_str(v) for v in config.versions)
        print(
            f"pciauth responder: listening on {server.host}:{server.port} "
            f"({len(config.slots)} slot set(s) from {args.pki}, SPDM {versions}); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )

    try:
        server = serve(
            lambda: Responder(config),
            host,
            port,
            on_ready=ready,
            max_connections=args.max_connections,
            pcap=pcap,
        )
    finally:
        if pcap is not None:
            pcap.close()
    if args.json:
        print_json({"ok": True, "listen": f"{server.host}:{server.port}", "stats": server.stats})
    else:
        print(f"pciauth responder: stopped ({server.stats['connections']} connection(s))", file=sys.stderr)
    return 0
