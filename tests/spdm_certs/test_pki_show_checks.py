"""``pciauth pki show DIR`` parses every chain and loads every key: a corrupt file is no "ok"."""

from __future__ import annotations

import shutil

import pytest

from pciauth.cli import main
from pciauth.errors import ExitCode


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki") / "pki"
    assert main(["pki", "init", str(d), "--algorithms", "ecdsa-p256"]) == 0
    return d


def test_intact_pki_shows(capsys, pki_dir):
    assert main(["pki", "show", str(pki_dir)]) == 0


@pytest.mark.parametrize("name", ["leaf.key", "chain.der", "root.key"])
def test_garbage_file_fails_naming_it(capsys, pki_dir, tmp_path, name):
    copy = tmp_path / "copy"
    shutil.copytree(pki_dir, copy)
    (copy / "ecdsa-p256" / name).write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["pki", "show", str(copy)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert name in err and err.startswith("pciauth: error: "), err
