"""Stand-in handlers and raw clients for the socket tests."""

from __future__ import annotations

import socket
import struct

from pciauth.spdm.socket import recv_frame


class EchoHandler:
    """Answers b"R" + (b"S" if secured else b"P") + the message reversed; counts calls."""

    instances: list[EchoHandler] = []

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bool]] = []
        EchoHandler.instances.append(self)

    def handle(self, message: bytes, *, secured: bool = False) -> bytes:
        self.calls.append((message, secured))
        if message == b"boom":
            raise RuntimeError("stand-in handler bug")
        return b"R" + (b"S" if secured else b"P") + message[::-1]


def raw_client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def frame(command: int, ttype: int, payload: bytes = b"", size: int | None = None) -> bytes:
    return struct.pack(">III", command, ttype, len(payload) if size is None else size) + payload


def read(s: socket.socket):
    return recv_frame(s)


def closed_by_peer(s: socket.socket) -> bool:
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
