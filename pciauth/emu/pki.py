"""The emulated device's certificates, and its SPDM responder.

No key ships in the repository: the first use generates a test PKI (root, intermediate, leaf
with the CMA name of the emulated device's identity) with :func:`pciauth.spdm.pki.init_pki` and
caches it under ``$XDG_CACHE_HOME/pciauth/emu-pki/`` (``~/.cache`` by default), one directory per
identity and algorithm, so that a recording made today replays against the same root tomorrow.
When the cache cannot be written, the PKI lives in a per-process temporary directory.

``pciauth auth emu`` trusts that root automatically (and says so); ``--trust-anchor`` overrides.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

_TEMP_DIRS: list[str] = []


@dataclass(frozen=True)
class EmuPki:
    directory: Path
    algorithm: str

    @property
    def root_path(self) -> Path:
        return self.directory / self.algorithm / "root.pem"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pciauth" / "emu-pki"


def _identity_key(identity: Any, algorithm: str) -> str:
    fields = (
        "vendor", "device", "class_code", "revision", "subsystem_vendor", "subsystem_device", "serial",
    )  # fmt: skip
    text = ",".join(f"{f}={getattr(identity, f, None)}" for f in fields) + f",alg={algorithm}"
    return f"{identity.vendor:04x}-{identity.device:04x}-{algorithm}-" + hashlib.sha256(
        text.encode()
    ).hexdigest()[:12]


def _complete(directory: Path, algorithm: str) -> bool:
    files = ["pki.json", f"{algorithm}/root.pem", f"{algorithm}/leaf.key", f"{algorithm}/chain.der"]
    return all((directory / f).is_file() for f in files)


def emu_pki(identity: Any, algorithm: str) -> EmuPki:
    """The cached PKI for ``identity`` and ``algorithm``, generated on first use."""
    from pciauth.spdm.pki import init_pki, normalize_algorithm

    algorithm = normalize_algorithm(algorithm)
    target = cache_root() / _identity_key(identity, algorithm)
    if _complete(target, algorithm):
        return EmuPki(target, algorithm)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once generate once
            if not _complete(target, algorithm):
                tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=target.parent))
                init_pki(tmp, [algorithm], identity=identity, force=True)
                if target.exists():
                    shutil.rmtree(target)
                os.rename(tmp, target)
        return EmuPki(target, algorithm)
    except OSError:
        tmp = tempfile.mkdtemp(prefix="pciauth-emu-pki-")
        _TEMP_DIRS.append(tmp)
        init_pki(tmp, [algorithm], identity=identity, force=True)
        return EmuPki(Path(tmp), algorithm)


@atexit.register
def _cleanup() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


def make_responder(device: Any, config: Any = None) -> Any:
    """The SPDM responder behind ``device``'s CMA mailbox (its PKI, knobs and adversary)."""
    from pciauth.spdm.responder import Responder, ResponderConfig

    if config is None:
        pki = device.pki
        config = ResponderConfig.from_pki(pki.directory, (pki.algorithm,))
        firmware = getattr(device, "firmware", None)
        if firmware:
            config = replace(config, measurements=firmware_measurements(firmware))
    if device.adversary:
        rows = tuple(r for r in device.adversary.split("+") if r)
        config = replace(config, adversary=tuple(config.adversary) + rows)
    return Responder(config)


def firmware_measurements(version: str) -> tuple:
    """The default measurements with firmware ``version`` (indices 2 and 5 change)."""
    from pciauth.spdm.responder import DEFAULT_MEASUREMENTS

    out = []
    for m in DEFAULT_MEASUREMENTS:
        if m.index == 2:
            m = m._replace(value=f"pciauth emulated device firmware {version}".encode())
        elif m.index == 5:
            m = m._replace(value=version.encode())
        out.append(m)
    return tuple(out)
