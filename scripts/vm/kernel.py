#!/usr/bin/env python3
"""Build (once) and cache the guest kernel for pciauth's VM test tier.

The kernel is Debian's ``linux-source-6.12`` configured as
``x86_64_defconfig`` + ``kernel/configs/kvm_guest.config`` + the fragment
``scripts/vm/kernel.config`` kept in this repository.  After ``make
olddefconfig`` every option the fragment asks for is checked: a Kconfig
dependency that silently dropped an option fails the build, naming it.

The image is cached under ``$PCIAUTH_CACHE`` (default ``~/.cache/pciauth``)
keyed by the source version and the hash of the fragment, so only the
first run pays for the build (about 8-10 minutes on 2 cores)::

    python3 scripts/vm/kernel.py            # build if needed, print the path
    python3 scripts/vm/kernel.py --path     # print the path, build nothing
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAGMENT = HERE / "kernel.config"
SOURCE_PACKAGE = "linux-source-6.12"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
# Bump when the way the image is built changes (not the fragment: it is hashed).
BUILDER_VERSION = "1"

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


class KernelBuildError(Exception):
    """The guest kernel could not be configured or built."""


def cache_root() -> Path:
    """Where images, sources and build trees live."""
    env = os.environ.get("PCIAUTH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pciauth"


def source_version() -> str:
    """Debian version of the kernel source package, e.g. ``6.12.95-1~bpo12+1``."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    if out:
        return out
    if SOURCE_TARBALL.exists():
        st = SOURCE_TARBALL.stat()
        return f"tarball-{st.st_size}-{int(st.st_mtime)}"
    raise KernelBuildError(
        f"{SOURCE_PACKAGE} is not installed (run scripts/vm/provision.sh as root)")


def parse_config(text: str) -> dict[str, str | None]:
    """Map CONFIG_ names to their value; ``None`` means "is not set"."""
    opts: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _SET.match(line)
        if m:
            opts[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            opts[m.group(1)] = None
    return opts


def check_config(requested: dict[str, str | None],
                 actual: dict[str, str | None]) -> list[str]:
    """Return one line per requested option that did not come out as asked."""
    wrong = []
    for name, want in requested.items():
        got = actual.get(name)
        if got != want:
            want_s = "not set" if want is None else want
            got_s = "not set" if got is None else got
            wrong.append(f"{name}: wanted {want_s}, got {got_s}")
    return wrong


def cache_key(version: str, fragment_text: str) -> str:
    h = hashlib.sha256()
    for part in (BUILDER_VERSION, version, fragment_text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class KernelCache:
    """The cached image for the current source version and fragment."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.fragment_text = FRAGMENT.read_text()
        self.version = source_version()
        self.key = cache_key(self.version, self.fragment_text)
        self.dir = self.root / "kernels" / self.key
        self.image = self.dir / "bzImage"

    def cached(self) -> bool:
        return self.image.is_file()


def _run(cmd: list[str], cwd: Path, log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    res = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise KernelBuildError(f"command failed ({res.returncode}): {' '.join(cmd)}"
                               f" (log: {log.name})")


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", version)


def _extract(root: Path, version: str) -> Path:
    """Unpack the kernel source once per source version; return its tree."""
    src_parent = root / "src" / _safe(version)
    tree = src_parent / "linux-source-6.12"
    if (tree / "Makefile").is_file():
        return tree
    if not SOURCE_TARBALL.exists():
        raise KernelBuildError(f"{SOURCE_TARBALL} missing (run scripts/vm/provision.sh)")
    tmp = src_parent.with_name(src_parent.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(["tar", "xf", str(SOURCE_TARBALL), "-C", str(tmp)], check=True)
    shutil.rmtree(src_parent, ignore_errors=True)
    tmp.rename(src_parent)
    return tree


def build(cache: KernelCache, jobs: int = 2, verbose: bool = False) -> Path:
    """Configure, check and build the kernel; store the image in the cache."""
    root = cache.root
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "kernel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time per cache
        if cache.cached():
            return cache.image
        tree = _extract(root, cache.version)
        # One build tree per source version: a changed fragment rebuilds only what it touches.
        out = root / "build" / _safe(cache.version)
        out.mkdir(parents=True, exist_ok=True)
        log_path = root / f"kernel-build-{cache.key}.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            nice = os.environ.get("PCIAUTH_KERNEL_NICE", "10")
            make = ["nice", "-n", nice, "make", f"O={out}"]
            _run(make + ["x86_64_defconfig"], tree, log)
            _run(make + ["kvm_guest.config"], tree, log)
            config = out / ".config"
            with open(config, "a") as f:
                f.write("\n# --- pciauth fragment ---\n" + cache.fragment_text)
            _run(make + ["olddefconfig"], tree, log)
            wrong = check_config(parse_config(cache.fragment_text),
                                 parse_config(config.read_text()))
            if wrong:
                raise KernelBuildError(
                    "kernel options did not come out as requested by "
                    f"{FRAGMENT.name}:\n  " + "\n  ".join(wrong))
            _run(make + [f"-j{jobs}", "bzImage"], tree, log)
        built = out / "arch" / "x86" / "boot" / "bzImage"
        cache.dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / ".config", cache.dir / "config")
        tmp = cache.dir / "bzImage.tmp"
        shutil.copy2(built, tmp)
        tmp.rename(cache.image)
        (cache.dir / "build-seconds").write_text(f"{time.monotonic() - started:.0f}\n")
        (cache.dir / "source-version").write_text(cache.version + "\n")
        return cache.image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", action="store_true",
                   help="print the cached image path; exit 1 if it is not built")
    p.add_argument("--jobs", type=int, default=2, help="make -j (default 2)")
    args = p.parse_args(argv)
    try:
        cache = KernelCache()
        if args.path:
            print(cache.image)
            return 0 if cache.cached() else 1
        if cache.cached():
            print(cache.image)
            return 0
        print(f"kernel.py: building guest kernel {cache.version} "
              f"(key {cache.key}); log in {cache.root}/kernel-build-{cache.key}.log",
              file=sys.stderr)
        t0 = time.monotonic()
        image = build(cache, jobs=args.jobs)
        print(f"kernel.py: built in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        print(image)
        return 0
    except KernelBuildError as e:
        print(f"kernel.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
