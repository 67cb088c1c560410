#!/usr/bin/env python3
"""Run pciauth's fuzz targets one after another, each for a time budget, and print a table.

    python scripts/fuzz/run.py [--seconds N] [--engine atheris|random] [--list] [TARGET...]

Each target runs in its own process (``fuzz_one.py``), under ``nice -n 10``: coverage-guided with
atheris (``pip install atheris``) when it is installed, else with random mutations of the seeds.
Findings go to ``scripts/fuzz/crashes/<target>/`` (input ``.bin`` and traceback ``.txt``) and are
printed with their input; hangs and memory blow-ups caught by libFuzzer are saved there too, and
the target restarts for the rest of its budget. Exit status: 0 no new finding, 1 new findings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

LIBFUZZER_STOPS = (
    ("timeout", re.compile(r"ALARM: working on the last Unit for|ERROR: libFuzzer: timeout")),
    ("oom", re.compile(r"ERROR: libFuzzer: out-of-memory")),
    ("crash", re.compile(r"ERROR: libFuzzer: deadly signal|Uncaught Python exception")),
)
ARTIFACT = re.compile(r"Test unit written to (\S+)")
STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\S+) ft: (\S+)")
DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_target(name: str, seconds: float, engine: str, log_dir: str) -> dict:
    """Fuzz one target for ``seconds`` (restarting after a hang or OOM); its table row."""
    row = {"target": name, "execs": 0, "seconds": 0.0, "cov": "-", "ft": "-", "findings": [], "stops": []}
    deadline = time.monotonic() + seconds
    log_path = os.path.join(log_dir, f"{name}.log")
    with open(log_path, "w"):
        pass
    for _attempt in range(4):
        left = deadline - time.monotonic()
        if left < 5:
            break
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            summary = tmp.name
        cmd = ["nice", "-n", "10", sys.executable, os.path.join(HERE, "fuzz_one.py"), name,
               "--seconds", str(int(left)), "--engine", engine, "--summary", summary]
        start = time.monotonic()
        try:
            with open(log_path, "a") as log:
                status = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=left + 300).returncode
        except subprocess.TimeoutExpired:  # killed: a hang libFuzzer's -timeout did not catch
            status = "killed after its budget + 300 s"
        row["seconds"] += time.monotonic() - start
        with open(log_path, errors="replace") as f:
            text = f.read()
        try:
            with open(summary) as f:
                info = json.load(f)
        except (OSError, ValueError):  # fuzz_one died before writing it
            info = {"new": []}
        finally:
            with contextlib.suppress(OSError):
                os.unlink(summary)
        row["findings"] += info["new"]
        part = text.split("=== run ===")[-1]
        stats = STATS.findall(part)
        if stats:
            row["cov"], row["ft"] = stats[-1][1], stats[-1][2]
        done = DONE.findall(part)
        row["execs"] += int(done[-1][0]) if done else (int(stats[-1][0]) if stats else info.get("execs", 0))
        stop = next((kind for kind, rx in LIBFUZZER_STOPS if rx.search(part)), None)
        with open(log_path, "a") as log:
            log.write("\n=== run ===\n")
        if stop is None:
            if status != 0:
                row["stops"].append({"kind": f"exit {status}" if isinstance(status, int) else status,
                                     "artifact": None})
            break
        art = ARTIFACT.findall(part)
        row["stops"].append({"kind": stop, "artifact": art[-1] if art else None})
    return row


def main(argv: list[str] | None = None) -> int:
    from targets import TARGETS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", nargs="*", metavar="TARGET", help="default: all")
    p.add_argument("--seconds", type=float, default=60, help="budget per target (default 60)")
    p.add_argument("--engine", choices=("atheris", "random"), default=None,
                   help="default: atheris when installed")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(TARGETS))
        return 0
    unknown = [t for t in a.targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    engine = a.engine or ("atheris" if have_atheris() else "random")
    log_dir = os.path.join(HERE, "logs")
    os.makedirs(log_dir, exist_ok=True)
    rows = []
    for name in a.targets or list(TARGETS):
        print(f"fuzzing {name} for {a.seconds:g} s ({engine}) ...", flush=True)
        row = run_target(name, a.seconds, engine, log_dir)
        rows.append(row)
        for f in row["findings"]:
            with open(os.path.join(HERE, f["path"]), "rb") as fh:
                data = fh.read()
            print(f"  NEW FINDING {f['signature']}: {f['message']}\n    input: {data[:256].hex()}"
                  f"{'...' if len(data) > 256 else ''}\n    saved: scripts/fuzz/{f['path']}", flush=True)
        for s in row["stops"]:
            print(f"  STOPPED by {s['kind']}; input saved: {s['artifact']}", flush=True)
    print()
    print(f"{'target':<20} {'execs':>10} {'time s':>8} {'exec/s':>8} {'cov':>6} {'ft':>7} {'findings':>8} {'stops':>6}")
    for r in rows:
        rate = r["execs"] / r["seconds"] if r["seconds"] else 0
        print(f"{r['target']:<20} {r['execs']:>10} {r['seconds']:>8.0f} {rate:>8.0f} {r['cov']:>6} {r['ft']:>7} "
              f"{len(r['findings']):>8} {len(r['stops']):>6}")
    with open(os.path.join(log_dir, "last-run.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 1 if any(r["findings"] or r["stops"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
