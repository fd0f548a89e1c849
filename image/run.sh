#!/bin/bash
# make run: boots the node image (build/image/cvminit.raw: OVMF → UKI → cvminit) under
# QEMU (TCG) with swtpm, the serial console on this terminal. The disk, the OVMF variables
# and the TPM state persist in build/run/ across runs, so a reboot keeps the TPM and /var.
#
# The join (docs/attestation.md, "Join"): the vTPM is manufactured with an EK certificate
# from a local CA (build/run/ek-ca), and a development cvm-join runs on 127.0.0.1 with the
# development key (build/join-dev/join-service.pem, RUN_JOIN_KEY to override), the image's
# join-measurements.json, that CA and a demo bundle (build/run/join/); QEMU's user network
# forwards the image's join address (JOIN= of its build) to it, one socat per connection.
# It stops with the VM; its log is build/run/cvm-join.log. An image built for another
# service's key gets no cvm-join here (said so): its node retries, kubelet never starts.
#
# CVM=snp or CVM=tdx (make run CVM=snp): the same image as an AMD SEV-SNP or Intel TDX guest
# under KVM, for an operator with such a host (docs/clouds.md). Refused, saying why, unless
# the host has: a usable /dev/kvm; SNP (kvm_amd's sev_snp) or TDX (kvm_intel's tdx) enabled
# in KVM; a QEMU with the guest object (sev-snp-guest: QEMU >= 9.1, Debian trixie's 10.0;
# tdx-guest: QEMU >= 10.1); a unified OVMF that carries the SNP or TDX metadata (Debian
# trixie's ovmf: /usr/share/ovmf/OVMF.fd; an SNP guest cannot use the split pflash images).
# Overrides: QEMU (the binary), CVM_FIRMWARE, CVM_CBITPOS (SNP's C-bit, default 51), and for
# tests/image/run.py only, CVM_SYS and CVM_KVM (a fake /sys and /dev/kvm: the real ones
# cannot show SNP or TDX here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
image=$root/build/image/cvminit.raw
# RUN_DIR: another directory for the VM's persistent files (the tests' make-run scenario).
run=${RUN_DIR:-$root/build/run}
qemu=${QEMU:-qemu-system-x86_64}
cvm=${CVM:-}

refuse() {
	echo "run: CVM=$cvm refused: $*" >&2
	exit 3
}

# The guest type's host checks, in order; the first that fails refuses the launch.
cvm_check() {
	local sys=${CVM_SYS:-/sys} kvm=${CVM_KVM:-/dev/kvm} param want obj mod major minor
	case "$cvm" in
	snp) mod=kvm_amd param=sev_snp want=9.1 obj=sev-snp-guest ;;
	tdx) mod=kvm_intel param=tdx want=10.1 obj=tdx-guest ;;
	*) echo "run: CVM=$cvm: expected snp or tdx" >&2; exit 2 ;;
	esac
	[ -c "$kvm" ] || refuse "no KVM ($kvm is missing): a confidential guest needs KVM, TCG cannot run one"
	[ -r "$kvm" ] && [ -w "$kvm" ] || refuse "no usable KVM: $kvm is not readable and writable for $(id -un)"
	[ -d "$sys/module/$mod" ] ||
		refuse "no ${cvm^^} in KVM: $sys/module/$mod is missing ($mod is not loaded: the host has no ${cvm^^})"
	local value
	value=$(cat "$sys/module/$mod/parameters/$param" 2>/dev/null || echo missing)
	case "$value" in
	Y | y | 1) ;;
	*) refuse "no ${cvm^^} in KVM: $sys/module/$mod/parameters/$param is '$value' (off in the host's kernel or firmware)" ;;
	esac
	command -v "$qemu" >/dev/null || refuse "$qemu not found"
	version=$("$qemu" --version | sed -n 's/^QEMU emulator version \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
	[ -n "$version" ] || refuse "cannot read $qemu's version"
	major=${version%%.*} minor=${version#*.}
	if [ "$major" -lt "${want%%.*}" ] || { [ "$major" = "${want%%.*}" ] && [ "$minor" -lt "${want#*.}" ]; }; then
		refuse "QEMU $version is too old: $obj needs QEMU >= $want (Debian bookworm has 7.2, trixie 10.0)"
	fi
	"$qemu" -object help 2>/dev/null | grep -qw -- "$obj" || refuse "$qemu $version has no $obj object"
	cvm_fw=${CVM_FIRMWARE:-/usr/share/ovmf/OVMF.fd}
	[ -f "$cvm_fw" ] || refuse "no firmware $cvm_fw (Debian trixie's package ovmf has it; or set CVM_FIRMWARE)"
	# The reset vector's GUIDed table names the sections a firmware built for SNP (SEV
	# metadata) or TDX (TDX metadata) has.
	python3 -c '
import sys, uuid
guid = {"snp": "dc886566-984a-4798-a75e-5585a7bf67cc", "tdx": "e47a6535-984a-4798-865e-4685a7bf8ec2"}
sys.exit(0 if uuid.UUID(guid[sys.argv[2]]).bytes_le in open(sys.argv[1], "rb").read() else 1)
' "$cvm_fw" "$cvm" || refuse "$cvm_fw has no ${cvm^^} metadata: not a firmware built for ${cvm^^} guests"
}

if [ -n "$cvm" ]; then
	cvm_check
fi
if [ "${1:-}" = --check ]; then
	# make run checks the host before it builds anything.
	[ -z "$cvm" ] || echo "run: CVM=$cvm: the host has KVM with ${cvm^^}, $qemu $version and $cvm_fw" >&2
	exit 0
fi
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

# A vTPM with an EK certificate, which the join service checks (as a cloud's vTPM has one).
# One made before (without) is replaced, and the disk with it: its state key is sealed to
# the old vTPM.
if [ ! -f "$run/tpm/.ek-cert" ]; then
	if [ -n "$(ls -A "$run/tpm" 2>/dev/null)" ]; then
		echo "run: build/run/tpm has no EK certificate: a new vTPM is made, and the disk (its state is sealed to the old one) is replaced" >&2
		rm -rf "$run/tpm" && mkdir -p "$run/tpm"
		cp --sparse=always "$image" "$run/disk.raw.tmp" && mv "$run/disk.raw.tmp" "$run/disk.raw"
	fi
	mkdir -p "$run/ek-ca"
	printf 'statedir = %s\nsigningkey = %s/signkey.pem\nissuercert = %s/issuercert.pem\ncertserial = %s/certserial\n' \
		"$run/ek-ca" "$run/ek-ca" "$run/ek-ca" "$run/ek-ca" >"$run/swtpm-localca.conf"
	printf 'create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = /etc/swtpm-localca.options\n' \
		"$run/swtpm-localca.conf" >"$run/swtpm_setup.conf"
	swtpm_setup --tpm2 --tpmstate "$run/tpm" --create-ek-cert --pcr-banks sha1,sha256,sha384,sha512 \
		--config "$run/swtpm_setup.conf" --overwrite >"$run/swtpm_setup.log" 2>&1 ||
		{ echo "run: swtpm_setup failed: see $run/swtpm_setup.log" >&2; exit 1; }
	touch "$run/tpm/.ek-cert"
fi

# The join service for the node: the address and key the image was built with (.inputs).
inputs=$root/build/image/.inputs
join_addr=$(tr ' ' '\n' <"$inputs" 2>/dev/null | sed -n 's/^JOIN=\[\(.*\)\]$/\1/p')
join_pub=$(tr ' ' '\n' <"$inputs" 2>/dev/null | sed -n 's/^JOIN_KEY=\[\(.*\)\]$/\1/p')
join_key=${RUN_JOIN_KEY:-$root/build/join-dev/join-service.pem}
join_port=
join_said=none
netdev=user,id=n0,restrict=on
der() { openssl pkey "$@" -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
if [ -z "$join_addr" ] || [ -z "$join_pub" ]; then
	echo "run: build/image/.inputs names no JOIN/JOIN_KEY: no join service (rebuild with make image)" >&2
elif [ ! -f "$join_key" ] || [ "$(der -in "$join_key")" != "$(cd "$root" && der -pubin -in "$join_pub")" ]; then
	echo "run: the image pins the join service key $join_pub; $join_key is not its private key: no join service (RUN_JOIN_KEY=...), the node will not join" >&2
else
	mkdir -p "$run/join"
	[ -f "$run/join/cluster-ca.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-nodes -keyout "$run/join/cluster-ca.key" -out "$run/join/cluster-ca.pem" -days 3650 \
		-subj "/CN=cvminit make run demo cluster CA" 2>/dev/null
	[ -f "$run/join/token" ] || printf '%s.%s\n' "$(openssl rand -hex 3)" "$(openssl rand -hex 8)" >"$run/join/token"
	join_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	"$root/build/cvm-join" --listen "127.0.0.1:$join_port" --key "$join_key" \
		--measurements "$root/build/image/join-measurements.json" \
		--ek-ca "$run/ek-ca/issuercert.pem" --ek-ca "$run/ek-ca/swtpm-localca-rootca-cert.pem" \
		--server https://10.0.2.2:6443 --cluster-ca "$run/join/cluster-ca.pem" \
		--token "$run/join/token" >"$run/cvm-join.log" 2>&1 &
	join_pid=$!
	trap 'kill "$join_pid" 2>/dev/null || true' EXIT
	for _ in $(seq 50); do grep -q listening "$run/cvm-join.log" && break; sleep 0.1; done
	grep -q listening "$run/cvm-join.log" || { echo "run: cvm-join did not start: $(cat "$run/cvm-join.log")" >&2; exit 1; }
	netdev+=",guestfwd=tcp:${join_addr}-cmd:socat - TCP:127.0.0.1:$join_port"
	join_said="cvm-join on 127.0.0.1:$join_port for the node's $join_addr, log $run/cvm-join.log"
fi

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
   join     $join_said
   Stop: Ctrl-a x (hard), or power off cleanly from another terminal:
     echo '{"execute":"qmp_capabilities"}{"execute":"system_powerdown"}' | socat - UNIX-CONNECT:$run/qmp.sock
MSG

if [ -n "$cvm" ]; then
	# Private guest memory (a memfd backend), the firmware as one -bios image (measured into
	# the launch digest). swtpm stays attached: a host TPM, which cvminit's platform rule
	# trusts on SNP/TDX only with tpm=platform in the config (docs/measured-boot.md).
	case "$cvm" in
	snp) guest=(-object "sev-snp-guest,id=cvm0,cbitpos=${CVM_CBITPOS:-51},reduced-phys-bits=1")
	     machine=q35,confidential-guest-support=cvm0,memory-backend=ram0 ;;
	tdx) guest=(-object tdx-guest,id=cvm0)
	     machine=q35,confidential-guest-support=cvm0,memory-backend=ram0,kernel-irqchip=split ;;
	esac
	echo "== $cvm guest under KVM, firmware $cvm_fw" >&2
	exec "$qemu" -name "cvminit-$cvm" -machine "$machine" -accel kvm -cpu host -m 2048 -smp 2 \
		-object memory-backend-memfd,id=ram0,size=2048M,share=true,prealloc=false "${guest[@]}" \
		-bios "$cvm_fw" -nographic -no-user-config -nic none -vga none \
		-chardev socket,id=chrtpm,path="$run/swtpm.sock" \
		-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0 \
		-drive file="$run/disk.raw",format=raw,if=none,id=disk0 \
		-device virtio-blk-pci,drive=disk0,bootindex=0 \
		-serial mon:stdio -qmp unix:"$run/qmp.sock",server=on,wait=off
fi

# thread=single: see the note in tests/qemu/vm.py (int3 oops with multi-threaded TCG).
# The NIC without its option ROM: no network boot option, so PCR 4 stays as predicted. Not
# exec'd: cvm-join is stopped when QEMU exits.
qemu-system-x86_64 -name cvminit -machine q35 -accel tcg,thread=single -cpu max -m 2048 -smp 2 \
	-nographic -no-user-config -nic none -vga none \
	-netdev "$netdev" -device virtio-net-pci,netdev=n0,romfile= \
	-drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on \
	-drive if=pflash,format=raw,unit=1,file="$run/OVMF_VARS.fd" \
	-chardev socket,id=chrtpm,path="$run/swtpm.sock" \
	-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0 \
	-drive file="$run/disk.raw",format=raw,if=virtio \
	-serial mon:stdio -qmp unix:"$run/qmp.sock",server=on,wait=off
