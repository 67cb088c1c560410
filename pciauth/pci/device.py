"""One PCI function as sysfs describes it: ids, driver, IOMMU group, config space, DOE.

Everything here is read-only. Attributes the kernel does not provide (an old kernel, a
container, a fake tree) come out as None rather than failing the listing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pciauth.errors import ConfigSpaceError, PermissionDeniedError
from pciauth.pci import sysfs
from pciauth.pci.address import PciAddress
from pciauth.pci.capabilities import (
    PCI_EXT_CAP_ID_DOE,
    read_serial_number,
    walk_capabilities,
    walk_extended_capabilities,
)
from pciauth.pci.config import UNPRIVILEGED_SIZE, SysfsConfigSpace

#: Names of the DOE protocols that ``doe_features`` and discovery report.
DOE_PROTOCOL_NAMES: dict[tuple[int, int], str] = {
    (0x0001, 0x00): "discovery",
    (0x0001, 0x01): "cma-spdm",
    (0x0001, 0x02): "secured-cma-spdm",
    (0x1E98, 0x02): "cxl-cdat",
}


def doe_protocol_name(vendor: int, type_: int) -> str:
    return DOE_PROTOCOL_NAMES.get((vendor, type_), f"{vendor:04x}:{type_:02x}")


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device's CMA certificate must name (FACTS.md §3, the CMA SAN)."""

    vendor: int
    device: int
    class_code: int
    revision: int
    subsystem_vendor: int | None = None
    subsystem_device: int | None = None
    serial: int | None = None

    def to_dict(self) -> dict:
        return {
            "vendor": f"{self.vendor:04x}",
            "device": f"{self.device:04x}",
            "class": f"{self.class_code:06x}",
            "revision": f"{self.revision:02x}",
            "subsystem_vendor": None if self.subsystem_vendor is None else f"{self.subsystem_vendor:04x}",
            "subsystem_device": None if self.subsystem_device is None else f"{self.subsystem_device:04x}",
            "serial": None if self.serial is None else f"{self.serial:016x}",
        }


@dataclass(frozen=True)
class DoeMailboxInfo:
    offset: int
    version: int

    def to_dict(self) -> dict:
        return {"offset": self.offset, "version": self.version}


class PciDevice:
    """A PCI function found in sysfs. Cheap to create; config space is read on demand."""

    def __init__(self, address: PciAddress, sysfs_path: str) -> None:
        self.address = address
        self.name = str(address)
        self.sysfs_path = sysfs_path
        self._config_image: bytes | None = None
        self._config_error: str | None = None

    def _attr(self, name: str) -> str:
        return os.path.join(self.sysfs_path, name)

    def _hex(self, name: str) -> int | None:
        return sysfs.read_int(self._attr(name), 16)

    # ids, from sysfs attributes (which the kernel caches: no config access needed)
    @property
    def vendor(self) -> int | None:
        return self._hex("vendor")

    @property
    def device(self) -> int | None:
        return self._hex("device")

    @property
    def subsystem_vendor(self) -> int | None:
        return self._hex("subsystem_vendor")

    @property
    def subsystem_device(self) -> int | None:
        return self._hex("subsystem_device")

    @property
    def class_code(self) -> int | None:
        return self._hex("class")

    @property
    def revision(self) -> int | None:
        value = self._hex("revision")
        if value is None and self.config_image:
            value = self.config_image[0x08]
        return value

    @property
    def driver(self) -> str | None:
        return sysfs.link_name(self._attr("driver"))

    @property
    def driver_override(self) -> str | None:
        text = sysfs.read_text(self._attr("driver_override"))
        return None if text in (None, "", "(null)") else text

    @property
    def iommu_group(self) -> int | None:
        name = sysfs.link_name(self._attr("iommu_group"))
        return int(name) if name and name.isdigit() else None

    @property
    def numa_node(self) -> int | None:
        return sysfs.read_int(self._attr("numa_node"), 10)

    @property
    def vfio_cdev(self) -> str | None:
        """The VFIO device cdev name (``vfio3``) when bound to vfio-pci with cdev support."""
        names = [n for n in sysfs.list_dir(self._attr("vfio-dev")) if n.startswith("vfio")]
        return names[0] if names else None

    @property
    def doe_features(self) -> list[str] | None:
        """Protocols the kernel lists in ``doe_features/`` (``0001:01``), None if not listed."""
        path = self._attr("doe_features")
        if not os.path.isdir(path):
            return None
        return sysfs.list_dir(path)

    # config space
    def config_space(self, *, writable: bool = False) -> SysfsConfigSpace:
        return SysfsConfigSpace(self._attr("config"), writable=writable, name=self.name)

    @property
    def config_image(self) -> bytes:
        """A snapshot of the readable config space (empty if unreadable)."""
        if self._config_image is None:
            try:
                with self.config_space() as cfg:
                    self._config_image = cfg.read_bytes(0, cfg.size)
            except (ConfigSpaceError, PermissionDeniedError, OSError) as e:
                self._config_error = str(e)
                self._config_image = b""
        return self._config_image

    @property
    def config_note(self) -> str | None:
        """Why config space is partial, for messages ("needs root for extended caps")."""
        image = self.config_image
        if self._config_error:
            return f"config space unreadable: {self._config_error}"
        if len(image) < UNPRIVILEGED_SIZE:
            return f"config space truncated: only {len(image)} bytes readable"
        if len(image) == UNPRIVILEGED_SIZE:
            if os.geteuid() == 0:
                return "only 64 bytes of config space readable, even as root"
            return "only 64 bytes of config space readable: run as root for capabilities and DOE"
        if len(image) <= 256:
            return "no extended config space (256 bytes)"
        return None

    def _image_cs(self):
        from pciauth.pci.config import BytesConfigSpace

        return BytesConfigSpace(self.config_image, name=self.name)

    def capabilities(self):
        return walk_capabilities(self._image_cs())

    def extended_capabilities(self):
        return walk_extended_capabilities(self._image_cs())

    @property
    def doe_mailboxes(self) -> list[DoeMailboxInfo]:
        return [
            DoeMailboxInfo(cap.offset, cap.version)
            for cap in self.extended_capabilities()
            if cap.id == PCI_EXT_CAP_ID_DOE
        ]

    def identity(self) -> DeviceIdentity:
        serial = read_serial_number(self._image_cs()) if len(self.config_image) > 256 else None
        return DeviceIdentity(
            vendor=self.vendor or 0,
            device=self.device or 0,
            class_code=self.class_code or 0,
            revision=self.revision or 0,
            subsystem_vendor=self.subsystem_vendor,
            subsystem_device=self.subsystem_device,
            serial=serial,
        )

    def doe_protocols(self) -> list[str] | None:
        """Protocol names from ``doe_features`` (no mailbox access), or None."""
        features = self.doe_features
        if features is None:
            return None
        names = []
        for feat in features:
            try:
                vendor, type_ = (int(x, 16) for x in feat.split(":"))
            except ValueError:
                names.append(feat)
                continue
            names.append(doe_protocol_name(vendor, type_))
        return names

    def to_dict(self) -> dict:
        """The stable JSON form of ``pciauth list --json`` (documented in the README)."""

        def hx(v: int | None, width: int) -> str | None:
            return None if v is None else f"{v:0{width}x}"

        return {
            "address": self.name,
            "vendor": hx(self.vendor, 4),
            "device": hx(self.device, 4),
            "subsystem_vendor": hx(self.subsystem_vendor, 4),
            "subsystem_device": hx(self.subsystem_device, 4),
            "class": hx(self.class_code, 6),
            "revision": hx(self.revision, 2),
            "driver": self.driver,
            "driver_override": self.driver_override,
            "iommu_group": self.iommu_group,
            "numa_node": self.numa_node,
            "vfio_cdev": self.vfio_cdev,
            "doe_mailboxes": [m.to_dict() for m in self.doe_mailboxes],
            "doe_features": self.doe_features,
            "config_note": self.config_note,
        }

    def __repr__(self) -> str:
        return f"PciDevice({self.name})"
