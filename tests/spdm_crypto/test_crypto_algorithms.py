"""Algorithm tables, hashes, signatures, signing context, DHE and AEAD of pciauth.spdm.algorithms."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from pciauth.errors import MalformedData, PciauthError, SignatureError, UsageError
from pciauth.spdm import algorithms as alg

ALL_PAIRS = list(itertools.product(alg.ASYM_ALGOS, alg.HASH_ALGOS))


def _pair_id(pair: tuple[int, int]) -> str:
    return f"{alg.describe_asym(pair[0])}-{alg.describe_hash(pair[1])}"


# ---------------------------------------------------------------------------------------------
# Tables: the bit values are wire values; pin them to DSP0274 / libspdm spdm.h.
# ---------------------------------------------------------------------------------------------


def test_hash_bits_match_dsp0274():
    # BaseHashAlgo: bit 0 SHA-256, bit 1 SHA-384, bit 2 SHA-512.
    assert {b: (a.name, a.size) for b, a in alg.HASH_ALGOS.items()} == {
        0x1: ("sha256", 32),
        0x2: ("sha384", 48),
        0x4: ("sha512", 64),
    }


def test_asym_bits_match_dsp0274():
    # BaseAsymAlgo bits 0..8 (libspdm SPDM_ALGORITHMS_BASE_ASYM_ALGO_TPM_ALG_*) and signature sizes.
    expected = {
        0x001: ("rsassa", 2048, 256),
        0x002: ("rsapss", 2048, 256),
        0x004: ("rsassa", 3072, 384),
        0x008: ("rsapss", 3072, 384),
        0x010: ("ecdsa", 256, 64),
        0x020: ("rsassa", 4096, 512),
        0x040: ("rsapss", 4096, 512),
        0x080: ("ecdsa", 384, 96),
        0x100: ("ecdsa", 521, 132),
    }
    got = {b: (a.scheme, a.key_bits, a.signature_size) for b, a in alg.ASYM_ALGOS.items()}
    assert got == expected
    for bit, size in expected.items():
        assert alg.signature_size(bit) == size[2]


def test_dhe_and_aead_bits_match_dsp0274():
    # DHE: bit 3 secp256r1, bit 4 secp384r1; AEAD: bit 0 AES-128-GCM, 1 AES-256-GCM, 2 ChaCha20-Poly1305.
    assert {b: (g.name, g.public_size) for b, g in alg.DHE_GROUPS.items()} == {
        0x08: ("secp256r1", 64),
        0x10: ("secp384r1", 96),
    }
    assert {b: (s.name, s.key_size, s.iv_size, s.tag_size) for b, s in alg.AEAD_SUITES.items()} == {
        0x1: ("aes-128-gcm", 16, 12, 16),
        0x2: ("aes-256-gcm", 32, 12, 16),
        0x4: ("chacha20-poly1305", 32, 12, 16),
    }


def test_priorities_cover_exactly_the_tables():
    for table, prio in (
        (alg.HASH_ALGOS, alg.HASH_PRIORITY),
        (alg.ASYM_ALGOS, alg.ASYM_PRIORITY),
        (alg.DHE_GROUPS, alg.DHE_PRIORITY),
        (alg.AEAD_SUITES, alg.AEAD_PRIORITY),
    ):
        assert sorted(prio) == sorted(table)


@pytest.mark.parametrize("bad", [0, 0x8, 0x3, -1, None, "sha256"])
def test_unknown_hash_bit_is_usage_error(bad):
    with pytest.raises(UsageError):
        alg.hash_size(bad)


# ---------------------------------------------------------------------------------------------
# Naming and selection
# ---------------------------------------------------------------------------------------------


def test_select_common_uses_priority_not_bit_order():
    ours = alg.HASH_SHA256 | alg.HASH_SHA384 | alg.HASH_SHA512
    assert alg.select_common(ours, alg.HASH_SHA256 | alg.HASH_SHA512, alg.HASH_PRIORITY) == alg.HASH_SHA512
    assert alg.select_common(ours, ours, alg.HASH_PRIORITY) == alg.HASH_SHA384
    assert alg.select_common(ours, ours, (alg.HASH_SHA256,)) == alg.HASH_SHA256
    assert alg.select_common(alg.HASH_SHA256, alg.HASH_SHA384, alg.HASH_PRIORITY) == 0
    # bits the peer offers that pciauth does not implement are never chosen
    assert alg.select_common(0xFFFFFFFF, 0x8 | 0x40, alg.HASH_PRIORITY) == 0


def test_describe_and_names():
    assert alg.describe_hash(0x2) == "sha384"
    assert alg.describe_asym(0x80) == "ecdsa-p384"
    assert alg.describe_dhe(0x10) == "secp384r1"
    assert alg.describe_aead(0x4) == "chacha20-poly1305"
    assert alg.describe_hash(0x8) == "unknown(0x8)"
    assert alg.describe_mask(alg.HASH_ALGOS, 0x7 | 0x40) == ["sha256", "sha384", "sha512", "unknown(0x40)"]
    assert alg.bits_from_names(alg.ASYM_ALGOS, ["ECDSA-P256", " rsapss3072"]) == 0x10 | 0x8
    with pytest.raises(UsageError, match="unknown algorithm"):
        alg.bits_from_names(alg.HASH_ALGOS, ["md5"])
    assert alg.mask_bits(0x105) == [0x1, 0x4, 0x100]
    assert alg.mask_bits(0) == []


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bit,name", [(0x1, "sha256"), (0x2, "sha384"), (0x4, "sha512")])
def test_hash_matches_hashlib(bit, name):
    data = b"pciauth" * 100
    assert alg.hash_bytes(bit, data) == hashlib.new(name, data).digest()
    h = alg.new_hash(bit)
    h.update(data[:10])
    h.update(data[10:])
    assert h.finalize() == hashlib.new(name, data).digest()


# ---------------------------------------------------------------------------------------------
# Signing context (SPDM 1.2+)
# ---------------------------------------------------------------------------------------------


def test_combined_prefix_layout():
    p = alg.combined_prefix(0x12, alg.CONTEXT_CHALLENGE_AUTH)
    assert len(p) == 100
    assert p == b"dmtf-spdm-v1.2.*" * 4 + bytes(4) + b"responder-challenge_auth signing"
    p13 = alg.combined_prefix("1.3", alg.CONTEXT_KEY_EXCHANGE_RSP)
    assert p13 == b"dmtf-spdm-v1.3.*" * 4 + bytes(2) + b"responder-key_exchange_rsp signing"
    assert alg.combined_prefix((1, 2), alg.CONTEXT_FINISH)[64:] == bytes(12) + b"requester-finish signing"
    assert (
        alg.combined_prefix(0x12, alg.CONTEXT_MEASUREMENTS)[64:]
        == bytes(6) + b"responder-measurements signing"
    )
    with pytest.raises(UsageError):
        alg.combined_prefix(0x12, "x" * 37)
    with pytest.raises(UsageError):
        alg.combined_prefix(0x1A, alg.CONTEXT_FINISH)
    assert alg.combined_prefix(0x12, "x" * 36)[64:] == b"x" * 36


@pytest.mark.parametrize("version", [0x10, "1.1", (1, 0)])
def test_signing_message_is_transcript_before_1_2(version):
    assert alg.signing_message(version, alg.CONTEXT_CHALLENGE_AUTH, b"M1M2", alg.HASH_SHA384) == b"M1M2"
    with pytest.raises(UsageError):
        alg.signing_message(version, alg.CONTEXT_CHALLENGE_AUTH, bytes(48), alg.HASH_SHA384, is_hash=True)


@pytest.mark.parametrize("version", [0x12, 0x13])
def test_signing_message_from_1_2(version):
    m = b"transcript" * 50
    digest = hashlib.sha384(m).digest()
    expected = alg.combined_prefix(version, alg.CONTEXT_MEASUREMENTS) + digest
    assert alg.signing_message(version, alg.CONTEXT_MEASUREMENTS, m, alg.HASH_SHA384) == expected
    assert (
        alg.signing_message(version, alg.CONTEXT_MEASUREMENTS, digest, alg.HASH_SHA384, is_hash=True)
        == expected
    )
    with pytest.raises(UsageError):
        alg.signing_message(version, alg.CONTEXT_MEASUREMENTS, bytes(32), alg.HASH_SHA384, is_hash=True)


@pytest.mark.parametrize("bad", ["1", "one.two", 0x100, -1, (1, 16), 1.2])
def test_bad_versions(bad):
    with pytest.raises(UsageError):
        alg.version_tuple(bad)


# ---------------------------------------------------------------------------------------------
# Signatures: every algorithm with every hash
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_sign_verify_round_trip(pair, keys_by_asym):
    asym, h = pair
    key = keys_by_asym[asym]
    msg = alg.signing_message(0x12, alg.CONTEXT_CHALLENGE_AUTH, b"M" * 300, h)
    sig = alg.sign(asym, h, key, msg)
    assert len(sig) == alg.signature_size(asym)
    alg.verify(asym, h, key.public_key(), sig, msg)
    # prehashed path gives a signature the plain path accepts, and vice versa
    digest = alg.hash_bytes(h, msg)
    alg.verify(asym, h, key.public_key(), sig, digest, prehashed=True)
    sig2 = alg.sign(asym, h, key, digest, prehashed=True)
    alg.verify(asym, h, key.public_key(), sig2, msg)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_tampered_signature_and_message_fail(pair, keys_by_asym):
    asym, h = pair
    key = keys_by_asym[asym]
    sig = alg.sign(asym, h, key, b"message")
    for pos in (0, len(sig) // 2, len(sig) - 1):
        bad = bytearray(sig)
        bad[pos] ^= 0x01
        with pytest.raises(SignatureError, match="does not verify|zero"):
            alg.verify(asym, h, key.public_key(), bytes(bad), b"message")
    with pytest.raises(SignatureError, match="does not verify"):
        alg.verify(asym, h, key.public_key(), sig, b"messagE")
    with pytest.raises(SignatureError, match="bytes, expected"):
        alg.verify(asym, h, key.public_key(), sig[:-1], b"message")
    with pytest.raises(SignatureError, match="bytes, expected"):
        alg.verify(asym, h, key.public_key(), sig + b"\0", b"message")


def test_wrong_hash_fails(keys_by_asym):
    key = keys_by_asym[alg.ASYM_ECDSA_P384]
    sig = alg.sign(alg.ASYM_ECDSA_P384, alg.HASH_SHA384, key, b"m")
    with pytest.raises(SignatureError):
        alg.verify(alg.ASYM_ECDSA_P384, alg.HASH_SHA256, key.public_key(), sig, b"m")


def test_rsassa_and_rsapss_are_not_interchangeable(keys_by_asym):
    key = keys_by_asym[alg.ASYM_RSASSA_2048]
    sig = alg.sign(alg.ASYM_RSASSA_2048, alg.HASH_SHA256, key, b"m")
    with pytest.raises(SignatureError):
        alg.verify(alg.ASYM_RSAPSS_2048, alg.HASH_SHA256, key.public_key(), sig, b"m")


def test_key_of_wrong_type_or_size(keys_by_asym):
    p256 = keys_by_asym[alg.ASYM_ECDSA_P256]
    sig = alg.sign(alg.ASYM_ECDSA_P256, alg.HASH_SHA256, p256, b"m")
    with pytest.raises(SignatureError, match="64 bytes, expected 96"):
        alg.verify(
            alg.ASYM_ECDSA_P384, alg.HASH_SHA256, keys_by_asym[alg.ASYM_ECDSA_P384].public_key(), sig, b"m"
        )
    with pytest.raises(SignatureError, match="needs curve"):
        alg.verify(alg.ASYM_ECDSA_P384, alg.HASH_SHA256, p256.public_key(), sig + bytes(32), b"m")
    with pytest.raises(SignatureError, match="RSA key"):
        alg.verify(alg.ASYM_RSASSA_2048, alg.HASH_SHA256, p256.public_key(), bytes(256), b"m")
    with pytest.raises(SignatureError, match="3072-bit"):
        alg.verify(
            alg.ASYM_RSASSA_3072,
            alg.HASH_SHA256,
            keys_by_asym[alg.ASYM_RSASSA_2048].public_key(),
            bytes(384),
            b"m",
        )
    with pytest.raises(UsageError):
        alg.sign(alg.ASYM_ECDSA_P384, alg.HASH_SHA256, p256, b"m")
    with pytest.raises(UsageError):
        alg.sign(alg.ASYM_ECDSA_P256, alg.HASH_SHA256, p256.public_key(), b"m")


def test_ecdsa_zero_and_overflow_scalars_rejected(keys_by_asym):
    pub = keys_by_asym[alg.ASYM_ECDSA_P256].public_key()
    with pytest.raises(SignatureError, match="zero r"):
        alg.verify(alg.ASYM_ECDSA_P256, alg.HASH_SHA256, pub, bytes(32) + b"\1" * 32, b"m")
    with pytest.raises(SignatureError):
        alg.verify(alg.ASYM_ECDSA_P256, alg.HASH_SHA256, pub, b"\xff" * 64, b"m")


def test_ecdsa_halves_are_padded_big_endian(keys_by_asym):
    """r and s are each exactly the coordinate size, even when the integer is shorter."""
    key = keys_by_asym[alg.ASYM_ECDSA_P521]
    for _ in range(4):
        sig = alg.sign(alg.ASYM_ECDSA_P521, alg.HASH_SHA512, key, b"m")
        der = alg.ecdsa_raw_to_der(alg.ASYM_ECDSA_P521, sig)
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(der)
        assert sig == r.to_bytes(66, "big") + s.to_bytes(66, "big")


def test_asym_bit_for_key(keys_by_asym):
    assert alg.asym_bit_for_key(keys_by_asym[alg.ASYM_ECDSA_P256]) == alg.ASYM_ECDSA_P256
    assert alg.asym_bit_for_key(keys_by_asym[alg.ASYM_ECDSA_P521].public_key()) == alg.ASYM_ECDSA_P521
    rsa3072 = keys_by_asym[alg.ASYM_RSASSA_3072]
    assert alg.asym_bit_for_key(rsa3072) == alg.ASYM_RSASSA_3072
    assert alg.asym_bit_for_key(rsa3072, pss=True) == alg.ASYM_RSAPSS_3072
    assert alg.asym_bits_for_key(rsa3072) == alg.ASYM_RSASSA_3072 | alg.ASYM_RSAPSS_3072
    with pytest.raises(UsageError):
        alg.asym_bit_for_key(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(UsageError):
        alg.asym_bit_for_key(rsa.generate_private_key(65537, 1024))
    with pytest.raises(UsageError):
        alg.asym_bit_for_key(b"not a key")


# ---------------------------------------------------------------------------------------------
# DHE
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", list(alg.DHE_GROUPS), ids=alg.describe_dhe)
def test_dhe_round_trip(group):
    a, pa = alg.dhe_generate(group)
    b, pb = alg.dhe_generate(group)
    g = alg.DHE_GROUPS[group]
    assert len(pa) == len(pb) == g.public_size
    s1, s2 = alg.dhe_shared(group, a, pb), alg.dhe_shared(group, b, pa)
    assert s1 == s2 and len(s1) == g.shared_size
    # the shared secret is the X coordinate of a*B (DSP0274 ECDHE)
    nums = b.public_key().public_numbers()
    assert pb == nums.x.to_bytes(g.coord_size, "big") + nums.y.to_bytes(g.coord_size, "big")


@pytest.mark.parametrize("group", list(alg.DHE_GROUPS), ids=alg.describe_dhe)
def test_dhe_rejects_bad_peer_keys(group):
    a, pa = alg.dhe_generate(group)
    n = alg.DHE_GROUPS[group].public_size
    bad_inputs = {
        "short": pa[:-1],
        "long": pa + b"\0",
        "empty": b"",
        "zeros": bytes(n),
        "off curve": pa[:-1] + bytes([pa[-1] ^ 1]),
        "coordinate >= p": b"\xff" * n,
        "sec1 prefix included": b"\x04" + pa[:-1],
    }
    for what, data in bad_inputs.items():
        with pytest.raises(MalformedData) as info:
            alg.dhe_shared(group, a, data, field="ExchangeData")
        assert info.value.field == "ExchangeData", what
        assert "ExchangeData" in str(info.value)


def test_dhe_private_key_must_match_group():
    a, _ = alg.dhe_generate(alg.DHE_SECP256R1)
    _, pb = alg.dhe_generate(alg.DHE_SECP384R1)
    with pytest.raises(UsageError):
        alg.dhe_shared(alg.DHE_SECP384R1, a, pb)


# ---------------------------------------------------------------------------------------------
# AEAD
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(alg.AEAD_SUITES), ids=alg.describe_aead)
def test_aead_round_trip_and_tag_failure(suite):
    s = alg.AEAD_SUITES[suite]
    key, iv = bytes(range(s.key_size)), bytes(range(100, 100 + s.iv_size))
    ct = alg.aead_encrypt(suite, key, iv, b"aad", b"plaintext")
    assert len(ct) == len(b"plaintext") + s.tag_size
    assert alg.aead_decrypt(suite, key, iv, b"aad", ct) == b"plaintext"
    for mutate in (
        lambda c: c[:-1] + bytes([c[-1] ^ 1]),
        lambda c: bytes([c[0] ^ 0x80]) + c[1:],
    ):
        with pytest.raises(alg.DecryptError):
            alg.aead_decrypt(suite, key, iv, b"aad", mutate(ct))
    with pytest.raises(alg.DecryptError):
        alg.aead_decrypt(suite, key, iv, b"aaD", ct)
    with pytest.raises(alg.DecryptError):
        alg.aead_decrypt(suite, key, bytes(s.iv_size), b"aad", ct)
    with pytest.raises(MalformedData):
        alg.aead_decrypt(suite, key, iv, b"aad", ct[: s.tag_size - 1])
    with pytest.raises(UsageError):
        alg.aead_encrypt(suite, key[:-1], iv, b"", b"")
    with pytest.raises(UsageError):
        alg.aead_encrypt(suite, key, iv + b"\0", b"", b"")


# McGrew & Viega, "The Galois/Counter Mode of Operation", zero key and IV: test cases 1 and 2
# (128-bit key), 13 and 14 (256-bit key). (suite, key size, tag of nothing, ciphertext + tag of 16 zeros)
GCM_KNOWN_ANSWERS = [
    (alg.AEAD_AES_128_GCM, 16, "58e2fccefa7e3061367f1d57a4e7455a",
     "0388dace60b6a392f328c2b971b2fe78" + "ab6e47d42cec13bdf53a67b21257bddf"),
    (alg.AEAD_AES_256_GCM, 32, "530f8afbc74536b9a963b4f1c4cb738b",
     "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"),
]  # fmt: skip


@pytest.mark.parametrize("suite, key_size, empty, zeros", GCM_KNOWN_ANSWERS, ids=["aes-128", "aes-256"])
def test_aes_gcm_known_answers(suite, key_size, empty, zeros):
    key, iv = bytes(key_size), bytes(12)
    assert alg.aead_encrypt(suite, key, iv, b"", b"").hex() == empty
    assert alg.aead_encrypt(suite, key, iv, b"", bytes(16)).hex() == zeros


def test_aes_256_gcm_matches_low_level_cipher():
    key, iv, aad, pt = bytes(range(32)), bytes(range(12)), b"header", b"x" * 37
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    expected = enc.update(pt) + enc.finalize() + enc.tag
    assert alg.aead_encrypt(alg.AEAD_AES_256_GCM, key, iv, aad, pt) == expected


def test_chacha20_poly1305_rfc8439_vector():
    # RFC 8439 section 2.8.2.
    key = bytes(range(0x80, 0xA0))
    iv = bytes.fromhex("070000004041424344454647")
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    pt = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
        b"sunscreen would be it."
    )
    out = alg.aead_encrypt(alg.AEAD_CHACHA20_POLY1305, key, iv, aad, pt)
    assert out[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"
    assert out[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"


def test_only_pciauth_errors_for_garbage_arguments(keys_by_asym):
    key = keys_by_asym[alg.ASYM_ECDSA_P256]
    for call in (
        lambda: alg.verify(alg.ASYM_ECDSA_P256, alg.HASH_SHA256, key.public_key(), b"", b""),
        lambda: alg.verify(0x200, alg.HASH_SHA256, key.public_key(), bytes(64), b""),
        lambda: alg.dhe_shared(0x1, key, bytes(64)),
        lambda: alg.aead_decrypt(0x8, bytes(16), bytes(12), b"", bytes(16)),
        lambda: alg.verify(alg.ASYM_ECDSA_P256, alg.HASH_SHA256, key, bytes(64), bytes(5), prehashed=True),
    ):
        with pytest.raises(PciauthError):
            call()


@pytest.mark.parametrize(
    "asym", [alg.ASYM_ECDSA_P256, alg.ASYM_RSASSA_2048, alg.ASYM_RSAPSS_2048], ids=alg.describe_asym
)
def test_little_endian_signatures_of_old_devices(asym, keys_by_asym):
    key = keys_by_asym[asym]
    sig = alg.sign(asym, alg.HASH_SHA256, key, b"m")
    little = alg.swap_signature_endian(asym, sig)
    assert little != sig and alg.swap_signature_endian(asym, little) == sig
    with pytest.raises(SignatureError):
        alg.verify(asym, alg.HASH_SHA256, key.public_key(), little, b"m")
    alg.verify(asym, alg.HASH_SHA256, key.public_key(), little, b"m", allow_little_endian=True)
    alg.verify(asym, alg.HASH_SHA256, key.public_key(), sig, b"m", allow_little_endian=True)
    with pytest.raises(SignatureError):
        alg.verify(asym, alg.HASH_SHA256, key.public_key(), little, b"M", allow_little_endian=True)


# ---------------------------------------------------------------------------------------------
# Properties: bytes from a peer only ever raise pciauth errors
# ---------------------------------------------------------------------------------------------

_DHE_PRIV = {g: alg.dhe_generate(g)[0] for g in alg.DHE_GROUPS}


@settings(max_examples=300, deadline=None)
@given(group=st.sampled_from(sorted(alg.DHE_GROUPS)), data=st.binary(max_size=130))
def test_property_dhe_peer_bytes(group, data):
    try:
        secret = alg.dhe_shared(group, _DHE_PRIV[group], data)
    except MalformedData as exc:
        assert exc.field == "ExchangeData"
        return
    # accepted only as a real point of the right size
    assert len(data) == alg.DHE_GROUPS[group].public_size
    assert len(secret) == alg.DHE_GROUPS[group].shared_size


@settings(max_examples=200, deadline=None)
@given(
    asym=st.sampled_from(
        [alg.ASYM_ECDSA_P256, alg.ASYM_ECDSA_P384, alg.ASYM_RSASSA_2048, alg.ASYM_RSAPSS_2048]
    ),
    data=st.binary(max_size=300),
    little=st.booleans(),
)
def test_property_random_signatures_never_verify(asym, data, little, keys_by_asym):
    key = keys_by_asym[asym]
    with pytest.raises(SignatureError):
        alg.verify(asym, alg.HASH_SHA256, key.public_key(), data, b"message", allow_little_endian=little)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200), aad=st.binary(max_size=20))
def test_property_aead_garbage(data, aad):
    with pytest.raises(PciauthError):
        alg.aead_decrypt(alg.AEAD_AES_256_GCM, bytes(32), bytes(12), aad, data)


def test_verify_with_certificate_and_prehashed_sizes(keys_by_asym):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = keys_by_asym[alg.ASYM_ECDSA_P384]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    sig = alg.sign(alg.ASYM_ECDSA_P384, alg.HASH_SHA384, key, b"m")
    alg.verify(alg.ASYM_ECDSA_P384, alg.HASH_SHA384, cert, sig, b"m")
    with pytest.raises(UsageError, match="prehashed"):
        alg.sign(alg.ASYM_ECDSA_P384, alg.HASH_SHA384, key, bytes(32), prehashed=True)
    with pytest.raises(SignatureError):
        alg.verify(alg.ASYM_ECDSA_P384, alg.HASH_SHA384, key.public_key(), sig, bytes(32), prehashed=True)
