"""The signature log re-verifies with the real openssl CLI, following the recipe in docs/spdm.md."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import requester_config, responder_config

from pciauth.spdm import algorithms as A
from pciauth.spdm.requester import Requester
from pciauth.spdm.responder import Responder
from pciauth.transport import CallableTransport

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl CLI installed")


def openssl(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=30)


def verify_record(sig: dict, tmp_path) -> subprocess.CompletedProcess:
    """docs/spdm.md, "Re-checking a signature with openssl", step by step."""
    (tmp_path / "pub.pem").write_text(sig["public_key_pem"])
    (tmp_path / "transcript.bin").write_bytes(bytes.fromhex(sig["transcript"]))
    digest = "-" + sig["hash_algorithm"]
    # 1. the transcript hash in the log is the hash of the transcript
    h = openssl("dgst", digest, "-binary", "transcript.bin", cwd=tmp_path)
    assert h.returncode == 0 and h.stdout.hex() == sig["transcript_hash"]
    # 2. rebuild what was signed: M itself (1.0/1.1), else combined prefix || Hash(M)
    if sig["combined_prefix"]:
        msg = bytes.fromhex(sig["combined_prefix"]) + h.stdout
    else:
        msg = bytes.fromhex(sig["transcript"])
    assert msg.hex() == sig["signed_message"]
    (tmp_path / "msg.bin").write_bytes(msg)
    # 3. the signature file: DER for ECDSA (the log carries it), raw for RSA
    raw = bytes.fromhex(sig["signature_der"] or sig["signature"])
    (tmp_path / "sig.bin").write_bytes(raw)
    opts = [x for o in sig["openssl_sigopts"] for x in ("-sigopt", o)]
    return openssl("dgst", digest, *opts, "-verify", "pub.pem", "-signature", "sig.bin", "msg.bin", cwd=tmp_path)


CASES = [
    (0x10, "ecdsa-p256", A.ASYM_ECDSA_P256, A.HASH_SHA256),
    (0x11, "ecdsa-p384", A.ASYM_ECDSA_P384, A.HASH_SHA384),
    (0x12, "ecdsa-p521", A.ASYM_ECDSA_P521, A.HASH_SHA512),
    (0x13, "ecdsa-p384", A.ASYM_ECDSA_P384, A.HASH_SHA384),
    (0x12, "rsa2048", A.ASYM_RSASSA_2048, A.HASH_SHA256),
    (0x13, "rsa3072", A.ASYM_RSAPSS_3072, A.HASH_SHA384),
    (0x11, "rsa3072", A.ASYM_RSAPSS_3072, A.HASH_SHA512),
]


@pytest.mark.parametrize("version,alg,asym,hash_bit", CASES,
                         ids=[f"{v:x}-{A.describe_asym(a)}-{A.describe_hash(h)}" for v, _, a, h in CASES])
def test_signature_log_verifies_with_openssl(tmp_path, version, alg, asym, hash_bit):
    responder = Responder(responder_config(alg))
    cfg = requester_config(alg, versions=(version,), base_asym=asym, base_hash=hash_bit,
                           session=version >= 0x11)
    report = Requester(CallableTransport(responder.handle), cfg).authenticate()
    assert report.authenticated, report.error
    sigs = json.loads(json.dumps(report.to_dict()))["signatures"]
    assert len(sigs) >= 2
    for sig in sigs:
        res = verify_record(sig, tmp_path)
        assert res.returncode == 0 and b"Verified OK" in res.stdout, (sig["what"], res.stderr)


def test_openssl_rejects_a_tampered_transcript(tmp_path):
    responder = Responder(responder_config())
    report = Requester(CallableTransport(responder.handle), requester_config()).authenticate()
    sig = report.to_dict()["signatures"][0]
    msg = bytearray.fromhex(sig["signed_message"])
    msg[-1] ^= 1
    sig["signed_message"] = msg.hex()
    (tmp_path / "pub.pem").write_text(sig["public_key_pem"])
    (tmp_path / "msg.bin").write_bytes(bytes(msg))
    (tmp_path / "sig.bin").write_bytes(bytes.fromhex(sig["signature_der"]))
    res = openssl("dgst", "-" + sig["hash_algorithm"], "-verify", "pub.pem", "-signature", "sig.bin", "msg.bin",
                  cwd=tmp_path)
    assert res.returncode != 0 and b"Verification failure" in res.stdout + res.stderr


def test_little_endian_1_1_signature_is_logged_verifiable(tmp_path):
    from pciauth.spdm.requester import swap_endian

    responder = Responder(responder_config("ecdsa-p256"))
    real_sign = responder._sign
    responder._sign = lambda ctx, t, slot: swap_endian(A.asym_algo(responder.asym_bit), real_sign(ctx, t, slot))
    cfg = requester_config("ecdsa-p256", versions=(0x11,), base_asym=A.ASYM_ECDSA_P256)
    report = Requester(CallableTransport(responder.handle), cfg).authenticate()
    assert report.authenticated
    sig = report.to_dict()["signatures"][0]
    res = verify_record(sig, tmp_path)
    assert res.returncode == 0 and b"Verified OK" in res.stdout
