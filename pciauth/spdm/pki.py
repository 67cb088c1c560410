"""Test PKIs for SPDM: a root CA, an intermediate CA and a device leaf per signature algorithm.

``pciauth pki init DIR`` calls :func:`init_pki`; no key ships in the repository. Layout::

    DIR/pki.json                     what was generated (algorithms, identity, CMA name, files)
    DIR/<alg>/root.pem  root.key     self-signed root CA (pathLen 1)
    DIR/<alg>/inter.pem inter.key    intermediate CA (pathLen 0)
    DIR/<alg>/leaf.pem  leaf.key     device leaf with the CMA Subject Alternative Name
    DIR/<alg>/chain.der              the DER certificates root, inter, leaf concatenated

Keys are PKCS#8 PEM, mode 0600. ``<alg>`` is one of :data:`ALGORITHMS`. The responder loads a
slot with :func:`load_slot`, which also takes any vendor's material (PEM or DER chain files in any
order, PEM or DER keys). :func:`make_certificate` is the one certificate builder; tests use it to
make broken chains (no CA flag, wrong key usage, expired, impostor roots).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from pciauth.errors import NotFoundError, RefusedError, UsageError
from pciauth.spdm.certs import (
    CMA_OID,
    DeviceIdentity,
    TrustAnchorError,
    cma_name,
    issue_problem,
    load_certificates,
    read_small_file,
)


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """How to make a key of one PKI algorithm and which hash signs its certificates."""

    name: str
    kind: str  # "ec" or "rsa"
    param: Any  # curve class or RSA modulus bits
    cert_hash: type[hashes.HashAlgorithm]

    def generate(self) -> Any:
        if self.kind == "ec":
            return ec.generate_private_key(self.param())
        return rsa.generate_private_key(public_exponent=65537, key_size=self.param)


#: PKI algorithms (one key type each; an RSA key serves both RSASSA and RSAPSS in SPDM).
ALGORITHMS: dict[str, KeySpec] = {
    "ecdsa-p256": KeySpec("ecdsa-p256", "ec", ec.SECP256R1, hashes.SHA256),
    "ecdsa-p384": KeySpec("ecdsa-p384", "ec", ec.SECP384R1, hashes.SHA384),
    "ecdsa-p521": KeySpec("ecdsa-p521", "ec", ec.SECP521R1, hashes.SHA512),
    "rsa2048": KeySpec("rsa2048", "rsa", 2048, hashes.SHA256),
    "rsa3072": KeySpec("rsa3072", "rsa", 3072, hashes.SHA384),
    "rsa4096": KeySpec("rsa4096", "rsa", 4096, hashes.SHA512),
}
#: Generated when no ``--algorithms`` is given (RSA key generation is slow).
DEFAULT_ALGORITHMS = ("ecdsa-p256", "ecdsa-p384")
_ALIASES = {
    "p256": "ecdsa-p256", "secp256r1": "ecdsa-p256", "ecc256": "ecdsa-p256",
    "p384": "ecdsa-p384", "secp384r1": "ecdsa-p384", "ecc384": "ecdsa-p384",
    "p521": "ecdsa-p521", "secp521r1": "ecdsa-p521", "ecc521": "ecdsa-p521",
    "rsassa2048": "rsa2048", "rsapss2048": "rsa2048", "rsa-2048": "rsa2048",
    "rsassa3072": "rsa3072", "rsapss3072": "rsa3072", "rsa-3072": "rsa3072",
    "rsassa4096": "rsa4096", "rsapss4096": "rsa4096", "rsa-4096": "rsa4096",
}  # fmt: skip

#: The identity the built-in emulated device reports unless told otherwise (its CMA name).
DEFAULT_IDENTITY = DeviceIdentity(
    vendor=0x1234,
    device=0xA11E,
    class_code=0x120000,
    revision=0x01,
    subsystem_vendor=0x1234,
    subsystem_device=0x0001,
    serial=None,
)

CHAIN_FILES = ("root", "inter", "leaf")
PKI_JSON = "pki.json"
_VALID_DAYS = 20 * 365


def normalize_algorithm(name: str) -> str:
    """Canonical PKI algorithm name for ``name`` (accepts SPDM names like ``rsapss3072``)."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise UsageError(f"unknown PKI algorithm {name!r}; known: {', '.join(ALGORITHMS)} or 'all'")
    return key


def parse_algorithms(names: str | Iterable[str] | None) -> list[str]:
    """``None`` -> defaults, ``"all"`` -> every algorithm, else a comma list or iterable."""
    if names is None:
        return list(DEFAULT_ALGORITHMS)
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [i for i in (s.strip() for s in items) if i]
    if any(i.lower() == "all" for i in items):
        return list(ALGORITHMS)
    out: list[str] = []
    for i in items:
        n = normalize_algorithm(i)
        if n not in out:
            out.append(n)
    if not out:
        raise UsageError("no PKI algorithm given")
    return out


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pciauth test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def cma_san(name: str) -> x509.SubjectAlternativeName:
    """The CMA otherName (OID 2.23.147, UTF8String value)."""
    raw = name.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise UsageError("CMA name too long")
    if len(raw) < 0x80:
        der = bytes([0x0C, len(raw)]) + raw
    elif len(raw) < 0x100:
        der = bytes([0x0C, 0x81, len(raw)]) + raw
    else:
        der = bytes([0x0C, 0x82]) + len(raw).to_bytes(2, "big") + raw
    return x509.SubjectAlternativeName([x509.OtherName(CMA_OID, der)])


def make_certificate(
    subject: x509.Name,
    public_key: Any,
    issuer_key: Any,
    *,
    issuer: x509.Name | None = None,
    issuer_public_key: Any = None,
    ca: bool | None,
    path_length: int | None = None,
    key_usage: str | None = "auto",
    san: x509.SubjectAlternativeName | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    hash_cls: type[hashes.HashAlgorithm] = hashes.SHA256,
    subject_key_id: bytes | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    rsa_pss: bool = False,
) -> x509.Certificate:
    """Build and sign one certificate.

    ``issuer``/``issuer_key`` default to self-signed. ``ca=None`` omits basicConstraints.
    ``key_usage``: "auto" (keyCertSign+cRLSign for a CA, digitalSignature for a leaf), "ca",
    "leaf", "none" (no extension) or None (same as "none"). ``subject_key_id`` overrides the SKI
    (tests make impostor roots with it). ``rsa_pss`` signs with RSASSA-PSS instead of PKCS#1 v1.5.
    """
    now = datetime.datetime.now(datetime.UTC)
    issuer = issuer or subject
    issuer_public_key = issuer_public_key or (public_key if issuer_key is None else issuer_key.public_key())
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=_VALID_DAYS))
    )
    if ca is not None:
        b = b.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    usage = ("ca" if ca else "leaf") if key_usage == "auto" else (key_usage or "none")
    if usage != "none":
        is_ca = usage == "ca"
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=is_ca, crl_sign=is_ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    ski = (
        x509.SubjectKeyIdentifier(subject_key_id)
        if subject_key_id
        else x509.SubjectKeyIdentifier.from_public_key(public_key)
    )
    b = b.add_extension(ski, critical=False)
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    if san is not None:
        b = b.add_extension(san, critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    if rsa_pss and isinstance(issuer_key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=padding.PSS.DIGEST_LENGTH)
        return b.sign(issuer_key, hash_cls(), rsa_padding=pss)
    return b.sign(issuer_key, hash_cls())


@dataclasses.dataclass
class PkiSet:
    """One algorithm's root, intermediate and leaf, with their private keys."""

    algorithm: str
    root: x509.Certificate
    root_key: Any
    inter: x509.Certificate
    inter_key: Any
    leaf: x509.Certificate
    leaf_key: Any

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [self.root, self.inter, self.leaf]

    @property
    def der_chain(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self.certificates]


def generate_set(algorithm: str, identity: Any = DEFAULT_IDENTITY, *, leaf_san: str | None = None) -> PkiSet:
    """Generate a root, intermediate and CMA leaf for one algorithm (in memory)."""
    spec = ALGORITHMS[normalize_algorithm(algorithm)]
    h = spec.cert_hash
    root_key, inter_key, leaf_key = spec.generate(), spec.generate(), spec.generate()
    root_name = _name(f"pciauth test root CA ({spec.name})")
    inter_name = _name(f"pciauth test intermediate CA ({spec.name})")
    root = make_certificate(root_name, root_key.public_key(), root_key, ca=True, path_length=1, hash_cls=h)
    inter = make_certificate(
        inter_name, inter_key.public_key(), root_key, issuer=root_name, ca=True, path_length=0, hash_cls=h
    )
    name = leaf_san if leaf_san is not None else cma_name(identity)
    leaf = make_certificate(
        _name(f"pciauth test device ({spec.name})"),
        leaf_key.public_key(),
        inter_key,
        issuer=inter_name,
        ca=False,
        san=cma_san(name),
        hash_cls=h,
    )
    return PkiSet(spec.name, root, root_key, inter, inter_key, leaf, leaf_key)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def _identity_dict(identity: Any) -> dict:
    return {f: getattr(identity, f, None) for f in (
        "vendor", "device", "class_code", "revision", "subsystem_vendor", "subsystem_device", "serial")}  # fmt: skip


def write_set(directory: Path, pki: PkiSet) -> dict:
    """Write one set's files under ``directory``; returns its pki.json entry."""
    directory.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {}
    for label, cert, key in (("root", pki.root, pki.root_key), ("inter", pki.inter, pki.inter_key),
                             ("leaf", pki.leaf, pki.leaf_key)):  # fmt: skip
        _write(directory / f"{label}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(directory / f"{label}.key", _key_pem(key), 0o600)
        entry[label] = {"cert": f"{directory.name}/{label}.pem", "key": f"{directory.name}/{label}.key",
                        "subject": cert.subject.rfc4514_string(),
                        "sha256": cert.fingerprint(hashes.SHA256()).hex()}  # fmt: skip
    _write(directory / "chain.der", b"".join(pki.der_chain), 0o644)
    entry["chain"] = f"{directory.name}/chain.der"
    return entry


def init_pki(
    directory: str | os.PathLike,
    algorithms: str | Iterable[str] | None = None,
    *,
    identity: Any = DEFAULT_IDENTITY,
    force: bool = False,
    progress: Any = None,
) -> dict:
    """Generate a test PKI under ``directory`` (see the module doc); returns the pki.json content.

    Refuses (:class:`RefusedError`) to overwrite an existing PKI unless ``force``.
    ``progress(alg)`` is called before each algorithm (RSA 4096 takes seconds).
    """
    root = Path(directory)
    algs = parse_algorithms(algorithms)
    existing = [p for p in [root / PKI_JSON, *(root / a for a in algs)] if p.exists()]
    if existing and not force:
        raise RefusedError(
            f"{root}: a PKI is already there ({existing[0].name}); not overwriting",
            path=str(root),
            hint="use --force to replace it",
        )
    root.mkdir(parents=True, exist_ok=True)
    desc: dict[str, Any] = {
        "format": 1,
        "identity": _identity_dict(identity),
        "cma_name": cma_name(identity),
        "algorithms": {},
    }
    for alg in algs:
        if progress:
            progress(alg)
        entry = write_set(root / alg, generate_set(alg, identity))
        spec = ALGORITHMS[alg]
        entry["key_type"] = spec.kind
        entry["cert_hash"] = spec.cert_hash.name
        desc["algorithms"][alg] = entry
    _write(root / PKI_JSON, (json.dumps(desc, indent=2) + "\n").encode(), 0o644)
    return desc


def read_pki_json(directory: str | os.PathLike) -> dict:
    path = Path(directory) / PKI_JSON
    if not path.exists():
        raise NotFoundError(f"{path}: no PKI here", path=str(path), hint="run `pciauth pki init DIR` first")
    try:
        desc = json.loads(read_small_file(path, "PKI description"))
    except (ValueError, RecursionError) as e:
        raise TrustAnchorError(f"{path}: unreadable PKI description: {e}", path=str(path))
    if not isinstance(desc, dict):
        raise TrustAnchorError(f"{path}: a PKI description is a JSON object", path=str(path))
    return desc


def available_algorithms(directory: str | os.PathLike) -> list[str]:
    """Algorithms with a slot directory under ``directory`` (pki.json optional)."""
    root = Path(directory)
    return [a for a in ALGORITHMS if (root / a).is_dir()]


# --------------------------------------------------------------------------------------------
# Loading slots (any vendor's material)
# --------------------------------------------------------------------------------------------


def order_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Order certificates root first, leaf last, whatever order a file lists them in."""
    if len(certs) <= 1:
        return list(certs)
    parents: dict[int, int] = {}
    for i, c in enumerate(certs):
        for j, p in enumerate(certs):
            if i != j and issue_problem(c, p) is None:
                parents[i] = j
                break
    issuers = set(parents.values())
    leaves = [i for i in range(len(certs)) if i not in issuers]
    if len(leaves) != 1:
        raise TrustAnchorError(f"the certificates do not form one chain ({len(leaves)} candidate leaves)")
    out, i, seen = [], leaves[0], set()
    while i not in seen:
        seen.add(i)
        out.append(certs[i])
        if i not in parents:
            break
        i = parents[i]
    if len(out) != len(certs):
        raise TrustAnchorError(f"the certificates do not form one chain ({len(certs) - len(out)} unlinked)")
    return out[::-1]


def load_private_key(path: str | os.PathLike) -> Any:
    """A private key from PEM (PKCS#8 or traditional) or DER, unencrypted."""
    p = Path(path)
    data = read_small_file(p, "key file")
    loader = (
        serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
    )
    try:
        return loader(data, password=None)
    except (ValueError, TypeError) as e:
        raise TrustAnchorError(f"{p}: not an unencrypted private key: {e}", path=str(p))


def load_slot_files(
    chain_files: Sequence[str | os.PathLike], key_file: str | os.PathLike
) -> tuple[list[bytes], Any]:
    """(DER certificates root..leaf, leaf private key) from any PEM/DER files."""
    certs: list[x509.Certificate] = []
    for f in chain_files:
        certs.extend(load_certificates(f))
    ordered = order_chain(certs)
    key = load_private_key(key_file)
    leaf_spki = (
        ordered[-1]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key_spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leaf_spki != key_spki:
        raise TrustAnchorError(
            f"{key_file}: this private key does not belong to the leaf certificate", path=str(key_file)
        )
    return [c.public_bytes(serialization.Encoding.DER) for c in ordered], key


def load_slot(directory: str | os.PathLike, algorithm: str) -> tuple[list[bytes], Any]:
    """The chain (DER, root first) and leaf key of one algorithm of a PKI directory.

    Looks in ``DIR/<alg>/`` (or ``DIR`` itself when it holds the files) for ``chain.der`` /
    ``chain.pem``, else ``root``/``inter``/``leaf`` with ``.pem``/``.der``/``.crt``; the key is
    ``leaf.key`` (PEM or DER) or ``leaf.key.der``.
    """
    base = Path(directory)
    alg = normalize_algorithm(algorithm)
    slot_dir = base / alg if (base / alg).is_dir() else base
    chain = next((slot_dir / n for n in ("chain.der", "chain.pem") if (slot_dir / n).is_file()), None)
    if chain is not None:
        files: list[Path] = [chain]
    else:
        files = []
        for label in CHAIN_FILES:
            f = next(
                (
                    slot_dir / f"{label}{s}"
                    for s in (".pem", ".der", ".crt", ".cer")
                    if (slot_dir / f"{label}{s}").is_file()
                ),
                None,
            )
            if f is not None:
                files.append(f)
        if not any(f.stem == "leaf" for f in files):
            raise NotFoundError(
                f"{slot_dir}: no chain.der, chain.pem or leaf certificate for {alg}",
                path=str(slot_dir),
                hint=f"run `pciauth pki init {base} --algorithms {alg}`",
            )
    key = next(
        (slot_dir / n for n in ("leaf.key", "leaf.key.der", "leaf.key.pem") if (slot_dir / n).is_file()), None
    )
    if key is None:
        raise NotFoundError(f"{slot_dir}: no leaf.key for {alg}", path=str(slot_dir))
    return load_slot_files(files, key)
