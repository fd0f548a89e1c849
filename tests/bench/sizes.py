#!/usr/bin/env python3
"""make size-report: where build/cvminit's bytes come from, per library and per object.

    python3 tests/bench/sizes.py --cc CC --cflags FLAGS --ldflags FLAGS --libs LIBS SRC...

Compiles each source on its own with the release flags (the release build compiles them in
one command, which leaves no object names in a link map), links them as the release build
does with a link map, and sums the sizes of the input sections the linker kept (text, data,
read-only data; not bss, which takes no room in the file) per static library and per object.
Writes the table to build/size-report.md and prints it.
"""

import argparse
import collections
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "size"

# An input section in the map: " .text.name  0xADDR  0xSIZE  file" (on one line, or the name
# alone on a line and the rest on the next).
ONE = re.compile(r"^ (\.\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
NAME = re.compile(r"^ (\.\S+)\s*$")
REST = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
SKIP = (".bss", ".tbss", ".comment", ".debug", ".note.GNU-stack", ".gnu.warning")


def kept_sections(mapfile):
    """[(section, size, input file)] of the sections the link kept, from a GNU ld map."""
    out, started, pending = [], False, None
    for line in mapfile.read_text(errors="replace").splitlines():
        if not started:
            started = line.startswith("Linker script and memory map")
            continue
        m = ONE.match(line)
        if m:
            name, addr, size, obj = m.groups()
        else:
            n = NAME.match(line)
            if n:
                pending = n.group(1)
                continue
            r = REST.match(line)
            if not (r and pending):
                pending = None
                continue
            name, (addr, size, obj) = pending, r.groups()
        pending = None
        if name.startswith(SKIP) or int(addr, 16) == 0 or not int(size, 16):
            continue
        out.append((name, int(size, 16), obj.strip()))
    return out


def owner(obj):
    """'libcryptsetup.a' for a library member, 'init/main.c' for one of our objects."""
    m = re.match(r"^(.*/)?([^/(]+\.a)\(", obj)
    if m:
        return m.group(2), True
    p = Path(obj)
    if p.is_relative_to(OUT):
        return str(p.relative_to(OUT)).removesuffix(".o") + ".c", False
    return p.name, True  # crt objects, libgcc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", required=True)
    ap.add_argument("--cflags", required=True)
    ap.add_argument("--ldflags", required=True)
    ap.add_argument("--libs", required=True)
    ap.add_argument("--binary", default=str(REPO / "build" / "cvminit"))
    ap.add_argument("srcs", nargs="+")
    a = ap.parse_args()
    cc, cflags = shlex.split(a.cc), shlex.split(a.cflags)
    objs = []
    for src in a.srcs:
        obj = OUT / (src.removesuffix(".c") + ".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(cc + cflags + ["-c", "-o", str(obj), src], check=True, cwd=REPO)
        objs.append(str(obj))
    binary, mapfile = OUT / "cvminit", OUT / "cvminit.map"
    subprocess.run(cc + cflags + ["-o", str(binary)] + objs + shlex.split(a.ldflags)
                   + [f"-Wl,-Map={mapfile}"] + shlex.split(a.libs), check=True, cwd=REPO)
    libs, ours = collections.Counter(), collections.Counter()
    for _, size, obj in kept_sections(mapfile):
        who, is_lib = owner(obj)
        (libs if is_lib else ours)[who] += size
        if not is_lib:
            libs["cvminit's own objects"] += size
    file_size = binary.stat().st_size
    real = Path(a.binary).stat().st_size if Path(a.binary).is_file() else None
    total = sum(libs.values())
    md = [f"`build/cvminit`: {real:,} bytes" if real else "`build/cvminit`: not built",
          f"(this link, objects one by one: {file_size:,} bytes; sections kept: {total:,} bytes,"
          " the rest is headers, relocations and alignment).", "",
          "| library | bytes | share |", "|---|---|---|"]
    md += [f"| {k} | {v:,} | {100 * v / total:.1f} % |" for k, v in libs.most_common()]
    md += ["", "| cvminit's object | bytes |", "|---|---|"]
    md += [f"| {k} | {v:,} |" for k, v in ours.most_common()]
    text = "\n".join(md) + "\n"
    (REPO / "build" / "size-report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
