"""The harnesses see the bugs pciauth would hide from a user, through public seams only: an
internal exception in the responder (strict responder), in the requester (AuthReport.exception)
or in the socket server's handler (the server's logger), and private session copies."""

from __future__ import annotations

import logging

import pytest
import targets_io
import targets_spdm


class Bug(Exception):
    """Stands for an internal bug (not a pciauth error)."""


def _bug(*a: object, **k: object) -> bytes:
    raise Bug("injected")


def test_responder_harness_reports_an_internal_exception(monkeypatch):
    from pciauth.spdm.responder import Responder

    seed = targets_spdm.seeds_responder()[0]
    targets_spdm.fuzz_responder(seed)
    monkeypatch.setattr(Responder, "_get_version", _bug)  # a handler bug
    with pytest.raises(Bug):
        targets_spdm.fuzz_responder(seed)


def test_requester_harness_reraises_what_the_report_recorded(monkeypatch):
    seed = targets_spdm.seeds_requester()[0]
    targets_spdm.fuzz_requester(seed)
    from pciauth.spdm import messages as M

    monkeypatch.setattr(M.Version, "parse", staticmethod(_bug))  # a parser bug, not a transport's
    with pytest.raises(Bug):
        targets_spdm.fuzz_requester(seed)


def test_socket_server_harness_reports_a_handler_bug(monkeypatch):
    from pciauth.spdm import socket_server
    from pciauth.spdm.responder import Responder

    module_log = socket_server.log
    seed = targets_io.seeds_socket_server()[0]
    targets_io.fuzz_socket_server(seed)
    monkeypatch.setattr(Responder, "handle", _bug)
    with pytest.raises(Bug):
        targets_io.fuzz_socket_server(seed)
    assert socket_server.log is module_log is logging.getLogger("pciauth.responder")


def test_session_copies_share_no_state():
    """Each input gets its own session: what one copy sends or receives moves no other's sequence
    numbers (the template's, another copy's, or their responders')."""
    heartbeat = b"\x12\xe8\0\0"
    for data_phase in (False, True):
        template_rsp, template = targets_spdm._session_template(data_phase)
        (rsp_a, a), (rsp_b, b) = targets_spdm._session_copy(data_phase), targets_spdm._session_copy(data_phase)
        seq = template.send_sequence
        received = [next(iter(r.sessions.values())).secured.receive_sequence for r in (template_rsp, rsp_a, rsp_b)]
        assert received == [seq] * 3
        rsp_a.handle(a.encrypt(heartbeat), secured=True)
        assert (template.send_sequence, a.send_sequence, b.send_sequence) == (seq, seq + 1, seq)
        received = [next(iter(r.sessions.values())).secured.receive_sequence for r in (template_rsp, rsp_a, rsp_b)]
        assert received == [seq, seq + 1, seq]
