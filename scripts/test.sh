#!/bin/bash
# Run pciauth's whole test suite: lint, the unit suite (emulated device, fake sysfs, fake
# kernel), then the real-kernel tier in a QEMU guest (scripts/vm/ci.sh provisions QEMU and builds
# the guest kernel on first use; cached afterwards).
#   PCIAUTH_SKIP_VM=1 scripts/test.sh   unit suite only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check pciauth tests cffi_build scripts benchmarks
status=0
.venv/bin/python -m pytest -m "not vm" -q -p no:randomly || status=$?
if [ "$status" != 0 ]; then exit "$status"; fi
if [ "${PCIAUTH_SKIP_VM:-0}" != 1 ]; then
    if [ -f scripts/vm/ci.sh ]; then
        bash scripts/vm/ci.sh
    else
        echo "test: scripts/vm/ci.sh missing: the VM tier did not run" >&2
        exit 1
    fi
fi
