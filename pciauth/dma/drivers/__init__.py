"""DMA drivers: small programs that make a device move bytes between IOVAs, in one table.

A driver gets a :class:`DriverContext` (the device's BAR with ``read32/write32/read64/write64``,
its config space, the :class:`~pciauth.dma.session.DmaSession`) and offers:

- ``start()`` / ``close()``: enable the device (bus master, controller) and put it back;
- ``copy(src_iova, dst_iova, length, timeout=)`` when ``can_copy``: the device copies memory;
- ``device_write(dst_iova, timeout=) -> DeviceWrite`` when it cannot copy (NVMe): the device writes
  data it defines (the Identify structure) and says how to check it.

``dma_limit`` is one past the highest IOVA the device can address (its DMA mask).

Drivers wait for the device with :meth:`DmaDriver.wait_until` (:func:`wait_for` with the
context's clock): ``DriverContext.clock`` and ``DriverContext.sleep`` are the real
``time.monotonic`` and ``time.sleep`` unless a test or fuzz harness passes a fake pair, which
turns a device that never finishes into an instant, still checked, timeout.

The table :data:`DRIVERS` is probed in order by vendor/device ID, class code, or "emulated";
add a row (and a module) for a new device.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pciauth.errors import DmaError, NotFoundError, UsageError


class DmaTimeout(DmaError):
    """The device did not finish a DMA in time."""


class DmaFault(DmaError):
    """The device (or its IOMMU) reported a DMA fault; nothing was transferred by that request."""

    def __init__(self, message: str, *, address: int | None = None, direction: str | None = None,
                 reason: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.address = address
        self.direction = direction
        self.reason = reason

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(address=self.address, direction=self.direction, reason=self.reason)
        return d


@dataclass
class DriverContext:
    """What a driver may touch."""

    name: str
    bar: Any
    config: Any = None
    session: Any = None
    vendor: int | None = None
    device: int | None = None
    class_code: int | None = None
    emulated: bool = False
    options: dict = field(default_factory=dict)
    #: What every wait on the device reads (seconds, monotonic) and sleeps with.
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class DeviceWrite:
    """What a device wrote on its own (``device_write``): ``length`` bytes at the IOVA, plus checks."""

    length: int
    checks: dict
    data: bytes = b""


class DmaDriver:
    """Base of the drivers; see the module docstring."""

    name = "?"
    can_copy = True
    dma_limit: int | None = None

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self.bar = ctx.bar

    def start(self) -> None:
        """Prepare the device for DMA."""

    def copy(self, src_iova: int, dst_iova: int, length: int, *, timeout: float = 5.0) -> None:
        raise DmaError(f"the {self.name} driver cannot copy memory")

    def device_write(self, dst_iova: int, *, timeout: float = 5.0) -> DeviceWrite:
        raise DmaError(f"the {self.name} driver has no device-defined write")

    def close(self) -> None:
        """Leave the device as it was found."""

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str, *, first: float = 0.0001,
                   longest: float = 0.01) -> None:
        """:func:`wait_for` on this device, timed by the context's ``clock`` and ``sleep``."""
        wait_for(condition, timeout, what, first=first, longest=longest, device=self.ctx.name,
                 clock=self.ctx.clock, sleep=self.ctx.sleep)

    def info(self) -> dict:
        return {"driver": self.name, "can_copy": self.can_copy, "dma_limit": self.dma_limit}

    def __enter__(self) -> DmaDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, *, first: float = 0.0001,
             longest: float = 0.01, device: str | None = None, clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ``condition`` until it holds, backing off from ``first`` to ``longest`` seconds.

    ``timeout`` is measured on ``clock`` and the back-off slept with ``sleep`` (the real time
    functions unless a test passes fakes); :class:`DmaTimeout` names ``what`` when it expires.
    """
    deadline = clock() + timeout
    delay = first
    while not condition():
        now = clock()
        if now >= deadline:
            raise DmaTimeout(f"timed out after {timeout:g} s waiting for {what}", device=device)
        sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 2, longest)


@dataclass(frozen=True)
class DriverEntry:
    """One row of the driver table."""

    name: str
    module: str
    cls: str
    description: str
    ids: tuple[tuple[int, int], ...] = ()
    class_code: int | None = None
    emulated: bool = False

    def matches(self, vendor: int | None, device: int | None, class_code: int | None, emulated: bool) -> bool:
        if self.emulated:
            return emulated
        if (vendor, device) in self.ids:
            return True
        return self.class_code is not None and class_code == self.class_code

    def probe(self, target: Any) -> bool:
        """True when this driver handles ``target`` (a ``pciauth.target.Target``, a
        ``PciDevice`` or an ``EmulatedDevice``): the seam's ``probe(target) -> bool``."""
        return self.matches(*target_ids(target))

    def load(self) -> type[DmaDriver]:
        return getattr(importlib.import_module(self.module), self.cls)


def target_ids(target: Any) -> tuple[int | None, int | None, int | None, bool]:
    """(vendor, device, class code, emulated) of a Target, PciDevice or EmulatedDevice."""
    ident = getattr(target, "identity", None)
    if callable(ident):  # PciDevice.identity() is a method
        ident = ident()
    src = ident if ident is not None else getattr(target, "profile", target)
    emulated = bool(getattr(target, "is_emulated", False) or getattr(target, "emulated", False)
                    or hasattr(target, "profile"))
    return (getattr(src, "vendor", None), getattr(src, "device", None), getattr(src, "class_code", None),
            emulated)


DRIVERS: list[DriverEntry] = [
    DriverEntry("emu", "pciauth.dma.drivers.emu", "EmuDmaDriver",
                "pciauth's emulated DMA engine (descriptors, copies between IOVAs)", emulated=True),
    DriverEntry("edu", "pciauth.dma.drivers.edu", "EduDriver",
                "QEMU edu (copies through its 4 KiB device buffer, 28-bit DMA mask)",
                ids=((0x1234, 0x11E8),)),
    DriverEntry("nvme", "pciauth.dma.drivers.nvme", "NvmeDriver",
                "NVMe: Identify Controller through the admin queue", class_code=0x010802),
]


def probe(vendor: int | None, device: int | None, class_code: int | None = None, *,
          emulated: bool = False, name: str | None = None) -> DriverEntry:
    """The first table row for this device (or the row called ``name``)."""
    if name:
        for entry in DRIVERS:
            if entry.name == name:
                return entry
        # A name from the command line (--driver): a bad option value, exit 2 like every other.
        raise UsageError(f"no DMA driver called {name!r}; known: {', '.join(e.name for e in DRIVERS)}")
    for entry in DRIVERS:
        if entry.matches(vendor, device, class_code, emulated):
            return entry
    ids = f"{vendor or 0:04x}:{device or 0:04x}" + (f" class {class_code:06x}" if class_code is not None else "")
    raise NotFoundError(
        f"no DMA driver for device {ids}",
        hint="pciauth drives the emulated device, QEMU edu and NVMe controllers; "
        "authentication (`pciauth auth`) works on any device",
    )


def driver_for(target: Any) -> DriverEntry:
    """The table row for ``target`` (see :meth:`DriverEntry.probe`)."""
    vendor, device, class_code, emulated = target_ids(target)
    return probe(vendor, device, class_code, emulated=emulated)


def open_driver(ctx: DriverContext, name: str | None = None) -> DmaDriver:
    """Probe the table for ``ctx`` and instantiate the driver (not started)."""
    entry = probe(ctx.vendor, ctx.device, ctx.class_code, emulated=ctx.emulated, name=name)
    return entry.load()(ctx)
