"""Reference values for regression scripts: ``pciauth auth --save-reference`` / ``--expect``.

A reference file holds what should not change between two authentications of the same device:
the negotiated version and algorithms, each slot's chain digest and certificate fingerprints, and
every measurement (index, type, value). :func:`compare` lists each difference on its own, so a
firmware update shows up as "measurement 2 (mutable_firmware) changed". Nonces, signatures and
session keys are fresh every time and are not part of a reference.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from pciauth.errors import HostNotReady, NotFoundError, PermissionDeniedError, UsageError

FORMAT = "pciauth-reference"
VERSION = 1
MAX_REFERENCE_BYTES = 16 << 20


class BadFileError(UsageError):
    """A file the user gave (a reference, a recording) is not what pciauth wrote.

    It is the user's file, not the device: a usage error (exit 2). ``field`` names the culprit,
    as :class:`pciauth.errors.MalformedData` does for device data.
    """

    def __init__(self, message: str, *, field: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.field = field


@dataclass(frozen=True)
class Difference:
    what: str  # "measurement", "slot", "certificate", "version", "algorithm", "identity"
    key: str  # index, slot number, algorithm name
    expected: Any
    actual: Any
    message: str

    def to_dict(self) -> dict:
        return {"what": self.what, "key": self.key, "expected": self.expected,
                "actual": self.actual, "message": self.message}  # fmt: skip


def _fingerprints(pems: list[str]) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    out = []
    for pem in pems:
        try:
            out.append(x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex())
        except ValueError:
            out.append("unparsable")
    return out


def reference_from_report(report: dict, *, device: str | None = None, identity: dict | None = None) -> dict:
    """The reference values in an ``AuthReport.to_dict()``."""
    algorithms = report.get("algorithms") or {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "device": device,
        "identity": identity,
        "spdm_version": report.get("version"),
        "algorithms": {k: algorithms.get(k) for k in ("base_asym", "base_hash", "measurement_hash")},
        "slots": [
            {
                "slot": s.get("slot"),
                "digest": s.get("digest"),
                "certificates_sha256": _fingerprints(s.get("certificates_pem") or []),
            }
            for s in report.get("slots") or []
        ],
        "measurements": None
        if report.get("measurement_count") is None
        else [
            {"index": m.get("index"), "type": m.get("type"), "representation": m.get("representation"),
             "value": m.get("value")}  # fmt: skip
            for m in report.get("measurements") or []
        ],
    }


def check_writable(path: str, what: str = "the reference") -> None:
    """Fail early, naming ``path``, when ``what`` cannot be written there (before authenticating)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise NotFoundError(f"{path}: cannot write {what}: no directory {directory}", path=path)
    if os.path.isdir(path):
        raise UsageError(f"{path}: cannot write {what}: it is a directory", path=path)
    if not os.access(directory, os.W_OK):
        raise PermissionDeniedError(f"{path}: cannot write {what}: {directory} is not writable",
                                    path=path)  # fmt: skip


def save_reference(path: str, reference: dict) -> None:
    check_writable(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(reference, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        from pciauth.pcap import OPEN_ERRORS

        with contextlib.suppress(OSError):
            os.unlink(tmp)
        kind = OPEN_ERRORS.get(e.errno, HostNotReady)  # a full disk is not "permission denied"
        raise kind(f"{path}: cannot write the reference: {e.strerror or e}", errno=e.errno,
                   path=path) from None  # fmt: skip


def read_json_file(path: str, limit: int, what: str, missing: str) -> Any:
    """The JSON document in the user's file ``path`` (a reference, a recording), never more than
    ``limit`` bytes of it read: a pipe (``<(zcat rec.json.gz)``) has no size to check first.

    ``what`` names the kind of file in errors; ``missing`` is the message when there is none.
    """
    try:
        with open(path, "rb") as f:
            big = os.fstat(f.fileno()).st_size > limit  # a big regular file is refused unread
            raw = b"" if big else f.read(limit + 1)
    except FileNotFoundError:
        raise NotFoundError(missing, path=path) from None
    if big or len(raw) > limit:
        raise BadFileError(f"{path}: larger than {limit} bytes", field="size", path=path)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: also int-digit limits
        raise BadFileError(f"{path}: not a pciauth {what} (bad JSON: {e})", field="json", path=path) from None


def load_reference(path: str) -> dict:
    doc = read_json_file(path, MAX_REFERENCE_BYTES, "reference", f"no reference file at {path}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise BadFileError(f"{path}: not a pciauth reference (format/version)", field="format", path=path)
    check_reference(doc, path)
    return doc


def check_reference(doc: dict, path: str = "reference") -> None:
    """Raise :class:`BadFileError` naming the field when ``doc`` is not shaped like a reference."""

    def bad(field: str, what: str) -> BadFileError:
        return BadFileError(f"{path}: {field} is not {what}", field=field, path=path)

    if not isinstance(doc, dict):
        raise bad("the reference", "an object")
    if not isinstance(doc.get("algorithms") or {}, dict):
        raise bad("algorithms", "an object")
    if not isinstance(doc.get("slots"), list):
        raise bad("slots", "a list")
    for i, slot in enumerate(doc["slots"]):
        if not isinstance(slot, dict) or not isinstance(slot.get("slot"), int):
            raise bad(f"slots[{i}]", "an object with an integer slot")
        if not isinstance(slot.get("certificates_sha256") or [], list):
            raise bad(f"slots[{i}].certificates_sha256", "a list")
    measurements = doc.get("measurements")
    if measurements is not None:
        if not isinstance(measurements, list):
            raise bad("measurements", "a list")
        for i, m in enumerate(measurements):
            if not isinstance(m, dict) or not isinstance(m.get("index"), int):
                raise bad(f"measurements[{i}]", "an object with an integer index")


def _by(items: list, key: str, path: str, field: str) -> dict:
    out = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or key not in item:
            raise BadFileError(f"{path}: {field}[{i}] has no {key!r}", field=f"{field}[{i}]")
        out[str(item[key])] = item
    return out


def compare(expected: dict, actual: dict, *, path: str = "reference") -> list[Difference]:
    """Every difference between two references (``expected`` from a file, ``actual`` fresh)."""
    check_reference(expected, path)
    check_reference(actual, "current")
    diffs: list[Difference] = []

    def add(what: str, key: str, exp: Any, act: Any, message: str) -> None:
        diffs.append(Difference(what, key, exp, act, message))

    if expected.get("spdm_version") != actual.get("spdm_version"):
        add("version", "spdm", expected.get("spdm_version"), actual.get("spdm_version"),
            f"SPDM version {expected.get('spdm_version')} became {actual.get('spdm_version')}")
    exp_alg, act_alg = expected.get("algorithms") or {}, actual.get("algorithms") or {}
    for name in sorted(set(exp_alg) | set(act_alg)):
        if exp_alg.get(name) != act_alg.get(name):
            add("algorithm", name, exp_alg.get(name), act_alg.get(name),
                f"algorithm {name} {exp_alg.get(name)} became {act_alg.get(name)}")
    exp_slots = _by(expected.get("slots") or [], "slot", path, "slots")
    act_slots = _by(actual.get("slots") or [], "slot", path, "slots")
    for key in sorted(set(exp_slots) | set(act_slots)):
        e, a = exp_slots.get(key), act_slots.get(key)
        if e is None or a is None:
            add("slot", key, e is not None, a is not None,
                f"certificate slot {key} {'disappeared' if a is None else 'is new'}")
            continue
        if e.get("digest") != a.get("digest"):
            add("slot", key, e.get("digest"), a.get("digest"), f"certificate slot {key}: chain digest changed")
        ec, ac = e.get("certificates_sha256") or [], a.get("certificates_sha256") or []
        for i in range(max(len(ec), len(ac))):
            ev, av = (ec[i] if i < len(ec) else None), (ac[i] if i < len(ac) else None)
            if ev != av:
                add("certificate", f"{key}.{i}", ev, av, f"certificate slot {key}: certificate {i} changed")
    exp_m, act_m = expected.get("measurements"), actual.get("measurements")
    if exp_m is not None and act_m is None:
        add("measurement", "*", len(exp_m), None, "measurements were not collected, the reference has them")
    elif exp_m is not None and act_m is not None:
        e_by, a_by = _by(exp_m, "index", path, "measurements"), _by(act_m, "index", path, "measurements")
        for key in sorted(set(e_by) | set(a_by), key=int):
            e, a = e_by.get(key), a_by.get(key)
            if e is None:
                add("measurement", key, None, a.get("value"), f"measurement {key} ({a.get('type')}) is new")
            elif a is None:
                add("measurement", key, e.get("value"), None, f"measurement {key} ({e.get('type')}) is missing")
            elif (e.get("value"), e.get("type")) != (a.get("value"), a.get("type")):
                add("measurement", key, e.get("value"), a.get("value"),
                    f"measurement {key} ({a.get('type')}) changed: {str(e.get('value'))[:16]}... "
                    f"-> {str(a.get('value'))[:16]}...")
    return diffs
