"""Fuzz one target for a time budget (run.py starts this once per target, in its own process).

    python scripts/fuzz/fuzz_one.py TARGET --seconds N [--engine atheris|random] [--summary FILE]

Seeds are built in this process (so the PKI they use is the one the harness trusts), written to
``seeds/<target>/`` and handed to libFuzzer with the growing corpus ``corpus/<target>/``. A
finding (an exception other than a pciauth error, or a harness check) is saved once per distinct
signature to ``crashes/<target>/`` and fuzzing goes on; libFuzzer itself catches hangs
(``-timeout``) and memory blow-ups (``-rss_limit_mb``) and stops, run.py then records those.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import resource
import signal
import sys
import time

import _paths  # noqa: F401
from common import CRASH_DIR, HERE, FuzzFinding, run_one, save_crash, signature

PER_INPUT_TIMEOUT = 10  # seconds: more is a hang
MEMORY_LIMIT = 3 << 30  # bytes of address space: more is an unbounded allocation


#: libFuzzer dictionaries: tokens of the text formats (JSON files), escaped as libFuzzer wants.
JSON_TOKENS = ("{", "}", "[", "]", ",", ":", "\\\"", "null", "true", "false", "0", "-1", "1e999",
               "99999999999999999999999999999999", "0.5", "\\\"\\\":")
DICTIONARIES = {
    "journal": JSON_TOKENS + ("\\\"pid\\\"", "\\\"created\\\"", "\\\"pid_start\\\"", "\\\"mode\\\""),
    "reference": JSON_TOKENS + ("\\\"slots\\\"", "\\\"measurements\\\"", "\\\"index\\\"", "\\\"value\\\""),
    "doe_record": JSON_TOKENS + ("\\\"exchanges\\\"", "\\\"random\\\"", "\\\"identity\\\"", "\\\"type\\\""),
}


class State:
    def __init__(self, target: str, summary: str | None) -> None:
        self.target = target
        self.summary = summary
        self.known = set()
        for txt in glob.glob(os.path.join(CRASH_DIR, target, "*.txt")):
            with open(txt) as f:
                for line in f:
                    if line.startswith("signature: "):
                        self.known.add(line[len("signature: ") :].strip())
        self.new: list[dict] = []
        self.crash_execs = 0
        self.execs = 0

    def record(self, data: bytes, exc: BaseException) -> None:
        self.crash_execs += 1
        sig = signature(exc)
        if sig in self.known:
            return
        self.known.add(sig)
        path = save_crash(self.target, data, exc)
        self.new.append({"signature": sig, "path": os.path.relpath(path, HERE), "message": str(exc)[:300]})
        print(f"\n=== NEW FINDING in {self.target}: {sig}: {type(exc).__name__}: {str(exc)[:200]}\n"
              f"    input ({len(data)} bytes): {data[:256].hex()}{'...' if len(data) > 256 else ''}\n"
              f"    saved to {path}", file=sys.stderr, flush=True)
        self.write()

    def write(self, **extra: object) -> None:
        if self.summary:
            with open(self.summary, "w") as f:
                json.dump({"target": self.target, "new": self.new, "crash_execs": self.crash_execs,
                           "execs": self.execs, **extra}, f)


def write_seeds(target: str, seeds: list[bytes]) -> str:
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for old in glob.glob(os.path.join(d, "*")):
        os.unlink(old)
    for s in seeds:
        with open(os.path.join(d, hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
    return d


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"one input ran longer than {PER_INPUT_TIMEOUT} s")


def random_engine(fn, seeds: list[bytes], state: State, seconds: float, seed: int = 0) -> None:
    """No coverage feedback: mutate seeds and earlier mutants at random for ``seconds``."""
    rng = random.Random(seed)
    from mutate import mutate

    pool = list(seeds) or [b""]
    signal.signal(signal.SIGALRM, _alarm)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = mutate(rng.choice(pool), rng, pool)
        signal.setitimer(signal.ITIMER_REAL, PER_INPUT_TIMEOUT)
        try:
            exc = run_one(fn, data)
        except Hang as h:
            exc = h
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        state.execs += 1
        if exc is not None:
            state.record(data, exc)
        elif len(pool) < 2000 and rng.random() < 0.05:
            pool.append(data)
    print(f"#{state.execs}\tDONE   cov: - ft: - corp: {len(pool)}", file=sys.stderr)


def atheris_engine(fn, seed_dir: str, state: State, seconds: float, max_len: int, argv0: str) -> None:
    import atheris

    corpus = os.path.join(HERE, "corpus", state.target)
    os.makedirs(corpus, exist_ok=True)
    artifacts = os.path.join(CRASH_DIR, state.target) + "/"
    os.makedirs(artifacts, exist_ok=True)

    def one(data: bytes) -> None:
        state.execs += 1
        exc = run_one(fn, data)
        if exc is not None:
            state.record(data, exc)

    args = [argv0, corpus, seed_dir, f"-max_total_time={int(seconds)}", f"-timeout={PER_INPUT_TIMEOUT}",
            "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}", f"-max_len={max_len}",
            "-print_final_stats=1", "-len_control=20"]
    tokens = DICTIONARIES.get(state.target)
    if tokens:
        path = os.path.join(HERE, "seeds", f"{state.target}.dict")
        with open(path, "w") as f:
            f.writelines(f'"{t}"\n' for t in tokens)
        args.append(f"-dict={path}")
    atheris.Setup(args, one)
    atheris.Fuzz()


def instrument_pciauth() -> None:
    """Import every pciauth module with atheris' coverage instrumentation (and nothing else: the
    harnesses import lazily, and find the instrumented modules already loaded)."""
    import importlib
    import pkgutil

    import atheris

    with atheris.instrument_imports(include=["pciauth"]):
        import pciauth

        for mod in pkgutil.walk_packages(pciauth.__path__, "pciauth."):
            if mod.name.endswith("__main__") or mod.name.startswith(("pciauth.cli", "pciauth.pytest_plugin")):
                continue
            try:
                importlib.import_module(mod.name)
            except Exception as e:  # a module that needs what this host lacks: fuzz without it
                print(f"note: {mod.name} not instrumented ({e})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    p.add_argument("--summary")
    a = p.parse_args(argv)
    if a.engine == "atheris":
        instrument_pciauth()
    from targets import TARGETS

    fn, seeds_fn = TARGETS[a.target]
    state = State(a.target, a.summary)
    seeds = seeds_fn()
    for s in seeds:  # a seed must pass, and running each imports what the harness needs lazily
        exc = run_one(fn, s)
        if exc is not None:
            state.record(s, exc)
    seed_dir = write_seeds(a.target, seeds)
    state.write()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    if a.engine == "atheris":
        max_len = max(4096, 2 * max(len(s) for s in seeds))
        atheris_engine(fn, seed_dir, state, a.seconds, max_len, sys.argv[0])
    else:
        random_engine(fn, seeds, state, a.seconds)
    state.write()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FuzzFinding as e:  # a harness failure outside any input
        print(f"harness error: {e}", file=sys.stderr)
        sys.exit(3)
