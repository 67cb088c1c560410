"""Run one VFIO/iommufd system call and name its failure after the step.

Every ioctl and open of the IOMMU backends and of ``pciauth.vfio.device`` goes through
:func:`call` / :func:`open_node`, which turn an :class:`OSError` into an error whose
``step`` says which call failed (``GroupSetContainer``, ``IoasMap``, ...), with the
errno and a hint that says what to do. The hints come from one table below.
"""

from __future__ import annotations

import errno as E
import os
import resource
from collections.abc import Callable
from typing import Any

from pciauth.errors import HostNotReady, IommuError, PermissionDeniedError, RefusedError, VfioError
from pciauth.uapi import ioctls
from pciauth.uapi import sys as usys

DOCTOR = "run `pciauth doctor` to see what the host lacks"

#: Steps that pin memory: ENOMEM/EPERM there usually means RLIMIT_MEMLOCK.
MAP_STEPS = frozenset({"IommuDmaMap", "IoasMap"})
#: Steps where EPERM means unsafe interrupts were refused (no interrupt remapping).
ATTACH_STEPS = frozenset({"DeviceAttachIommufdPt", "DeviceBindIommufd", "GroupSetContainer", "SetIommu"})


def format_size(n: int) -> str:
    """Bytes as a short human string (``64 MiB``)."""
    if n >= (1 << 62):
        return "unlimited"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= (1 << shift) and n % (1 << (shift - 4)) == 0:
            value = n / (1 << shift)
            return f"{value:g} {unit}"
    return f"{n} bytes"


def memlock_hint(pinned: int = 0, needed: int = 0) -> str:
    """What to say when pinning DMA memory fails: the limit and what this map needs."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else format_size(soft)
    parts = [f"RLIMIT_MEMLOCK is {limit}"]
    if needed:
        parts.append(
            f"pciauth has {format_size(pinned)} pinned and this map needs {format_size(needed)} more"
        )
    return (
        "; ".join(parts) + ": pinned DMA memory counts against it; raise it with `ulimit -l unlimited` "
        "(or LimitMEMLOCK= in a systemd unit) or run as root"
    )


def virtio_iommu_present(root: str | None = None) -> bool:
    """True when a virtio-iommu drives the IOMMU (no interrupt remapping on x86)."""
    from pciauth.pci.sysfs import sysfs_root

    base = os.path.join(sysfs_root(root), "bus", "virtio", "drivers", "virtio_iommu")
    try:
        return any(name.startswith("virtio") for name in os.listdir(base))
    except OSError:
        return False


def unsafe_interrupts_hint() -> str:
    if virtio_iommu_present():
        return (
            "virtio-iommu has no interrupt remapping: boot with "
            "`iommufd.allow_unsafe_interrupts=1 vfio_iommu_type1.allow_unsafe_interrupts=1` "
            "(or set those module parameters) on a test machine"
        )
    return "interrupt remapping may be missing or the device is owned elsewhere; " + DOCTOR


#: Missing device nodes, per opening step.
MISSING_NODE_HINTS = {
    "OpenContainer": "no /dev/vfio/vfio: VFIO is not loaded (`sudo modprobe vfio-pci`); " + DOCTOR,
    "OpenIommufd": "no /dev/iommu: this kernel has no iommufd loaded; try `--iommu legacy`; " + DOCTOR,
    "OpenGroup": "no /dev/vfio/<group>: is the device bound to vfio-pci (`pciauth bind`)? " + DOCTOR,
    "OpenDeviceCdev": "no VFIO cdev: is the device bound to vfio-pci (`pciauth bind`)? " + DOCTOR,
}


def hint_for(step: str, err: int, *, pinned: int = 0, needed: int = 0) -> str | None:
    """The one table of hints: (step kind, errno) -> what to do."""
    if err in (E.ENOENT, E.ENODEV, E.ENXIO) and step in MISSING_NODE_HINTS:
        return MISSING_NODE_HINTS[step]
    if step in MAP_STEPS and err in (E.ENOMEM, E.EPERM):
        return memlock_hint(pinned, needed)
    if step in ATTACH_STEPS and err == E.EPERM:
        return unsafe_interrupts_hint()
    if err in (E.ENOENT, E.ENODEV, E.ENXIO):
        return "is the device bound to vfio-pci (`pciauth bind`)? " + DOCTOR
    if err == E.EBUSY:
        return "another process (QEMU, another pciauth) holds this VFIO device or group"
    if err in (E.EACCES, E.EPERM):
        return "run as root (sudo)"
    if err == E.ENOTTY:
        return (
            "the kernel does not know this ioctl (too old for this backend): try `--iommu legacy`; " + DOCTOR
        )
    if err == E.E2BIG:
        return "the kernel refused fields it does not know: this kernel is older than pciauth expects"
    return None


#: Steps on the VFIO device itself (not the IOMMU): they raise VfioError.
DEVICE_STEPS = frozenset({"GroupGetDeviceFd", "DeviceGetInfo", "DeviceGetRegionInfo", "DeviceReset"})


def _error_class(step: str, err: int) -> type[Exception]:
    if err == E.EACCES or (err == E.EPERM and step not in MAP_STEPS | ATTACH_STEPS):
        return PermissionDeniedError
    if err in (E.ENOENT, E.ENODEV, E.ENXIO) and step.startswith("Open"):
        return HostNotReady
    if err == E.EBUSY and step.startswith("Open"):
        return RefusedError
    return VfioError if step in DEVICE_STEPS else IommuError


def step_error(
    step: str,
    exc: OSError,
    *,
    device: str | None = None,
    path: str | None = None,
    detail: str = "",
    pinned: int = 0,
    needed: int = 0,
) -> Exception:
    """The pciauth error for a failed step."""
    err = exc.errno or 0
    name = E.errorcode.get(err, str(err))
    what = f"{step}{' ' + detail if detail else ''} failed: {os.strerror(err) if err else exc} ({name})"
    hint = hint_for(step, err, pinned=pinned, needed=needed)
    cls = _error_class(step, err)
    kwargs: dict[str, Any] = {"errno": err or None, "device": device, "path": path, "hint": hint}
    if issubclass(cls, VfioError):
        kwargs["step"] = step
        return cls(what, **kwargs)
    error = cls(what, **kwargs)
    error.step = step  # type: ignore[attr-defined]
    return error


def call(step: str, fd: int, name: str, arg: Any = 0, *, device: str | None = None, **ctx: Any) -> int:
    """``ioctl(fd, ioctls.<name>, arg)``; a failure raises the step's error."""
    try:
        return usys.ioctl(fd, ioctls.IOCTLS[name], arg)
    except OSError as exc:
        raise step_error(step, exc, device=device, **ctx) from None


def open_node(step: str, path: str, *, device: str | None = None, flags: int = os.O_RDWR) -> int:
    """Open a device node (``/dev/iommu``, ``/dev/vfio/...``); a failure raises the step's error."""
    try:
        return usys.open(path, flags)
    except OSError as exc:
        raise step_error(step, exc, device=device, path=path) from None


class UndoStack:
    """Things to release, run newest first; every one runs even when one fails."""

    def __init__(self) -> None:
        self._items: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self._items.append((what, action))

    def __len__(self) -> int:
        return len(self._items)

    def unwind(self) -> None:
        first: BaseException | None = None
        while self._items:
            _what, action = self._items.pop()
            try:
                action()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first
