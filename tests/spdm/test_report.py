"""AuthReport: exit codes, failure records, JSON form."""

from __future__ import annotations

import json

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
