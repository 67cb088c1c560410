"""The --json output of a successful command: valid JSON, ``ok``, and the stable fields regression
scripts read. A field renamed or dropped fails here first."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from .clihelp import cli_env, run_cli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fakesysfs import ConfigImage, FakeSysfs

#: README "pciauth list --json fields".
LIST_KEYS = {"address", "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision", "driver",
             "driver_override", "iommu_group", "numa_node", "vfio_cdev", "doe_mailboxes", "doe_features",
             "config_note"}
#: ``show --json`` adds these (and has the same keys for the emulated device, null where n/a).
SHOW_KEYS = LIST_KEYS | {"capabilities", "extended_capabilities", "warnings", "serial", "emulated"}
#: docs/doe.md, ``pciauth auth --json``.
AUTH_KEYS = {"ok", "exit_code", "device", "transport", "mailbox", "target", "trust_anchors", "notes",
             "authenticated", "version", "capabilities", "algorithms", "slots", "checks", "measurements",
             "signatures", "session", "session_measurements", "error"}
RUN_KEYS = {"ok", "device", "emulated", "driver", "iommu", "seconds", "error", "steps"}
RUN_STEPS = ["bind", "authenticate", "threshold", "dma-private", "dma-shared", "enforcement",
             "restore-threshold", "restore"]
DMA_KEYS = {"ok", "device", "driver", "iommu", "threshold", "enforcement", "result", "error"}
DMA_RESULT_KEYS = {"ok", "kind", "window", "size", "iterations", "bytes_moved", "seconds", "throughput_mib_s",
                   "verify", "iovas", "checks", "error", "notes"}
THRESHOLD_KEYS = {"units", "bytes", "all_ones", "describe"}
IOVA_KEYS = {"ok", "device", "threshold", "enforcement", "private_window", "shared_window", "iova_ranges",
             "live_mappings", "changed", "previous", "notes"}
DOCTOR_KEYS = {"ok", "ready", "kernel", "findings", "error"}

#: name -> arguments; all run at once by the fixture below.
COMMANDS = {
    "list": ["list", "--json", "--sysfs-root", "{sysfs}"],
    "list-doe": ["list", "--doe", "--json", "--sysfs-root", "{sysfs}"],
    "show-pci": ["show", "01:00.0", "--json", "--sysfs-root", "{sysfs}"],
    "show-emu": ["show", "emu", "--json"],
    "show-hostile": ["show", "03:00.0", "--json", "--sysfs-root", "{hostile}"],
    "show-emu-knobs": ["show", "emu:1,cdat=1", "--json"],
    "doe-emu": ["doe", "emu:1", "--json"],
    "auth-emu": ["auth", "emu", "--json"],
    "run-emu": ["run", "emu", "--json"],
    "run-emu1-noauth": ["run", "emu:1", "--no-auth", "--size", "64K", "--json"],
    "dma-private": ["dma", "emu", "--size", "256K", "--iterations", "2", "--pattern", "random:7", "--json"],
    "dma-shared": ["dma", "emu", "--shared", "--threshold", "1G", "--size", "8193", "--json"],
    "iova": ["iova", "emu:2", "--json"],
    "doctor": ["doctor", "--json"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory, e2e_cache) -> dict:
    base = tmp_path_factory.mktemp("schemas")
    fs = FakeSysfs(str(base / "sys"))
    doe = ConfigImage(vendor=0x1b36, device=0x0010).add_cap(0x40, 0x10, bytes(0x3a)).add_ext_cap(0x100, 0x2E, 2)
    fs.add_device("0000:01:00.0", vendor=0x1b36, device=0x0010, driver="nvme", iommu_group=7, config=doe,
                  doe_features=["0001:00", "0001:01"])
    fs.add_device("0000:02:00.0", config=ConfigImage(size=256))
    hostile = FakeSysfs(str(base / "hostile"))
    loop = ConfigImage().add_cap(0x40, 0x01).set_std_next(0x40, 0x40).add_ext_cap(0x100, 0x2E, 2)
    hostile.add_device("0000:03:00.0", config=loop.set_ext_next(0x100, 0x100))

    def one(name):
        run_dir = base / f"run-{name}"
        run_dir.mkdir()
        args = [a.format(sysfs=fs.root, hostile=hostile.root) for a in COMMANDS[name]]
        return name, run_cli(cli_env(str(run_dir), e2e_cache), *args)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, COMMANDS))


def ok_json(results: dict, name: str) -> dict:
    r = results[name]
    assert r.code == 0 and "Traceback" not in r.err, r.describe()
    obj = r.json()
    assert obj["ok"] is True, r.describe()
    return obj


def test_list(results) -> None:
    devices = ok_json(results, "list")["devices"]
    assert [d["address"] for d in devices] == ["0000:01:00.0", "0000:02:00.0"]
    for d in devices:
        assert set(d) == LIST_KEYS, set(d) ^ LIST_KEYS
    d = devices[0]
    assert (d["vendor"], d["device"], d["class"], d["revision"]) == ("1b36", "0010", "010802", "01")
    assert d["driver"] == "nvme" and d["iommu_group"] == 7 and isinstance(d["numa_node"], int)
    assert d["doe_mailboxes"] == [{"offset": 0x100, "version": 2}]
    assert d["doe_features"] == ["0001:00", "0001:01"]
    assert devices[1]["config_note"] == "no extended config space (256 bytes)"
    only_doe = ok_json(results, "list-doe")["devices"]
    assert [d["address"] for d in only_doe] == ["0000:01:00.0"]


@pytest.mark.parametrize("name", ["show-pci", "show-emu", "show-emu-knobs"])
def test_show_has_the_same_keys_for_every_device(results, name) -> None:
    dev = ok_json(results, name)["device"]
    assert set(dev) == SHOW_KEYS, set(dev) ^ SHOW_KEYS
    for cap in dev["capabilities"]:
        assert {"id", "offset", "name", "details"} <= set(cap)
    for cap in dev["extended_capabilities"]:
        assert {"id", "offset", "name", "version", "details"} <= set(cap)
    assert any(c["id"] == 0x2E for c in dev["extended_capabilities"]), "every test device has a DOE mailbox"
    assert dev["emulated"] is (name != "show-pci")


def test_show_emu_knobs_apply(results) -> None:
    dev = ok_json(results, "show-emu-knobs")["device"]
    assert len(dev["doe_mailboxes"]) == 2 and dev["vendor"] == "1234"


def test_doe(results) -> None:
    obj = ok_json(results, "doe-emu")
    assert obj["device"] == "emu:1" and len(obj["mailboxes"]) == 2
    ids = {p["id"] for m in obj["mailboxes"] for p in m["protocols"]}
    assert {"0001:00", "0001:01"} <= ids


def test_auth(results) -> None:
    obj = ok_json(results, "auth-emu")
    assert set(obj) >= AUTH_KEYS, AUTH_KEYS - set(obj)
    assert obj["authenticated"] is True and obj["exit_code"] == 0 and obj["error"] is None
    assert obj["transport"] == "doe" and obj["mailbox"] == 0x100
    assert obj["measurements"] and obj["signatures"] and obj["slots"]


@pytest.mark.parametrize("name", ["run-emu", "run-emu1-noauth"])
def test_run(results, name) -> None:
    obj = ok_json(results, name)
    assert set(obj) == RUN_KEYS, set(obj) ^ RUN_KEYS
    assert obj["emulated"] is True and obj["driver"] == "emu" and obj["iommu"] == "emulated"
    assert obj["error"] is None
    assert [s["name"] for s in obj["steps"]] == RUN_STEPS
    for s in obj["steps"]:
        assert {"name", "status", "detail"} <= set(s) and s["status"] in ("passed", "skipped"), s
    expected_auth = "passed" if name == "run-emu" else "skipped"
    assert obj["steps"][1]["status"] == expected_auth


@pytest.mark.parametrize(("name", "window", "size"), [("dma-private", "private", 256 << 10),
                                                       ("dma-shared", "shared", 8193)])
def test_dma(results, name, window, size) -> None:
    obj = ok_json(results, name)
    assert set(obj) == DMA_KEYS, set(obj) ^ DMA_KEYS
    assert set(obj["result"]) == DMA_RESULT_KEYS, set(obj["result"]) ^ DMA_RESULT_KEYS
    assert set(obj["threshold"]) == THRESHOLD_KEYS
    res = obj["result"]
    assert res["window"] == window and res["size"] == size and res["verify"]["ok"] is True
    assert res["bytes_moved"] == size * res["iterations"] and obj["error"] is None
    if window == "shared":
        assert all(int(v, 16) >= 1 << 30 for v in res["iovas"].values()), res["iovas"]
    else:
        assert res["iterations"] == 2


def test_iova(results) -> None:
    obj = ok_json(results, "iova")
    assert set(obj) == IOVA_KEYS, set(obj) ^ IOVA_KEYS
    assert obj["threshold"]["all_ones"] is True and obj["changed"] is False


def test_doctor(results) -> None:
    r = results["doctor"]
    obj = r.json()
    assert set(obj) == DOCTOR_KEYS, set(obj) ^ DOCTOR_KEYS
    for f in obj["findings"]:
        assert set(f) == {"check", "status", "summary", "fix"} and f["status"] in ("ok", "info", "warn", "fail")
    failing = any(f["status"] == "fail" for f in obj["findings"])
    assert obj["ok"] is (not failing)
    if failing:  # this host lacks VFIO: exit 7, one line, the error object
        assert r.code == 7 and obj["error"]["exit_code"] == 7, r.describe()
        assert [line for line in r.err_lines if line.startswith("pciauth: error:")], r.describe()
    else:
        assert r.code == 0 and obj["error"] is None, r.describe()


def test_show_reports_a_capability_loop_instead_of_following_it(results) -> None:
    dev = ok_json(results, "show-hostile")["device"]
    assert [c["offset"] for c in dev["capabilities"]] == [0x40]
    assert [c["offset"] for c in dev["extended_capabilities"]] == [0x100]
    assert len(dev["warnings"]) == 2 and all("loops back" in w for w in dev["warnings"]), dev["warnings"]
