"""``pciauth doe DEVICE``: list DOE mailboxes and their protocols, or send one raw object."""

from __future__ import annotations

import argparse

HELP = "list a device's DOE mailboxes and protocols, or send one raw data object"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("device", help="PCI device (01:00.0, lspci-style selector) or emu / emu:N[,knob=value]")
    parser.add_argument(
        "--raw",
        nargs=2,
        metavar=("VENDOR:TYPE", "HEX"),
        help="send one object (e.g. --raw 0001:01 10840000) and print the response payload",
    )
    parser.add_argument("--mailbox", type=lambda v: int(v, 0), metavar="OFFSET",
                        help="mailbox for --raw (default: the first that supports VENDOR:TYPE)")
    parser.add_argument("--timeout", type=float, default=1.0, help="DOE response timeout in s (1)")
    parser.add_argument("--lock-timeout", type=float, default=10.0,
                        help="wait this long for another pciauth using the device (10 s)")
    parser.add_argument("--force", action="store_true",
                        help="drive the mailbox even if the kernel may be using it")


def _parse_protocol(text: str):
    from pciauth.doe.mailbox import DoeProtocol
    from pciauth.errors import UsageError

    vendor, sep, type_ = text.partition(":")
    try:
        if not sep:
            raise ValueError
        v, t = int(vendor, 16), int(type_, 16)
    except ValueError:
        raise UsageError(f"--raw wants VENDOR:TYPE in hex (0001:01), not {text!r}") from None
    if not (0 <= v <= 0xFFFF and 0 <= t <= 0xFF):
        raise UsageError(f"--raw {text}: vendor is 16 bits, type 8 bits")
    return DoeProtocol(v, t)


def _parse_hex(text: str) -> bytes:
    from pciauth.errors import UsageError

    try:
        data = bytes.fromhex(text.replace(":", "").replace("_", ""))
    except ValueError:
        raise UsageError(f"--raw payload is not hex: {text!r}") from None
    if len(data) % 4:
        raise UsageError(f"--raw payload must be whole dwords (a multiple of 4 bytes), not {len(data)} bytes",
                         hint="pad it yourself, e.g. 10840000")  # fmt: skip
    return data


def run(args: argparse.Namespace) -> int:
    from pciauth.cli.output import print_json
    from pciauth.errors import ExitCode, NotFoundError, UsageError
    from pciauth.target import lock_target, open_target

    if args.lock_timeout < 0:
        raise UsageError(f"--lock-timeout must not be negative, not {args.lock_timeout:g}")
    raw = None
    if args.raw:
        raw = (_parse_protocol(args.raw[0]), _parse_hex(args.raw[1]))
    with open_target(args.device, writable=True, sysfs_root=args.sysfs_root) as target:
        forced = target.check_kernel_use(force=args.force)
        with lock_target(target, timeout=args.lock_timeout):
            mailboxes = target.mailboxes(timeout=args.timeout)
            if not mailboxes:
                raise NotFoundError(f"{target.name} has no DOE mailbox", device=target.name)
            if raw is not None:
                return _send_raw(args, target, mailboxes, *raw)
            listing = [mb.to_dict() for mb in mailboxes]
    kernel = getattr(target.device, "doe_features", None) if not target.is_emulated else None
    if args.json:
        print_json({"ok": True, "device": target.name, "warnings": forced, "mailboxes": listing,
                    "kernel_doe_features": kernel})  # fmt: skip
        return ExitCode.OK
    for reason in forced:
        print(f"warning (--force): {reason}")
    print(f"{target.name}: {len(listing)} DOE mailbox{'es' if len(listing) != 1 else ''}")
    if kernel is not None:
        print(f"  the kernel lists: {' '.join(kernel) or 'nothing'} (doe_features)")
    for mb in listing:
        irq = ", interrupts" if mb["interrupt_support"] else ""
        print(f"  mailbox at 0x{mb['offset']:03x} (capability version {mb['version']}{irq})")
        for p in mb["protocols"]:
            print(f"    {p['id']}  {p['name']}")
    return ExitCode.OK


def _send_raw(args, target, mailboxes, protocol, payload) -> int:
    from pciauth.cli.output import print_json
    from pciauth.doe.mailbox import find_mailbox
    from pciauth.errors import ExitCode, NotFoundError

    if args.mailbox is not None:
        chosen = [mb for mb in mailboxes if mb.offset == args.mailbox]
        if not chosen:
            raise NotFoundError(f"{target.name} has no DOE mailbox at 0x{args.mailbox:x}")
        mailbox = chosen[0]
    else:
        mailbox = find_mailbox(mailboxes, protocol)
    response = mailbox.exchange_object(protocol.vendor, protocol.type, payload)
    if args.json:
        print_json({
            "ok": True, "device": target.name, "mailbox": mailbox.offset, "protocol": str(protocol),
            "request": payload.hex(), "response": response.hex(),
        })  # fmt: skip
    else:
        print(response.hex())
    return ExitCode.OK
