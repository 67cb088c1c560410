"""The binding journal: what pciauth changed, so a crash cannot leave a device on vfio-pci.

Before pciauth touches a device's driver it writes one JSON file per device under the
run directory (``$PCIAUTH_RUN_DIR``, else ``/run/pciauth``; see :mod:`pciauth.rundir`): the
original driver and driver_override, the sysfs root, the owning process and the mode. The file
goes away when the driver is restored. The journal never moves to a per-user directory: the next
pciauth start (as root) must find it, and without root no real device can be bound anyway.

- ``mode = "session"``: a command (``pciauth run``, ``bind --hold``, the Python API)
  holds the device while it runs. If that process dies without restoring (``kill -9``,
  a crash, a power cut of the tool), the next pciauth start replays the entry.
- ``mode = "persistent"``: ``pciauth bind`` left the device on vfio-pci on purpose;
  only ``pciauth unbind`` or ``pciauth restore`` undo it.

A process is identified by pid and its start time (``/proc/<pid>/stat`` field 22), so a
recycled pid does not keep a dead session's entry alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from pciauth.errors import MalformedData, PermissionDeniedError
from pciauth.rundir import DEFAULT_RUN_DIR as DEFAULT_RUN_DIR
from pciauth.rundir import ENV_RUN_DIR
from pciauth.rundir import run_dir as run_dir

PREFIX = "bind-"
SUFFIX = ".json"
#: A journal entry is tiny; never read more than this.
MAX_ENTRY_BYTES = 64 * 1024
_BDF = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read(4096)
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
    tail = data[data.rfind(b")") + 2 :].split()
    try:
        return int(tail[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start_time: int | None) -> bool:
    """True when ``pid`` runs and is the same process (same start time) as recorded."""
    if pid <= 0:
        return False
    now = process_start_time(pid)
    if now is None:
        return False
    return start_time is None or now == start_time


@dataclass
class JournalEntry:
    """One device pciauth moved to vfio-pci."""

    device: str
    sysfs_root: str
    original_driver: str | None
    original_override: str | None
    mode: str = "session"
    pid: int = field(default_factory=os.getpid)
    pid_start: int | None = None
    created: float = field(default_factory=time.time)
    version: int = 1

    def __post_init__(self) -> None:
        if self.pid_start is None and self.pid == os.getpid():
            self.pid_start = process_start_time(self.pid)

    def owner_alive(self) -> bool:
        return process_alive(self.pid, self.pid_start)

    def stale(self) -> bool:
        """A session whose process is gone: the next start must restore it."""
        return self.mode == "session" and not self.owner_alive()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, path: str) -> JournalEntry:
        if not isinstance(data, dict):
            raise MalformedData(f"journal entry {path} is not a JSON object", field="entry", path=path)

        def text(key: str, optional: bool = False) -> str | None:
            value = data.get(key)
            if value is None and optional:
                return None
            if not isinstance(value, str) or len(value) > 4096:
                raise MalformedData(f"journal entry {path}: bad {key!r}", field=key, path=path)
            return value

        device = text("device")
        if not _BDF.match(device or ""):
            raise MalformedData(f"journal entry {path}: bad device {device!r}", field="device", path=path)
        mode = text("mode")
        if mode not in ("session", "persistent"):
            raise MalformedData(f"journal entry {path}: bad mode {mode!r}", field="mode", path=path)
        pid = data.get("pid")
        pid_start = data.get("pid_start")
        if not isinstance(pid, int) or (pid_start is not None and not isinstance(pid_start, int)):
            raise MalformedData(f"journal entry {path}: bad pid", field="pid", path=path)
        driver = text("original_driver", optional=True)
        if driver is not None and ("/" in driver or driver in (".", "..")):
            raise MalformedData(
                f"journal entry {path}: bad driver {driver!r}", field="original_driver", path=path
            )
        created = data.get("created", 0.0)
        if not isinstance(created, (int, float)) or not -1e18 < created < 1e18:
            created = 0.0  # informational only: never a reason to leave a device unrestored
        return cls(
            device=device.lower(),  # type: ignore[union-attr]
            sysfs_root=text("sysfs_root") or "/sys",
            original_driver=driver,
            original_override=text("original_override", optional=True),
            mode=mode,  # type: ignore[arg-type]
            pid=pid,
            pid_start=pid_start,
            created=float(created),
        )


class Journal:
    """The journal directory. Writes are atomic (write a temporary file, then rename)."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or run_dir()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the journal's lock (``bind.lock``): replay, restore and new entries do not race.

        Without a writable run directory there is no journal to protect: no lock then.
        """
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            fd = os.open(
                os.path.join(self.directory, "bind.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def path_for(self, device: str) -> str:
        if not _BDF.match(device):
            raise MalformedData(f"not a full PCI address: {device!r}", field="device")
        return os.path.join(self.directory, f"{PREFIX}{device.lower()}{SUFFIX}")

    def write(self, entry: JournalEntry) -> str:
        path = self.path_for(entry.device)
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "w") as f:
                json.dump(entry.to_dict(), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise PermissionDeniedError(
                f"cannot write the binding journal {path}: {e.strerror}",
                errno=e.errno,
                path=path,
                device=entry.device,
                hint=f"run as root, or set {ENV_RUN_DIR} to a writable directory; without a journal "
                "pciauth could not restore the driver after a crash, so it does not bind",
            ) from None
        return path

    def read(self, device: str) -> JournalEntry | None:
        path = self.path_for(device)
        return self._load(path)

    def _load(self, path: str) -> JournalEntry | None:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise PermissionDeniedError(
                f"cannot read the binding journal {path}: {e.strerror}", errno=e.errno, path=path
            ) from None
        if len(raw) > MAX_ENTRY_BYTES:
            raise MalformedData(
                f"journal entry {path} is larger than {MAX_ENTRY_BYTES} bytes", field="entry", path=path
            )
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: also 4300+ digit ints
            raise MalformedData(
                f"journal entry {path} is not valid JSON: {e}", field="entry", path=path
            ) from None
        return JournalEntry.from_dict(data, path)

    def remove(self, device: str) -> None:
        try:
            os.unlink(self.path_for(device))
        except FileNotFoundError:
            pass

    def names(self) -> list[str]:
        """The entry file names, sorted; one listdir, no file read (cheap enough for start-up)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(PREFIX) and n.endswith(SUFFIX))

    def entries(self) -> list[tuple[str, JournalEntry | Exception]]:
        """Every entry (path, entry), or (path, error) for an unreadable one; sorted by path."""
        out: list[tuple[str, JournalEntry | Exception]] = []
        for name in self.names():
            path = os.path.join(self.directory, name)
            try:
                entry = self._load(path)
            except (MalformedData, PermissionDeniedError) as e:
                out.append((path, e))
                continue
            if entry is not None:
                out.append((path, entry))
        return out
