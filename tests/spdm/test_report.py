"""AuthReport: exit codes, failure records, JSON form."""

from __future__ import annotations

import json

from conftest import pki_set, requester_config, responder_config

from pciauth.errors import DataMismatch, MalformedData, SignatureError, SpdmError, TransportError
from pciauth.spdm.report import AuthReport


def test_exit_codes_follow_the_failure_kind():
    for exc, code in ((TransportError("t"), 5), (SpdmError("p"), 5), (MalformedData("m", field="Length"), 5),
                      (SignatureError("s"), 6), (DataMismatch("d"), 6), (RuntimeError("bug"), 1)):
        r = AuthReport()
        r.fail("challenge", exc)
        assert r.exit_code == code, exc
        assert r.error["step"] == "challenge" and not r.checks[-1].ok
    assert AuthReport().exit_code == 6  # nothing failed, nothing proven
    ok = AuthReport(authenticated=True)
    assert ok.exit_code == 0


def test_failure_keeps_the_field_and_json_is_plain():
    r = AuthReport()
    r.fail("certificate[0]", MalformedData("bad", field="PortionLength"))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["error"]["field"] == "PortionLength" and d["error"]["type"] == "MalformedData"
    assert d["authenticated"] is False and d["exit_code"] == 5


def test_clear_error():
    r = AuthReport()
    r.fail("key_exchange", SpdmError("x"))
    r.clear_error()
    assert r.error is None and r.checks == [] and r.exit_code == 6


def _slot_report(corrupt_digest: bool):
    from cryptography.hazmat.primitives import serialization

    from pciauth.spdm.requester import Requester
    from pciauth.spdm.responder import Responder
    from pciauth.transport import CallableTransport

    rsp = Responder(responder_config("ecdsa-p256", adversary=("digest-mismatch",) if corrupt_digest else ()))
    report = Requester(CallableTransport(rsp.handle), requester_config("ecdsa-p256")).authenticate()
    pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in _certs("ecdsa-p256")]
    return report, pems


def _certs(alg):
    from cryptography import x509

    return [x509.load_der_x509_certificate(d) for d in pki_set(alg).der_chain]


def test_slot_report_renders_verdict_and_pems_when_first_read():
    """verdict and certificates_pem are rendered lazily: same content whichever is read first."""
    report, pems = _slot_report(False)
    assert report.authenticated
    slot = report.slots[0]
    assert slot.certificates_pem == pems  # first: the PEMs (renders the verdict once)
    assert [c["name"] for c in slot.verdict["checks"]][:2] == ["root_hash", "signatures"]
    assert [i["pem"] for i in slot.verdict["certificates"]] == pems
    d = json.loads(json.dumps(report.to_dict()))
    assert d["slots"][0]["certificates_pem"] == pems and d["slots"][0]["verdict"]["ok"] is True
    report2, _ = _slot_report(False)
    assert report2.slots[0].verdict["ok"] is True and report2.slots[0].certificates_pem == pems  # other order


def test_slot_report_of_a_wrong_digest_still_shows_the_chain():
    report, pems = _slot_report(True)
    assert not report.authenticated
    slot = report.slots[0]
    assert slot.digest_matches is False and slot.verdict is None
    assert slot.certificates_pem == pems
    assert report.to_dict()["slots"][0]["certificates_pem"] == pems


def test_exception_is_the_failure_that_stopped_the_run():
    r = AuthReport()
    assert r.exception is None
    exc = SpdmError("stopped")
    r.fail("digests", exc)
    assert r.exception is exc


def test_measurements_render_from_the_blocks_read_once():
    from pciauth.spdm.measurements import make_block

    r = AuthReport()
    assert r.measurements == [] and r.to_dict()["measurements"] == []
    r.measurement_blocks = (make_block(1, 1, b"rom", raw=True), make_block(2, 2, bytes(32), raw=False))
    first = r.measurements
    assert [m["index"] for m in first] == [1, 2] and first[0]["value"] == b"rom".hex()
    assert r.measurements is first  # rendered once
    r.measurement_blocks = r.measurement_blocks[:1]  # a new read renders again
    assert [m["index"] for m in r.measurements] == [1]
    assert r.to_dict()["measurements"] == r.measurements and r.session_measurements == []
