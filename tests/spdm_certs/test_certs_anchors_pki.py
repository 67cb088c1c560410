"""Trust anchors from files and directories; the test PKI (init, layout, loading, CLI)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from certhelp import IDENTITY, build, der
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pciauth.cli import main
from pciauth.errors import NotFoundError, PermissionDeniedError, RefusedError, UsageError
from pciauth.spdm import pki
from pciauth.spdm.certs import (
    TrustAnchorError,
    build_cert_chain,
    cma_names_of,
    load_trust_anchors,
    parse_cert_chain,
    verify_chain,
)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- trust anchors ---


def test_pem_directory_with_bundles(tmp_path):
    a, b = build(cn="a"), build(cn="b")
    (tmp_path / "a.pem").write_bytes(pem(a.root))
    (tmp_path / "bundle.crt").write_bytes(pem(b.root) + pem(b.inter))
    (tmp_path / "notes.txt").write_text("ignored: not a certificate suffix")
    (tmp_path / "root.key").write_text("ignored too")
    anchors = load_trust_anchors(tmp_path)
    assert [c.subject for c in anchors] == [a.root.subject, b.root.subject, b.inter.subject]


def test_der_file_and_concatenated_der(tmp_path):
    b = build()
    (tmp_path / "root.der").write_bytes(der(b.root))
    (tmp_path / "chain.der").write_bytes(b"".join(der(c) for c in b.certs))
    assert load_trust_anchors(tmp_path / "root.der") == [b.root]
    assert load_trust_anchors([tmp_path / "chain.der"]) == b.certs
    assert load_trust_anchors([str(tmp_path / "root.der"), tmp_path / "chain.der"])[0] == b.root


def test_garbage_file_names_the_file(tmp_path):
    f = tmp_path / "junk.pem"
    f.write_bytes(b"\x01\x02 this is not a certificate")
    with pytest.raises(TrustAnchorError, match="junk.pem") as e:
        load_trust_anchors(f)
    assert e.value.path == str(f)
    assert isinstance(e.value, UsageError)


def test_garbage_in_directory_names_the_file(tmp_path):
    b = build()
    (tmp_path / "good.pem").write_bytes(pem(b.root))
    (tmp_path / "zbad.der").write_bytes(der(b.root)[:-10])
    with pytest.raises(TrustAnchorError, match="zbad.der"):
        load_trust_anchors(tmp_path)


def test_private_key_is_not_an_anchor(tmp_path):
    b = build()
    f = tmp_path / "root.pem"
    f.write_bytes(
        b.root_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(TrustAnchorError, match="without a CERTIFICATE block"):
        load_trust_anchors(f)


def test_broken_pem_certificate(tmp_path):
    f = tmp_path / "broken.pem"
    f.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TrustAnchorError, match="broken.pem"):
        load_trust_anchors(f)


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(NotFoundError, match="nope.pem"):
        load_trust_anchors(tmp_path / "nope.pem")
    with pytest.raises(TrustAnchorError, match="no certificate file"):
        load_trust_anchors(tmp_path)


def test_unreadable_file(tmp_path, monkeypatch):
    """EACCES (simulated: the tests run as root, who reads anything) is a permission error."""
    import pciauth.spdm.certs as certs_mod

    f = tmp_path / "root.pem"
    f.write_bytes(b"x")
    real_open = os.open

    def denied(path, *a, **kw):
        if str(path) == str(f):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(certs_mod.os, "open", denied)
    with pytest.raises(PermissionDeniedError, match="root.pem"):
        load_trust_anchors(f)


def test_devices_fifos_and_huge_files_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "anchor.pem"
    os.mkfifo(fifo)  # nobody writes: a blocking open would hang forever
    with pytest.raises(TrustAnchorError, match="not a regular file"):
        load_trust_anchors(fifo)
    with pytest.raises(TrustAnchorError, match="not a regular file"):
        load_trust_anchors("/dev/zero")
    big = tmp_path / "big.der"
    with open(big, "wb") as fh:
        fh.truncate(64 << 20)  # sparse
    with pytest.raises(TrustAnchorError, match="larger than"):
        load_trust_anchors(big)
    with pytest.raises(TrustAnchorError, match="not a regular file"):
        pki.load_private_key("/dev/zero")


def test_directory_given_as_a_file_entry_and_unreadable_dir_entries(tmp_path):
    (tmp_path / "sub.pem").mkdir()  # a directory with a certificate suffix is not a file
    b = build()
    (tmp_path / "ok.pem").write_bytes(pem(b.root))
    assert load_trust_anchors(tmp_path) == [b.root]


# --- PKI ---


def test_init_pki_layout_modes_and_description(tmp_path):
    d = tmp_path / "pki"
    desc = pki.init_pki(d)
    assert list(desc["algorithms"]) == list(pki.DEFAULT_ALGORITHMS)
    assert json.loads((d / "pki.json").read_text()) == desc
    assert desc["cma_name"] == "Vendor=1234:Device=a11e:CC=120000:REV=01:SSVID=1234:SSID=0001"
    for alg in pki.DEFAULT_ALGORITHMS:
        files = {p.name for p in (d / alg).iterdir()}
        assert files == {
            "root.pem",
            "root.key",
            "inter.pem",
            "inter.key",
            "leaf.pem",
            "leaf.key",
            "chain.der",
        }
        for k in ("root.key", "inter.key", "leaf.key"):
            assert stat.S_IMODE((d / alg / k).stat().st_mode) == 0o600
        ders, leaf_key = pki.load_slot(d, alg)
        assert len(ders) == 3
        chain = parse_cert_chain(build_cert_chain(ders, 0x2), 0x2)
        anchors = load_trust_anchors(d / alg / "root.pem")
        assert verify_chain(chain, anchors, identity=IDENTITY).ok
        assert leaf_key.public_key().public_numbers() == chain.leaf.public_key().public_numbers()


def test_init_refuses_to_overwrite(tmp_path):
    pki.init_pki(tmp_path, ["ecdsa-p256"])
    before = (tmp_path / "ecdsa-p256" / "leaf.pem").read_bytes()
    with pytest.raises(RefusedError, match="not overwriting"):
        pki.init_pki(tmp_path, ["ecdsa-p256"])
    assert (tmp_path / "ecdsa-p256" / "leaf.pem").read_bytes() == before
    pki.init_pki(tmp_path, ["ecdsa-p256"], force=True)
    assert (tmp_path / "ecdsa-p256" / "leaf.pem").read_bytes() != before


def test_parse_algorithms():
    assert pki.parse_algorithms(None) == list(pki.DEFAULT_ALGORITHMS)
    assert pki.parse_algorithms("all") == list(pki.ALGORITHMS)
    assert pki.parse_algorithms("p384, rsapss3072,ecdsa-p384") == ["ecdsa-p384", "rsa3072"]
    with pytest.raises(UsageError, match="unknown PKI algorithm"):
        pki.parse_algorithms("dsa1024")


def test_load_slot_from_vendor_files_in_any_order(tmp_path):
    s = pki.generate_set("ecdsa-p256")
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    # a leaf-first PEM bundle and a DER PKCS#8 key
    (vendor / "chain.pem").write_bytes(pem(s.leaf) + pem(s.root) + pem(s.inter))
    (vendor / "leaf.key").write_bytes(
        s.leaf_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ders, key = pki.load_slot(vendor, "ecdsa-p256")
    assert ders == s.der_chain
    assert key.public_key().public_numbers() == s.leaf_key.public_key().public_numbers()


def test_load_slot_separate_der_files_and_traditional_key(tmp_path):
    s = pki.generate_set("ecdsa-p384")
    d = tmp_path / "ecdsa-p384"
    d.mkdir()
    for label, cert in (("root", s.root), ("inter", s.inter), ("leaf", s.leaf)):
        (d / f"{label}.der").write_bytes(der(cert))
    (d / "leaf.key").write_bytes(
        s.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    ders, _ = pki.load_slot(tmp_path, "p384")
    assert ders == s.der_chain


def test_load_slot_key_mismatch_and_missing(tmp_path):
    s, other = pki.generate_set("ecdsa-p256"), pki.generate_set("ecdsa-p256")
    pki.write_set(tmp_path / "ecdsa-p256", s)
    (tmp_path / "ecdsa-p256" / "leaf.key").write_bytes(
        other.leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(TrustAnchorError, match="does not belong to the leaf"):
        pki.load_slot(tmp_path, "ecdsa-p256")
    with pytest.raises(NotFoundError, match="ecdsa-p521"):
        pki.load_slot(tmp_path / "nothing", "ecdsa-p521")


def test_order_chain_rejects_two_chains():
    a, b = build(cn="a"), build(cn="b")
    with pytest.raises(TrustAnchorError, match="one chain"):
        pki.order_chain([a.root, a.leaf, b.leaf])


def test_cli_pki_init_with_ids(tmp_path, capsys):
    d = tmp_path / "p"
    rc = main(["pki", "init", str(d), "--algorithms", "ecdsa-p521", "--vendor", "8086", "--device", "0d5c",
               "--class", "010802", "--revision", "2", "--serial", "1122334455667788"])  # fmt: skip
    assert rc == 0
    leaf = x509.load_pem_x509_certificate((d / "ecdsa-p521" / "leaf.pem").read_bytes())
    assert cma_names_of(leaf) == [
        "Vendor=8086:Device=0d5c:CC=010802:REV=02:SSVID=1234:SSID=0001:1122334455667788"
    ]
    assert main(["pki", "init", str(d), "--algorithms", "ecdsa-p521"]) == 8  # refused
    assert main(["pki", "show", str(d), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["algorithms"]["ecdsa-p521"]["chain"] == "ecdsa-p521/chain.der"


def test_cli_pki_bad_options(tmp_path):
    assert main(["pki", "init", str(tmp_path / "x"), "--vendor", "1ffff"]) == 2
    assert main(["pki", "init", str(tmp_path / "x"), "--ssvid", "1"]) == 2
    assert main(["pki", "init", str(tmp_path / "x"), "--algorithms", "dsa"]) == 2
    assert main(["pki"]) == 2
    assert not (tmp_path / "x").exists()
