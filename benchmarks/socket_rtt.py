#!/usr/bin/env python3
"""Round-trip time of one SPDM exchange over the spdm-emu socket protocol on loopback.

Three ways, timed in this run on the same message sizes:
- baseline: a bare Python TCP echo of the same frame (one sendall, one recv loop, TCP_NODELAY);
- pciauth: ``SocketTransport.exchange`` against ``ResponderServer`` (DOE object framing, header
  checks, a thread per connection) with a trivial handler, so only the transport is measured;
- a naive client (header and payload in two writes, Nagle on) against pciauth's server: the
  ~40 ms delayed-ACK stall of FACTS.md §6 needs the server to delay its ACK; pciauth's server
  sets TCP_QUICKACK before each recv, so even this client sees no stall (column in ms); the
  last column is the same client against the server with NODELAY/QUICKACK switched off.

Target: pciauth's exchange costs under 1 ms and at most 4x the bare echo, and the naive client
stays under 10 ms (a stall would be about 40 ms). Run: ``python benchmarks/socket_rtt.py [--quick]``; exit 1 when missed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pciauth.spdm import socket as S
from pciauth.spdm.socket_server import ResponderServer


def echo_handler():
    return lambda message, secured=False: message


def _recv_bare(conn: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes with plain recv calls; None when the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def bare_echo_server() -> socket.socket:
    """A listener whose one connection echoes every frame back (TCP_NODELAY, nothing else)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while (head := _recv_bare(conn, S.FRAME_HEADER.size)) is not None:
                size = S.FRAME_HEADER.unpack(head)[2]
                if size > S.DEFAULT_MAX_PAYLOAD:  # the same limit pciauth's server applies
                    return
                body = _recv_bare(conn, size)
                if body is None:
                    return
                conn.sendall(head + body)

    threading.Thread(target=serve, daemon=True).start()
    return listener


def timed(fn, rounds: int) -> float:
    """Median seconds per call over ``rounds`` calls (after a warm-up)."""
    for _ in range(min(20, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def client_rtt(port: int, send, rounds: int, *, nodelay: bool) -> float:
    """Median time of ``send(sock)`` plus reading one frame back, on a fresh connection to ``port``."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def once():
            send(s)
            S.recv_frame(s)

        return timed(once, rounds)


def bare_rtt(size: int, rounds: int) -> float:
    payload = S.encode_doe_object(1, 1, b"\x12" * size)
    frame = S.FRAME_HEADER.pack(1, 2, len(payload)) + payload
    with bare_echo_server() as listener:
        return client_rtt(listener.getsockname()[1], lambda s: s.sendall(frame), rounds, nodelay=True)


def pciauth_rtt(size: int, rounds: int) -> float:
    with ResponderServer(echo_handler, "127.0.0.1", 0) as srv, S.SocketTransport("127.0.0.1", srv.port) as t:
        msg = b"\x12" * size
        return timed(lambda: t.exchange(msg), rounds)


def naive_rtt(size: int, rounds: int) -> float:
    """Header and payload in two writes, Nagle on (pciauth's server still ACKs at once)."""
    payload = S.encode_doe_object(1, 1, b"\x12" * size)
    header = S.FRAME_HEADER.pack(1, 2, len(payload))

    def send(s: socket.socket) -> None:
        s.sendall(header)
        s.sendall(payload)

    with ResponderServer(echo_handler, "127.0.0.1", 0) as srv:
        return client_rtt(srv.port, send, rounds, nodelay=False)


def naive_rtt_without_quickack(size: int, rounds: int) -> float:
    """The same naive client against a server that neither sets TCP_NODELAY nor TCP_QUICKACK."""
    import pciauth.spdm.socket_server as server_mod

    saved = (S._quickack, server_mod.tune_socket)
    S._quickack = server_mod.tune_socket = lambda sock: None
    try:
        return naive_rtt(size, rounds)
    finally:
        S._quickack, server_mod.tune_socket = saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    args = ap.parse_args()
    rounds = 200 if args.quick else 1000
    ok = True
    print(
        f"{'message':>8}  {'bare echo':>10}  {'pciauth':>10}  {'ratio':>6}  {'naive client':>13}"
        f"  {'same, no QUICKACK':>18}"
    )
    for size in (4, 1024, 4096):
        bare = bare_rtt(size, rounds)
        ours = pciauth_rtt(size, rounds)
        naive = naive_rtt(size, max(5, rounds // 100))
        stalled = naive_rtt_without_quickack(size, 5)
        ratio = ours / bare
        met = ours < 1e-3 and ratio <= 4 and naive < 10e-3
        ok &= met
        print(
            f"{size:>7}B  {bare * 1e6:>8.0f}us  {ours * 1e6:>8.0f}us  {ratio:>5.1f}x  {naive * 1e3:>11.1f}ms"
            f"  {stalled * 1e3:>16.1f}ms"
            + ("" if met else "  MISSED")
        )
    print("target: pciauth < 1 ms and <= 4x bare echo per exchange; naive client < 10 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
