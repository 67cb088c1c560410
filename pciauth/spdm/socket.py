"""The DMTF spdm-emu socket protocol, both sides, with PCI_DOE framing (FACTS.md §6).

Every TCP frame, both directions, is::

    u32 BE command      NORMAL 1, SHUTDOWN 0xFFFE, UNKNOWN 0xFFFF, TEST 0xDEAD, ...
    u32 BE transport    NONE 0, MCTP 1, PCI_DOE 2
    u32 BE size         payload bytes (bounded here by ``max_payload``: an oversized size field
                        is an error, never an allocation)
    payload             for PCI_DOE a whole DOE data object, header included

Client: :class:`SocketTransport` implements the Transport seam (``pciauth auth --socket``): it
wraps each SPDM message in a DOE object (vendor 0x0001, type 1; type 2 for a secured message) and
checks the DOE header of the answer. :meth:`SocketTransport.discover` runs DOE discovery when it
talks straight to an spdm-emu responder (behind QEMU, QEMU answers discovery itself).

Server: :class:`ResponderServer` (``pciauth responder --listen``; in :mod:`socket_server`)
serves spdm-emu requesters and QEMU's NVMe ``spdm_port``.

Like a DOE mailbox, a PCI_DOE answer is padded to a dword: the message returned by
``exchange`` may end in up to three zero bytes (SPDM parsers size messages from their fields).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
from typing import Any

from pciauth.errors import MalformedData, ProtocolError, TransportError, UsageError

COMMAND_NORMAL = 0x0001
COMMAND_OOB_ENCAP_KEY_UPDATE = 0x8001
COMMAND_CONTINUE = 0xFFFD
COMMAND_SHUTDOWN = 0xFFFE
COMMAND_UNKNOWN = 0xFFFF
COMMAND_TEST = 0xDEAD
COMMAND_NAMES = {
    COMMAND_NORMAL: "NORMAL",
    COMMAND_OOB_ENCAP_KEY_UPDATE: "OOB_ENCAP_KEY_UPDATE",
    COMMAND_CONTINUE: "CONTINUE",
    COMMAND_SHUTDOWN: "SHUTDOWN",
    COMMAND_UNKNOWN: "UNKNOWN",
    COMMAND_TEST: "TEST",
}

TRANSPORT_NONE = 0
TRANSPORT_MCTP = 1
TRANSPORT_PCI_DOE = 2
TRANSPORT_NAMES = {TRANSPORT_NONE: "none", TRANSPORT_MCTP: "mctp", TRANSPORT_PCI_DOE: "pci-doe"}

DEFAULT_PORT = 2323
CLIENT_HELLO = b"Client Hello!\0"
SERVER_HELLO = b"Server Hello!\0"
FRAME_HEADER = struct.Struct(">III")
#: Largest accepted payload: a maximal DOE object (2^18 dwords = 1 MiB) plus slack.
DEFAULT_MAX_PAYLOAD = (1 << 20) + 64

# PCIe DOE data objects (FACTS.md §2).
DOE_VENDOR_PCISIG = 0x0001
DOE_TYPE_DISCOVERY = 0
DOE_TYPE_CMA = 1
DOE_TYPE_SECURED_CMA = 2
DOE_HEADER_SIZE = 8
DOE_MAX_DWORDS = 1 << 18
#: What a CMA-capable DOE mailbox lists in discovery, in index order.
DEFAULT_DISCOVERY = (
    (DOE_VENDOR_PCISIG, DOE_TYPE_DISCOVERY),
    (DOE_VENDOR_PCISIG, DOE_TYPE_CMA),
    (DOE_VENDOR_PCISIG, DOE_TYPE_SECURED_CMA),
)
MAX_DISCOVERY_ENTRIES = 256

# MCTP message types for SPDM (DSP0275): the one byte in front of the message.
MCTP_TYPE_SPDM = 0x05
MCTP_TYPE_SECURED_SPDM = 0x06


class OversizedFrame(TransportError):
    """A frame announced a payload larger than the configured bound."""


class PeerClosed(TransportError):
    """The peer closed the connection (``mid_frame`` says whether a frame was cut)."""

    def __init__(self, message: str, *, mid_frame: bool = False, **kw) -> None:
        super().__init__(message, **kw)
        self.mid_frame = mid_frame


# --------------------------------------------------------------------------------------------
# DOE data objects
# --------------------------------------------------------------------------------------------


def encode_doe_object(vendor: int, type_: int, payload: bytes) -> bytes:
    """A DOE data object: two header dwords, then the payload zero-padded to a dword."""
    payload = bytes(payload) + b"\0" * (-len(payload) % 4)
    dwords = 2 + len(payload) // 4
    if dwords > DOE_MAX_DWORDS:
        raise UsageError(f"a DOE object holds at most {DOE_MAX_DWORDS} dwords, not {dwords}")
    return (
        struct.pack("<II", (vendor & 0xFFFF) | (type_ & 0xFF) << 16, dwords & (DOE_MAX_DWORDS - 1)) + payload
    )


def decode_doe_object(data: bytes, *, field: str = "DOE object") -> tuple[int, int, bytes]:
    """(vendor, type, payload) of a whole DOE object; the length field must match exactly."""
    data = bytes(data)
    if len(data) < DOE_HEADER_SIZE:
        raise MalformedData(f"{field}: {len(data)} bytes, shorter than the 8-byte DOE header", field=field)
    if len(data) % 4:
        raise MalformedData(f"{field}: {len(data)} bytes is not a whole number of dwords", field=field)
    h1, h2 = struct.unpack_from("<II", data)
    length = (h2 & (DOE_MAX_DWORDS - 1)) or DOE_MAX_DWORDS
    if length * 4 != len(data):
        raise MalformedData(
            f"{field}: length field says {length} dwords ({length * 4} bytes), object has {len(data)} bytes",
            field=f"{field}.length",
        )
    return h1 & 0xFFFF, (h1 >> 16) & 0xFF, data[DOE_HEADER_SIZE:]


def discovery_request(index: int, version: int = 0) -> bytes:
    return encode_doe_object(
        DOE_VENDOR_PCISIG, DOE_TYPE_DISCOVERY, struct.pack("<I", (index & 0xFF) | (version & 0xFF) << 8)
    )


def discovery_response(entries: tuple[tuple[int, int], ...] | list[tuple[int, int]], index: int) -> bytes:
    """The answer to discovery ``index``: that entry and the next index (0 after the last)."""
    if not entries:
        raise UsageError("a DOE mailbox lists at least the discovery protocol")
    if index >= len(entries):
        index = 0  # out of range: answer entry 0 and end the walk
        nxt = 0
    else:
        nxt = index + 1 if index + 1 < len(entries) else 0
    vendor, type_ = entries[index]
    value = (vendor & 0xFFFF) | (type_ & 0xFF) << 16 | (nxt & 0xFF) << 24
    return encode_doe_object(DOE_VENDOR_PCISIG, DOE_TYPE_DISCOVERY, struct.pack("<I", value))


# --------------------------------------------------------------------------------------------
# Transport codecs: SPDM message <-> frame payload
# --------------------------------------------------------------------------------------------


def wrap_message(transport_type: int, message: bytes, secured: bool) -> bytes:
    """The frame payload carrying one SPDM message over ``transport_type``."""
    if transport_type == TRANSPORT_PCI_DOE:
        return encode_doe_object(
            DOE_VENDOR_PCISIG, DOE_TYPE_SECURED_CMA if secured else DOE_TYPE_CMA, message
        )
    if transport_type == TRANSPORT_MCTP:
        return bytes([MCTP_TYPE_SECURED_SPDM if secured else MCTP_TYPE_SPDM]) + bytes(message)
    if transport_type == TRANSPORT_NONE:
        if secured:
            raise UsageError("transport 'none' cannot carry secured messages")
        return bytes(message)
    raise UsageError(f"unsupported socket transport type {transport_type}")


def unwrap_message(transport_type: int, payload: bytes, *, field: str = "frame") -> tuple[str, bytes, bool]:
    """(kind, message, secured) of a frame payload; kind is "spdm" or "discovery".

    Raises :class:`MalformedData` for a payload that breaks the transport's format and
    :class:`ProtocolError` for a well-formed object of a protocol we do not carry.
    """
    if transport_type == TRANSPORT_PCI_DOE:
        vendor, type_, body = decode_doe_object(payload, field=field)
        if vendor == DOE_VENDOR_PCISIG and type_ == DOE_TYPE_DISCOVERY:
            return "discovery", body, False
        if vendor == DOE_VENDOR_PCISIG and type_ in (DOE_TYPE_CMA, DOE_TYPE_SECURED_CMA):
            return "spdm", body, type_ == DOE_TYPE_SECURED_CMA
        raise ProtocolError(f"{field}: DOE object {vendor:04x}:{type_:02x} is not a CMA/SPDM protocol")
    if transport_type == TRANSPORT_MCTP:
        if not payload:
            raise MalformedData(f"{field}: empty MCTP message", field=field)
        mtype = payload[0] & 0x7F
        if mtype not in (MCTP_TYPE_SPDM, MCTP_TYPE_SECURED_SPDM):
            raise ProtocolError(f"{field}: MCTP message type {mtype:#04x} is not SPDM")
        return "spdm", bytes(payload[1:]), mtype == MCTP_TYPE_SECURED_SPDM
    if transport_type == TRANSPORT_NONE:
        return "spdm", bytes(payload), False
    raise ProtocolError(f"{field}: unsupported transport type {transport_type}")


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Frame:
    command: int
    transport_type: int
    payload: bytes

    @property
    def command_name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"{self.command:#06x}")


def _quickack(sock: socket.socket) -> None:
    opt = getattr(socket, "TCP_QUICKACK", None)
    if opt is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, opt, 1)


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY: without it every exchange stalls about 40 ms on delayed ACKs."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def recv_exact(sock: socket.socket, n: int, *, started: bool, what: str = "frame") -> bytes:
    """Exactly ``n`` bytes; :class:`PeerClosed` when the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        _quickack(sock)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 16))
        except TimeoutError:
            raise TransportError(f"timed out waiting for {n - len(buf)} more byte(s) of a {what}")
        except OSError as e:
            raise TransportError(f"receive failed: {e.strerror or e}", errno=e.errno)
        if not chunk:
            mid = started or bool(buf)
            raise PeerClosed(
                f"peer closed the connection {'in the middle of a ' + what if mid else 'between frames'}",
                mid_frame=mid,
            )
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Frame:
    """One frame; the size field is checked against ``max_payload`` before anything is read."""
    command, ttype, size = FRAME_HEADER.unpack(recv_exact(sock, FRAME_HEADER.size, started=False))
    if size > max_payload:
        raise OversizedFrame(f"frame announces a {size}-byte payload, more than the {max_payload}-byte limit")
    payload = recv_exact(sock, size, started=True) if size else b""
    return Frame(command, ttype, payload)


def send_frame(sock: socket.socket, command: int, transport_type: int, payload: bytes = b"") -> None:
    try:
        sock.sendall(FRAME_HEADER.pack(command, transport_type, len(payload)) + bytes(payload))
    except OSError as e:
        raise TransportError(f"send failed: {e.strerror or e}", errno=e.errno)


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


def parse_endpoint(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6ADDR]:PORT`` -> (host, port)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    try:
        port = int(port_text, 10)
    except ValueError:
        raise UsageError(f"{text!r}: expected [HOST:]PORT")
    if not 0 <= port <= 0xFFFF:
        raise UsageError(f"{text!r}: port {port} out of range")
    return host, port


class SocketTransport:
    """The Transport seam over the spdm-emu socket protocol (a requester's side).

    ``exchange(message, secured=)`` sends one SPDM message and returns the answer. Use it as a
    context manager, or call :meth:`close` (it sends SHUTDOWN, as spdm-emu requesters do).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        transport_type: int = TRANSPORT_PCI_DOE,
        timeout: float | None = 10.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        send_shutdown: bool = True,
    ) -> None:
        self._setup(host, port, transport_type, max_payload, send_shutdown)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise TransportError(
                f"cannot connect to SPDM responder at {self.name}: {e.strerror or e}",
                errno=e.errno,
                hint="start one, e.g. `pciauth responder --listen PORT --pki DIR`",
            )
        tune_socket(self.sock)

    @classmethod
    def from_socket(
        cls,
        sock: Any,
        *,
        name: str | None = None,
        transport_type: int = TRANSPORT_PCI_DOE,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        send_shutdown: bool = True,
    ) -> SocketTransport:
        """A transport over a socket that is already connected to a responder.

        For a connection made some other way (a socketpair, a socket a proxy handed over, a
        test double with ``recv``/``sendall``/``settimeout``/``setsockopt``/``close``). Its
        timeout is left as the caller set it. The transport owns the socket: :meth:`close`
        sends SHUTDOWN (unless ``send_shutdown=False``) and closes it. ``name`` (used in error
        messages) defaults to the peer's ``HOST:PORT``, else "socket".
        """
        host, port = _peer_of(sock)
        transport = cls.__new__(cls)  # no __init__: it would connect
        transport._setup(host, port, transport_type, max_payload, send_shutdown)
        transport.name = name if name is not None else transport.name if port else host
        transport.sock = sock
        tune_socket(sock)
        return transport

    def _setup(self, host: str, port: int, transport_type: int, max_payload: int, send_shutdown: bool) -> None:
        if transport_type not in TRANSPORT_NAMES:
            raise UsageError(f"unsupported socket transport type {transport_type}")
        self.host, self.port = host, port
        self.transport_type = transport_type
        self.max_payload = max_payload
        self.send_shutdown = send_shutdown
        self.exchanges = 0
        self.name = f"{host}:{port}"

    def __enter__(self) -> SocketTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> socket.socket:
        if self.sock is None:
            raise TransportError(f"{self.name}: connection already closed")
        return self.sock

    def request(self, command: int, payload: bytes = b"") -> Frame:
        """Send one frame and read one answer frame (with our transport type)."""
        sock = self._check_open()
        send_frame(sock, command, self.transport_type, payload)
        frame = recv_frame(sock, self.max_payload)
        return frame

    def _normal(self, payload: bytes, what: str) -> bytes:
        frame = self.request(COMMAND_NORMAL, payload)
        if frame.command == COMMAND_UNKNOWN:
            raise ProtocolError(f"{self.name}: the responder answered UNKNOWN to {what}")
        if frame.command != COMMAND_NORMAL:
            raise ProtocolError(f"{self.name}: the responder answered {frame.command_name} to {what}")
        if frame.transport_type != self.transport_type:
            raise ProtocolError(
                f"{self.name}: answer has transport type {frame.transport_type}, expected {self.transport_type}"
            )
        return frame.payload

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        self.exchanges += 1
        payload = self._normal(wrap_message(self.transport_type, message, secured), "an SPDM message")
        kind, answer, answer_secured = unwrap_message(self.transport_type, payload, field="response")
        if kind != "spdm" or answer_secured != secured:
            got = (
                "a discovery object"
                if kind != "spdm"
                else ("a secured" if answer_secured else "a plain") + " message"
            )
            raise ProtocolError(
                f"{self.name}: asked with a {'secured' if secured else 'plain'} message, got {got}"
            )
        return answer

    def discover(self) -> list[tuple[int, int]]:
        """DOE discovery over the socket: the (vendor, type) pairs the responder lists."""
        if self.transport_type != TRANSPORT_PCI_DOE:
            raise UsageError("DOE discovery needs the PCI_DOE transport")
        found: list[tuple[int, int]] = []
        index = 0
        for _ in range(MAX_DISCOVERY_ENTRIES):
            payload = self._normal(discovery_request(index), f"DOE discovery index {index}")
            vendor, type_, body = decode_doe_object(payload, field="discovery response")
            if (vendor, type_) != (DOE_VENDOR_PCISIG, DOE_TYPE_DISCOVERY):
                raise ProtocolError(
                    f"{self.name}: discovery answered with DOE object {vendor:04x}:{type_:02x}"
                )
            if len(body) != 4:
                raise MalformedData(
                    f"discovery response: payload of {len(body)} bytes, expected 4", field="discovery"
                )
            (value,) = struct.unpack("<I", body)
            found.append((value & 0xFFFF, (value >> 16) & 0xFF))
            nxt = value >> 24
            if nxt == 0:
                return found
            if nxt <= index:
                raise ProtocolError(f"{self.name}: discovery next index {nxt} does not advance past {index}")
            index = nxt
        raise ProtocolError(f"{self.name}: discovery lists more than {MAX_DISCOVERY_ENTRIES} protocols")

    def test(self) -> None:
        """The TEST hello ("Client Hello!" answered by "Server Hello!")."""
        frame = self.request(COMMAND_TEST, CLIENT_HELLO)
        if frame.command != COMMAND_TEST or frame.payload.rstrip(b"\0") != SERVER_HELLO.rstrip(b"\0"):
            raise ProtocolError(f"{self.name}: TEST answered by {frame.command_name} {frame.payload[:32]!r}")

    def close(self) -> None:
        sock, self.sock = getattr(self, "sock", None), None
        if sock is None:
            return
        try:
            if self.send_shutdown:
                with contextlib.suppress(OSError, TransportError):
                    send_frame(sock, COMMAND_SHUTDOWN, self.transport_type)
                    sock.settimeout(0.5)
                    recv_frame(sock, 64)  # spdm-emu echoes SHUTDOWN; QEMU-style peers may not
        finally:
            with contextlib.suppress(OSError):
                sock.close()


def _peer_of(sock: Any) -> tuple[str, int]:
    """(host, port) of a connected TCP socket's peer; ("socket", 0) for anything else."""
    try:
        peer = sock.getpeername()
    except (AttributeError, OSError):
        return "socket", 0
    if isinstance(peer, tuple) and len(peer) >= 2 and isinstance(peer[0], str) and isinstance(peer[1], int):
        return peer[0], peer[1]
    return "socket", 0


def __getattr__(name: str):  # the server lives in its own module; keep ``socket.serve`` working
    if name in ("ResponderServer", "serve"):
        from pciauth.spdm import socket_server

        return getattr(socket_server, name)
    raise AttributeError(name)
