"""Every fuzz harness still runs: its seeds pass, and a few hundred mutants (fixed random seed)
break the rule only in ways already known (the xfail regression tests name them).

The rule: on any input only pciauth's own errors escape. This is the CI guard of the harnesses
in scripts/fuzz/ (the long coverage-guided runs are ``python scripts/fuzz/run.py``); it needs no
atheris and stays under ~20 s for all targets together.
"""

from __future__ import annotations

import random
import zlib

import pytest
from common import run_one, signature
from mutate import mutate
from targets import TARGETS

MUTANTS = 400

#: Bugs reported but not fixed yet, per target, as "exception type@file of the innermost pciauth
#: frame" (no line number: the owners' edits move lines). Each has an xfail regression test here;
#: remove its entry when the fix lands.
KNOWN: dict[str, set[str]] = {}


def _where(sig: str) -> str:
    return sig.rsplit(":", 1)[0]


@pytest.fixture(scope="module", autouse=True)
def _close_dma_world():
    yield
    import targets_hw

    targets_hw.reset()


def test_every_target_is_listed():
    assert len(TARGETS) >= 17
    assert {"responder", "requester", "spdm_certs", "doe_mailbox", "journal"} <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_pass(name):
    fn, seeds_fn = TARGETS[name]
    seeds = seeds_fn()
    assert seeds, f"{name} has no seeds"
    for s in seeds:
        exc = run_one(fn, s)
        assert exc is None, f"seed {s[:64].hex()} of {name}: {signature(exc)}: {exc}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutants_keep_the_rule(name):
    fn, seeds_fn = TARGETS[name]
    seeds = seeds_fn()
    rng = random.Random(zlib.crc32(name.encode()))
    found: dict[str, bytes] = {}
    for _ in range(MUTANTS):
        data = mutate(rng.choice(seeds), rng, seeds)
        exc = run_one(fn, data)
        if exc is not None:
            found.setdefault(signature(exc), data)
    new = {sig: data[:128].hex() for sig, data in found.items() if _where(sig) not in KNOWN.get(name, set())}
    assert not new, f"{name}: inputs break the rule: {new}"


def test_the_harness_notices_a_rule_break():
    """run_one() reports a non-pciauth exception and lets pciauth errors pass."""
    from pciauth.errors import MalformedData

    def bad(data: bytes) -> None:
        raise IndexError("boom")

    def good(data: bytes) -> None:
        raise MalformedData("bad field", field="x")

    assert isinstance(run_one(bad, b""), IndexError)
    assert run_one(good, b"") is None


def _crash_inputs() -> list[tuple[str, str]]:
    import glob
    import os

    from common import CRASH_DIR

    return sorted((os.path.basename(os.path.dirname(p)), p) for p in glob.glob(os.path.join(CRASH_DIR, "*", "*.bin")))


@pytest.mark.parametrize("name,path", _crash_inputs() or [pytest.param("", "", marks=pytest.mark.skip("no crashes"))],
                         ids=lambda v: v.rsplit("/", 1)[-1] if isinstance(v, str) else v)
def test_saved_crash_inputs_keep_the_rule(name, path):
    """Every input the fuzzer ever saved (scripts/fuzz/crashes/) passes once its bug is fixed."""
    fn, _seeds = TARGETS[name]
    with open(path, "rb") as f:
        exc = run_one(fn, f.read())
    if exc is not None and _where(signature(exc)) in KNOWN.get(name, set()):
        pytest.xfail(f"open bug {signature(exc)}")
    assert exc is None, f"{path}: {signature(exc)}: {exc}"


def test_file_targets_leave_no_scratch_directory(tmp_path):
    """The harnesses that read files write their input to a scratch directory removed at exit."""
    import os
    import subprocess
    import sys

    import targets_io

    code = "import targets_io; open(targets_io._file(b'x'), 'rb').close()"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(targets_io.__file__), env=env,
                   check=True, timeout=120)
    assert list(tmp_path.iterdir()) == []
