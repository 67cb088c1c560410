"""Where sysfs is, and small readers that turn a missing or odd file into None.

The root is injectable: a parameter, else ``$PCIAUTH_SYSFS_ROOT``, else ``/sys``. Tests build
fake trees (including hostile ones) and point pciauth at them.
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/sys"
ENV_ROOT = "PCIAUTH_SYSFS_ROOT"
#: Attribute files are small; never read more than this from one.
MAX_ATTR_BYTES = 4096


def sysfs_root(root: str | None = None) -> str:
    """The sysfs root in effect."""
    return root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT


def pci_devices_dir(root: str | None = None) -> str:
    return os.path.join(sysfs_root(root), "bus", "pci", "devices")


def read_text(path: str) -> str | None:
    """The stripped contents of a sysfs attribute, or None if missing or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ATTR_BYTES)
    except OSError:
        return None
    try:
        return data.decode("ascii", "replace").strip()
    except ValueError:
        return None


def read_int(path: str, base: int = 0) -> int | None:
    """An integer attribute (``0x1af4`` or ``3``), or None if missing or malformed."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def link_name(path: str) -> str | None:
    """The last component of a symlink's target (driver, iommu_group), or None."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def list_dir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def enumerate_pci_names(root: str | None = None) -> list[str]:
    """Names (BDFs) of every PCI function, from udev when it sees them, else from sysfs.

    libudev can be missing or blind in containers (and it knows only the real /sys), so the
    plain directory listing is the fallback and the only source for an injected root.
    """
    base = sysfs_root(root)
    names: list[str] = []
    if os.path.realpath(base) == DEFAULT_ROOT:
        try:
            import pyudev

            context = pyudev.Context()
            names = sorted(dev.sys_name for dev in context.list_devices(subsystem="pci"))
        except Exception:
            names = []
    listed = list_dir(pci_devices_dir(root))
    # udev may miss devices in a container; trust the union, sysfs being authoritative.
    return sorted(set(names) | set(listed)) if names else listed
