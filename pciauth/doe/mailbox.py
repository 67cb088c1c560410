"""The PCIe DOE (Data Object Exchange) mailbox driver, over any ConfigSpace.

A DOE mailbox is an extended capability (id 0x2E) with six registers (FACTS.md §2). One data
object goes out dword by dword through WRITE, GO starts the device, and the response comes back
through READ, one dword per read, popped by writing READ. pciauth drives it from userspace
through whatever ConfigSpace it has: the sysfs ``config`` file, the VFIO config region, or the
emulated device. The rules it follows are the kernel's (drivers/pci/doe.c), made stricter:

- abort once before the first exchange, and after any ERROR or timeout;
- wait (bounded) for BUSY to clear before writing;
- poll DATA_OBJECT_READY within the 1 s spec timeout (``timeout``), spinning briefly, then
  backing off (:mod:`pciauth.doe.polling`); ``clock`` and ``sleep`` (the real
  ``time.monotonic`` and ``time.sleep`` by default) are what that polling reads and waits with,
  so tests and fuzz harnesses run a wedged mailbox's timeouts on a fake clock, instantly;
- every length from the device is checked: 0 means 2^18 dwords, anything above
  ``max_object_dwords`` is refused before a single payload dword is read;
- the response's vendor and type must be the request's; DATA_OBJECT_READY must still be set
  before the last pop, and clear after it (otherwise the length field lied).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import NamedTuple

from pciauth.doe.polling import DEFAULT_BACKOFF, Backoff, poll_until
from pciauth.errors import DoeError, DoeTimeout, MalformedData, NotFoundError, UsageError
from pciauth.pci.config import ConfigSpace

PCI_EXT_CAP_ID_DOE = 0x2E

# Registers, relative to the capability.
REG_HEADER = 0x00
REG_CAP = 0x04
REG_CTRL = 0x08
REG_STATUS = 0x0C
REG_WRITE = 0x10
REG_READ = 0x14
CAP_SIZE = 0x18

CTRL_ABORT = 1 << 0
CTRL_INT_EN = 1 << 1
CTRL_GO = 1 << 31

STATUS_BUSY = 1 << 0
STATUS_INT = 1 << 1
STATUS_ERROR = 1 << 2
STATUS_READY = 1 << 31

CAP_INT_SUPPORT = 1 << 0

VENDOR_PCISIG = 0x0001
VENDOR_CXL = 0x1E98
TYPE_DISCOVERY = 0
TYPE_CMA = 1
TYPE_SECURED_CMA = 2
TYPE_CXL_CDAT = 2

#: The largest object the length field can describe (length 0): 2^18 dwords, 1 MiB.
MAX_OBJECT_DWORDS = 1 << 18
#: pciauth's default bound on a response; SPDM needs far less. ``max_object_dwords`` changes it.
DEFAULT_MAX_OBJECT_DWORDS = 1 << 16
LENGTH_MASK = MAX_OBJECT_DWORDS - 1

#: The spec's response timeout (PCIe r6.0 6.30.2).
SPEC_TIMEOUT = 1.0

#: Names of the protocols pciauth knows, keyed by (vendor, type).
PROTOCOL_NAMES: dict[tuple[int, int], str] = {
    (VENDOR_PCISIG, TYPE_DISCOVERY): "DOE discovery",
    (VENDOR_PCISIG, TYPE_CMA): "CMA/SPDM",
    (VENDOR_PCISIG, TYPE_SECURED_CMA): "secured CMA/SPDM",
    (VENDOR_CXL, 0): "CXL compliance",
    (VENDOR_CXL, TYPE_CXL_CDAT): "CXL table access (CDAT)",
}


class DoeProtocol(NamedTuple):
    """One protocol a mailbox supports, as discovery reports it: a ``(vendor, type)`` pair."""

    vendor: int
    type: int

    @property
    def name(self) -> str:
        return PROTOCOL_NAMES.get((self.vendor, self.type), "unknown")

    def __str__(self) -> str:
        return f"{self.vendor:04x}:{self.type:02x}"

    def to_dict(self) -> dict:
        return {"vendor": self.vendor, "type": self.type, "id": str(self), "name": self.name}


CMA = DoeProtocol(VENDOR_PCISIG, TYPE_CMA)
SECURED_CMA = DoeProtocol(VENDOR_PCISIG, TYPE_SECURED_CMA)


def object_header(vendor: int, type_: int, length_dwords: int) -> tuple[int, int]:
    """The two header dwords of a data object of ``length_dwords`` (header included)."""
    if not 2 <= length_dwords <= MAX_OBJECT_DWORDS:
        raise UsageError(f"a DOE object is 2..{MAX_OBJECT_DWORDS} dwords, not {length_dwords}")
    return (vendor & 0xFFFF) | ((type_ & 0xFF) << 16), length_dwords & LENGTH_MASK


def decode_length(dword: int) -> int:
    """The object length in dwords from the second header dword (0 means 2^18)."""
    length = dword & LENGTH_MASK
    return length or MAX_OBJECT_DWORDS


def bytes_to_dwords(payload: bytes) -> list[int]:
    """Little-endian dwords of ``payload``, zero-padded to a dword boundary."""
    padded = bytes(payload) + b"\0" * (-len(payload) % 4)
    return list(struct.unpack(f"<{len(padded) // 4}I", padded))


def dwords_to_bytes(dwords: list[int]) -> bytes:
    return struct.pack(f"<{len(dwords)}I", *dwords)


def _idle(status: int) -> bool:
    return not status & (STATUS_BUSY | STATUS_ERROR | STATUS_READY)


def _ready_or_error(status: int) -> bool:
    return bool(status & (STATUS_READY | STATUS_ERROR))


class DoeMailbox:
    """One DOE mailbox at ``offset`` in ``cfg``.

    ``exchange_object(vendor, type, payload)`` sends one object and returns the response
    payload (dword padded, header stripped). Not thread safe; across processes, hold a
    :class:`pciauth.doe.lock.MailboxLock` for the device.
    """

    def __init__(
        self,
        cfg: ConfigSpace,
        offset: int,
        *,
        timeout: float = SPEC_TIMEOUT,
        max_object_dwords: int = DEFAULT_MAX_OBJECT_DWORDS,
        backoff: Backoff = DEFAULT_BACKOFF,
        version: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``version``: the capability version when the offset comes from another view of
        config space (sysfs, for a VFIO config region that hides the DOE header).

        ``clock`` (seconds, monotonic) and ``sleep(seconds)`` time every wait on the mailbox
        (``timeout`` is measured on ``clock``); pass a fake pair to test timeouts without waiting.
        A fake ``clock`` must move forward a little on every reading, as a real one does between
        polls: the polling spins (no sleep) for its first microseconds.
        """
        if not 2 <= max_object_dwords <= MAX_OBJECT_DWORDS:
            raise UsageError(f"max_object_dwords must be 2..{MAX_OBJECT_DWORDS}, not {max_object_dwords}")
        if timeout <= 0:
            raise UsageError(f"DOE timeout must be positive, not {timeout}")
        if offset < 0x100 or offset % 4 or offset + CAP_SIZE > cfg.size:
            raise UsageError(
                f"no room for a DOE capability at 0x{offset:x} in {cfg.size} bytes of config space",
                device=cfg.name,
            )
        self.cfg = cfg
        self.offset = offset
        self.timeout = timeout
        self.max_object_dwords = max_object_dwords
        self.backoff = backoff
        self.clock = clock
        self.sleep = sleep
        if version is None:
            header = cfg.read32(offset + REG_HEADER)
            if header & 0xFFFF != PCI_EXT_CAP_ID_DOE:
                raise NotFoundError(
                    f"no DOE capability at 0x{offset:x} (capability id 0x{header & 0xFFFF:04x})",
                    device=cfg.name,
                )
            version = (header >> 16) & 0xF
        self.version = version
        self.capabilities = cfg.read32(offset + REG_CAP)
        self._aborted_once = False
        self._protocols: list[DoeProtocol] | None = None

    @property
    def name(self) -> str:
        return f"{self.cfg.name} DOE@0x{self.offset:03x}"

    def _status(self) -> int:
        return self.cfg.read32(self.offset + REG_STATUS)

    def _poll(self, done: Callable[[int], bool]) -> tuple[bool, int, int]:
        """Poll STATUS until ``done(status)`` or the timeout: ``(satisfied, status, polls)``."""
        return poll_until(self._status, done, self.timeout, self.backoff, clock=self.clock, sleep=self.sleep)

    # -- abort -----------------------------------------------------------------------------
    def abort(self) -> None:
        """Abort whatever the mailbox is doing and wait (bounded) until it is idle."""
        self.cfg.write32(self.offset + REG_CTRL, CTRL_ABORT)
        idle, status, _ = self._poll(_idle)
        self._aborted_once = True
        if not idle:
            raise DoeTimeout(
                f"{self.name}: abort did not complete within {self.timeout:g} s "
                f"(status 0x{status:08x})",
                device=self.cfg.name,
                hint="the device's DOE mailbox is wedged: a reset of the function may be needed",
            )

    def _fail(self, exc_type: type[DoeError], message: str, **kw) -> DoeError:
        """Abort (best effort) and build the error to raise."""
        try:
            self.abort()
        except DoeError as e:
            message += f"; the abort that followed failed too ({e.message})"
        return exc_type(f"{self.name}: {message}", device=self.cfg.name, **kw)

    # -- one exchange ----------------------------------------------------------------------
    def exchange_dwords(self, vendor: int, type_: int, payload: list[int]) -> list[int]:
        """Send one object with ``payload`` dwords; return the response payload dwords."""
        length = len(payload) + 2
        if length > min(self.max_object_dwords, MAX_OBJECT_DWORDS):
            raise UsageError(
                f"{self.name}: request of {length} dwords exceeds the bound of {self.max_object_dwords}"
            )
        if not self._aborted_once:
            self.abort()
        try:
            return self._exchange(vendor, type_, payload, length)
        except DoeError:
            raise  # already aborted
        except BaseException:
            # Interrupted (Ctrl-C) or the config space failed mid-object: never leave the
            # mailbox half-written for the next user. Best effort, one try.
            try:
                self.cfg.write32(self.offset + REG_CTRL, CTRL_ABORT)
            except Exception:  # the original error matters more
                pass
            self._aborted_once = False
            raise

    def _exchange(self, vendor: int, type_: int, payload: list[int], length: int) -> list[int]:
        self._wait_idle()
        h1, h2 = object_header(vendor, type_, length)
        cfg, write_reg = self.cfg, self.offset + REG_WRITE
        cfg.write32(write_reg, h1)
        cfg.write32(write_reg, h2)
        for dword in payload:
            cfg.write32(write_reg, dword)
        cfg.write32(self.offset + REG_CTRL, CTRL_GO)
        self._wait_ready()
        return self._read_response(vendor, type_)

    def exchange_object(self, vendor: int, type_: int, payload: bytes) -> bytes:
        """Send ``payload`` (zero-padded to dwords) as one object; return the response payload."""
        return dwords_to_bytes(self.exchange_dwords(vendor, type_, bytes_to_dwords(payload)))

    def _wait_idle(self) -> None:
        ok, status, _ = self._poll(_idle)
        if ok:
            return
        if status & STATUS_BUSY:
            raise self._fail(
                DoeTimeout,
                f"mailbox stayed BUSY for {self.timeout:g} s before sending (another agent may be using it)",
                hint="check that no driver uses this mailbox; pciauth aborted it",
            )
        # ERROR or a stale response: abort clears both; then it must be idle.
        self.abort()

    def _wait_ready(self) -> None:
        ok, status, _ = self._poll(_ready_or_error)
        if ok and status & STATUS_ERROR:
            raise self._fail(DoeError, f"the device set ERROR for the request (status 0x{status:08x})")
        if not ok:
            if status & STATUS_BUSY:
                what = f"mailbox stayed BUSY for {self.timeout:g} s after GO"
            else:
                what = f"no response (DATA_OBJECT_READY never set) within {self.timeout:g} s"
            raise self._fail(DoeTimeout, what)

    def _read_response(self, vendor: int, type_: int) -> list[int]:
        cfg, read_reg = self.cfg, self.offset + REG_READ
        h1 = cfg.read32(read_reg)
        cfg.write32(read_reg, 0)
        h2 = cfg.read32(read_reg)
        length = decode_length(h2)
        got = (h1 & 0xFFFF, (h1 >> 16) & 0xFF)
        if got != (vendor, type_):
            raise self._fail(
                DoeError,
                f"response is object {got[0]:04x}:{got[1]:02x}, the request was {vendor:04x}:{type_:02x}",
            )
        if length < 2:
            raise self._fail(DoeError, f"response length field {length} is shorter than its header")
        if length > self.max_object_dwords:
            raise self._fail(
                DoeError,
                f"response length field says {length} dwords, above the bound of {self.max_object_dwords}",
            )
        if length == 2:
            self._check_ready_before_last_pop(length)
        cfg.write32(read_reg, 0)
        payload = [0] * (length - 2)
        last = length - 1
        for i in range(2, length):
            payload[i - 2] = cfg.read32(read_reg)
            if i == last:
                self._check_ready_before_last_pop(length)
            cfg.write32(read_reg, 0)
        status = self._status()
        if status & STATUS_ERROR:
            raise self._fail(DoeError, "the device set ERROR while the response was read")
        if status & STATUS_READY:
            raise self._fail(
                DoeError,
                f"the device has more data than the response length field ({length} dwords) says",
            )
        return payload

    def _check_ready_before_last_pop(self, length: int) -> None:
        status = self._status()
        if status & STATUS_ERROR:
            raise self._fail(DoeError, "the device set ERROR while the response was read")
        if not status & STATUS_READY:
            raise self._fail(
                DoeError,
                f"the response ended before the {length} dwords its length field promised "
                "(DATA_OBJECT_READY cleared early)",
            )

    # -- discovery -------------------------------------------------------------------------
    def discover(self) -> list[DoeProtocol]:
        """Every protocol this mailbox supports, following the discovery index chain."""
        if self._protocols is not None:
            return list(self._protocols)
        protocols: list[DoeProtocol] = []
        seen: set[int] = set()
        index = 0
        request_version = 2 if self.version >= 2 else 0
        while True:
            seen.add(index)
            response = self.exchange_dwords(
                VENDOR_PCISIG, TYPE_DISCOVERY, [index | (request_version << 8)]
            )
            if not response:
                raise MalformedData(
                    f"{self.name}: empty discovery response for index {index}",
                    field="discovery response",
                    device=self.cfg.name,
                )
            entry = response[0]
            protocols.append(DoeProtocol(entry & 0xFFFF, (entry >> 16) & 0xFF))
            next_index = entry >> 24
            if next_index == 0:
                break
            if next_index in seen:
                raise MalformedData(
                    f"{self.name}: discovery next index {next_index} loops back",
                    field="discovery next index",
                    device=self.cfg.name,
                )
            index = next_index
        self._protocols = protocols
        return list(protocols)

    def supports(self, protocol: DoeProtocol) -> bool:
        return protocol in self.discover()

    def to_dict(self) -> dict:
        return {
            "offset": self.offset,
            "version": self.version,
            "interrupt_support": bool(self.capabilities & CAP_INT_SUPPORT),
            "protocols": [p.to_dict() for p in self.discover()],
        }


def find_doe_offsets(cfg: ConfigSpace) -> list[int]:
    """Offsets of every DOE extended capability in ``cfg`` (walked with a loop guard)."""
    try:
        from pciauth.pci.capabilities import find_extended
    except ImportError:  # the PCI model not there yet: a minimal walk
        return _walk_doe(cfg)
    return list(find_extended(cfg, PCI_EXT_CAP_ID_DOE))


def _walk_doe(cfg: ConfigSpace) -> list[int]:
    found: list[int] = []
    offset, seen = 0x100, set()
    while offset and offset + 4 <= cfg.size and offset not in seen and offset >= 0x100:
        seen.add(offset)
        header = cfg.read32(offset)
        if header in (0, 0xFFFFFFFF):
            break
        if header & 0xFFFF == PCI_EXT_CAP_ID_DOE:
            found.append(offset)
        offset = (header >> 20) & 0xFFC
    return found


def open_mailboxes(
    cfg: ConfigSpace,
    offsets: list[int] | None = None,
    versions: dict[int, int] | None = None,
    **kw,
) -> list[DoeMailbox]:
    """A :class:`DoeMailbox` for each DOE capability (``offsets``, else walked in ``cfg``).

    ``versions`` (offset -> capability version) come with offsets read from another view of
    config space; the headers in ``cfg`` are then not checked (vfio-pci hides them).
    """
    if offsets is None:
        offsets = find_doe_offsets(cfg)
    versions = versions or {}
    return [DoeMailbox(cfg, off, version=versions.get(off), **kw) for off in offsets]


def find_mailbox(mailboxes: list[DoeMailbox], protocol: DoeProtocol = CMA) -> DoeMailbox:
    """The first mailbox that supports ``protocol`` (CMA/SPDM by default)."""
    for mb in mailboxes:
        if protocol in mb.discover():
            return mb
    where = ", ".join(f"0x{mb.offset:03x}" for mb in mailboxes) or "none"
    raise NotFoundError(
        f"no DOE mailbox supports {protocol} ({protocol.name}); mailboxes: {where}",
        hint="the device may not support CMA/SPDM authentication" if protocol == CMA else None,
    )
