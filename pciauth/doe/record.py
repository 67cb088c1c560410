"""Record and replay an authentication at the DOE object level.

``RecordingTransport`` wraps any transport and keeps the ordered transcript: for each exchange
the DOE object type (1 CMA, 2 secured CMA), the request payload as the mailbox sent it (dword
padded), and the response payload (or the error that ended it). ``pciauth auth --record FILE``
writes it as JSON with the target's identity and the options used.

``ReplayTransport`` answers from such a file: each request must equal the recorded one, or the
replay stops with :class:`ReplayDivergence` naming the exchange and the first differing byte.
So that the requester sends the same requests, its random draws (nonces, RequesterContext) are
recorded too (``RequesterConfig.random = recorder.draw``) and fed back (:func:`random_source`). A secured session cannot be re-run offline
(its ephemeral DHE key never leaves the requester), so a replay re-verifies everything before it.

File format (``format`` = ``pciauth-doe-recording``, ``version`` = 1)::

    {"target": {...}, "identity": {...}, "options": {...}, "random": ["hex", ...],
     "exchanges": [{"type": 1, "request": "hex", "response": "hex"} | {..., "error": {...}}]}
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from pciauth.doe.mailbox import TYPE_CMA, TYPE_SECURED_CMA, VENDOR_PCISIG
from pciauth.errors import DataMismatch, PciauthError, TransportError
from pciauth.reference import BadFileError, read_json_file

FORMAT = "pciauth-doe-recording"
VERSION = 1
#: A recording larger than this is refused before parsing.
MAX_RECORDING_BYTES = 64 << 20
MAX_EXCHANGES = 10_000


class ReplayDivergence(DataMismatch):
    """The replayed requester asked something the recording does not hold."""


class SessionNotReplayable(TransportError):
    """The replay reached the recorded KEY_EXCHANGE: a session's keys cannot be re-created."""


KEY_EXCHANGE = 0xE4


def _pad(data: bytes) -> bytes:
    return bytes(data) + b"\0" * (-len(data) % 4)


class RecordingTransport:
    """Pass exchanges to ``inner`` and keep them in :attr:`exchanges_log`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exchanges_log: list[dict] = []
        self.random_draws: list[bytes] = []

    @property
    def exchanges(self) -> int:
        return len(self.exchanges_log)

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        entry: dict[str, Any] = {
            "vendor": VENDOR_PCISIG,
            "type": TYPE_SECURED_CMA if secured else TYPE_CMA,
            "request": _pad(message).hex(),
        }
        self.exchanges_log.append(entry)
        try:
            response = self.inner.exchange(message, secured=secured)
        except PciauthError as e:
            entry["error"] = {"type": type(e).__name__, "message": e.message}
            raise
        entry["response"] = bytes(response).hex()
        return response

    def close(self) -> None:
        self.inner.close()

    def draw(self, n: int) -> bytes:
        """A random source for the requester that remembers what it drew."""
        data = os.urandom(n)
        self.random_draws.append(data)
        return data

    def save(self, path: str, *, target: dict, identity: dict | None, options: dict) -> None:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "target": target,
            "identity": identity,
            "options": options,
            "random": [d.hex() for d in self.random_draws],
            "exchanges": self.exchanges_log,
        }
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)


class Recording:
    """A parsed, checked recording."""

    def __init__(self, doc: dict, path: str = "recording") -> None:
        self.path = path
        self.target: dict = _field(doc, "target", dict, path)
        self.identity: dict | None = _identity(doc.get("identity"), path)
        self.options: dict = _options(_field(doc, "options", dict, path), path)
        self.random = [_hex(x, f"random[{i}]", path) for i, x in enumerate(_field(doc, "random", list, path))]
        raw = _field(doc, "exchanges", list, path)
        if len(raw) > MAX_EXCHANGES:
            raise BadFileError(f"{path}: {len(raw)} exchanges, more than {MAX_EXCHANGES}", field="exchanges")
        self.exchanges: list[dict] = []
        for i, e in enumerate(raw):
            if not isinstance(e, dict) or e.get("type") not in (TYPE_CMA, TYPE_SECURED_CMA):
                raise BadFileError(f"{path}: exchange {i} has no valid type", field=f"exchanges[{i}].type")
            item = {"type": e["type"], "request": _hex(e.get("request"), f"exchanges[{i}].request", path)}
            if "error" in e:
                err = e["error"] if isinstance(e["error"], dict) else {}
                item["error"] = str(err.get("message", "recorded transport error"))[:500]
            else:
                item["response"] = _hex(e.get("response"), f"exchanges[{i}].response", path)
            self.exchanges.append(item)

    @classmethod
    def load(cls, path: str) -> Recording:
        doc = read_json_file(path, MAX_RECORDING_BYTES, "recording", f"no recording at {path}")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BadFileError(f"{path}: not a pciauth recording (format field)", field="format", path=path)
        if doc.get("version") != VERSION:
            raise BadFileError(f"{path}: recording version {doc.get('version')!r} unsupported", field="version")
        return cls(doc, path)

    @property
    def secured_exchanges(self) -> int:
        return sum(1 for e in self.exchanges if e["type"] == TYPE_SECURED_CMA)


#: Recorded options and the types a replay accepts for them.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "slot": (int, type(None)),
    "measurements": (str,),
    "session": (bool,),
    "policy": (str, type(None)),
}
IDENTITY_FIELDS = ("vendor", "device", "class_code", "revision", "subsystem_vendor", "subsystem_device",
                   "serial")  # fmt: skip


def _options(options: dict, path: str) -> dict:
    out = {}
    for key, kinds in OPTION_TYPES.items():
        if key in options:
            value = options[key]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise BadFileError(f"{path}: option {key!r} has a wrong type", field=f"options.{key}", path=path)
            out[key] = value
    return out


def _identity(value: Any, path: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadFileError(f"{path}: identity is not an object", field="identity", path=path)
    out = {}
    for key in IDENTITY_FIELDS:
        v = value.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64):
            raise BadFileError(f"{path}: identity.{key} is not an id", field=f"identity.{key}", path=path)
        out[key] = v
    for key in ("vendor", "device", "class_code", "revision"):
        if out[key] is None:
            raise BadFileError(f"{path}: identity.{key} is missing", field=f"identity.{key}", path=path)
    return out


def _field(doc: dict, name: str, kind: type, path: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind):
        raise BadFileError(f"{path}: field {name!r} missing or not a {kind.__name__}", field=name, path=path)
    return value


def _hex(value: Any, name: str, path: str) -> bytes:
    if not isinstance(value, str):
        raise BadFileError(f"{path}: {name} is not a hex string", field=name, path=path)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadFileError(f"{path}: {name} is not hex", field=name, path=path) from None


class ReplayTransport:
    """Answer from a :class:`Recording`; raise :class:`ReplayDivergence` on any difference."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.position = 0
        self.divergence: str | None = None
        self.stopped_at_session = False

    @property
    def exchanges(self) -> int:
        return self.position

    @property
    def remaining(self) -> int:
        return len(self.recording.exchanges) - self.position

    def _diverge(self, message: str) -> ReplayDivergence:
        self.divergence = message
        return ReplayDivergence(message, path=self.recording.path)

    def exchange(self, message: bytes, *, secured: bool = False) -> bytes:
        index = self.position
        if index >= len(self.recording.exchanges):
            raise self._diverge(
                f"exchange {index}: the requester sent a request the recording does not have "
                f"(request code 0x{message[1]:02x})" if len(message) > 1 else f"exchange {index}: extra request"
            )
        entry = self.recording.exchanges[index]
        want_type = TYPE_SECURED_CMA if secured else TYPE_CMA
        if entry["type"] != want_type:
            raise self._diverge(f"exchange {index}: object type {want_type}, recorded {entry['type']}")
        sent = _pad(message)
        recorded_code = entry["request"][1] if len(entry["request"]) > 1 else None
        if recorded_code == KEY_EXCHANGE and len(sent) > 1 and sent[1] == KEY_EXCHANGE:
            self.stopped_at_session = True
            raise SessionNotReplayable(
                f"exchange {index}: the recorded secured session cannot be re-run offline "
                "(its ephemeral DHE key never left the requester)"
            )
        if sent != entry["request"]:
            at = next((i for i, (a, b) in enumerate(zip(sent, entry["request"], strict=False)) if a != b),
                      min(len(sent), len(entry["request"])))  # fmt: skip
            raise self._diverge(
                f"exchange {index}: request differs from the recording at byte {at} "
                f"({len(sent)} bytes sent, {len(entry['request'])} recorded)"
            )
        self.position += 1
        if "error" in entry:
            raise TransportError(f"exchange {index} (recorded): {entry['error']}")
        return entry["response"]

    def close(self) -> None:
        pass


def random_source(recording: Recording) -> Callable[[int], bytes]:
    """The requester's random draws, as recorded, in order (then fresh randomness)."""
    draws: Iterator[bytes] = iter(recording.random)

    def draw(n: int) -> bytes:
        value = next(draws, None)
        if value is None or len(value) != n:
            return os.urandom(n)  # the replay then diverges on the request, and says where
        return value

    return draw
