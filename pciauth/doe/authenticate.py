"""Authenticate a target end to end: DOE (or socket, or a recording), requester, report.

This is what ``pciauth auth`` runs, as a library: ``authenticate_device("emu", AuthOptions())``
returns an :class:`AuthResult` whose ``exit_code`` is 0 (authenticated), 6 (not authenticated)
or 5 (could not talk). Locking, the kernel-use check, trust anchors, pcap and recording are
handled here so that other commands (``pciauth run``) get the same behaviour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pciauth.errors import DeviceError, ExitCode, UsageError


@dataclass
class AuthOptions:
    trust_anchors: list[str] = field(default_factory=list)
    slot: int | None = None
    measurements: str = "all"  # all | none | 1,2,5
    session: bool = False
    policy: str | None = None  # None: cma when the device identity is known, else spdm-only
    timeout: float = 1.0  # DOE response timeout (s)
    lock_timeout: float = 10.0
    force: bool = False
    pcap: str | None = None
    record: str | None = None

    def recorded(self) -> dict:
        return {"slot": self.slot, "measurements": self.measurements, "session": self.session,
                "policy": self.policy}  # fmt: skip


@dataclass
class AuthResult:
    report: Any  # pciauth.spdm.report.AuthReport
    device: str
    transport: str  # doe | socket | replay
    target: dict = field(default_factory=dict)
    trust_anchors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return bool(self.report.authenticated)

    @property
    def exit_code(self) -> int:
        return int(self.report.exit_code)

    def to_dict(self) -> dict:
        out = {"ok": self.authenticated, "device": self.device, "transport": self.transport,
               "target": self.target, "trust_anchors": self.trust_anchors, "notes": self.notes}  # fmt: skip
        out.update(self.extra)
        out.update(self.report.to_dict())
        return out


def parse_measurements(text: str) -> tuple[bool, tuple[int, ...] | None]:
    """``all`` -> (True, None); ``none`` -> (False, None); ``1,2,5`` -> (True, (1, 2, 5))."""
    text = text.strip().lower()
    if text == "all":
        return True, None
    if text == "none":
        return False, None
    try:
        indices = tuple(int(x, 0) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--measurements takes all, none or indices like 1,2,5, not {text!r}") from None
    if not indices or any(not 1 <= i <= 254 for i in indices):
        raise UsageError(f"measurement indices are 1..254, not {text!r}")
    return True, tuple(sorted(set(indices)))


def check_options(opts: AuthOptions) -> tuple[bool, tuple[int, ...] | None]:
    """Refuse bad option values before any device is opened; returns parsed measurements."""
    if opts.policy not in (None, "cma", "spdm-only"):
        raise UsageError(f"--policy is cma or spdm-only, not {opts.policy!r}")
    if opts.slot is not None and not 0 <= opts.slot <= 7:
        raise UsageError(f"--slot is 0..7, not {opts.slot}")
    return parse_measurements(opts.measurements)


def requester_config(opts: AuthOptions, anchors: list[str], identity: Any) -> Any:
    from pciauth.spdm.certs import load_trust_anchors
    from pciauth.spdm.requester import RequesterConfig

    measure, indices = check_options(opts)
    policy = opts.policy or ("cma" if identity is not None else "spdm-only")
    if policy == "cma" and identity is None:
        raise UsageError("--policy cma needs the device's identity: not available over --socket",
                         hint="use --policy spdm-only")  # fmt: skip
    return RequesterConfig(
        trust_anchors=load_trust_anchors(anchors) if anchors else [],
        policy=policy,
        identity=identity,
        challenge_slot=opts.slot,
        measurements=measure,
        measurement_indices=indices,
        session=opts.session,
    )


def _anchors_for(target: Any, opts: AuthOptions, notes: list[str]) -> list[str]:
    if opts.trust_anchors:
        return list(opts.trust_anchors)
    if target is not None and target.is_emulated:
        from pciauth.target import emu_trust_anchors

        anchors = emu_trust_anchors(target)
        notes.append(f"trusting the emulated device's own test root {anchors[0]} (--trust-anchor overrides)")
        return anchors
    notes.append("no --trust-anchor given: the certificate chain cannot be trusted")
    return []


def _run(transport: Any, cfg: Any, opts: AuthOptions, *, device: str, kind: str, target_info: dict,
         identity: Any, anchors: list[str], notes: list[str], extra: dict | None = None) -> AuthResult:
    from pciauth.doe.record import RecordingTransport
    from pciauth.spdm.requester import Requester

    recorder = None
    if opts.record:
        transport = recorder = RecordingTransport(transport)
    if opts.pcap:
        from pciauth.pcap import PcapTransport, PcapWriter

        transport = PcapTransport(transport, PcapWriter(opts.pcap))
    if recorder is not None:
        cfg = dataclasses.replace(cfg, random=recorder.draw)
    try:
        report = Requester(transport, cfg).authenticate()
    finally:
        if opts.pcap:
            transport.writer.close()
    if recorder is not None:
        recorder.save(opts.record, target=target_info,
                      identity=dataclasses.asdict(identity) if identity is not None else None,
                      options=opts.recorded())  # fmt: skip
        notes.append(f"recorded {recorder.exchanges} exchanges to {opts.record}")
    return AuthResult(report, device, kind, target_info, anchors, notes, extra or {})


def authenticate_device(spec: str, opts: AuthOptions, *, sysfs_root: str | None = None) -> AuthResult:
    """Authenticate ``spec`` (``emu``, ``emu:N``, a PCI device) through its CMA DOE mailbox."""
    from pciauth.doe import DoeTransport, find_mailbox
    from pciauth.target import lock_target, open_target

    notes: list[str] = []
    with open_target(spec, writable=True, sysfs_root=sysfs_root) as target:
        for reason in target.check_kernel_use(force=opts.force):
            notes.append(f"--force: {reason}")
        anchors = _anchors_for(target, opts, notes)
        cfg = requester_config(opts, anchors, target.identity)
        with lock_target(target, timeout=opts.lock_timeout):
            info = dict(target.info, spec=spec, name=target.name, emulated=target.is_emulated)
            try:
                mailbox = find_mailbox(target.mailboxes(timeout=opts.timeout))
            except DeviceError as exc:  # a report, like any other failure to talk
                from pciauth.spdm.report import AuthReport

                report = AuthReport()
                report.fail("doe_discovery", exc)
                return AuthResult(report, target.name, "doe", info, anchors, notes)
            return _run(DoeTransport(mailbox), cfg, opts, device=target.name, kind="doe", target_info=info,
                        identity=target.identity, anchors=anchors, notes=notes,
                        extra={"mailbox": mailbox.offset})  # fmt: skip


def authenticate_socket(address: str, opts: AuthOptions) -> AuthResult:
    """Authenticate an spdm-emu compatible responder at ``HOST:PORT``."""
    from pciauth.spdm.socket import SocketTransport, parse_endpoint

    if ":" not in address:
        raise UsageError(f"--socket wants HOST:PORT or [V6ADDR]:PORT, not {address!r}")
    host, port = parse_endpoint(address)
    if port == 0:
        raise UsageError(f"--socket wants a port between 1 and 65535, not {address!r}")
    notes: list[str] = []
    anchors = _anchors_for(None, opts, notes)
    cfg = requester_config(opts, anchors, None)
    transport = SocketTransport(host, port, timeout=opts.timeout)
    try:
        return _run(transport, cfg, opts, device=address, kind="socket",
                    target_info={"name": address, "socket": True}, identity=None, anchors=anchors,
                    notes=notes)  # fmt: skip
    finally:
        transport.close()


def replay(path: str, opts: AuthOptions, *, explicit: set[str] | None = None) -> AuthResult:
    """Re-run the verification of a recording offline.

    Options the caller set explicitly (``explicit``) override the recorded ones.
    """
    from pciauth.doe.record import Recording, ReplayTransport, random_source
    from pciauth.pci.device import DeviceIdentity

    rec = Recording.load(path)
    explicit = explicit or set()
    for key, value in rec.options.items():  # types checked by Recording
        if key not in explicit:
            setattr(opts, key, value)
    notes = [f"replaying {len(rec.exchanges)} recorded exchanges from {path}"]
    identity = DeviceIdentity(**rec.identity) if rec.identity else None
    target = None
    spec = str(rec.target.get("spec") or rec.target.get("name") or "")
    if not opts.trust_anchors and rec.target.get("emulated") is True:
        from pciauth.target import open_target, parse_emu_spec

        if parse_emu_spec(spec) is not None:  # only ever the emulated device's root, never hardware
            target = open_target(spec)
    anchors = _anchors_for(target, opts, notes)
    cfg = dataclasses.replace(requester_config(opts, anchors, identity), random=random_source(rec))
    transport = ReplayTransport(rec)
    try:
        result = _run(transport, cfg, dataclasses.replace(opts, record=None),
                      device=str(rec.target.get("name", "replay")), kind="replay", target_info=rec.target,
                      identity=identity, anchors=anchors, notes=notes)  # fmt: skip
    finally:
        if target is not None:
            target.close()
    _session_not_replayable(result, transport)
    result.extra["replay"] = {"file": path, "exchanges": len(rec.exchanges), "replayed": transport.position,
                              "divergence": transport.divergence}  # fmt: skip
    if transport.divergence is None and transport.remaining and not result.extra.get("session_skipped"):
        result.notes.append(f"{transport.remaining} recorded exchanges were not replayed")
    return result


def _session_not_replayable(result: AuthResult, transport: Any) -> None:
    """A recorded session stops the replay at KEY_EXCHANGE: judge what came before it."""
    report = result.report
    if not transport.stopped_at_session:
        return
    report.clear_error()
    report.check("session", True, "the recorded secured session is not re-run offline (ephemeral keys)",
                 skipped=True)  # fmt: skip
    challenge, trust = report.verdict("challenge"), report.verdict("chain_trust")
    report.authenticated = bool(challenge and challenge.ok and not challenge.skipped and trust and trust.ok)
    result.extra["session_skipped"] = True
    result.notes.append("the recorded secured session was not replayed (its keys are ephemeral)")


def expect_exit(result: AuthResult, differences: list) -> int:
    """The exit code once reference differences are known."""
    if result.exit_code != ExitCode.OK:
        return result.exit_code
    return int(ExitCode.VERIFICATION) if differences else int(ExitCode.OK)
