"""SPDM algorithm tables and the crypto operations pciauth performs with them.

The tables themselves are in :mod:`pciauth.spdm.algorithm_tables` and re-exported here, so
``from pciauth.spdm import algorithms`` gives both.

Every algorithm is keyed by its bit in the NEGOTIATE_ALGORITHMS / ALGORITHMS masks of DMTF
DSP0274 (tables "BaseHashAlgo", "BaseAsymAlgo" and the DHE / AEAD "AlgStruct" tables; the same
values are the ``SPDM_ALGORITHMS_BASE_*`` / ``SPDM_ALGORITHMS_DHE_NAMED_GROUP_*`` /
``SPDM_ALGORITHMS_AEAD_CIPHER_SUITE_*`` macros of libspdm's ``include/industry_standard/spdm.h``).
Only the algorithms pciauth implements are in the tables; an unknown bit raises
:class:`~pciauth.errors.UsageError` (a caller asked for it) or is ignored by the selection helpers
(a peer offered it).

Wire formats (DSP0274 "Signature generation" and "Key exchange"):
- ECDSA signatures are raw ``r || s``, each half big-endian and padded to the curve size
  (32, 48, 66 bytes), never DER. SPDM 1.0/1.1 did not fix the byte order; libspdm verifies
  big endian only by default (doc/crypto_endianness.md); ``verify(..., allow_little_endian=True)``
  also accepts the byte-reversed form some 1.0/1.1 devices send.
- RSASSA is PKCS #1 v1.5; RSAPSS uses MGF1 with the negotiated hash and a salt as long as the
  hash. RSA signatures are as long as the modulus.
- ECDHE public keys are ``X || Y`` (no 0x04 prefix), each coordinate big-endian and padded; the
  shared secret is the X coordinate of the product, padded to the coordinate size.

What is signed (:func:`signing_message`): SPDM 1.0 and 1.1 sign the transcript ``M`` itself
(the signature algorithm hashes it with the negotiated hash). SPDM 1.2 and later sign
``combined_prefix(version, context) || Hash(M)`` (again hashed by the signature algorithm), where
the 100-byte prefix is "dmtf-spdm-v1.N.*" four times, then zero bytes, then the context string
right-aligned (DSP0274 1.2 "Signature generation"; libspdm ``libspdm_create_signing_context``
and the ``spdm_version >= SPDM_MESSAGE_VERSION_12`` branch of ``libspdm_asym_sign``).
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from pciauth.errors import MalformedData, SignatureError, SpdmError, UsageError

# The tables live in algorithm_tables.py; they are part of this module's API (re-exported).
from pciauth.spdm.algorithm_tables import (  # noqa: F401
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AEAD_CHACHA20_POLY1305,
    AEAD_PRIORITY,
    AEAD_SUITES,
    ALL_AEAD,
    ALL_ASYM,
    ALL_DHE,
    ALL_HASH,
    ASYM_ALGOS,
    ASYM_ECDSA_P256,
    ASYM_ECDSA_P384,
    ASYM_ECDSA_P521,
    ASYM_PRIORITY,
    ASYM_RSAPSS_2048,
    ASYM_RSAPSS_3072,
    ASYM_RSAPSS_4096,
    ASYM_RSASSA_2048,
    ASYM_RSASSA_3072,
    ASYM_RSASSA_4096,
    DHE_GROUPS,
    DHE_PRIORITY,
    DHE_SECP256R1,
    DHE_SECP384R1,
    HASH_ALGOS,
    HASH_PRIORITY,
    HASH_SHA256,
    HASH_SHA384,
    HASH_SHA512,
    AeadSuite,
    AsymAlgo,
    DheGroup,
    HashAlgo,
    aead_suite,
    asym_algo,
    bits_from_names,
    describe_aead,
    describe_asym,
    describe_dhe,
    describe_hash,
    describe_mask,
    dhe_group,
    hash_algo,
    mask_bits,
    select_common,
)


class DecryptError(SpdmError):
    """An AEAD record did not authenticate (wrong key, wrong sequence number, tampered bytes)."""


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def hash_size(hash_bit: int) -> int:
    return hash_algo(hash_bit).size


def hash_bytes(hash_bit: int, data: bytes) -> bytes:
    """``Hash(data)`` with the negotiated BaseHashAlgo."""
    h = hashes.Hash(hash_algo(hash_bit).algorithm())
    h.update(bytes(data))
    return h.finalize()


def new_hash(hash_bit: int) -> hashes.Hash:
    """An incremental hash context (``update``/``copy``/``finalize``) for running transcripts."""
    return hashes.Hash(hash_algo(hash_bit).algorithm())


# --------------------------------------------------------------------------------------------
# Signing context (SPDM 1.2+)
# --------------------------------------------------------------------------------------------

COMBINED_PREFIX_SIZE = 100
_PREFIX_REPEAT = 4  # "dmtf-spdm-v1.2.*" is 16 bytes, repeated four times: 64 bytes
_CONTEXT_FIELD = COMBINED_PREFIX_SIZE - 16 * _PREFIX_REPEAT  # 36 bytes: zero pad + context

# Context strings of DSP0274 1.2/1.3 ("Signature generation" table; libspdm spdm.h
# SPDM_*_SIGN_CONTEXT).
CONTEXT_CHALLENGE_AUTH = "responder-challenge_auth signing"
CONTEXT_MUT_CHALLENGE_AUTH = "requester-challenge_auth signing"
CONTEXT_MEASUREMENTS = "responder-measurements signing"
CONTEXT_KEY_EXCHANGE_RSP = "responder-key_exchange_rsp signing"
CONTEXT_FINISH = "requester-finish signing"
CONTEXT_ENDPOINT_INFO = "responder-endpoint_info signing"


def version_tuple(version: int | str | tuple[int, int]) -> tuple[int, int]:
    """Normalise an SPDM version: byte ``0x12``, string ``"1.2"`` or tuple ``(1, 2)``."""
    if isinstance(version, tuple):
        major, minor = version
    elif isinstance(version, str):
        try:
            major_s, minor_s = version.strip().split(".")[:2]
            major, minor = int(major_s), int(minor_s)
        except ValueError:
            raise UsageError(f"bad SPDM version {version!r} (want e.g. '1.2')")
    elif isinstance(version, int) and 0 <= version <= 0xFF:
        major, minor = version >> 4, version & 0xF
    else:
        raise UsageError(f"bad SPDM version {version!r}")
    if not (0 <= major <= 15 and 0 <= minor <= 15):
        raise UsageError(f"bad SPDM version {version!r}")
    return major, minor


def uses_signing_context(version: int | str | tuple[int, int]) -> bool:
    """True from SPDM 1.2 on: signatures cover the combined prefix and the transcript hash."""
    return version_tuple(version) >= (1, 2)


def combined_prefix(version: int | str | tuple[int, int], context: str | bytes) -> bytes:
    """The 100-byte ``combined_spdm_prefix`` of DSP0274 1.2+.

    "dmtf-spdm-v{major}.{minor}.*" four times (64 bytes), then zero bytes and the context
    string so that the context ends at byte 100 (no terminating NUL).
    """
    major, minor = version_tuple(version)
    if major > 9 or minor > 9:  # the prefix has one character for each (libspdm asserts the same)
        raise UsageError(f"SPDM {major}.{minor} does not fit the 16-byte signing prefix")
    ctx = context.encode("ascii") if isinstance(context, str) else bytes(context)
    if len(ctx) > _CONTEXT_FIELD:
        raise UsageError(f"SPDM signing context {ctx!r} longer than {_CONTEXT_FIELD} bytes")
    prefix = f"dmtf-spdm-v{major}.{minor}.*".encode("ascii") * _PREFIX_REPEAT
    return prefix + bytes(_CONTEXT_FIELD - len(ctx)) + ctx


def signing_message(
    version: int | str | tuple[int, int],
    context: str | bytes,
    transcript: bytes,
    hash_bit: int,
    *,
    is_hash: bool = False,
) -> bytes:
    """What :func:`sign` / :func:`verify` take as ``message`` for an SPDM signature.

    ``transcript`` is the message sequence M (L1/L2, M1/M2, TH...) or, with ``is_hash=True``,
    already ``Hash(M)``. For 1.0/1.1 the result is M itself (a hash cannot be turned back into
    M, so ``is_hash`` is refused there: sign/verify with ``prehashed=True`` instead). For 1.2+
    it is ``combined_prefix(version, context) || Hash(M)``.
    """
    if not uses_signing_context(version):
        if is_hash:
            raise UsageError(
                "SPDM 1.0/1.1 sign the transcript itself: pass M, or verify its hash with prehashed=True"
            )
        return bytes(transcript)
    digest = bytes(transcript) if is_hash else hash_bytes(hash_bit, transcript)
    if len(digest) != hash_size(hash_bit):
        raise UsageError(
            f"transcript hash is {len(digest)} bytes, {describe_hash(hash_bit)} needs {hash_size(hash_bit)}"
        )
    return combined_prefix(version, context) + digest


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------


def _hash_arg(hash_bit: int, prehashed: bool) -> Any:
    algo = hash_algo(hash_bit).algorithm()
    return utils.Prehashed(algo) if prehashed else algo


def _rsa_padding(algo: AsymAlgo, hash_bit: int) -> padding.AsymmetricPadding:
    if algo.scheme == "rsapss":
        # DSP0274: RSASSA-PSS with MGF1 over the negotiated hash, salt length = hash length.
        mgf = padding.MGF1(hash_algo(hash_bit).algorithm())
        return padding.PSS(mgf=mgf, salt_length=hash_size(hash_bit))
    return padding.PKCS1v15()


def _key_matches(algo: AsymAlgo, key: Any) -> str | None:
    """None when ``key`` (public or private) fits ``algo``; else why not."""
    if algo.scheme == "ecdsa":
        if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            return f"{algo.name} needs an EC key, got {type(key).__name__}"
        if not isinstance(key.curve, algo.curve_cls):
            return f"{algo.name} needs curve {algo.curve_cls.name}, key is on {key.curve.name}"
        return None
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"{algo.name} needs an RSA key, got {type(key).__name__}"
    if key.key_size != algo.key_bits:
        return f"{algo.name} needs a {algo.key_bits}-bit RSA key, key has {key.key_size} bits"
    return None


def signature_size(asym_bit: int) -> int:
    """Wire size of a signature in bytes (RSA: modulus size; ECDSA: 2 x coordinate size)."""
    return asym_algo(asym_bit).signature_size


def asym_bits_for_key(key: Any) -> int:
    """Mask of every BaseAsymAlgo bit the key (private or public) can serve."""
    return sum(bit for bit, algo in ASYM_ALGOS.items() if _key_matches(algo, key) is None)


def asym_bit_for_key(key: Any, *, pss: bool = False) -> int:
    """The BaseAsymAlgo bit of a key: ECDSA by curve, RSA by size (RSASSA, or RSAPSS if ``pss``).

    Raises :class:`UsageError` for a key type or size SPDM has no bit for.
    """
    for bit in mask_bits(asym_bits_for_key(key)):
        scheme = ASYM_ALGOS[bit].scheme
        if scheme == "ecdsa" or scheme == ("rsapss" if pss else "rsassa"):
            return bit
    size = getattr(key, "key_size", "?")
    raise UsageError(f"no SPDM signature algorithm for a {type(key).__name__} of {size} bits")


def sign(asym_bit: int, hash_bit: int, private_key: Any, message: bytes, *, prehashed: bool = False) -> bytes:
    """Sign ``message`` (hashed with ``hash_bit`` unless ``prehashed``) in SPDM wire format."""
    algo = asym_algo(asym_bit)
    problem = _key_matches(algo, private_key)
    if problem or not hasattr(private_key, "sign"):
        raise UsageError(f"cannot sign: {problem or 'not a private key'}")
    hash_arg = _hash_arg(hash_bit, prehashed)
    if prehashed and len(message) != hash_size(hash_bit):
        raise UsageError(
            f"prehashed message is {len(message)} bytes, {describe_hash(hash_bit)} gives {hash_size(hash_bit)}"
        )
    if algo.scheme == "ecdsa":
        der = private_key.sign(bytes(message), ec.ECDSA(hash_arg))
        r, s = utils.decode_dss_signature(der)
        return r.to_bytes(algo.coord_size, "big") + s.to_bytes(algo.coord_size, "big")
    return private_key.sign(bytes(message), _rsa_padding(algo, hash_bit), hash_arg)


def ecdsa_raw_to_der(asym_bit: int, signature: bytes) -> bytes:
    """Convert a raw ``r || s`` SPDM signature to DER (what ``openssl dgst -verify`` reads)."""
    algo = asym_algo(asym_bit)
    if algo.scheme != "ecdsa":
        raise UsageError(f"{algo.name} is not ECDSA")
    if len(signature) != algo.signature_size:
        raise SignatureError(
            f"{algo.name} signature is {len(signature)} bytes, expected {algo.signature_size}"
        )
    n = algo.coord_size
    return utils.encode_dss_signature(
        int.from_bytes(signature[:n], "big"), int.from_bytes(signature[n:], "big")
    )


def signature_for_openssl(asym_bit: int, signature: bytes) -> bytes:
    """The signature as ``openssl dgst -verify`` reads it: DER for ECDSA, unchanged for RSA."""
    if asym_algo(asym_bit).scheme == "ecdsa":
        return ecdsa_raw_to_der(asym_bit, signature)
    return bytes(signature)


def openssl_verify_args(asym_bit: int, hash_bit: int) -> list[str]:
    """``openssl dgst`` options that check an SPDM signature over the signed message.

    Use as ``openssl dgst <args> -verify pub.pem -signature sig.bin message.bin`` where
    ``message.bin`` is :func:`signing_message` and ``sig.bin`` is :func:`signature_for_openssl`.
    """
    args = [f"-{hash_algo(hash_bit).name}"]
    if asym_algo(asym_bit).scheme == "rsapss":
        args += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
    return args


def verify(
    asym_bit: int,
    hash_bit: int,
    public_key: Any,
    signature: bytes,
    message: bytes,
    *,
    prehashed: bool = False,
    allow_little_endian: bool = False,
) -> None:
    """Check an SPDM-format signature; raise :class:`SignatureError` saying why it fails.

    ``public_key`` may also be the private key or an X.509 certificate (its public key is used).

    ``allow_little_endian`` (only meaningful for SPDM 1.0/1.1 peers) retries with the signature's
    integers byte-reversed when the big-endian form does not verify.
    """
    try:
        _verify(asym_bit, hash_bit, public_key, signature, message, prehashed)
    except SignatureError:
        if not allow_little_endian or len(signature) != asym_algo(asym_bit).signature_size:
            raise
        _verify(
            asym_bit, hash_bit, public_key, swap_signature_endian(asym_bit, signature), message, prehashed
        )


def swap_signature_endian(asym_bit: int, signature: bytes) -> bytes:
    """Reverse the byte order of the signature's integers (RSA: s; ECDSA: r and s separately)."""
    algo = asym_algo(asym_bit)
    sig = bytes(signature)
    if algo.scheme != "ecdsa":
        return sig[::-1]
    n = len(sig) // 2
    return sig[:n][::-1] + sig[n:][::-1]


def _verify(
    asym_bit: int, hash_bit: int, public_key: Any, signature: bytes, message: bytes, prehashed: bool
) -> None:
    algo = asym_algo(asym_bit)
    hash_arg = _hash_arg(hash_bit, prehashed)
    if hasattr(public_key, "public_key"):  # a private key: check with its public half
        public_key = public_key.public_key()
    problem = _key_matches(algo, public_key)
    if problem:
        raise SignatureError(f"signature key does not fit the negotiated algorithm: {problem}")
    signature = bytes(signature)
    if len(signature) != algo.signature_size:
        raise SignatureError(
            f"{algo.name} signature is {len(signature)} bytes, expected {algo.signature_size}"
        )
    try:
        if algo.scheme == "ecdsa":
            n = algo.coord_size
            r = int.from_bytes(signature[:n], "big")
            s = int.from_bytes(signature[n:], "big")
            if r == 0 or s == 0:
                raise SignatureError(f"{algo.name} signature has a zero {'r' if r == 0 else 's'}")
            der = utils.encode_dss_signature(r, s)
            public_key.verify(der, bytes(message), ec.ECDSA(hash_arg))
        else:
            public_key.verify(signature, bytes(message), _rsa_padding(algo, hash_bit), hash_arg)
    except InvalidSignature:
        raise SignatureError(
            f"{algo.name}/{describe_hash(hash_bit)} signature does not verify with the given public key"
        )
    except ValueError as exc:  # e.g. a prehashed digest of the wrong size
        raise SignatureError(f"{algo.name}/{describe_hash(hash_bit)} signature check failed: {exc}")


# --------------------------------------------------------------------------------------------
# DHE
# --------------------------------------------------------------------------------------------


def dhe_generate(group_bit: int) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh ephemeral key pair: ``(private_key, X || Y)``."""
    group = dhe_group(group_bit)
    private = ec.generate_private_key(group.curve_cls())
    return private, dhe_public_bytes(group_bit, private.public_key())


def dhe_public_bytes(group_bit: int, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Raw ``X || Y`` of a public key, each coordinate padded to the group's size."""
    group = dhe_group(group_bit)
    nums = public_key.public_numbers()
    return nums.x.to_bytes(group.coord_size, "big") + nums.y.to_bytes(group.coord_size, "big")


def dhe_load_public(group_bit: int, data: bytes, *, field: str = "ExchangeData") -> ec.EllipticCurvePublicKey:
    """Parse a peer's ``X || Y``; :class:`MalformedData` when the size is wrong or off the curve."""
    group = dhe_group(group_bit)
    data = bytes(data)
    if len(data) != group.public_size:
        raise MalformedData(
            f"{field}: {group.name} public key is {len(data)} bytes, expected {group.public_size} (X||Y)",
            field=field,
        )
    try:
        # from_encoded_point checks the coordinates are below p and that the point is on the curve.
        return ec.EllipticCurvePublicKey.from_encoded_point(group.curve_cls(), b"\x04" + data)
    except ValueError:
        raise MalformedData(f"{field}: not a point on {group.name}", field=field)


def dhe_shared(
    group_bit: int,
    private: ec.EllipticCurvePrivateKey,
    peer_public_bytes: bytes,
    *,
    field: str = "ExchangeData",
) -> bytes:
    """The ECDHE shared secret (X coordinate, padded) with the peer's raw public key."""
    group = dhe_group(group_bit)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(private.curve, group.curve_cls):
        raise UsageError(f"DHE private key is not a {group.name} key")
    peer = dhe_load_public(group_bit, peer_public_bytes, field=field)
    try:
        return private.exchange(ec.ECDH(), peer)
    except ValueError:
        raise MalformedData(f"{field}: {group.name} public key gives no shared secret", field=field)


# --------------------------------------------------------------------------------------------
# AEAD
# --------------------------------------------------------------------------------------------


class AeadKey:
    """An AEAD key bound to its suite, ready for many records (the cipher is set up once)."""

    def __init__(self, aead_bit: int, key: bytes) -> None:
        self.suite = aead_suite(aead_bit)
        if len(key) != self.suite.key_size:
            raise UsageError(f"{self.suite.name} key is {len(key)} bytes, expected {self.suite.key_size}")
        self._cipher = self.suite.cipher_cls(bytes(key))

    def __repr__(self) -> str:
        return f"AeadKey({self.suite.name})"

    def _check_iv(self, iv: bytes) -> bytes:
        if len(iv) != self.suite.iv_size:
            raise UsageError(f"{self.suite.name} IV is {len(iv)} bytes, expected {self.suite.iv_size}")
        return bytes(iv)

    def encrypt(self, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """``ciphertext || tag`` (tag of ``suite.tag_size`` bytes)."""
        return self._cipher.encrypt(self._check_iv(iv), bytes(plaintext), bytes(aad))

    def decrypt(self, iv: bytes, aad: bytes, ciphertext_and_tag: bytes) -> bytes:
        """The plaintext; :class:`DecryptError` when the tag does not authenticate."""
        iv = self._check_iv(iv)
        tag = self.suite.tag_size
        if len(ciphertext_and_tag) < tag:
            raise MalformedData(
                f"{self.suite.name} record is {len(ciphertext_and_tag)} bytes, shorter than its {tag}-byte MAC",
                field="MAC",
            )
        try:
            return self._cipher.decrypt(iv, bytes(ciphertext_and_tag), bytes(aad))
        except InvalidTag:
            raise DecryptError(
                f"{self.suite.name} MAC does not authenticate the record "
                "(wrong key, sequence number or tampered data)"
            )


def aead_encrypt(aead_bit: int, key: bytes, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """Encrypt; returns ``ciphertext || tag`` (tag of ``AEAD_SUITES[bit].tag_size`` bytes)."""
    return AeadKey(aead_bit, key).encrypt(iv, aad, plaintext)


def aead_decrypt(aead_bit: int, key: bytes, iv: bytes, aad: bytes, ciphertext_and_tag: bytes) -> bytes:
    """Decrypt ``ciphertext || tag``; :class:`DecryptError` when the tag does not authenticate."""
    return AeadKey(aead_bit, key).decrypt(iv, aad, ciphertext_and_tag)
