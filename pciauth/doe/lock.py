"""Keeping two drivers of one DOE mailbox apart.

Nothing in the kernel stops two userspace processes (or a process and a kernel driver) from
writing the same DOE registers at once; the loser sees BUSY or ERROR, or worse, a response
meant for the other one. pciauth therefore:

- takes an advisory lock per device (``fcntl.flock`` on ``<run dir>/doe-<device>.lock``, the run
  dir being ``$PCIAUTH_RUN_DIR`` or ``/run/pciauth``; :func:`pciauth.target.lock_target` moves an
  emulated device's lock to the per-user run directory when that fails, see
  :mod:`pciauth.rundir`); a second pciauth process waits for it up to a timeout, then fails with
  :class:`~pciauth.errors.DeviceBusy` naming the holder's pid;
- refuses (unless forced) to touch a mailbox the kernel may be using: a PCI/TSM ``connect``
  attribute that is non-empty, or a bound driver from :data:`DOE_DRIVERS`.
"""

from __future__ import annotations

import errno as errno_mod
import fcntl
import os
import re
import time

from pciauth.errors import DeviceBusy, HostNotReady, PermissionDeniedError
from pciauth.rundir import DEFAULT_RUN_DIR as DEFAULT_RUN_DIR
from pciauth.rundir import ENV_RUN_DIR, HINT, make_run_dir, run_dir

#: Bound drivers that use a DOE mailbox themselves, and what they use it for.
DOE_DRIVERS: dict[str, str] = {
    "cxl_pci": "reads CDAT tables through DOE",
    "cxl_port": "reads CDAT tables through DOE",
    "cxl_mem": "reads CDAT tables through DOE",
    "pci_tsm": "drives CMA/SPDM and IDE key programming (PCI/TSM)",
    "tsm": "drives CMA/SPDM and IDE key programming (PCI/TSM)",
}


def lock_path(device_name: str, directory: str | None = None) -> str:
    """``<directory>/doe-<device>.lock``; the directory defaults to the host-wide run directory."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", device_name)
    return os.path.join(directory or run_dir(), f"doe-{safe}.lock")


class MailboxLock:
    """An advisory, per-device lock held for the life of a DOE session.

    ``with MailboxLock("0000:01:00.0", timeout=5):`` waits up to ``timeout`` seconds (0: do not
    wait) and raises :class:`DeviceBusy` with the holder's pid when it cannot get the lock.
    ``directory`` overrides the run directory the lock file goes to.
    """

    def __init__(
        self, device_name: str, *, timeout: float = 10.0, poll: float = 0.02, directory: str | None = None
    ) -> None:
        self.device_name = device_name
        self.path = lock_path(device_name, directory)
        self.timeout = timeout
        self.poll = poll
        self.fd = -1
        self._depth = 0

    def acquire(self) -> MailboxLock:
        if self.held:
            return self  # flock is per open file: a second open would wait for ourselves
        directory = os.path.dirname(self.path)
        try:
            make_run_dir(directory)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            cls = PermissionDeniedError if e.errno in (errno_mod.EACCES, errno_mod.EPERM, errno_mod.EROFS) \
                else HostNotReady
            raise cls(
                f"cannot create the mailbox lock {self.path}: {e.strerror}",
                errno=e.errno,
                path=self.path,
                device=self.device_name,
                hint=HINT,
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno_mod.EWOULDBLOCK, errno_mod.EAGAIN):
                    os.close(fd)  # e.g. ENOLCK: a run directory on a file system without locks
                    raise HostNotReady(
                        f"cannot lock the mailbox lock {self.path}: {e.strerror}",
                        errno=e.errno, path=self.path, device=self.device_name,
                        hint=f"set {ENV_RUN_DIR} to a local directory (tmpfs or disk) that supports flock",
                    ) from None
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                who = f"pid {holder}" if holder else "another process"
                raise DeviceBusy(
                    f"the DOE mailbox of {self.device_name} is in use by {who} "
                    f"(waited {self.timeout:g} s for {self.path})",
                    device=self.device_name,
                    path=self.path,
                    hint="wait for it to finish, or raise --timeout",
                )
            time.sleep(self.poll)
        try:  # who holds it, for the DeviceBusy message of the next process (best effort)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock is held all the same, only the holder's pid is missing
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def __enter__(self) -> MailboxLock:
        if not self.held:
            self.acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth <= 0:
            self._depth = 0
            self.release()


def _read_holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def kernel_users(sysfs_path: str) -> list[str]:
    """Reasons the kernel may be using this device's DOE mailboxes (empty: none seen).

    ``sysfs_path`` is the device's directory (``/sys/bus/pci/devices/<bdf>``).
    """
    reasons: list[str] = []
    connect = os.path.join(sysfs_path, "tsm", "connect")
    try:
        with open(connect) as f:
            value = f.read().strip()
    except OSError:
        value = ""
    if value and value not in ("0", "none"):
        reasons.append(f"the PCI/TSM security manager is connected ({connect} = {value!r})")
    try:
        driver = os.path.basename(os.readlink(os.path.join(sysfs_path, "driver")))
    except OSError:
        driver = None
    if driver in DOE_DRIVERS:
        reasons.append(f"driver {driver} is bound and {DOE_DRIVERS[driver]}")
    return reasons


def refuse_if_kernel_uses(sysfs_path: str, device_name: str, *, force: bool) -> list[str]:
    """Raise :class:`DeviceBusy` when the kernel may use the mailbox, unless ``force``.

    Returns the reasons (for a warning when forced).
    """
    reasons = kernel_users(sysfs_path)
    if reasons and not force:
        raise DeviceBusy(
            f"{device_name}: the kernel may be using the DOE mailbox: " + "; ".join(reasons),
            device=device_name,
            hint="--force drives the mailbox anyway (the kernel's exchange may fail)",
        )
    return reasons
