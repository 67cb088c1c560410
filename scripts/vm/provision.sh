#!/bin/sh
# Install what the pciauth VM test tier needs on Debian 12 (bookworm), as root.
#
# Idempotent: packages already installed are not fetched again, and the
# backports source is added only when missing.  QEMU comes from
# bookworm-backports (10.x: its NVMe emulation has the SPDM/DOE `spdm_port`).
# The guest kernel is built from Debian's linux-source-6.12 (also backports).
set -eu

if [ "$(id -u)" != 0 ]; then
    echo "provision.sh: must run as root (apt-get install)" >&2
    exit 1
fi

BACKPORTS_LIST=/etc/apt/sources.list.d/pciauth-bookworm-backports.list
export DEBIAN_FRONTEND=noninteractive

have_backports() {
    grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/
}

if ! have_backports; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" > "$BACKPORTS_LIST"
    echo "provision.sh: added bookworm-backports ($BACKPORTS_LIST)"
fi

# Packages from the main suite: tools for the guest and the kernel build.
MAIN_PKGS="busybox-static pciutils bc bison flex libelf-dev libssl-dev cpio
xz-utils make gcc libc6-dev kmod rsync python3-dev"
# Packages that must come from backports.
BPO_PKGS="qemu-system-x86 linux-source-6.12"

missing=""
for p in $MAIN_PKGS $BPO_PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "provision.sh: all packages present"
    exit 0
fi

echo "provision.sh: installing:$missing"
apt-get update -qq
main_missing=""
bpo_missing=""
for p in $missing; do
    case " $BPO_PKGS " in
        *" $p "*) bpo_missing="$bpo_missing $p" ;;
        *) main_missing="$main_missing $p" ;;
    esac
done
if [ -n "$main_missing" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $main_missing
fi
if [ -n "$bpo_missing" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends -t bookworm-backports $bpo_missing
fi
echo "provision.sh: done"
