"""Targets: what a device argument names, the built-in emulated device or a PCI function.

``open_target(spec)`` accepts ``emu``, ``emu:N`` and ``emu:N,knob=value,...`` (the emulated
device, see ``docs/doe.md``) and any PCI selector :func:`pciauth.pci.select.find_device` accepts.
A :class:`Target` gives the config space to drive DOE through, the identity the CMA certificate
must name, and what a report says about the device.

For a device bound to vfio-pci, pass its VFIO config region as ``config``: the DOE offsets still
come from the sysfs config file, because vfio-pci hides the DOE capability in its view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pciauth.errors import UsageError
from pciauth.pci.config import ConfigSpace

#: ``emu``, ``emu:N`` and ``emu:N,knob=value,...``: group 1 the index, group 2 the knobs.
EMU_SPEC = re.compile(r"^emu(?::(\d+))?(?:,(.*))?$")
_EMU = EMU_SPEC  # the old private name


def names_emulated_device(spec: str) -> bool:
    """True when ``spec`` means pciauth's emulated device (``emu``, ``emu:N``, ``emu,...``), well
    formed or not: such a spec is never a PCI selector, and a malformed one gets the emu error."""
    return spec.strip().split(",")[0].split(":")[0] == "emu"


@dataclass
class Target:
    name: str
    config: ConfigSpace
    identity: Any
    is_emulated: bool
    info: dict = field(default_factory=dict)
    device: Any = None  # EmulatedDevice or PciDevice
    doe_offsets: list[int] | None = None  # None: walk the config space
    doe_versions: dict[int, int] | None = None  # from sysfs, when ``config`` hides the headers
    sysfs_path: str | None = None
    trust_anchors: list[str] = field(default_factory=list)  # trusted without asking (emu root)

    def mailboxes(self, **kw: Any) -> list:
        """A :class:`~pciauth.doe.DoeMailbox` for each DOE capability of the target."""
        from pciauth.doe import open_mailboxes

        return open_mailboxes(self.config, self.doe_offsets, self.doe_versions, **kw)

    def check_kernel_use(self, *, force: bool) -> list[str]:
        """Refuse (DeviceBusy) when the kernel may use the mailbox; returns forced-past reasons."""
        if self.is_emulated or not self.sysfs_path:
            return []
        from pciauth.doe.lock import refuse_if_kernel_uses

        return refuse_if_kernel_uses(self.sysfs_path, self.name, force=force)

    def close(self) -> None:
        self.config.close()
        close = getattr(self.device, "close", None)
        if self.is_emulated and close:
            close()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_emu_spec(spec: str) -> tuple[int, dict[str, Any]] | None:
    """``(index, knobs)`` for an ``emu`` spec, None for anything else."""
    m = _EMU.match(spec.strip())
    if not m:
        if names_emulated_device(spec):  # meant the emulated device: say how
            raise UsageError(f"bad emulated device {spec.strip()!r}: use emu, emu:N (0-2) or emu:N,knob=value")
        return None
    from pciauth.emu.device import KNOBS

    index = int(m.group(1) or 0)
    knobs: dict[str, Any] = {}
    for item in filter(None, (m.group(2) or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in KNOBS:
            raise UsageError(
                f"bad emulated device option {item!r}: expected knob=value with a knob among "
                + ", ".join(sorted(KNOBS))
            )
        try:
            knobs[key] = KNOBS[key](value.strip())
        except ValueError:
            raise UsageError(f"bad value for emulated device knob {key}: {value!r}") from None
    return index, knobs


def open_target(
    spec: str,
    *,
    writable: bool = True,
    sysfs_root: str | None = None,
    config: ConfigSpace | None = None,
    **emu_kw: Any,
) -> Target:
    """Open ``spec`` (``emu``, ``emu:N[,knob=value...]`` or a PCI selector)."""
    emu = parse_emu_spec(spec)
    if emu is not None:
        from pciauth.emu import EmulatedDevice

        index, knobs = emu
        dev = EmulatedDevice(index, **{**knobs, **emu_kw})
        anchors: list[str] = []
        return Target(
            name=dev.name,
            config=dev.config,
            identity=dev.identity,
            is_emulated=True,
            info=dev.info(),
            device=dev,
            doe_offsets=sorted(dev.mailboxes),
            trust_anchors=anchors,
        )
    from pciauth.pci.select import find_device

    dev = find_device(spec, sysfs_root=sysfs_root)
    found = dev.doe_mailboxes
    offsets = [m.offset for m in found]
    cfg = config if config is not None else dev.config_space(writable=writable)
    versions = {m.offset: m.version for m in found} if config is not None else None
    info = dev.to_dict() if hasattr(dev, "to_dict") else {"name": dev.name}
    return Target(
        name=dev.name,
        config=cfg,
        identity=dev.identity(),
        is_emulated=False,
        info=info,
        device=dev,
        doe_offsets=offsets,
        doe_versions=versions,
        sysfs_path=dev.sysfs_path,
    )


def emu_trust_anchors(target: Target) -> list[str]:
    """The emulated device's root certificate (generated on first use), as a path list."""
    if not target.is_emulated:
        return []
    return [str(target.device.pki.root_path)]


def lock_target(target: Target, *, timeout: float):
    """The held :class:`~pciauth.doe.lock.MailboxLock` for ``target`` (a context manager).

    The emulated device needs no root: when the run directory is not writable (and
    ``$PCIAUTH_RUN_DIR`` is not set), its lock goes to the per-user run directory
    (``$XDG_RUNTIME_DIR/pciauth``, else ``/tmp/pciauth-<uid>``; :mod:`pciauth.rundir`) instead.
    """
    from pciauth.doe.lock import MailboxLock
    from pciauth.errors import HostNotReady, PermissionDeniedError
    from pciauth.rundir import env_run_dir, user_run_dir

    lock = MailboxLock(target.name, timeout=timeout)
    try:
        return lock.acquire()
    except (PermissionDeniedError, HostNotReady):
        if not target.is_emulated or env_run_dir():
            raise
    return MailboxLock(target.name, timeout=timeout, directory=user_run_dir()).acquire()
