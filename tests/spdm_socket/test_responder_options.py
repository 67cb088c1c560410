"""``pciauth responder`` refuses bad options with the documented exit codes, before serving."""

from __future__ import annotations

import pytest

from pciauth.cli import main
from pciauth.errors import ExitCode


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki") / "pki"
    assert main(["pki", "init", str(d), "--algorithms", "ecdsa-p256"]) == 0
    return d


def test_missing_pki_directory_is_not_found(capsys, tmp_path):
    assert main(["responder", "--pki", str(tmp_path / "nosuch"), "--listen", "0"]) == ExitCode.NOT_FOUND
    assert "nosuch" in capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "-1"])
def test_max_connections_must_be_positive(capsys, pki_dir, n):
    assert main(["responder", "--pki", str(pki_dir), "--max-connections", n, "--listen", "0"]) == ExitCode.USAGE
    assert "--max-connections" in capsys.readouterr().err


def test_unknown_adversary_is_reported_before_the_pki(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["responder", "--pki", str(empty), "--adversary", "nosuch"]) == ExitCode.USAGE
    assert "nosuch" in capsys.readouterr().err


def test_pcap_in_a_missing_directory_is_not_found(capsys, pki_dir, tmp_path):
    code = main(["responder", "--pki", str(pki_dir), "--pcap", str(tmp_path / "no" / "x.pcap"), "--listen", "0"])
    assert code == ExitCode.NOT_FOUND
    assert "x.pcap" in capsys.readouterr().err
