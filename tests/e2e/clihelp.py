"""Run the real ``pciauth`` command line in a subprocess and check its contract.

The contract (README "Exit codes" and "Errors"): a failure is ONE line on stderr,
``pciauth: error: ...``, never a traceback without ``-v``; the exit code is the documented one;
``--json`` prints one JSON object on stdout with ``ok`` and, on failure, an ``error`` object with
the stable keys below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The keys of the ``error`` object of every failing ``--json`` command (README).
ERROR_KEYS = {"type", "message", "exit_code", "errno", "device", "path", "hint"}


@dataclass
class Result:
    args: tuple
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def json(self) -> dict:
        try:
            obj = json.loads(self.out)
        except ValueError as e:
            raise AssertionError(f"pciauth {' '.join(self.args)}: stdout is not one JSON object: {e}\n"
                                 f"stdout: {self.out[:500]!r}\nstderr: {self.err[:500]!r}") from None
        assert isinstance(obj, dict) and isinstance(obj.get("ok"), bool), obj
        return obj

    def describe(self) -> str:
        return f"pciauth {' '.join(self.args)} -> {self.code}\nstdout: {self.out[-800:]}\nstderr: {self.err[-800:]}"


def cli_env(run_dir: str, cache_dir: str, **extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["PCIAUTH_RUN_DIR"] = run_dir  # journals, locks and recorded thresholds stay in the test
    env["XDG_CACHE_HOME"] = cache_dir  # the emulated device's PKI cache
    env.pop("PCIAUTH_SYSFS_ROOT", None)
    env.update(extra)
    return env


def run_cli(env: dict, *args: str, timeout: float = 60, user: list[str] | None = None) -> Result:
    cmd = [*(user or []), sys.executable, "-m", "pciauth", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    return Result(args, p.returncode, p.stdout, p.stderr)


def assert_one_error_line(r: Result, code: int, contains: str = "") -> None:
    """Exit ``code``, exactly one stderr line ``pciauth: error: ...`` (warnings aside), no traceback."""
    assert r.code == code, r.describe()
    assert "Traceback" not in r.err, r.describe()
    errors = [line for line in r.err_lines if not line.startswith("pciauth: warning:")]
    assert len(errors) == 1 and errors[0].startswith("pciauth: error: "), r.describe()
    assert contains.lower() in errors[0].lower(), r.describe()


def assert_json_error(r: Result, code: int) -> dict:
    """``--json`` on failure: ``ok`` false and an ``error`` object with every stable key."""
    obj = r.json()
    assert obj["ok"] is False, r.describe()
    err = obj.get("error")
    assert isinstance(err, dict), r.describe()
    assert set(err) >= ERROR_KEYS, f"missing {ERROR_KEYS - set(err)} in {err}"
    assert err["exit_code"] == code == r.code, r.describe()
    assert isinstance(err["message"], str) and err["message"], err
    return obj
