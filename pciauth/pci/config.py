"""The ConfigSpace seam: read and write PCI config space at an offset.

Implementations:
- :class:`SysfsConfigSpace`: ``/sys/bus/pci/devices/<bdf>/config`` with pread/pwrite.
  Root reads all 4096 bytes; other users see only the first 64.
- :class:`BytesConfigSpace`: an in-memory image (tests, snapshots).
- the VFIO config region (``pciauth.vfio``) and the emulated device (``pciauth.emu``).

Every access is bounds-checked against :attr:`ConfigSpace.size` and naturally aligned.
"""

from __future__ import annotations

import abc
import errno as errno_mod
import os
import struct

from pciauth.errors import ConfigSpaceError, PermissionDeniedError

_FORMATS = {1: "<B", 2: "<H", 4: "<I"}

#: Size of the conventional (PCI) config header visible to unprivileged readers.
UNPRIVILEGED_SIZE = 64
CONVENTIONAL_SIZE = 256
EXTENDED_SIZE = 4096


class ConfigSpace(abc.ABC):
    """Byte-addressed config space with 8/16/32-bit accessors."""

    #: Number of readable bytes (64, 256 or 4096).
    size: int = EXTENDED_SIZE
    #: Label used in error messages (the BDF or "emu:0").
    name: str = "config"

    @abc.abstractmethod
    def _read(self, offset: int, width: int) -> int: ...

    @abc.abstractmethod
    def _write(self, offset: int, width: int, value: int) -> None: ...

    def _check(self, offset: int, width: int) -> None:
        if width not in _FORMATS:
            raise ConfigSpaceError(f"invalid access width {width}", device=self.name)
        if offset < 0 or offset % width:
            raise ConfigSpaceError(
                f"misaligned {width * 8}-bit access at 0x{offset:x}", device=self.name
            )
        if offset + width > self.size:
            hint = None
            if self.size == UNPRIVILEGED_SIZE:
                hint = "only the first 64 bytes of config space are readable without root: run with sudo"
            raise ConfigSpaceError(
                f"config access at 0x{offset:x} is beyond the {self.size} readable bytes",
                device=self.name,
                hint=hint,
            )

    def read8(self, offset: int) -> int:
        self._check(offset, 1)
        return self._read(offset, 1)

    def read16(self, offset: int) -> int:
        self._check(offset, 2)
        return self._read(offset, 2)

    def read32(self, offset: int) -> int:
        self._check(offset, 4)
        return self._read(offset, 4)

    def write8(self, offset: int, value: int) -> None:
        self._check(offset, 1)
        self._write(offset, 1, value & 0xFF)

    def write16(self, offset: int, value: int) -> None:
        self._check(offset, 2)
        self._write(offset, 2, value & 0xFFFF)

    def write32(self, offset: int, value: int) -> None:
        self._check(offset, 4)
        self._write(offset, 4, value & 0xFFFFFFFF)

    def read_bytes(self, offset: int = 0, length: int | None = None) -> bytes:
        """A snapshot of ``length`` bytes from ``offset`` (default: all readable bytes)."""
        if length is None:
            length = self.size - offset
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ConfigSpaceError(
                f"config read of {length} bytes at 0x{offset:x} is beyond {self.size} bytes",
                device=self.name,
            )
        return self._read_span(offset, length)

    def _read_span(self, offset: int, length: int) -> bytes:
        """Bulk read of a checked span; byte by byte unless a subclass does better."""
        return bytes(self._read(offset + i, 1) for i in range(length))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (file descriptors)."""

    def __enter__(self) -> ConfigSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesConfigSpace(ConfigSpace):
    """Config space backed by a bytearray; writes go to the array (no RO bits)."""

    def __init__(self, data: bytes | bytearray, name: str = "image") -> None:
        self.data = bytearray(data)
        self.size = len(self.data)
        self.name = name

    def _read(self, offset: int, width: int) -> int:
        return struct.unpack_from(_FORMATS[width], self.data, offset)[0]

    def _write(self, offset: int, width: int, value: int) -> None:
        struct.pack_into(_FORMATS[width], self.data, offset, value)

    def _read_span(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])


class SysfsConfigSpace(ConfigSpace):
    """The sysfs ``config`` file of a PCI device, accessed with pread/pwrite.

    The readable size is what the kernel gives this user: the file's size for root
    (256 or 4096), 64 bytes for everybody else. Open for writing only when asked.
    """

    def __init__(self, path: str, *, writable: bool = False, name: str | None = None) -> None:
        self.path = path
        self.name = name or os.path.basename(os.path.dirname(path)) or path
        flags = os.O_RDWR if writable else os.O_RDONLY
        try:
            self.fd = os.open(path, flags | os.O_CLOEXEC)
        except PermissionError as e:
            raise PermissionDeniedError(
                f"cannot open {path} {'for writing' if writable else ''}".rstrip(),
                errno=e.errno,
                path=path,
                device=self.name,
                hint="run as root (sudo)",
            ) from None
        except FileNotFoundError as e:
            from pciauth.errors import DeviceNotFound

            raise DeviceNotFound(
                f"no config space at {path}", errno=e.errno, path=path, device=self.name
            ) from None
        try:
            file_size = os.fstat(self.fd).st_size or EXTENDED_SIZE
        except OSError:
            file_size = EXTENDED_SIZE
        self.size = file_size if os.geteuid() == 0 else min(file_size, UNPRIVILEGED_SIZE)
        # A short file (a truncated fake, or a device with 256 bytes) caps it too.
        self.writable = writable

    def _read(self, offset: int, width: int) -> int:
        try:
            data = os.pread(self.fd, width, offset)
        except OSError as e:
            raise ConfigSpaceError(
                f"reading config at 0x{offset:x} failed: {e.strerror}",
                errno=e.errno,
                path=self.path,
                device=self.name,
            ) from None
        if len(data) != width:
            raise ConfigSpaceError(
                f"short config read at 0x{offset:x} ({len(data)} of {width} bytes)",
                path=self.path,
                device=self.name,
            )
        return struct.unpack(_FORMATS[width], data)[0]

    def _write(self, offset: int, width: int, value: int) -> None:
        if not self.writable:
            raise ConfigSpaceError("config space opened read-only", path=self.path, device=self.name)
        try:
            n = os.pwrite(self.fd, struct.pack(_FORMATS[width], value), offset)
        except OSError as e:
            hint = None
            if e.errno == errno_mod.EPERM:
                hint = "kernel lockdown (secure boot) forbids config writes from userspace"
                raise PermissionDeniedError(
                    f"config write at 0x{offset:x} refused: {e.strerror}",
                    errno=e.errno,
                    path=self.path,
                    device=self.name,
                    hint=hint,
                ) from None
            raise ConfigSpaceError(
                f"config write at 0x{offset:x} failed: {e.strerror}",
                errno=e.errno,
                path=self.path,
                device=self.name,
            ) from None
        if n != width:
            raise ConfigSpaceError(
                f"short config write at 0x{offset:x}", path=self.path, device=self.name
            )

    def _read_span(self, offset: int, length: int) -> bytes:
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as e:
            raise ConfigSpaceError(
                f"reading {length} config bytes at 0x{offset:x} failed: {e.strerror}",
                errno=e.errno,
                path=self.path,
                device=self.name,
            ) from None
        if len(data) != length:
            raise ConfigSpaceError(
                f"short config read at 0x{offset:x} ({len(data)} of {length} bytes)",
                path=self.path,
                device=self.name,
            )
        return data

    def close(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)
            self.fd = -1
