"""Transcript reset rules (DSP0274; libspdm libspdm_reset_message_buffer_via_request_code)."""

from __future__ import annotations

import pytest

from pciauth.spdm import constants as C
from pciauth.spdm.transcript import SessionTranscript, Transcript


def fresh() -> Transcript:
    t = Transcript()
    t.add_a(b"A")
    t.add_b(b"B")
    t.add_c(b"C")
    t.add_m(b"M")
    return t


def test_m1_is_a_b_c():
    assert fresh().m1() == b"ABC"


def test_l1_has_vca_prefix_from_1_2_only():
    t = fresh()
    assert t.l1(C.V11) == b"M" and t.l1(C.V10) == b"M"
    assert t.l1(C.V12) == b"AM" and t.l1(C.V13) == b"AM"


def test_get_version_clears_everything():
    t = fresh()
    t.on_request(C.Code.GET_VERSION)
    assert t.m1() == b"" and t.l1(C.V12) == b""


def test_any_request_but_get_measurements_clears_l1():
    t = fresh()
    t.on_request(C.Code.GET_MEASUREMENTS)
    assert t.l1(C.V11) == b"M"
    t = fresh()
    t.on_request(C.Code.GET_CERTIFICATE)
    assert t.l1(C.V11) == b"" and t.m1() == b"ABC"


def test_get_digests_restarts_b():
    t = fresh()
    t.on_request(C.Code.GET_DIGESTS)
    assert t.m1() == b"AC"


def test_skipped_challenge_drops_b_and_c():
    for code in (C.Code.KEY_EXCHANGE, C.Code.GET_MEASUREMENTS, C.Code.FINISH, C.Code.END_SESSION):
        t = fresh()
        t.on_request(code)
        assert t.m1() == b"A", code


def test_after_a_challenge_b_and_c_start_over_and_survive_measurements():
    t = fresh()
    t.challenge_done()
    t.add_b(b"b2")
    t.on_request(C.Code.GET_MEASUREMENTS)
    assert t.m1() == b"Ab2"


def test_session_transcript_order():
    th = SessionTranscript(b"VCA", b"H")
    th.add_k(b"KE", b"KR")
    th.add_f(b"F")
    assert th.th() == b"VCAHKEKRF"


def test_transcript_is_bounded_and_a_refused_append_changes_nothing():
    from pciauth.spdm.transcript import MAX_TRANSCRIPT, Transcript, TranscriptFull

    t = Transcript()
    t.add_b(bytes(MAX_TRANSCRIPT - 10))
    with pytest.raises(TranscriptFull, match="transcript B would exceed"):
        t.add_b(bytes(4), bytes(7))  # together 1 byte too many
    assert len(t.b) == MAX_TRANSCRIPT - 10
    t.add_b(bytes(4), bytes(6))  # exactly full is allowed
    assert len(t.b) == MAX_TRANSCRIPT
