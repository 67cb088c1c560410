#!/bin/bash
# The real-kernel test tier, as CI runs it (called by scripts/test.sh, hence .ci/run):
#   1. provision QEMU, busybox and the kernel source (as root; idempotent),
#   2. build the guest kernel, or reuse the cached image (~/.cache/pciauth or $PCIAUTH_CACHE),
#   3. build pciauth's cffi module in place if it is missing (the guest imports the repository),
#   4. run the pytest `vm` tier (tests/vm).
# PCIAUTH_VM_REQUIRED=1 (set by .ci/run) turns "QEMU or the kernel is missing" into failures.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PCIAUTH_PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

if [ "$(id -u)" = 0 ]; then
    bash scripts/vm/provision.sh
else
    echo "vm/ci.sh: not root: not provisioning (scripts/vm/provision.sh needs root)" >&2
fi

start=$(date +%s)
"$PY" scripts/vm/kernel.py
echo "vm/ci.sh: guest kernel ready after $(( $(date +%s) - start )) s"

if ! ls pciauth/_uapi*.so >/dev/null 2>&1; then
    "$PY" cffi_build/uapi_build.py
fi

start=$(date +%s)
status=0
"$PY" -m pytest tests/vm -m vm -q -rs -p no:randomly --durations=0 || status=$?
echo "vm/ci.sh: vm tier finished in $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
