"""Builders for certificate-chain tests: fresh P-256 chains with any one thing broken."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pciauth.spdm.algorithms import HASH_SHA256
from pciauth.spdm.certs import build_cert_chain, cma_name, parse_cert_chain
from pciauth.spdm.pki import DEFAULT_IDENTITY, cma_san, make_certificate

H = HASH_SHA256
IDENTITY = DEFAULT_IDENTITY
NOW = datetime.datetime.now(datetime.UTC)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@dataclasses.dataclass
class Built:
    root: x509.Certificate
    inter: x509.Certificate
    leaf: x509.Certificate
    root_key: Any
    inter_key: Any
    leaf_key: Any

    @property
    def certs(self) -> list[x509.Certificate]:
        return [self.root, self.inter, self.leaf]


def build(root_kw: dict | None = None, inter_kw: dict | None = None, leaf_kw: dict | None = None,
          *, cn: str = "test") -> Built:  # fmt: skip
    """root -> inter -> leaf (P-256), each certificate's make_certificate() overridable."""
    rk, ik, lk = key(), key(), key()
    rn, inn, ln = name(f"{cn} root"), name(f"{cn} inter"), name(f"{cn} leaf")
    root = make_certificate(rn, rk.public_key(), rk, **{"ca": True, "path_length": 1, **(root_kw or {})})
    inter = make_certificate(
        inn, ik.public_key(), rk, issuer=rn, **{"ca": True, "path_length": 0, **(inter_kw or {})}
    )
    leaf = make_certificate(
        ln,
        lk.public_key(),
        ik,
        issuer=inn,
        **{"ca": False, "san": cma_san(cma_name(IDENTITY)), **(leaf_kw or {})},
    )
    return Built(root, inter, leaf, rk, ik, lk)


def chain_of(certs: list[x509.Certificate], *, hash_bit: int = H, root: x509.Certificate | None = None):
    raw = build_cert_chain([der(c) for c in certs], hash_bit, root_der=der(root) if root else None)
    return parse_cert_chain(raw, hash_bit)
