"""The Python API for regression scripts: one device, its authentication, IOVA windows and DMA.

::

    import pciauth

    with pciauth.open("emu") as dev:                 # or "0000:01:00.0" (root, vfio-pci)
        report = dev.auth.authenticate()            # CMA/SPDM over the DOE mailbox
        dev.iova.set_threshold("1G")                # private [0, 1G), shared [1G, top)
        assert dev.dma.check(1 << 20, private=True).ok
        assert dev.dma.check(1 << 20, private=False).ok

On a PCI device ``open`` binds it to vfio-pci (unless ``bind=False``), opens the IOMMU backend
(``iommu="auto"|"iommufd"|"legacy"``) and the DMA driver from the table; ``close`` (or the end of
the ``with``) unmaps everything and restores the original driver. The emulated device (``emu``,
``emu:N``) needs no root and no binding.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pciauth.dma.iova import Threshold
from pciauth.errors import DmaError, HostNotReady, NotFoundError, PciauthError
from pciauth.target import EMU_SPEC as _EMU_RE


def emu_index(spec: str) -> int | None:
    """0 for ``emu``, N for ``emu:N`` (and ``emu:N,knob=value``), None for anything else."""
    m = _EMU_RE.match(str(spec).strip())
    return None if m is None else int(m.group(1) or 0)


class IovaControl:
    """The private IOVA threshold of an open device (``dev.iova``)."""

    def __init__(self, device: Device) -> None:
        self._device = device

    @property
    def threshold(self) -> Threshold:
        return self._device.session.threshold

    @property
    def enforcement(self) -> str:
        return self._device.session.policy.enforcement

    def set_threshold(self, value: Threshold | int | str) -> Threshold:
        """Change X (a :class:`Threshold`, 2 MiB units, or text such as ``"1G"``); refused with
        live mappings."""
        return self._device.session.set_threshold(value)

    def window(self, private: bool) -> tuple[int, int]:
        return self._device.session.allocator.window(private)

    def to_dict(self) -> dict:
        return self._device.session.policy.to_dict()


class DmaControl:
    """DMA on an open device (``dev.dma``)."""

    def __init__(self, device: Device) -> None:
        self._device = device

    @property
    def driver(self):
        """The device's DMA driver, started (bus master, controller enabled) on first use."""
        return self._device.start_driver()

    @property
    def started(self) -> bool:
        return self._device.driver_started

    def stop(self) -> None:
        """Stop the driver: it releases its own mappings (NVMe queues) and restores the device.

        Changing the threshold needs this first when the driver holds mappings: X never changes
        under a live mapping. The next DMA starts the driver again.
        """
        self._device.stop_driver()

    def alloc(self, length: int, *, private: bool = True, **kw: Any):
        """A mapped buffer (:class:`~pciauth.dma.session.DmaMapping`) in the private/shared window."""
        return self._device.session.alloc(length, private=private, **kw)

    def free(self, mapping) -> None:
        self._device.session.free(mapping)

    def copy(self, src, dst, length: int | None = None, *, timeout: float = 10.0) -> None:
        """The device copies ``length`` bytes (default: all of ``src``) from ``src`` to ``dst``."""
        n = src.length if length is None else length
        if n > src.length or n > dst.length:
            raise DmaError(f"copy of {n} bytes does not fit the buffers ({src.length}, {dst.length})")
        self.driver.copy(src.iova, dst.iova, n, timeout=timeout)

    def check(self, size: int, *, private: bool = True, pattern: str = "offset", iterations: int = 1,
              timeout: float = 10.0, progress=None):
        """Map, run the driver, verify every byte: a :class:`~pciauth.dma.check.CheckResult`."""
        from pciauth.dma.check import run_check

        return run_check(self.driver, self._device.session, size, private=private,
                         pattern=pattern, iterations=iterations, timeout=timeout, progress=progress)


class AuthControl:
    """Authentication of an open device (``dev.auth``), by the SPDM/DOE code of pciauth."""

    def __init__(self, device: Device) -> None:
        self._device = device

    def authenticate(self, **options: Any):
        """Run CMA/SPDM authentication, as ``pciauth auth`` does; returns its result
        (``.authenticated``, ``.exit_code``, ``.report``, ``to_dict()``). ``options``:
        ``trust_anchors`` (PEM paths), ``force``, and ``AuthOptions`` fields (``slot``,
        ``measurements``, ``session``, ``policy``, ``timeout``)."""
        from pciauth.dma.auth_step import authenticate

        return authenticate(self._device, **options)


class Device:
    """An open device: use :func:`open`. Attributes: ``name``, ``emulated``, ``backend``,
    ``session``, ``driver`` (not started: ``dma.driver`` starts it), ``config``, ``iova``, ``dma``,
    ``auth``, ``info``."""

    def __init__(self, spec: str, *, iommu: str = "auto", threshold: Threshold | int | str | None = None,
                 hugepages: bool | str = False, driver: str | None = None, bind: bool = True,
                 sysfs_root: str | None = None, force: bool = False,
                 driver_options: dict | None = None) -> None:
        self.spec = spec
        self.emulated = emu_index(spec) is not None
        self.steps: list[dict] = []
        self.emu = None
        self.driver_options = dict(driver_options or {})
        self.sysfs_root = sysfs_root
        self._stack = contextlib.ExitStack()
        try:
            if self.emulated:
                self._open_emulated(emu_index(spec) or 0)
            else:
                self._open_pci(spec, iommu=iommu, bind=bind, sysfs_root=sysfs_root, force=force)
            self._open_dma(threshold, hugepages, driver)
        except BaseException:
            self._stack.close()
            raise
        self.iova = IovaControl(self)
        self.dma = DmaControl(self)
        self.auth = AuthControl(self)

    # ---- opening ----
    def _open_emulated(self, index: int) -> None:
        from pciauth.emu.device import EmulatedDevice

        knobs: dict = {}
        if "," in self.spec:  # emu:N,knob=value: the emulated device's knobs (docs/doe.md)
            from pciauth.target import parse_emu_spec

            index, knobs = parse_emu_spec(self.spec)
        self.emu = EmulatedDevice(index, **knobs)
        self._stack.callback(self.emu.close)
        if self.emu.iommu is None or self.emu.bar0 is None:
            raise HostNotReady("the emulated device has no DMA engine in this build")
        self.name = self.emu.name
        self.backend = self.emu.iommu
        self.bar = self.emu.bar0
        self.config = self.emu.config
        p = self.emu.profile
        self.ids = (p.vendor, p.device, p.class_code)
        self.info = self.emu.info()

    def _open_pci(self, spec: str, *, iommu: str, bind: bool, sysfs_root: str | None, force: bool) -> None:
        from pciauth.dma.vfio_glue import open_pci

        opened = open_pci(spec, iommu=iommu, bind=bind, sysfs_root=sysfs_root, force=force, stack=self._stack)
        self.name = opened.name
        self.backend = opened.backend
        self.bar = opened.bar
        self.config = opened.config
        self.ids = opened.ids
        self.info = opened.info
        self.steps.extend(opened.steps)

    def _open_dma(self, threshold, hugepages, driver: str | None) -> None:
        from pciauth.dma.drivers import DriverContext, probe
        from pciauth.dma.session import DmaSession
        from pciauth.dma.threshold import find_knob, load_threshold

        knob = None if self.emulated else find_knob(self.sysfs_root)
        if isinstance(threshold, (str, int)):
            threshold = Threshold.parse(threshold) if isinstance(threshold, str) else Threshold(threshold)
        if threshold is not None and knob is not None:
            # X for this device's lifetime only: program the platform now (nothing is mapped),
            # put the old value back after every mapping is gone (the stack unwinds LIFO).
            previous = knob.read()
            if previous != threshold:
                knob.write(threshold)
                self._stack.callback(knob.write, previous)
        if threshold is None:
            try:
                threshold = knob.read() if knob else load_threshold(self.name)
            except PciauthError:
                threshold = None
        vendor, device, class_code = self.ids
        entry = probe(vendor, device, class_code, emulated=self.emulated, name=driver)
        drv_cls = entry.load()
        self.session = DmaSession(self.backend, threshold=threshold or Threshold.ALL, knob=knob,
                                  dma_limit=drv_cls.dma_limit, hugepages=hugepages)
        self._stack.callback(self.session.close)
        ctx = DriverContext(self.name, self.bar, self.config, self.session, vendor, device, class_code,
                            emulated=self.emulated, options=self.driver_options)
        self.driver = drv_cls(ctx)
        self.driver_started = False
        self._stack.callback(self.stop_driver)

    def start_driver(self):
        """Start the DMA driver if it is not running; returns it."""
        if not self.driver_started:
            self.driver.start()
            self.driver_started = True
        return self.driver

    def stop_driver(self) -> None:
        if self.driver_started:
            self.driver_started = False
            self.driver.close()

    # ---- closing ----
    def close(self) -> None:
        """Stop the driver, unmap everything, close the backend, restore the original driver."""
        self._stack.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(spec: str = "emu", **options: Any) -> Device:
    """Open a device for authentication and DMA checks; use it in a ``with`` block.

    Options: ``iommu`` (auto|iommufd|legacy), ``threshold`` (X: Threshold, 2 MiB units or text),
    ``hugepages`` (False|True|"prefer"), ``driver`` (a name from the driver table), ``bind``
    (bind to vfio-pci and restore afterwards; default True), ``sysfs_root``, ``force``,
    ``driver_options`` (per driver: NVMe takes ``expect_serial``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise NotFoundError("no device given: use a PCI address or 'emu'")
    return Device(spec.strip(), **options)
