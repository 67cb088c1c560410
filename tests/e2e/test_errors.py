"""Bad input, missing devices and failing devices: one line on stderr, the README's exit code,
and with --json an ``error`` object with the stable keys. A table so new cases are one line."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from fakesysfs import FakeSysfs

from .clihelp import assert_json_error, assert_one_error_line, cli_env, run_cli

# (id, arguments, exit code, a piece of the error line). {empty} is an empty fake sysfs tree.
CASES = [
    # devices that do not exist, addresses that do not parse
    ("show-missing", ["show", "99:00.0", "--sysfs-root", "{empty}"], 3, "no PCI device 0000:99:00.0"),
    ("show-bad-function", ["show", "00:1f.9"], 2, "function 0x9 out of range"),
    ("show-bad-hex", ["show", "zz:zz.z"], 2, "invalid"),
    ("show-not-a-device", ["show", "nosuch"], 2, "'nosuch' is not a PCI address"),
    ("show-emu-unknown", ["show", "emu:99"], 3, "no emulated device emu:99 (emu:0..emu:2)"),
    ("list-bad-ids", ["list", "-d", "xyz"], 2, "invalid id selector"),
    ("auth-missing", ["auth", "99:00.0", "--sysfs-root", "{empty}"], 3, "no PCI device"),
    ("bind-missing", ["bind", "99:00.0", "--sysfs-root", "{empty}"], 3, "no PCI device"),
    # option values
    ("doe-raw-bad-hex", ["doe", "emu", "--raw", "0001:01", "zz"], 2, "not hex"),
    ("doe-raw-no-mailbox", ["doe", "emu", "--raw", "0001:99", "10840000"], 3, "no DOE mailbox supports"),
    ("doe-negative-timeout", ["doe", "emu", "--timeout", "-1"], 2, "timeout"),
    ("auth-no-target", ["auth"], 2, "exactly one of"),
    ("auth-bad-slot", ["auth", "emu", "--slot", "9"], 2, "--slot"),
    ("auth-bad-measurements", ["auth", "emu", "--measurements", "0,300"], 2, "measurement"),
    ("auth-garbage-anchor", ["auth", "emu", "--trust-anchor", "{garbage}"], 2, "neither PEM nor DER"),
    ("auth-missing-anchor", ["auth", "emu", "--trust-anchor", "/nonexistent/root.pem"], 3, "/nonexistent"),
    ("auth-empty-anchor-dir", ["auth", "emu", "--trust-anchor", "{emptydir}"], 2, "no certificate file"),
    ("auth-bad-socket", ["auth", "--socket", "nohost"], 2, "HOST:PORT"),
    ("auth-socket-port-range", ["auth", "--socket", "127.0.0.1:99999"], 2, "99999"),
    ("auth-bad-knob", ["auth", "emu,nosuch=1"], 2, "knob"),
    ("iova-bad-threshold", ["iova", "emu", "--threshold", "abc"], 2, "bad IOVA threshold"),
    ("iova-unaligned-threshold", ["iova", "emu", "--threshold", "3M"], 2, "multiple of 2 MiB"),
    ("iova-huge-threshold", ["iova", "emu", "--threshold", "99999999999T"], 2, "out of range"),
    ("dma-zero-size", ["dma", "emu", "--size", "0"], 2, "--size must be positive"),
    ("dma-bad-size", ["dma", "emu", "--size", "1x"], 2, "bad --size"),
    ("dma-huge-size", ["dma", "emu", "--size", "10000T"], 7, "TiB"),
    ("dma-zero-iterations", ["dma", "emu", "--iterations", "0"], 2, "--iterations must be positive"),
    ("dma-negative-timeout", ["dma", "emu", "--timeout", "-1"], 2, "--timeout must be positive"),
    ("dma-bad-pattern", ["dma", "emu", "--pattern", "nosuch"], 2, "unknown pattern"),
    ("dma-bad-pattern-hex", ["dma", "emu", "--pattern", "hex:zz"], 2, "bad hex"),
    ("dma-shared-window-empty", ["dma", "emu", "--shared"], 5, "no free shared IOVA space"),
    ("dma-unknown-driver", ["dma", "emu", "--driver", "nosuch"], 2, "no DMA driver called 'nosuch'"),
    ("dma-serial-not-nvme", ["dma", "emu", "--expect-serial", "SN1"], 2, "--expect-serial is for the nvme"),
    ("list-sysfs-root-missing", ["list", "--sysfs-root", "/nonexistent/sys"], 3, "not a directory"),
    ("dma-no-bind-not-on-vfio", ["dma", "01:00.0", "--no-bind", "--sysfs-root", "{one}"], 2, "not vfio-pci"),
    ("bind-no-vfio-driver", ["bind", "01:00.0", "--sysfs-root", "{one}"], 7, "vfio-pci driver is not loaded"),
    ("run-zero-size", ["run", "emu", "--size", "0"], 2, "--size must be positive"),
    ("run-threshold-zero", ["run", "emu", "--threshold", "0"], 2, "no private window"),
    ("run-threshold-all", ["run", "emu", "--threshold", "all"], 2, "no shared window"),
    ("run-missing", ["run", "99:00.0", "--sysfs-root", "{empty}"], 3, "no PCI device"),
    ("run-adversary", ["run", "emu,adversary=bad-signature"], 6, "authenticate: not authenticated"),
    ("run-doe-fault", ["run", "emu,fault=stuck_busy,fault_after=3"], 5, "stayed BUSY"),
    ("bind-emu", ["bind", "emu"], 2, "emulated device"),
    ("bind-zero-timeout", ["bind", "01:00.0", "--timeout", "0"], 2, "--timeout"),
    ("unbind-emu", ["unbind", "emu:1"], 2, "emulated device"),
    ("restore-emu", ["restore", "emu"], 2, "emulated device"),
    ("restore-bad-address", ["restore", "nosuch"], 2, "not a PCI address"),
    ("pki-show-missing", ["pki", "show", "/nonexistent"], 3, "no PKI here"),
    ("responder-no-pki", ["responder", "--pki", "{emptydir}", "--listen", "0"], 2, "no certificate slot"),
    ("responder-bad-port", ["responder", "--pki", "{emptydir}", "--listen", "99999"], 2, "port"),
]


def _make_files(base) -> dict:
    (base / "empty" / "bus" / "pci" / "devices").mkdir(parents=True, exist_ok=True)
    FakeSysfs(str(base / "one")).add_device("0000:01:00.0", driver="nvme", iommu_group=1)
    (base / "garbage.pem").write_text("garbage\n")
    (base / "emptydir").mkdir(exist_ok=True)
    return {"empty": str(base / "empty"), "garbage": str(base / "garbage.pem"), "emptydir": str(base / "emptydir"),
            "one": str(base / "one")}


@pytest.fixture
def files(tmp_path) -> dict:
    return _make_files(tmp_path)


def _args(args: list[str], files: dict) -> list[str]:
    return [a.format(**files) for a in args]


#: A sample of the table without --json: the same single line, nothing else on stderr.
HUMAN_SAMPLE = ["show-missing", "auth-missing-anchor", "dma-shared-window-empty", "run-adversary"]


@pytest.fixture(scope="module")
def table_results(tmp_path_factory, e2e_cache) -> dict:
    """Every case of the table with --json, and the human sample without, run four at a time
    (each is an independent process with its own run directory): the suite stays fast."""
    base = tmp_path_factory.mktemp("errors")
    files = _make_files(base)
    jobs = {}
    for name, args, _code, _text in CASES:
        jobs[(name, True)] = _args(args, files) + ["--json"]
        if name in HUMAN_SAMPLE:
            jobs[(name, False)] = _args(args, files)

    def one(key):
        run_dir = base / f"run-{key[0]}-{key[1]}"
        run_dir.mkdir()
        return key, run_cli(cli_env(str(run_dir), e2e_cache), *jobs[key])

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, jobs))


@pytest.mark.parametrize(("name", "code", "text"), [(c[0], c[2], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_failure_is_one_line_and_a_json_error(table_results, name, code, text) -> None:
    """With --json: the stderr line, the exit code and the error object with every stable key."""
    r = table_results[(name, True)]
    assert_one_error_line(r, code, text)
    assert_json_error(r, code)


@pytest.mark.parametrize("case", HUMAN_SAMPLE)
def test_failure_without_json(table_results, case) -> None:
    _, _args_, code, text = next(c for c in CASES if c[0] == case)
    r = table_results[(case, False)]
    assert_one_error_line(r, code, text)
    assert not r.out.lstrip().startswith("{"), r.describe()


def test_verbose_adds_the_traceback(cli, files) -> None:
    r = cli("show", "99:00.0", "--sysfs-root", files["empty"], "-v")
    assert r.code == 3 and "Traceback" in r.err and "pciauth: error: " in r.err, r.describe()


def test_port_nobody_listens_on(cli) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    r = cli("auth", "--socket", f"127.0.0.1:{port}", "--json")
    assert_one_error_line(r, 5, "cannot connect")
    assert_json_error(r, 5)


def test_unreadable_trust_anchor(cli, tmp_path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads mode-000 files")
    p = tmp_path / "root.pem"
    p.write_text("x")
    p.chmod(0)
    r = cli("auth", "emu", "--trust-anchor", str(p))
    assert r.code in (3, 4) and len(r.err_lines) == 1, r.describe()
