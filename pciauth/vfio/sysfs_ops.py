"""Writing the PCI driver-binding attributes of sysfs, and waiting for the result.

The attributes (FACTS.md section 1): ``<dev>/driver_override``, ``<dev>/driver/unbind``,
``<root>/bus/pci/drivers_probe`` and ``<root>/bus/pci/drivers/<drv>/bind``. Each write
names its step in errors. Waiting uses a pyudev monitor on the real ``/sys`` (wakes up
as soon as udev reports the VFIO node) with polling as the fallback and for injected
sysfs roots.
"""

from __future__ import annotations

import errno as E
import os
import time
from collections.abc import Callable

from pciauth.errors import BindError, PermissionDeniedError
from pciauth.pci import sysfs

POLL_INTERVAL = 0.02


def device_root(sysfs_path: str) -> str:
    """The sysfs root of ``<root>/bus/pci/devices/<bdf>`` (else the configured root)."""
    parts = os.path.normpath(sysfs_path).split(os.sep)
    if len(parts) >= 4 and parts[-4:-1] == ["bus", "pci", "devices"]:
        return os.sep.join(parts[:-4]) or os.sep
    return sysfs.sysfs_root()


def write_attr(path: str, text: str, *, step: str, device: str | None = None) -> None:
    """Write ``text`` to a sysfs attribute; a failure raises an error named ``step``."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise _error(step, path, e, device) from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise _error(step, path, e, device) from None
    finally:
        os.close(fd)


def _error(step: str, path: str, e: OSError, device: str | None) -> Exception:
    what = f"{step}: writing {path} failed: {e.strerror} ({E.errorcode.get(e.errno or 0, e.errno)})"
    if e.errno in (E.EACCES, E.EPERM, E.EROFS):
        return PermissionDeniedError(what, errno=e.errno, path=path, device=device, hint="run as root (sudo)")
    hint = None
    if e.errno == E.ENOENT:
        hint = "the kernel lacks this attribute (driver_override needs Linux >= 3.16); see `pciauth doctor`"
    elif e.errno == E.ENODEV:
        hint = "the driver refused the device (wrong driver, or vfio-pci not loaded: `modprobe vfio-pci`)"
    err = BindError(what, errno=e.errno, path=path, device=device, hint=hint, step=step)
    return err


def current_driver(sysfs_path: str) -> str | None:
    return sysfs.link_name(os.path.join(sysfs_path, "driver"))


def wait_until(predicate: Callable[[], bool], timeout: float, *, use_udev: bool = False) -> bool:
    """Wait until ``predicate()`` is true or ``timeout`` seconds pass; returns the last value.

    With ``use_udev`` a pyudev monitor on the vfio subsystems wakes the wait early;
    without it (or when netlink is unavailable, as in some containers) it polls.
    """
    deadline = time.monotonic() + timeout
    if predicate():
        return True
    monitor = _udev_monitor() if use_udev else None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return predicate()
            if monitor is not None:
                try:
                    monitor.poll(timeout=min(POLL_INTERVAL * 5, remaining))
                except Exception:
                    monitor = None
            else:
                time.sleep(min(POLL_INTERVAL, remaining))
            if predicate():
                return True
    finally:
        if monitor is not None:
            try:
                monitor.stop()  # pyudev >= 0.24
            except Exception:
                pass


def _udev_monitor():
    try:
        import pyudev

        monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        monitor.filter_by("vfio")
        monitor.filter_by("vfio-dev")
        monitor.start()
        return monitor
    except Exception:
        return None
