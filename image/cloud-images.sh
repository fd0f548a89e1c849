#!/bin/bash
# make cloud-images: the node image (build/image/cvminit.raw) in each cloud's upload format,
# made with Debian's qemu-img and GNU tar only, and each one checked before it is kept.
#
#   image/cloud-images.sh [IMAGE_DIR [OUT_DIR]]     (defaults build/image, build/cloud)
#
# OUT_DIR/azure/cvminit.vhd     fixed VHD, virtual size a whole number of MiB (Azure's rule)
# OUT_DIR/gce/cvminit.tar.gz    disk.raw (a whole number of GiB) in an oldgnu sparse tar, gzip
# OUT_DIR/aws/cvminit.vmdk      stream-optimised VMDK (EC2 import-snapshot)
# OUT_DIR/measurements.json     cvm-measure predict for the image's UKI (sha256 bank), and
#                               measurements-sha384.json; their format is cvm-measure's
# OUT_DIR/join-measurements.json   the same with PCR 11 at leave-initrd, for cvm-join
# OUT_DIR/SHA256SUMS, OUT_DIR/SIZES   sha256 and size (bytes, virtual and in the file) of each
#
# The disk is padded at its end (zeros) to the size each cloud accepts; the partitions are
# where they were, only the GPT's backup copy is no longer in the last sector, as on any
# cloud disk made larger than its image. Checks: qemu-img info (format, virtual size),
# qemu-img compare against the padded raw disk (the same bits), qemu-img check (VMDK), the
# VHD footer read here (cookie, fixed type, current size), the tar listing (one member
# disk.raw of the right size). Environment: CVM_MEASURE (default build/cvm-measure).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=${1:-$repo/build/image}
out=${2:-$repo/build/cloud}
measure=${CVM_MEASURE:-$repo/build/cvm-measure}
raw=$src/cvminit.raw
uki=$src/cvminit.efi
MiB=$((1 << 20))
GiB=$((1 << 30))

die() { echo "cloud-images: error: $*" >&2; exit 1; }
log() { echo "cloud-images: $*" >&2; }

for f in "$raw" "$uki"; do
    [ -f "$f" ] || die "$f is missing: run 'make image'"
done
[ -x "$measure" ] || die "$measure is missing: run 'make build/cvm-measure'"
command -v qemu-img >/dev/null || die "qemu-img not found (apt-get install qemu-utils)"
tar --version | head -n 1 | grep -q 'GNU tar' || die "tar is not GNU tar"

tmp=$out/.tmp
rm -rf "$tmp" "$out/azure" "$out/gce" "$out/aws"
rm -f "$out"/measurements*.json "$out/join-measurements.json" "$out/SHA256SUMS" "$out/SIZES"
mkdir -p "$tmp" "$out/azure" "$out/gce" "$out/aws"

# The virtual size a disk of $1 bytes gets when padded to a multiple of $2.
round_up() { echo $((($1 + $2 - 1) / $2 * $2)); }

# A sparse copy of the raw disk, padded with zeros to $2 bytes.
padded() {
    cp --sparse=always "$raw" "$1"
    qemu-img resize -q -f raw "$1" "$2"
}

# qemu-img info's virtual size and format of $1, read as format $2, checked against $2 and
# $3. (A fixed VHD has its footer only at the end, where qemu-img does not probe: unnamed,
# it is taken for raw.)
check_info() {
    local info
    info=$(qemu-img info -f "$2" --output=json "$1")
    python3 - "$1" "$2" "$3" "$info" <<'EOF'
import json, sys
path, fmt, size, info = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
if info["format"] != fmt or info["virtual-size"] != size:
    sys.exit(f"cloud-images: error: {path}: qemu-img info says {info['format']}, "
             f"{info['virtual-size']} bytes; expected {fmt}, {size}")
EOF
}

# Seconds since $1 (date +%s.%N), one decimal.
since() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

size=$(stat -c %s "$raw")
log "image $raw: $size bytes ($(du -h "$raw" | cut -f1) allocated)"

# --- Azure: fixed VHD, virtual size aligned to 1 MiB -------------------------------------------
azure_size=$(round_up "$size" $MiB)
vhd=$out/azure/cvminit.vhd
padded "$tmp/azure.raw" "$azure_size"
t0=$(date +%s.%N)
# force_size: the footer's size is the disk's size, not a CHS-rounded one (Azure's rule).
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$tmp/azure.raw" "$vhd"
log "azure: $vhd in $(since "$t0") s"
check_info "$vhd" vpc "$azure_size"
qemu-img compare -q -f raw -F vpc "$tmp/azure.raw" "$vhd" || die "$vhd differs from the image"
python3 "$repo/image/vhd-footer.py" --expect-size "$azure_size" "$vhd" >&2
rm -f "$tmp/azure.raw"

# --- GCE: disk.raw in a gzip'd tar (oldgnu format, sparse) ------------------------------------
gce_size=$(round_up "$size" $GiB)
mkdir -p "$tmp/gce"
padded "$tmp/gce/disk.raw" "$gce_size"
t0=$(date +%s.%N)
tar --format=oldgnu -S -C "$tmp/gce" -czf "$out/gce/cvminit.tar.gz" disk.raw
log "gce: $out/gce/cvminit.tar.gz in $(since "$t0") s"
listing=$(tar -tvzf "$out/gce/cvminit.tar.gz")
[ "$(printf '%s\n' "$listing" | wc -l)" = 1 ] || die "the GCE tar holds more than disk.raw: $listing"
read -r _ _ lsize _ _ lname <<<"$listing"
[ "$lname" = disk.raw ] && [ "$lsize" = "$gce_size" ] ||
    die "the GCE tar lists '$listing', expected disk.raw of $gce_size bytes"
want=$(sha256sum <"$tmp/gce/disk.raw" | cut -d' ' -f1)
got=$(tar -xzOf "$out/gce/cvminit.tar.gz" disk.raw | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || die "disk.raw in the GCE tar has sha256 $got, the padded image $want"
rm -rf "$tmp/gce"

# --- AWS: stream-optimised VMDK ------------------------------------------------------------------
vmdk=$out/aws/cvminit.vmdk
t0=$(date +%s.%N)
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$raw" "$vmdk"
log "aws: $vmdk in $(since "$t0") s"
check_info "$vmdk" vmdk "$size"
qemu-img check -q -f vmdk "$vmdk" || die "qemu-img check $vmdk failed"
qemu-img compare -q -f raw -F vmdk "$raw" "$vmdk" || die "$vmdk differs from the image"

# --- measurements and sums ------------------------------------------------------------------------
"$measure" predict --uki "$uki" --bank sha256 --json "$out/measurements.json" >/dev/null
"$measure" predict --uki "$uki" --bank sha384 --json "$out/measurements-sha384.json" >/dev/null
# What cvm-join holds: PCR 11 before `ready` (a node joins before kubelet starts).
"$measure" predict --uki "$uki" --bank sha256 --phase leave-initrd \
    --json "$out/join-measurements.json" >/dev/null
rmdir "$tmp"
(
    cd "$out"
    files=(azure/cvminit.vhd gce/cvminit.tar.gz aws/cvminit.vmdk measurements.json
           measurements-sha384.json join-measurements.json)
    sha256sum "${files[@]}" >SHA256SUMS.tmp
    mv SHA256SUMS.tmp SHA256SUMS
    {
        printf '# file bytes-in-file virtual-disk-bytes\n'
        printf '%s %s %s\n' azure/cvminit.vhd "$(stat -c %s azure/cvminit.vhd)" "$azure_size"
        printf '%s %s %s\n' gce/cvminit.tar.gz "$(stat -c %s gce/cvminit.tar.gz)" "$gce_size"
        printf '%s %s %s\n' aws/cvminit.vmdk "$(stat -c %s aws/cvminit.vmdk)" "$size"
    } >SIZES
)
log "done: $out ($(tr '\n' ';' <"$out/SIZES"))"
