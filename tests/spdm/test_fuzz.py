"""Property tests: parsers only raise pciauth errors; the responder never raises; the requester
returns a report whatever the device sends."""

from __future__ import annotations

import os

from conftest import requester_config, responder_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pciauth.errors import PciauthError
from pciauth.spdm import messages as M
from pciauth.spdm.measurements import parse_record
from pciauth.spdm.messages_session import find_sm_element, parse_opaque
from pciauth.spdm.requester import Requester
from pciauth.spdm.responder import Responder
from pciauth.transport import CallableTransport

#: PCIAUTH_FUZZ_SCALE=10 runs ten times the examples (a longer hunt; the default suits CI)
SCALE = max(1, int(os.environ.get("PCIAUTH_FUZZ_SCALE", "1")))

PARSERS = [
    lambda d: M.ErrorResponse.parse(d).not_ready(),
    M.GetVersion.parse, M.Version.parse, M.GetCapabilities.parse, M.Capabilities.parse,
    M.NegotiateAlgorithms.parse, M.Algorithms.parse, M.GetDigests.parse,
    lambda d: M.Digests.parse(d, 48), M.GetCertificate.parse, M.Certificate.parse, M.Challenge.parse,
    lambda d: M.ChallengeAuth.parse(d, hash_size=48, sig_size=96, summary=True),
    M.GetMeasurements.parse, lambda d: M.Measurements.parse(d, sig_size=64),
    lambda d: M.KeyExchange.parse(d, dhe_size=96),
    lambda d: M.KeyExchangeRsp.parse(d, dhe_size=64, hash_size=32, sig_size=64, summary=True),
    lambda d: M.Finish.parse(d, hash_size=48), lambda d: M.FinishRsp.parse(d, hash_size=48),
    M.EndSession.parse, M.EndSessionAck.parse,
    lambda d: parse_record(d, d[0] if d else 0), lambda d: parse_opaque(0x11, d), lambda d: parse_opaque(0x12, d),
    lambda d: find_sm_element([d], 1), lambda d: find_sm_element([d], 2), M.parse_header,
]


def _valid_messages() -> list[bytes]:
    """A real conversation's messages, to mutate."""
    out: list[bytes] = []
    responder = Responder(responder_config())

    def tap(message: bytes, secured: bool = False) -> bytes:
        resp = responder.handle(message, secured=secured)
        if not secured:
            out.extend((message, resp))
        return resp

    Requester(CallableTransport(tap), requester_config(measurement_indices=(1, 2))).authenticate()
    return out


VALID = _valid_messages()


def _mutate(data: bytes, pos: int, kind: int, value: int) -> bytes:
    if not data:
        return data
    pos %= len(data)
    if kind == 0:
        return data[:pos]
    if kind == 1:
        b = bytearray(data)
        b[pos] = value
        return bytes(b)
    if kind == 2:
        return data + bytes([value]) * (pos % 9 + 1)
    return data[:pos] + data[pos + 1 :]


mutated = st.builds(_mutate, st.sampled_from(VALID), st.integers(0, 10_000), st.integers(0, 3), st.integers(0, 255))
anything = st.one_of(st.binary(max_size=300), mutated)


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(PARSERS) - 1), anything)
def test_parsers_raise_only_pciauth_errors(which, data):
    try:
        PARSERS[which](data)
    except PciauthError:
        pass


@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(anything, min_size=1, max_size=8), st.booleans())
def test_responder_never_raises(messages, secured):
    responder = Responder(responder_config())
    for prefix in VALID[0:6:2]:  # VCA requests: reach the negotiated state
        responder.handle(prefix)
    for m in messages:
        out = responder.handle(m, secured=secured)
        assert isinstance(out, bytes) and len(out) >= 4


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 40), mutated, st.booleans())
def test_requester_survives_any_response(nth, replacement, session):
    """Replace the nth response of a real conversation: a report comes back, never authenticated
    unless the replacement happens to be harmless padding."""
    responder = Responder(responder_config())
    count = {"n": 0}

    def handler(message: bytes, secured: bool = False) -> bytes:
        resp = responder.handle(message, secured=secured)
        count["n"] += 1
        return replacement if count["n"] == nth else resp

    report = Requester(CallableTransport(handler), requester_config(session=session)).authenticate()
    assert report.exit_code in (0, 5, 6)
    if report.authenticated:
        assert report.error is None


@settings(max_examples=100 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=5), st.integers(0, 7))
def test_responder_session_never_raises(records, keep):
    """Inside an established session: forged or mangled records never crash the responder."""
    responder = Responder(responder_config())
    captured = []

    def handler(message: bytes, secured: bool = False) -> bytes:
        if secured:
            captured.append(message)
            if len(captured) > 1:  # keep the session open: END_SESSION never reaches the responder
                return b"\x00" * 8
        return responder.handle(message, secured=secured)

    cfg = requester_config(session=True, session_measurements=False)
    Requester(CallableTransport(handler), cfg).authenticate()
    assert len(responder.sessions) == 1
    real = captured[0]  # the FINISH record: its session id header is genuine
    for rec in records:
        forged = real[: keep % 8] + rec
        out = responder.handle(forged, secured=True)
        assert isinstance(out, bytes) and len(out) >= 4
