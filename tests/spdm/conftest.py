"""Fixtures for the SPDM core tests: test PKIs per algorithm (RSA generated once per session)."""

from __future__ import annotations

import pytest
from cryptography import x509

from pciauth.spdm import pki
from pciauth.spdm.requester import RequesterConfig
from pciauth.spdm.responder import ResponderConfig, Slot

_SETS: dict[str, pki.PkiSet] = {}


def pki_set(alg: str) -> pki.PkiSet:
    """A root/intermediate/leaf set for ``alg``, generated once per test session (RSA is slow)."""
    if alg not in _SETS:
        _SETS[alg] = pki.generate_set(alg)
    return _SETS[alg]


def responder_config(alg: str = "ecdsa-p384", **kw) -> ResponderConfig:
    s = pki_set(alg)
    return ResponderConfig(slots=[Slot(0, s.der_chain, s.leaf_key)], **kw)


def anchor(alg: str = "ecdsa-p384") -> x509.Certificate:
    return pki_set(alg).root


def requester_config(alg: str = "ecdsa-p384", **kw) -> RequesterConfig:
    kw.setdefault("trust_anchors", [anchor(alg)])
    kw.setdefault("sleep", lambda s: None)
    return RequesterConfig(**kw)


@pytest.fixture(scope="session")
def p384() -> pki.PkiSet:
    return pki_set("ecdsa-p384")
