#!/bin/sh
# Fetch Debian bookworm's amd64 kernel image package and unpack it under
# build/kernel/<version>/ without installing it on the host. build/kernel/current
# is a symlink to the unpacked tree. Prints the vmlinuz path on stdout.
#
# Idempotent: when the version linux-image-amd64 points at is already unpacked
# (and its modules.dep exists), nothing is downloaded.
#
# Needs: apt-get/apt-cache with up-to-date lists (run `apt-get update` once),
# dpkg-deb, and depmod (package kmod; installed here if missing and we are root).
#
# Environment:
#   KERNEL_PKG   exact package to use (e.g. linux-image-6.1.0-57-amd64) instead
#                of resolving linux-image-amd64's dependency.
#   APT_UPDATE=1 run `apt-get update` first.
set -eu

log() { printf 'kernel.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH= cd -- "$here/.." && pwd)
kdir="$root/build/kernel"

if [ "${APT_UPDATE:-0}" = 1 ]; then
	apt-get update >&2
fi

updated=0
apt_update_once() {
	# Stale or missing package lists: refresh them once (root only).
	[ "$updated" = 0 ] && [ "$(id -u)" = 0 ] || return 1
	updated=1
	log "running apt-get update"
	apt-get update -qq >&2
}

resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

# Resolve the versioned image package that the meta package depends on.
pkg=${KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	pkg=$(resolve)
	if [ -z "$pkg" ] && apt_update_once; then
		pkg=$(resolve)
	fi
	if [ -z "$pkg" ]; then
		# No package lists (or no network): fall back to what is already unpacked.
		if [ -L "$kdir/current" ]; then
			set -- "$kdir"/current/boot/vmlinuz-*
			[ -f "$1" ] || die "cannot resolve linux-image-amd64 and build/kernel/current has no vmlinuz"
			log "cannot resolve linux-image-amd64 (run apt-get update?); using build/kernel/current"
			printf '%s\n' "$1"
			exit 0
		fi
		die "cannot resolve linux-image-amd64's dependency (run apt-get update, or set KERNEL_PKG)"
	fi
fi
case $pkg in
linux-image-*-amd64 | linux-image-*-amd64-unsigned) ;;
*) die "unexpected package name: $pkg" ;;
esac
ver=${pkg#linux-image-}
ver=${ver%-unsigned}
tree="$kdir/$ver"
vmlinuz="$tree/boot/vmlinuz-$ver"

need_depmod() {
	command -v depmod >/dev/null 2>&1 && return 0
	for d in /usr/sbin /sbin; do
		[ -x "$d/depmod" ] && { PATH="$PATH:$d"; return 0; }
	done
	if [ "$(id -u)" = 0 ]; then
		log "depmod not found; installing Debian package kmod"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kmod >&2
		command -v depmod >/dev/null 2>&1 && return 0
	fi
	die "depmod not found (apt-get install kmod)"
}

if [ ! -f "$vmlinuz" ]; then
	mkdir -p "$kdir"
	tmp=$(mktemp -d "$kdir/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT INT TERM
	log "downloading $pkg"
	# apt-get download writes into the cwd; run as root it would drop to _apt,
	# which may not write here, so allow root to fetch directly.
	download() { (cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2); }
	if ! download; then
		apt_update_once && download || die "apt-get download $pkg failed"
	fi
	set -- "$tmp"/"$pkg"_*.deb
	[ -f "$1" ] || die "no .deb for $pkg after download"
	log "unpacking $(basename "$1")"
	mkdir "$tmp/x"
	dpkg-deb -x "$1" "$tmp/x"
	[ -f "$tmp/x/boot/vmlinuz-$ver" ] || die "package has no boot/vmlinuz-$ver"
	# A tree without vmlinuz is a leftover of an interrupted run. If another run
	# finished first, keep its (identical) tree.
	[ -f "$vmlinuz" ] || rm -rf "$tree"
	mv -T "$tmp/x" "$tree" 2>/dev/null || [ -f "$vmlinuz" ] || die "cannot create $tree"
	# Record which Debian revision this tree came from; the .deb itself is dropped.
	basename "$1" >"$tree/.deb"
	rm -rf "$tmp"
	trap - EXIT INT TERM
fi

mdir="$tree/lib/modules/$ver"
[ -d "$mdir" ] || die "no module tree $mdir"
if [ ! -f "$mdir/modules.dep" ]; then
	need_depmod
	log "running depmod for $ver"
	depmod -b "$tree" "$ver"
fi

# Point build/kernel/current at this version (atomically replace the link).
if [ "$(readlink "$kdir/current" 2>/dev/null || true)" != "$ver" ]; then
	ln -sfn "$ver" "$kdir/.current.tmp"
	mv -T "$kdir/.current.tmp" "$kdir/current"
fi

printf '%s\n' "$vmlinuz"
