"""Nothing is left behind: bound devices, journals, listening sockets, a changed threshold.
And state that is meant to persist (a recorded threshold X) does, in the run directory only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vfio"))
from fake_driver_core import BDF, FakeDriverCore, FakeSysfs  # noqa: E402


def _run_dir_files(env: dict) -> set[str]:
    return set(os.listdir(env["PCIAUTH_RUN_DIR"]))


def _leftovers(env: dict) -> set[str]:
    """Files in the run directory other than (empty, flock-only) lock files."""
    return {n for n in _run_dir_files(env) if not n.endswith(".lock")}


def test_run_emu_leaves_no_journal_and_restores_x(cli) -> None:
    r = cli("run", "emu", "--threshold", "512M", "--size", "64K", "--no-auth", "--json")
    assert r.code == 0, r.describe()
    steps = {s["name"]: s for s in r.json()["steps"]}
    assert "0x20000000" in steps["threshold"]["detail"]
    assert _leftovers(cli.env) == set()
    after = cli("iova", "emu", "--json").json()
    assert after["threshold"]["all_ones"] is True  # X back to the default


def test_iova_threshold_is_recorded_then_used_by_dma(cli) -> None:
    r = cli("iova", "emu", "--threshold", "1G", "--json")
    obj = r.json()
    assert r.code == 0 and obj["changed"] is True and obj["previous"].startswith("all ones"), r.describe()
    assert obj["private_window"] == [0, 1 << 30] and obj["shared_window"][0] == 1 << 30
    assert any("recorded in" in n for n in obj["notes"])
    recorded = [n for n in _leftovers(cli.env) if n.startswith("threshold-")]
    assert len(recorded) == 1
    # A later process sees X = 1G: a shared DMA works without --threshold.
    r = cli("dma", "emu", "--shared", "--size", "4K", "--json")
    assert r.code == 0 and r.json()["threshold"]["units"] == 512, r.describe()
    # ... and a run restores it to the recorded 1G, not to the default.
    r = cli("run", "emu", "--threshold", "2G", "--no-auth", "--size", "4K", "--json")
    assert r.code == 0, r.describe()
    assert cli("iova", "emu", "--json").json()["threshold"]["units"] == 512
    assert cli("iova", "emu", "--threshold", "all").code == 0
    assert cli("iova", "emu", "--json").json()["threshold"]["all_ones"] is True


def test_ctrl_c_during_dma_exits_130_and_leaves_nothing(cli) -> None:
    p = subprocess.Popen([sys.executable, "-m", "pciauth", "dma", "emu", "--size", "256M", "--iterations", "1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env)
    try:
        time.sleep(2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, out, err)
    assert err.strip().splitlines() == ["pciauth: interrupted"], err
    assert _leftovers(cli.env) == set()


# -- binding on a fake sysfs tree (a thread plays the kernel's driver core) ----------------------

@pytest.fixture
def fake_tree(tmp_path, env):
    fs = FakeSysfs(str(tmp_path / "sys"))
    fs.add_device(BDF, driver="nvme", group=3)
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text("")
    (tmp_path / "proc" / "swaps").write_text("Filename Type Size Used Priority\n")
    env.update(PCIAUTH_SYSFS_ROOT=fs.root, PCIAUTH_PROC_ROOT=str(tmp_path / "proc"),
               PCIAUTH_DRIVERCTL_DIR=str(tmp_path / "driverctl.d"))
    with FakeDriverCore(fs):
        yield fs


BIND_KEYS = {"device", "driver", "original_driver", "original_override", "changed", "mode", "journal",
             "iommu_group", "vfio_cdev", "vfio_group_node", "warnings"}


def test_bind_unbind_restore_round_trip(cli, fake_tree) -> None:
    r = cli("bind", "01:00.0", "--json")
    assert r.code == 0, r.describe()
    b = r.json()["binding"]
    assert set(b) == BIND_KEYS and b["original_driver"] == "nvme" and b["changed"] is True
    assert fake_tree.driver(BDF) == "vfio-pci" and os.path.exists(b["journal"])

    # A second bind changes nothing and says who the device really belongs to.
    r = cli("bind", "01:00.0")
    assert r.code == 0 and "already bound" in r.out and "(was vfio-pci)" not in r.out, r.describe()
    assert "original driver: nvme" in r.err and "pciauth unbind" in r.err, r.describe()

    r = cli("unbind", BDF, "--json")
    assert r.code == 0 and r.json()["result"]["action"] == "restored", r.describe()
    assert fake_tree.driver(BDF) == "nvme" and fake_tree.override(BDF) is None
    assert _leftovers(cli.env) == set()

    r = cli("restore", "--json")
    assert r.code == 0 and r.json() == {"ok": True, "journal": cli.env["PCIAUTH_RUN_DIR"], "results": [], "error": None}


def test_restore_after_kill_9(cli, fake_tree) -> None:
    p = subprocess.Popen([sys.executable, "-m", "pciauth", "bind", BDF, "--hold"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cli.env)
    try:
        line = p.stdout.readline()
        assert "bound to vfio-pci (was nvme)" in line, line
        p.kill()
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert fake_tree.driver(BDF) == "vfio-pci"
    r = cli("restore", "--json")
    assert r.code == 0, r.describe()
    # The start-up replay or restore itself put nvme back; either way the journal is empty.
    assert fake_tree.driver(BDF) == "nvme" and _leftovers(cli.env) == set()


# -- the socket responder ------------------------------------------------------------------------

def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_responder_serves_survives_a_rude_client_and_closes_its_port(cli, tmp_path) -> None:
    pki = tmp_path / "pki"
    r = cli("pki", "init", str(pki), "--json")
    assert r.code == 0, r.describe()
    assert cli("pki", "init", str(pki)).code == 8  # refuses to overwrite
    shown = cli("pki", "show", str(pki), "--json").json()
    assert shown["ok"] is True and shown["algorithms"]
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "pciauth", "responder", "--pki", str(pki), "--listen",
                          f"127.0.0.1:{port}", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=cli.env)
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        socket.create_connection(("127.0.0.1", port)).close()  # connects and leaves at once
        anchors = sorted(str(x) for x in pki.glob("*/root.pem")) or [str(pki)]
        args = ["auth", "--socket", f"127.0.0.1:{port}", "--policy", "spdm-only", "--json"]
        for a in anchors:
            args += ["--trust-anchor", a]
        r = cli(*args)
        assert r.code == 0 and r.json()["authenticated"] is True, r.describe()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "Traceback" not in err, (p.returncode, err)
    assert json.loads(out)["ok"] is True
    assert not _listening(port)


def test_bind_failing_at_its_first_write_leaves_no_journal(cli, fake_tree) -> None:
    override = os.path.join(fake_tree.dev_path(BDF), "driver_override")
    os.unlink(override)
    os.mkdir(override)  # the write fails as it would for a non-root user (root ignores modes)
    r = cli("bind", "01:00.0")
    assert r.code in (4, 5) and "SetDriverOverride" in r.err, r.describe()
    assert fake_tree.driver(BDF) == "nvme" and _leftovers(cli.env) == set()


def _nobody_prefix(*paths: str) -> list[str] | None:
    """``setpriv`` to uid/gid 65534, if this interpreter, the repository and ``paths`` are usable
    by nobody (pytest's temporary directories often are not)."""
    if os.geteuid() != 0:
        return None
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        code = f"import os, pciauth.cli; [os.listdir(p) for p in {list(paths)!r}]"
        probe = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                               timeout=30, env={"PYTHONPATH": os.path.dirname(os.path.dirname(HERE)),
                                                "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def test_non_root_bind_is_a_permission_error_and_leaves_nothing(cli) -> None:
    base = tempfile.mkdtemp(prefix="pciauth-e2e-")  # pytest's own temp dirs are private to root
    try:
        os.chmod(base, 0o755)
        fs = FakeSysfs(os.path.join(base, "sys"))
        fs.add_device(BDF, driver="nvme", group=3)
        run_dir = os.path.join(base, "run")
        home = os.path.join(base, "home")
        for d in (run_dir, home):
            os.mkdir(d)
            os.chmod(d, 0o777)
        prefix = _nobody_prefix(fs.root, run_dir)
        if prefix is None:
            pytest.skip("needs root, setpriv, and an interpreter and repository that uid 65534 can use")
        env = dict(cli.env, HOME=home, XDG_CACHE_HOME=os.path.join(home, "cache"), PCIAUTH_RUN_DIR=run_dir,
                   PCIAUTH_SYSFS_ROOT=fs.root)
        with FakeDriverCore(fs):
            p = subprocess.run([*prefix, sys.executable, "-m", "pciauth", "bind", "01:00.0"], capture_output=True,
                               text=True, env=env, timeout=60)
        assert p.returncode == 4 and p.stderr.count("pciauth: error:") == 1, (p.returncode, p.stderr)
        assert fs.driver(BDF) == "nvme"
        assert [n for n in os.listdir(run_dir) if not n.endswith(".lock")] == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
