#!/bin/sh
# Regenerates the seed corpora of tests/fuzz/corpus/: headers made by cryptsetup, tokens,
# PE images and TPMT_PUBLIC blobs from our writers (mkseeds.c), newc archives made by cpio,
# and, given a QEMU console of a node test (build/test-work/node_boot2/console.log), the
# CEL and firmware logs the kubelet stand-in prints there in base64.
#   tests/fuzz/mkseeds.sh [console.log]
# Small files only: the fuzzers read every seed on every start.
set -eu
cd "$(dirname "$0")/../.."
C=tests/fuzz/corpus
T=$(mktemp -d /tmp/cvminit-seeds.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p $C/luks2 $C/luks2_diff $C/token $C/pe $C/platform $C/cpio $C/cel $C/tcglog \
	$C/cmdline $C/config $C/reference

gcc -std=gnu11 -O1 -Wall -Wextra -Werror -o "$T/mkseeds" tests/fuzz/mkseeds.c \
	measured-boot/seal.c measured-boot/tpm.c measured-boot/digest.c measured-boot/eventlog.c \
	measured-boot/replay.c init/log.c \
	$(pkg-config --cflags --libs tss2-esys tss2-sys tss2-mu tss2-rc tss2-tcti-device json-c) -lmbedcrypto
"$T/mkseeds" $C

# LUKS2 as init/state.c formats it (aes-xts-plain64 512-bit, 4096-byte sectors, one pbkdf2
# keyslot of 1000 iterations, our token), and the integrity variant. Each seed is the
# 32 KiB header area plus the byte that tells the target to fix both checksums (3); the
# plain area (no byte) keeps the checksums as cryptsetup wrote them.
luks() { # name, extra luksFormat options
	truncate -s 20M "$T/disk"
	head -c 64 /dev/urandom > "$T/key"
	cryptsetup luksFormat -q --type luks2 --cipher aes-xts-plain64 --key-size 512 \
		--sector-size 4096 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash sha256 \
		--key-file "$T/key" "$@" "$T/disk" 2>/dev/null
	cryptsetup token import --token-id 0 --json-file $C/token/sealed.json "$T/disk"
}
luks && head -c 32768 "$T/disk" > $C/luks2/cvminit-raw
{ cat $C/luks2/cvminit-raw; printf '\003'; } > $C/luks2/cvminit-fixsums
if luks --integrity hmac-sha256 --integrity-no-wipe 2>/dev/null; then
	{ head -c 32768 "$T/disk"; printf '\003'; } > $C/luks2/integrity-fixsums
fi
rm -f "$T/disk"
cp $C/luks2/* $C/luks2_diff/

# newc archives: the config as the image's initrd carries it, and two archives back to back
# with NUL padding between them (the kernel's unpacker skips it), the second replacing it.
mkdir -p "$T/a/etc/cvminit" "$T/b/etc/cvminit"
cp rootfs-overlay/etc/cvminit/cvminit.conf "$T/a/etc/cvminit/"
printf 'service x\n\texec /bin/true\n' > "$T/b/etc/cvminit/cvminit.conf"
(cd "$T/a" && find . | sort | cpio -o -H newc --quiet) > $C/cpio/initrd
(cd "$T/b" && printf 'etc/cvminit/cvminit.conf\n' | cpio -o -H newc --quiet) > "$T/b.cpio"
{ cat $C/cpio/initrd; head -c 512 /dev/zero; cat "$T/b.cpio"; } > $C/cpio/two-archives

cp rootfs-overlay/etc/cvminit/cvminit.conf $C/config/node.conf

if [ $# -ge 1 ]; then
	python3 - "$1" $C <<'PY'
import base64, re, sys
files = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"kubelet-standin: file (\S+) (\S+)$", line.rstrip())
    if m:
        files.setdefault(m.group(1), []).append(m.group(2))
want = {"/run/log/cvminit/measure.log": "cel/boot.log",
        "/run/log/cvminit/firmware.log": "tcglog/ovmf.bin"}
for path, name in want.items():
    if path in files:
        open(f"{sys.argv[2]}/{name}", "wb").write(base64.b64decode("".join(files[path])))
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"\] Kernel command line: (.*)$", line.rstrip())
    if m:
        open(f"{sys.argv[2]}/cmdline/boot", "w").write(m.group(1))
        break
PY
fi
