#!/usr/bin/env bash
# image/deps.sh - build cvminit's static musl sysroot from Debian sources.
#
# Usage:
#   image/deps.sh                   build (or reuse) the sysroot, point build/sysroot at it
#   image/deps.sh --print-sysroot   print the cache directory the sysroot lives in
#
# The source packages and their exact versions come from image/deps.manifest.
# They are fetched with `apt-get source` through a private apt configuration
# (own sources list, lists, cache and state; the machine's /etc/apt is neither
# read nor written) and built with musl-gcc into static archives only.
#
# The sysroot is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/cvminit/sysroot-<hash>,
# <hash> being the first 16 hex digits of a sha256 over the manifest, this
# script and image/deps/*. It is built in a temporary directory and renamed
# into place only when every step, and the final link test, succeeded.
#
# Layout:  $S/include            headers, plus the kernel UAPI headers musl lacks
#          $S/lib/*.a           static libraries only (no .so, no .la)
#          $S/lib/pkgconfig     .pc files with complete Requires.private/Libs.private
#          $S/bin/musl-gcc      musl-gcc that also understands -static-pie
#          $S/BUILDINFO         hash, toolchain versions, manifest
# The .pc files use ${pcfiledir}, so the sysroot is relocatable; use:
#   PKG_CONFIG_LIBDIR=$S/lib/pkgconfig PKG_CONFIG_PATH= pkg-config --static ...
#
# Environment: DEPS_JOBS (make -j, default 2), DEPS_KEEP_WORK=1 keeps the
# unpacked sources and build trees in build/deps-work after a success.

set -euo pipefail
export LC_ALL=C
umask 022

IMAGE_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$IMAGE_DIR/.." && pwd -P)
MANIFEST=$IMAGE_DIR/deps.manifest
PATCH_DIR=$IMAGE_DIR/deps
if [[ -z ${XDG_CACHE_HOME:-} && -z ${HOME:-} ]]; then
    HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
fi
CACHE_BASE=${XDG_CACHE_HOME:-$HOME/.cache}/cvminit
LINK=$REPO_ROOT/build/sysroot
WORK=$REPO_ROOT/build/deps-work
JOBS=${DEPS_JOBS:-2}

# Build order (dependencies first); the manifest must name exactly these.
PACKAGES=(libzstd xz-utils json-c util-linux lvm2 mbedtls kmod cryptsetup tpm2-tss)
SUITES=(bookworm bookworm-updates bookworm-security trixie)

# Host tools: Debian package names, installed with apt-get if missing.
HOST_PACKAGES=(
    musl-tools musl-dev gcc make binutils patch file xz-utils
    dpkg-dev debian-archive-keyring linux-libc-dev
    autoconf automake libtool libltdl-dev autopoint gettext autoconf-archive
    pkg-config bison flex gperf cmake
)

msg() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# ---------------------------------------------------------------------------
# cache key

compute_hash() {
    local files=(deps.manifest deps.sh)
    if [[ -d $PATCH_DIR ]]; then
        local f
        while IFS= read -r -d '' f; do files+=("$f"); done \
            < <(cd "$IMAGE_DIR" && find deps -type f -print0 | sort -z)
    fi
    (cd "$IMAGE_DIR" && sha256sum -- "${files[@]}") | sha256sum | cut -c1-16
}

HASH=$(compute_hash)
FINAL=$CACHE_BASE/sysroot-$HASH

point_link() {
    mkdir -p "$(dirname "$LINK")"
    if [[ -e $LINK && ! -L $LINK ]]; then
        die "$LINK exists and is not a symlink; remove it"
    fi
    ln -sfn "$FINAL" "$LINK.tmp.$$"
    mv -Tf "$LINK.tmp.$$" "$LINK"
}

case "${1:-}" in
    "") ;;
    --print-sysroot) [[ $# -eq 1 ]] || { usage; exit 2; }; printf '%s\n' "$FINAL"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; exit 2 ;;
esac

if [[ -d $FINAL ]]; then
    point_link
    msg "sysroot is cached: $FINAL"
    msg "build/sysroot -> $FINAL"
    exit 0
fi

START=$SECONDS

# ---------------------------------------------------------------------------
# host tools

ensure_host_tools() {
    local missing=() p st
    for p in "${HOST_PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ $st == installed ]] || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing host packages (need root to install): ${missing[*]}"
    msg "installing host packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
        msg "apt-get install failed; updating the machine's package lists and retrying"
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

ensure_host_tools

# ---------------------------------------------------------------------------
# manifest

declare -A SUITE_OF=() VERSION_OF=()
read_manifest() {
    local line suite pkg ver extra s ok
    [[ -f $MANIFEST ]] || die "no manifest: $MANIFEST"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r suite pkg ver extra <<<"$line" || true
        [[ -z ${suite:-} ]] && continue
        [[ -n ${ver:-} && -z ${extra:-} ]] || die "bad manifest line: $line"
        ok=
        for s in "${SUITES[@]}"; do [[ $s == "$suite" ]] && ok=1; done
        [[ -n $ok ]] || die "manifest: unknown suite '$suite' for $pkg"
        [[ -z ${VERSION_OF[$pkg]:-} ]] || die "manifest: $pkg listed twice"
        SUITE_OF[$pkg]=$suite
        VERSION_OF[$pkg]=$ver
    done <"$MANIFEST"
    for pkg in "${PACKAGES[@]}"; do
        [[ -n ${VERSION_OF[$pkg]:-} ]] || die "manifest: $pkg is missing"
    done
    for pkg in "${!VERSION_OF[@]}"; do
        [[ " ${PACKAGES[*]} " == *" $pkg "* ]] || die "manifest: no build recipe for $pkg"
    done
}

read_manifest

# ---------------------------------------------------------------------------
# lock, directories

mkdir -p "$CACHE_BASE"
exec 9>"$CACHE_BASE/.deps.lock"
if ! flock -n 9; then
    msg "waiting for another deps.sh run (lock $CACHE_BASE/.deps.lock)"
    flock 9
fi
if [[ -d $FINAL ]]; then            # built by the run we waited for
    point_link
    msg "sysroot is cached: $FINAL"
    exit 0
fi

# Leftovers of interrupted runs are never reused.
rm -rf "$CACHE_BASE"/.sysroot-*.tmp.*
STAGE=$CACHE_BASE/.sysroot-$HASH.tmp.$$
APTDIR=$CACHE_BASE/deps-apt          # private apt config, lists, cache, state
DL=$CACHE_BASE/deps-downloads        # .dsc and tarballs, verified by apt
SRC=$WORK/src
LOGS=$WORK/logs

cleanup() {
    local rc=$?
    rm -rf "$STAGE"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

rm -rf "$WORK"
mkdir -p "$STAGE"/{include,lib/pkgconfig} "$SRC" "$LOGS" "$WORK/bin" "$DL"

# ---------------------------------------------------------------------------
# private apt configuration (deb-src only)

setup_apt() {
    mkdir -p "$APTDIR"/etc/{apt.conf.d,preferences.d,sources.list.d,trusted.gpg.d} \
             "$APTDIR"/lists/partial "$APTDIR"/cache/archives/partial \
             "$APTDIR"/state "$APTDIR"/log
    : >"$APTDIR/state/status"
    : >"$APTDIR/etc/sources.list"
    cat >"$APTDIR/etc/sources.list.d/cvminit-deps.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # Read first (APT_CONFIG); it moves every other config location into
    # $APTDIR, so nothing under /etc/apt is read.
    cat >"$APTDIR/apt.conf" <<EOF
Dir::Etc "$APTDIR/etc/";
Dir::Etc::Main "apt.conf";
Dir::Etc::Parts "apt.conf.d";
Dir::Etc::SourceList "sources.list";
Dir::Etc::SourceParts "sources.list.d";
Dir::Etc::Preferences "preferences";
Dir::Etc::PreferencesParts "preferences.d";
Dir::Etc::Trusted "trusted.gpg";
Dir::Etc::TrustedParts "trusted.gpg.d";
Dir::State "$APTDIR/state/";
Dir::State::Lists "$APTDIR/lists/";
Dir::State::status "$APTDIR/state/status";
Dir::Cache "$APTDIR/cache/";
Dir::Log "$APTDIR/log/";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
// apt-get source downloads into $DL, which the _apt sandbox user cannot write.
APT::Sandbox::User "root";
EOF
    export APT_CONFIG=$APTDIR/apt.conf
}

# Does the suite's Sources index list this exact version of the package?
suite_has() {
    local suite=$1 pkg=$2 ver=$3 f
    for f in "$APTDIR"/lists/*_dists_"${suite}"_main_source_Sources; do
        [[ -f $f ]] || continue
        awk -v p="$pkg" -v v="$ver" '
            /^Package: / { pk = $2 }
            /^Version: / { if (pk == p && $2 == v) found = 1 }
            END { exit !found }' "$f" && return 0
    done
    return 1
}

suite_versions() {
    local suite=$1 pkg=$2 f
    for f in "$APTDIR"/lists/*_dists_"${suite}"_main_source_Sources; do
        [[ -f $f ]] || continue
        awk -v p="$pkg" '/^Package: / { pk = $2 } /^Version: / { if (pk == p) print $2 }' "$f"
    done | sort -u | tr '\n' ' ' | sed 's/ $//'
}

fetch_sources() {
    local pkg ver dsc
    setup_apt
    msg "updating the private apt source lists"
    apt-get update -q >"$LOGS/apt-update.log" 2>&1 || {
        tail -n 20 "$LOGS/apt-update.log" >&2; die "apt-get update (private config) failed"; }
    local specs=()
    for pkg in "${PACKAGES[@]}"; do
        ver=${VERSION_OF[$pkg]}
        if suite_has "${SUITE_OF[$pkg]}" "$pkg" "$ver"; then
            specs+=("$pkg=$ver")
        elif [[ -f $DL/${pkg}_${ver#*:}.dsc ]]; then
            # Superseded in the archive, but fetched (and checked) by apt before.
            msg "warning: $pkg $ver is no longer in ${SUITE_OF[$pkg]}; using the copy in $DL"
        else
            die "manifest: $pkg $ver is not in ${SUITE_OF[$pkg]}'s Sources index (it has: $(suite_versions "${SUITE_OF[$pkg]}" "$pkg"))"
        fi
    done
    msg "fetching sources"
    if [[ ${#specs[@]} -gt 0 ]]; then
        (cd "$DL" && apt-get source -q --download-only "${specs[@]}") >"$LOGS/apt-source.log" 2>&1 || {
            tail -n 20 "$LOGS/apt-source.log" >&2; die "apt-get source failed"; }
    fi
    for pkg in "${PACKAGES[@]}"; do
        ver=${VERSION_OF[$pkg]}
        dsc=$DL/${pkg}_${ver#*:}.dsc
        [[ -f $dsc ]] || die "apt-get source did not produce $dsc"
        # dpkg-source checks the tarballs against the .dsc checksums; the .dsc
        # itself was checked by apt against the signed InRelease.
        dpkg-source -x "$dsc" "$SRC/$pkg" >>"$LOGS/apt-source.log" 2>&1 || {
            tail -n 20 "$LOGS/apt-source.log" >&2; die "dpkg-source -x $dsc failed"; }
        apply_patches "$pkg" >>"$LOGS/apt-source.log" 2>&1 || {
            tail -n 20 "$LOGS/apt-source.log" >&2; die "patching $pkg failed"; }
    done
}

apply_patches() {
    local pkg=$1 p
    [[ -d $PATCH_DIR/$pkg ]] || return 0
    for p in "$PATCH_DIR/$pkg"/*.patch; do
        [[ -f $p ]] || continue
        echo "applying $p"
        patch -d "$SRC/$pkg" -p1 -N --fuzz=0 --no-backup-if-mismatch <"$p"
    done
}

# ---------------------------------------------------------------------------
# toolchain environment

setup_env() {
    # Nothing from the caller (a Makefile, a shell) may leak into the builds.
    unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES GNUMAKEFLAGS DESTDIR \
          CFLAGS CXXFLAGS CPPFLAGS LDFLAGS LIBS CONFIG_SITE CC CXX CPP LD AR \
          PKG_CONFIG PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR \
          C_INCLUDE_PATH CPATH LIBRARY_PATH

    # Kernel UAPI headers for musl-gcc, copied from the host's linux-libc-dev.
    local multiarch
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    cp -a /usr/include/linux /usr/include/asm-generic /usr/include/mtd "$STAGE/include/"
    cp -a "/usr/include/$multiarch/asm" "$STAGE/include/asm"

    local real_pkg_config
    real_pkg_config=$(command -v pkg-config) || die "pkg-config not found"
    cat >"$WORK/bin/pkg-config" <<EOF
#!/bin/sh
# Only the sysroot's .pc files, always with their static dependencies.
PKG_CONFIG_LIBDIR='$STAGE/lib/pkgconfig' PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR= \\
    exec '$real_pkg_config' --static "\$@"
EOF
    chmod +x "$WORK/bin/pkg-config"

    export PATH=$WORK/bin:$PATH
    export PKG_CONFIG=$WORK/bin/pkg-config
    export PKG_CONFIG_LIBDIR=$STAGE/lib/pkgconfig PKG_CONFIG_PATH=
    export CC=musl-gcc AR=ar RANLIB=ranlib
    export CPPFLAGS="-isystem $STAGE/include"
    # PIC everywhere, so that -static-pie works; the hardening flags match
    # Debian's defaults for amd64 (_FORTIFY_SOURCE does nothing with musl). -Os: PID 1
    # runs little library code on its path (probing, header parsing, TPM marshalling);
    # the modules it loads on every boot are stored uncompressed, so no decompressor is
    # on it (issue 15: the binary's size, docs/benchmarks.md).
    export CFLAGS="-Os -pipe -fPIC -ffunction-sections -fdata-sections -fstack-protector-strong -fstack-clash-protection -fcf-protection -ffile-prefix-map=$WORK/=/ -ffile-prefix-map=$STAGE/=/"
    export LDFLAGS="-L$STAGE/lib"
    export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
}

# Common autoconf arguments. Runtime paths are those of the target system;
# only headers and libraries are installed under the sysroot.
CONF_COMMON=()
set_conf_common() {
    CONF_COMMON=(--prefix="$STAGE" --libdir="$STAGE/lib" --includedir="$STAGE/include"
                 --sysconfdir=/etc --localstatedir=/var
                 --disable-shared --enable-static --disable-dependency-tracking)
}

# Rewrite every .pc file so it does not name the staging directory.
fix_pc_files() {
    local f
    for f in "$STAGE"/lib/pkgconfig/*.pc; do
        [[ -f $f ]] || continue
        sed -i -e "s|$STAGE|\${pcfiledir}/../..|g" "$f"
    done
}

# set_pc_field FILE FIELD VALUE: replace (or add) "FIELD: VALUE" in a .pc file.
set_pc_field() {
    local f=$1 field=$2 value=$3
    [[ -f $f ]] || { echo "no such .pc file: $f" >&2; return 1; }
    sed -i "/^${field}:/d" "$f"
    printf '%s: %s\n' "$field" "$value" >>"$f"
}

# ---------------------------------------------------------------------------
# recipes (each runs in its own subshell with set -e, output to its log)

build_libzstd() {
    cd "$SRC/libzstd/lib"
    local mk=(PREFIX="$STAGE" LIBDIR="$STAGE/lib" INCLUDEDIR="$STAGE/include"
              PKGCONFIGDIR="$STAGE/lib/pkgconfig" CC="$CC" V=1)
    # libzstd.a is built single-threaded (zstd's default for the static
    # library); libzstd.pc still says -pthread, which costs nothing with musl.
    # cvminit compresses rotated service logs (level 3) and libkmod would read a .ko.zst:
    # no dictionary builder, no legacy formats or deprecated API, one decoder variant
    # each and nothing force-inlined (zstd's speed templates were 600 KB of the binary;
    # ZSTD_LIB_MINIFY would also drop the stack protector, so its parts one by one).
    mk+=(ZSTD_LIB_DICTBUILDER=0 ZSTD_LIB_DEPRECATED=0 ZSTD_LEGACY_SUPPORT=0
         HUF_FORCE_DECOMPRESS_X1=1 ZSTD_FORCE_DECOMPRESS_SEQUENCES_SHORT=1
         ZSTD_NO_INLINE=1 ZSTD_STRIP_ERROR_STRINGS=1)
    make -j"$JOBS" "${mk[@]}" libzstd.a libzstd.pc
    make "${mk[@]}" install-static install-pc install-includes
}

build_xz-utils() {
    cd "$SRC/xz-utils"
    ./configure "${CONF_COMMON[@]}" --disable-nls --disable-doc --disable-scripts \
        --disable-xz --disable-xzdec --disable-lzmadec --disable-lzmainfo --disable-lzma-links \
        --disable-encoders --enable-small
    make -C src/liblzma -j"$JOBS" V=1
    make -C src/liblzma install
}

build_json-c() {
    cd "$SRC/json-c"
    cmake -S . -B "$WORK/build-json-c" \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CC" \
        -DCMAKE_C_FLAGS="$CPPFLAGS $CFLAGS" -DCMAKE_C_FLAGS_RELEASE="" \
        -DCMAKE_INSTALL_PREFIX="$STAGE" -DCMAKE_INSTALL_LIBDIR=lib \
        -DCMAKE_INSTALL_INCLUDEDIR=include \
        -DCMAKE_FIND_ROOT_PATH="$STAGE" -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY \
        -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY \
        -DBUILD_SHARED_LIBS=OFF -DBUILD_STATIC_LIBS=ON -DBUILD_TESTING=OFF \
        -DBUILD_APPS=OFF -DDISABLE_WERROR=ON -DDISABLE_EXTRA_LIBS=ON \
        -DENABLE_THREADING=OFF -DENABLE_RDRAND=OFF
    cmake --build "$WORK/build-json-c" -j"$JOBS" -- VERBOSE=1
    cmake --install "$WORK/build-json-c"
}

build_util-linux() {
    cd "$SRC/util-linux"
    # Debian's patches touch configure.ac/Makefile.am: regenerate, as Debian does.
    ./autogen.sh
    ./configure "${CONF_COMMON[@]}" --runstatedir=/run \
        --disable-all-programs --enable-libuuid --enable-libblkid \
        --disable-libmount --disable-libsmartcols --disable-libfdisk \
        --disable-nls --disable-asciidoc --disable-poman --disable-bash-completion \
        --disable-makeinstall-chown --disable-makeinstall-setuid \
        --without-udev --without-systemd --without-python --without-readline \
        --without-ncurses --without-ncursesw --without-tinfo --without-libmagic \
        --without-selinux --without-audit --without-smack --without-btrfs \
        --without-cap-ng --without-econf --without-cryptsetup --without-libz \
        --without-user
    make -j"$JOBS" V=1
    make install
}

build_lvm2() {
    cd "$SRC/lvm2"
    # Debian patches configure.ac; regenerate like Debian's build does.
    autoreconf -fi
    ./configure --prefix="$STAGE" --libdir="$STAGE/lib" --includedir="$STAGE/include" \
        --with-usrlibdir="$STAGE/lib" \
        --sysconfdir=/etc --localstatedir=/var --with-default-run-dir=/run/lvm \
        --with-default-locking-dir=/run/lock/lvm \
        --enable-static_link --enable-pkgconfig \
        --disable-selinux --disable-udev_sync --disable-udev_rules \
        --disable-blkid_wiping --disable-readline --disable-editline \
        --disable-dmeventd --disable-cmdlib --disable-nls \
        --disable-systemd-journal --disable-app-machineid --disable-notify-dbus \
        --disable-dbus-service --disable-lvmpolld --disable-use-lvmpolld
    # libdm's own make.tmpl ignores CPPFLAGS: pass the include dir in CFLAGS.
    make -C libdm -j"$JOBS" V=1 CFLAGS="$CPPFLAGS $CFLAGS" ioctl/libdevmapper.a libdevmapper.pc
    make -C libdm V=1 install_static install_include install_pkgconfig
}

build_mbedtls() {
    cd "$SRC/mbedtls"
    # Default configuration (include/mbedtls/config.h), static libraries only.
    make -C library -j"$JOBS" CC="$CC" AR="$AR" \
        CFLAGS="$CPPFLAGS $CFLAGS" static
    install -d "$STAGE/include/mbedtls" "$STAGE/include/psa"
    install -m 0644 include/mbedtls/*.h "$STAGE/include/mbedtls/"
    install -m 0644 include/psa/*.h "$STAGE/include/psa/"
    install -m 0644 library/libmbedcrypto.a library/libmbedx509.a library/libmbedtls.a "$STAGE/lib/"
    # mbedtls 2.28's make build installs no .pc files: write them.
    local v=${VERSION_OF[mbedtls]#*:}; v=${v%-*}
    write_mbed_pc mbedcrypto "Mbed TLS cryptography library" "$v" ""
    write_mbed_pc mbedx509 "Mbed TLS X.509 library" "$v" "mbedcrypto"
    write_mbed_pc mbedtls "Mbed TLS TLS library" "$v" "mbedx509 mbedcrypto"
}

write_mbed_pc() {   # NAME DESCRIPTION VERSION REQUIRES_PRIVATE
    cat >"$STAGE/lib/pkgconfig/$1.pc" <<EOF
prefix=$STAGE
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: $1
Description: $2
Version: $3
Requires.private: $4
Cflags: -I\${includedir}
Libs: -L\${libdir} -l$1
EOF
}

build_kmod() {
    cd "$SRC/kmod"
    # No gtk-doc: an empty gtk-doc.make is what kmod's autogen.sh uses too.
    touch libkmod/docs/gtk-doc.make
    autoreconf -fi
    ./configure "${CONF_COMMON[@]}" --with-zstd --with-xz --without-zlib --without-openssl \
        --disable-tools --disable-manpages --disable-test-modules --disable-python \
        --disable-coverage
    make -j"$JOBS" V=1 libkmod/libkmod.la libkmod/libkmod.pc
    make install-libLTLIBRARIES install-includeHEADERS install-pkgconfigDATA
    set_pc_field "$STAGE/lib/pkgconfig/libkmod.pc" Libs.private ""
    sed -i '/^Libs.private: *$/d' "$STAGE/lib/pkgconfig/libkmod.pc"
    set_pc_field "$STAGE/lib/pkgconfig/libkmod.pc" Requires.private "libzstd liblzma"
}

build_cryptsetup() {
    cd "$SRC/cryptsetup"
    ./autogen.sh
    ./configure "${CONF_COMMON[@]}" --runstatedir=/run \
        --with-crypto_backend=kernel --disable-internal-argon2 --with-luks2-pbkdf=pbkdf2 \
        --disable-cryptsetup --disable-veritysetup --disable-integritysetup \
        --disable-ssh-token --disable-external-tokens \
        --disable-nls --disable-selinux --disable-udev --disable-asciidoc \
        --disable-pwquality --disable-passwdqc --disable-fips \
        --disable-static-cryptsetup --disable-fuzz-targets \
        --enable-blkid --disable-luks2-reencryption --enable-keyring \
        --with-luks2-lock-path=/run/cryptsetup \
        --with-luks2-external-tokens-path=/usr/lib/cryptsetup
    make -j"$JOBS" V=1 libcryptsetup.la lib/libcryptsetup.pc
    make install-libLTLIBRARIES install-includeHEADERS install-pkgconfigDATA
}

build_tpm2-tss() {
    cd "$SRC/tpm2-tss"
    # bootstrap needs autoconf-archive (AX_*) and libltdl-dev (LT_LIB_DLLOAD).
    ./bootstrap
    ./configure "${CONF_COMMON[@]}" --with-runstatedir=/run \
        --with-crypto=mbed --disable-fapi --disable-policy --enable-nodl \
        --enable-esys --enable-tcti-device --enable-tcti-swtpm \
        --disable-tcti-mssim --disable-tcti-pcap --disable-tcti-libtpms \
        --disable-tcti-cmd --disable-tcti-spi-helper --disable-tcti-spi-ltt2go \
        --disable-tcti-spidev --disable-tcti-spi-ftdi --disable-tcti-i2c-helper \
        --disable-tcti-i2c-ftdi --disable-tcti-fuzzing \
        --disable-unit --disable-integration --disable-doxygen-doc \
        --disable-log-file --disable-weakcrypto
    make -j"$JOBS" V=1 all
    # Not `make install`: its install-data-hook creates the tss user/group and
    # /var/lib/tpm2-tss. Libraries, headers and .pc files only.
    make install-libLTLIBRARIES install-tss2HEADERS install-pkgconfigDATA

    local lib=$STAGE/lib pc=$STAGE/lib/pkgconfig
    # Every TCTI defines Tss2_Tcti_Info (for dlopen). With --enable-nodl the
    # static ESYS pulls in tcti-device and tcti-swtpm together, so only one of
    # them may export it: keep tcti-device's, make swtpm's local.
    objcopy --localize-symbol=Tss2_Tcti_Info "$lib/libtss2-tcti-swtpm.a"
    ranlib "$lib/libtss2-tcti-swtpm.a"

    # With --enable-nodl, esys and tctildr call the TCTIs' Init functions
    # directly; the upstream .pc files do not say so. Order matters for static
    # links: users before the libraries they use.
    set_pc_field "$pc/tss2-esys.pc" Requires.private \
        "tss2-sys tss2-tcti-device tss2-tcti-swtpm tss2-mu mbedcrypto"
    set_pc_field "$pc/tss2-esys.pc" Libs.private ""
    sed -i '/^Libs.private: *$/d' "$pc/tss2-esys.pc"
    set_pc_field "$pc/tss2-tctildr.pc" Requires.private \
        "tss2-tcti-device tss2-tcti-swtpm tss2-mu"
}

# ---------------------------------------------------------------------------
# checks on the finished sysroot

finish_sysroot() {
    cd "$STAGE"
    rm -rf bin sbin libexec share etc var lib/cmake
    find lib -maxdepth 1 \( -name '*.la' -o -name '*.so' -o -name '*.so.*' \) -print -delete
    fix_pc_files

    local a missing=()
    for a in libzstd liblzma libjson-c libuuid libblkid libdevmapper libmbedcrypto \
             libmbedx509 libmbedtls libkmod libcryptsetup libtss2-mu libtss2-sys \
             libtss2-esys libtss2-rc libtss2-tctildr libtss2-tcti-device libtss2-tcti-swtpm; do
        [[ -f lib/$a.a ]] || missing+=("$a.a")
    done
    [[ ${#missing[@]} -eq 0 ]] || { echo "missing libraries: ${missing[*]}"; return 1; }

    if grep -rlF -e "$STAGE" -e "$WORK" . ; then
        echo "the files above name the staging or work directory"
        return 1
    fi

    # Global symbols defined by libraries of two different source packages
    # could collide in a static link: report them. (Archives of one package
    # share identical internal helpers, e.g. libblkid/libuuid or the libtss2-*;
    # those never conflict.)
    for a in lib/*.a; do
        nm -g --defined-only "$a" 2>/dev/null |
            awk -v lib="${a#lib/}" 'NF == 3 && $2 ~ /[TDRBCVW]/ { print $3, lib }'
    done | sort -u | awk '
        { fam = $2; sub(/^libtss2-.*/, "tpm2-tss", fam); sub(/^lib(blkid|uuid)\.a$/, "util-linux", fam)
          sub(/^libmbed.*/, "mbedtls", fam) }
        $1 == prev && fam != pfam { print "duplicate global symbol:", $1, plib, $2 }
        { prev = $1; plib = $2; pfam = fam }' >"$LOGS/duplicate-symbols.txt"
    if [[ -s $LOGS/duplicate-symbols.txt ]]; then
        echo "WARNING: global symbols defined in more than one library:"
        cat "$LOGS/duplicate-symbols.txt"
    fi

    # Link test: every library, fully static, through pkg-config only.
    cat >"$WORK/selftest.c" <<'EOF'
#include <stdio.h>
#include <zstd.h>
#include <lzma.h>
#include <json-c/json.h>
#include <uuid.h>
#include <blkid.h>
#include <libdevmapper.h>
#include <mbedtls/version.h>
#include <mbedtls/sha256.h>
#include <libkmod.h>
#include <libcryptsetup.h>
#include <tss2_esys.h>
#include <tss2_rc.h>
#include <tss2_tctildr.h>
#include <tss2_tcti_device.h>
#include <tss2_tcti_swtpm.h>

/* Taking the addresses forces the linker to resolve every library. */
static void *const refs[] = {
    (void *)ZSTD_decompress, (void *)lzma_stream_decoder, (void *)json_tokener_parse,
    (void *)uuid_generate, (void *)blkid_new_probe, (void *)dm_task_create,
    (void *)mbedtls_sha256_ret, (void *)kmod_new, (void *)kmod_module_probe_insert_module,
    (void *)crypt_init, (void *)crypt_activate_by_passphrase, (void *)crypt_reencrypt_run,
    (void *)Esys_Initialize, (void *)Esys_PCR_Extend, (void *)Tss2_RC_Decode,
    (void *)Tss2_TctiLdr_Initialize, (void *)Tss2_Tcti_Device_Init, (void *)Tss2_Tcti_Swtpm_Init,
};

int main(void)
{
    char mbed[32];
    mbedtls_version_get_string(mbed);
    printf("selftest: zstd %s, lzma %s, json-c %s, blkid %d, mbedtls %s; %zu entry points linked\n",
           ZSTD_versionString(), lzma_version_string(), json_c_version(),
           blkid_get_library_version(NULL, NULL), mbed, sizeof(refs) / sizeof(refs[0]));
    return refs[0] == NULL;
}
EOF
    local mods=(libcryptsetup tss2-esys tss2-rc tss2-tctildr tss2-tcti-device tss2-tcti-swtpm
                libkmod blkid uuid devmapper json-c libzstd liblzma mbedcrypto)
    local flags
    flags=$(pkg-config --cflags --libs "${mods[@]}")
    echo "link test: musl-gcc -static selftest.c $flags"
    # shellcheck disable=SC2086
    musl-gcc -static -O2 -Wall -o "$WORK/selftest" "$WORK/selftest.c" $flags
    local ft
    ft=$(file -b "$WORK/selftest"); echo "$ft"
    [[ $ft == *"statically linked"* ]] || { echo "not statically linked"; return 1; }
    "$WORK/selftest"

    install_static_pie_cc
    # shellcheck disable=SC2086
    "$STAGE/bin/musl-gcc" -static-pie -O2 -Wall -Wl,--gc-sections -o "$WORK/selftest-pie" \
        "$WORK/selftest.c" $flags
    ft=$(file -b "$WORK/selftest-pie"); echo "$ft"
    [[ $ft == *"static-pie linked"* ]] || { echo "not static-pie linked"; return 1; }
    "$WORK/selftest-pie"
}

# Debian's musl-gcc.specs knows -static but not -static-pie: with it, gcc links
# Scrt1.o and asks for /lib/ld-musl-x86_64.so.1, i.e. a dynamic PIE. Install
# $S/bin/musl-gcc, the same wrapper with a specs file that links rcrt1.o and
# passes "-static -pie --no-dynamic-linker -z text" for -static-pie.
install_static_pie_cc() {
    local host_specs=/usr/lib/x86_64-linux-musl/musl-gcc.specs
    local crt=/usr/lib/x86_64-linux-musl
    [[ -f $host_specs && -f $crt/rcrt1.o ]] || { echo "no $host_specs or $crt/rcrt1.o"; return 1; }
    mkdir -p "$STAGE/bin"
    sed -e "s|^%{!shared: $crt/Scrt1.o}|%{!shared:%{static-pie:$crt/rcrt1.o;:$crt/Scrt1.o}}|" \
        -e "s|^-dynamic-linker /lib/ld-musl-x86_64.so.1 -nostdlib %{shared:-shared} %{static:-static}|%{!static-pie:-dynamic-linker /lib/ld-musl-x86_64.so.1} -nostdlib %{shared:-shared} %{static:-static} %{static-pie:-static -pie --no-dynamic-linker -z text}|" \
        "$host_specs" >"$STAGE/lib/musl-gcc.specs"
    if ! grep -q 'static-pie:.*rcrt1.o' "$STAGE/lib/musl-gcc.specs" ||
       ! grep -q 'static-pie:-static -pie --no-dynamic-linker' "$STAGE/lib/musl-gcc.specs"; then
        echo "could not add -static-pie to $host_specs (format changed?)"
        return 1
    fi
    cat >"$STAGE/bin/musl-gcc" <<'EOF'
#!/bin/sh
# musl-gcc, with -static-pie support (see image/deps.sh).
sysroot=$(cd "$(dirname "$0")/.." && pwd)
exec "${REALGCC:-x86_64-linux-gnu-gcc}" "$@" -specs "$sysroot/lib/musl-gcc.specs"
EOF
    chmod 0755 "$STAGE/bin/musl-gcc"
}

# ---------------------------------------------------------------------------
# main

step() {    # step NAME FUNCTION: run FUNCTION in a subshell, logging to NAME.log
    local name=$1 fn=$2 log=$LOGS/$1.log t0=$SECONDS
    msg "[$name] building (log: ${log#"$REPO_ROOT"/})"
    ( set -euo pipefail; set -x; "$fn" ) >"$log" 2>&1 </dev/null &
    if ! wait $!; then
        echo "----- last lines of $log -----" >&2
        tail -n 40 "$log" >&2
        echo "-----" >&2
        die "building $name failed (full log: $log)"
    fi
    msg "[$name] done in $((SECONDS - t0)) s"
}

setup_env
set_conf_common
fetch_sources

for pkg in "${PACKAGES[@]}"; do
    step "$pkg" "build_$pkg"
    fix_pc_files
done
step selftest finish_sysroot
if [[ -s $LOGS/duplicate-symbols.txt ]]; then
    msg "warning: some global symbols are defined by two libraries; see $LOGS/duplicate-symbols.txt"
fi

{
    echo "hash: $HASH"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "musl: $(dpkg-query -W -f='${Version}' musl-dev)"
    echo "gcc: $(gcc -dumpfullversion)"
    echo "linux-libc-dev: $(dpkg-query -W -f='${Version}' linux-libc-dev)"
    echo
    grep -v '^[[:space:]]*\(#\|$\)' "$MANIFEST"
} >"$STAGE/BUILDINFO"

mv -T "$STAGE" "$FINAL"
point_link
if [[ ${DEPS_KEEP_WORK:-0} != 1 ]]; then
    rm -rf "${SRC:?}" "${WORK:?}"/build-* "${WORK:?}/bin"
fi
ELAPSED=$((SECONDS - START))
msg "sysroot built: $FINAL"
msg "build/sysroot -> $FINAL"
msg "total build time: $((ELAPSED / 60))m$((ELAPSED % 60))s (logs in ${LOGS#"$REPO_ROOT"/})"
