"""Build fake sysfs trees (honest and hostile) for tests.

``FakeSysfs(root).add_device("0000:01:00.0", vendor=0x1af4, ...)`` creates
``bus/pci/devices/<bdf>`` with the attribute files, driver and iommu_group symlinks, and a
``config`` file from :class:`ConfigImage`.
"""

from __future__ import annotations

import os
import struct


class ConfigImage:
    """A config space image with helpers to chain capabilities."""

    def __init__(self, vendor=0x1234, device=0x5678, class_code=0x010802, revision=1, size=4096,
                 subsystem_vendor=0x1234, subsystem_device=0x0001, header_type=0):
        self.data = bytearray(size)
        struct.pack_into("<HH", self.data, 0, vendor, device)
        self.data[0x08] = revision
        struct.pack_into("<I", self.data, 0x08, (class_code << 8) | revision)
        self.data[0x0E] = header_type
        struct.pack_into("<HH", self.data, 0x2C, subsystem_vendor, subsystem_device)
        self._last_std = None
        self._last_ext = None

    def add_cap(self, offset: int, cap_id: int, body: bytes = b"") -> ConfigImage:
        self.data[0x06] |= 0x10  # status: capability list
        self.data[offset] = cap_id
        self.data[offset + 1] = 0
        self.data[offset + 2 : offset + 2 + len(body)] = body
        if self._last_std is None:
            self.data[0x34] = offset
        else:
            self.data[self._last_std + 1] = offset
        self._last_std = offset
        return self

    def add_ext_cap(self, offset: int, cap_id: int, version: int = 1, body: bytes = b"") -> ConfigImage:
        struct.pack_into("<I", self.data, offset, cap_id | (version << 16))
        self.data[offset + 4 : offset + 4 + len(body)] = body
        if self._last_ext is not None:
            hdr = struct.unpack_from("<I", self.data, self._last_ext)[0]
            struct.pack_into("<I", self.data, self._last_ext, (hdr & 0xFFFFF) | (offset << 20))
        self._last_ext = offset
        return self

    def set_std_next(self, cap_offset: int, nxt: int) -> ConfigImage:
        self.data[cap_offset + 1] = nxt
        return self

    def set_ext_next(self, cap_offset: int, nxt: int) -> ConfigImage:
        hdr = struct.unpack_from("<I", self.data, cap_offset)[0]
        struct.pack_into("<I", self.data, cap_offset, (hdr & 0xFFFFF) | (nxt << 20))
        return self

    def bytes(self) -> bytes:
        return bytes(self.data)


class FakeSysfs:
    def __init__(self, root: str) -> None:
        self.root = root
        self.devices_dir = os.path.join(root, "bus", "pci", "devices")
        os.makedirs(self.devices_dir, exist_ok=True)
        os.makedirs(os.path.join(root, "bus", "pci", "drivers"), exist_ok=True)
        os.makedirs(os.path.join(root, "kernel", "iommu_groups"), exist_ok=True)

    def path(self, bdf: str, *parts: str) -> str:
        return os.path.join(self.devices_dir, bdf, *parts)

    def add_device(self, bdf: str, *, vendor=0x1234, device=0x5678, class_code=0x010802, revision=1,
                   subsystem_vendor=0x1234, subsystem_device=0x0001, driver=None, iommu_group=None,
                   numa_node=-1, config: bytes | ConfigImage | None = None, doe_features=None,
                   vfio_cdev=None, write_attrs=True) -> str:
        d = os.path.join(self.devices_dir, bdf)
        os.makedirs(d, exist_ok=True)
        if write_attrs:
            for name, value in (
                ("vendor", f"0x{vendor:04x}"),
                ("device", f"0x{device:04x}"),
                ("class", f"0x{class_code:06x}"),
                ("revision", f"0x{revision:02x}"),
                ("subsystem_vendor", f"0x{subsystem_vendor:04x}"),
                ("subsystem_device", f"0x{subsystem_device:04x}"),
                ("numa_node", str(numa_node)),
                ("driver_override", "(null)"),
            ):
                with open(os.path.join(d, name), "w") as f:
                    f.write(value + "\n")
        if config is None:
            config = ConfigImage(vendor, device, class_code, revision,
                                 subsystem_vendor=subsystem_vendor, subsystem_device=subsystem_device)
        if isinstance(config, ConfigImage):
            config = config.bytes()
        with open(os.path.join(d, "config"), "wb") as f:
            f.write(config)
        if driver:
            drv = os.path.join(self.root, "bus", "pci", "drivers", driver)
            os.makedirs(drv, exist_ok=True)
            os.symlink(drv, os.path.join(d, "driver"))
        if iommu_group is not None:
            grp = os.path.join(self.root, "kernel", "iommu_groups", str(iommu_group))
            os.makedirs(os.path.join(grp, "devices"), exist_ok=True)
            os.symlink(grp, os.path.join(d, "iommu_group"))
            link = os.path.join(grp, "devices", bdf)
            if not os.path.lexists(link):
                os.symlink(d, link)
        if doe_features is not None:
            os.makedirs(os.path.join(d, "doe_features"), exist_ok=True)
            for feat in doe_features:
                open(os.path.join(d, "doe_features", feat), "w").close()
        if vfio_cdev:
            os.makedirs(os.path.join(d, "vfio-dev", vfio_cdev), exist_ok=True)
        return d
