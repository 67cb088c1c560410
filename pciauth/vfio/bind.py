"""Bind a PCI device to vfio-pci, and always give it back to its driver.

Binding (FACTS.md section 1): write ``vfio-pci`` to ``driver_override``, unbind the
current driver, write the address to ``drivers_probe``; then wait until vfio-pci owns
the device and its VFIO node exists. Never ``new_id`` (it grabs every device with the
same ids). Restoring: clear ``driver_override`` (or put back the one that was there),
unbind vfio-pci, ``drivers_probe``, and bind the original driver explicitly if probing
picked another.

Every exit path restores:

- :func:`bound` is a context manager: normal exit and exceptions restore;
- SIGINT, SIGTERM and SIGHUP raise :class:`SignalExit` inside the block, so the code
  using the device unwinds (closing its VFIO file descriptors: vfio-pci cannot be
  unbound while they are open), the driver is restored, and the signal is re-raised
  so the process ends the way the signal meant;
- SIGKILL and crashes leave a journal entry (``pciauth.vfio.journal``) that
  ``pciauth restore`` and the next pciauth start replay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from pciauth.errors import BindError, DeviceBusy, HostNotReady, RefusedError, exit_code_for
from pciauth.pci import sysfs
from pciauth.vfio import safety
from pciauth.vfio.journal import Journal, JournalEntry
from pciauth.vfio.sysfs_ops import current_driver, device_root, wait_until, write_attr

VFIO_DRIVER = "vfio-pci"
DEFAULT_TIMEOUT = 10.0
DOCTOR = "see `pciauth doctor`"


@dataclass
class Binding:
    """The result of :func:`bind`: what pciauth changed and how to undo it."""

    device: str
    sysfs_path: str
    sysfs_root: str
    original_driver: str | None
    original_override: str | None
    changed: bool
    mode: str = "session"
    journal_path: str | None = None
    iommu_group: int | None = None
    vfio_cdev: str | None = None
    warnings: list[str] = field(default_factory=list)
    restored: bool = False

    def entry(self) -> JournalEntry:
        return JournalEntry(
            device=self.device,
            sysfs_root=self.sysfs_root,
            original_driver=self.original_driver,
            original_override=self.original_override,
            mode=self.mode,
        )

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "driver": VFIO_DRIVER,
            "original_driver": self.original_driver,
            "original_override": self.original_override,
            "changed": self.changed,
            "mode": self.mode,
            "journal": self.journal_path,
            "iommu_group": self.iommu_group,
            "vfio_cdev": self.vfio_cdev,
            "vfio_group_node": f"/dev/vfio/{self.iommu_group}" if self.iommu_group is not None else None,
            "warnings": list(self.warnings),
        }


def _override(sysfs_path: str) -> str | None:
    text = sysfs.read_text(os.path.join(sysfs_path, "driver_override"))
    return None if text in (None, "", "(null)") else text


def _group(sysfs_path: str) -> int | None:
    name = sysfs.link_name(os.path.join(sysfs_path, "iommu_group"))
    return int(name) if name and name.isdigit() else None


def _cdev(sysfs_path: str) -> str | None:
    names = [n for n in sysfs.list_dir(os.path.join(sysfs_path, "vfio-dev")) if n.startswith("vfio")]
    return names[0] if names else None


def safety_problems(device, *, force: bool = False) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for taking ``device``; with ``force`` the refusals become warnings."""
    problems = [f"{device.name} is in use: {why}" for why in safety.in_use_reasons(device)]
    blockers = safety.group_blockers(device)
    if blockers:
        problems.append(
            f"IOMMU group {_group(device.sysfs_path)} is not viable: "
            + "; ".join(blockers)
            + " (bind those to vfio-pci too, or unbind them)"
        )
    persistent = safety.driverctl_override(device.name)
    if persistent and persistent != VFIO_DRIVER:
        problems.append(
            f"driverctl has a persistent override to {persistent} for {device.name} "
            "(`driverctl unset-override` it first)"
        )
    override = _override(device.sysfs_path)
    if override and override != VFIO_DRIVER:
        problems.append(f"driver_override of {device.name} is already {override!r} (set by someone else)")
    return ([], problems) if force else (problems, [])


def _check_existing(journal: Journal, name: str, timeout: float) -> None:
    """Refuse a device another live pciauth session holds; restore one a dead session left."""
    existing = journal.read(name)
    if existing is None:
        return
    if existing.mode == "session" and existing.owner_alive() and existing.pid != os.getpid():
        raise DeviceBusy(
            f"{name} is held by pciauth process {existing.pid}",
            device=name,
            hint="wait for it to finish, or `pciauth restore` after it is gone",
        )
    if existing.stale():
        restore_entry(existing, journal=journal, timeout=timeout)


def bind(
    device,
    *,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    mode: str = "session",
    journal: Journal | None = None,
    guard: SignalGuard | None = None,
) -> Binding:
    """Bind ``device`` (a ``PciDevice``) to vfio-pci; journal first so a crash can be undone.

    ``guard``: the :class:`SignalGuard` of :func:`bound`, held off while a failed bind undoes
    its work (a signal then is remembered in ``guard.pending``, not raised half-way).
    """
    journal = journal or Journal()
    name, path = device.name, device.sysfs_path
    root = device_root(path)
    if not os.path.isdir(path):
        raise BindError(f"{path} does not exist", device=name, step="FindDevice")
    with journal.locked():
        _check_existing(journal, name, timeout)  # restores what a crashed session left first

    original = current_driver(path)
    binding = Binding(
        device=name,
        sysfs_path=path,
        sysfs_root=root,
        original_driver=original,
        original_override=_override(path),
        changed=False,
        mode=mode,
        iommu_group=_group(path),
        vfio_cdev=_cdev(path),
    )
    if original == VFIO_DRIVER:
        # Already on vfio-pci (pciauth bind earlier, driverctl, or by hand): leave it so.
        earlier = journal.read(name)
        if earlier is not None:
            binding.warnings.append(
                f"{name} is already bound to vfio-pci by an earlier pciauth bind (original driver: "
                f"{earlier.original_driver or 'none'}); `pciauth unbind {name}` gives it back"
            )
        else:
            binding.warnings.append(f"{name} was already bound to vfio-pci: pciauth will leave it bound")
        return binding
    if not os.path.isdir(os.path.join(root, "bus", "pci", "drivers", VFIO_DRIVER)):
        raise HostNotReady(
            "the vfio-pci driver is not loaded",
            device=name,
            hint="`sudo modprobe vfio-pci` (and enable the IOMMU); " + DOCTOR,
        )
    refusals, warnings = safety_problems(device, force=force)
    if refusals:
        raise RefusedError(
            "; ".join(refusals),
            device=name,
            hint="pciauth does not take devices in use; --force overrides (you may lose the console, "
            "a file system or the network)",
        )
    binding.warnings.extend(warnings)
    with journal.locked():
        _check_existing(journal, name, timeout)  # another pciauth may have started meanwhile
        binding.journal_path = journal.write(binding.entry())
    binding.changed = True
    try:
        try:
            write_attr(os.path.join(path, "driver_override"), VFIO_DRIVER, step="SetDriverOverride", device=name)
        except BaseException:
            # The first write failed (not root, read-only sysfs): nothing changed, and no journal
            # entry may say otherwise (doctor would report a device "left on vfio-pci").
            binding.changed = False
            with contextlib.suppress(Exception), journal.locked():
                journal.remove(name)
            raise
        if original is not None:
            write_attr(os.path.join(path, "driver", "unbind"), name, step="UnbindDriver", device=name)
        write_attr(os.path.join(root, "bus", "pci", "drivers_probe"), name, step="DriversProbe", device=name)
        _wait_bound(binding, timeout)
    except BaseException:
        if guard is not None:
            guard.restoring = True
        try:
            with contextlib.suppress(Exception):
                restore(binding, journal=journal, timeout=timeout)
        finally:
            if guard is not None:
                guard.restoring = False
        raise
    return binding


def _wait_bound(binding: Binding, timeout: float) -> None:
    path, name = binding.sysfs_path, binding.device
    real_sys = os.path.realpath(binding.sysfs_root) == "/sys"
    bound = lambda: current_driver(path) == VFIO_DRIVER  # noqa: E731
    first = min(1.0, timeout / 2)
    if not wait_until(bound, first, use_udev=real_sys) and current_driver(path) is None:
        # Unbound and not probed (a probe lost to a racing unbind or hotplug event): probe once
        # more. On a real kernel drivers_probe is synchronous and harmless to repeat.
        with contextlib.suppress(Exception):
            write_attr(os.path.join(binding.sysfs_root, "bus", "pci", "drivers_probe"), name,
                       step="DriversProbe", device=name)
    if not bound() and not wait_until(bound, max(timeout - first, 0.0), use_udev=real_sys):
        now = current_driver(path)
        raise BindError(
            f"vfio-pci did not take {name} within {timeout:g} s (driver now: {now or 'none'})",
            device=name,
            step="WaitVfioBound",
            hint="check `dmesg` (an IOMMU group problem or a missing IOMMU?); " + DOCTOR,
        )
    binding.iommu_group = _group(path)
    binding.vfio_cdev = _cdev(path)
    if not real_sys:
        return  # an injected sysfs tree has no /dev nodes to wait for

    def node_ready() -> bool:
        binding.vfio_cdev = binding.vfio_cdev or _cdev(path)
        group_ok = binding.iommu_group is not None and os.path.exists(f"/dev/vfio/{binding.iommu_group}")
        cdev_ok = binding.vfio_cdev is not None and os.path.exists(f"/dev/vfio/devices/{binding.vfio_cdev}")
        return group_ok or cdev_ok

    if not wait_until(node_ready, timeout, use_udev=True):
        raise BindError(
            f"{name} is bound to vfio-pci but no /dev/vfio node appeared within {timeout:g} s",
            device=name,
            step="WaitVfioNode",
            hint="is the device behind an IOMMU (`pciauth doctor`), and is udev/devtmpfs running?",
        )


def restore(binding: Binding, *, journal: Journal | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Undo :func:`bind`. Idempotent; does nothing when bind changed nothing."""
    if not binding.changed or binding.restored:
        return {"device": binding.device, "action": "none"}
    result = restore_entry(binding.entry(), journal=journal, timeout=timeout)
    binding.restored = True
    return result


def restore_entry(
    entry: JournalEntry, *, journal: Journal | None = None, timeout: float = DEFAULT_TIMEOUT
) -> dict:
    """Put back the driver recorded in ``entry`` and drop the journal entry.

    Returns what was done: ``{"device", "action", "driver", "note"}``.
    """
    journal = journal or Journal()
    name, root = entry.device, entry.sysfs_root
    path = os.path.join(root, "bus", "pci", "devices", name)
    if not os.path.isdir(path):
        journal.remove(name)
        return {"device": name, "action": "gone", "driver": None, "note": "the device no longer exists"}
    now = current_driver(path)
    if now not in (VFIO_DRIVER, None, entry.original_driver):
        journal.remove(name)
        return {
            "device": name,
            "action": "left",
            "driver": now,
            "note": f"someone bound it to {now} since; pciauth left it alone",
        }
    if now == entry.original_driver and now != VFIO_DRIVER and _override(path) == entry.original_override:
        # Already as it was before the bind (the bind never got going, or someone restored it).
        journal.remove(name)
        return {"device": name, "action": "restored", "driver": now, "note": "already as before"}
    write_attr(
        os.path.join(path, "driver_override"),
        entry.original_override or "\n",
        step="ClearDriverOverride",
        device=name,
    )
    if now == VFIO_DRIVER:
        write_attr(os.path.join(path, "driver", "unbind"), name, step="UnbindVfio", device=name)
        if not wait_until(lambda: current_driver(path) is None, timeout):
            raise BindError(
                f"vfio-pci did not release {name}",
                device=name,
                step="UnbindVfio",
                hint="a process still holds the VFIO device (QEMU?); close it, then `pciauth restore`",
            )
    want = entry.original_driver
    if want is not None and current_driver(path) != want:
        write_attr(os.path.join(root, "bus", "pci", "drivers_probe"), name, step="DriversProbe", device=name)
        # The driver core probes during the write (async probing aside): a short wait is enough.
        wait_until(lambda: current_driver(path) is not None, min(timeout, 0.5))
        if current_driver(path) != want:
            bind_path = os.path.join(root, "bus", "pci", "drivers", want, "bind")
            if current_driver(path) is None and os.path.exists(bind_path):
                write_attr(bind_path, name, step="BindOriginalDriver", device=name)
            if not wait_until(lambda: current_driver(path) == want, timeout):
                raise BindError(
                    f"could not give {name} back to {want} (driver now: {current_driver(path) or 'none'})",
                    device=name,
                    step="RestoreDriver",
                    hint=f"try `echo {name} > /sys/bus/pci/drivers/{want}/bind`; the journal entry is kept "
                    "for `pciauth restore`",
                )
    journal.remove(name)
    return {"device": name, "action": "restored", "driver": current_driver(path), "note": None}


class SignalExit(BaseException):
    """Raised inside :func:`bound` when SIGTERM/SIGHUP/SIGINT arrives, to unwind and restore."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


GUARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalGuard:
    """Turn termination signals into :class:`SignalExit` while a device is bound.

    Only in the main thread (Python delivers signals there). Signals whose previous
    handler was SIG_IGN stay ignored. While :attr:`restoring` is set a signal is
    remembered, not raised, so restoring is never interrupted half-way.
    """

    def __init__(self) -> None:
        self.previous: dict[int, object] = {}
        self.restoring = False
        self.pending: int | None = None

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in GUARDED_SIGNALS:
            old = signal.getsignal(sig)
            if old == signal.SIG_IGN:
                continue
            self.previous[sig] = old
            signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame) -> None:
        if self.restoring:
            self.pending = self.pending or signum
            return
        raise SignalExit(signum)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self.previous.clear()

    def reraise(self, signum: int) -> None:
        """Deliver ``signum`` again under the original handler (after restoring)."""
        self.__exit__()
        signal.raise_signal(signum)


@contextlib.contextmanager
def bound(
    device,
    *,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    journal: Journal | None = None,
) -> Iterator[Binding]:
    """``with bound(dev) as b:`` the device is on vfio-pci inside, on its own driver after."""
    journal = journal or Journal()
    guard = SignalGuard()
    with guard:
        try:
            binding = bind(device, force=force, timeout=timeout, journal=journal, guard=guard)
        except SignalExit as exc:  # bind() already undid its half-done work
            guard.reraise(exc.signum)
            raise
        except BaseException:
            if guard.pending is not None:  # arrived while bind() undid its work: deliver it now
                guard.reraise(guard.pending)
            raise
        signum: int | None = None
        try:
            yield binding
        except SignalExit as exc:
            signum = exc.signum
        finally:
            guard.restoring = True
            try:
                restore(binding, journal=journal, timeout=timeout)
            finally:
                guard.restoring = False
        signum = signum or guard.pending
        if signum is not None:
            print(
                f"pciauth: signal {signum}: restored {binding.device} to "
                f"{binding.original_driver or 'no driver'}",
                file=sys.stderr,
            )
            guard.reraise(signum)


def replay_stale(journal: Journal | None = None) -> list[dict]:
    """Restore every device of a crashed pciauth session (call at start-up). Never raises."""
    journal = journal or Journal()
    results: list[dict] = []
    if not os.path.isdir(journal.directory):
        return results  # the common case: nothing was ever bound
    with journal.locked():
        return _replay(journal, results)


def _replay(journal: Journal, results: list[dict]) -> list[dict]:
    for path, entry in journal.entries():
        if isinstance(entry, Exception) or not entry.stale():
            continue
        results.append(_restore_reported(entry, path, journal))  # start-up must go on
    return results


def _restore_reported(entry: JournalEntry, path: str, journal: Journal) -> dict:
    """:func:`restore_entry`, with a failure reported as a ``failed`` result, not raised."""
    try:
        return restore_entry(entry, journal=journal)
    except Exception as exc:
        return {"device": entry.device, "action": "failed", "note": str(exc), "journal": path,
                "exit_code": int(exit_code_for(exc))}


def restore_all(
    journal: Journal | None = None, *, device: str | None = None, force: bool = False
) -> list[dict]:
    """``pciauth restore``: undo every journaled binding (persistent and stale sessions).

    A session whose process still runs is skipped (it will restore itself) unless ``force``.
    Errors are reported per device in the result, not raised.
    """
    journal = journal or Journal()
    if not os.path.isdir(journal.directory):
        return []  # nothing was ever bound (and the lock would create the run directory)
    with journal.locked():  # not racing a start-up replay or a bind restoring the same entry
        return _restore_all(journal, device, force)


def _restore_all(journal: Journal, device: str | None, force: bool) -> list[dict]:
    results: list[dict] = []
    for path, entry in journal.entries():
        if isinstance(entry, Exception):
            results.append({"device": None, "action": "failed", "note": str(entry), "journal": path})
            continue
        if device is not None and entry.device != device:
            continue
        if entry.mode == "session" and entry.owner_alive() and not force:
            results.append(
                {
                    "device": entry.device,
                    "action": "skipped",
                    "driver": VFIO_DRIVER,
                    "note": f"held by running pciauth process {entry.pid} (--force to restore anyway)",
                }
            )
            continue
        results.append(_restore_reported(entry, path, journal))
    return results


def release_to_kernel(device, *, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Take a device off vfio-pci that pciauth did not journal: clear the override, unbind,
    and let the kernel probe whatever driver matches (``pciauth unbind`` without a journal)."""
    name, path = device.name, device.sysfs_path
    root = device_root(path)
    if current_driver(path) != VFIO_DRIVER:
        return {
            "device": name,
            "action": "none",
            "driver": current_driver(path),
            "note": "not bound to vfio-pci",
        }
    write_attr(os.path.join(path, "driver_override"), "\n", step="ClearDriverOverride", device=name)
    write_attr(os.path.join(path, "driver", "unbind"), name, step="UnbindVfio", device=name)
    if not wait_until(lambda: current_driver(path) is None, timeout):
        raise BindError(
            f"vfio-pci did not release {name}",
            device=name,
            step="UnbindVfio",
            hint="a process still holds the VFIO device (QEMU?): close it first",
        )
    write_attr(os.path.join(root, "bus", "pci", "drivers_probe"), name, step="DriversProbe", device=name)
    wait_until(lambda: current_driver(path) is not None, min(timeout, 0.5))
    return {"device": name, "action": "released", "driver": current_driver(path), "note": None}
