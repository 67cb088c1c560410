"""ResponderServer and SocketTransport on 127.0.0.1 ephemeral ports, with a stand-in handler."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sockhelp import EchoHandler, closed_by_peer, frame, raw_client, read

from pciauth.errors import ProtocolError, TransportError
from pciauth.spdm import socket as S
from pciauth.spdm.socket_server import ResponderServer, serve


@pytest.fixture(scope="module")
def shared_server():
    with ResponderServer(EchoHandler, "127.0.0.1", 0) as srv:
        yield srv


@pytest.fixture
def server():
    with ResponderServer(EchoHandler, "127.0.0.1", 0) as srv:
        yield srv


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_handler_sees_the_dword_padding(server):
    """Like a DOE mailbox, the request reaches the handler padded to a dword."""
    with S.SocketTransport("127.0.0.1", server.port) as t:
        t.exchange(b"\x12\x84\x00\x00\x07")
    assert EchoHandler.instances[-1].calls == [(b"\x12\x84\x00\x00\x07\0\0\0", False)]


def test_exchange_plain_and_secured(server):
    with S.SocketTransport("127.0.0.1", server.port) as t:
        assert t.exchange(b"\x12\x84\x00\x00") == b"RP\x00\x00\x84\x12" + b"\0\0"
        assert t.exchange(b"abcdefgh", secured=True) == b"RShgfedcba" + b"\0\0"
        assert t.exchanges == 2
    handler = EchoHandler.instances[-1]
    assert handler.calls == [(b"\x12\x84\x00\x00", False), (b"abcdefgh", True)]


def test_discovery_and_test_hello(server):
    with S.SocketTransport("127.0.0.1", server.port) as t:
        t.test()
        assert t.discover() == [(1, 0), (1, 1), (1, 2)]


def test_custom_discovery_list():
    entries = [(1, 0), (1, 1), (0x1E98, 2)]
    with (
        ResponderServer(EchoHandler, "127.0.0.1", 0, discovery=entries) as srv,
        S.SocketTransport("127.0.0.1", srv.port) as t,
    ):
        assert t.discover() == entries


def test_one_handler_per_connection(server):
    EchoHandler.instances.clear()
    with S.SocketTransport("127.0.0.1", server.port) as a, S.SocketTransport("127.0.0.1", server.port) as b:
        a.exchange(b"aaaa")
        b.exchange(b"bbbb")
        a.exchange(b"cccc")
    assert sorted(len(h.calls) for h in EchoHandler.instances) == [1, 2]


def test_shutdown_is_echoed_and_closes(server):
    s = raw_client(server.port)
    s.sendall(frame(S.COMMAND_SHUTDOWN, 2))
    f = read(s)
    assert f.command == S.COMMAND_SHUTDOWN
    assert closed_by_peer(s)


def test_unknown_command_gets_unknown_and_connection_lives(server):
    s = raw_client(server.port)
    s.sendall(frame(0x1234, 2, b"????"))
    assert read(s).command == S.COMMAND_UNKNOWN
    s.sendall(frame(S.COMMAND_NORMAL, 2, S.encode_doe_object(1, 1, b"ping")))
    f = read(s)
    assert f.command == S.COMMAND_NORMAL
    assert S.decode_doe_object(f.payload)[2] == b"RPgnip\0\0"  # DOE pads to a dword


@pytest.mark.parametrize(
    "payload",
    [
        b"\x01\x00\x01\x00\x09\x00\x00\x00",  # length field lies
        b"garbage!!",  # not dwords
        S.encode_doe_object(0x1E98, 2, b"cdat"),  # a protocol we do not carry
        S.encode_doe_object(1, 0, b"\0" * 8),  # discovery with 2 dwords
    ],
)
def test_garbage_objects_get_unknown(server, payload):
    s = raw_client(server.port)
    s.sendall(frame(S.COMMAND_NORMAL, 2, payload))
    assert read(s).command == S.COMMAND_UNKNOWN
    s.sendall(frame(S.COMMAND_TEST, 2, S.CLIENT_HELLO))
    assert read(s).payload == S.SERVER_HELLO
    assert server.stats["errors"] >= 1


def test_oversized_frame_gets_unknown_then_close_and_server_lives(server):
    s = raw_client(server.port)
    s.sendall(frame(S.COMMAND_NORMAL, 2, size=0x7FFFFFFF))
    assert read(s).command == S.COMMAND_UNKNOWN
    assert closed_by_peer(s)
    with S.SocketTransport("127.0.0.1", server.port) as t:
        assert t.exchange(b"ok") == b"RP\0\0ko\0\0"  # request and answer both dword padded


def test_client_vanishing_mid_frame_does_not_kill_the_server(server):
    for cut in (2, 12, 20):
        s = raw_client(server.port)
        s.sendall(frame(S.COMMAND_NORMAL, 2, S.encode_doe_object(1, 1, b"x" * 64))[:cut])
        s.close()
    s = raw_client(server.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(frame(S.COMMAND_NORMAL, 2, size=100) + b"abc")
    s.close()  # RST
    assert wait_for(lambda: server.stats["errors"] >= 4 and server.active_connections == 0)
    with S.SocketTransport("127.0.0.1", server.port) as t:
        t.test()
        assert t.exchange(b"stil") == b"RPlits\0\0"


def test_handler_exception_gets_unknown(server):
    with S.SocketTransport("127.0.0.1", server.port) as t:
        with pytest.raises(ProtocolError, match="UNKNOWN"):
            t.exchange(b"boom")
        assert t.exchange(b"fine") == b"RPenif\0\0"


def test_qemu_style_client():
    """Like QEMU's backends/spdm-socket.c: NORMAL frames with whole DOE objects, SHUTDOWN, close."""
    with ResponderServer(EchoHandler, "127.0.0.1", 0) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port))
        for msg in (b"\x10\x84\x00\x00", b"\x12\xe1" + b"\0" * 18):
            s.sendall(frame(S.COMMAND_NORMAL, S.TRANSPORT_PCI_DOE, S.encode_doe_object(1, 1, msg)))
            f = read(s)
            assert (f.command, f.transport_type) == (S.COMMAND_NORMAL, S.TRANSPORT_PCI_DOE)
            vendor, type_, body = S.decode_doe_object(f.payload)
            assert (vendor, type_) == (1, 1) and body.startswith(b"RP" + msg[::-1])
        s.sendall(frame(S.COMMAND_SHUTDOWN, S.TRANSPORT_PCI_DOE))
        s.close()  # QEMU does not wait for the echo
        assert wait_for(lambda: srv.active_connections == 0)
        assert srv.stats["errors"] == 0


def test_mctp_and_none_transports():
    with ResponderServer(EchoHandler, "127.0.0.1", 0) as srv:
        with S.SocketTransport("127.0.0.1", srv.port, transport_type=S.TRANSPORT_MCTP) as t:
            assert t.exchange(b"abc") == b"RPcba"
            assert t.exchange(b"abc", secured=True) == b"RScba"
        with S.SocketTransport("127.0.0.1", srv.port, transport_type=S.TRANSPORT_NONE) as t:
            assert t.exchange(b"abc") == b"RPcba"


def test_client_checks_the_answer():
    """A responder that answers with the wrong DOE type, or garbage, is a protocol error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answers = [
        frame(S.COMMAND_NORMAL, 2, S.encode_doe_object(1, 2, b"abcd")),  # secured answer to plain
        frame(S.COMMAND_NORMAL, 2, b"\x01\x00\x01\x00\x07\x00\x00\x00"),  # lying length
        frame(S.COMMAND_NORMAL, 1, S.encode_doe_object(1, 1, b"abcd")),  # wrong transport
        frame(S.COMMAND_SHUTDOWN, 2),  # wrong command
        frame(S.COMMAND_NORMAL, 2, size=1 << 30),  # oversized
    ]

    def fake():
        conn, _ = listener.accept()
        with conn:
            for a in answers:
                S.recv_frame(conn)
                conn.sendall(a)

    t = threading.Thread(target=fake, daemon=True)
    t.start()
    tr = S.SocketTransport("127.0.0.1", port, send_shutdown=False)
    with pytest.raises(ProtocolError, match="got a secured message"):
        tr.exchange(b"abcd")
    with pytest.raises(S.MalformedData, match="length field"):
        tr.exchange(b"abcd")
    with pytest.raises(ProtocolError, match="transport type 1"):
        tr.exchange(b"abcd")
    with pytest.raises(ProtocolError, match="SHUTDOWN"):
        tr.exchange(b"abcd")
    with pytest.raises(S.OversizedFrame):
        tr.exchange(b"abcd")
    t.join(5)
    tr.close()
    listener.close()


def test_discovery_that_loops_is_refused():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def fake():
        conn, _ = listener.accept()
        with conn:
            S.recv_frame(conn)
            conn.sendall(frame(1, 2, S.encode_doe_object(1, 0, struct.pack("<I", 0x01000001))))
            S.recv_frame(conn)
            conn.sendall(
                frame(1, 2, S.encode_doe_object(1, 0, struct.pack("<I", 0x01010001)))
            )  # next 1 again

    threading.Thread(target=fake, daemon=True).start()
    with (
        S.SocketTransport("127.0.0.1", port, send_shutdown=False) as tr,
        pytest.raises(ProtocolError, match="does not advance"),
    ):
        tr.discover()
    listener.close()


def test_connect_refused_is_a_transport_error():
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TransportError, match="cannot connect") as e:
        S.SocketTransport("127.0.0.1", port)
    assert e.value.hint


def test_closed_transport_refuses_exchange(server):
    t = S.SocketTransport("127.0.0.1", server.port)
    t.close()
    t.close()
    with pytest.raises(TransportError, match="closed"):
        t.exchange(b"x")


def test_stop_with_idle_clients_is_prompt():
    srv = ResponderServer(EchoHandler, "127.0.0.1", 0).start()
    clients = [raw_client(srv.port) for _ in range(3)]
    assert wait_for(lambda: srv.active_connections == 3)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 2
    assert srv.active_connections == 0
    for c in clients:
        assert closed_by_peer(c)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1)


def test_max_connections():
    with ResponderServer(EchoHandler, "127.0.0.1", 0, max_connections=1) as srv:
        first = S.SocketTransport("127.0.0.1", srv.port)
        first.test()
        second = raw_client(srv.port)
        assert closed_by_peer(second)
        assert srv.stats["rejected"] == 1
        first.close()


def test_serve_in_foreground_until_stopped():
    ready = threading.Event()
    box = {}

    def on_ready(srv):
        box["srv"] = srv
        ready.set()

    t = threading.Thread(
        target=lambda: box.setdefault("ret", serve(EchoHandler, "127.0.0.1", 0, on_ready=on_ready))
    )
    t.start()
    assert ready.wait(5)
    with S.SocketTransport("127.0.0.1", box["srv"].port) as tr:
        assert tr.exchange(b"hihi") == b"RPihih\0\0"
    box["srv"].stop()
    t.join(5)
    assert not t.is_alive()
    assert box["ret"].stats["connections"] == 1


def test_listen_on_a_busy_port_is_a_transport_error(server):
    with pytest.raises(TransportError, match="cannot listen"):
        ResponderServer(EchoHandler, "127.0.0.1", server.port).start()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=6), st.booleans())
def test_random_streams_never_hurt_the_server(shared_server, chunks, framed):
    """Whatever bytes a client sends, in whatever pieces, the server answers the next client."""
    s = raw_client(shared_server.port)
    try:
        for chunk in chunks:
            data = frame(S.COMMAND_NORMAL, 2, chunk) if framed else chunk
            s.sendall(data)
    except OSError:
        pass
    finally:
        s.close()
    with S.SocketTransport("127.0.0.1", shared_server.port) as t:
        t.test()
    assert wait_for(lambda: shared_server.active_connections == 0)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_client_on_random_answers_only_raises_pciauth_errors(answer, framed):
    """Whatever a responder sends back (framed or raw bytes, then close), exchange() returns
    bytes or raises a pciauth error: never another exception, never a hang."""
    from pciauth.errors import PciauthError

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def fake():
        conn, _ = listener.accept()
        with conn:
            try:
                S.recv_frame(conn)
                conn.sendall(frame(S.COMMAND_NORMAL, 2, answer) if framed else answer)
            except (OSError, PciauthError):
                pass

    t = threading.Thread(target=fake, daemon=True)
    t.start()
    try:
        tr = S.SocketTransport("127.0.0.1", port, timeout=5, send_shutdown=False)
        try:
            assert isinstance(tr.exchange(b"\x12\x84\x00\x00"), bytes)
        except PciauthError:
            pass
        finally:
            tr.close()
    finally:
        t.join(5)
        listener.close()
