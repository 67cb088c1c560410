#!/bin/bash
# Set up pciauth on a Debian 12 machine, as root, idempotently:
# system packages, kernel UAPI headers for the layout test, and a virtualenv (.venv) with
# pciauth installed in editable mode with its test extras.
# Usage: scripts/setup.sh            (PYTHON=python3.12 to pick another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc)
command -v openssl >/dev/null || need_apt+=(openssl)
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || need_apt+=(python3-dev)
"$PYTHON" -m venv --help >/dev/null 2>&1 && "$PYTHON" -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
ldconfig -p 2>/dev/null | grep -q libudev.so.1 || need_apt+=(libudev1)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing ${need_apt[*]}: run as root (sudo) or install them" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# Kernel UAPI headers >= 6.6 let tests/uapi compare our struct layouts with the kernel's.
if [ -f scripts/install-uapi-headers.sh ] && [ "$(id -u)" = 0 ]; then
    bash scripts/install-uapi-headers.sh || echo "setup: UAPI headers not installed (the layout test will skip)" >&2
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: ready: $(.venv/bin/pciauth --version)"
