"""DSP0277 secured messages as carried by PCI DOE (data object type 2).

A secured message (one SPDM message inside an established or handshaking session) is, all
integers little endian::

    SessionID        u32   ReqSessionID in bits 0-15, RspSessionID in bits 16-31
    SequenceNumber   0-8   transport specific: 0 bytes on PCI DOE (libspdm
                           PCI_DOE_SEQUENCE_NUMBER_COUNT = 0), 2 on MCTP
    Length           u16   length of everything after this field: encrypted data + MAC
    -- encrypted with the direction's AEAD key (plaintext below) --
    ApplicationDataLength u16
    ApplicationData        the SPDM message itself (PCI DOE adds no header here)
    RandomData             padding; none on PCI DOE (PCI_DOE_MAX_RANDOM_NUMBER_COUNT = 0)
    -- end of encrypted data --
    MAC                    the AEAD tag (16 bytes for every suite pciauth implements)

The AAD is the clear header (SessionID, SequenceNumber, Length). In a MAC-only session
(no ENCRYPT_CAP) the application data is sent in clear without its length field and the AAD is
the header plus the application data. The DOE object is padded to a dword, so a received
record may carry up to 3 bytes beyond its Length; they are ignored.

Per-record IV (DSP0277 1.2 "AEAD", libspdm ``generate_iv`` in
library/spdm_secured_message_lib/libspdm_secmes_encode_decode.c): the 64-bit sequence number,
little endian, XORed into bytes 0-7 of the direction's IV. DSP0277 1.0/1.1 left the byte order
open; libspdm defaults to little endian and can be set to big endian (sequence number at the
end of the IV, as in TLS 1.3), which ``seq_endian="big"`` selects here.

Each direction has its own sequence number, starting at 0 for every set of keys (handshake
keys, data keys, each KEY_UPDATE) and incremented for every record. A record that does not
authenticate closes that direction for good (DSP0274 DecryptError terminates the session):
a replayed or reordered record fails this way on PCI DOE, whose records carry no sequence number.
"""

from __future__ import annotations

from dataclasses import dataclass

from pciauth.errors import MalformedData, SpdmError, UsageError
from pciauth.spdm.algorithms import AeadKey, DecryptError, aead_suite
from pciauth.spdm.keyschedule import REQUESTER, RESPONDER, SessionKeys, TrafficKeys

SESSION_ID_SIZE = 4
LENGTH_SIZE = 2
APP_LENGTH_SIZE = 2
DOE_PADDING = 3  # a DOE object is whole dwords: up to 3 bytes may follow the record
MAX_SEQUENCE = (1 << 64) - 1  # a sequence number must never wrap (DSP0277)

# SPDM ERROR codes the responder answers with (DSP0274; FACTS.md section 3).
ERROR_INVALID_SESSION = 0x02
ERROR_DECRYPT_ERROR = 0x06


class SecuredMessageError(SpdmError):
    """A secured message cannot be accepted; ``field`` names the culprit, ``spdm_error_code`` the
    SPDM ERROR code a responder answers with (InvalidSession 0x02 or DecryptError 0x06)."""

    def __init__(
        self, message: str, *, field: str | None = None, spdm_error_code: int = ERROR_DECRYPT_ERROR, **kw
    ) -> None:
        super().__init__(message, **kw)
        self.field = field
        self.spdm_error_code = spdm_error_code


def session_id_of(record: bytes) -> int:
    """The SessionID of a secured message, to find its session before decrypting it."""
    if len(record) < SESSION_ID_SIZE:
        raise MalformedData(
            f"secured message is {len(record)} bytes, too short for its SessionID", field="SessionID"
        )
    return int.from_bytes(record[:SESSION_ID_SIZE], "little")


def make_session_id(req_session_id: int, rsp_session_id: int) -> int:
    """SessionID = ReqSessionID | RspSessionID << 16 (KEY_EXCHANGE / KEY_EXCHANGE_RSP halves)."""
    for name, half in (("ReqSessionID", req_session_id), ("RspSessionID", rsp_session_id)):
        if not 0 <= half <= 0xFFFF:
            raise UsageError(f"{name} {half!r} does not fit 16 bits")
    return req_session_id | rsp_session_id << 16


@dataclass(frozen=True)
class RecordFormat:
    """Transport parameters of the record: PCI DOE is the default."""

    seq_size: int = 0  # bytes of the sequence number in the header (0 on PCI DOE, 2 on MCTP)
    seq_endian: str = "little"  # how the sequence number is XORed into the IV
    encrypt: bool = True  # False: MAC-only session
    max_trailing: int = DOE_PADDING  # bytes tolerated after Length (DOE dword padding)
    max_sequence: int = MAX_SEQUENCE  # a direction refuses sequence numbers >= this

    def __post_init__(self) -> None:
        if not 0 <= self.seq_size <= 8:
            raise UsageError(f"sequence number size {self.seq_size} not in 0..8")
        if self.seq_endian not in ("little", "big"):
            raise UsageError(f"sequence number endianness must be 'little' or 'big', not {self.seq_endian!r}")
        if not 0 < self.max_sequence <= MAX_SEQUENCE:
            raise UsageError(f"max_sequence {self.max_sequence} out of range")

    @property
    def header_size(self) -> int:
        return SESSION_ID_SIZE + self.seq_size + LENGTH_SIZE


DOE_FORMAT = RecordFormat()


class RecordCipher:
    """One direction of a session: protects or opens records with one set of traffic keys."""

    def __init__(
        self, aead_bit: int, keys: TrafficKeys, fmt: RecordFormat = DOE_FORMAT, *, name: str = "record"
    ) -> None:
        self.suite = aead_suite(aead_bit)
        self.aead_bit = aead_bit
        self.fmt = fmt
        self.name = name
        self.sequence = 0
        self.closed: str | None = None
        self._install(keys)

    def _install(self, keys: TrafficKeys) -> None:
        if len(keys.key) != self.suite.key_size or len(keys.iv) != self.suite.iv_size:
            raise UsageError(f"{self.name} keys do not fit {self.suite.name}")
        self.keys = keys
        self._aead = AeadKey(self.aead_bit, keys.key)

    def rekey(self, keys: TrafficKeys) -> None:
        """Switch to new keys (data phase, KEY_UPDATE); the sequence number restarts at 0."""
        self._install(keys)
        self.sequence = 0
        self.closed = None

    def iv_for(self, sequence: int) -> bytes:
        """The AEAD nonce of record ``sequence``: the IV with the sequence number XORed in.

        Little endian: the 64-bit number XORed into IV bytes 0-7; big endian: into the last 8
        bytes. Both are an integer XOR of the IV read in that byte order.
        """
        iv, order = self.keys.iv, self.fmt.seq_endian
        return (int.from_bytes(iv, order) ^ sequence).to_bytes(len(iv), order)

    def _next_sequence(self) -> int:
        if self.closed:
            raise SecuredMessageError(f"{self.name}: {self.closed}", field="MAC")
        if self.sequence >= self.fmt.max_sequence:
            raise SecuredMessageError(
                f"{self.name}: sequence number {self.sequence} reached its limit: update the keys or end the session",
                field="SequenceNumber",
            )
        seq = self.sequence
        self.sequence += 1
        return seq

    def _header(self, session_id: int, sequence: int, length: int) -> bytes:
        seq_bytes = (sequence & ((1 << (8 * self.fmt.seq_size)) - 1)).to_bytes(self.fmt.seq_size, "little")
        return session_id.to_bytes(4, "little") + seq_bytes + length.to_bytes(2, "little")

    def seal(self, session_id: int, app_message: bytes, *, padding: bytes = b"") -> bytes:
        """Protect one SPDM message as a secured message (``padding``: RandomData, none on DOE)."""
        if not 0 <= session_id <= 0xFFFFFFFF:
            raise UsageError(f"session id {session_id!r} does not fit 32 bits")
        app_message, padding = bytes(app_message), bytes(padding)
        tag = self.suite.tag_size
        if not self.fmt.encrypt and padding:
            raise UsageError("a MAC-only record has no RandomData")
        body_size = len(app_message) + (APP_LENGTH_SIZE + len(padding) if self.fmt.encrypt else 0)
        if body_size + tag > 0xFFFF:
            raise UsageError(f"SPDM message of {len(app_message)} bytes does not fit one secured message")
        plaintext = len(app_message).to_bytes(2, "little") + app_message + padding
        seq = self._next_sequence()
        header = self._header(session_id, seq, body_size + tag)
        iv = self.iv_for(seq)
        if self.fmt.encrypt:
            return header + self._aead.encrypt(iv, header, plaintext)
        mac = self._aead.encrypt(iv, header + app_message, b"")
        return header + app_message + mac

    def open(self, session_id: int, record: bytes) -> bytes:
        """Check and decrypt one secured message; return the SPDM message inside."""
        record = bytes(record)
        fmt, tag = self.fmt, self.suite.tag_size
        hsize = fmt.header_size
        if self.closed:
            raise SecuredMessageError(f"{self.name}: {self.closed}", field="MAC")
        if len(record) < hsize + tag:
            raise MalformedData(
                f"{self.name}: secured message is {len(record)} bytes, shorter than header ({hsize}) and MAC ({tag})",
                field="Length",
            )
        got_id = int.from_bytes(record[:4], "little")
        if got_id != session_id:
            raise SecuredMessageError(
                f"{self.name}: SessionID {got_id:#010x} is not this session's {session_id:#010x}",
                field="SessionID",
                spdm_error_code=ERROR_INVALID_SESSION,
            )
        length = int.from_bytes(record[hsize - 2 : hsize], "little")
        available = len(record) - hsize
        if length > available:
            raise MalformedData(
                f"{self.name}: Length {length} exceeds the {available} bytes after the header", field="Length"
            )
        if available - length > fmt.max_trailing:
            raise MalformedData(
                f"{self.name}: {available - length} bytes follow the record's Length {length} "
                f"(at most {fmt.max_trailing} of transport padding allowed)",
                field="Length",
            )
        minimum = tag + (APP_LENGTH_SIZE if fmt.encrypt else 0)
        if length < minimum:
            raise MalformedData(
                f"{self.name}: Length {length} is shorter than the minimum {minimum}", field="Length"
            )
        if fmt.seq_size:
            expected = (self.sequence & ((1 << (8 * fmt.seq_size)) - 1)).to_bytes(fmt.seq_size, "little")
            if record[4 : 4 + fmt.seq_size] != expected:
                raise SecuredMessageError(
                    f"{self.name}: SequenceNumber {record[4 : 4 + fmt.seq_size].hex()} is not the expected "
                    f"{expected.hex()} (replayed, lost or reordered record)",
                    field="SequenceNumber",
                )
        seq = self._next_sequence()
        header = record[:hsize]
        body = record[hsize : hsize + length]
        try:
            if fmt.encrypt:
                plaintext = self._aead.decrypt(self.iv_for(seq), header, body)
            else:
                app = body[:-tag]
                self._aead.decrypt(self.iv_for(seq), header + app, body[-tag:])
                return app
        except DecryptError as exc:
            self.closed = f"closed after record {seq} failed its MAC check"
            raise SecuredMessageError(
                f"{self.name}: record {seq} does not authenticate ({exc}); replayed or reordered records fail this way",
                field="MAC",
            )
        app_len = int.from_bytes(plaintext[:2], "little")
        if app_len > len(plaintext) - APP_LENGTH_SIZE:
            raise MalformedData(
                f"{self.name}: ApplicationDataLength {app_len} exceeds the {len(plaintext) - 2} decrypted bytes",
                field="ApplicationDataLength",
            )
        return plaintext[2 : 2 + app_len]


class SecuredSession:
    """Both directions of one SPDM session for one side (requester or responder).

    ``encrypt()`` protects what this side sends, ``decrypt()`` opens what the peer sent; each has
    its own keys and sequence number. Start in the handshake phase with :meth:`from_keys`, call
    :meth:`enter_data_phase` after FINISH_RSP, and :meth:`update_keys` for KEY_UPDATE.
    """

    def __init__(
        self,
        session_id: int,
        aead_bit: int,
        *,
        send: TrafficKeys,
        receive: TrafficKeys,
        fmt: RecordFormat = DOE_FORMAT,
    ) -> None:
        if not 0 <= session_id <= 0xFFFFFFFF:
            raise UsageError(f"session id {session_id!r} does not fit 32 bits")
        self.session_id = session_id
        self.aead_bit = aead_bit
        self.fmt = fmt
        self.sender = RecordCipher(aead_bit, send, fmt, name=f"session {session_id:#010x} send")
        self.receiver = RecordCipher(aead_bit, receive, fmt, name=f"session {session_id:#010x} receive")
        self._backup: dict[str, tuple[TrafficKeys, int]] = {}

    @classmethod
    def from_keys(
        cls,
        session_id: int,
        keys: SessionKeys,
        *,
        role: str,
        phase: str = "handshake",
        fmt: RecordFormat = DOE_FORMAT,
    ) -> SecuredSession:
        """A session for ``role`` ("requester" or "responder") in ``phase`` ("handshake"/"data")."""
        send, receive = _directions(keys, role, phase)
        return cls(session_id, keys.schedule.aead_bit, send=send, receive=receive, fmt=fmt)

    @property
    def send_sequence(self) -> int:
        return self.sender.sequence

    @property
    def receive_sequence(self) -> int:
        return self.receiver.sequence

    def encrypt(self, app_message: bytes, *, padding: bytes = b"") -> bytes:
        return self.sender.seal(self.session_id, app_message, padding=padding)

    def decrypt(self, record: bytes) -> bytes:
        return self.receiver.open(self.session_id, record)

    def enter_data_phase(self, keys: SessionKeys, *, role: str) -> None:
        """Switch both directions to the data-phase keys (after FINISH/FINISH_RSP)."""
        send, receive = _directions(keys, role, "data")
        self.sender.rekey(send)
        self.receiver.rekey(receive)
        self._backup.clear()

    def update_keys(self, *, send: TrafficKeys | None = None, receive: TrafficKeys | None = None) -> None:
        """Install KEY_UPDATE keys for one or both directions; the old ones are kept for :meth:`revert`."""
        for direction, cipher, keys in (("send", self.sender, send), ("receive", self.receiver, receive)):
            if keys is not None:
                self._backup[direction] = (cipher.keys, cipher.sequence)
                cipher.rekey(keys)

    def revert(self) -> None:
        """Undo the last :meth:`update_keys` (KEY_UPDATE that the peer did not confirm)."""
        for direction, cipher in (("send", self.sender), ("receive", self.receiver)):
            if direction in self._backup:
                keys, seq = self._backup.pop(direction)
                cipher.rekey(keys)
                cipher.sequence = seq

    def commit(self) -> None:
        """Forget the keys kept for :meth:`revert` (KEY_UPDATE confirmed)."""
        self._backup.clear()


def _directions(keys: SessionKeys, role: str, phase: str) -> tuple[TrafficKeys, TrafficKeys]:
    """(send, receive) keys for a role in a phase."""
    if phase == "handshake":
        req, rsp = keys.request_handshake, keys.response_handshake
    elif phase == "data":
        if not keys.has_data_keys:
            raise UsageError(
                "data-phase keys are not derived yet: call SessionKeys.derive_data_keys(TH2 hash)"
            )
        req, rsp = keys.request_data, keys.response_data
    else:
        raise UsageError(f"phase must be 'handshake' or 'data', not {phase!r}")
    if role == REQUESTER:
        return req, rsp
    if role == RESPONDER:
        return rsp, req
    raise UsageError(f"role must be 'requester' or 'responder', not {role!r}")
