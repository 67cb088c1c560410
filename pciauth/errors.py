"""The one exception hierarchy of pciauth, and its mapping to exit codes.

Every error pciauth raises on purpose derives from :class:`PciauthError`. Each
carries an ``errno`` (when a system call failed), the ``device`` and ``path``
involved, and an optional ``hint`` that tells the user what to do. The command
line turns an error into one line on stderr and the exit code of its class, in
:func:`exit_code_for`; nothing else in pciauth decides exit codes.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; stable, documented in the README."""

    OK = 0
    INTERNAL = 1  # a bug in pciauth: please report it
    USAGE = 2  # bad command line or bad argument value
    NOT_FOUND = 3  # no such device, file or mailbox
    PERMISSION = 4  # needs root, or lockdown forbids it
    DEVICE = 5  # device, transport or protocol failure: could not talk
    VERIFICATION = 6  # talked fine, but not authenticated / data mismatch / differs from reference
    HOST = 7  # the host is not ready (IOMMU off, vfio missing, memlock): see `pciauth doctor`
    REFUSED = 8  # unsafe or conflicting action refused (device in use, mailbox locked): --force


class PciauthError(Exception):
    """Base of every pciauth error.

    ``message`` is one line that says what failed. ``hint`` says what to do.
    """

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        errno: int | None = None,
        device: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.device = device
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        prefix = f"{self.device}: " if self.device and self.device not in self.message else ""
        return prefix + self.message

    def to_dict(self) -> dict:
        """The JSON form used by ``--json`` output on failure."""
        return {
            "type": type(self).__name__,
            "message": str(self),
            "exit_code": int(self.exit_code),
            "errno": self.errno,
            "device": self.device,
            "path": self.path,
            "hint": self.hint,
        }


class UsageError(PciauthError, ValueError):
    """A caller mistake: bad argument, bad selector, bad option combination."""

    exit_code = ExitCode.USAGE


class NotFoundError(PciauthError):
    """A device, mailbox, file or protocol that does not exist."""

    exit_code = ExitCode.NOT_FOUND


class DeviceNotFound(NotFoundError):
    """No PCI device matches the given address or selector."""


class PermissionDeniedError(PciauthError):
    """Not allowed: needs root, a capability, or kernel lockdown forbids it."""

    exit_code = ExitCode.PERMISSION


class DeviceError(PciauthError):
    """The device, its transport or the protocol on it failed."""

    exit_code = ExitCode.DEVICE


class ConfigSpaceError(DeviceError):
    """Reading or writing PCI config space failed or went out of bounds."""


class MalformedData(DeviceError):
    """Bytes from a device, socket or file break the format; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.field = field


class TransportError(DeviceError):
    """A transport (DOE mailbox, socket, pipe) failed to carry a message."""


class ProtocolError(DeviceError):
    """The peer broke the protocol (SPDM, DOE): wrong code, wrong order, error response."""


class DoeError(TransportError):
    """The DOE mailbox misbehaved (ERROR bit, stuck BUSY, bad length)."""


class DoeTimeout(DoeError):
    """The DOE mailbox did not answer within its timeout."""


class SpdmError(ProtocolError):
    """An SPDM exchange failed; ``request`` and ``error_code`` when known."""


class VfioError(DeviceError):
    """A VFIO ioctl or sysfs step failed; ``step`` names it."""

    def __init__(self, message: str, *, step: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.step = step


class IommuError(VfioError):
    """An IOMMU backend operation (map, unmap, attach, ...) failed."""


class DmaError(DeviceError):
    """A DMA did not complete, or faulted."""


class BindError(VfioError):
    """Binding or restoring a driver failed."""


class VerificationError(PciauthError):
    """We talked to the device, but it did not prove what it claims."""

    exit_code = ExitCode.VERIFICATION


class SignatureError(VerificationError):
    """A signature did not verify."""


class CertificateError(VerificationError):
    """A certificate chain check failed; ``check`` names which one."""

    def __init__(self, message: str, *, check: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.check = check


class DataMismatch(VerificationError):
    """DMA data, a measurement or a reference value differs from what was expected."""


class HostNotReady(PciauthError):
    """The host lacks something (IOMMU, vfio-pci, iommufd, memlock): see ``pciauth doctor``."""

    exit_code = ExitCode.HOST


class RefusedError(PciauthError):
    """An unsafe or conflicting action refused; ``--force`` overrides where that is safe enough."""

    exit_code = ExitCode.REFUSED


class DeviceBusy(RefusedError):
    """The device or its mailbox is in use by the kernel or another pciauth process."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map any exception to the process exit code; the only place that does."""
    if isinstance(exc, PciauthError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERNAL
    if isinstance(exc, PermissionError):
        return ExitCode.PERMISSION
    if isinstance(exc, FileNotFoundError):
        return ExitCode.NOT_FOUND
    return ExitCode.INTERNAL
