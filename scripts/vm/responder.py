"""Start ``pciauth responder`` on the host for a guest's NVMe ``spdm_port``.

QEMU connects to the responder when it creates the NVMe device and refuses
to start when nothing listens, so the responder must be up first.  The
context manager starts it, waits until the TCP port accepts connections,
yields the port, and stops the responder afterwards (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

#: NVMe ids in QEMU 10 (Red Hat 1b36:0010, subsystem 1af4:1100): the leaf's CMA name.
NVME_PKI_IDS = ["--vendor", "1b36", "--device", "0010", "--class", "010802", "--revision", "02",
                "--ssvid", "1af4", "--ssid", "1100"]


class ResponderError(Exception):
    """The host responder did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_nvme_pki(path: Path) -> Path:
    """``pciauth pki init PATH`` with a leaf certificate that names QEMU's NVMe."""
    subprocess.run([sys.executable, "-m", "pciauth", "pki", "init", str(path), *NVME_PKI_IDS],
                   check=True, cwd=REPO, capture_output=True, timeout=300)
    return path


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ResponderError(f"pciauth responder exited with {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise ResponderError(f"pciauth responder did not listen on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def host_responder(pki: Path, port: int | None = None, *, extra_args: list[str] | None = None,
                   log: Path | None = None, timeout: float = 30.0) -> Iterator[int]:
    """Run ``pciauth responder --listen PORT --pki DIR`` for the duration of the block.

    Note the probe connection made while waiting: the responder must accept
    a client that connects and closes without a word (QEMU does the same
    when it shuts down early).
    """
    port = port or free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pciauth", "responder", "--listen", str(port), "--pki", str(pki),
           *(extra_args or [])]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=REPO, start_new_session=True)
    try:
        _wait_port(port, proc, timeout)
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if log:
            out.close()
