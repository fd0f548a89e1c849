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

The values: the command line is the .cmdline section as systemd-stub passes it on (what
/proc/cmdline shows, less its newline; see stub_cmdline()); the config is the sha256 of
/etc/cvminit/cvminit.conf in the initrd ("none" when absent); the root is
verity:<roothash>:<root partuuid>:<verity partuuid>:erofs, the partuuids being the
roothash's first and last 128 bits (systemd's convention, as in init/root.c).
Standard library only, plus mcopy for --disk.
"""

import argparse
import hashlib
import re
import struct
import subprocess
import sys
import uuid

PROG = "uki-refs"
# The slot's first line. Not a comment on purpose: an unfilled slot is a parse error in
# cvminit, so a build that skipped this tool cannot boot without its local checks.
SLOT_MARKER = b"unfilled-cvminit-reference-slot"
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
CONFIG = "etc/cvminit/cvminit.conf"


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

    def content(self, data):
        return bytes(data[self.rawptr:self.rawptr + min(self.vsize, self.rawsize)])


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


def cpio_files(blob):
    """{path: (offset, size)} of the regular files in concatenated newc archives; a later
    archive's file replaces an earlier one, as the kernel unpacks them."""
    files, pos = {}, 0
    while pos + 110 <= len(blob):
        magic = blob[pos:pos + 6]
        if magic not in (b"070701", b"070702"):
            if blob[pos:pos + 4] == bytes(4):  # padding between archives
                pos += 4
                continue
            die(f"initrd: no newc cpio header at offset {pos} (compressed initrd?)")
        fields = [int(blob[pos + 6 + 8 * k:pos + 14 + 8 * k], 16) for k in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name = blob[pos + 110:pos + 110 + namesize - 1].decode(errors="replace")
        data = (pos + 110 + namesize + 3) & ~3
        pos = (data + filesize + 3) & ~3
        if name == "TRAILER!!!":
            continue
        name = name[2:] if name.startswith("./") else name.lstrip("/")
        if mode & 0o170000 == 0o100000:
            files[name] = (data, filesize)
        else:
            files.pop(name, None)
    return files


def stub_cmdline(raw):
    """The command line as systemd-stub passes it to the kernel (and /proc/cmdline shows
    it, less the newline): the section up to its first NUL, leading whitespace and control
    characters dropped, the others made spaces, trailing ones dropped. The same rule as
    cvm-measure's predict_mangle_cmdline()."""
    text = raw.split(b"\0", 1)[0].decode()
    mangled = "".join(" " if ord(c) <= 0x20 or ord(c) == 0x7f else c for c in text)
    return mangled.strip(" ")


def replace_cmdline(data, sec, text):
    raw = text.encode()
    if b"\0" in raw or len(raw) + 1 > sec[".cmdline"].rawsize:
        die(f"--cmdline: {len(raw)} bytes do not fit the .cmdline section "
            f"({sec['.cmdline'].rawsize} bytes of file space)")
    s = sec[".cmdline"]
    data[s.rawptr:s.rawptr + s.rawsize] = raw + b"\0" * (s.rawsize - len(raw))
    # VirtualSize: the text and its NUL, as ukify writes it.
    struct.pack_into("<I", data, s.hdr + 8, len(raw) + 1)


def reference_text(cmdline, config, root):
    lines = ["# cvminit reference values: written by image/uki-refs.py at image build",
             f"cmdline {cmdline}",
             "config none" if config is None else
             f"config sha256:{hashlib.sha256(config).hexdigest()}"]
    if root:
        lines.append(f"root {root}")
    return "\n".join(lines) + "\n"


def root_identity(cmdline):
    hashes = re.findall(r"(?:^|\s)roothash=(\S*)", cmdline)
    if not hashes:
        return None
    if len(hashes) > 1 or not re.fullmatch(r"[0-9a-f]{64}", hashes[0]):
        die(f"the command line's roothash= is not one sha256 in lower-case hex: {hashes}")
    h = hashes[0]
    return f"verity:{h}:{uuid.UUID(h[:32])}:{uuid.UUID(h[32:])}:erofs"


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

    data = bytearray(open(a.uki, "rb").read())
    sec = sections(data)
    for name in (".cmdline", ".initrd"):
        if name not in sec:
            die(f"{a.uki}: no {name} section")
    if a.cmdline is not None:
        replace_cmdline(data, sec, a.cmdline)
        sec = sections(data)

    cmdline = stub_cmdline(sec[".cmdline"].content(data))
    ini = sec[".initrd"]
    initrd = ini.content(data)
    files = cpio_files(initrd)
    slot = files.get("etc/cvminit/reference")
    if not slot:
        die(f"{a.uki}: the initrd has no /etc/cvminit/reference slot (made by image/mkosi.finalize)")
    off, size = slot
    old = initrd[off:off + size]
    # Refilling an already filled slot is allowed (tests make variants of a built UKI).
    if not (old.startswith(SLOT_MARKER) or old.startswith(b"# cvminit reference values")):
        die(f"{a.uki}: /etc/cvminit/reference is not a reference slot")
    config = None
    if CONFIG in files:
        coff, csize = files[CONFIG]
        config = initrd[coff:coff + csize]

    if a.keep_references:
        if a.cmdline is None or not old.startswith(b"# cvminit reference values"):
            die("--keep-references needs --cmdline and a UKI whose references are filled in")
        text = old.rstrip(b"\n") + b"\n"
    else:
        text = reference_text(cmdline, config, root_identity(cmdline)).encode()
    if len(text) > size:
        die(f"reference values ({len(text)} bytes) do not fit the {size}-byte slot")
    start = ini.rawptr + off
    data[start:start + size] = text + b"\n" * (size - len(text))
    with open(a.uki, "wb") as f:
        f.write(data)
    if a.print:
        sys.stdout.write(text.decode())

    if a.disk:
        r = subprocess.run(["mcopy", "-o", "-i", f"{a.disk}@@{esp_offset(a.disk)}", a.uki,
                            "::/EFI/BOOT/BOOTX64.EFI"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            die(f"mcopy into the ESP of {a.disk} failed: {r.stdout.strip()}")
    print(f"{PROG}: {a.uki}: reference values written ({len(text)} of {size} bytes)"
          + (f"; ESP of {a.disk} updated" if a.disk else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
