"""Seams for callers that bring their own socket or logger: SocketTransport.from_socket,
ResponderServer.serve_connection and ResponderServer(logger=...)."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from sockhelp import EchoHandler, frame

from pciauth.errors import ProtocolError, TransportError, UsageError
from pciauth.spdm import socket as S
from pciauth.spdm.socket_server import ResponderServer


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def listen_to():
    """Attach a recording handler to a logger by name; detached after the test."""
    attached = []

    def attach(name: str) -> ListHandler:
        lg, h = logging.getLogger(name), ListHandler()
        attached.append((lg, h, lg.level))
        lg.addHandler(h)
        lg.setLevel(logging.DEBUG)
        return h

    yield attach
    for lg, h, level in attached:
        lg.removeHandler(h)
        lg.setLevel(level)


def serve_in_thread(server: ResponderServer, conn: socket.socket) -> threading.Thread:
    thread = threading.Thread(target=server.serve_connection, args=(conn, "pair"), daemon=True)
    thread.start()
    return thread


def handler_bugs(h: ListHandler) -> list[logging.LogRecord]:
    return [r for r in h.records if r.exc_info and "stand-in handler bug" in str(r.exc_info[1])]


def test_transport_and_server_over_a_socketpair():
    """Neither side connects nor listens: both run over a socket they are given."""
    client, server_end = socket.socketpair()
    client.settimeout(5)
    server = ResponderServer(EchoHandler, "127.0.0.1", 0)
    thread = serve_in_thread(server, server_end)
    with S.SocketTransport.from_socket(client) as t:
        assert t.name == "socket" and t.transport_type == S.TRANSPORT_PCI_DOE
        t.test()
        assert t.discover() == [(1, 0), (1, 1), (1, 2)]
        assert t.exchange(b"\x12\x84\x00\x00") == b"RP\x00\x00\x84\x12" + b"\0\0"
        assert t.exchange(b"abcdefgh", secured=True) == b"RShgfedcba" + b"\0\0"
    assert client.fileno() == -1  # the transport owns the socket
    thread.join(5)
    assert not thread.is_alive(), "serve_connection did not return after SHUTDOWN"
    assert server_end.fileno() == -1
    assert server.stats["connections"] == 1 and server.stats["frames"] == 7  # TEST, 3 discovery, 2, SHUTDOWN
    assert server.active_connections == 0 and server.stats["errors"] == 0


def test_from_socket_names_a_tcp_peer_and_keeps_the_options(shared_port):
    sock = socket.create_connection(("127.0.0.1", shared_port), timeout=5)
    t = S.SocketTransport.from_socket(sock, transport_type=S.TRANSPORT_MCTP, send_shutdown=False)
    assert (t.host, t.port, t.name) == ("127.0.0.1", shared_port, f"127.0.0.1:{shared_port}")
    assert t.exchange(b"\x12\x84\x00\x00") == b"RP\x00\x00\x84\x12"  # MCTP: no dword padding
    assert t.exchanges == 1
    t.close()
    assert sock.fileno() == -1
    with pytest.raises(TransportError, match="already closed"):
        t.exchange(b"\x12\x84\x00\x00")


def test_from_socket_checks_its_options():
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(UsageError, match="transport type 7"):
            S.SocketTransport.from_socket(a, transport_type=7)
        t = S.SocketTransport.from_socket(a, name="bench", max_payload=16, send_shutdown=False)
        b.sendall(frame(S.COMMAND_TEST, S.TRANSPORT_PCI_DOE, b"x" * 17))
        with pytest.raises(S.OversizedFrame, match="17-byte payload"):
            t.test()
        assert t.name == "bench"


def test_server_logs_to_the_logger_it_is_given(listen_to):
    module_log = listen_to("pciauth.responder")
    own_log = listen_to("tests.spdm_socket.own")
    client, server_end = socket.socketpair()
    client.settimeout(5)
    server = ResponderServer(EchoHandler, "127.0.0.1", 0, logger=logging.getLogger("tests.spdm_socket.own"))
    thread = serve_in_thread(server, server_end)
    with S.SocketTransport.from_socket(client) as t, pytest.raises(ProtocolError, match="UNKNOWN"):
        t.exchange(b"boom")
    thread.join(5)
    assert len(handler_bugs(own_log)) == 1
    assert any("connected from pair" in r.getMessage() for r in own_log.records)
    assert module_log.records == []


def test_server_logs_to_the_module_logger_by_default(listen_to):
    module_log = listen_to("pciauth.responder")
    client, server_end = socket.socketpair()
    client.settimeout(5)
    thread = serve_in_thread(ResponderServer(EchoHandler, "127.0.0.1", 0), server_end)
    with S.SocketTransport.from_socket(client) as t, pytest.raises(ProtocolError, match="UNKNOWN"):
        t.exchange(b"boom")
    thread.join(5)
    assert len(handler_bugs(module_log)) == 1


class RaisingLogger(logging.Logger):
    """A logger whose catch-all report re-raises (what the fuzz harness uses)."""

    def exception(self, *a: object, **k: object) -> None:
        raise  # called inside the server's except block: re-raises what it caught


def test_a_raising_logger_lets_a_handler_bug_out_of_serve_connection():
    client, server_end = socket.socketpair()
    with client:
        client.sendall(frame(S.COMMAND_NORMAL, S.TRANSPORT_PCI_DOE, S.wrap_message(2, b"boom", False)))
        server = ResponderServer(EchoHandler, "127.0.0.1", 0, logger=RaisingLogger("raising"))
        with pytest.raises(RuntimeError, match="stand-in handler bug"):
            server.serve_connection(server_end, "pair")
    assert server_end.fileno() == -1 and server.active_connections == 0


@pytest.fixture(scope="module")
def shared_port():
    with ResponderServer(EchoHandler, "127.0.0.1", 0) as srv:
        yield srv.port


def test_stop_waits_for_a_served_connection_not_for_its_caller_thread():
    """serve_connection runs on the caller's thread, which goes on living after the connection
    ends (a worker of a pool, a main loop): stop() must not wait its whole timeout for it."""
    import time

    client, server_end = socket.socketpair()
    server = ResponderServer(EchoHandler, "127.0.0.1", 0)
    served, leave = threading.Event(), threading.Event()

    def worker() -> None:
        server.serve_connection(server_end, "pair")
        served.set()
        leave.wait(30)  # the caller's thread keeps running after serve_connection returns

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # until the connection is registered (at once, in practice)
            if server.active_connections:
                break
            time.sleep(0.01)
        assert server.active_connections == 1
        started = time.monotonic()
        server.stop(timeout=10)
        took = time.monotonic() - started
        assert served.is_set() and server.active_connections == 0
        assert took < 5, f"stop() waited {took:.1f} s for the serve_connection caller's thread"
    finally:
        leave.set()
        client.close()
        thread.join(5)
