"""A fake sysfs tree for binding tests, with a tiny "kernel" thread that rebinds drivers.

The tree has the files pciauth writes (``driver_override``, ``drivers/<drv>/unbind`` and
``bind``, ``bus/pci/drivers_probe``) as plain files. :class:`FakeDriverCore` polls them and
does what the kernel's driver core would: an address written to ``unbind`` removes the
device's ``driver`` link, one written to ``drivers_probe`` links the device to the
``driver_override`` driver (or its native driver), one written to ``bind`` links it.
It records every action in ``events``.
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

    def __enter__(self) -> FakeDriverCore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(2)

    def _take(self, path: str) -> str | None:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            return None
        if not text:
            return None
        open(path, "w").close()
        return text

    @staticmethod
    def _peek(path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def _unbind_pending(self, bdf: str) -> bool:
        """An unbind of ``bdf`` written after this step read the unbind files."""
        drv = self.fs.driver(bdf)
        return drv is not None and self._peek(self.fs.path("bus/pci/drivers", drv, "unbind")) == bdf

    def _attach(self, bdf: str, driver: str | None) -> None:
        if driver and driver not in self.refuse and os.path.isdir(self.fs.path("bus/pci/drivers", driver)):
            self.fs.link(bdf, driver)
            self.events.append(("bind", bdf, driver))
            if driver == "vfio-pci":
                os.makedirs(os.path.join(self.fs.dev_path(bdf), "vfio-dev", "vfio0"), exist_ok=True)

    def step(self) -> None:
        drivers_dir = self.fs.path("bus/pci/drivers")
        for drv in os.listdir(drivers_dir):
            bdf = self._take(os.path.join(drivers_dir, drv, "unbind"))
            if bdf and self.fs.driver(bdf) == drv:
                self.fs.link(bdf, None)
                self.events.append(("unbind", bdf, drv))
                vfio_dev = os.path.join(self.fs.dev_path(bdf), "vfio-dev")
                if drv == "vfio-pci" and os.path.isdir(vfio_dev):
                    os.rmdir(os.path.join(vfio_dev, "vfio0"))
                    os.rmdir(vfio_dev)
            bdf = self._take(os.path.join(drivers_dir, drv, "bind"))
            if bdf and self.fs.driver(bdf) is None:
                self._attach(bdf, drv)
        probe = self.fs.path("bus/pci/drivers_probe")
        pending = self._peek(probe)
        if pending and self._unbind_pending(pending):
            return  # the kernel handles writes in order: the unbind first, next step the probe
        bdf = self._take(probe)
        if bdf and self.fs.driver(bdf) is None:
            self._attach(bdf, self.fs.override(bdf) or self.fs.native.get(bdf))

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.step()
            except OSError:
                pass
            time.sleep(self.interval)
