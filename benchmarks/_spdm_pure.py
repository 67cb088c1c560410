"""The "SPDM code alone" figure of benchmarks/spdm_auth.py: pciauth's codec and state machines
timed with every crypto and X.509 call answered from a tape.

How it works:

1. Record: after one warm-up handshake (both sides cache some encoded messages), one real handshake (real crypto), with fixed nonces, contexts and session ids on both
   sides. Every top-level call into crypto or X.509 (the patch points below) is recorded, per
   side, in call order with its result; so is every request and response.
2. Replay, one side at a time, so that neither side's time holds the other's:
   - requester alone: a fresh Requester against a transport that answers each request with the
     recorded response (a dictionary lookup);
   - responder alone: a fresh Responder fed the recorded requests in order.
   Each crypto/X.509 call returns the next result on that side's tape (the name is checked, so a
   handshake that is not deterministic stops the benchmark instead of measuring nonsense). The
   first replay also checks that every message is byte for byte the recorded one.

A tape call costs the same whatever its arguments (no hashing of transcripts or keys); that cost
is measured in the same run and removed. What remains is pciauth's SPDM code: message encoding
and parsing, transcripts, secured-message framing, both state machines and the report (its
renderings of certificates, keys and signatures included).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from pciauth.spdm import algorithms as A
from pciauth.spdm import cert_checks, certs, keyschedule, responder_handlers
from pciauth.spdm.requester import Requester, RequesterConfig
from pciauth.spdm.responder import Responder, ResponderConfig
from pciauth.transport import CallableTransport

CLOCK = time.thread_time

#: Where crypto and X.509 are entered (modules that imported a name hold their own reference).
PATCH_POINTS: list[tuple[Any, str]] = (
    [(A, n) for n in ("hash_bytes", "sign", "verify", "dhe_generate", "dhe_shared", "signing_message",
                      "asym_bits_for_key")]
    + [(A.AeadKey, n) for n in ("__init__", "encrypt", "decrypt")]
    + [(keyschedule, n) for n in ("hmac_bytes", "hkdf_extract", "hkdf_expand")]
    + [(certs, "hash_bytes"), (cert_checks, "hash_bytes"), (certs, "parse_cert_chain"),
       (certs, "verify_chain")]
)
# The report's renderings (ChainVerdict.to_dict, certificate and key PEMs, DER signatures) run for
# real: they are pciauth's report, part of the SPDM code measured here.


def fixed_random(n: int) -> bytes:
    return b"\x5a" * n


class _FixedOs:
    """Stands in for ``os`` in the responder handlers: fixed nonces and session ids."""

    urandom = staticmethod(fixed_random)


class Tape:
    """Records top-level crypto/X.509 calls per side, then plays their results back in order."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, Any]]] = {"requester": [], "responder": []}
        self.side = "requester"
        self.depth = 0
        self.playing: list[tuple[str, Any]] | None = None
        self.pos = 0
        self.recording = True
        #: CPU seconds inside top-level crypto/X.509 calls per side (real runs, not replays)
        self.spent = {"requester": 0.0, "responder": 0.0}
        #: CPU seconds of the responder's side in real runs (the rest of a real run is the requester's)
        self.responder = 0.0
        self.undo: list[Callable[[], None]] = []

    def patch(self, owner: Any, name: str) -> None:
        fn = getattr(owner, name)
        tape = self

        def taped(*args: Any, **kw: Any) -> Any:
            playing = tape.playing
            if playing is not None:
                i = tape.pos
                tape.pos = i + 1
                recorded, result = playing[i]
                if recorded is not name:
                    raise RuntimeError(f"replay diverged: call {i} is {name}, the tape has {recorded}")
                return result
            tape.depth += 1
            t0 = CLOCK()
            try:
                result = fn(*args, **kw)
            finally:
                tape.depth -= 1
                if tape.depth == 0:  # calls made inside another patched call are part of it
                    tape.spent[tape.side] += CLOCK() - t0
            if tape.depth == 0 and tape.recording:
                tape.calls[tape.side].append((name, result))
            return result

        setattr(owner, name, taped)
        self.undo.append(lambda: setattr(owner, name, fn))

    def play(self, side: str) -> None:
        self.playing, self.pos = self.calls[side], 0

    def restore(self) -> None:
        for u in reversed(self.undo):
            u()
        self.undo.clear()


def _call_cost(playing: bool, n: int = 20000) -> float:
    """Seconds one taped call adds against a plain call (both with two arguments): played back
    from the tape (``playing``), or in a real run, where the tape only times the call."""

    class Probe:
        @staticmethod
        def f(a: bytes, b: int) -> int:
            return b

    tape = Tape()

    def best() -> float:
        out = float("inf")
        for _ in range(5):
            tape.pos = 0
            t0 = CLOCK()
            for _ in range(n):
                Probe.f(b"x", 1)
            out = min(out, CLOCK() - t0)
        return out

    plain = best()
    tape.recording = False
    tape.patch(Probe, "f")
    if playing:
        tape.playing = [("f", 1)] * (n + 1)
    taped = best()
    tape.restore()
    return max(taped - plain, 0.0) / n


@contextmanager
def replayers(rcfg: ResponderConfig, qcfg: RequesterConfig) -> Iterator[dict[str, Callable[[], None]]]:
    """Record one handshake; yield {side: run one replayed handshake of that side} (for timing or profiling)."""
    fixed = replace(qcfg, random=fixed_random)
    tape = Tape()
    real_os = responder_handlers.os
    real_handle = Responder.handle
    exchanges: list[tuple[bytes, bool, bytes]] = []
    try:
        responder_handlers.os = _FixedOs  # type: ignore[assignment]
        # warm the caches both sides keep across connections (encoded static messages), so
        # that the recording is what every later handshake does
        Requester(CallableTransport(Responder(rcfg).handle), fixed).authenticate()
        for owner, name in PATCH_POINTS:
            tape.patch(owner, name)
        responder = Responder(rcfg)

        def recording(message: bytes, secured: bool = False) -> bytes:
            tape.side = "responder"
            try:
                response = real_handle(responder, message, secured=secured)
            finally:
                tape.side = "requester"
            exchanges.append((message, secured, response))
            return response

        report = Requester(CallableTransport(recording), fixed).authenticate()
        if not report.authenticated:
            raise RuntimeError(f"recorded handshake did not authenticate: {report.error}")
        tape.recording = False

        def real_once() -> None:
            """A real handshake (real crypto): time inside the tape's calls goes to ``tape.spent``,
            the responder's whole time (its construction and every answer) to ``tape.responder``."""
            tape.playing = None
            t0 = CLOCK()
            rsp = Responder(rcfg)
            tape.responder += CLOCK() - t0

            def answer(message: bytes, secured: bool = False) -> bytes:
                tape.side = "responder"
                t0 = CLOCK()
                try:
                    return real_handle(rsp, message, secured=secured)
                finally:
                    tape.responder += CLOCK() - t0
                    tape.side = "requester"

            Requester(CallableTransport(answer), fixed).authenticate()
        answers = {(m, s): r for m, s, r in exchanges}

        def replayed(message: bytes, secured: bool = False) -> bytes:
            return answers[(message, secured)]

        def requester_once() -> None:
            tape.play("requester")
            Requester(CallableTransport(replayed), fixed).authenticate()

        def responder_once() -> None:
            tape.play("responder")
            handle = Responder(rcfg).handle
            for message, secured, _ in exchanges:
                handle(message, secured=secured)

        # check once that both sides replay the recorded bytes exactly
        tape.play("requester")
        if not Requester(CallableTransport(replayed), fixed).authenticate().authenticated:
            raise RuntimeError("replayed requester did not authenticate")
        tape.play("responder")
        check = Responder(rcfg)
        for message, secured, response in exchanges:
            if check.handle(message, secured=secured) != response:
                raise RuntimeError("replayed responder answered differently from the recording")
        yield {"requester": requester_once, "responder": responder_once, "real": real_once, "tape": tape,
               "log": exchanges,
               "calls": {side: len(tape.calls[side]) for side in tape.calls}, "exchanges": len(exchanges)}
    finally:
        tape.restore()
        responder_handlers.os = real_os


@contextmanager
def _gc_off() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def pure_codec_state(rcfg: ResponderConfig, qcfg: RequesterConfig, rounds: int, repeat: int) -> dict[str, float]:
    """CPU ms per handshake, per side: pciauth's SPDM code, and the crypto layer it stands on.

    Keys (``<side>`` is requester, responder or both):

    - ``<side>``: the SPDM code replayed on its own (crypto and X.509 from the tape);
    - ``layer_<side>``: time inside the crypto/X.509 calls of real handshakes;
    - ``insitu_<side>``: the rest of those real handshakes' time: the SPDM code where it really
      runs, between crypto calls (so with the caches crypto left cold and the memory it frees).

    Real and replayed batches alternate, so all figures see the same machine; each is the best
    of ``repeat`` batches of ``rounds`` handshakes. As timeit does, the garbage collector is
    collected before and kept off during the batches. Timer costs (the tape's wrappers) are
    measured in the same run and removed.
    """
    cost, timing = _call_cost(playing=True), _call_cost(playing=False)
    sides = ("requester", "responder")
    best = {f"{k}{side}": float("inf") for k in ("", "layer_", "insitu_") for side in sides}
    with replayers(rcfg, qcfg) as run, _gc_off():
        tape = run["tape"]
        answers = run["exchanges"] + 1  # timed answers and the timed responder construction
        for _ in range(repeat):
            gc.collect()
            tape.spent = {"requester": 0.0, "responder": 0.0}
            tape.responder = 0.0
            t0 = CLOCK()
            for _ in range(rounds):
                run["real"]()
            total = CLOCK() - t0
            side_time = {"requester": total - tape.responder - rounds * answers * timing,
                         "responder": tape.responder}
            for side in sides:
                best["layer_" + side] = min(best["layer_" + side], tape.spent[side] / rounds)
                insitu = (side_time[side] - tape.spent[side]) / rounds - run["calls"][side] * timing
                best["insitu_" + side] = min(best["insitu_" + side], insitu)
            for side in sides:
                t0 = CLOCK()
                for _ in range(rounds):
                    run[side]()
                best[side] = min(best[side], (CLOCK() - t0) / rounds - run["calls"][side] * cost)
        exchanges = run["exchanges"]
    out = {k: 1000 * v for k, v in best.items()}
    for k in ("", "layer_", "insitu_"):
        out[k + "both"] = out[k + "requester"] + out[k + "responder"]
    out["exchanges"] = exchanges
    return out
