"""The platform knob (tsm_vtom) on a fake sysfs tree, and pciauth's own record of X."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pciauth.dma.iova import Threshold
from pciauth.dma.threshold import (
    clear_threshold,
    find_knob,
    guess_unit,
    load_threshold,
    run_dir,
    save_threshold,
)
from pciauth.errors import MalformedData, PermissionDeniedError


def knob_file(root, value: str, module="tsm_guest"):
    d = os.path.join(root, "module", module, "parameters")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tsm_vtom")
    with open(path, "w") as f:
        f.write(value)
    return path


def test_no_knob(tmp_path):
    assert find_knob(str(tmp_path)) is None


def test_knob_in_units(tmp_path):
    path = knob_file(str(tmp_path), "2147483647\n")
    k = find_knob(str(tmp_path))
    assert k.path == path and k.unit == "units" and k.read() == Threshold.ALL
    k.write(Threshold.parse("1G"))
    assert Path(path).read_text().strip() == "512"
    assert "2 MiB units" in k.describe()


def test_knob_in_bytes(tmp_path):
    path = knob_file(str(tmp_path), "0x80000000")
    k = find_knob(str(tmp_path))
    assert k.unit == "bytes" and k.read() == Threshold.parse("2G")
    k.write(Threshold.parse("1G"))
    assert int(Path(path).read_text()) == 1 << 30


def test_knob_unit_override(tmp_path, monkeypatch):
    knob_file(str(tmp_path), "0")
    assert find_knob(str(tmp_path)).unit == "units"
    assert find_knob(str(tmp_path), unit="bytes").unit == "bytes"
    monkeypatch.setenv("PCIAUTH_TSM_VTOM_UNIT", "bytes")
    assert find_knob(str(tmp_path)).unit_reason == "chosen by the user"


def test_guess_unit():
    assert guess_unit(1 << 40)[0] == "bytes"
    assert guess_unit(2 << 20)[0] == "bytes"
    assert guess_unit(512)[0] == "units"


@pytest.mark.parametrize("bad", ["", "abc", "1" * 100, "-5", "1 2"])
def test_malformed_knob(tmp_path, bad):
    knob_file(str(tmp_path), bad)
    with pytest.raises(MalformedData):
        find_knob(str(tmp_path))


def test_knob_write_refused_by_kernel(tmp_path):
    path = knob_file(str(tmp_path), "512")
    k = find_knob(str(tmp_path))
    os.chmod(path, 0o444)
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    with pytest.raises(PermissionDeniedError):
        k.write(Threshold.ALL)


def test_store_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(tmp_path / "run"))
    assert run_dir() == str(tmp_path / "run")
    assert load_threshold("emu:0") is None
    path = save_threshold("emu:0", Threshold.parse("1G"))
    assert path.startswith(str(tmp_path / "run")) and ":" not in os.path.basename(path)
    assert load_threshold("emu:0") == Threshold.parse("1G")
    clear_threshold("emu:0")
    clear_threshold("emu:0")
    assert load_threshold("emu:0") is None


@pytest.mark.parametrize("content", ["{", "[]", '{"units": "x"}', '{"units": -1}', '{"units": 4294967296}'])
def test_store_malformed(tmp_path, monkeypatch, content):
    monkeypatch.setenv("PCIAUTH_RUN_DIR", str(tmp_path))
    with open(tmp_path / "threshold-emu_0.json", "w") as f:
        f.write(content)
    with pytest.raises(MalformedData):
        load_threshold("emu:0")


def test_run_dir_fallback_for_non_root(monkeypatch):
    import pciauth.dma.threshold as th

    monkeypatch.delenv("PCIAUTH_RUN_DIR", raising=False)
    monkeypatch.setattr(th.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(th.os, "getuid", lambda: 1000)
    monkeypatch.setattr(th.os, "access", lambda path, mode: False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert run_dir() == "/run/user/1000/pciauth"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert run_dir() == "/tmp/pciauth-1000"
    monkeypatch.setattr(th.os, "geteuid", lambda: 0)
    assert run_dir() == "/run/pciauth"
