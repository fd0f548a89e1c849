#!/bin/sh
# Installs what building and testing cvminit needs on a fresh Debian 12 machine (as root).
# Everything comes from Debian's archive; the static libraries are built from Debian
# source packages by image/deps.sh, which installs its own build tools.
set -eu

PACKAGES="
build-essential musl-tools pkg-config file
clang libclang-rt-14-dev clang-format
libkmod-dev libblkid-dev libcryptsetup-dev libtss2-dev libzstd-dev libjson-c-dev libmbedtls-dev
swtpm swtpm-tools tpm2-tools cryptsetup-bin
qemu-system-x86 qemu-utils ovmf
cpio zstd xz-utils kmod python3 socat openssl debootstrap debian-archive-keyring mtools
fdisk
osslsigncode
"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "host packages: all present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "error: missing packages:$missing; run 'make check' as root or install them" >&2
	exit 1
fi
echo "host packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
