#!/bin/bash
# Make (once) the Debian trixie "tools tree" that mkosi builds the node image with.
#
# The host's own mkosi/systemd are too old, so every build tool (mkosi itself, systemd-repart,
# ukify, the systemd-boot stub, mkfs.erofs, mkfs.vfat, mtools, apt, dpkg, ...) comes from this
# tree. mkosi is pure Python: the host's python3 runs it from the tree and mkosi then runs every
# other tool from the tree in its own sandbox (--tools-tree=).
#
# The tree is cached OUTSIDE the clone, keyed by a hash of the package list and this script:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/cvminit/tools-<hash>
# It is built in a temporary directory next to it and renamed into place only when complete, so
# a half-built tree is never used. A second run finds it and returns at once.
#
# Usage: image/tools-tree.sh            build if needed; the tree's path is the last stdout line
#        image/tools-tree.sh --path     print the path the tree has (or would have), build nothing
# Environment: CVMINIT_MIRROR (default http://deb.debian.org/debian), XDG_CACHE_HOME.
set -euo pipefail

SUITE=trixie
MIRROR=${CVMINIT_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# Installed with --no-install-recommends (with Recommends the tree grows to several GB).
PACKAGES=(
    # mkosi and the image tools it calls
    mkosi
    systemd-repart      # partitions, erofs root, dm-verity (libcryptsetup), ESP (mkfs.vfat + mcopy)
    systemd-ukify       # builds the UKI (python3-pefile comes as a dependency)
    systemd-boot-efi    # the EFI stub
    erofs-utils         # mkfs.erofs
    cryptsetup-bin      # veritysetup (and libcryptsetup12 for repart's verity)
    dosfstools          # mkfs.vfat
    mtools              # mcopy: fills the ESP without mounting it
    debian-archive-keyring
    # what mkosi needs at run time for an apt-based build
    apt
    dpkg
    gpgv
    python3
    zstd
    xz-utils
    cpio
    kmod                # depmod / modinfo for the image's kernel modules
    coreutils
    util-linux
    tar
    ca-certificates
)

die() { echo "tools-tree: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot)"

script_path=$(readlink -f "${BASH_SOURCE[0]}")
hash=$( { printf '%s\n' "$SUITE" "${PACKAGES[@]}"; cat "$script_path"; } | sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/cvminit
tree=$cache_root/tools-$hash

if [ "${1:-}" = --path ]; then
    echo "$tree"
    exit 0
fi

start=$(date +%s)
mkdir -p "$cache_root"

# One builder at a time (several engineers share the machine); the others wait and reuse it.
exec 9>"$cache_root/.tools.lock"
flock 9

if [ -d "$tree" ] && [ -e "$tree/.complete" ]; then
    echo "tools-tree: cached at $tree (0 s)" >&2
    echo "$tree"
    exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
# debootstrap verifies trixie's Release file with the host's keyring; bookworm's
# debian-archive-keyring (2023.3+deb12u1 and later) carries the trixie keys.

tmp=$(mktemp -d "$cache_root/.tools-$hash.XXXXXX")
mounts=()

cleanup() {
    local rc=$? m i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        m=${mounts[i]}
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "tools-tree: cannot unmount $m" >&2
    done
    mounts=()
    if [ "$rc" != 0 ] && [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
        # Only remove it if nothing is still mounted below it.
        if ! grep -q " $tmp/" /proc/self/mounts; then
            rm -rf --one-file-system "$tmp"
        else
            echo "tools-tree: left $tmp (still mounted)" >&2
        fi
    fi
    return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

bind() {   # bind HOST_DIR DIR_IN_ROOT
    mkdir -p "$root/$2"
    mount --bind "$1" "$root/$2"
    mounts+=("$root/$2")
}

root=$tmp/root
echo "tools-tree: debootstrap $SUITE into $root" >&2
debootstrap --variant=minbase --keyring="$KEYRING" --components=main \
    "$SUITE" "$root" "$MIRROR" >&2

cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
EOF
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

bind /proc proc
bind /sys sys
bind /dev dev
bind /dev/pts dev/pts

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
chroot "$root" apt-get -q update >&2
chroot "$root" apt-get -q -y --no-install-recommends install "${PACKAGES[@]}" >&2
chroot "$root" apt-get -q clean
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$root/.packages"

# Release the mounts before the tree is published.
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}"; done
mounts=()
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin

mkosi_version=$(sed -n 's/^mkosi //p' "$root/.packages")
echo "$mkosi_version" >"$root/.mkosi-version"
touch "$root/.complete"

# Publish atomically: the final name appears only with a complete tree.
mv -T "$root" "$tree"
rmdir "$tmp"
tmp=

end=$(date +%s)
echo "tools-tree: built $tree in $((end - start)) s ($(du -sh "$tree" | cut -f1), mkosi $mkosi_version)" >&2
echo "$tree"
