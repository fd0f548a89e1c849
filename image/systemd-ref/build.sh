#!/bin/bash
# Build the systemd-based reference node for the benchmark into build/bench/systemd-ref/:
#   1. its initrd: mkosi's default initrd config plus initrd/extra (initrd/mkosi.conf) and
#      the bench's CPU sampler (BENCH_TREE's /usr/lib/bench: it starts in the initrd)
#   2. the disk: mkosi.conf here, that initrd in the UKI (with mkosi's kernel modules initrd)
#   3. 256 MiB of free space appended (the cvminit image's state size), where systemd-repart
#      makes the LUKS2 state partition on first boot.
# Same trixie tools tree, mkosi, package cache and build lock as image/build-image.sh.
#
# Environment:
#   BENCH_TREE          a directory laid over the root (the bench's /usr/bin/kubelet probe and
#                       the kubelet stand-in); required
#   SYSTEMD_REF_OUT     output directory (default build/bench/systemd-ref)
#   SYSTEMD_REF_STATE   free space for the state partition (default 256M)
#   PYTHON, XDG_CACHE_HOME, SOURCE_DATE_EPOCH as for image/build-image.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cvminit
out=${SYSTEMD_REF_OUT:-$repo/build/bench/systemd-ref}
python=${PYTHON:-python3}
state=${SYSTEMD_REF_STATE:-256M}
: "${BENCH_TREE:?BENCH_TREE must name the tree with /usr/bin/kubelet}"
[ -x "$BENCH_TREE/usr/bin/kubelet" ] || { echo "systemd-ref: $BENCH_TREE/usr/bin/kubelet missing" >&2; exit 1; }
[ -x "$BENCH_TREE/usr/lib/bench/cpu-sampler" ] || { echo "systemd-ref: $BENCH_TREE/usr/lib/bench/cpu-sampler missing" >&2; exit 1; }

start=$(date +%s)
tree=$("$repo/image/tools-tree.sh" | tail -n 1)
[ -d "$tree/usr/lib/python3/dist-packages/mkosi" ] || { echo "systemd-ref: no mkosi in $tree" >&2; exit 1; }
mkdir -p "$out" "$cache/mkosi-packages" "$cache/mkosi-workspace"

# One image build at a time on this machine (shared package cache, see build-image.sh).
exec 9>"$cache/.image.lock"
if ! flock -n 9; then
    echo "systemd-ref: waiting for another image build to finish" >&2
    flock 9
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}

mkosi() {
    PYTHONPATH=$tree/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH} \
    nice -n 10 "$python" -m mkosi \
        --tools-tree="$tree" \
        --package-cache-dir="$cache/mkosi-packages" \
        --workspace-directory="$cache/mkosi-workspace" \
        --output-directory="$out" \
        "$@" </dev/null
}

echo "systemd-ref: 1/3 initrd" >&2
mkosi --directory="$here/initrd" --distribution=debian --release=trixie \
    --extra-tree="$(readlink -f "$BENCH_TREE")/usr/lib/bench:/usr/lib/bench" --force build
initrd=$out/initrd.cpio.zst
[ -f "$initrd" ] || initrd=$(ls "$out"/initrd*.cpio* | head -n 1)

echo "systemd-ref: 2/3 disk image" >&2
mkosi --directory="$here" --initrd="$initrd" --extra-tree="$(readlink -f "$BENCH_TREE")" --force build

echo "systemd-ref: 3/3 $state of free space for the state partition" >&2
disk=$out/systemd-ref.raw
truncate -s "+$state" "$disk"
# Move the backup GPT to the new end of the disk and let the table cover the new space, so
# that systemd-repart finds it free (the firmware and the kernel then see a consistent GPT).
"$python" - "$disk" <<'PY'
import struct, sys, zlib
path = sys.argv[1]
with open(path, "r+b") as f:
    f.seek(0, 2)
    nlba = f.tell() // 512
    f.seek(512)
    hdr = bytearray(f.read(512))
    assert hdr[:8] == b"EFI PART", "no GPT"
    hsize = struct.unpack_from("<I", hdr, 12)[0]
    old_backup = struct.unpack_from("<Q", hdr, 32)[0]
    entries_lba, count, esize = struct.unpack_from("<QII", hdr, 72)
    f.seek(entries_lba * 512)
    entries = f.read(count * esize)
    ent_sectors = (count * esize + 511) // 512
    def sealed(h):
        struct.pack_into("<I", h, 16, 0)
        struct.pack_into("<I", h, 16, zlib.crc32(bytes(h[:hsize])))
        return bytes(h)
    struct.pack_into("<Q", hdr, 32, nlba - 1)                   # backup header LBA
    struct.pack_into("<Q", hdr, 48, nlba - 2 - ent_sectors)     # last usable LBA
    primary = sealed(hdr)
    backup = bytearray(hdr)
    struct.pack_into("<QQ", backup, 24, nlba - 1, 1)            # this, other
    struct.pack_into("<Q", backup, 72, nlba - 1 - ent_sectors)  # its entries
    backup = sealed(backup)
    f.seek(512); f.write(primary)
    f.seek((nlba - 1 - ent_sectors) * 512); f.write(entries)
    f.seek((nlba - 1) * 512); f.write(backup)
    f.seek(old_backup * 512); f.write(bytes(512))              # the stale one
print(f"systemd-ref: GPT now ends at LBA {nlba - 1}", file=sys.stderr)
PY

end=$(date +%s)
echo "systemd-ref: done in $((end - start)) s: $disk $(du -h --apparent-size "$disk" | cut -f1)," \
     "UKI $(du -h --apparent-size "$out/systemd-ref.efi" | cut -f1), initrd $initrd"
