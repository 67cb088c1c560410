"""Signatures made by pciauth verify with the openssl CLI, and openssl's verify with pciauth.

This is the recipe a remote verifier follows with pciauth's signature log: for SPDM 1.2+ the
signed message is ``combined_prefix || Hash(M)``, hashed again by ``openssl dgst``; ECDSA
signatures are converted from raw ``r || s`` to DER first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from pciauth.errors import SignatureError
from pciauth.spdm import algorithms as alg
from pciauth.spdm import keyschedule as ks

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
pytestmark = pytest.mark.skipif(not Path(OPENSSL).exists(), reason="openssl CLI not installed")

DGST = {alg.HASH_SHA256: "-sha256", alg.HASH_SHA384: "-sha384", alg.HASH_SHA512: "-sha512"}

# One hash per algorithm keeps the run short; every hash is covered across the list.
CASES = [
    (alg.ASYM_ECDSA_P256, alg.HASH_SHA256),
    (alg.ASYM_ECDSA_P384, alg.HASH_SHA384),
    (alg.ASYM_ECDSA_P521, alg.HASH_SHA512),
    (alg.ASYM_RSASSA_2048, alg.HASH_SHA256),
    (alg.ASYM_RSAPSS_2048, alg.HASH_SHA384),
    (alg.ASYM_RSASSA_3072, alg.HASH_SHA512),
    (alg.ASYM_RSAPSS_3072, alg.HASH_SHA256),
    (alg.ASYM_RSASSA_4096, alg.HASH_SHA384),
    (alg.ASYM_RSAPSS_4096, alg.HASH_SHA512),
]


def _ids(case):
    return f"{alg.describe_asym(case[0])}-{alg.describe_hash(case[1])}"


def _pss_opts(asym: int) -> list[str]:
    if alg.ASYM_ALGOS[asym].scheme != "rsapss":
        return []
    # salt length = digest length, MGF1 with the same digest (openssl's default MGF1 digest).
    return ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]


def _write_keys(tmp_path: Path, key) -> tuple[Path, Path]:
    priv = tmp_path / "key.pem"
    pub = tmp_path / "pub.pem"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_openssl_verifies_pciauth_signature(case, keys_by_asym, tmp_path):
    asym, h = case
    key = keys_by_asym[asym]
    _, pub = _write_keys(tmp_path, key)
    transcript = b"\x12\x84\x00\x00" * 40  # stands for M1/M2
    message = alg.signing_message(0x12, alg.CONTEXT_CHALLENGE_AUTH, transcript, h)
    sig = alg.sign(asym, h, key, message)
    wire = alg.signature_for_openssl(asym, sig)
    (tmp_path / "msg.bin").write_bytes(message)
    (tmp_path / "sig.bin").write_bytes(wire)
    ok = _openssl(
        "dgst",
        *alg.openssl_verify_args(asym, h),
        "-verify",
        str(pub),
        "-signature",
        str(tmp_path / "sig.bin"),
        str(tmp_path / "msg.bin"),
    )
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stdout + ok.stderr
    # and openssl rejects it over another message: the check above is not vacuous
    (tmp_path / "msg.bin").write_bytes(message[:-1] + bytes([message[-1] ^ 1]))
    bad = _openssl(
        "dgst",
        *alg.openssl_verify_args(asym, h),
        "-verify",
        str(pub),
        "-signature",
        str(tmp_path / "sig.bin"),
        str(tmp_path / "msg.bin"),
    )
    assert bad.returncode != 0


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_pciauth_verifies_openssl_signature(case, keys_by_asym, tmp_path):
    asym, h = case
    key = keys_by_asym[asym]
    priv, _ = _write_keys(tmp_path, key)
    message = alg.signing_message("1.3", alg.CONTEXT_MEASUREMENTS, b"L1L2" * 100, h)
    (tmp_path / "msg.bin").write_bytes(message)
    out = _openssl(
        "dgst",
        DGST[h],
        *_pss_opts(asym),
        "-sign",
        str(priv),
        "-out",
        str(tmp_path / "sig.bin"),
        str(tmp_path / "msg.bin"),
    )
    assert out.returncode == 0, out.stderr
    sig = (tmp_path / "sig.bin").read_bytes()
    algo = alg.ASYM_ALGOS[asym]
    if algo.scheme == "ecdsa":
        r, s = decode_dss_signature(sig)
        sig = r.to_bytes(algo.coord_size, "big") + s.to_bytes(algo.coord_size, "big")
    alg.verify(asym, h, key.public_key(), sig, message)
    with pytest.raises(SignatureError):
        alg.verify(asym, h, key.public_key(), sig, message + b"x")


def test_openssl_pss_with_other_salt_length_is_rejected(keys_by_asym, tmp_path):
    """DSP0274 fixes the PSS salt to the hash length; a 20-byte salt must not verify."""
    asym, h = alg.ASYM_RSAPSS_2048, alg.HASH_SHA384
    key = keys_by_asym[asym]
    priv, _ = _write_keys(tmp_path, key)
    (tmp_path / "msg.bin").write_bytes(b"message")
    out = _openssl(
        "dgst",
        DGST[h],
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:20",
        "-sign",
        str(priv),
        "-out",
        str(tmp_path / "sig.bin"),
        str(tmp_path / "msg.bin"),
    )
    assert out.returncode == 0, out.stderr
    with pytest.raises(SignatureError):
        alg.verify(asym, h, key.public_key(), (tmp_path / "sig.bin").read_bytes(), b"message")


@pytest.mark.parametrize("group", list(alg.DHE_GROUPS), ids=alg.describe_dhe)
def test_ecdhe_secret_matches_openssl_derive(group, tmp_path):
    """The shared secret from raw X||Y equals what openssl derives from the same two keys."""
    mine, _ = alg.dhe_generate(group)
    _, peer_raw = alg.dhe_generate(group)
    peer = alg.dhe_load_public(group, peer_raw)
    (tmp_path / "mine.pem").write_bytes(
        mine.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "peer.pem").write_bytes(
        peer.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    out = _openssl(
        "pkeyutl",
        "-derive",
        "-inkey",
        str(tmp_path / "mine.pem"),
        "-peerkey",
        str(tmp_path / "peer.pem"),
        "-out",
        str(tmp_path / "secret.bin"),
    )
    assert out.returncode == 0, out.stderr
    assert alg.dhe_shared(group, mine, peer_raw) == (tmp_path / "secret.bin").read_bytes()


@pytest.mark.parametrize("hash_bit", list(alg.HASH_ALGOS), ids=alg.describe_hash)
def test_key_schedule_steps_match_openssl_kdf(hash_bit):
    """Handshake secret (HKDF-Extract) and one BinConcat expansion, recomputed by `openssl kdf`."""
    n = alg.hash_size(hash_bit)
    digest = alg.describe_hash(hash_bit).upper()
    dhe, th1 = os.urandom(48), os.urandom(n)
    keys = ks.SessionKeys.from_dhe("1.2", hash_bit, alg.AEAD_AES_256_GCM, dhe, th1)

    def kdf(mode: str, length: int, **hexopts: bytes) -> bytes:
        opts = []
        for k, v in hexopts.items():
            opts += ["-kdfopt", f"hex{k}:{v.hex()}"]
        out = _openssl(
            "kdf",
            "-keylen",
            str(length),
            "-kdfopt",
            f"digest:{digest}",
            "-kdfopt",
            f"mode:{mode}",
            *opts,
            "HKDF",
        )
        assert out.returncode == 0, out.stderr
        return bytes.fromhex(out.stdout.strip().replace(":", ""))

    hs = kdf("EXTRACT_ONLY", n, key=dhe, salt=bytes(n))
    assert hs == keys.handshake_secret
    info = n.to_bytes(2, "little") + b"spdm1.2 rsp hs data" + th1
    assert kdf("EXPAND_ONLY", n, key=hs, info=info) == keys.response_handshake.secret
    key_info = (32).to_bytes(2, "little") + b"spdm1.2 key"
    assert (
        kdf("EXPAND_ONLY", 32, key=keys.response_handshake.secret, info=key_info)
        == keys.response_handshake.key
    )
