"""SPDM algorithm tables: every algorithm pciauth implements, keyed by its SPDM bit.

The bits are those of the NEGOTIATE_ALGORITHMS / ALGORITHMS masks of DMTF DSP0274 (BaseHashAlgo,
BaseAsymAlgo, and the DHE / AEAD "AlgStruct" tables), identical to the macros
``SPDM_ALGORITHMS_BASE_HASH_ALGO_TPM_ALG_*``, ``SPDM_ALGORITHMS_BASE_ASYM_ALGO_*``,
``SPDM_ALGORITHMS_DHE_NAMED_GROUP_*`` and ``SPDM_ALGORITHMS_AEAD_CIPHER_SUITE_*`` of libspdm's
include/industry_standard/spdm.h. Also the selection priorities and the helpers that name bits for
reports. Import these names from :mod:`pciauth.spdm.algorithms`, which re-exports them next to the
crypto operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from pciauth.errors import UsageError

# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HashAlgo:
    """One BaseHashAlgo entry: ``size`` is the digest length in bytes."""

    bit: int
    name: str
    size: int
    hash_cls: type[hashes.HashAlgorithm]

    def algorithm(self) -> hashes.HashAlgorithm:
        return self.hash_cls()


@dataclass(frozen=True)
class AsymAlgo:
    """One BaseAsymAlgo entry (also ReqBaseAsymAlg, same bits).

    ``scheme`` is "rsassa", "rsapss" or "ecdsa"; ``key_bits`` the RSA modulus or curve size;
    ``signature_size`` the wire size in bytes; ``coord_size`` the size of r and s (ECDSA).
    """

    bit: int
    name: str
    scheme: str
    key_bits: int
    signature_size: int
    curve_cls: type[ec.EllipticCurve] | None = None
    coord_size: int = 0


@dataclass(frozen=True)
class DheGroup:
    """One DHE named group; ``public_size`` is the raw ``X || Y`` size, ``coord_size`` half of it."""

    bit: int
    name: str
    curve_cls: type[ec.EllipticCurve]
    coord_size: int

    @property
    def public_size(self) -> int:
        return 2 * self.coord_size

    @property
    def shared_size(self) -> int:
        return self.coord_size


@dataclass(frozen=True)
class AeadSuite:
    """One AEAD cipher suite: key, IV (nonce) and tag sizes in bytes."""

    bit: int
    name: str
    key_size: int
    iv_size: int
    tag_size: int
    cipher_cls: type


# BaseHashAlgo (DSP0274 NEGOTIATE_ALGORITHMS; libspdm SPDM_ALGORITHMS_BASE_HASH_ALGO_TPM_ALG_*).
# Bits 3-5 are SHA3-256/384/512 and bit 6 SM3: not implemented.
HASH_SHA256 = 0x0001
HASH_SHA384 = 0x0002
HASH_SHA512 = 0x0004

HASH_ALGOS: dict[int, HashAlgo] = {
    HASH_SHA256: HashAlgo(HASH_SHA256, "sha256", 32, hashes.SHA256),
    HASH_SHA384: HashAlgo(HASH_SHA384, "sha384", 48, hashes.SHA384),
    HASH_SHA512: HashAlgo(HASH_SHA512, "sha512", 64, hashes.SHA512),
}

# BaseAsymAlgo (DSP0274; libspdm SPDM_ALGORITHMS_BASE_ASYM_ALGO_*). Bit 9 SM2, bits 10-11
# EdDSA 25519/448: not implemented.
ASYM_RSASSA_2048 = 0x0001
ASYM_RSAPSS_2048 = 0x0002
ASYM_RSASSA_3072 = 0x0004
ASYM_RSAPSS_3072 = 0x0008
ASYM_ECDSA_P256 = 0x0010
ASYM_RSASSA_4096 = 0x0020
ASYM_RSAPSS_4096 = 0x0040
ASYM_ECDSA_P384 = 0x0080
ASYM_ECDSA_P521 = 0x0100

ASYM_ALGOS: dict[int, AsymAlgo] = {
    ASYM_RSASSA_2048: AsymAlgo(ASYM_RSASSA_2048, "rsassa2048", "rsassa", 2048, 256),
    ASYM_RSAPSS_2048: AsymAlgo(ASYM_RSAPSS_2048, "rsapss2048", "rsapss", 2048, 256),
    ASYM_RSASSA_3072: AsymAlgo(ASYM_RSASSA_3072, "rsassa3072", "rsassa", 3072, 384),
    ASYM_RSAPSS_3072: AsymAlgo(ASYM_RSAPSS_3072, "rsapss3072", "rsapss", 3072, 384),
    ASYM_ECDSA_P256: AsymAlgo(ASYM_ECDSA_P256, "ecdsa-p256", "ecdsa", 256, 64, ec.SECP256R1, 32),
    ASYM_RSASSA_4096: AsymAlgo(ASYM_RSASSA_4096, "rsassa4096", "rsassa", 4096, 512),
    ASYM_RSAPSS_4096: AsymAlgo(ASYM_RSAPSS_4096, "rsapss4096", "rsapss", 4096, 512),
    ASYM_ECDSA_P384: AsymAlgo(ASYM_ECDSA_P384, "ecdsa-p384", "ecdsa", 384, 96, ec.SECP384R1, 48),
    ASYM_ECDSA_P521: AsymAlgo(ASYM_ECDSA_P521, "ecdsa-p521", "ecdsa", 521, 132, ec.SECP521R1, 66),
}

# DHE named groups (DSP0274 "DHE structure"; libspdm SPDM_ALGORITHMS_DHE_NAMED_GROUP_*):
# bits 0-2 are ffdhe2048/3072/4096, bit 3 secp256r1, bit 4 secp384r1, bit 5 secp521r1, bit 6 SM2.
DHE_SECP256R1 = 0x0008
DHE_SECP384R1 = 0x0010

DHE_GROUPS: dict[int, DheGroup] = {
    DHE_SECP256R1: DheGroup(DHE_SECP256R1, "secp256r1", ec.SECP256R1, 32),
    DHE_SECP384R1: DheGroup(DHE_SECP384R1, "secp384r1", ec.SECP384R1, 48),
}

# AEAD cipher suites (DSP0274 "AEAD structure"; libspdm SPDM_ALGORITHMS_AEAD_CIPHER_SUITE_*):
# bit 0 AES-128-GCM, bit 1 AES-256-GCM, bit 2 ChaCha20-Poly1305, bit 3 SM4-GCM (not implemented).
AEAD_AES_128_GCM = 0x0001
AEAD_AES_256_GCM = 0x0002
AEAD_CHACHA20_POLY1305 = 0x0004

AEAD_SUITES: dict[int, AeadSuite] = {
    AEAD_AES_128_GCM: AeadSuite(AEAD_AES_128_GCM, "aes-128-gcm", 16, 12, 16, AESGCM),
    AEAD_AES_256_GCM: AeadSuite(AEAD_AES_256_GCM, "aes-256-gcm", 32, 12, 16, AESGCM),
    AEAD_CHACHA20_POLY1305: AeadSuite(
        AEAD_CHACHA20_POLY1305, "chacha20-poly1305", 32, 12, 16, ChaCha20Poly1305
    ),
}

# Selection priority, most preferred first. A responder picks the first bit of its priority
# list that both sides support; configurable through ``select_common(..., priority=)``.
HASH_PRIORITY: tuple[int, ...] = (HASH_SHA384, HASH_SHA512, HASH_SHA256)
ASYM_PRIORITY: tuple[int, ...] = (
    ASYM_ECDSA_P384,
    ASYM_ECDSA_P256,
    ASYM_ECDSA_P521,
    ASYM_RSAPSS_3072,
    ASYM_RSAPSS_4096,
    ASYM_RSAPSS_2048,
    ASYM_RSASSA_3072,
    ASYM_RSASSA_4096,
    ASYM_RSASSA_2048,
)
DHE_PRIORITY: tuple[int, ...] = (DHE_SECP384R1, DHE_SECP256R1)
AEAD_PRIORITY: tuple[int, ...] = (AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305, AEAD_AES_128_GCM)

#: Masks of everything pciauth implements, for "offer all".
ALL_HASH = sum(HASH_ALGOS)
ALL_ASYM = sum(ASYM_ALGOS)
ALL_DHE = sum(DHE_GROUPS)
ALL_AEAD = sum(AEAD_SUITES)


def _entry(table: Mapping[int, Any], bit: int, kind: str) -> Any:
    try:
        return table[bit]
    except (KeyError, TypeError):
        known = ", ".join(f"{b:#x} {e.name}" for b, e in table.items())
        raise UsageError(f"unsupported {kind} algorithm bit {bit!r} (pciauth implements {known})")


def hash_algo(hash_bit: int) -> HashAlgo:
    return _entry(HASH_ALGOS, hash_bit, "hash")


def asym_algo(asym_bit: int) -> AsymAlgo:
    return _entry(ASYM_ALGOS, asym_bit, "signature")


def dhe_group(group_bit: int) -> DheGroup:
    return _entry(DHE_GROUPS, group_bit, "DHE")


def aead_suite(aead_bit: int) -> AeadSuite:
    return _entry(AEAD_SUITES, aead_bit, "AEAD")


# --------------------------------------------------------------------------------------------
# Naming and selection
# --------------------------------------------------------------------------------------------


def _describe(table: Mapping[int, Any], bit: int) -> str:
    entry = table.get(bit)
    return entry.name if entry is not None else f"unknown({bit:#x})"


def describe_hash(bit: int) -> str:
    """The name of a BaseHashAlgo bit, e.g. ``sha384``; unknown bits as ``unknown(0x8)``."""
    return _describe(HASH_ALGOS, bit)


def describe_asym(bit: int) -> str:
    return _describe(ASYM_ALGOS, bit)


def describe_dhe(bit: int) -> str:
    return _describe(DHE_GROUPS, bit)


def describe_aead(bit: int) -> str:
    return _describe(AEAD_SUITES, bit)


def mask_bits(mask: int) -> list[int]:
    """The set bits of a mask, lowest first."""
    return [1 << i for i in range(max(mask, 0).bit_length()) if mask >> i & 1]


def describe_mask(table: Mapping[int, Any], mask: int) -> list[str]:
    """Names of every bit set in ``mask`` (unknown bits named ``unknown(0x..)``)."""
    return [_describe(table, b) for b in mask_bits(mask)]


def bits_from_names(table: Mapping[int, Any], names: Iterable[str]) -> int:
    """Mask for names such as ``["sha384", "sha256"]`` (for configurable offered sets)."""
    by_name = {e.name: b for b, e in table.items()}
    mask = 0
    for name in names:
        key = name.strip().lower()
        if key not in by_name:
            raise UsageError(f"unknown algorithm {name!r}; known: {', '.join(sorted(by_name))}")
        mask |= by_name[key]
    return mask


def select_common(ours: int, theirs: int, priority: Iterable[int]) -> int:
    """The first bit of ``priority`` set in both masks, or 0 when there is none."""
    common = ours & theirs
    for bit in priority:
        if common & bit:
            return bit
    return 0
