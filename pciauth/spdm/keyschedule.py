"""The SPDM 1.1-1.3 session key schedule (DMTF DSP0274 "Key schedule", DSP0277).

After KEY_EXCHANGE / KEY_EXCHANGE_RSP both sides hold the ECDHE shared secret and TH1 (the hash
of the transcript up to the responder's signature); after FINISH / FINISH_RSP they hold TH2.
From those, with the negotiated hash H (size ``Hash.Length``)::

    Handshake-Secret          = HKDF-Extract(salt = Salt_0 (Hash.Length zero bytes), IKM = DHE secret)
    request-handshake-secret  = HKDF-Expand(Handshake-Secret, BinConcat(H, "req hs data", TH1), H)
    response-handshake-secret = HKDF-Expand(Handshake-Secret, BinConcat(H, "rsp hs data", TH1), H)
    Salt_1                    = HKDF-Expand(Handshake-Secret, BinConcat(H, "derived"), H)
    Master-Secret             = HKDF-Extract(salt = Salt_1, IKM = Hash.Length zero bytes)
    request-data-secret       = HKDF-Expand(Master-Secret, BinConcat(H, "req app data", TH2), H)
    response-data-secret      = HKDF-Expand(Master-Secret, BinConcat(H, "rsp app data", TH2), H)
    export-master-secret      = HKDF-Expand(Master-Secret, BinConcat(H, "exp master", TH2), H)
    finished-key (per dir.)   = HKDF-Expand(handshake-secret, BinConcat(H, "finished"), H)
    key / iv  (per dir.)      = HKDF-Expand(secret, BinConcat(AEAD key size, "key"), key size)
                                HKDF-Expand(secret, BinConcat(AEAD IV size, "iv"), IV size)
    key update                = HKDF-Expand(current secret, BinConcat(H, "traffic upd"), H)

``BinConcat(Length, Version, Label, Context) = Length (u16, little endian) || Version || Label ||
Context``, where Version is the 8-byte string "spdm1.1 " / "spdm1.2 " / "spdm1.3 " of the negotiated
SPDM version (trailing space included, no NUL), and Context is absent for the labels without a
transcript hash. Checked against libspdm: ``libspdm_bin_concat`` and
``libspdm_generate_handshake_key`` / ``libspdm_generate_data_key``
(library/spdm_crypt_lib/libspdm_crypt_key_schedule.c), the label macros ``SPDM_BIN_STR_0_LABEL``..
``SPDM_BIN_STR_9_LABEL`` of include/industry_standard/spdm.h, ``libspdm_generate_aead_key_and_iv``
and ``libspdm_generate_finished_key`` (library/spdm_secured_message_lib/libspdm_secmes_session.c).
Sequence numbers start at 0 for each set of keys (handshake, data, each key update).

ResponderVerifyData = HMAC(response finished key, Hash(TH)); RequesterVerifyData = HMAC(request
finished key, Hash(TH)); the SPDM core computes the transcript hash and passes it in.
PSK sessions are not implemented.
"""

from __future__ import annotations

import hmac as _hmac
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from pciauth.errors import SignatureError, UsageError
from pciauth.spdm.algorithms import aead_suite, hash_algo, version_tuple

# Labels (DSP0274 key schedule; libspdm SPDM_BIN_STR_n_LABEL), ASCII without NUL.
LABEL_DERIVED = b"derived"  # bin_str0
LABEL_REQ_HS_DATA = b"req hs data"  # bin_str1
LABEL_RSP_HS_DATA = b"rsp hs data"  # bin_str2
LABEL_REQ_APP_DATA = b"req app data"  # bin_str3
LABEL_RSP_APP_DATA = b"rsp app data"  # bin_str4
LABEL_KEY = b"key"  # bin_str5
LABEL_IV = b"iv"  # bin_str6
LABEL_FINISHED = b"finished"  # bin_str7
LABEL_EXP_MASTER = b"exp master"  # bin_str8
LABEL_TRAFFIC_UPD = b"traffic upd"  # bin_str9

REQUESTER = "requester"
RESPONDER = "responder"


# --------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------


def hmac_bytes(hash_bit: int, key: bytes, data: bytes) -> bytes:
    """HMAC with the negotiated hash."""
    mac = _chmac.HMAC(bytes(key), hash_algo(hash_bit).algorithm())
    mac.update(bytes(data))
    return mac.finalize()


def hkdf_extract(hash_bit: int, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869): ``PRK = HMAC-Hash(salt, IKM)``."""
    return hmac_bytes(hash_bit, salt, ikm)


def hkdf_expand(hash_bit: int, prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869) to ``length`` bytes."""
    algo = hash_algo(hash_bit)
    if len(prk) < algo.size:
        raise UsageError(f"HKDF PRK is {len(prk)} bytes, {algo.name} needs at least {algo.size}")
    if not 0 < length <= 255 * algo.size:
        raise UsageError(f"HKDF output length {length} out of range for {algo.name}")
    return HKDFExpand(algo.algorithm(), length, bytes(info)).derive(bytes(prk))


def version_label(version: int | str | tuple[int, int]) -> bytes:
    """The 8-byte BinConcat version string, e.g. ``b"spdm1.2 "``; sessions exist from SPDM 1.1."""
    major, minor = version_tuple(version)
    if (major, minor) < (1, 1) or major > 9 or minor > 9:
        raise UsageError(f"SPDM {major}.{minor} has no session key schedule (sessions start at 1.1)")
    return f"spdm{major}.{minor} ".encode("ascii")


def bin_concat(
    version: int | str | tuple[int, int], length: int, label: bytes, context: bytes = b""
) -> bytes:
    """``BinConcat(Length, Version, Label, Context)``: the HKDF-Expand info of DSP0274."""
    if not 0 <= length <= 0xFFFF:
        raise UsageError(f"BinConcat length {length} does not fit 16 bits")
    return length.to_bytes(2, "little") + version_label(version) + bytes(label) + bytes(context)


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficKeys:
    """The secret of one direction in one phase, and the AEAD key and IV derived from it."""

    secret: bytes = field(repr=False)
    key: bytes = field(repr=False)
    iv: bytes = field(repr=False)


@dataclass(frozen=True)
class KeySchedule:
    """The derivations for one negotiated (version, hash, AEAD); stateless and cheap."""

    version: int | str | tuple[int, int]
    hash_bit: int
    aead_bit: int

    def __post_init__(self) -> None:
        # validated once here: sessions need SPDM 1.1+, a known hash and AEAD
        object.__setattr__(self, "_label", version_label(self.version))
        object.__setattr__(self, "_hash", hash_algo(self.hash_bit))
        aead_suite(self.aead_bit)

    @property
    def hash_size(self) -> int:
        return self._hash.size

    def expand(self, secret: bytes, label: bytes, context: bytes = b"", length: int | None = None) -> bytes:
        """``HKDF-Expand(secret, BinConcat(length, version, label, context), length)``."""
        n = self._hash.size if length is None else length
        if not 0 < n <= 0xFFFF:
            raise UsageError(f"BinConcat length {n} does not fit 16 bits")
        info = n.to_bytes(2, "little") + self._label + bytes(label) + bytes(context)
        return hkdf_expand(self.hash_bit, secret, info, n)

    def _check_hash(self, name: str, value: bytes) -> bytes:
        if len(value) != self.hash_size:
            raise UsageError(f"{name} is {len(value)} bytes, the negotiated hash gives {self.hash_size}")
        return bytes(value)

    def traffic_keys(self, secret: bytes) -> TrafficKeys:
        suite = aead_suite(self.aead_bit)
        return TrafficKeys(
            secret=bytes(secret),
            key=self.expand(secret, LABEL_KEY, length=suite.key_size),
            iv=self.expand(secret, LABEL_IV, length=suite.iv_size),
        )

    def finished_key(self, handshake_secret: bytes) -> bytes:
        return self.expand(handshake_secret, LABEL_FINISHED)

    def handshake_secret(self, dhe_secret: bytes) -> bytes:
        """HKDF-Extract with Salt_0 = Hash.Length zero bytes over the DHE shared secret."""
        if not dhe_secret:
            raise UsageError("empty DHE shared secret")
        return hkdf_extract(self.hash_bit, bytes(self.hash_size), dhe_secret)

    def master_secret(self, handshake_secret: bytes) -> bytes:
        """Salt_1 = Expand(HS, "derived"); Master-Secret = Extract(Salt_1, zeros)."""
        salt_1 = self.expand(handshake_secret, LABEL_DERIVED)
        return hkdf_extract(self.hash_bit, salt_1, bytes(self.hash_size))

    def updated(self, keys: TrafficKeys) -> TrafficKeys:
        """The keys after KEY_UPDATE: new secret = Expand(secret, "traffic upd"); new key and IV."""
        return self.traffic_keys(self.expand(keys.secret, LABEL_TRAFFIC_UPD))


@dataclass
class SessionKeys:
    """All keys of one SPDM session, both directions, handshake and data phase.

    Build with :meth:`from_dhe` once TH1 is known (handshake keys and finished keys), then call
    :meth:`derive_data_keys` with TH2 after FINISH_RSP. ``request_*`` protect requester-to-responder
    records, ``response_*`` the other direction.
    """

    schedule: KeySchedule
    handshake_secret: bytes = field(repr=False)
    request_handshake: TrafficKeys
    response_handshake: TrafficKeys
    request_finished_key: bytes = field(repr=False)
    response_finished_key: bytes = field(repr=False)
    master_secret: bytes | None = field(default=None, repr=False)
    request_data: TrafficKeys | None = None
    response_data: TrafficKeys | None = None
    export_master_secret: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_dhe(
        cls,
        version: int | str | tuple[int, int],
        hash_bit: int,
        aead_bit: int,
        dhe_secret: bytes,
        th1_hash: bytes,
    ) -> SessionKeys:
        ks = KeySchedule(version, hash_bit, aead_bit)
        th1 = ks._check_hash("TH1 hash", th1_hash)
        hs = ks.handshake_secret(dhe_secret)
        req = ks.expand(hs, LABEL_REQ_HS_DATA, th1)
        rsp = ks.expand(hs, LABEL_RSP_HS_DATA, th1)
        return cls(
            schedule=ks,
            handshake_secret=hs,
            request_handshake=ks.traffic_keys(req),
            response_handshake=ks.traffic_keys(rsp),
            request_finished_key=ks.finished_key(req),
            response_finished_key=ks.finished_key(rsp),
        )

    def derive_data_keys(self, th2_hash: bytes) -> None:
        """Derive the master secret and the data-phase keys from TH2 (after FINISH_RSP)."""
        ks = self.schedule
        th2 = ks._check_hash("TH2 hash", th2_hash)
        self.master_secret = ks.master_secret(self.handshake_secret)
        self.request_data = ks.traffic_keys(ks.expand(self.master_secret, LABEL_REQ_APP_DATA, th2))
        self.response_data = ks.traffic_keys(ks.expand(self.master_secret, LABEL_RSP_APP_DATA, th2))
        self.export_master_secret = ks.expand(self.master_secret, LABEL_EXP_MASTER, th2)

    @property
    def has_data_keys(self) -> bool:
        return self.request_data is not None and self.response_data is not None

    # -- FINISH verify data ---------------------------------------------------------------

    def responder_verify_data(self, th_hash: bytes) -> bytes:
        """ResponderVerifyData of KEY_EXCHANGE_RSP: HMAC(response finished key, Hash(TH))."""
        return hmac_bytes(self.schedule.hash_bit, self.response_finished_key, th_hash)

    def requester_verify_data(self, th_hash: bytes) -> bytes:
        """RequesterVerifyData of FINISH: HMAC(request finished key, Hash(TH))."""
        return hmac_bytes(self.schedule.hash_bit, self.request_finished_key, th_hash)

    def check_responder_verify_data(self, th_hash: bytes, received: bytes) -> None:
        """Raise :class:`SignatureError` unless ``received`` is the expected ResponderVerifyData."""
        _check_mac("ResponderVerifyData", self.responder_verify_data(th_hash), received)

    def check_requester_verify_data(self, th_hash: bytes, received: bytes) -> None:
        _check_mac("RequesterVerifyData", self.requester_verify_data(th_hash), received)

    # -- KEY_UPDATE ---------------------------------------------------------------------------

    def update(self, direction: str) -> TrafficKeys:
        """Apply KEY_UPDATE to ``"requester"`` (UpdateKey) or ``"responder"`` data keys; returns them.

        UpdateAllKeys is ``update("requester")`` then ``update("responder")``.
        """
        if not self.has_data_keys:
            raise UsageError("KEY_UPDATE before the session's data keys exist")
        if direction == REQUESTER:
            self.request_data = self.schedule.updated(self.request_data)
            return self.request_data
        if direction == RESPONDER:
            self.response_data = self.schedule.updated(self.response_data)
            return self.response_data
        raise UsageError(f"key update direction must be 'requester' or 'responder', not {direction!r}")

    def copy(self) -> SessionKeys:
        """A shallow copy (keys are immutable), e.g. to roll back a failed KEY_UPDATE."""
        return replace(self)


def _check_mac(name: str, expected: bytes, received: bytes) -> None:
    received = bytes(received)
    if len(received) != len(expected):
        raise SignatureError(f"{name} is {len(received)} bytes, expected {len(expected)}")
    if not _hmac.compare_digest(expected, received):
        raise SignatureError(
            f"{name} does not match: the peer derived other session keys or saw another transcript"
        )
