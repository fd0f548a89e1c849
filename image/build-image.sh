#!/bin/bash
# Build the cvminit node image (mkosi.conf) into build/image/.
#
#   image/build-image.sh [extra mkosi options...]
#
# 1. makes (or reuses) the trixie tools tree: image/tools-tree.sh
# 2. runs mkosi from that tree with the host's python3 (mkosi is pure Python; every tool it calls
#    comes from the tree); caches live outside the clone, outputs under build/image/.
#
# The UKI's only initrd, in this order:
#   - $CVMINIT_INITRD, or build/image/initrd.cpio if it exists: passed as Initrds=;
#   - else image/mkosi.finalize makes it inside the build with image/mkinitrd.py from build/cvminit
#     and the modules of the image's own kernel;
#   - else (no build/cvminit yet) an empty placeholder cpio: the image builds but does not boot
#     to userspace. mkosi's own default initrd is never built.
#
# Environment:
#   CVMINIT_INITRD       initrd to use (see above)
#   CVMINIT_INIT         /init for the in-build initrd, relative to the repository
#                        (default build/cvminit; e.g. a test stand-in under build/)
#   CVMINIT_IMAGE_OUT    output directory (default build/image)
#   KUBELET, KUBELET_SHA256  a kubelet binary for /usr/bin/kubelet and its expected sha256
#   CVMINIT_EXTRA_TREE   a directory of extra files for the root (mkosi --extra-tree), e.g.
#                        the node tests' fixtures
#   JOIN, JOIN_KEY       the join service the node trusts (docs/attestation.md, "Join"): its
#                        host:port and its public key (PEM, ECDSA P-256), written into the
#                        config's join service and /etc/cvminit/join-service.pub (both in the
#                        verity root, the config also in the measured initrd); required
#   MODULE_SIGNATURES    "strip" (default) or "keep": the modules cvminit loads are stored
#                        without their signatures (faster loads; image/mkinitrd.py,
#                        strip_signature says why that is safe here); "keep" for a kernel
#                        that is locked down (Secure Boot on), which refuses unsigned ones
#   CVMINIT_STATE_SIZE   size of the state partition (default 256M, image/mkosi.repart/30-state.conf)
#   SOURCE_DATE_EPOCH    default: time of the last commit that touched mkosi.conf, image/mkosi.*
#                        or rootfs-overlay/ (2025-01-01 if none); fixes every mtime the build
#                        creates, so the root hash depends on it
#   PYTHON               python3 to run mkosi with (>= 3.9; default python3)
#   XDG_CACHE_HOME       caches go to ${XDG_CACHE_HOME:-$HOME/.cache}/cvminit/
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cvminit
# CVMINIT_IMAGE_OUT: another output directory (the tests build a variant with the kubelet
# stand-in into build/image-test without touching build/image).
out=${CVMINIT_IMAGE_OUT:-$repo/build/image}
python=${PYTHON:-python3}

start=$(date +%s)

tree=$("$repo/image/tools-tree.sh" | tail -n 1)
[ -d "$tree/usr/lib/python3/dist-packages/mkosi" ] || { echo "build-image: no mkosi in $tree" >&2; exit 1; }

mkdir -p "$out" "$cache/mkosi-packages" "$cache/mkosi-workspace"

# One image build at a time on this machine (the package cache is shared and apt's locking is
# off inside mkosi).
exec 9>"$cache/.image.lock"
if ! flock -n 9; then
    echo "build-image: waiting for another image build to finish" >&2
    flock 9
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct -- mkosi.conf 'image/mkosi.*' rootfs-overlay 2>/dev/null || true)
    # Outside git (or before the first commit of these files): a fixed date, 2025-01-01.
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}
fi
export SOURCE_DATE_EPOCH

args=()

initrd=${CVMINIT_INITRD:-}
if [ -z "$initrd" ] && [ -f "$out/initrd.cpio" ]; then
    initrd=$out/initrd.cpio
fi
if [ -n "$initrd" ]; then
    initrd=$(readlink -f "$initrd")
    [ -f "$initrd" ] || { echo "build-image: initrd $initrd not found" >&2; exit 1; }
    echo "build-image: initrd: $initrd" >&2
    args+=("--initrd=$initrd" "--environment=CVMINIT_INITRD_SOURCE=given")
else
    args+=("--environment=CVMINIT_INITRD_SOURCE=auto")
    if [ -n "${CVMINIT_INIT:-}" ]; then
        args+=("--environment=CVMINIT_INIT=$CVMINIT_INIT")
    fi
fi

case "${MODULE_SIGNATURES:-strip}" in
strip | keep) args+=("--environment=CVMINIT_MODULE_SIGNATURES=${MODULE_SIGNATURES:-strip}") ;;
*) echo "build-image: MODULE_SIGNATURES='$MODULE_SIGNATURES': expected strip or keep" >&2; exit 1 ;;
esac

# kubelet: Debian has none. A binary given as KUBELET=/path goes to /usr/bin/kubelet after its
# sha256 is checked against KUBELET_SHA256; without one the image has no kubelet.
kubelet_tree=$out/.kubelet-tree
rm -rf "$kubelet_tree"
if [ -n "${KUBELET:-}" ]; then
    [ -f "$KUBELET" ] || { echo "build-image: KUBELET=$KUBELET: no such file" >&2; exit 1; }
    [ -n "${KUBELET_SHA256:-}" ] || { echo "build-image: KUBELET is set but KUBELET_SHA256 is not: give the expected sha256 of $KUBELET" >&2; exit 1; }
    got=$(sha256sum "$KUBELET" | cut -d' ' -f1)
    if [ "$got" != "${KUBELET_SHA256,,}" ]; then
        echo "build-image: $KUBELET has sha256 $got, expected KUBELET_SHA256=$KUBELET_SHA256: refusing to build" >&2
        exit 1
    fi
    install -D -m 0755 "$KUBELET" "$kubelet_tree/usr/bin/kubelet"
    args+=("--extra-tree=$kubelet_tree")
    echo "build-image: kubelet: $KUBELET (sha256 $got) -> /usr/bin/kubelet" >&2
else
    echo "build-image: kubelet: none given (KUBELET=/path KUBELET_SHA256=<hex>): the image has no /usr/bin/kubelet" >&2
fi

if [ -n "${CVMINIT_EXTRA_TREE:-}" ]; then
    [ -d "$CVMINIT_EXTRA_TREE" ] || { echo "build-image: CVMINIT_EXTRA_TREE=$CVMINIT_EXTRA_TREE: no such directory" >&2; exit 1; }
    args+=("--extra-tree=$(readlink -f "$CVMINIT_EXTRA_TREE")")
    echo "build-image: extra tree: $CVMINIT_EXTRA_TREE" >&2
fi

# The join service: its address goes to image/mkosi.finalize, its key into an extra tree.
join_tree=$out/.join-tree
rm -rf "$join_tree"
[ -n "${JOIN:-}" ] || { echo "build-image: JOIN is not set: give the join service's host:port (make image sets a development default)" >&2; exit 1; }
[ -n "${JOIN_KEY:-}" ] && [ -f "$JOIN_KEY" ] || { echo "build-image: JOIN_KEY='${JOIN_KEY:-}': no such file (the join service's public key, PEM)" >&2; exit 1; }
if ! openssl pkey -pubin -in "$JOIN_KEY" -noout -text 2>/dev/null | grep -q 'NIST CURVE: P-256'; then
    echo "build-image: JOIN_KEY=$JOIN_KEY is not a P-256 public key in PEM (openssl pkey -pubout of the service's key)" >&2
    exit 1
fi
install -D -m 0644 "$JOIN_KEY" "$join_tree/etc/cvminit/join-service.pub"
args+=("--extra-tree=$join_tree" "--environment=CVMINIT_JOIN=$JOIN")
echo "build-image: join service: $JOIN, key $JOIN_KEY (sha256 $(openssl pkey -pubin -in "$JOIN_KEY" -outform DER | sha256sum | cut -d' ' -f1) of its DER)" >&2
dropin=$out/.repart-state-size
rm -rf "$dropin"
if [ -n "${CVMINIT_STATE_SIZE:-}" ]; then
    # A repart drop-in for 30-state.conf, in an extra definitions directory under build/.
    mkdir -p "$dropin/30-state.conf.d"
    printf '[Partition]\nSizeMinBytes=%s\nSizeMaxBytes=%s\n' "$CVMINIT_STATE_SIZE" "$CVMINIT_STATE_SIZE" \
        >"$dropin/30-state.conf.d/50-size.conf"
    args+=("--repart-directory=$dropin")
fi

# No TTY needed: stdin from /dev/null, mkosi's output is plain text when not on a terminal.
PYTHONPATH=$tree/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH} \
nice -n 10 "$python" -m mkosi \
    --directory="$repo" \
    --tools-tree="$tree" \
    --package-cache-dir="$cache/mkosi-packages" \
    --workspace-directory="$cache/mkosi-workspace" \
    --output-directory="$out" \
    "${args[@]}" \
    "$@" \
    --force build </dev/null

end=$(date +%s)

# --- reference values ---------------------------------------------------------------------------
disk=$out/cvminit.raw
uki=$out/cvminit.efi
[ -f "$disk" ] && [ -f "$uki" ] || { echo "build-image: outputs missing" >&2; exit 1; }
# The initrd's reference slot gets the command line (with the root hash), the config's hash
# and the root's identity, in the split UKI and in the disk's ESP. A given initrd
# (CVMINIT_INITRD) has no slot: its boots are not compared locally.
if [ -z "$initrd" ] && [ -x "$repo/${CVMINIT_INIT:-build/cvminit}" ]; then
    "$python" "$repo/image/uki-refs.py" --uki "$uki" --disk "$disk" --print | sed 's/^/build-image: reference: /'
fi

# --- report -------------------------------------------------------------------------------------

# The UKI's embedded command line (.cmdline PE section) and the roothash= on it; and a check
# that the modules in the initrd were made for the UKI's kernel (.uname): an initrd made against
# another kernel (e.g. the QEMU test kernel) would boot without its modules.
cmdline=$("$python" - "$uki" <<'EOF'
import re, struct, sys
data = open(sys.argv[1], "rb").read()
pe = struct.unpack_from("<I", data, 0x3C)[0]
nsec = struct.unpack_from("<H", data, pe + 6)[0]
optsize = struct.unpack_from("<H", data, pe + 20)[0]
table = pe + 24 + optsize
sections, content = [], {}
for i in range(nsec):
    name, vsize, _, rawsize, rawptr = struct.unpack_from("<8sIIII", data, table + 40 * i)
    name = name.rstrip(b"\0").decode()
    sections.append(f"{name}={vsize}")
    content[name] = data[rawptr:rawptr + min(vsize, rawsize)]
print("build-image: UKI sections (bytes): " + " ".join(sections), file=sys.stderr)
print(content[".cmdline"].rstrip(b"\0").decode().strip())

uname = content[".uname"].rstrip(b"\0").decode().strip()
initrd, pos, versions = content.get(".initrd", b""), 0, set()
while pos + 110 <= len(initrd):
    if initrd[pos:pos + 6] not in (b"070701", b"070702"):
        if initrd[pos:pos + 4] == bytes(4):      # padding between concatenated archives
            pos += 4
            continue
        print("build-image: initrd not a plain newc cpio; kernel version of its modules not checked",
              file=sys.stderr)
        break
    fields = [int(initrd[pos + 6 + 8 * k:pos + 14 + 8 * k], 16) for k in range(13)]
    filesize, namesize = fields[6], fields[11]
    name = initrd[pos + 110:pos + 110 + namesize - 1].decode(errors="replace")
    pos = (pos + 110 + namesize + 3) & ~3
    pos = (pos + filesize + 3) & ~3
    m = re.match(r"(?:\./)?(?:usr/)?lib/modules/([^/]+)(?:/|$)", name)
    if m:
        versions.add(m.group(1))
if versions - {uname}:
    print(f"build-image: ERROR: the initrd has modules for {sorted(versions)}, the UKI's kernel is {uname}",
          file=sys.stderr)
    sys.exit(2)
EOF
)
roothash=$(printf '%s\n' "$cmdline" | tr ' ' '\n' | sed -n 's/^roothash=//p')
printf '%s\n' "$roothash" >"$out/cvminit.roothash"

echo "build-image: done in $((end - start)) s (mkosi $(cat "$tree/.mkosi-version" 2>/dev/null), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
echo "build-image: disk    $disk $(du -h --apparent-size "$disk" | cut -f1) (allocated $(du -h "$disk" | cut -f1))"
echo "build-image: UKI     $uki $(du -h --apparent-size "$uki" | cut -f1) sha256 $(sha256sum "$uki" | cut -d' ' -f1)"
echo "build-image: cmdline $cmdline"
echo "build-image: roothash $roothash"
# Partition table (GPT), read directly: the host may have no sfdisk.
"$python" - "$disk" <<'EOF'
import struct, sys, uuid
with open(sys.argv[1], "rb") as f:
    f.seek(512)
    hdr = f.read(92)
    lba, count, size = struct.unpack_from("<QII", hdr, 72)
    f.seek(lba * 512)
    table = f.read(count * size)
for i in range(count):
    e = table[i * size:(i + 1) * size]
    if e[:16] == bytes(16):
        continue
    first, last = struct.unpack_from("<QQ", e, 32)
    name = e[56:128].decode("utf-16-le").rstrip("\0")
    mib = (last - first + 1) * 512 / 2**20
    print(f"build-image:   {i + 1} {name:<20} {mib:7.1f} MiB  type {uuid.UUID(bytes_le=e[:16])}"
          f"  uuid {uuid.UUID(bytes_le=e[16:32])}")
EOF
