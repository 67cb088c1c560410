"""Valid but unusual certificate chains for the ``spdm_certs`` seeds: other key types (Ed25519,
Ed448, DSA, RSA, P-521), a SHA-224 and RSA-PSS signatures, missing and odd extensions, a leaf-first chain. A
mutator rarely builds a new valid certificate, so the seeds bring the variety."""

from __future__ import annotations

import datetime
import functools

import _paths  # noqa: F401
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, hash_cls=hashes.SHA384,
          extensions: bool = True, san: bytes | None = None) -> bytes:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER))
    if extensions:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        b = b.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False),
            critical=True)
    if san is not None:
        other = x509.OtherName(x509.ObjectIdentifier("2.23.147"), san)
        b = b.add_extension(x509.SubjectAlternativeName([other]), critical=False)
    algo = None if isinstance(issuer_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hash_cls()
    return b.sign(issuer_key, algo).public_bytes(Encoding.DER)


@functools.lru_cache(maxsize=1)
def chains() -> list[list[bytes]]:
    """Lists of DER certificates, root first (except the last, leaf first)."""
    root = ec.generate_private_key(ec.SECP384R1())
    root_der = _cert("zoo root", root, "zoo root", root, ca=True)
    leaves = [
        ed25519.Ed25519PrivateKey.generate(),
        ed448.Ed448PrivateKey.generate(),
        dsa.generate_private_key(1024),
        rsa.generate_private_key(65537, 2048),
        ec.generate_private_key(ec.SECP521R1()),
    ]
    out = []
    for key in leaves:
        out.append([root_der, _cert("zoo leaf", key, "zoo root", root, ca=False)])
    ed_root = ed25519.Ed25519PrivateKey.generate()
    ed_root_der = _cert("ed root", ed_root, "ed root", ed_root, ca=True)
    out.append([ed_root_der, _cert("ed leaf", ec.generate_private_key(ec.SECP256R1()), "ed root", ed_root,
                                   ca=False)])
    sha224 = _cert("sha224 leaf", ec.generate_private_key(ec.SECP256R1()), "zoo root", root, ca=False,
                   hash_cls=hashes.SHA224)
    out.append([root_der, sha224])
    rsa_root = rsa.generate_private_key(65537, 2048)
    pss = (x509.CertificateBuilder().subject_name(_name("pss root")).issuer_name(_name("pss root"))
           .public_key(rsa_root.public_key()).serial_number(1).not_valid_before(NOT_BEFORE)
           .not_valid_after(NOT_AFTER).add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
           .sign(rsa_root, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH))
           .public_bytes(Encoding.DER))
    out.append([pss, _cert("pss leaf", ec.generate_private_key(ec.SECP256R1()), "pss root", rsa_root, ca=False)])
    bare = _cert("bare leaf", ec.generate_private_key(ec.SECP256R1()), "zoo root", root, ca=False,
                 extensions=False, san=b"\x0c\x05hello")
    out.append([root_der, bare])
    odd_san = _cert("san leaf", ec.generate_private_key(ec.SECP256R1()), "zoo root", root, ca=False,
                    san=b"\x04\x03abc")
    out.append([root_der, odd_san])
    out.append([odd_san, root_der])  # leaf first
    return out
