#!/usr/bin/env python3
"""The README's build hardening claims, checked on the built binary (default build/cvminit)
with binutils: static-pie, stripped, full RELRO, a stack protector on cvminit's own code,
a non-executable stack, and CET claimed only with the ELF property note that says so.
Prints PASS/FAIL per property and `N passed, N failed`. Usage: tests/hardening.py [BINARY]"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Functions of cvminit's own code that have arrays on their stack, so -fstack-protector-strong
# must give them a canary, each found through a string only it uses (the binary is stripped:
# no symbols). Inlined into a caller, the array and so the canary move with them.
CANARY_ANCHORS = [
    ("init/main.c cmdline_load", b"cmdline: %d cvminit.* key(s); on_failure=%s log_level=%s"),
    ("init/main.c check_config", b"reference: config matches"),
    ("init/mount.c mount_report", b"open /proc/self/mountinfo"),
]
# The canary lives at %fs:0x28 on x86-64 (glibc's and musl's thread block alike).
CANARY = re.compile(r"%fs:0x28\b")


class Fail(Exception):
    pass


def tool(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        raise Fail(f"{' '.join(argv)}: {r.stderr.strip()[:300]}")
    return r.stdout


def segments(path):
    """{type: flags ("RW", "R E" without spaces)} of the program headers."""
    out = {}
    for line in tool("readelf", "-lW", path).splitlines():
        f = line.split()
        # "  GNU_STACK 0x000000 0x0... 0x0... 0x000000 0x000000 RW  0x10"
        if len(f) >= 8 and f[1].startswith("0x") and f[-1].startswith("0x"):
            out[f[0]] = "".join(f[6:-1])
    return out


def check_static_pie(path):
    hdr = tool("readelf", "-hW", path)
    if not re.search(r"Type:\s+DYN", hdr):
        raise Fail("not a position-independent (ET_DYN) executable")
    segs = segments(path)
    if "INTERP" in segs:
        raise Fail("has a PT_INTERP: dynamically linked, not static-pie")
    dyn = tool("readelf", "-dW", path)
    if re.search(r"\(NEEDED\)", dyn):
        raise Fail("needs shared libraries")
    if not re.search(r"FLAGS_1\).*\bPIE\b", dyn):
        raise Fail("no DF_1_PIE flag")


def check_stripped(path):
    sections = tool("readelf", "-SW", path)
    found = [s for s in (".symtab", ".strtab", ".debug_info", ".debug_line")
             if re.search(r"\s" + re.escape(s) + r"\s", sections)]
    if found:
        raise Fail(f"has {', '.join(found)}")


def check_relro(path):
    if "GNU_RELRO" not in segments(path):
        raise Fail("no PT_GNU_RELRO segment")
    dyn = tool("readelf", "-dW", path)
    if not (re.search(r"\(FLAGS\).*\bBIND_NOW\b", dyn) or re.search(r"FLAGS_1\).*\bNOW\b", dyn)):
        raise Fail("GNU_RELRO without BIND_NOW: partial RELRO only")


def check_noexec_stack(path):
    segs = segments(path)
    if "GNU_STACK" not in segs:
        raise Fail("no PT_GNU_STACK: the kernel would make the stack executable")
    if "E" in segs["GNU_STACK"]:
        raise Fail(f"PT_GNU_STACK is {segs['GNU_STACK']}: executable stack")


def string_addr(path, text):
    """The virtual address of the NUL-terminated string text in an allocated section."""
    data = open(path, "rb").read()
    hits = []
    for line in tool("readelf", "-SW", path).splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+PROGBITS\s+([0-9a-f]+)\s+([0-9a-f]+)\s+"
                     r"([0-9a-f]+)\s+\S+\s+(\S*A\S*)", line)
        if not m:
            continue
        addr, off, size = (int(m.group(i), 16) for i in (2, 3, 4))
        body = data[off:off + size]
        at = body.find(text + b"\0")
        while at >= 0:
            if at == 0 or body[at - 1] == 0:  # the whole string, not a merged tail
                hits.append(addr + at)
            at = body.find(text + b"\0", at + 1)
    if len(hits) != 1:
        raise Fail(f"string {text.decode()!r} found {len(hits)} times (expected once)")
    return hits[0]


def check_stack_protector(path):
    lines = tool("objdump", "-d", "--no-show-raw-insn", path).splitlines()
    insns = []
    for line in lines:
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)$", line)
        if m:
            insns.append(m.group(2))
    if not any(CANARY.search(i) for i in insns):
        raise Fail("no instruction reads the stack canary (%fs:0x28)")
    unprotected = []
    for what, text in CANARY_ANCHORS:
        ref = re.compile(r"\blea\s.*\(%rip\).*#\s*(?:0x)?" + format(string_addr(path, text), "x") + r"\b")
        uses = [k for k, i in enumerate(insns) if ref.search(i)]
        if not uses:
            raise Fail(f"{what}: nothing references its string")
        for k in uses:
            # Back to the function's start: -fcf-protection puts endbr64 there.
            start = k
            while start > 0 and not insns[start].startswith("endbr64"):
                start -= 1
            if not any(CANARY.search(i) for i in insns[start:k]):
                unprotected.append(what)
                break
    if unprotected:
        raise Fail(f"no stack canary in {', '.join(unprotected)}")


def readme_claims_cet():
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"^## Building\n(.*?)^## ", text, re.S | re.M)
    # The claims are the section's first sentence: "`make` builds ...: static, ..., with ...".
    first = re.split(r"\.\s", m.group(1).strip(), maxsplit=1)[0] if m else ""
    return bool(re.search(r"\bCET\b", first))


def check_cet_claim(path):
    """CET (IBT and shadow stacks) is claimed in the README only if the binary says it is
    CET-ready: a .note.gnu.property with both features."""
    if not readme_claims_cet():
        return
    notes = tool("readelf", "-nW", path)
    m = re.search(r"x86 feature: (.*)", notes)
    feats = m.group(1) if m else ""
    missing = [f for f in ("IBT", "SHSTK") if f not in feats]
    if missing:
        raise Fail(f"README's Building section claims CET, but the binary's "
                   f".note.gnu.property lacks {' and '.join(missing)}")


CHECKS = [
    ("static_pie", check_static_pie),
    ("stripped", check_stripped),
    ("full_relro", check_relro),
    ("stack_protector", check_stack_protector),
    ("noexec_stack", check_noexec_stack),
    ("cet_claim", check_cet_claim),
]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/cvminit")
    if not os.path.isfile(path):
        print(f"FAIL hardening: {path} is missing (make)")
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    for name, fn in CHECKS:
        try:
            fn(path)
        except Exception as e:  # a broken check fails, never passes
            print(f"FAIL hardening/{name}: {e}", flush=True)
            failed += 1
        else:
            print(f"PASS hardening/{name}", flush=True)
            passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
