#!/usr/bin/python3
"""Fill in the reference values of a cvminit UKI (and of the disk that carries it).

    image/uki-refs.py --uki UKI [--disk DISK] [--cmdline TEXT [--keep-references]] [--print]

cvminit compares the kernel command line, its config file and the verified root it is
about to use with reference values carried by its initrd (/etc/cvminit/reference, see
init/reference.h). The root hash is known only once the root partition exists, which is
after mkosi has built the initrd; so the initrd carries a fixed-size slot (made by
image/mkosi.finalize) and this tool writes the values into it, in place, inside the
finished UKI's .initrd section. Nothing else in the UKI moves; the initrd is an
uncompressed newc cpio, whose file data is stored verbatim and has no checksum.

  --uki UKI       the UKI to fill in (rewritten in place)
  --disk DISK     also write the filled-in UKI to the disk's ESP as
                  \\EFI\\BOOT\\BOOTX64.EFI (mtools: the host has no vfat)
  --cmdline TEXT  first replace the UKI's embedded command line with TEXT (it must fit in
                  the .cmdline section's file space); tests use it to make a UKI for the
                  same disk whose measurements differ but whose references agree
  --keep-references  with --cmdline: leave the reference values as they are (tests use it
                  to make a UKI that drifts from its own references)
  --print         print the reference file written

The values are formed and written by `cvm-measure refs --write` (build/cvm-measure, or
$CVM_MEASURE), (made here with make when missing), with the functions cvminit measures them with
(measured-boot/identity.c):
the command line as systemd-stub passes it on, the sha256 of /etc/cvminit/cvminit.conf in
the initrd ("none" when absent), the root's verity:<roothash>:<uuid>:<uuid>:erofs. This
tool only edits the .cmdline section (--cmdline) and copies the UKI into the ESP (--disk).
Standard library only, plus mcopy for --disk.
"""

import argparse
import os
import struct
import subprocess
import sys
import uuid

PROG = "uki-refs"
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CVM_MEASURE = os.environ.get("CVM_MEASURE") or os.path.join(REPO, "build", "cvm-measure")


def die(msg):
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    sys.exit(1)


class Section:
    def __init__(self, data, table, i):
        off = table + 40 * i
        self.hdr = off
        name, self.vsize, self.vaddr, self.rawsize, self.rawptr = struct.unpack_from(
            "<8sIIII", data, off)
        self.name = name.rstrip(b"\0").decode()


def sections(data):
    if data[:2] != b"MZ":
        die("not a PE file (no MZ header)")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0":
        die("not a PE file (no PE signature)")
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    optsize = struct.unpack_from("<H", data, pe + 20)[0]
    table = pe + 24 + optsize
    return {s.name: s for s in (Section(data, table, i) for i in range(nsec))}


def replace_cmdline(data, sec, text):
    raw = text.encode()
    if b"\0" in raw or len(raw) + 1 > sec[".cmdline"].rawsize:
        die(f"--cmdline: {len(raw)} bytes do not fit the .cmdline section "
            f"({sec['.cmdline'].rawsize} bytes of file space)")
    s = sec[".cmdline"]
    data[s.rawptr:s.rawptr + s.rawsize] = raw + b"\0" * (s.rawsize - len(raw))
    # VirtualSize: the text and its NUL, as ukify writes it.
    struct.pack_into("<I", data, s.hdr + 8, len(raw) + 1)


def esp_offset(disk):
    with open(disk, "rb") as f:
        f.seek(512)
        hdr = f.read(92)
        if hdr[:8] != b"EFI PART":
            die(f"{disk}: no GPT header")
        lba, count, size = struct.unpack_from("<QII", hdr, 72)
        f.seek(lba * 512)
        table = f.read(count * size)
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if uuid.UUID(bytes_le=e[:16]) == ESP_TYPE:
            return struct.unpack_from("<Q", e, 32)[0] * 512
    die(f"{disk}: no ESP partition")


def main():
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[1])
    ap.add_argument("--uki", required=True)
    ap.add_argument("--disk")
    ap.add_argument("--cmdline")
    ap.add_argument("--keep-references", action="store_true")
    ap.add_argument("--print", action="store_true")
    a = ap.parse_args()

    if a.keep_references and a.cmdline is None:
        die("--keep-references needs --cmdline")
    if a.cmdline is not None:
        data = bytearray(open(a.uki, "rb").read())
        sec = sections(data)
        if ".cmdline" not in sec:
            die(f"{a.uki}: no .cmdline section")
        replace_cmdline(data, sec, a.cmdline)
        with open(a.uki, "wb") as f:
            f.write(data)
    text = ""
    if not a.keep_references:
        # Callers that build only cvminit (the benchmark) get the tool built here.
        if not os.access(CVM_MEASURE, os.X_OK) and "CVM_MEASURE" not in os.environ:
            subprocess.run(["make", "-C", REPO, "build/cvm-measure"], check=True,
                           stdout=subprocess.DEVNULL)
        r = subprocess.run([CVM_MEASURE, "refs", "--uki", a.uki, "--write"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            die(f"{CVM_MEASURE} refs: {r.stderr.strip() or r.stdout.strip()}")
        text = r.stdout
    if a.print:
        sys.stdout.write(text)

    if a.disk:
        r = subprocess.run(["mcopy", "-o", "-i", f"{a.disk}@@{esp_offset(a.disk)}", a.uki,
                            "::/EFI/BOOT/BOOTX64.EFI"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            die(f"mcopy into the ESP of {a.disk} failed: {r.stdout.strip()}")
    print(f"{PROG}: {a.uki}: reference values "
          + ("kept" if a.keep_references else f"written ({len(text)} bytes)")
          + (f"; ESP of {a.disk} updated" if a.disk else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
