"""Where pciauth keeps its run-time state: the one rule for root and other users.

pciauth writes three kinds of small files while it runs:

- the binding journal (``bind-<bdf>.json``, ``bind.lock``, :mod:`pciauth.vfio.journal`): which
  devices it moved to vfio-pci, so the next pciauth start can restore a crashed run's drivers;
- DOE mailbox locks (``doe-<device>.lock``, :mod:`pciauth.doe.lock`): two processes never drive
  one mailbox at once;
- recorded IOVA thresholds (``threshold-<device>.json``, :mod:`pciauth.dma.threshold`): X set by
  ``pciauth iova --threshold`` for later ``pciauth dma`` runs on hosts without a platform knob.

The rule:

1. ``$PCIAUTH_RUN_DIR``, when set, holds all of them. There is no fallback: the user chose the
   directory, so one that cannot be used is an error that names it.
2. Otherwise the host-wide run directory ``/run/pciauth`` (a tmpfs, cleared at boot like the
   bindings and locks it describes). The binding journal and the mailbox locks of real devices
   always live there: other pciauth processes (a second user's run on the same mailbox, the next
   ``sudo pciauth`` that replays the journal, a non-root ``pciauth doctor``) must find them. When
   it cannot be written the command fails, saying to run as root or set ``PCIAUTH_RUN_DIR``.
3. State that only the caller's own runs read, the emulated device's mailbox locks and recorded
   thresholds, goes to the per-user run directory instead when the caller cannot use
   ``/run/pciauth`` (the emulated device needs no root): ``$XDG_RUNTIME_DIR/pciauth``, else
   ``/tmp/pciauth-<uid>``. A threshold record must be found again by the next run, so for it the
   choice is made up front (:func:`own_run_dir`: a non-root user who cannot write
   ``/run/pciauth``); a lock is tried in ``/run/pciauth`` first and moves only when that fails.

The per-user directory is created mode 0700, and pciauth uses it only when it is a real
directory (not a symlink) owned by the caller that no other user can write: another local user
could otherwise create ``/tmp/pciauth-<uid>`` first and plant files or symlinks in it.
"""

from __future__ import annotations

import os
import stat

from pciauth.errors import PermissionDeniedError

ENV_RUN_DIR = "PCIAUTH_RUN_DIR"
DEFAULT_RUN_DIR = "/run/pciauth"
#: Where the per-user directory goes without ``$XDG_RUNTIME_DIR`` (a name, so tests can move it).
TMP_DIR = "/tmp"
#: The hint of every "cannot write the run directory" error.
HINT = f"run as root, or set {ENV_RUN_DIR} to a writable directory"


def env_run_dir() -> str | None:
    """``$PCIAUTH_RUN_DIR`` when set and non-empty, else None (rule 1)."""
    return os.environ.get(ENV_RUN_DIR) or None


def run_dir() -> str:
    """The host-wide run directory: ``$PCIAUTH_RUN_DIR``, else ``/run/pciauth`` (rules 1 and 2)."""
    return env_run_dir() or DEFAULT_RUN_DIR


def user_run_dir() -> str:
    """The caller's per-user run directory: ``$XDG_RUNTIME_DIR/pciauth``, else ``/tmp/pciauth-<uid>``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "pciauth")
    return os.path.join(TMP_DIR, f"pciauth-{os.getuid()}")


def own_run_dir() -> str:
    """Where state of the caller's own runs goes (rule 3): ``$PCIAUTH_RUN_DIR``; else
    ``/run/pciauth`` for root or a user who can write it; else :func:`user_run_dir`."""
    env = env_run_dir()
    if env:
        return env
    if os.geteuid() == 0 or os.access(DEFAULT_RUN_DIR, os.W_OK):
        return DEFAULT_RUN_DIR
    return user_run_dir()


def _is_user_dir(path: str) -> bool:
    return os.path.normpath(path) == os.path.normpath(user_run_dir())


def _refuse(path: str, st: os.stat_result) -> None:
    """Raise when ``st`` (of the per-user directory ``path``) is not the caller's own directory."""
    uid = os.getuid()
    problem = None
    if not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory" + (" (a symlink)" if stat.S_ISLNK(st.st_mode) else "")
    elif st.st_uid != uid:
        problem = f"belongs to uid {st.st_uid}, not {uid}"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        raise PermissionDeniedError(
            f"the per-user run directory {path} {problem}",
            path=path,
            hint=f"remove it if it is not yours, or set {ENV_RUN_DIR} to a directory of your own",
        )


def check_user_dir(path: str) -> None:
    """Refuse the per-user directory ``path`` when it exists but is not the caller's own.

    Other directories (``$PCIAUTH_RUN_DIR``, ``/run/pciauth``) are not checked: the user or root
    chose them.
    """
    if not _is_user_dir(path):
        return
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise PermissionDeniedError(
            f"cannot check the run directory {path}: {e.strerror}", errno=e.errno, path=path, hint=HINT
        ) from None
    _refuse(path, st)


def open_run_file(path: str) -> int:
    """A read-only descriptor of ``path``, a file in a run directory.

    In the per-user directory the file is opened through a descriptor of the directory, checked
    (:func:`check_user_dir`'s rules) after it was opened: the directory checked is the one read
    from, even when it did not exist a moment before (another user could create it between a
    check by path and the open). ``OSError`` (``FileNotFoundError`` when the directory or the file
    is missing) is the caller's to report.
    """
    directory, name = os.path.split(path)
    if not _is_user_dir(directory):
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except NotADirectoryError:  # a symlink or a file: say which
        check_user_dir(directory)
        raise
    try:
        _refuse(directory, os.fstat(dir_fd))
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def make_run_dir(path: str) -> None:
    """Create ``path`` if missing: mode 0755, or 0700 for the per-user directory, which must then
    pass :func:`check_user_dir`. ``OSError`` is the caller's to report (it knows what it wanted
    to write there)."""
    if _is_user_dir(path):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        check_user_dir(path)
    else:
        os.makedirs(path, mode=0o755, exist_ok=True)
