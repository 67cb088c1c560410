"""IOMMU backends behind one interface (:class:`~pciauth.iommu.base.IommuBackend`).

:func:`open_backend` picks one for a PCI device bound to vfio-pci: iommufd when
``/dev/iommu`` and the device's VFIO cdev exist (kernel >= 6.6 with CONFIG_IOMMUFD and
CONFIG_VFIO_DEVICE_CDEV), else the legacy type1 container. ``kind`` forces one; the
command line's ``--iommu iommufd|legacy`` passes it through.
"""

from __future__ import annotations

from typing import Any

from pciauth.errors import HostNotReady, UsageError
from pciauth.iommu.base import IommuBackend, IovaRange, Mapping

__all__ = ["BACKEND_KINDS", "IommuBackend", "IovaRange", "Mapping", "choose_kind", "open_backend"]

BACKEND_KINDS = ("auto", "iommufd", "legacy")
IOMMU_DEV = "/dev/iommu"
VFIO_DEVICES_DIR = "/dev/vfio/devices"
VFIO_DIR = "/dev/vfio"


def choose_kind(device: Any, kind: str = "auto") -> str:
    """``"iommufd"`` or ``"legacy"`` for ``device`` (a ``PciDevice``); explains what is missing."""
    from pciauth.uapi import sys as usys

    if kind not in BACKEND_KINDS:
        raise UsageError(f"unknown IOMMU backend {kind!r}: use one of {', '.join(BACKEND_KINDS)}")
    cdev = device.vfio_cdev
    has_iommufd = usys.exists(IOMMU_DEV)
    has_cdev = bool(cdev) and usys.exists(f"{VFIO_DEVICES_DIR}/{cdev}")
    if kind == "iommufd":
        if not (has_iommufd and has_cdev):
            missing = [] if has_iommufd else [IOMMU_DEV]
            if not has_cdev:
                missing.append(f"the VFIO cdev of {device.name}" + ("" if cdev else " (vfio-dev/ is empty)"))
            raise HostNotReady(
                f"the iommufd backend needs {' and '.join(missing)}",
                device=device.name,
                hint="needs a kernel >= 6.6 with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV; "
                "use `--iommu legacy`, or see `pciauth doctor`",
            )
        return "iommufd"
    if kind == "legacy":
        return "legacy"
    return "iommufd" if has_iommufd and has_cdev else "legacy"


def open_backend(device: Any, kind: str = "auto") -> IommuBackend:
    """Open an IOMMU backend for ``device`` (bound to vfio-pci).

    ``device`` is a ``pciauth.pci.device.PciDevice`` (or a selector string). The
    emulated device brings its own IOMMU: pass ``device.iommu`` straight to the DMA code.
    The returned backend owns the VFIO device file descriptor (``backend.device_fd``).
    """
    if isinstance(device, str):
        from pciauth.pci.select import find_device

        device = find_device(device)
    chosen = choose_kind(device, kind)
    if chosen == "iommufd":
        from pciauth.iommu.iommufd import IommufdBackend

        return IommufdBackend(f"{VFIO_DEVICES_DIR}/{device.vfio_cdev}", device=device.name)

    from pciauth.iommu.legacy import LegacyBackend

    group = device.iommu_group
    if group is None:
        raise HostNotReady(
            f"{device.name} has no IOMMU group: the IOMMU is off or the device is not behind one",
            device=device.name,
            hint="enable the IOMMU (intel_iommu=on / amd_iommu=on on the kernel command line); "
            "see `pciauth doctor`",
        )

    def blockers() -> str:
        from pciauth.vfio.safety import group_blockers

        return "; ".join(group_blockers(device))

    return LegacyBackend(group, device.name, device=device.name, group_blockers=blockers)
