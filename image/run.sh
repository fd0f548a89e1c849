#!/bin/bash
# make run: boots the node image (build/image/cvminit.raw: OVMF → UKI → cvminit) under
# QEMU (TCG) with swtpm, the serial console on this terminal. The disk, the OVMF variables
# and the TPM state persist in build/run/ across runs, so a reboot keeps the TPM and /var.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
image=$root/build/image/cvminit.raw
run=$root/build/run
mkdir -p "$run/tpm"

[ -f "$image" ] || { echo "run: $image is missing: run 'make image'" >&2; exit 1; }
# A new image replaces the disk (and with it the state partition); say so. The image is
# known by its UKI's sha256: the UKI carries cvminit, its initrd and the root hash (which
# covers the root), and the rest of the disk is the empty state partition.
uki=$root/build/image/cvminit.efi
[ -f "$uki" ] || { echo "run: $uki is missing: run 'make image'" >&2; exit 1; }
fingerprint=$(sha256sum "$uki" | cut -d' ' -f1)
if [ ! -f "$run/disk.raw" ] || [ "$fingerprint" != "$(cat "$run/disk.raw.from" 2>/dev/null)" ]; then
	if [ -f "$run/disk.raw" ]; then
		echo "run: the image changed: build/run/disk.raw (and its state partition) is replaced" >&2
	fi
	cp --sparse=always "$image" "$run/disk.raw.tmp"
	mv "$run/disk.raw.tmp" "$run/disk.raw"
	echo "$fingerprint" > "$run/disk.raw.from"
fi
[ -f "$run/OVMF_VARS.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$run/OVMF_VARS.fd"

# swtpm ends with the VM (--terminate); a stale one from an earlier run is stopped.
if [ -f "$run/swtpm.pid" ]; then
	kill "$(cat "$run/swtpm.pid")" 2>/dev/null || true
	rm -f "$run/swtpm.pid"
fi
rm -f "$run/swtpm.sock" "$run/qmp.sock"
swtpm socket --tpm2 --tpmstate dir="$run/tpm" --ctrl type=unixio,path="$run/swtpm.sock" \
	--terminate --daemon --pid file="$run/swtpm.pid" --log file="$run/swtpm.log"
for _ in $(seq 50); do [ -S "$run/swtpm.sock" ] && break; sleep 0.1; done

cat >&2 <<MSG
== cvminit node under QEMU (TCG, OVMF, UKI, swtpm)
   disk     $run/disk.raw (copy of build/image/cvminit.raw; persistent)
   UKI      $root/build/image/cvminit.efi
   TPM      $run/tpm (persistent)
   QMP      $run/qmp.sock
   Stop: Ctrl-a x (hard), or power off cleanly from another terminal:
     echo '{"execute":"qmp_capabilities"}{"execute":"system_powerdown"}' | socat - UNIX-CONNECT:$run/qmp.sock
MSG

# thread=single: see the note in tests/qemu/vm.py (int3 oops with multi-threaded TCG)
exec qemu-system-x86_64 -name cvminit -machine q35 -accel tcg,thread=single -cpu max -m 2048 -smp 2 \
	-nographic -no-user-config -nic none -vga none \
	-drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on \
	-drive if=pflash,format=raw,unit=1,file="$run/OVMF_VARS.fd" \
	-chardev socket,id=chrtpm,path="$run/swtpm.sock" \
	-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0 \
	-drive file="$run/disk.raw",format=raw,if=virtio \
	-serial mon:stdio -qmp unix:"$run/qmp.sock",server=on,wait=off
