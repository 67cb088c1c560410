"""The responder side of the spdm-emu socket protocol (``pciauth responder --listen``).

:class:`ResponderServer` accepts any number of requesters (spdm-emu's ``spdm_requester_emu``,
``pciauth auth --socket``, QEMU's NVMe ``spdm_port``), each on its own thread with its own
handler from ``handler_factory()``. A handler is a callable ``handler(message, secured=...) ->
bytes`` or an object with such a ``handle`` method (pciauth's ``Responder``).

Per frame:
- NORMAL with PCI_DOE: DOE discovery (vendor 1 type 0) is answered here from ``discovery``
  (0001:00, 0001:01, 0001:02, then next index 0); type 1 and type 2 objects go to the handler
  (``secured`` for type 2) and its answer goes back in an object of the same type. MCTP and
  NONE transports are served the same way without discovery.
- TEST is answered "Server Hello!"; SHUTDOWN is echoed and the connection closed; any other
  command, a malformed object or a protocol we do not carry gets an UNKNOWN frame.
- An oversized size field gets UNKNOWN and the connection is closed (the stream cannot be
  resynchronised without reading the bytes). A client that vanishes, even mid-frame, only ends
  its own connection; a handler that raises is logged and answered UNKNOWN.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pciauth.errors import MalformedData, PciauthError, ProtocolError, TransportError, UsageError
from pciauth.spdm.socket import (
    COMMAND_NORMAL,
    COMMAND_SHUTDOWN,
    COMMAND_TEST,
    COMMAND_UNKNOWN,
    DEFAULT_DISCOVERY,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_PORT,
    SERVER_HELLO,
    TRANSPORT_NAMES,
    TRANSPORT_PCI_DOE,
    Frame,
    OversizedFrame,
    PeerClosed,
    discovery_response,
    recv_frame,
    send_frame,
    tune_socket,
    unwrap_message,
    wrap_message,
)

log = logging.getLogger("pciauth.responder")

Handler = Callable[..., bytes]


def _as_callable(handler: Any) -> Handler:
    fn = getattr(handler, "handle", None)
    return fn if callable(fn) else handler


class ResponderServer:
    """Serve SPDM over the spdm-emu socket protocol until :meth:`stop`.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). ``pcap`` (a
    :class:`pciauth.pcap.PcapWriter`) records every DOE object in both directions. ``logger``
    gets the connection log and every error (default: the "pciauth.responder" logger); a handler
    that raises something other than a pciauth error is reported with ``logger.exception``.
    """

    def __init__(
        self,
        handler_factory: Callable[[], Any],
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        discovery: Sequence[tuple[int, int]] = DEFAULT_DISCOVERY,
        max_connections: int = 64,
        idle_timeout: float | None = None,
        pcap: Any = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.handler_factory = handler_factory
        self.host, self.port = host, port
        self.max_payload = max_payload
        self.discovery = tuple(discovery)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.pcap = pcap
        self.logger = logger
        self.stats = {"connections": 0, "frames": 0, "errors": 0, "rejected": 0}
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        #: id(conn) -> (conn, the thread serving it, what stop() waits on for it to end)
        self._clients: dict[int, tuple[socket.socket, threading.Thread, Callable[[float], object]]] = {}
        self._accept_thread: threading.Thread | None = None
        self._serving = False

    # -- lifecycle -----------------------------------------------------------------------

    def bind(self) -> None:
        if self._listener is not None:
            return
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(16)
        except OSError as e:
            raise TransportError(
                f"cannot listen on {self.host}:{self.port}: {e.strerror or e}", errno=e.errno
            )
        self._listener = sock
        self.port = sock.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._stopping.clear()

    def start(self) -> ResponderServer:
        """Listen and serve on a background thread."""
        self.bind()
        self._accept_thread = threading.Thread(target=self.serve_forever, name="pciauth-accept", daemon=True)
        self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections in this thread until :meth:`stop`."""
        self.bind()
        listener = self._listener
        assert listener is not None
        self._serving = True
        try:
            while not self._stopping.is_set():
                try:
                    ready, _, _ = select.select([listener, self._wake_r], [], [])
                except (OSError, ValueError):
                    break
                if self._wake_r in ready or self._stopping.is_set():
                    break
                try:
                    conn, peer = listener.accept()
                except OSError:
                    continue
                self._admit(conn, peer)
        finally:
            self._serving = False
            self._close_listener()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut every connection, wait for the threads."""
        self._stopping.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        with self._lock:
            clients = list(self._clients.values())
        for conn, _, _ in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout)
        for _, thread, wait in clients:
            if thread is not threading.current_thread():
                wait(timeout)
        if not self._serving:  # else the accept loop closes it on its way out
            self._close_listener()

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            fds, (self._wake_r, self._wake_w) = (self._wake_r, self._wake_w), (-1, -1)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> ResponderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def _log(self) -> logging.Logger:
        """Where this server logs: ``logger``, else the module's "pciauth.responder" logger."""
        return self.logger if self.logger is not None else log

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._clients)

    # -- connections ---------------------------------------------------------------------

    def _admit(self, conn: socket.socket, peer: Any) -> None:
        with self._lock:
            full = len(self._clients) >= self.max_connections
            if full:
                self.stats["rejected"] += 1
        if full:
            self._log.warning("refusing %s: %d connections already", peer, self.max_connections)
            with contextlib.suppress(OSError):
                conn.close()
            return
        thread = threading.Thread(target=self._serve, args=(conn, peer), name=f"pciauth-conn-{peer}", daemon=True)
        self._register(conn, thread, thread.join)
        thread.start()

    def serve_connection(self, conn: socket.socket, peer: Any = "socket") -> None:
        """Serve one requester on an already-connected socket, in this thread.

        Served like an accepted connection (counted in :attr:`stats`, cut by :meth:`stop`, no
        ``max_connections`` check: the caller chose to serve it) until the requester sends
        SHUTDOWN or closes, or the server stops; the socket is closed on return. ``peer`` names
        the requester in the log. The server need not be listening: a socketpair, a socket
        accepted elsewhere or a test double (``recv``/``sendall``/``setsockopt``/``settimeout``/
        ``close``) works.
        """
        # stop() waits for this connection to end, not for the calling thread (it runs on)
        done = threading.Event()
        self._register(conn, threading.current_thread(), done.wait)
        try:
            self._serve(conn, peer)
        finally:
            done.set()

    def _register(self, conn: socket.socket, thread: threading.Thread, wait: Callable[[float], object]) -> None:
        tune_socket(conn)
        conn.settimeout(self.idle_timeout)
        with self._lock:
            self._clients[id(conn)] = (conn, thread, wait)
            self.stats["connections"] += 1

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        log = self._log
        log.info("requester connected from %s", peer)
        try:
            handler = _as_callable(self.handler_factory())
            while not self._stopping.is_set():
                try:
                    frame = recv_frame(conn, self.max_payload)
                except PeerClosed as e:
                    if e.mid_frame:
                        self._error(f"{peer}: {e}")
                    break
                except OversizedFrame as e:
                    self._error(f"{peer}: {e}; closing the connection")
                    with contextlib.suppress(TransportError):
                        send_frame(conn, COMMAND_UNKNOWN, TRANSPORT_PCI_DOE)
                    break
                with self._lock:
                    self.stats["frames"] += 1
                if not self._answer(conn, frame, handler, peer):
                    break
        except TransportError as e:
            if not self._stopping.is_set():
                self._error(f"{peer}: {e}")
        except Exception:  # one broken connection never stops the server
            log.exception("%s: connection failed", peer)
            with self._lock:
                self.stats["errors"] += 1
        finally:
            with self._lock:
                self._clients.pop(id(conn), None)
            with contextlib.suppress(OSError):
                conn.close()
            log.info("requester %s gone", peer)

    def _error(self, message: str) -> None:
        self._log.warning("%s", message)
        with self._lock:
            self.stats["errors"] += 1

    def _answer(self, conn: socket.socket, frame: Frame, handler: Handler, peer: Any) -> bool:
        """Answer one frame; False when the connection should end."""
        ttype = frame.transport_type
        if frame.command == COMMAND_TEST:
            send_frame(conn, COMMAND_TEST, ttype, SERVER_HELLO)
            return True
        if frame.command == COMMAND_SHUTDOWN:
            with contextlib.suppress(TransportError):
                send_frame(conn, COMMAND_SHUTDOWN, ttype)
            return False
        if frame.command != COMMAND_NORMAL or ttype not in TRANSPORT_NAMES:
            self._error(f"{peer}: unsupported {frame.command_name} frame (transport {ttype})")
            send_frame(conn, COMMAND_UNKNOWN, ttype)
            return True
        try:
            kind, message, secured = unwrap_message(ttype, frame.payload, field="request")
            if kind == "discovery":
                if len(message) != 4:
                    raise MalformedData(
                        f"discovery request of {len(message)} bytes, expected 4", field="discovery"
                    )
                self._record(frame.payload, False)
                answer = discovery_response(self.discovery, message[0])
            else:
                if ttype == TRANSPORT_PCI_DOE:
                    self._record(frame.payload, False)
                response = handler(message, secured=secured)
                answer = wrap_message(ttype, bytes(response), secured)
        except (MalformedData, ProtocolError, UsageError) as e:
            self._error(f"{peer}: {e}")
            send_frame(conn, COMMAND_UNKNOWN, ttype)
            return True
        except PciauthError as e:
            self._error(f"{peer}: handler failed: {e}")
            send_frame(conn, COMMAND_UNKNOWN, ttype)
            return True
        except Exception:  # a handler bug must not kill the connection thread silently
            self._log.exception("%s: handler raised", peer)
            with self._lock:
                self.stats["errors"] += 1
            send_frame(conn, COMMAND_UNKNOWN, ttype)
            return True
        if ttype == TRANSPORT_PCI_DOE:
            self._record(answer, True)
        send_frame(conn, COMMAND_NORMAL, ttype, answer)
        return True

    def _record(self, obj: bytes, from_device: bool) -> None:
        if self.pcap is not None:
            with self._lock:
                self.pcap.write_doe(obj, from_device=from_device)


def serve(
    handler_factory: Callable[[], Any],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[ResponderServer], None] | None = None,
    **kw: Any,
) -> ResponderServer:
    """Serve in this thread until SIGINT/SIGTERM (in the main thread) or ``stop()``."""
    server = ResponderServer(handler_factory, host, port, **kw)
    server.bind()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: server.stop(timeout=0))
    try:
        if on_ready:
            on_ready(server)
        server.serve_forever()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server
