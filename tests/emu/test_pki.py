"""The emulated device's PKI: generated on first use, cached per identity, never shipped."""

from __future__ import annotations

import os

import pytest

from pciauth.emu import EmulatedDevice
from pciauth.emu.pki import cache_root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_generated_once_and_reused(cache):
    first = EmulatedDevice(0).pki
    assert str(first.root_path).startswith(str(cache_root()))
    mtime = os.stat(first.root_path).st_mtime_ns
    again = EmulatedDevice(0).pki
    assert again.root_path == first.root_path and os.stat(again.root_path).st_mtime_ns == mtime
    other = EmulatedDevice(1).pki  # another identity and algorithm: another PKI
    assert other.directory != first.directory
    assert oct(os.stat(first.directory / first.algorithm / "leaf.key").st_mode & 0o777) == "0o600"


def test_incomplete_cache_is_regenerated(cache):
    pki = EmulatedDevice(0).pki
    os.unlink(pki.directory / pki.algorithm / "leaf.key")
    again = EmulatedDevice(0).pki
    assert (again.directory / again.algorithm / "leaf.key").is_file()


def test_unwritable_cache_falls_back_to_a_temporary_pki(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    pki = EmulatedDevice(0).pki
    assert pki.root_path.is_file() and not str(pki.root_path).startswith(str(blocker))


def test_leaf_names_the_device(cache):
    from cryptography import x509

    from pciauth.spdm.certs import cma_name

    dev = EmulatedDevice(1)
    leaf = x509.load_pem_x509_certificate((dev.pki.directory / dev.pki.algorithm / "leaf.pem").read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = [n.value for n in san if isinstance(n, x509.OtherName)]
    assert any(cma_name(dev.identity).encode() in v for v in names)
