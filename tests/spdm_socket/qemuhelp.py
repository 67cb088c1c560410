"""QEMU under qtest (no guest, CPU stopped) as a real DOE mailbox backed by our socket server.

QEMU's NVMe with ``spdm_port=N`` connects to 127.0.0.1:N at start-up and forwards every CMA
DOE object written to its mailbox. Through qtest's ``readl``/``writel`` on the q35 ECAM window
(enabled by programming PCIEXBAR in the host bridge), pciauth's own DoeMailbox drives that
mailbox: QEMU's DOE emulation and socket client meet our ResponderServer.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time

from pciauth.pci.config import ConfigSpace

QEMU = shutil.which("qemu-system-x86_64")
ECAM_BASE = 0xB0000000
PCIEXBAR = 0x60  # q35 host bridge: base | length 256 MiB (bits 2:1 = 0) | enable (bit 0)


class Qtest:
    def __init__(self, spdm_port: int, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                QEMU,
                "-M",
                "q35",
                "-nodefaults",
                "-display",
                "none",
                "-accel",
                "tcg",
                "-S",
                "-qtest",
                "stdio",
                "-device",
                f"nvme,serial=pciauth0,spdm_port={spdm_port}",
                *extra,
            ],  # fmt: skip
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buf = b""

    def _readline(self, timeout: float) -> str:
        """One line of qtest output; a frozen QEMU fails the test instead of hanging it."""
        assert self.proc.stdout
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"QEMU gave no qtest answer within {timeout} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"QEMU exited (status {self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, line: str, timeout: float = 20.0) -> str:
        assert self.proc.stdin
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            out = self._readline(timeout)
            if out.startswith(("OK", "FAIL", "ERR")):
                if not out.startswith("OK"):
                    raise RuntimeError(f"qtest {line!r}: {out.strip()}")
                return out[2:].strip()

    def enable_ecam(self) -> None:
        self.cmd(f"outl 0xcf8 {0x80000000 | PCIEXBAR + 4:#x}")
        self.cmd("outl 0xcfc 0x0")
        self.cmd(f"outl 0xcf8 {0x80000000 | PCIEXBAR:#x}")
        self.cmd(f"outl 0xcfc {ECAM_BASE | 1:#x}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()


class QtestConfigSpace(ConfigSpace):
    """Config space of bus 0 device ``dev`` through the ECAM window, over qtest."""

    _ops = {1: "b", 2: "w", 4: "l"}

    def __init__(self, qtest: Qtest, dev: int, fn: int = 0) -> None:
        self.qtest = qtest
        self.base = ECAM_BASE | dev << 15 | fn << 12
        self.name = f"qemu 00:{dev:02x}.{fn}"

    def _read(self, offset: int, width: int) -> int:
        return int(self.qtest.cmd(f"read{self._ops[width]} {self.base + offset:#x}"), 16)

    def _write(self, offset: int, width: int, value: int) -> None:
        self.qtest.cmd(f"write{self._ops[width]} {self.base + offset:#x} {value:#x}")
