"""The emulated DOE mailbox: registers that behave like hardware, plus fault knobs.

State machine (PCIe r6.0 6.30): software writes an object dword by dword into WRITE, then sets
GO. The mailbox is BUSY while it "processes" (``busy_reads`` STATUS reads and ``latency``
seconds), then DATA_OBJECT_READY rises and READ shows the response's current dword; a write to
READ pops it. ABORT clears everything, ERROR included. Malformed input (a length field that
disagrees with the dwords written, an unknown protocol, writes while BUSY) sets ERROR, as a
strict device would. Discovery (0001:00) is answered here; other protocols go to handlers.

Fault knobs (:data:`FAULTS`) make the mailbox misbehave for ``fault_count`` exchanges after
``fault_after`` good ones, so tests can check that each fault gives a clean error within the
timeout and that the mailbox works again after the abort pciauth issues.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pciauth.doe.mailbox import (
    CTRL_ABORT,
    CTRL_GO,
    CTRL_INT_EN,
    LENGTH_MASK,
    PCI_EXT_CAP_ID_DOE,
    REG_CAP,
    REG_CTRL,
    REG_HEADER,
    REG_READ,
    REG_STATUS,
    REG_WRITE,
    STATUS_BUSY,
    STATUS_ERROR,
    STATUS_READY,
    TYPE_DISCOVERY,
    VENDOR_PCISIG,
    bytes_to_dwords,
    decode_length,
)
from pciauth.errors import UsageError

#: fault name -> what the device does.
FAULTS: dict[str, str] = {
    "stuck_busy": "BUSY stays set after GO until software aborts",
    "error": "ERROR is set halfway through the request's dwords",
    "never_ready": "BUSY clears after GO but no response ever appears",
    "wrong_length": "the response length field claims 4 more dwords than the device sends",
    "short_length": "the response length field claims 1 dword fewer than the device sends",
    "huge_length": "the response length field is 0 (2^18 dwords, 1 MiB)",
    "wrong_type": "the response carries another data object type than the request",
    "error_on_read": "ERROR is set (and the response dropped) halfway through reading it",
}

#: A protocol handler: request payload bytes -> response payload bytes.
Handler = Callable[[bytes], bytes]


@dataclass
class FaultPlan:
    """Which fault, for how many exchanges (-1: forever), after how many good ones."""

    fault: str | None = None
    count: int = 1
    after: int = 0

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise UsageError(f"unknown DOE fault {self.fault!r}; known: {', '.join(FAULTS)}")

    def take(self) -> str | None:
        """The fault for the exchange starting now (consumes it)."""
        if self.fault is None or self.count == 0:
            return None
        if self.after > 0:
            self.after -= 1
            return None
        if self.count > 0:
            self.count -= 1
        return self.fault


class EmulatedDoe:
    """One DOE mailbox's registers (a :class:`~pciauth.emu.config.RegisterHook`)."""

    def __init__(
        self,
        protocols: list[tuple[int, int]],
        handlers: dict[tuple[int, int], Handler],
        *,
        version: int = 2,
        next_cap: int = 0,
        busy_reads: int = 1,
        latency: float = 0.0,
        buffer_dwords: int = 4096,
        faults: FaultPlan | None = None,
    ) -> None:
        self.protocols = list(protocols)
        self.handlers = dict(handlers)
        self.version = version
        self.next_cap = next_cap
        self.busy_reads = busy_reads
        self.latency = latency
        self.buffer_dwords = buffer_dwords
        self.faults = faults or FaultPlan()
        self.int_en = False
        self.exchanges = 0
        self.aborts = 0
        self._reset()

    def _reset(self) -> None:
        self.request: list[int] = []
        self.response: list[int] = []
        self.read_pos = 0
        self.error = False
        self.busy = False
        self.stuck = False  # stuck_busy: BUSY until abort
        self.pending: list[int] | None = None  # computed response, shown once not busy
        self.busy_left = 0
        self.busy_until = 0.0
        self.fault: str | None = None
        self._error_at = -1

    # -- RegisterHook ------------------------------------------------------------------------
    def peek_reg(self, reg: int) -> int:
        if reg == REG_HEADER:
            return PCI_EXT_CAP_ID_DOE | (self.version << 16) | (self.next_cap << 20)
        if reg == REG_CAP:
            return 0  # no interrupt support
        if reg == REG_CTRL:
            return CTRL_INT_EN if self.int_en else 0
        if reg == REG_STATUS:
            return self._status_bits()
        if reg == REG_READ:
            return self.response[self.read_pos] if self._ready() else 0
        return 0  # WRITE reads as 0

    def read_reg(self, reg: int) -> int:
        if reg == REG_STATUS:
            self._advance()
        return self.peek_reg(reg)

    def write_reg(self, reg: int, value: int, byte_mask: int) -> None:
        if reg == REG_CTRL:
            self._write_ctrl(value, byte_mask)
        elif reg == REG_WRITE:
            if byte_mask != 0xF:
                self.error = True  # partial writes to the data mailbox are not allowed
            else:
                self._write_data(value)
        elif reg == REG_READ:
            self._pop()
        # header, CAP, STATUS: read only (STATUS has no RW1C bits without interrupts)

    # -- behaviour ---------------------------------------------------------------------------
    def _status_bits(self) -> int:
        bits = 0
        if self.busy or self.stuck:
            bits |= STATUS_BUSY
        if self.error:
            bits |= STATUS_ERROR
        if self._ready():
            bits |= STATUS_READY
        return bits

    def _ready(self) -> bool:
        return not (self.busy or self.stuck or self.error) and self.read_pos < len(self.response)

    def _advance(self) -> None:
        """A STATUS read: time passes for the device."""
        if not self.busy:
            return
        if self.busy_left > 0:
            self.busy_left -= 1  # this read still sees BUSY
            return
        if time.monotonic() < self.busy_until:
            return
        self.busy = False
        if self.pending is not None:
            self.response, self.read_pos, self.pending = self.pending, 0, None

    def _write_ctrl(self, value: int, byte_mask: int) -> None:
        if byte_mask & 0x1:
            self.int_en = bool(value & CTRL_INT_EN)
            if value & CTRL_ABORT:
                self.aborts += 1
                self._reset()
                return
        if byte_mask & 0x8 and value & CTRL_GO:
            self._go()

    def _write_data(self, value: int) -> None:
        if self.busy or self.stuck or self.error or self._ready():
            self.error = True  # a write while busy or with a response pending
            return
        if len(self.request) >= self.buffer_dwords:
            self.error = True
            return
        self.request.append(value)
        if len(self.request) == 2:
            self.fault = self.faults.take()
        if self.fault == "error" and len(self.request) >= 2:
            expected = decode_length(self.request[1])
            if len(self.request) >= max(2, (expected + 1) // 2):
                self.error = True

    def _go(self) -> None:
        if self.error or self.busy or self.stuck:
            return
        request, self.request = self.request, []
        if len(request) < 2 or decode_length(request[1]) != len(request):
            self.error = True
            return
        self.exchanges += 1
        fault = self.fault
        self.fault = None
        vendor, type_ = request[0] & 0xFFFF, (request[0] >> 16) & 0xFF
        payload = request[2:]
        response = self._respond(vendor, type_, payload)
        if response is None:
            self.error = True
            return
        self.busy = True
        self.busy_left = self.busy_reads
        self.busy_until = time.monotonic() + self.latency
        if fault == "stuck_busy":
            self.stuck = True
            return
        if fault == "never_ready":
            return  # busy clears, nothing shows up
        self.pending = self._apply_response_fault(fault, response)
        if fault == "error_on_read":
            self._error_at = len(response) // 2
        else:
            self._error_at = -1

    def _respond(self, vendor: int, type_: int, payload: list[int]) -> list[int] | None:
        if (vendor, type_) == (VENDOR_PCISIG, TYPE_DISCOVERY):
            body = self._discovery(payload)
        else:
            handler = self.handlers.get((vendor, type_))
            if handler is None or (vendor, type_) not in self.protocols:
                return None
            data = b"".join(d.to_bytes(4, "little") for d in payload)
            try:
                out = handler(data)
            except Exception:  # a device that fails internally sets ERROR
                return None
            body = bytes_to_dwords(out)
        if body is None:
            return None
        length = len(body) + 2
        if length > LENGTH_MASK + 1:
            return None
        return [vendor | (type_ << 16), length & LENGTH_MASK, *body]

    def _discovery(self, payload: list[int]) -> list[int] | None:
        if not payload:
            return None
        index = payload[0] & 0xFF
        if index >= len(self.protocols):
            return None
        vendor, type_ = self.protocols[index]
        nxt = index + 1 if index + 1 < len(self.protocols) else 0
        return [vendor | (type_ << 16) | (nxt << 24)]

    @staticmethod
    def _apply_response_fault(fault: str | None, response: list[int]) -> list[int]:
        response = list(response)
        if fault == "wrong_length":
            response[1] = (len(response) + 4) & LENGTH_MASK
        elif fault == "short_length" and len(response) > 2:
            response[1] = len(response) - 1
        elif fault == "huge_length":
            response[1] = 0
        elif fault == "wrong_type":
            response[0] ^= 0x80 << 16
        return response

    def _pop(self) -> None:
        if not self._ready():
            return
        self.read_pos += 1
        if self.read_pos == self._error_at:
            self.error = True
            self.response, self.read_pos = [], 0
            return
        if self.read_pos >= len(self.response):
            self.response, self.read_pos = [], 0
