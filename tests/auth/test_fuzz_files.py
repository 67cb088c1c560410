"""Hypothesis: recordings and reference files from disk only ever raise pciauth errors."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pciauth.doe.record import Recording, ReplayTransport
from pciauth.errors import PciauthError
from pciauth.reference import compare, load_reference

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=8),
                    st.sampled_from(["10840000", "zz", "", "0"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


def _recording_like():
    exchange = st.fixed_dictionaries({"type": st.sampled_from([1, 2, 3, "1", None]),
                                      "request": st.sampled_from(["10840000", "zz", 5, None]),
                                      "response": st.sampled_from(["10040000", "", "0", None])})
    return st.fixed_dictionaries({
        "format": st.sampled_from(["pciauth-doe-recording", "x"]),
        "version": st.sampled_from([1, 2, "1"]),
        "target": st.one_of(st.dictionaries(st.text(max_size=5), scalars, max_size=3), values),
        "options": st.one_of(st.just({}), values),
        "random": st.one_of(st.lists(st.sampled_from(["00" * 32, "zz", 7]), max_size=3), values),
        "exchanges": st.one_of(st.lists(exchange, max_size=4), values),
    })


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_recording_like(), values))
def test_recording_loader(tmp_path, doc):
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(doc))
    try:
        rec = Recording.load(str(path))
    except PciauthError:
        return
    t = ReplayTransport(rec)
    try:
        t.exchange(b"\x10\x84\x00\x00")
    except PciauthError:
        pass


def _reference_like():
    meas = st.fixed_dictionaries({"index": st.one_of(st.integers(0, 3), st.text(max_size=2)),
                                  "type": scalars, "value": scalars})
    slot = st.fixed_dictionaries({"slot": st.integers(0, 2), "digest": scalars,
                                  "certificates_sha256": st.one_of(st.lists(scalars, max_size=3), scalars)})
    return st.fixed_dictionaries({
        "format": st.just("pciauth-reference"), "version": st.just(1),
        "spdm_version": scalars, "algorithms": st.one_of(st.dictionaries(st.text(max_size=4), scalars), values),
        "slots": st.one_of(st.lists(st.one_of(slot, values), max_size=3), values),
        "measurements": st.one_of(st.none(), st.lists(st.one_of(meas, values), max_size=3), values),
    })


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_reference_like(), _reference_like())
def test_reference_load_and_compare(tmp_path, a, b):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(a))
    try:
        expected = load_reference(str(path))
        compare(expected, b)
    except PciauthError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_real_recording_never_authenticates_wrongly(tmp_path_factory, data):
    """Flip bytes anywhere in a real recording: replay gives a verdict, never a traceback."""
    from pciauth.doe.authenticate import AuthOptions, authenticate_device, replay

    base = tmp_path_factory.getbasetemp() / "fuzz-base.json"
    if not base.exists():
        assert authenticate_device("emu", AuthOptions(record=str(base))).authenticated
    doc = json.loads(base.read_text())
    index = data.draw(st.integers(0, len(doc["exchanges"]) - 1))
    side = data.draw(st.sampled_from(["request", "response"]))
    blob = bytearray(bytes.fromhex(doc["exchanges"][index][side]))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= data.draw(st.integers(1, 255))
    doc["exchanges"][index][side] = blob.hex()
    path = tmp_path_factory.mktemp("mut") / "rec.json"
    path.write_text(json.dumps(doc))
    result = replay(str(path), AuthOptions())
    assert result.exit_code in (0, 5, 6)
    if side == "request":
        assert not result.authenticated  # the replayed requester cannot match a changed request
