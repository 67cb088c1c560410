"""Is it safe to take this device away from its driver?

pciauth refuses, unless ``--force``, to unbind a device that is in use:

- a block device below it is mounted, used as swap, or held by a mounted device-mapper
  or md device (an NVMe with the root file system on it);
- a network interface below it is up (the link you are logged in through);
- it is the boot VGA device (the console).

It also names the members of the IOMMU group that keep the group from being viable
(VFIO needs every member bound to vfio-pci or to no driver), and it does not silently
clobber a persistent ``driverctl`` override.

Paths are injectable for tests: the sysfs root (``pciauth.pci.sysfs.sysfs_root``),
``$PCIAUTH_PROC_ROOT`` (``/proc``) and ``$PCIAUTH_DRIVERCTL_DIR`` (``/etc/driverctl.d``).
"""

from __future__ import annotations

import os

from pciauth.pci import sysfs

#: Drivers that leave an IOMMU group viable for VFIO.
VIABLE_DRIVERS = frozenset({"vfio-pci", "pci-stub", "pcieport"})
IFF_UP = 0x1
#: At most this many block devices are visited when following holders (dm on md on a partition...).
MAX_HOLDERS = 256


def proc_root() -> str:
    return os.environ.get("PCIAUTH_PROC_ROOT") or "/proc"


def driverctl_dir() -> str:
    return os.environ.get("PCIAUTH_DRIVERCTL_DIR") or "/etc/driverctl.d"


def _real(path: str) -> str:
    return os.path.realpath(path)


def _mounted_devnums() -> dict[str, str]:
    """``major:minor`` -> mount point, from mountinfo; swap devices by name under ``swap:``."""
    mounts: dict[str, str] = {}
    try:
        with open(os.path.join(proc_root(), "self", "mountinfo"), encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and ":" in parts[2]:
                    mounts.setdefault(parts[2], parts[4])
    except OSError:
        pass
    try:
        with open(os.path.join(proc_root(), "swaps"), encoding="utf-8", errors="replace") as f:
            for line in f.readlines()[1:]:
                name = line.split()[0] if line.split() else ""
                mounts.setdefault("swap:" + os.path.basename(name), "[swap]")
    except OSError:
        pass
    return mounts


def block_devices_below(device_path: str, root: str | None = None) -> list[str]:
    """Names of block devices (and partitions) whose sysfs directory lies below the device."""
    below: list[str] = []
    base = _real(device_path) + os.sep
    class_block = os.path.join(sysfs.sysfs_root(root), "class", "block")
    for name in sysfs.list_dir(class_block):
        if _real(os.path.join(class_block, name)).startswith(base):
            below.append(name)
    return below


def _block_users(
    name: str, class_block: str, mounts: dict[str, str], seen: set[str] | None = None
) -> list[str]:
    """Why block device ``name`` is in use: mount points, swap, or users of its holders."""
    seen = set() if seen is None else seen
    if name in seen or len(seen) >= MAX_HOLDERS:
        return []
    seen.add(name)
    used: list[str] = []
    devnum = sysfs.read_text(os.path.join(class_block, name, "dev"))
    if devnum and devnum in mounts:
        used.append(f"{name} is mounted on {mounts[devnum]}")
    if "swap:" + name in mounts:
        used.append(f"{name} is used as swap")
    for holder in sysfs.list_dir(os.path.join(class_block, name, "holders")):
        for why in _block_users(holder, class_block, mounts, seen):
            used.append(f"{name} is held by {why}")
    return used


def in_use_reasons(device, root: str | None = None) -> list[str]:
    """Why unbinding ``device`` (a ``PciDevice``) would hurt; empty when it looks unused."""
    reasons: list[str] = []
    path = device.sysfs_path
    if sysfs.read_text(os.path.join(path, "boot_vga")) == "1":
        reasons.append("it is the boot VGA device (the console)")
    for ifname in sysfs.list_dir(os.path.join(path, "net")):
        flags = sysfs.read_int(os.path.join(path, "net", ifname, "flags"), 16)
        state = sysfs.read_text(os.path.join(path, "net", ifname, "operstate"))
        if (flags is not None and flags & IFF_UP) or state == "up":
            reasons.append(f"network interface {ifname} is up")
    blocks = block_devices_below(path, root)
    if blocks:
        mounts = _mounted_devnums()
        class_block = os.path.join(sysfs.sysfs_root(root), "class", "block")
        for name in blocks:
            reasons.extend(_block_users(name, class_block, mounts))
    return reasons


def group_members(device) -> list[str]:
    """The BDFs in the device's IOMMU group (itself included), or [] without a group."""
    return [n for n in sysfs.list_dir(os.path.join(device.sysfs_path, "iommu_group", "devices"))]


def driver_blocks_group(driver: str | None) -> bool:
    """True when a member bound to ``driver`` keeps the IOMMU group from being viable."""
    if driver is None or driver in VIABLE_DRIVERS:
        return False
    return "vfio" not in driver  # vfio variant drivers (mlx5_vfio_pci, ...) are fine


def group_blockers(device) -> list[str]:
    """Members of the device's IOMMU group that block VFIO, as sentences."""
    out: list[str] = []
    devices_dir = os.path.join(device.sysfs_path, "iommu_group", "devices")
    for name in group_members(device):
        if name == device.name:
            continue
        driver = sysfs.link_name(os.path.join(devices_dir, name, "driver"))
        if driver_blocks_group(driver):
            out.append(f"{name} is bound to {driver}")
    return out


def driverctl_override(device_name: str) -> str | None:
    """The driver a persistent ``driverctl set-override`` chose for the device, if any."""
    text = sysfs.read_text(os.path.join(driverctl_dir(), f"pci-{device_name}"))
    return text or None
