"""Where the private IOVA threshold X lives: a platform knob, or pciauth itself.

On an AMD SEV-TIO guest the TSM guest driver exposes the device table entry's vTOM as the module
parameter ``tsm_vtom`` (``/sys/module/<driver>/parameters/tsm_vtom``). There X is *programmed*:
the hardware then enforces it. Early patch revisions take the raw 31-bit field (2 MiB units),
later ones bytes; :func:`find_knob` guesses from the current value (a value beyond the 31-bit field
or a non-zero multiple of 2 MiB means bytes) and ``unit=``/``$PCIAUTH_TSM_VTOM_UNIT``
(``units``/``bytes``) overrides the guess. There is no upstream UAPI for it today.

Everywhere else X is *enforced by pciauth*: the allocator never puts a mapping in the wrong
window, and the emulated IOMMU faults like hardware would. The value is kept per device in a small
JSON file under the run directory so that ``pciauth iova DEV --threshold X`` and a later
``pciauth dma DEV`` agree: ``$PCIAUTH_RUN_DIR``, else ``/run/pciauth``, else (a non-root user who
cannot write it, e.g. with the emulated device) the per-user run directory; the rule is
:func:`pciauth.rundir.own_run_dir`. Command output always says which of the two applies.
"""

from __future__ import annotations

import errno as errno_mod
import glob
import json
import os
import re

from pciauth.dma.iova import THRESHOLD_ALL_ONES, THRESHOLD_UNIT, Threshold
from pciauth.errors import DeviceError, HostNotReady, MalformedData, PermissionDeniedError, UsageError
from pciauth.rundir import DEFAULT_RUN_DIR as DEFAULT_RUN_DIR
from pciauth.rundir import HINT, make_run_dir, open_run_file
from pciauth.rundir import own_run_dir as run_dir

KNOB_NAME = "tsm_vtom"
_MAX_KNOB_TEXT = 64


def _sysfs_root(root: str | None) -> str:
    return root or os.environ.get("PCIAUTH_SYSFS_ROOT") or "/sys"


class PlatformKnob:
    """The ``tsm_vtom`` module parameter; ``unit`` is ``"units"`` (2 MiB) or ``"bytes"``."""

    def __init__(self, path: str, unit: str, unit_reason: str) -> None:
        if unit not in ("units", "bytes"):
            raise UsageError(f"tsm_vtom unit must be 'units' or 'bytes', not {unit!r}")
        self.path = path
        self.unit = unit
        self.unit_reason = unit_reason

    def read_raw(self) -> int:
        return read_knob_value(self.path)

    def read(self) -> Threshold:
        raw = self.read_raw()
        if self.unit == "units":
            return Threshold(raw & THRESHOLD_ALL_ONES)
        units = raw // THRESHOLD_UNIT
        return Threshold(min(units, THRESHOLD_ALL_ONES))

    def write(self, threshold: Threshold) -> None:
        value = threshold.units if self.unit == "units" else threshold.units * THRESHOLD_UNIT
        try:
            with open(self.path, "w", encoding="ascii") as f:
                f.write(f"{value}\n")
        except PermissionError as e:
            raise PermissionDeniedError(
                f"cannot write {self.path}", errno=e.errno, path=self.path, hint="run as root (sudo)"
            ) from None
        except OSError as e:
            raise DeviceError(
                f"writing {value} to {self.path} failed: {e.strerror}", errno=e.errno, path=self.path,
                hint="the TSM driver refused the value (is a device bound or locked?)",
            ) from None
        if self.read() != threshold:
            raise DeviceError(f"{self.path} reads back {self.read_raw()} after writing {value}", path=self.path)

    def describe(self) -> str:
        return f"{KNOB_NAME} at {self.path}, {'2 MiB units' if self.unit == 'units' else 'bytes'}"

    def to_dict(self) -> dict:
        return {"path": self.path, "unit": self.unit, "unit_reason": self.unit_reason}


def read_knob_value(path: str) -> int:
    """The integer in a module parameter file; malformed content is a :class:`MalformedData`."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(_MAX_KNOB_TEXT + 1).strip()
    except OSError as e:
        raise DeviceError(f"cannot read {path}: {e.strerror}", errno=e.errno, path=path) from None
    if len(text) > _MAX_KNOB_TEXT or not re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)", text):
        raise MalformedData(f"{path} holds {text[:20]!r}, not a number", field=KNOB_NAME, path=path)
    return int(text, 0)


def guess_unit(value: int) -> tuple[str, str]:
    """(unit, why) for a ``tsm_vtom`` value read from the kernel."""
    if value > THRESHOLD_ALL_ONES:
        return "bytes", "current value is beyond the 31-bit field"
    if value and value % THRESHOLD_UNIT == 0:
        return "bytes", "current value is a multiple of 2 MiB"
    return "units", "current value fits the 31-bit field"


def find_knob(sysfs_root: str | None = None, unit: str | None = None) -> PlatformKnob | None:
    """The platform's ``tsm_vtom`` parameter, or None when this host has none."""
    paths = sorted(glob.glob(os.path.join(_sysfs_root(sysfs_root), "module", "*", "parameters", KNOB_NAME)))
    if not paths:
        return None
    path = paths[0]
    unit = unit or os.environ.get("PCIAUTH_TSM_VTOM_UNIT") or "auto"
    if unit == "auto":
        unit, why = guess_unit(read_knob_value(path))
    else:
        why = "chosen by the user"
    return PlatformKnob(path, unit, why)


# ---------------------------------------------------------------------------------------------
# pciauth's own record of X, for hosts without a knob


# run_dir() (imported above) is pciauth.rundir.own_run_dir: ``$PCIAUTH_RUN_DIR``, else
# ``/run/pciauth`` for root; other users (the emulated device needs no root) who cannot write it
# fall back to ``$XDG_RUNTIME_DIR/pciauth`` or ``/tmp/pciauth-<uid>``.


def _state_path(device: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device)
    return os.path.join(run_dir(), f"threshold-{safe}.json")


def load_threshold(device: str) -> Threshold | None:
    """The X recorded for ``device`` by an earlier ``pciauth iova --threshold``, or None."""
    path = _state_path(device)
    try:
        # through the per-user directory as checked once opened: never X from one another user planted
        with open(open_run_file(path), encoding="utf-8") as f:
            data = json.loads(f.read(4096))
        units = data["units"]
        if not isinstance(units, int):
            raise TypeError
        return Threshold(units)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        raise MalformedData(
            f"{path} is not a pciauth threshold record", field="units", path=path,
            hint="delete it, then set the threshold again",
        ) from None


def save_threshold(device: str, threshold: Threshold) -> str:
    path = _state_path(device)
    try:
        make_run_dir(os.path.dirname(path))
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"device": device, **threshold.to_dict()}, f)
        os.replace(tmp, path)
    except OSError as e:  # not only EACCES: a read-only /run, a file where the directory should be
        cls = PermissionDeniedError if e.errno in (errno_mod.EACCES, errno_mod.EPERM, errno_mod.EROFS) \
            else HostNotReady
        raise cls(
            f"cannot record the threshold in {path}: {e.strerror}", errno=e.errno, path=path, hint=HINT,
        ) from None
    return path


def clear_threshold(device: str) -> None:
    try:
        os.unlink(_state_path(device))
    except FileNotFoundError:
        pass
