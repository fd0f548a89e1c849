#!/usr/bin/python3
"""Build a deterministic initramfs (newc cpio) for cvminit.

Contents:
  /init                       the --init binary (0755)
  /sbin/modprobe -> /init     cvminit answers as modprobe for the kernel
  /dev/console (c 5 1), /dev/null (c 1 3)
  base directories            /dev /proc /sys /run /tmp /sbin /etc /lib /usr /usr/lib
  /lib/modules/<ver>/...      each module of --modules-list with its dependency
                              closure (modules.dep, plus softdep pre: from
                              modules.softdep), stored uncompressed and without
                              their signatures (.ko: see unpack_module and
                              strip_signature; --keep-module-signatures keeps
                              them), and an index regenerated for
                              exactly that subset with `depmod -b`
  --file SRC:DEST[:MODE]      extra files (a directory SRC is added recursively)

Determinism: entries sorted by path, inode numbers assigned in that order,
uid/gid 0, mtime 0 or $SOURCE_DATE_EPOCH, no host-specific metadata. Two runs
with the same inputs give byte-identical output (also with --compress zstd).

Standard library only; external commands: depmod (kmod) when modules are
included, zstd with --compress zstd.
"""

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

PROG = "mkinitrd"

BASE_DIRS = ["dev", "proc", "sys", "run", "tmp", "sbin", "etc", "lib", "usr", "usr/lib"]

# depmod writes these (names as in kmod 30); we copy whichever exist after the
# regeneration, plus the inputs that depmod reads but does not write.
INDEX_FILES = [
    "modules.alias", "modules.alias.bin",
    "modules.builtin", "modules.builtin.alias.bin", "modules.builtin.bin",
    "modules.builtin.modinfo",
    "modules.dep", "modules.dep.bin",
    "modules.devname",
    "modules.order",
    "modules.softdep",
    "modules.symbols", "modules.symbols.bin",
]

MOD_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


class Error(Exception):
    pass


def warn(msg):
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def note(msg):
    print(f"{PROG}: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------
# cpio (newc) writer

class Entry:
    __slots__ = ("path", "mode", "data", "rdev", "src")

    def __init__(self, path, mode, data=b"", rdev=(0, 0), src=None):
        self.path = path      # archive path without leading '/'
        self.mode = mode      # full st_mode (type | permissions)
        self.data = data      # bytes (file contents or symlink target)
        self.rdev = rdev      # (major, minor) for device nodes
        self.src = src        # host path for a regular file read at write time


class Archive:
    def __init__(self):
        self.entries = {}

    @staticmethod
    def norm(path):
        p = os.path.normpath("/" + path).lstrip("/")
        if not p or p == "." or p.startswith(".."):
            raise Error(f"bad archive path: {path!r}")
        return p

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def _add(self, e):
        old = self.entries.get(e.path)
        if old is not None:
            if stat.S_ISDIR(old.mode) and stat.S_ISDIR(e.mode):
                # keep the explicit mode if one was given later
                old.mode = e.mode
                return
            if stat.S_ISDIR(old.mode) or stat.S_ISDIR(e.mode):
                raise Error(f"/{e.path} added both as a directory and as a non-directory")
        self.entries[e.path] = e

    def dir(self, path, perm=0o755):
        path = self.norm(path)
        self._parents(path)
        old = self.entries.get(path)
        if old is not None and stat.S_ISDIR(old.mode):
            return
        self._add(Entry(path, stat.S_IFDIR | perm))

    def file(self, path, perm, *, src=None, data=None):
        path = self.norm(path)
        self._parents(path)
        self._add(Entry(path, stat.S_IFREG | perm, data=data or b"", src=src))

    def symlink(self, path, target):
        path = self.norm(path)
        self._parents(path)
        self._add(Entry(path, stat.S_IFLNK | 0o777, data=target.encode()))

    def chardev(self, path, perm, major, minor):
        path = self.norm(path)
        self._parents(path)
        self._add(Entry(path, stat.S_IFCHR | perm, rdev=(major, minor)))

    def write(self, out, mtime):
        """Write the archive to the binary stream out; return bytes written."""
        total = 0

        def header(ino, mode, nlink, size, rdev, name):
            nonlocal total
            nameb = name.encode() + b"\0"
            fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0,
                      rdev[0], rdev[1], len(nameb), 0]
            h = b"070701" + b"".join(b"%08X" % f for f in fields) + nameb
            h += b"\0" * (-len(h) % 4)
            out.write(h)
            total += len(h)

        def body(data):
            nonlocal total
            out.write(data)
            pad = -len(data) % 4
            out.write(b"\0" * pad)
            total += len(data) + pad

        for ino, path in enumerate(sorted(self.entries), start=1):
            e = self.entries[path]
            data = e.data
            if e.src is not None:
                with open(e.src, "rb") as f:
                    data = f.read()
            if stat.S_ISDIR(e.mode):
                header(ino, e.mode, 2, 0, (0, 0), path)
            elif stat.S_ISREG(e.mode) or stat.S_ISLNK(e.mode):
                header(ino, e.mode, 1, len(data), (0, 0), path)
                body(data)
            else:
                header(ino, e.mode, 1, 0, e.rdev, path)
        header(0, 0, 1, 0, (0, 0), "TRAILER!!!")
        return total


# ---------------------------------------------------------------------------
# kernel modules

def modname(path_or_name):
    """Canonical module name: basename without .ko[.xz|.zst|.gz], '-' -> '_'."""
    b = os.path.basename(path_or_name)
    for s in MOD_SUFFIXES:
        if b.endswith(s):
            b = b[: -len(s)]
            break
    return b.replace("-", "_")


def parse_modules_list(path):
    mods = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if len(words) < 2 or words[1] not in ("required", "optional") or any(
                    w not in ("root", "background", "device")
                    and not w.startswith(("cpu=", "exists=")) for w in words[2:]):
                raise Error(f"{path}:{lineno}: expected '<module> <required|optional> "
                            f"[root|background] [device] [cpu=<flag>] [exists=<path>]…', "
                            f"got {line!r}")
            mods.append((words[0], words[1]))
    return mods


def read_modules_dep(kdir):
    """{name: (relpath, [dep names])} from modules.dep."""
    dep = {}
    p = os.path.join(kdir, "modules.dep")
    if not os.path.exists(p):
        raise Error(f"{p} missing (run depmod -b for that tree)")
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or ":" not in line:
                continue
            mod, deps = line.split(":", 1)
            dep[modname(mod)] = (mod, [modname(d) for d in deps.split()])
    return dep


def read_softdep_pre(kdir):
    """{name: [pre names]} from modules.softdep (depmod-generated)."""
    pre = {}
    p = os.path.join(kdir, "modules.softdep")
    if not os.path.exists(p):
        return pre
    with open(p, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) < 2 or words[0] != "softdep":
                continue
            name, section = modname(words[1]), None
            for w in words[2:]:
                if w.endswith(":"):
                    section = w[:-1]
                elif section == "pre":
                    pre.setdefault(name, []).append(modname(w))
    return pre


def read_builtin(kdir):
    p = os.path.join(kdir, "modules.builtin")
    if not os.path.exists(p):
        return set()
    with open(p, encoding="utf-8") as f:
        return {modname(l.strip()) for l in f if l.strip()}


def resolve_modules(kdir, listed):
    """Return (sorted relpaths to copy, builtin names, log of what happened)."""
    dep = read_modules_dep(kdir)
    pre = read_softdep_pre(kdir)
    builtin = read_builtin(kdir)
    wanted, builtins, errors = set(), [], []

    def visit(name, why):
        if name in wanted:
            return
        if name in dep:
            wanted.add(name)
            for d in dep[name][1]:
                visit(d, f"dependency of {name}")
            for d in pre.get(name, []):
                visit(d, f"softdep pre of {name}")
        elif name in builtin:
            pass
        else:
            warn(f"module {name} ({why}) not found; skipped")

    for raw, kind in listed:
        name = modname(raw)
        if name in dep:
            visit(name, "listed")
        elif name in builtin:
            builtins.append(name)
            note(f"module {name} is built into the kernel ({kind}); nothing to copy")
        elif kind == "required":
            errors.append(name)
        else:
            warn(f"optional module {name} not found (neither a module nor built-in); skipped")
    if errors:
        raise Error("required module(s) not found (neither a module nor built-in): " + " ".join(errors))
    return sorted(dep[n][0] for n in wanted), builtins


# The trailer of a signed module (scripts/sign-file in the kernel tree): the PKCS#7
# signature, then struct module_signature (12 bytes: algo, hash, id_type, signer_len,
# key_id_len, 3 bytes padding, sig_len as big-endian u32), then this marker.
SIG_MARKER = b"~Module signature appended~\n"
PKEY_ID_PKCS7 = 2


def strip_signature(data, name):
    """data without its appended signature (unchanged if it has none).

    Why: the kernel checks a signed module's RSA signature on every load, about 20 ms a
    module under TCG (half of a small module's load, tests/bench). It adds nothing here:
    the initrd's modules are in the UKI the TPM measures (PCR 4, 11), the root's are under
    dm-verity (the root hash is on the measured command line), and the kernel is not locked
    down (Secure Boot is off: docs/clouds.md). A kernel that is locked down refuses an
    unsigned module (EPERM; cvminit says so): build with MODULE_SIGNATURES=keep then. The
    kernel logs "module verification failed ... tainting kernel" once (taint flag E)."""
    if not data.endswith(SIG_MARKER):
        return data
    end = len(data) - len(SIG_MARKER)
    if end < 12:
        raise Error(f"{name}: signature marker without a signature header")
    hdr = data[end - 12:end]
    sig_len = int.from_bytes(hdr[8:12], "big")
    if hdr[2] != PKEY_ID_PKCS7 or any(hdr[3:8]) or sig_len == 0 or sig_len > end - 12:
        raise Error(f"{name}: malformed module signature header {hdr.hex()}")
    body = data[:end - 12 - sig_len]
    if body[:4] != b"\x7fELF":
        raise Error(f"{name}: not an ELF module once its signature is removed")
    return body


def unpack_module(src, dst, keep_signature=False):
    """Writes module src to dst uncompressed and, unless keep_signature, without its
    signature (strip_signature); returns dst's path (.ko).

    Why uncompressed: libkmod 30 decompresses a .ko.xz in PID 1 before it hands the module
    to the kernel, and xz is the slowest step of loading under emulation. A plain .ko goes
    to finit_module() as it is. Debian signs, then compresses: the signature is inside the
    compressed file, and stays intact when kept."""
    with open(src, "rb") as f:
        data = f.read()
    if src.endswith(".ko.xz"):
        import lzma
        data = lzma.decompress(data)
        dst = dst[: -len(".xz")]
    elif src.endswith(".ko.gz"):
        import gzip
        data = gzip.decompress(data)
        dst = dst[: -len(".gz")]
    elif src.endswith(".ko.zst"):
        if not shutil.which("zstd"):
            raise Error("zstd not found (apt-get install zstd) to unpack " + src)
        data = subprocess.run(["zstd", "-dcq"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout
        dst = dst[: -len(".zst")]
    if not keep_signature:
        data = strip_signature(data, os.path.basename(src))
    with open(dst, "wb") as f:
        f.write(data)
    return dst


def stage_modules(kdir, ver, relpaths, staging, unpack=True, keep_signatures=False):
    """Copy modules and inputs into staging/lib/modules/<ver>, run depmod there.
    Returns (sdir, the modules' paths relative to it)."""
    sdir = os.path.join(staging, "lib", "modules", ver)
    os.makedirs(sdir)
    staged = []
    for rel in relpaths:
        dst = os.path.join(sdir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if unpack:
            dst = unpack_module(os.path.join(kdir, rel), dst, keep_signatures)
        else:
            shutil.copyfile(os.path.join(kdir, rel), dst)
        staged.append(os.path.relpath(dst, sdir))
    relpaths = staged
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        src = os.path.join(kdir, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(sdir, name))
    # modules.order, limited to the modules we ship (keeps the kernel's order).
    order_src = os.path.join(kdir, "modules.order")
    if os.path.exists(order_src):
        keep = {modname(r) for r in relpaths}
        with open(order_src, encoding="utf-8") as f:
            lines = [l for l in f if l.strip() and modname(l.strip()) in keep]
        with open(os.path.join(sdir, "modules.order"), "w", encoding="utf-8") as f:
            f.writelines(lines)
    depmod = shutil.which("depmod") or next(
        (p for p in ("/usr/sbin/depmod", "/sbin/depmod") if os.access(p, os.X_OK)), None)
    if depmod is None:
        raise Error("depmod not found (apt-get install kmod)")
    # An empty config dir: ignore the host's /etc/depmod.d so the result only
    # depends on the inputs.
    conf = os.path.join(staging, "depmod.d")
    os.mkdir(conf)
    r = subprocess.run([depmod, "-C", conf, "-b", staging, ver],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise Error(f"depmod failed ({r.returncode}): {r.stdout.strip()}")
    if r.stdout.strip():
        note("depmod: " + r.stdout.strip())
    # Check the regenerated index against the closure we computed.
    got = read_modules_dep(sdir)
    if set(got) != {modname(r) for r in relpaths}:
        raise Error("regenerated modules.dep does not match the module set")
    for name, (_, deps) in got.items():
        for d in deps:
            if d not in got:
                raise Error(f"regenerated modules.dep: {name} needs {d}, not included")
    return sdir, relpaths


def kernel_config_for(kdir, ver):
    # build/kernel/<ver>/lib/modules/<ver> -> build/kernel/<ver>/boot/config-<ver>
    root = os.path.normpath(os.path.join(kdir, "..", "..", ".."))
    p = os.path.join(root, "boot", f"config-{ver}")
    return p if os.path.exists(p) else None


def config_value(path, opt):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(opt + "="):
                return line.split("=", 1)[1].strip()
    return None


# ---------------------------------------------------------------------------

def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def parse_file_arg(spec):
    parts = spec.split(":")
    mode = None
    if len(parts) == 3:
        if not re.fullmatch(r"[0-7]{3,4}", parts[2]):
            raise Error(f"--file {spec}: MODE must be octal like 0644")
        mode = int(parts[2], 8)
    elif len(parts) != 2:
        raise Error(f"--file {spec}: expected SRC:DEST[:MODE]")
    src, dest = parts[0], parts[1]
    if not src or not dest:
        raise Error(f"--file {spec}: expected SRC:DEST[:MODE]")
    return src, dest, mode


def add_tree(ar, src, dest, mode):
    if os.path.isdir(src):
        ar.dir(dest)
        for name in sorted(os.listdir(src)):
            add_tree(ar, os.path.join(src, name), dest.rstrip("/") + "/" + name, mode)
    elif os.path.isfile(src):
        if mode is None:
            mode = 0o755 if os.stat(src).st_mode & 0o111 else 0o644
        ar.file(dest, mode, src=src)
    else:
        raise Error(f"--file: {src} is neither a file nor a directory")


def unpack_root(argv):
    """mkinitrd.py --unpack-root KMOD_DIR NAME...: the modules cvminit loads from the
    root on every boot (the config's module lines, the NIC drivers), with their
    dependency closure, stored uncompressed in place in the image's root (and without
    their signatures unless --keep-module-signatures: strip_signature), and the root's
    index regenerated (depmod). The root's erofs compresses them anyway (lz4hc, which the
    kernel unpacks much faster than libkmod unpacks xz). Other modules stay as they are."""
    ap = argparse.ArgumentParser(prog=PROG + " --unpack-root")
    ap.add_argument("kmod_dir", help="the root's /usr/lib/modules/<ver>")
    ap.add_argument("names", nargs="+", help="modules (optional: a missing one is a warning)")
    ap.add_argument("--keep-module-signatures", action="store_true",
                    help="keep each module's appended signature (see strip_signature)")
    a = ap.parse_args(argv)
    try:
        kdir = os.path.realpath(a.kmod_dir)
        ver = os.path.basename(kdir)
        relpaths, _ = resolve_modules(kdir, [(n, "optional") for n in a.names])
        done = 0
        for rel in relpaths:
            src = os.path.join(kdir, rel)
            if rel.endswith(".ko") and a.keep_module_signatures:
                continue
            # A .ko is rewritten in place (without its signature), a compressed one
            # unpacked beside it.
            if unpack_module(src, src, a.keep_module_signatures) != src:
                os.unlink(src)
            done += 1
        # depmod -b takes the directory that holds lib/modules/<ver> (usr/lib/modules
        # through the root's /lib link, or usr directly).
        base = os.path.dirname(os.path.dirname(kdir))  # .../usr/lib or .../lib
        base = os.path.dirname(base)
        depmod = shutil.which("depmod") or "/usr/sbin/depmod"
        conf = tempfile.mkdtemp(prefix="mkinitrd.depmod.")
        try:
            r = subprocess.run([depmod, "-C", conf, "-b", base, ver], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        finally:
            os.rmdir(conf)
        if r.returncode != 0:
            raise Error(f"depmod failed ({r.returncode}): {r.stdout.strip()}")
        dep = read_modules_dep(kdir)
        for rel in relpaths:
            name = modname(rel)
            if name not in dep or not dep[name][0].endswith(".ko"):
                raise Error(f"regenerated modules.dep does not name {name} uncompressed")
        print(f"{PROG}: {kdir}: {done} of {len(relpaths)} module(s) unpacked or stripped in place"
              + (" (signatures kept)" if a.keep_module_signatures else " (signatures removed)"))
        return 0
    except (Error, OSError, subprocess.CalledProcessError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--unpack-root"]:
        return unpack_root(argv[1:])
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", required=True, help="binary installed as /init")
    ap.add_argument("--modules-list", help="init/modules.list")
    ap.add_argument("--kmod-dir", help="a /lib/modules/<ver> tree")
    ap.add_argument("--kernel-version", help="default: basename of --kmod-dir")
    ap.add_argument("--file", action="append", default=[], metavar="SRC:DEST[:MODE]")
    ap.add_argument("--output", "-o", required=True)
    ap.add_argument("--compress", choices=("none", "zstd"), default="none")
    ap.add_argument("--keep-module-compression", action="store_true",
                    help="store the modules as the kernel package has them (.ko.xz) instead "
                    "of uncompressed (and signed)")
    ap.add_argument("--keep-module-signatures", action="store_true",
                    help="keep each module's appended signature (see strip_signature)")
    ap.add_argument("--kernel-config", help="kernel config to check CONFIG_RD_ZSTD against "
                    "(default: found next to --kmod-dir)")
    a = ap.parse_args(argv)

    try:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        mtime = int(epoch) if epoch else 0
        if not 0 <= mtime <= 0xFFFFFFFF:
            raise Error("SOURCE_DATE_EPOCH out of range")

        ar = Archive()
        for d in BASE_DIRS:
            ar.dir(d, 0o1777 if d == "tmp" else 0o755)
        ar.chardev("dev/console", 0o600, 5, 1)
        ar.chardev("dev/null", 0o666, 1, 3)
        if not os.path.isfile(a.init):
            raise Error(f"--init {a.init}: no such file")
        ar.file("init", 0o755, src=a.init)
        ar.symlink("sbin/modprobe", "/init")

        nmods, builtins = 0, []
        staging = None
        if a.modules_list or a.kmod_dir:
            if not (a.modules_list and a.kmod_dir):
                raise Error("--modules-list and --kmod-dir go together")
            kdir = os.path.realpath(a.kmod_dir)
            ver = a.kernel_version or os.path.basename(kdir)
            listed = parse_modules_list(a.modules_list)
            relpaths, builtins = resolve_modules(kdir, listed)
            staging = tempfile.mkdtemp(prefix="mkinitrd.")
        try:
            if staging is not None:
                sdir, relpaths = stage_modules(kdir, ver, relpaths, staging,
                                               unpack=not a.keep_module_compression,
                                               keep_signatures=a.keep_module_signatures)
                base = f"lib/modules/{ver}"
                ar.dir(base)
                for rel in relpaths:
                    ar.file(f"{base}/{rel}", 0o644, data=read_bytes(os.path.join(sdir, rel)))
                for name in sorted(os.listdir(sdir)):
                    if name.startswith("modules."):
                        ar.file(f"{base}/{name}", 0o644, data=read_bytes(os.path.join(sdir, name)))
                missing = [n for n in ("modules.dep", "modules.dep.bin", "modules.alias.bin",
                                       "modules.softdep", "modules.symbols.bin",
                                       "modules.builtin.bin") if not os.path.exists(os.path.join(sdir, n))]
                if missing:
                    raise Error("depmod did not produce " + " ".join(missing))
                nmods = len(relpaths)
                if a.compress == "zstd" and not a.kernel_config:
                    a.kernel_config = kernel_config_for(kdir, ver)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

        for spec in a.file:
            src, dest, mode = parse_file_arg(spec)
            add_tree(ar, src, dest, mode)

        if a.compress == "zstd":
            if a.kernel_config:
                v = config_value(a.kernel_config, "CONFIG_RD_ZSTD")
                if v != "y":
                    raise Error(f"{a.kernel_config}: CONFIG_RD_ZSTD is {v or 'not set'}; "
                                "the kernel cannot unpack a zstd initrd")
            if not shutil.which("zstd"):
                raise Error("zstd not found (apt-get install zstd)")

        out_dir = os.path.dirname(os.path.abspath(a.output))
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mkinitrd.", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                raw = ar.write(f, mtime)
            if a.compress == "zstd":
                # -T1: output independent of the host's core count. Level 19
                # keeps the default window (8 MiB), which the kernel's
                # decompressor handles; no --ultra/--long.
                ztmp = tmp + ".zst"
                subprocess.run(["zstd", "-q", "-19", "-T1", "--no-progress", "-f",
                                "-o", ztmp, tmp], check=True)
                os.replace(ztmp, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, a.output)
        except BaseException:
            for p in (tmp, tmp + ".zst"):
                if os.path.exists(p):
                    os.unlink(p)
            raise

        size = os.path.getsize(a.output)
        extra = f", {raw} uncompressed" if a.compress == "zstd" else ""
        bi = f", built-in: {' '.join(builtins)}" if builtins else ""
        print(f"{PROG}: {a.output}: {size} bytes{extra}; {nmods} modules{bi}; "
              f"{len(ar.entries)} entries")
        return 0
    except (Error, OSError, subprocess.CalledProcessError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
