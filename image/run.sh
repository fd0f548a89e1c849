#!/bin/bash
# make run: boots cvminit under QEMU (TCG) with OVMF and swtpm, the serial console on
# this terminal. TPM state and OVMF variables persist in build/run/ across runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/build/run
mkdir -p "$run/tpm"

kernel=$("$root/image/kernel.sh")
kver=$(basename "$kernel" | sed 's/^vmlinuz-//')
python3 "$root/image/mkinitrd.py" --init "$root/build/cvminit" \
	--modules-list "$root/init/modules.list" \
	--kmod-dir "$root/build/kernel/current/lib/modules/$kver" \
	--output "$run/initrd.cpio" >&2
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
== cvminit under QEMU (TCG, OVMF, swtpm)
   kernel   $kernel
   initrd   $run/initrd.cpio
   cvminit  $root/build/cvminit
   TPM      $run/tpm (persistent)
   QMP      $run/qmp.sock
   Stop: Ctrl-a x (hard), or power off cleanly from another terminal:
     echo '{"execute":"qmp_capabilities"}{"execute":"system_powerdown"}' | socat - UNIX-CONNECT:$run/qmp.sock
MSG

exec qemu-system-x86_64 -name cvminit -machine q35,accel=tcg -cpu max -m 1024 -smp 2 \
	-nographic -no-user-config -nic none -vga none \
	-drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on \
	-drive if=pflash,format=raw,unit=1,file="$run/OVMF_VARS.fd" \
	-chardev socket,id=chrtpm,path="$run/swtpm.sock" \
	-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0 \
	-kernel "$kernel" -initrd "$run/initrd.cpio" \
	-append "console=ttyS0,115200 panic=-1 ${CMDLINE:-}" \
	-serial mon:stdio -qmp unix:"$run/qmp.sock",server=on,wait=off
