"""The valid material seeds are built from: one PKI, and every SPDM message of real flows.

Built once per process (``world()``): a responder with a fresh in-memory PKI, then the
requester authenticates against it in memory for each SPDM version (and with a session), and
every request and response is captured. The requester's nonces come from a fixed counter, so
replaying the captured responses to a new requester reproduces a whole valid authentication.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import _paths  # noqa: F401  (repository root on sys.path)

from pciauth.spdm import constants as C

#: Requester variants the requester harness can run; the first input byte picks one.
REQUESTER_VARIANTS = (
    {"versions": (C.V13,), "summary_type": "all"},
    {"versions": (C.V12,), "summary_type": "tcb"},
    {"versions": (C.V11,), "summary_type": "none"},
    {"versions": (C.V10,), "summary_type": "all"},
    {"versions": (C.V13,), "summary_type": "none", "session": True},
)


def counter_random() -> object:
    """A deterministic random source: the same nonces in every run."""
    state = {"n": 0}

    def draw(n: int) -> bytes:
        out = b""
        while len(out) < n:
            state["n"] += 1
            out += hashlib.sha256(state["n"].to_bytes(8, "little")).digest()
        return out[:n]

    return draw


@dataclass
class Exchange:
    request: bytes
    response: bytes
    secured: bool


@dataclass
class World:
    pki: object
    responder_config: object
    root_der: bytes
    chain_by_hash: dict[int, bytes]
    flows: dict[int, list[Exchange]] = field(default_factory=dict)

    def trust_anchors(self) -> list:
        return [self.pki.root]


class _Capture:
    def __init__(self, responder, log: list[Exchange]) -> None:
        self.responder, self.log = responder, log

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        response = self.responder.handle(bytes(message), secured=secured)
        self.log.append(Exchange(bytes(message), bytes(response), secured))
        return response

    def close(self) -> None:
        pass


def requester_config(world: World, variant: int):
    from pciauth.spdm.requester import RequesterConfig

    v = REQUESTER_VARIANTS[variant % len(REQUESTER_VARIANTS)]
    return RequesterConfig(trust_anchors=world.trust_anchors(), random=counter_random(), sleep=lambda s: None,
                           **v)


@functools.lru_cache(maxsize=1)
def world() -> World:
    from cryptography.hazmat.primitives.serialization import Encoding

    from pciauth.spdm import algorithms as A
    from pciauth.spdm import pki
    from pciauth.spdm.certs import build_cert_chain
    from pciauth.spdm.requester import Requester
    from pciauth.spdm.responder import Responder, ResponderConfig, Slot

    s = pki.generate_set("ecdsa-p384")
    cfg = ResponderConfig(slots=[Slot(0, s.der_chain, s.leaf_key)])
    chains = {bit: build_cert_chain(s.der_chain, bit) for bit in (A.HASH_SHA256, A.HASH_SHA384)}
    w = World(s, cfg, s.root.public_bytes(Encoding.DER), chains)
    for i in range(len(REQUESTER_VARIANTS)):
        log: list[Exchange] = []
        report = Requester(_Capture(Responder(cfg), log), requester_config(w, i)).authenticate()
        if not report.authenticated:
            raise RuntimeError(f"seed flow {i} did not authenticate: {report.error}")
        w.flows[i] = log
    return w
