"""image/mkinitrd.py checks (no VM): determinism, layout, module closure, errors."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from vm import REPO, Skip, TestFailure, config, note

MKINITRD = REPO / "image" / "mkinitrd.py"
WORK = REPO / "build" / "test-work" / "initrd-checks"


def read_newc(data):
    """Parse a newc cpio: [(name, fields dict, body bytes)] without the trailer."""
    out, off = [], 0
    names = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
             "devminor", "rdevmajor", "rdevminor", "namesize", "check"]
    while True:
        if data[off:off + 6] != b"070701":
            raise TestFailure(f"bad cpio magic at offset {off}")
        f = {n: int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i, n in enumerate(names)}
        off += 110
        name = data[off:off + f["namesize"] - 1].decode()
        off += f["namesize"]
        off += -off % 4
        body = data[off:off + f["filesize"]]
        off += f["filesize"]
        off += -off % 4
        if name == "TRAILER!!!":
            if data[off:].strip(b"\0"):
                raise TestFailure("data after the cpio trailer")
            return out
        out.append((name, f, body))


def _kmod_dir():
    if not config.kernel:
        # --strict (tests/run.py): a missing kernel fails, as it does for vm.boot().
        raise (TestFailure if config.strict else Skip)(
            config.missing or "no kernel (run image/kernel.sh)")
    ver = Path(config.kernel).name[len("vmlinuz-"):]
    return Path(config.kernel).parent.parent / "lib" / "modules" / ver, ver


def _run(*args, env=None, ok=True):
    r = subprocess.run([sys.executable, str(MKINITRD), *map(str, args)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=dict(os.environ, **(env or {})))
    if ok and r.returncode != 0:
        raise TestFailure(f"mkinitrd failed ({r.returncode}): {r.stdout.strip()}")
    return r


def _fake_init():
    WORK.mkdir(parents=True, exist_ok=True)
    p = WORK / "init"
    p.write_bytes(b"\x7fELF not really an init\n")
    return p


def test_mkinitrd_deterministic():
    """Two builds (plain and zstd) are byte-identical; SOURCE_DATE_EPOCH sets mtimes."""
    kdir, _ = _kmod_dir()
    init = _fake_init()
    common = ["--init", init, "--modules-list", REPO / "init/modules.list", "--kmod-dir", kdir]
    for comp in ("none", "zstd"):
        outs = []
        for i in (1, 2):
            out = WORK / f"det-{comp}-{i}.img"
            r = _run(*common, "--compress", comp, "--output", out)
            outs.append(out.read_bytes())
        if outs[0] != outs[1]:
            raise TestFailure(f"two builds with --compress {comp} differ")
        note(f"{comp}: {r.stdout.strip().splitlines()[-1]}")
    out = WORK / "epoch.img"
    _run(*common, "--output", out, env={"SOURCE_DATE_EPOCH": "1700000000"})
    mtimes = {f["mtime"] for _, f, _ in read_newc(out.read_bytes())}
    if mtimes != {1700000000}:
        raise TestFailure(f"mtimes with SOURCE_DATE_EPOCH: {sorted(mtimes)[:5]}")


def test_mkinitrd_layout():
    """Sorted entries, inodes in order, root-owned, mtime 0, devices, symlink, modules."""
    kdir, ver = _kmod_dir()
    init = _fake_init()
    extra = WORK / "extra.conf"
    extra.write_text("key=value\n")
    out = WORK / "layout.img"
    _run("--init", init, "--modules-list", REPO / "init/modules.list", "--kmod-dir", kdir,
         "--file", f"{extra}:/etc/cvminit/extra.conf:0600", "--output", out)
    ents = read_newc(out.read_bytes())
    names = [n for n, _, _ in ents]
    if names != sorted(names):
        raise TestFailure("entries are not sorted")
    if [f["ino"] for _, f, _ in ents] != list(range(1, len(ents) + 1)):
        raise TestFailure("inode numbers are not 1..N in order")
    by = {n: (f, b) for n, f, b in ents}
    for n, f, _ in ents:
        if f["uid"] or f["gid"] or f["mtime"]:
            raise TestFailure(f"{n}: uid/gid/mtime not 0")
        parent = n.rpartition("/")[0]
        if parent and (parent not in by or not stat.S_ISDIR(by[parent][0]["mode"])):
            raise TestFailure(f"{n}: parent directory {parent} missing or not a directory")
    for d in ("dev", "proc", "sys", "run", "tmp", "sbin", "etc", "lib", "usr", "usr/lib"):
        if d not in by or not stat.S_ISDIR(by[d][0]["mode"]):
            raise TestFailure(f"directory /{d} missing")

    def expect(name, mode, rdev=None, body=None):
        if name not in by:
            raise TestFailure(f"/{name} missing")
        f, b = by[name]
        if f["mode"] != mode:
            raise TestFailure(f"/{name}: mode {oct(f['mode'])}, expected {oct(mode)}")
        if rdev and (f["rdevmajor"], f["rdevminor"]) != rdev:
            raise TestFailure(f"/{name}: device {f['rdevmajor']},{f['rdevminor']}, expected {rdev}")
        if body is not None and b != body:
            raise TestFailure(f"/{name}: unexpected contents {b[:40]!r}")

    expect("dev/console", stat.S_IFCHR | 0o600, (5, 1))
    expect("dev/null", stat.S_IFCHR | 0o666, (1, 3))
    expect("init", stat.S_IFREG | 0o755, body=init.read_bytes())
    expect("sbin/modprobe", stat.S_IFLNK | 0o777, body=b"/init")
    expect("etc/cvminit/extra.conf", stat.S_IFREG | 0o600, body=b"key=value\n")

    base = f"lib/modules/{ver}/"
    for idx in ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin",
                "modules.softdep", "modules.symbols", "modules.symbols.bin", "modules.builtin",
                "modules.builtin.bin", "modules.builtin.modinfo", "modules.order"):
        if base + idx not in by:
            raise TestFailure(f"/{base}{idx} missing")
    dep = by[base + "modules.dep"][1].decode()
    shipped = {n[len(base):] for n in by if n.startswith(base) and n.endswith(".ko")}
    listed = set()
    for line in dep.splitlines():
        mod, _, deps = line.partition(":")
        listed.add(mod)
        for d in deps.split():
            if d not in shipped:
                raise TestFailure(f"modules.dep: {mod} needs {d}, which is not in the initrd")
    if listed != shipped:
        raise TestFailure(f"modules.dep lists {sorted(listed)}, initrd has {sorted(shipped)}")
    # every module of init/modules.list is shipped or built in
    builtin = by[base + "modules.builtin"][1].decode().split()
    have = {Path(p).name.split(".ko")[0].replace("-", "_") for p in list(shipped) + builtin}
    for line in (REPO / "init/modules.list").read_text().splitlines():
        w = line.split("#")[0].split()
        if len(w) >= 2 and w[0].replace("-", "_") not in have:
            note(f"{w[0]} ({w[1]}) is neither shipped nor built in")
    note(f"modules shipped: {' '.join(sorted(Path(p).name for p in shipped))}")


def test_mkinitrd_missing_module():
    """A missing required module is an error; a missing optional one a warning."""
    kdir, _ = _kmod_dir()
    init = _fake_init()
    lst = WORK / "missing.list"
    out = WORK / "missing.img"
    lst.write_text("no_such_module_xyz required\n")
    r = _run("--init", init, "--modules-list", lst, "--kmod-dir", kdir, "--output", out, ok=False)
    if r.returncode == 0 or "no_such_module_xyz" not in r.stdout:
        raise TestFailure(f"missing required module: rc {r.returncode}, output {r.stdout.strip()}")
    lst.write_text("# comment\nno_such_module_xyz optional\nevdev required\n")
    r = _run("--init", init, "--modules-list", lst, "--kmod-dir", kdir, "--output", out)
    if "warning" not in r.stdout or "no_such_module_xyz" not in r.stdout:
        raise TestFailure(f"missing optional module: no warning: {r.stdout.strip()}")


def _mkinitrd_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("mkinitrd", MKINITRD)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _package_module(kdir, rel):
    """The kernel package's module as the kernel would read it (decompressed)."""
    import lzma
    for suffix in ("", ".xz"):
        p = kdir / (rel + suffix)
        if p.exists():
            data = p.read_bytes()
            return lzma.decompress(data) if suffix else data
    raise TestFailure(f"{rel}: not in {kdir}")


def test_mkinitrd_module_signatures():
    """The initrd's modules lose exactly their appended signature (the package's module
    is the shipped one plus a PKCS#7 signature, its header and the marker);
    --keep-module-signatures ships them byte for byte; a malformed trailer is an error,
    an unsigned module stays as it is."""
    kdir, ver = _kmod_dir()
    init = _fake_init()
    lst = WORK / "sig.list"
    lst.write_text("dm_verity required\nerofs required\n")
    m = _mkinitrd_module()
    marker = m.SIG_MARKER
    base = f"lib/modules/{ver}/"
    for keep in (False, True):
        out = WORK / f"sig-{keep}.img"
        _run("--init", init, "--modules-list", lst, "--kmod-dir", kdir, "--output", out,
             *(["--keep-module-signatures"] if keep else []))
        shipped = {n[len(base):]: b for n, _, b in read_newc(out.read_bytes())
                   if n.startswith(base) and n.endswith(".ko")}
        if len(shipped) < 4:  # dm-verity, dm-bufio, dm-mod, erofs (and reed_solomon)
            raise TestFailure(f"only {sorted(shipped)} shipped")
        for rel, body in sorted(shipped.items()):
            pkg = _package_module(kdir, rel)
            if not pkg.endswith(marker):
                raise TestFailure(f"{rel}: the package's module is not signed")
            if keep:
                if body != pkg:
                    raise TestFailure(f"{rel}: --keep-module-signatures changed the module")
                continue
            if body.endswith(marker) or body[:4] != b"\x7fELF" or not pkg.startswith(body):
                raise TestFailure(f"{rel}: not the package's module without its signature")
            trailer = pkg[len(body):]
            sig_len = int.from_bytes(trailer[-len(marker) - 4:-len(marker)], "big")
            if len(trailer) != sig_len + 12 + len(marker) or trailer[-len(marker) - 10] != 2:
                raise TestFailure(f"{rel}: removed {len(trailer)} bytes, not one PKCS#7 "
                                  f"signature of {sig_len} bytes with its header")
        note(f"keep={keep}: {len(shipped)} module(s) checked")
    elf = b"\x7fELF" + b"\0" * 60
    if m.strip_signature(elf, "plain") != elf:
        raise TestFailure("an unsigned module was changed")
    sig = b"\x30" * 100
    good = elf + sig + bytes([0, 0, 2, 0, 0, 0, 0, 0]) + (100).to_bytes(4, "big") + marker
    if m.strip_signature(good, "good") != elf:
        raise TestFailure("a well-formed signature was not removed exactly")
    for what, bad in (("id_type 1", good.replace(bytes([0, 0, 2]), bytes([0, 0, 1]), 1)),
                      ("sig_len too large", elf + sig + bytes([0, 0, 2, 0, 0, 0, 0, 0])
                       + (10000).to_bytes(4, "big") + marker),
                      ("marker only", marker)):
        try:
            m.strip_signature(bad, what)
        except m.Error as e:
            note(f"{what}: {e}")
            continue
        raise TestFailure(f"a malformed signature trailer ({what}) was accepted")
