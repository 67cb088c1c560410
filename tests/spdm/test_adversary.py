"""Every misbehaviour of the adversary table is rejected with a clear error, never authenticated."""

from __future__ import annotations

import pytest
from conftest import requester_config, responder_config

from pciauth.errors import UsageError
from pciauth.spdm import constants as C
from pciauth.spdm.adversary import MISBEHAVIOURS, Adversary
from pciauth.spdm.requester import Requester
from pciauth.spdm.responder import Responder
from pciauth.transport import CallableTransport


@pytest.mark.parametrize("row", MISBEHAVIOURS, ids=lambda r: r.name)
def test_row_is_rejected(row):
    version = max(row.min_version, C.V12)
    if row.min_version == C.V13:
        version = C.V13
    waits: list[float] = []
    responder = Responder(responder_config(adversary=(row.name,)))
    cfg = requester_config(versions=(version,), session=row.needs_session, sleep=waits.append,
                           measurement_indices=(1, 2) if "count" not in row.name else None)
    report = Requester(CallableTransport(responder.handle), cfg).authenticate()
    assert not report.authenticated, f"{row.name}: authenticated despite {row.description}"
    failed = [c for c in report.checks if not c.ok and not c.skipped]
    assert failed and failed[0].reason, f"{row.name}: no failed check recorded"
    assert report.exit_code in (5, 6), report.error  # never an internal error
    if report.error is None:  # only the certificate checks may fail without a protocol error
        assert row.chain is not None and report.exit_code == 6
    assert len(waits) <= 3  # retries are bounded


def test_rows_hit_what_they_claim():
    """Spot-check the error of some rows, so a row cannot pass by breaking something else."""
    expect = {
        "bad-signature": "signature does not verify",
        "wrong-root-hash": "root_hash",
        "broken-chain-link": "signatures",
        "digest-mismatch": "DIGESTS digest differs",
        "algorithm-not-offered": "BaseAsymSel",
        "two-hashes-selected": "exactly one",
        "remainder-inconsistent": "RemainderLength",
        "portion-length-overflow": "PortionLength",
        "never-ready": "RESPONSE_NOT_READY",
        "busy-forever": "BUSY",
        "wrong-requester-context": "RequesterContext",
        "cert-chain-hash-mismatch": "CertChainHash",
        "version-downgrade": "version",
        "measurement-block-overflow": "MeasurementSize",
        "bad-responder-verify-data": "ResponderVerifyData",
    }
    for name, needle in expect.items():
        row = next(r for r in MISBEHAVIOURS if r.name == name)
        version = C.V13
        responder = Responder(responder_config(adversary=(name,)))
        cfg = requester_config(versions=(version,), session=row.needs_session, measurement_indices=(1, 2))
        report = Requester(CallableTransport(responder.handle), cfg).authenticate()
        text = (report.error or {}).get("message", "") + " ".join(c.reason for c in report.checks)
        assert needle in text, f"{name}: {report.error}"


def test_chain_rows_fail_only_the_chain_checks():
    for name, check in (("wrong-root-hash", "root_hash"), ("broken-chain-link", "signatures")):
        responder = Responder(responder_config(adversary=(name,)))
        report = Requester(CallableTransport(responder.handle), requester_config()).authenticate()
        failed = [c["name"] for c in report.slots[0].verdict["checks"] if not c["ok"]]
        assert check in failed and not report.authenticated


def test_unknown_row_is_a_usage_error():
    with pytest.raises(UsageError):
        Adversary(("no-such-row",))
