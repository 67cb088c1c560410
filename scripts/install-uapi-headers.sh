#!/bin/sh
# Install kernel UAPI headers >= 6.6 (linux/vfio.h with the cdev ioctls, linux/iommufd.h)
# so that tests/uapi/test_uapi_headers.py compares pciauth's struct layouts with the
# kernel's instead of skipping. Debian 12's own linux-libc-dev is 6.1 (no iommufd.h);
# bookworm-backports has a current one. Idempotent: safe to run on every CI start.
#
# Usage: sudo scripts/install-uapi-headers.sh
set -eu

MIN_MAJOR=6
MIN_MINOR=6

have_new_headers() {
    [ -f /usr/include/linux/iommufd.h ] || return 1
    [ -f /usr/include/linux/version.h ] || return 1
    code=$(sed -n 's/^#define LINUX_VERSION_CODE \([0-9]*\).*/\1/p' /usr/include/linux/version.h)
    [ -n "$code" ] || return 1
    [ "$code" -ge $(( (MIN_MAJOR << 16) + (MIN_MINOR << 8) )) ]
}

if have_new_headers; then
    echo "install-uapi-headers: kernel UAPI headers >= $MIN_MAJOR.$MIN_MINOR already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-uapi-headers: needs root (apt-get)" >&2
    exit 1
fi

. /etc/os-release
if [ "${ID:-}" != "debian" ]; then
    echo "install-uapi-headers: not Debian ($ID): install kernel headers >= $MIN_MAJOR.$MIN_MINOR yourself," \
         "or point PCIAUTH_UAPI_INCLUDE at a kernel tree's usr/include" >&2
    exit 1
fi

codename=${VERSION_CODENAME:-bookworm}
backports="$codename-backports"
list=/etc/apt/sources.list.d/pciauth-backports.list
if ! grep -rqs "$backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Use the same mirror as the main sources when one is configured.
    mirror=$(grep -rhos 'https\?://[^ ]*/debian/\?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "deb ${mirror%/} $backports main" > "$list"
    echo "install-uapi-headers: added $backports ($list)"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t "$backports" linux-libc-dev >/dev/null

if have_new_headers; then
    echo "install-uapi-headers: installed linux-libc-dev $(dpkg-query -W -f='${Version}' linux-libc-dev)"
else
    echo "install-uapi-headers: linux-libc-dev from $backports is still older than $MIN_MAJOR.$MIN_MINOR" >&2
    exit 1
fi
