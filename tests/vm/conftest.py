"""The real-kernel tier: pciauth inside QEMU guests (see docs/vm.md).

Every test here carries the ``vm`` marker.  The session fixture ``vm`` checks
that QEMU and the cached guest kernel are there; when they are not, the tests
skip with the reason, unless ``PCIAUTH_VM_REQUIRED=1`` (set by CI), which turns
the skip into a failure: CI must never pass this tier by skipping it.

Build what is missing with ``bash scripts/vm/ci.sh`` (provision, kernel build,
then this tier) or ``python3 scripts/vm/kernel.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts" / "vm"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as vmrun  # noqa: E402


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.vm)


def _missing() -> str | None:
    if not vmrun.qemu_available():
        return f"{vmrun.QEMU} not installed (run scripts/vm/provision.sh as root)"
    if vmrun.kernel_image() is None:
        return "guest kernel not built (run python3 scripts/vm/kernel.py, ~10 min on 2 cores)"
    if not list((REPO / "pciauth").glob("_uapi*.so")):
        return "pciauth/_uapi*.so not built (pip install -e . or python cffi_build/uapi_build.py)"
    return None


@pytest.fixture(scope="session")
def vm() -> type:
    """The runner module (``scripts/vm/run.py``); skips or fails when it cannot boot."""
    reason = _missing()
    if reason:
        if os.environ.get("PCIAUTH_VM_REQUIRED") == "1":
            pytest.fail(f"VM tier required (PCIAUTH_VM_REQUIRED=1) but {reason}")
        pytest.skip(reason)
    return vmrun
