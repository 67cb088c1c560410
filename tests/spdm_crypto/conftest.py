"""Shared keys for the SPDM crypto tests: generated once per session (RSA 4096 is slow)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pciauth.spdm import algorithms as alg


@pytest.fixture(scope="session")
def keys_by_asym() -> dict[int, object]:
    """One private key per BaseAsymAlgo bit; RSASSA and RSAPSS of a size share a key."""
    rsa_keys: dict[int, rsa.RSAPrivateKey] = {}
    keys: dict[int, object] = {}
    for bit, algo in alg.ASYM_ALGOS.items():
        if algo.scheme == "ecdsa":
            keys[bit] = ec.generate_private_key(algo.curve_cls())
        else:
            if algo.key_bits not in rsa_keys:
                rsa_keys[algo.key_bits] = rsa.generate_private_key(65537, algo.key_bits)
            keys[bit] = rsa_keys[algo.key_bits]
    return keys
