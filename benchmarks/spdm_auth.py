#!/usr/bin/env python3
"""Full SPDM authentication, requester against responder, per algorithm set: where the time goes.

Each handshake runs VCA, GET_DIGESTS, GET_CERTIFICATE, CHALLENGE and GET_MEASUREMENTS (and, in
the "+session" rows, KEY_EXCHANGE, FINISH, measurements in the session and END_SESSION), in
memory and, when ``pciauth.spdm.socket`` is present, over the spdm-emu socket on loopback.

Time is split by wrapping the crypto entry points (``algorithms``: hashes, signatures, DHE,
AEAD; ``keyschedule``: HKDF/HMAC; AEAD keys) and the certificate functions (``certs``: X.509
parsing and chain verification). Only the outermost wrapped call is timed, so nothing is counted
twice. "codec+state" is the rest: message encode/parse, transcripts, state machines, transport.
The baseline of the same run is the crypto time; the target is codec+state under 20% of it.
Times are CPU time of the process (both sides), so a loaded machine disturbs them less.

    python benchmarks/spdm_auth.py [--rounds N] [--quick] [--no-socket]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pciauth.spdm import algorithms as A
from pciauth.spdm import certs, keyschedule, pki, requester_signatures
from pciauth.spdm import requester as requester_mod
from pciauth.spdm.requester import Requester, RequesterConfig
from pciauth.spdm.responder import Responder, ResponderConfig, Slot
from pciauth.transport import CallableTransport

#: CPU time of this process: the machine is shared, and wall-clock numbers swing with its load.
#: In memory both sides run in this process; over the socket the server thread does too (the time
#: the kernel spends on loopback TCP is partly outside it).
CLOCK = time.process_time


class Meter:
    """Accumulates time spent in wrapped functions, per category, outermost call only."""

    def __init__(self) -> None:
        self.spent = {"crypto": 0.0, "certs": 0.0}
        self.depth = 0

    def wrap(self, owner: Any, name: str, category: str) -> None:
        fn = getattr(owner, name)
        meter = self

        def timed(*args: Any, **kw: Any) -> Any:
            if meter.depth:
                return fn(*args, **kw)
            meter.depth += 1
            t0 = CLOCK()
            try:
                return fn(*args, **kw)
            finally:
                meter.spent[category] += CLOCK() - t0
                meter.depth -= 1

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.spent = dict.fromkeys(self.spent, 0.0)


def install(meter: Meter) -> None:
    for name in ("hash_bytes", "sign", "verify", "dhe_generate", "dhe_shared", "signing_message",
                 "ecdsa_raw_to_der", "asym_bits_for_key"):
        meter.wrap(A, name, "crypto")
    meter.wrap(A.AeadKey, "encrypt", "crypto")
    meter.wrap(A.AeadKey, "decrypt", "crypto")
    meter.wrap(A.AeadKey, "__init__", "crypto")
    for name in ("from_dhe", "derive_data_keys", "requester_verify_data", "responder_verify_data",
                 "check_requester_verify_data", "check_responder_verify_data"):
        meter.wrap(keyschedule.SessionKeys, name, "crypto")
    for name in ("parse_cert_chain", "verify_chain", "build_cert_chain"):
        meter.wrap(certs, name, "certs")
    meter.wrap(certs.ChainVerdict, "to_dict", "certs")
    meter.wrap(requester_mod, "_pem", "certs")  # X.509 / SPKI encoding for the report
    meter.wrap(requester_signatures, "_public_pem", "certs")


SETS = [
    ("ecdsa-p256/sha256", "ecdsa-p256", A.ASYM_ECDSA_P256, A.HASH_SHA256),
    ("ecdsa-p384/sha384", "ecdsa-p384", A.ASYM_ECDSA_P384, A.HASH_SHA384),
    ("ecdsa-p521/sha512", "ecdsa-p521", A.ASYM_ECDSA_P521, A.HASH_SHA512),
    ("rsassa2048/sha256", "rsa2048", A.ASYM_RSASSA_2048, A.HASH_SHA256),
    ("rsapss3072/sha384", "rsa3072", A.ASYM_RSAPSS_3072, A.HASH_SHA384),
]


def socket_transport_factory(cfg: ResponderConfig) -> tuple[Callable[[], Any], Callable[[], None]] | None:
    try:
        from pciauth.spdm.socket import SocketTransport
        from pciauth.spdm.socket_server import ResponderServer
    except ImportError:
        return None
    server = ResponderServer(lambda: Responder(cfg), "127.0.0.1", 0).start()
    return (lambda: SocketTransport("127.0.0.1", server.port)), (lambda: server.stop())


def run_rows(rounds: int, quick: bool, use_socket: bool) -> list[dict]:
    meter = Meter()
    install(meter)
    rows = []
    sets = SETS[:2] if quick else SETS
    for label, alg, asym, hash_bit in sets:
        s = pki.generate_set(alg)
        rcfg = ResponderConfig(slots=[Slot(0, s.der_chain, s.leaf_key)])
        for session in (False, True):
            qcfg = RequesterConfig(versions=(0x12,), base_asym=asym, base_hash=hash_bit, trust_anchors=[s.root],
                                   session=session, keep_chain_bytes=False)
            modes: list[tuple[str, Callable[[], Any], Callable[[], None]]] = [
                ("memory", lambda c=rcfg: CallableTransport(Responder(c).handle), lambda: None)]
            if use_socket:
                sock = socket_transport_factory(rcfg)
                if sock:
                    modes.append(("socket", sock[0], sock[1]))
            for mode, make, stop in modes:
                transport = make()
                Requester(transport, qcfg).authenticate()  # warm-up (caches, imports)
                transport.close()
                meter.reset()
                t0 = CLOCK()
                ok = 0
                for _ in range(rounds):
                    transport = make()
                    ok += Requester(transport, qcfg).authenticate().authenticated
                    transport.close()
                total = CLOCK() - t0
                stop()
                crypto, cert = meter.spent["crypto"], meter.spent["certs"]
                other = total - crypto - cert
                rows.append({"set": label + ("+session" if session else ""), "mode": mode, "ok": ok,
                             "rounds": rounds, "ms": 1000 * total / rounds, "crypto_ms": 1000 * crypto / rounds,
                             "certs_ms": 1000 * cert / rounds, "other_ms": 1000 * other / rounds,
                             "ratio": other / crypto if crypto else float("inf"),
                             "ratio_all": other / (crypto + cert) if crypto + cert else float("inf")})
    return rows


def codec_only(rounds: int = 200) -> float:
    """Milliseconds to parse every message of one recorded handshake (both sides), no crypto."""
    from pciauth.spdm import messages as M
    from pciauth.spdm.measurements import parse_record

    s = pki.generate_set("ecdsa-p256")
    responder = Responder(ResponderConfig(slots=[Slot(0, s.der_chain, s.leaf_key)]))
    log: list[tuple[bytes, bytes]] = []

    def tap(message: bytes, secured: bool = False) -> bytes:
        resp = responder.handle(message, secured=secured)
        log.append((message, resp))
        return resp

    cfg = RequesterConfig(versions=(0x12,), base_asym=A.ASYM_ECDSA_P256, base_hash=A.HASH_SHA256,
                          trust_anchors=[s.root])
    Requester(CallableTransport(tap), cfg).authenticate()
    h, sig = 32, 64
    parsers = {
        0x84: (M.GetVersion.parse, M.Version.parse),
        0xE1: (M.GetCapabilities.parse, M.Capabilities.parse),
        0xE3: (M.NegotiateAlgorithms.parse, M.Algorithms.parse),
        0x81: (M.GetDigests.parse, lambda d: M.Digests.parse(d, h)),
        0x82: (M.GetCertificate.parse, M.Certificate.parse),
        0x83: (M.Challenge.parse, lambda d: M.ChallengeAuth.parse(d, hash_size=h, sig_size=sig, summary=False)),
        0xE0: (M.GetMeasurements.parse,
               lambda d: parse_record((m := M.Measurements.parse(d, sig_size=sig if len(d) > 200 else 0)).record,
                                      m.number_of_blocks)),
    }
    t0 = CLOCK()
    for _ in range(rounds):
        for req, resp in log:
            preq, presp = parsers[req[1]]
            preq(req)
            presp(resp)
    return 1000 * (CLOCK() - t0) / rounds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="two ECDSA sets only")
    ap.add_argument("--no-socket", action="store_true")
    args = ap.parse_args()
    rows = run_rows(args.rounds, args.quick, not args.no_socket)
    print(f"{'algorithm set':27} {'mode':6} {'ok':>5} {'ms/handshake':>12} {'crypto ms':>9} "
          f"{'x509 ms':>8} {'codec+state ms':>14} {'/crypto':>8} {'/(crypto+x509)':>14}")
    worst = worst_all = 0.0
    for r in rows:
        print(f"{r['set']:27} {r['mode']:6} {r['ok']:>2}/{r['rounds']:<2} {r['ms']:12.2f} {r['crypto_ms']:9.2f} "
              f"{r['certs_ms']:8.2f} {r['other_ms']:14.2f} {100 * r['ratio']:7.1f}% {100 * r['ratio_all']:13.1f}%")
        if r["mode"] == "memory":
            worst = max(worst, r["ratio"])
            worst_all = max(worst_all, r["ratio_all"])
    print(f"\ntarget codec+state < 20% of crypto, in memory: worst {100 * worst:.1f}% of crypto alone "
          f"({'met' if worst < 0.2 else 'missed'}), {100 * worst_all:.1f}% of crypto + X.509 work "
          f"({'met' if worst_all < 0.2 else 'missed'})")
    print("socket rows include loopback TCP and framing in codec+state.")
    print(f"codec alone (parse every request and response of one ecdsa-p256 handshake): {codec_only():.3f} ms")
    return 0 if all(r["ok"] == r["rounds"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
