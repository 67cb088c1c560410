"""The one narrow seam through which pciauth talks to VFIO and iommufd.

Every open, close, ioctl, mmap, pread and pwrite on ``/dev/vfio/*``, ``/dev/iommu``
and VFIO device file descriptors goes through the module functions below, which
delegate to the current :class:`Kernel`. The real one calls the operating system;
tests install a fake kernel (``use_kernel(FakeKernel())``) that models iommufd and
type1 semantics, so the IOMMU backends run on machines with no VFIO at all.

Failures raise :class:`OSError` with the errno; the callers (``pciauth.iommu``,
``pciauth.vfio``) turn it into an error named after the failing step.
"""

from __future__ import annotations

import contextlib
import mmap as _mmap
import os
from collections.abc import Iterator
from typing import Any, Protocol


class Kernel(Protocol):
    """What pciauth needs from the kernel for VFIO and iommufd."""

    def exists(self, path: str) -> bool: ...

    def open(self, path: str, flags: int) -> int: ...

    def close(self, fd: int) -> None: ...

    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        """``arg``: a cffi pointer (struct or array), an int, or bytes (a C string)."""
        ...

    def mmap(self, fd: int, length: int, offset: int, *, writable: bool) -> Any:
        """A mapping that supports the buffer protocol; release it with :meth:`munmap`."""
        ...

    def munmap(self, mapping: Any) -> None: ...

    def pread(self, fd: int, length: int, offset: int) -> bytes: ...

    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...


class RealKernel:
    """The running kernel: os calls and the compiled ioctl wrappers of ``pciauth._uapi``."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        from pciauth.uapi.structs import ffi, lib

        if isinstance(arg, int):
            r = lib.pciauth_ioctl_int(fd, request, arg)
        elif isinstance(arg, (bytes, bytearray)):
            cstr = ffi.new("char[]", bytes(arg))
            r = lib.pciauth_ioctl_ptr(fd, request, cstr)
        else:
            r = lib.pciauth_ioctl_ptr(fd, request, arg)
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        return r

    def mmap(self, fd: int, length: int, offset: int, *, writable: bool) -> Any:
        prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if writable else 0)
        return _mmap.mmap(fd, length, flags=_mmap.MAP_SHARED, prot=prot, offset=offset)

    def munmap(self, mapping: Any) -> None:
        mapping.close()

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        return os.pread(fd, length, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)


_kernel: Kernel = RealKernel()


def get_kernel() -> Kernel:
    """The kernel every call below goes to."""
    return _kernel


def set_kernel(kernel: Kernel) -> Kernel:
    """Replace the kernel (tests); returns the previous one."""
    global _kernel
    previous, _kernel = _kernel, kernel
    return previous


@contextlib.contextmanager
def use_kernel(kernel: Kernel) -> Iterator[Kernel]:
    """Run a block against ``kernel`` (a fake in tests), then put the previous one back."""
    previous = set_kernel(kernel)
    try:
        yield kernel
    finally:
        set_kernel(previous)


def exists(path: str) -> bool:
    return _kernel.exists(path)


def open(path: str, flags: int = os.O_RDWR) -> int:
    return _kernel.open(path, flags)


def close(fd: int) -> None:
    _kernel.close(fd)


def ioctl(fd: int, request: int, arg: Any = 0) -> int:
    return _kernel.ioctl(fd, request, arg)


def mmap(fd: int, length: int, offset: int, *, writable: bool = True) -> Any:
    return _kernel.mmap(fd, length, offset, writable=writable)


def munmap(mapping: Any) -> None:
    _kernel.munmap(mapping)


def pread(fd: int, length: int, offset: int) -> bytes:
    return _kernel.pread(fd, length, offset)


def pwrite(fd: int, data: bytes, offset: int) -> int:
    return _kernel.pwrite(fd, data, offset)
