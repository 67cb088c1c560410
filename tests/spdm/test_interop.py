"""Requester against responder in memory: every version x every algorithm, sessions, retries."""

from __future__ import annotations

import pytest
from conftest import anchor, pki_set, requester_config, responder_config

from pciauth.spdm import algorithms as A
from pciauth.spdm import constants as C
from pciauth.spdm.requester import Requester
from pciauth.spdm.responder import Responder, ResponderConfig, Slot
from pciauth.transport import CallableTransport

VERSIONS = C.ALL_VERSIONS
#: (BaseAsymAlgo bit, PKI algorithm holding a fitting key)
ASYMS = [
    (A.ASYM_ECDSA_P256, "ecdsa-p256"), (A.ASYM_ECDSA_P384, "ecdsa-p384"), (A.ASYM_ECDSA_P521, "ecdsa-p521"),
    (A.ASYM_RSASSA_2048, "rsa2048"), (A.ASYM_RSAPSS_2048, "rsa2048"),
    (A.ASYM_RSASSA_3072, "rsa3072"), (A.ASYM_RSAPSS_3072, "rsa3072"),
    (A.ASYM_RSASSA_4096, "rsa4096"), (A.ASYM_RSAPSS_4096, "rsa4096"),
]  # fmt: skip
HASHES = [A.HASH_SHA256, A.HASH_SHA384, A.HASH_SHA512]


def run(rsp_cfg, req_cfg):
    responder = Responder(rsp_cfg)
    report = Requester(CallableTransport(responder.handle), req_cfg).authenticate()
    return report, responder


@pytest.mark.parametrize("version", VERSIONS, ids=C.version_str)
@pytest.mark.parametrize("asym,alg", ASYMS, ids=[a for _, a in ASYMS])
def test_every_version_every_signature_algorithm(version, asym, alg):
    hash_bit = HASHES[(asym.bit_length() + version) % 3]  # vary the hash across the grid too
    report, _ = run(responder_config(alg), requester_config(
        alg, versions=(version,), base_asym=asym, base_hash=hash_bit, summary_type="all"))
    assert report.error is None, report.error
    assert report.authenticated and report.exit_code == 0
    assert report.version == C.version_str(version)
    assert report.algorithms["base_asym"] == A.describe_asym(asym)
    assert report.algorithms["base_hash"] == A.describe_hash(hash_bit)
    whats = [s.what for s in report.signatures]
    assert whats == ["challenge_auth", "measurements"]
    assert all(s.verified for s in report.signatures)
    assert len(report.measurements) == 5


@pytest.mark.parametrize("version", VERSIONS, ids=C.version_str)
@pytest.mark.parametrize("hash_bit", HASHES, ids=A.describe_hash)
def test_every_version_every_hash(version, hash_bit):
    report, _ = run(responder_config("ecdsa-p256"), requester_config(
        "ecdsa-p256", versions=(version,), base_hash=hash_bit, summary_type="tcb"))
    assert report.authenticated, report.error
    size = A.hash_size(hash_bit)
    assert len(report.slots[0].digest) == size
    digests = [m for m in report.measurements if m["representation"] == "digest"]
    assert digests and all(len(bytes.fromhex(m["value"])) == size for m in digests)


@pytest.mark.parametrize("version", (0x11, 0x12, 0x13), ids=C.version_str)
@pytest.mark.parametrize("dhe", sorted(A.DHE_GROUPS), ids=A.describe_dhe)
@pytest.mark.parametrize("aead", sorted(A.AEAD_SUITES), ids=A.describe_aead)
def test_sessions_carry_measurements(version, dhe, aead):
    report, responder = run(responder_config(), requester_config(
        versions=(version,), session=True, dhe=dhe, aead=aead))
    assert report.authenticated, report.error
    assert report.session["established"] and report.session["ended"]
    assert report.session["dhe"] == A.describe_dhe(dhe) and report.session["aead"] == A.describe_aead(aead)
    assert [m["index"] for m in report.session_measurements] == [1, 2, 3, 4, 5]
    assert [s.what for s in report.signatures] == [
        "challenge_auth", "measurements", "key_exchange_rsp", "session_measurements"]
    assert responder.sessions == {}  # END_SESSION removed it


def test_session_not_offered_in_1_0_is_skipped():
    report, _ = run(responder_config(), requester_config(versions=(0x10,), session=True))
    assert report.authenticated
    assert report.verdict("session").skipped


def test_highest_common_version_is_chosen():
    report, _ = run(responder_config(versions=(0x10, 0x11, 0x12)), requester_config(versions=C.ALL_VERSIONS))
    assert report.version == "1.2"
    assert report.versions_offered_by_device == ["1.0", "1.1", "1.2"]


def test_no_common_version_could_not_talk():
    report, _ = run(responder_config(versions=(0x10,)), requester_config(versions=(0x12, 0x13)))
    assert not report.authenticated and report.exit_code == 5
    assert "no common SPDM version" in report.error["message"]


def test_chosen_measurement_indices_signed_on_last():
    report, _ = run(responder_config(), requester_config(measurement_indices=(2, 4)))
    assert report.authenticated, report.error
    assert [m["index"] for m in report.measurements] == [2, 4]
    assert report.measurement_count == 5
    assert [s.what for s in report.signatures] == ["challenge_auth", "measurements"]


def test_every_provisioned_slot_is_read():
    s = pki_set("ecdsa-p384")
    other = pki_set("ecdsa-p256")  # a P-256 slot does not serve a P-384 connection
    cfg = ResponderConfig(slots=[Slot(0, s.der_chain, s.leaf_key), Slot(2, s.der_chain, s.leaf_key),
                                 Slot(1, other.der_chain, other.leaf_key)])
    report, _ = run(cfg, requester_config(base_asym=A.ASYM_ECDSA_P384, cert_chunk=0x100))
    assert report.authenticated, report.error
    assert [sr.slot for sr in report.slots] == [0, 2]
    assert report.challenged_slot == 0


def test_untrusted_root_is_never_authenticated():
    report, _ = run(responder_config(), requester_config(trust_anchors=[anchor("ecdsa-p256")]))
    assert report.error is None
    assert report.verdict("challenge").ok  # the signature itself is fine
    assert not report.verdict("chain_trust").ok
    assert not report.authenticated and report.exit_code == 6


def test_no_trust_anchor_is_never_authenticated():
    report, _ = run(responder_config(), requester_config(trust_anchors=[]))
    assert not report.authenticated and report.exit_code == 6


def test_device_without_chal_cap_is_not_authenticated():
    caps = {"CERT_CAP": 1, "MEAS_CAP": 1}
    report, _ = run(responder_config(capabilities=caps), requester_config())
    assert report.error is None
    assert not report.verdict("capabilities").ok
    assert not report.authenticated and report.exit_code == 6
    assert report.measurements and not report.signatures  # unsigned measurements only


def test_response_not_ready_answered_with_respond_if_ready():
    waits = []
    cfg = responder_config(not_ready_once=(C.Code.CHALLENGE, C.Code.GET_DIGESTS))
    report, _ = run(cfg, requester_config(sleep=waits.append))
    assert report.authenticated, report.error
    assert len(waits) == 2 and all(w == pytest.approx(4e-6) for w in waits)


class BusyOnce:
    """Answers the first CHALLENGE with ERROR Busy, then passes through."""

    def __init__(self, responder):
        self.responder, self.busy = responder, 0

    def exchange(self, message, *, secured=False):
        if message[1] == C.Code.CHALLENGE and not self.busy:
            self.busy += 1
            return bytes((message[0], 0x7F, C.ErrorCode.BUSY, 0))
        return self.responder.handle(message, secured=secured)

    def close(self):
        pass


def test_busy_is_retried():
    responder = Responder(responder_config())
    t = BusyOnce(responder)
    report = Requester(t, requester_config()).authenticate()
    assert report.authenticated and t.busy == 1


def test_transport_failure_is_reported_not_raised():
    class Broken:
        def exchange(self, message, *, secured=False):
            raise OSError("cable unplugged")

        def close(self):
            pass

    report = Requester(Broken(), requester_config()).authenticate()
    assert report.exit_code == 5 and "cable unplugged" in report.error["message"]
    assert report.error["step"] == "version"


def test_report_json_fields_are_stable():
    import json

    report, _ = run(responder_config(), requester_config(session=True))
    d = json.loads(json.dumps(report.to_dict()))
    for key in ("authenticated", "exit_code", "version", "capabilities", "algorithms", "slots", "checks",
                "measurements", "signatures", "session", "error"):
        assert key in d
    assert d["slots"][0]["certificates_pem"][0].startswith("-----BEGIN CERTIFICATE-----")
    sig = d["signatures"][0]
    for key in ("signature", "transcript", "transcript_hash", "combined_prefix", "signed_message",
                "hash_algorithm", "requester_nonce", "public_key_pem", "slot"):
        assert key in sig
    assert d["capabilities"]["CERT_CAP"] == 1 and d["capabilities"]["MEAS_CAP"] == 2


@pytest.mark.parametrize("version", VERSIONS, ids=C.version_str)
def test_measurement_summary_hash_matches_measurements(version):
    report, _ = run(responder_config(), requester_config(versions=(version,), summary_type="all"))
    assert report.authenticated
    assert report.verdict("measurement_summary").ok


def test_measurement_summary_hash_mismatch_is_reported():
    from pciauth.spdm.responder import MeasurementSpec

    cfg = responder_config()
    responder = Responder(cfg)
    # the measurements change between CHALLENGE and GET_MEASUREMENTS
    original = responder._challenge

    def challenge_then_change(message, session):
        out = original(message, session)
        responder.blocks = [MeasurementSpec(1, 0, b"other ROM").block(responder.meas_hash_bit)]
        return out

    responder._challenge = challenge_then_change
    report = Requester(CallableTransport(responder.handle), requester_config(summary_type="all")).authenticate()
    assert report.verdict("measurement_summary").ok is False


def test_authenticate_twice_starts_over():
    responder = Responder(responder_config())
    requester = Requester(CallableTransport(responder.handle), requester_config())
    first, second = requester.authenticate(), requester.authenticate()
    assert first.authenticated and second.authenticated
    assert first.signatures[0].requester_nonce != second.signatures[0].requester_nonce


def test_error_in_another_version_is_reported_with_its_code():
    report, _ = run(responder_config(versions=(0x10, 0x11)), requester_config(versions=(0x12,)))
    assert report.exit_code == 5 and "no common SPDM version" in report.error["message"]

    class Liar:
        """Lists 1.2 in VERSION but refuses GET_CAPABILITIES 1.2 (VersionMismatch, in 1.0)."""

        def __init__(self):
            self.r = Responder(responder_config(versions=(0x10,)))

        def exchange(self, message, *, secured=False):
            if message[1] == C.Code.GET_VERSION:
                self.r.handle(message)
                return bytes.fromhex("100400000002") + bytes.fromhex("00100012")
            return self.r.handle(message, secured=secured)

        def close(self):
            pass

    report = Requester(Liar(), requester_config()).authenticate()
    assert report.error["error_code"] == C.ErrorCode.VERSION_MISMATCH
    assert "VERSION_MISMATCH" in report.error["message"] and report.exit_code == 5


def test_transport_gets_dsp0274_response_times():
    responder = Responder(responder_config(ct_exponent=20))
    seen = []

    class Timed(CallableTransport):
        def set_response_time(self, seconds):
            seen.append(seconds)

    report = Requester(Timed(responder.handle), requester_config()).authenticate()
    assert report.authenticated and report.ct_exponent == 20
    assert seen[0] == pytest.approx(0.1)  # GET_VERSION: ST1
    assert max(seen) == pytest.approx(0.1 + 2**20 / 1e6)  # CHALLENGE/MEASUREMENTS: ST1 + CT


@pytest.mark.parametrize("alg,asym", [("ecdsa-p384", A.ASYM_ECDSA_P384), ("rsa2048", A.ASYM_RSASSA_2048)])
@pytest.mark.parametrize("version", (0x10, 0x11, 0x12), ids=C.version_str)
def test_little_endian_signatures_of_1_0_and_1_1(version, alg, asym):
    """A 1.0/1.1 device that signs little endian is accepted (logged big endian); never from 1.2."""
    from pciauth.spdm.requester import swap_endian

    def little_responder():
        responder = Responder(responder_config(alg))
        real_sign = responder._sign
        responder._sign = lambda ctx, t, slot: swap_endian(A.asym_algo(responder.asym_bit), real_sign(ctx, t, slot))
        return responder

    def auth(**kw):
        cfg = requester_config(alg, versions=(version,), base_asym=asym, **kw)
        return Requester(CallableTransport(little_responder().handle), cfg).authenticate()

    report = auth()
    if version >= 0x12:
        assert not report.authenticated and "signature" in report.error["message"]
    else:
        assert report.authenticated, report.error
        assert "little-endian" in report.signatures[0].reason
        strict = auth(accept_little_endian_10_11=False)
        assert not strict.authenticated and "signature" in strict.error["message"]


def test_certificate_portions_fit_a_small_data_transfer_size():
    cfg = responder_config(data_transfer_size=0x100, max_spdm_msg_size=0x100, cert_chunk_max=0xFFFF)
    responder = Responder(cfg)
    sizes = []

    def tap(message, secured=False):
        resp = responder.handle(message, secured=secured)
        if resp[1] == C.Code.CERTIFICATE:
            sizes.append(len(resp))
        return resp

    report = Requester(CallableTransport(tap), requester_config(versions=(0x12,))).authenticate()
    assert report.authenticated, report.error
    assert len(sizes) > 3 and max(sizes) == 0x100


def test_response_not_ready_with_rdtm_1_is_rejected():
    responder = Responder(responder_config())

    class BadNotReady(CallableTransport):
        def exchange(self, message, *, secured=False):
            if message[1] == C.Code.CHALLENGE:
                return bytes((message[0], 0x7F, C.ErrorCode.RESPONSE_NOT_READY, 0, 3, message[1], 1, 1))
            return super().exchange(message, secured=secured)

    report = Requester(BadNotReady(responder.handle), requester_config()).authenticate()
    assert not report.authenticated and "RDTM" in report.error["message"]


@pytest.mark.parametrize("times,ok", [(1, True), (2, False)])
def test_request_resynch_restarts_once(times, ok):
    responder = Responder(responder_config())
    left = {"n": times}

    class Resynch(CallableTransport):
        def exchange(self, message, *, secured=False):
            if message[1] == C.Code.GET_DIGESTS and left["n"]:
                left["n"] -= 1
                return bytes((message[0], 0x7F, C.ErrorCode.REQUEST_RESYNCH, 0))
            return super().exchange(message, secured=secured)

    report = Requester(Resynch(responder.handle), requester_config()).authenticate()
    assert report.authenticated is ok
    if not ok:
        assert "REQUEST_RESYNCH" in report.error["message"]


def test_bad_requester_verify_data_ends_the_session(monkeypatch):
    from pciauth.spdm import messages as M

    real = M.Finish.encode  # only the requester encodes FINISH: corrupt its RequesterVerifyData
    monkeypatch.setattr(M.Finish, "encode", lambda self: real(self)[:-1] + bytes((real(self)[-1] ^ 1,)))
    responder = Responder(responder_config())
    report = Requester(CallableTransport(responder.handle), requester_config(session=True)).authenticate()
    assert not report.authenticated and "DECRYPT_ERROR" in report.error["message"]
    assert responder.sessions == {}


def test_verification_time_outside_validity_is_not_authenticated():
    import datetime

    later = datetime.datetime(2200, 1, 1, tzinfo=datetime.UTC)
    report, _ = run(responder_config(), requester_config(at_time=later))
    assert not report.authenticated and report.exit_code == 6
    failed = [c["name"] for c in report.slots[0].verdict["checks"] if not c["ok"]]
    assert failed == ["validity"]


def test_requester_exposes_the_session_it_opened():
    responder = Responder(responder_config())
    req = Requester(CallableTransport(responder.handle), requester_config(session=True))
    assert req.secured_session is None
    report = req.authenticate()
    assert report.authenticated, report.error
    assert f"0x{req.secured_session.session_id:08x}" == report.session["session_id"]
