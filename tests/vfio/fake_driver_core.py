"""A fake sysfs tree for binding tests, with a tiny "kernel" thread that rebinds drivers.

The tree has the files pciauth writes (``driver_override``, ``drivers/<drv>/unbind`` and
``bind``, ``bus/pci/drivers_probe``) as plain files. :class:`FakeDriverCore` polls them and
does what the kernel's driver core would: an address written to ``unbind`` removes the
device's ``driver`` link, one written to ``drivers_probe`` links the device to the
``driver_override`` driver (or its native driver), one written to ``bind`` links it.
It records every action in ``events``.

A real kernel has handled each write when ``write()`` returns; this core handles them in
its own thread, a step at a time. It keeps the kernel's order: pciauth writes an ``unbind``
before the ``drivers_probe`` that follows it, so each step takes the probe first and then
handles the unbind files (which hold every unbind written before that probe) before it.
Tests that must not race pending writes wait for :meth:`FakeDriverCore.settle`.
"""

from __future__ import annotations

import os
import threading
import time

#: The device every VFIO test binds.
BDF = "0000:01:00.0"


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class FakeSysfs:
    def __init__(self, root: str) -> None:
        self.root = root
        self.native: dict[str, str | None] = {}
        for d in (
            "bus/pci/devices",
            "bus/pci/drivers",
            "devices/pci0000:00",
            "kernel/iommu_groups",
            "class/block",
        ):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        open(os.path.join(root, "bus/pci/drivers_probe"), "w").close()
        self.add_driver("vfio-pci")

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def dev_path(self, bdf: str) -> str:
        return self.path("devices/pci0000:00", bdf)

    def add_driver(self, name: str) -> None:
        d = self.path("bus/pci/drivers", name)
        os.makedirs(d, exist_ok=True)
        for f in ("bind", "unbind"):
            open(os.path.join(d, f), "a").close()

    def add_device(
        self,
        bdf: str,
        *,
        driver: str | None = "nvme",
        group: int = 1,
        vendor: int = 0x1B36,
        device: int = 0x0010,
        cls: int = 0x010802,
    ) -> str:
        p = self.dev_path(bdf)
        os.makedirs(p)
        for name, value in (
            ("vendor", f"0x{vendor:04x}"),
            ("device", f"0x{device:04x}"),
            ("class", f"0x{cls:06x}"),
        ):
            with open(os.path.join(p, name), "w") as f:
                f.write(value + "\n")
        with open(os.path.join(p, "driver_override"), "w") as f:
            f.write("(null)\n")
        with open(os.path.join(p, "config"), "wb") as f:
            f.write(vendor.to_bytes(2, "little") + device.to_bytes(2, "little") + bytes(60))
        os.symlink(os.path.relpath(p, self.path("bus/pci/devices")), self.path("bus/pci/devices", bdf))
        gdir = self.path("kernel/iommu_groups", str(group), "devices")
        os.makedirs(gdir, exist_ok=True)
        os.symlink(os.path.relpath(p, gdir), os.path.join(gdir, bdf))
        os.symlink(
            os.path.relpath(self.path("kernel/iommu_groups", str(group)), p), os.path.join(p, "iommu_group")
        )
        self.native[bdf] = driver
        if driver:
            self.add_driver(driver)
            self.link(bdf, driver)
        return p

    def driver(self, bdf: str) -> str | None:
        try:
            return os.path.basename(os.readlink(os.path.join(self.dev_path(bdf), "driver")))
        except OSError:
            return None

    def link(self, bdf: str, driver: str | None) -> None:
        link = os.path.join(self.dev_path(bdf), "driver")
        if os.path.islink(link):
            os.unlink(link)
        if driver:
            target = self.path("bus/pci/drivers", driver)
            os.symlink(os.path.relpath(target, self.dev_path(bdf)), link)

    def override(self, bdf: str) -> str | None:
        with open(os.path.join(self.dev_path(bdf), "driver_override")) as f:
            text = f.read().strip()
        return None if text in ("", "(null)") else text


class FakeDriverCore(threading.Thread):
    """Polls the fake tree and plays the kernel's driver core (see the module docstring)."""

    def __init__(self, fs: FakeSysfs, *, interval: float = 0.005, refuse: set[str] | None = None) -> None:
        super().__init__(daemon=True)
        self.fs = fs
        self.interval = interval
        self.refuse = refuse or set()  # drivers that never bind
        self.events: list[tuple[str, str, str | None]] = []
        self._stop_event = threading.Event()
        self._changed = threading.Condition()  # guards the step counts below
        self._steps_begun = 0
        self._last_idle_step = 0  # the number of the last step that found nothing to do

    def __enter__(self) -> FakeDriverCore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(2)

    def _take(self, path: str) -> str | None:
        """The address written to ``path``, emptying it. (A write between the read and the
        truncation would be lost; pciauth writes an attribute again only after the effect of
        its previous write, which this core makes after the truncation.)"""
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            return None
        if not text:
            return None
        open(path, "w").close()
        return text

    def _attach(self, bdf: str, driver: str | None) -> None:
        if driver and driver not in self.refuse and os.path.isdir(self.fs.path("bus/pci/drivers", driver)):
            self.fs.link(bdf, driver)
            self.events.append(("bind", bdf, driver))
            if driver == "vfio-pci":
                os.makedirs(os.path.join(self.fs.dev_path(bdf), "vfio-dev", "vfio0"), exist_ok=True)

    def step(self) -> bool:
        """Handle the writes pending now, in the kernel's order; True when there were any.

        The probe is taken first: any unbind written before it is then in its file, and is
        handled before the probe. (Taking the probe after the unbind files lost probes: one
        written, with its unbind, after the unbind files were read found the device still
        bound and was dropped, leaving the device on no driver.)
        """
        probe = self._take(self.fs.path("bus/pci/drivers_probe"))
        busy = probe is not None
        drivers_dir = self.fs.path("bus/pci/drivers")
        for drv in sorted(os.listdir(drivers_dir)):
            bdf = self._take(os.path.join(drivers_dir, drv, "unbind"))
            busy |= bdf is not None
            if bdf and self.fs.driver(bdf) == drv:
                self.fs.link(bdf, None)
                self.events.append(("unbind", bdf, drv))
                vfio_dev = os.path.join(self.fs.dev_path(bdf), "vfio-dev")
                if drv == "vfio-pci" and os.path.isdir(vfio_dev):
                    os.rmdir(os.path.join(vfio_dev, "vfio0"))
                    os.rmdir(vfio_dev)
            bdf = self._take(os.path.join(drivers_dir, drv, "bind"))
            busy |= bdf is not None
            if bdf and self.fs.driver(bdf) is None:
                self._attach(bdf, drv)
        if probe and self.fs.driver(probe) is None:
            self._attach(probe, self.fs.override(probe) or self.fs.native.get(probe))
        return busy

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every write made before this call is handled (the kernel's ``write()``
        returning); False after ``timeout`` seconds (the core is stopped or starved).

        Settled means a step that began after the call found nothing to do: a step already
        running may have read the files before the caller's last writes.
        """
        with self._changed:
            began = self._steps_begun
            return self._changed.wait_for(lambda: self._last_idle_step > began, timeout)

    def run(self) -> None:
        while not self._stop_event.is_set():
            with self._changed:
                self._steps_begun += 1
                number = self._steps_begun
            try:
                busy = self.step()
            except OSError:
                busy = True  # a file vanished mid-step (a test removing the device): not idle
            if not busy:
                with self._changed:
                    self._last_idle_step = number
                    self._changed.notify_all()
            time.sleep(self.interval)
