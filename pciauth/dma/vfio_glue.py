"""Opening a real PCI device for DMA: bind to vfio-pci, IOMMU backend, BAR0, config space.

The pieces belong to the VFIO/IOMMU area (``pciauth.vfio``, ``pciauth.iommu``); this module only
strings them together for :func:`pciauth.open` and registers every undo step on an ExitStack, so
the device is unbound and its driver restored however the caller leaves.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from typing import Any

from pciauth.errors import HostNotReady, UsageError


@dataclass
class OpenedPci:
    name: str
    backend: Any
    bar: Any
    config: Any
    ids: tuple
    info: dict
    steps: list = field(default_factory=list)


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise HostNotReady(
            f"{module} is not part of this pciauth build: DMA on PCI devices is unavailable",
            hint="use the emulated device ('emu'), or install a complete pciauth",
        ) from None


def _bind(vfio_bind: Any, pdev: Any, force: bool, stack: contextlib.ExitStack) -> dict:
    """Bind to vfio-pci with ``pciauth.vfio.bind.bound`` (journal, signals, restore on exit)."""
    binding = stack.enter_context(vfio_bind.bound(pdev, force=force))
    d = binding.to_dict() if hasattr(binding, "to_dict") else {}
    was = d.get("original_driver") or "no driver"
    detail = f"bound to vfio-pci (was {was})" if d.get("changed", True) else "already on vfio-pci"
    return {"name": "bind", "status": "passed", "detail": detail, "binding": d}


def _bar0(vfio_device: Any) -> Any:
    for getter in ("bar", "region"):
        fn = getattr(vfio_device, getter, None)
        if callable(fn):
            return fn(0)
    regions = getattr(vfio_device, "regions", None)
    if regions is not None:
        return regions[0]
    raise HostNotReady("pciauth.vfio.device.VfioDevice gives no access to BAR0")


def open_pci(spec: str, *, iommu: str, bind: bool, sysfs_root: str | None, force: bool,
             stack: contextlib.ExitStack) -> OpenedPci:
    """Find ``spec``, bind it (unless ``bind=False``), open the backend and the VFIO device."""
    select = _need("pciauth.pci.select")
    pdev = select.find_device(spec, sysfs_root=sysfs_root)
    steps: list[dict] = []
    if bind:
        steps.append(_bind(_need("pciauth.vfio.bind"), pdev, force, stack))
    else:
        driver = getattr(pdev, "driver", None)
        if driver != "vfio-pci":
            # Say so before the IOMMU backend fails with a less helpful "no /dev/vfio/N".
            raise UsageError(
                f"--no-bind, but {pdev.name} is on {driver or 'no driver'}, not vfio-pci",
                device=pdev.name,
                hint=f"bind it first (`pciauth bind {pdev.name}`) or drop --no-bind",
            )
        steps.append({"name": "bind", "status": "skipped", "detail": "--no-bind: the device must be bound already"})
    iommu_mod = _need("pciauth.iommu")
    backend = iommu_mod.open_backend(pdev, iommu)
    stack.callback(backend.close)
    vfio_device_mod = _need("pciauth.vfio.device")
    vdev = vfio_device_mod.VfioDevice.from_backend(backend, pdev)
    stack.callback(vdev.close)
    config = vdev.config  # the VFIO config region (DOE offsets come from sysfs, see pciauth.target)
    info = pdev.to_dict() if hasattr(pdev, "to_dict") else {"name": pdev.name}
    info["iommu"] = getattr(backend, "name", iommu)
    return OpenedPci(pdev.name, backend, _bar0(vdev), config, (pdev.vendor, pdev.device, pdev.class_code),
                     info, steps)
