#!/usr/bin/env python3
"""make bench: cvminit against a systemd-based node, booted side by side in the same QEMU.

    python3 tests/bench/bench.py [-n N] [--first F] [--no-build] [--docs]

Builds (when their inputs changed) and boots, alternating, in the same QEMU configuration
(q35, TCG, OVMF, swtpm, 2 vCPUs, 2 GiB, the same trixie cloud kernel, a 256 MiB state volume):

  cvminit  the node image (image/build-image.sh) with the bench's /usr/bin/kubelet probe,
           into build/bench/cvminit/
  systemd  the reference node (image/systemd-ref/): systemd in the initrd, roothash= with
           systemd-veritysetup, the LUKS2 state made by systemd-repart (TPM2 token) and opened
           by systemd-cryptsetup, switch-root, containerd.service, kubelet.service;
           into build/bench/systemd-ref/

Both images run the same /usr/bin/kubelet: tests/bench/kubelet-probe.c, which records from
inside the guest when kubelet starts and what the boot cost (PID 1's CPU and RSS, the
machine's busy CPU), then execs the kubelet stand-in (tests/fixtures/kubelet-standin.c) with
the same arguments. The probe's lines come on the test channel (the second serial port,
tests/qemu/vm.py), not the console, which carries no service output.

Each image gets F first boots (a fresh disk and a fresh TPM: the state volume is made) and then
N later boots of the last one's disk and TPM, alternating cvminit and systemd. Times are the
guest's CLOCK_MONOTONIC (0 = about the kernel's start) from each init's own records:
cvminit's boot timeline and its console lines; systemd's manager and unit timestamps and its
journal (printed by bench-report.service). Wall times are the host's, from QEMU's start.

Writes build/bench/results.json, build/bench/report.md and build/bench/timeline.svg; with
--docs also docs/benchmarks.svg and the results section of docs/benchmarks.md.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "qemu"))
sys.path.insert(0, str(HERE))

import helpers  # noqa: E402
import vm as vmlib  # noqa: E402
from vm import REPO, TestFailure, VM  # noqa: E402
import svg  # noqa: E402

BUILD = REPO / "build"
OUT = BUILD / "bench"
CVM_OUT = OUT / "cvminit"
SD_OUT = OUT / "systemd-ref"
TREE = OUT / "tree"
PROBE = OUT / "kubelet-probe"
SAMPLER = OUT / "cpu-sampler"
STANDIN = BUILD / "kubelet-standin"
STATE_SIZE = "256M"
# The join service the cvminit images are built for: make image's development defaults
# (the Makefile's JOIN and JOIN_KEY); each cvminit VM gets a cvm-join holding the private
# key (helpers.JoinService), as make run and the QEMU tests do.
JOIN = "10.0.2.100:7742"
JOIN_KEY = BUILD / "join-dev" / "join-service.pub"
JOIN_NEEDS = [BUILD / "cvm-join", BUILD / "cvm-measure", JOIN_KEY]
IMAGES = ("cvminit", "systemd")
# --before DIR: a saved cvminit image (cvminit.raw, cvminit.efi) booted in the same run as
# "cvminit-before", to compare cvminit's own path before and after a change side by side.
BEFORE = "cvminit-before"
BEFORE_DIR = None

PRINTK = re.compile(r"^\[\s*(\d+)\.(\d{6})\] (.*)$")
# The probe's last line, on the test channel ("[<mono>] bench-probe: end"). Found anywhere in
# a line: another writer's output can share the line (issue 15: a run was lost for that).
PROBE_END = r"\[\s*\d+\.\d+\] bench-probe: end\b"
# One probe record, wherever it starts in a line; its values are "key=value" words.
PROBE_REC = re.compile(r"\[\s*(\d+)\.(\d{6})\] bench-probe: (\w+)((?: [^\s\[]+)*)")


def log(msg):
    print(f"bench: {msg}", flush=True)


# ------------------------------------------------------------------------------ building

def sha256_files(paths):
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        p = Path(p)
        h.update(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p).encode() + b"\0")
        if p.is_symlink():
            h.update(b"link:" + os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def files_under(*roots):
    out = []
    for r in roots:
        r = REPO / r
        if r.is_file() or r.is_symlink():
            out.append(r)
        elif r.is_dir():
            out += [p for p in r.rglob("*") if (p.is_file() or p.is_symlink())
                    and "__pycache__" not in p.parts]
    return out


def build_tree():
    """The probe, and the tree both images get: /usr/bin/kubelet = probe,
    /usr/libexec/kubelet-standin = the stand-in."""
    if not STANDIN.is_file():
        subprocess.run(["make", "-C", str(REPO), "build/kubelet-standin"], check=True)
    src = HERE / "kubelet-probe.c"
    OUT.mkdir(parents=True, exist_ok=True)
    for out, c in ((PROBE, src), (SAMPLER, HERE / "cpu-sampler.c")):
        subprocess.run(["musl-gcc", "-static", "-O2", "-std=gnu11", "-Wall", "-Wextra",
                        "-Werror", "-o", str(out), str(c)], check=True)
    if TREE.exists():
        shutil.rmtree(TREE)
    (TREE / "usr/bin").mkdir(parents=True)
    (TREE / "usr/libexec").mkdir(parents=True)
    shutil.copy2(PROBE, TREE / "usr/bin/kubelet")
    shutil.copy2(STANDIN, TREE / "usr/libexec/kubelet-standin")
    # The systemd reference's CPU sampler (bench-sampler.service; the cvminit image has its
    # own timeline and does not get it).
    (TREE / "usr/lib/bench").mkdir(parents=True)
    shutil.copy2(SAMPLER, TREE / "usr/lib/bench/cpu-sampler")
    # The cvminit build takes /usr/bin/kubelet through KUBELET= (sha256-checked); its extra
    # tree carries only the stand-in.
    extra = OUT / "tree-cvminit"
    if extra.exists():
        shutil.rmtree(extra)
    (extra / "usr/libexec").mkdir(parents=True)
    shutil.copy2(STANDIN, extra / "usr/libexec/kubelet-standin")
    return extra


def build_if_changed(name, outdir, inputs, cmd, env, product):
    stamp = outdir / ".bench-inputs"
    key = sha256_files(inputs)
    if "JOIN" in env:  # the address is built into the image's config
        key = hashlib.sha256(f"{key} join={env['JOIN']}".encode()).hexdigest()
    if (outdir / product).is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        log(f"{name}: image up to date ({outdir / product})")
        return
    log(f"{name}: building ({' '.join(str(c) for c in cmd)}); log in {outdir}.build.log")
    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(f"{outdir}.build.log", "w") as f:
        r = subprocess.run(cmd, env={**os.environ, **env}, stdout=f, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(f"bench: {name} image build failed (rc {r.returncode}); see {outdir}.build.log")
    stamp.write_text(key + "\n")
    log(f"{name}: built in {time.monotonic() - t0:.0f} s")


def join_env():
    """The image build's JOIN and JOIN_KEY (build-image.sh refuses an image without them),
    after making the development key pair, cvm-join and cvm-measure (it predicts what
    each VM's join service holds) when missing."""
    missing = [str(p.relative_to(REPO)) for p in JOIN_NEEDS if not p.is_file()]
    if missing:
        subprocess.run(["make", "-C", str(REPO), *missing], check=True)
    return {"JOIN": JOIN, "JOIN_KEY": str(JOIN_KEY)}


def build_images(only=None):
    extra = build_tree()
    cvminit = BUILD / "cvminit"
    if only != "systemd" and not cvminit.is_file():
        subprocess.run(["make", "-C", str(REPO), "all"], check=True)
    probe_sha = hashlib.sha256(PROBE.read_bytes()).hexdigest()
    common = [PROBE, STANDIN] + files_under("rootfs-overlay", "image/mkosi.sandbox",
                                           "image/tools-tree.sh")
    if only != "systemd":
        build_if_changed(
            "cvminit", CVM_OUT,
            common + [cvminit, JOIN_KEY] + files_under("mkosi.conf", "image/mkosi.repart",
                                                       "image/mkosi.finalize",
                                                       "image/mkinitrd.py",
                                                       "image/build-image.sh",
                                                       "init/modules.list"),
            [str(REPO / "image/build-image.sh")],
            {"CVMINIT_IMAGE_OUT": str(CVM_OUT), "KUBELET": str(PROBE),
             "KUBELET_SHA256": probe_sha, "CVMINIT_EXTRA_TREE": str(extra),
             "CVMINIT_STATE_SIZE": STATE_SIZE, **join_env()},
            "cvminit.raw")
    if only != "cvminit":
        build_if_changed(
            "systemd", SD_OUT,
            common + [SAMPLER] + files_under("image/systemd-ref"),
            [str(REPO / "image/systemd-ref/build.sh")],
            {"SYSTEMD_REF_OUT": str(SD_OUT), "BENCH_TREE": str(TREE),
             "SYSTEMD_REF_STATE": STATE_SIZE},
            "systemd-ref.raw")


# ------------------------------------------------------------------------------- sizes

def pe_sections(path):
    import struct
    data = Path(path).read_bytes()
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    optsize = struct.unpack_from("<H", data, pe + 20)[0]
    table = pe + 24 + optsize
    out = {}
    for i in range(nsec):
        name, vsize, _, rawsize, rawptr = struct.unpack_from("<8sIIII", data, table + 40 * i)
        out[name.rstrip(b"\0").decode()] = data[rawptr:rawptr + min(vsize, rawsize)]
    return out


def cpio_walk(blob):
    """(name, mode, data) of each member of a concatenation of (possibly zstd/xz/gzip-
    compressed) newc cpios."""
    pos = 0
    while pos < len(blob):
        head = blob[pos:pos + 6]
        if head in (b"070701", b"070702"):
            fields = [int(blob[pos + 6 + 8 * k:pos + 14 + 8 * k], 16) for k in range(13)]
            filesize, namesize = fields[6], fields[11]
            name = blob[pos + 110:pos + 110 + namesize - 1].decode(errors="replace")
            pos = (pos + 110 + namesize + 3) & ~3
            yield name.lstrip("./"), fields[1], blob[pos:pos + filesize]
            pos = (pos + filesize + 3) & ~3
        elif blob[pos:pos + 4] == bytes(4):
            pos += 4
        else:
            tool = {b"\x28\xb5\x2f\xfd": ["zstd", "-dcq"], b"\xfd7zXZ": ["xz", "-dc"],
                    b"\x1f\x8b": ["gzip", "-dc"]}
            for magic, cmd in tool.items():
                if blob[pos:pos + len(magic)] == magic:
                    r = subprocess.run(cmd, input=blob[pos:], stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL)
                    yield from cpio_walk(r.stdout)
                    return
            return


def cpio_members(blob):
    """{name: (size, mode)} of a concatenation of (possibly compressed) newc cpios."""
    return {name: (len(data), mode) for name, mode, data in cpio_walk(blob)}


def has_join(uki):
    """Whether the config in the UKI's initrd has a join service (kubelet then waits for a
    join: images from before the join, e.g. a --before baseline, have none)."""
    initrd = pe_sections(uki).get(".initrd", b"")
    for name, _, data in cpio_walk(initrd):
        if name == "etc/cvminit/cvminit.conf":
            return re.search(r"^service join\b", data.decode(errors="replace"), re.M) is not None
    return False


def sizes(image):
    """Sizes that do not depend on a run: the UKI's initrd(s) and the init binary."""
    if image == BEFORE:
        uki = BEFORE_DIR / "cvminit.efi"
        init_files = {}
    elif image == "cvminit":
        uki = CVM_OUT / "cvminit.efi"
        init_files = {}
    else:
        uki = SD_OUT / "systemd-ref.efi"
        init_files = {}
    initrd = pe_sections(uki).get(".initrd", b"")
    members = cpio_members(initrd)
    if image in ("cvminit", BEFORE) and "init" in members:
        init_files["/init (cvminit, static)"] = members["init"][0]
    if image == "systemd":
        for name in ("usr/lib/systemd/systemd", ):
            if name in members:
                init_files["systemd"] = members[name][0]
        for name, (size, _) in members.items():
            if re.search(r"usr/lib/x86_64-linux-gnu/systemd/libsystemd-(shared|core)-[^/]*\.so$",
                         name):
                init_files[Path(name).name] = size
    files = sum(1 for _, (s, mode) in members.items() if (mode & 0o170000) == 0o100000)
    unpacked = sum(s for _, (s, mode) in members.items() if (mode & 0o170000) == 0o100000)
    return {"uki_bytes": uki.stat().st_size, "initrd_bytes": len(initrd),
            "initrd_unpacked_bytes": unpacked, "initrd_files": files,
            "init_binary_bytes": sum(init_files.values()), "init_binary": init_files}


# ------------------------------------------------------------------------------ booting

# vm.py's failure patterns, except a soft lockup: under TCG on a loaded host a vCPU can be
# descheduled for seconds, which the kernel reports as "BUG: soft lockup"; the boot goes on.
FAIL_PATTERNS = [(n, r"\bBUG:(?! soft lockup)" if n == "kernel BUG" else rx)
                 for n, rx in vmlib.FAIL_PATTERNS]


def boot_once(image, disk, tpm_dir, name, timeout, join=False):
    """Boots the disk, waits for the probe (and systemd's report), reboots it cleanly with
    ctrl-alt-del (QEMU exits: -no-reboot); returns the console and timings. join: the
    image's kubelet waits for a join, so the VM gets a cvm-join holding what the UKI on
    the disk measures (helpers.default_join; its vTPM then has an EK certificate, made
    when tpm_dir is empty, before QEMU starts: not in the boot's times)."""
    v = VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
           name=name, memory=2048, timeout=timeout, tpm_dir=tpm_dir,
           fail_patterns=FAIL_PATTERNS, join=helpers.default_join(name) if join else None)
    with v:
        if image == "systemd":
            # bench-report (on the console) runs after kubelet started, or after kubelet
            # failed to; the probe's end is on the channel by then if kubelet started.
            v.wait_for(r"bench-report: end", timeout + 180, since=0)
            try:
                v.chan.wait_for(PROBE_END, 5, since=0)
            except TestFailure:
                raise TestFailure("systemd: bench-report ran but kubelet did not start")
        else:
            v.chan.wait_for(PROBE_END, timeout, since=0)
            v.wait_for(r"cvminit: kubelet: started", 30, since=0)
        t_done = time.monotonic() - v._t0
        keys = [{"type": "qcode", "data": k} for k in ("ctrl", "alt", "delete")]
        v.qmp("send-key", keys=keys)
        try:
            v.wait_exit(180)
            clean = True
        except TestFailure as e:
            log(f"{name}: no clean reboot: {str(e).splitlines()[0]}")
            clean = False
        lines = list(v.lines)
        chan = list(v.chan.lines)
        exit_t = v.exit_time()
    shutil.copyfile(v.work / "console.log", OUT / "runs" / f"{name}.log")
    shutil.copyfile(v.work / "channel.log", OUT / "runs" / f"{name}.channel.log")
    if v.join is not None:
        (OUT / "runs" / f"{name}.cvm-join.log").write_text(v.join.log())
    return {"lines": lines, "chan": chan, "t_done": t_done, "exit_t": exit_t,
            "clean_shutdown": clean}


def newc(entries):
    """A newc cpio of [(name, mode, data)]."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += bytes((-len(out)) % 4)
        out += data
        out += bytes((-len(out)) % 4)
    return bytes(out)


def baseline_boot(timeout):
    """PID 1's CPU and the machine's before any init: the image's kernel (from the cvminit
    UKI) boots a one-file initrd whose /init is the probe, which reports and powers off.
    Same QEMU configuration (OVMF, swtpm, the disk attached read-only)."""
    work = OUT / "baseline"
    work.mkdir(parents=True, exist_ok=True)
    sec = pe_sections(CVM_OUT / "cvminit.efi")
    (work / "vmlinuz").write_bytes(sec[".linux"])
    cmdline = sec[".cmdline"].rstrip(b"\0").decode().strip()
    (work / "initrd.cpio").write_bytes(newc([("init", 0o100755, PROBE.read_bytes())]))
    v = VM(work / "vmlinuz", work / "initrd.cpio", cmdline, ovmf=True, tpm=True,
           disks=[{"file": str(CVM_OUT / "cvminit.raw"), "readonly": "on"}],
           name="bench-baseline", memory=2048, timeout=timeout, fail_patterns=FAIL_PATTERNS)
    with v:
        v.chan.wait_for(PROBE_END, timeout, since=0)
        try:
            v.wait_exit(60)
        except TestFailure:
            pass
        chan = list(v.chan.lines)
    shutil.copyfile(v.work / "console.log", OUT / "runs" / "bench-baseline.log")
    shutil.copyfile(v.work / "channel.log", OUT / "runs" / "bench-baseline.channel.log")
    probe = parse_probe(chan)
    p1, start = probe.get("pid1", {}), probe.get("start", {})
    hz = int(start.get("hz", 100))
    return {"pid1_cpu": int(p1["sched_ns"]) / 1e9,
            "pid1_stime": int(p1["stime"]) / hz, "pid1_utime": int(p1["utime"]) / hz,
            "at": int(start["mono_us"]) / 1e6,
            "machine_busy_cpu": int(probe["cpu"]["busy_ticks"]) / hz}


# ------------------------------------------------------------------------------ growth

def grow_state(disk, size):
    """Makes the disk's last partition (the state volume, made empty by the image build and
    formatted on first boot) size bytes: the file grows sparse, the GPT's entry, headers and
    backup follow. OVMF measures the GPT into PCR 5, which the state key is not sealed to."""
    import struct
    import zlib
    with open(disk, "r+b") as f:
        f.seek(512)
        hdr = bytearray(f.read(512))
        if hdr[:8] != b"EFI PART":
            raise TestFailure(f"{disk}: no GPT")
        hsize = struct.unpack_from("<I", hdr, 12)[0]
        old_backup = struct.unpack_from("<Q", hdr, 32)[0]
        entries_lba, count, esize = struct.unpack_from("<QII", hdr, 72)
        f.seek(entries_lba * 512)
        entries = bytearray(f.read(count * esize))
        last, last_i = -1, None
        for i in range(count):
            first_lba, end_lba = struct.unpack_from("<QQ", entries, i * esize + 32)
            if any(entries[i * esize:i * esize + 16]) and end_lba > last:
                last, last_i = end_lba, i
        start = struct.unpack_from("<Q", entries, last_i * esize + 32)[0]
        ent_sectors = (count * esize + 511) // 512
        new_end = start + size // 512 - 1
        nlba = new_end + 1 + ent_sectors + 1
        struct.pack_into("<Q", entries, last_i * esize + 40, new_end)
        f.truncate(nlba * 512)

        def sealed(h):
            struct.pack_into("<I", h, 16, 0)
            struct.pack_into("<I", h, 16, zlib.crc32(bytes(h[:hsize])))
            return bytes(h)
        struct.pack_into("<I", hdr, 88, zlib.crc32(bytes(entries)))
        struct.pack_into("<Q", hdr, 32, nlba - 1)
        struct.pack_into("<Q", hdr, 48, nlba - 2 - ent_sectors)
        primary = sealed(hdr)
        backup = bytearray(hdr)
        struct.pack_into("<QQ", backup, 24, nlba - 1, 1)
        struct.pack_into("<Q", backup, 72, nlba - 1 - ent_sectors)
        backup = sealed(backup)
        if old_backup < nlba - 1 - ent_sectors:
            f.seek(old_backup * 512)
            f.write(bytes(512))
        f.seek(446 + 12)  # the protective MBR's partition covers the disk
        f.write(struct.pack("<I", min(nlba - 1, 0xFFFFFFFF)))
        f.seek(512)
        f.write(primary)
        f.seek(entries_lba * 512)
        f.write(entries)
        f.seek((nlba - 1 - ent_sectors) * 512)
        f.write(entries)
        f.seek((nlba - 1) * 512)
        f.write(backup)


def conf_variant(name, edit):
    """An extra tree whose /etc/cvminit/cvminit.conf is the image's with edit applied."""
    base = (REPO / "rootfs-overlay/etc/cvminit/cvminit.conf").read_text()
    tree = OUT / "growth" / f"tree-{name}"
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "etc/cvminit").mkdir(parents=True)
    (tree / "usr/libexec").mkdir(parents=True)
    shutil.copy2(STANDIN, tree / "usr/libexec/kubelet-standin")
    (tree / "etc/cvminit/cvminit.conf").write_text(edit(base))
    return tree


IDLE = "\nservice idle{k}\n\texec /usr/bin/sleep infinity\n"


def only_kubelet(conf):
    """The config with kubelet as its only service (no network, no containerd)."""
    out, skip = [], False
    for line in conf.splitlines(keepends=True):
        if line.startswith("service "):
            skip = line.split()[1] != "kubelet"
        elif line.strip() and not line[0].isspace():
            skip = False
        if skip or line.strip().startswith("after "):
            continue
        out.append(line)
    return "".join(out)


def drop_services(conf, names):
    """The config without the blocks of the services named."""
    out, skip = [], False
    for line in conf.splitlines(keepends=True):
        if line.startswith("service "):
            skip = line.split()[1] in names
        elif line.strip() and not line[0].isspace():
            skip = False
        if not skip:
            out.append(line)
    return "".join(out)


def with_services(n):
    """A config edit to n services: kubelet and the services it starts after stay, the
    others (the attest agent) go until n are left, then idle services fill up to n. The
    image's config has 5 since the join (containerd, network, attest, join, kubelet)."""
    def edit(conf):
        names = re.findall(r"^service (\S+)", conf, re.M)
        m = re.search(r"^service kubelet\n(?:\s.*\n)*?\s+after ([^\n]*)", conf, re.M)
        needed = {"kubelet", *(m.group(1).split() if m else ())}
        drop = [x for x in names if x not in needed][:max(0, len(names) - n)]
        if len(names) - len(drop) > n:
            sys.exit(f"bench: a config of {n} services cannot keep kubelet and "
                     f"{' '.join(sorted(needed - {'kubelet'}))}")
        have = len(names) - len(drop)
        return drop_services(conf, drop) + "".join(IDLE.format(k=k)
                                                    for k in range(1, n - have + 1))
    return edit


GROWTH_VARIANTS = {
    # name: (config edit, what the variant measures)
    "no-integrity": (lambda c: c + "\nset state_integrity=none\n", "state volume"),
    "svc1": (only_kubelet, "services"),
    "svc4": (with_services(4), "services"),
    "svc8": (with_services(8), "services"),
}


def growth(args):
    """make bench-growth: cvminit's first and later boot for state volumes of 256 MiB, 2 GiB
    and 8 GiB (sparse), with and without integrity, and with 1, 4 and 8 (the most a config
    may have) services. Each variant of the config is an image of its own (the config is in
    the measured initrd); the sizes are the same image with its state partition grown."""
    build_images("cvminit")
    join_env()
    probe_sha = hashlib.sha256(PROBE.read_bytes()).hexdigest()
    images = {"integrity": CVM_OUT}
    for name, (edit, _) in GROWTH_VARIANTS.items():
        out = OUT / "growth" / name
        tree = conf_variant(name, edit)
        build_if_changed(
            f"cvminit-{name}", out,
            [PROBE, STANDIN, BUILD / "cvminit", JOIN_KEY, tree / "etc/cvminit/cvminit.conf"]
            + files_under("mkosi.conf", "image/mkosi.repart", "image/mkosi.finalize",
                          "image/mkinitrd.py", "image/build-image.sh", "init/modules.list",
                          "rootfs-overlay"),
            [str(REPO / "image/build-image.sh")],
            {"CVMINIT_IMAGE_OUT": str(out), "KUBELET": str(PROBE), "KUBELET_SHA256": probe_sha,
             "CVMINIT_EXTRA_TREE": str(tree), "CVMINIT_STATE_SIZE": STATE_SIZE,
             **join_env()},
            "cvminit.raw")
        images[name] = out
    runs = []
    plan = [(v, size) for v in ("integrity", "no-integrity") for size in args.growth_sizes]
    plan += [(v, None) for v in ("svc1", "svc4", "svc8")]
    for variant, size in plan:
        work = OUT / "growth" / "run"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        disk = work / "disk.raw"
        subprocess.run(["cp", "--sparse=always", str(images[variant] / "cvminit.raw"), str(disk)],
                       check=True)
        if size:
            grow_state(disk, parse_size(size))
        for kind in ("first", "later"):
            name = f"growth-{variant}-{size or 'default'}-{kind}"
            log(f"{name}: booting")
            try:
                raw = boot_once("cvminit", disk, work / "tpm", name, args.timeout,
                                join=has_join(images[variant] / "cvminit.efi"))
                # the one-service variant has no containerd
                r = analyse("cvminit", raw, required=("init_start", "root", "state"))
            except TestFailure as e:
                log(f"{name}: FAILED: {e}")
                runs.append({"name": name, "variant": variant, "size": size, "kind": kind,
                             "failed": str(e).splitlines()[0]})
                continue
            lines = printk_lines(raw["lines"])
            started = [g for _, g, t in lines if re.match(r"cvminit: \S+: started \(pid", t)]
            r.update({"name": name, "variant": variant, "size": size, "kind": kind,
                      "nservices": len(started),
                      "last_started": max(started) if started else None})
            runs.append(r)
            log(f"{name}: state-open {r['stage_s'].get('state-open', 0):.2f} s, state "
                f"{r['stage_s'].get('state', 0):.2f} s, init→kubelet "
                f"{r['kubelet_started'] - r['init_start']:.2f} s, {len(started)} services")
    (OUT / "growth.json").write_text(json.dumps(runs, indent=1, default=str))
    md = growth_report(runs)
    (OUT / "growth.md").write_text(md)
    print(md)
    if args.docs:
        update_docs(md, "growth")
    return 1 if any("failed" in r for r in runs) else 0


def parse_size(text):
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def own_cpu(r):
    """cvminit's own CPU until kubelet's start: PID 1's since cvminit started (its own
    timeline's first mark) and its module loaders' (child processes: their lines), as far
    as they ended before kubelet's start."""
    return r["pid1_cpu"] - r["stage_cpu"]["init-start"] + sum(
        c for g, c in r.get("loader_cpu", ())
        if r.get("kubelet_started") is None or g <= r["kubelet_started"])


def growth_report(runs):
    def get(variant, size, kind):
        return next((r for r in runs if r["variant"] == variant and r["size"] == size
                     and r["kind"] == kind and "failed" not in r), None)

    def f(r, fn):
        try:
            return f"{fn(r):.2f} s" if r else "–"
        except (KeyError, TypeError):
            return "–"
    md = [f"Growth ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"{machine()}; load average {os.getloadavg()[0]:.2f}). One boot each.", "",
          "| state volume | boot | state-open | state (mount, mkfs on first boot) | "
          "init start → containerd exec | init start → kubelet |", "|---|---|---|---|---|---|"]
    sizes = sorted({r["size"] for r in runs if r["size"]}, key=parse_size)
    for variant in ("integrity", "no-integrity"):
        for size in sizes:
            for kind in ("first", "later"):
                r = get(variant, size, kind)
                md.append(f"| {size}, {'hmac(sha256)' if variant == 'integrity' else 'none'} | "
                          f"{kind} | {f(r, lambda x: x['stage_s']['state-open'])} | "
                          f"{f(r, lambda x: x['stage_s']['state'])} | "
                          f"{f(r, lambda x: x['containerd_started'] - x['init_start'])} | "
                          f"{f(r, lambda x: x['kubelet_started'] - x['init_start'])} |")
    md += ["", "| services | boot | started | init start → last service started | "
           "init's own CPU (PID 1 and its module loaders) | PID 1 RSS |",
           "|---|---|---|---|---|---|"]
    for variant in ("svc1", "svc4", "svc8"):
        for kind in ("first", "later"):
            r = get(variant, None, kind)
            rss = f"{r['pid1_rss_kb'] / 1024:.1f} MiB" if r and r.get("pid1_rss_kb") else "–"
            md.append(f"| {variant[3:]} | {kind} | {r['nservices'] if r else '–'} | "
                      f"{f(r, lambda x: x['last_started'] - x['init_start'])} | "
                      f"{f(r, own_cpu)} | "
                      f"{rss} |")
    return "\n".join(md) + "\n"


# ------------------------------------------------------------------------------ parsing

def printk_lines(lines):
    """[(host t, guest t, text)] for the kernel's console lines, or for the probe's lines
    on the test channel (guest t: CLOCK_MONOTONIC)."""
    out = []
    for t, s in lines:
        m = PRINTK.match(s)
        if m:
            out.append((t, int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3)))
    return out


def first(pk, regex):
    rx = re.compile(regex)
    for t, g, s in pk:
        m = rx.search(s)
        if m:
            return t, g, m
    return None


def probe_records(lines):
    """[(host t, guest t, what, rest)] of the probe's records in (time, text) lines, also
    where another writer's text comes before or after one on the same line."""
    out = []
    for t, s in lines:
        for m in PROBE_REC.finditer(s):
            out.append((t, int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3), m.group(4)))
    return out


def parse_probe(lines):
    """The probe's records ((time, text) lines of the test channel) as {what: {key: value}};
    the first record of each kind counts, a word that is not key=value is left out."""
    kv = {}
    for t, g, what, rest in probe_records(lines):
        if what in kv:
            continue
        if what == "top":
            procs = []
            for item in rest.split():
                parts = item.rsplit(":", 2)
                if item.startswith("nproc=") or len(parts) != 3 or not parts[1].isdigit() \
                        or not parts[2].isdigit():
                    continue
                procs.append({"comm": parts[0], "pid": int(parts[1]), "ticks": int(parts[2])})
            kv["top"] = procs
        else:
            d = dict(x.split("=", 1) for x in rest.split() if "=" in x)
            d["_host_t"], d["_guest_t"] = t, g
            kv[what] = d
    return kv


def parse_cvminit(lines, pk):
    r = {"events": [], "stages": []}
    cpu = {}
    for t, g, s in pk:
        m = re.match(r"cvminit: timeline: (\S+) ([\d.]+) ms", s)
        if m:
            r["stages"].append((m.group(1), float(m.group(2)) / 1000))
            # "cpu <ms> ms": PID 1's CPU time at that mark (when cvminit prints it)
            c = re.search(r"\bcpu ([\d.]+) ms", s)
            if c:
                cpu[m.group(1)] = float(c.group(1)) / 1000
    st = dict(r["stages"])
    if "init-start" in cpu and cpu:
        r["init_cpu_timeline"] = max(cpu.values()) - cpu["init-start"]
        r["stage_cpu"] = cpu
    r["init_start"] = st.get("init-start")
    r["root"] = next((st[k] for k in ("root-open", "root") if k in st), None)
    r["state"] = next((st[k] for k in ("state", "state-mount") if k in st), None)
    r["switch_root"] = st.get("switch-root")
    x = first(pk, r"^cvminit: containerd: started")
    r["containerd_started"] = x[1] if x else None
    x = first(pk, r"^cvminit: containerd: ready")
    r["containerd_ready"] = x[1] if x else None
    x = first(pk, r"^cvminit: kubelet: started")
    r["kubelet_started_init"] = x[1] if x else None
    x = first(pk, r"^cvminit: network: ready")
    r["network_ready"] = x[1] if x else None
    # The join (an image from before it has none): the agent attests the node to cvm-join
    # and writes the bootstrap kubeconfig; kubelet starts after it.
    x = first(pk, r"^cvminit: join: started")
    r["join_started"] = x[1] if x else None
    x = first(pk, r"^cvminit: join: ready")
    r["join_ready"] = x[1] if x else None
    # The config's (networking) modules: PID 1's wait for their loader, from its line (since
    # issue 15's second part the wait is before the first service that is not "early",
    # after the timeline; before, the "modules-extra" stage).
    x = first(pk, r"^cvminit: modules: config modules loaded in the background, \d+ ms "
              r"after their start \(waited for (\d+) ms[;)]")
    if x:
        r["config_modules_wait"] = int(x[2].group(1)) / 1000
    # PID 1's waits for the boot's own background loader: since issue 15's third part one
    # loader with two lines, "root modules" (waited for before the root's partitions) and
    # "root and state modules" (in the state volume's opening, after the TPM's part);
    # before, one "state modules" line, waited for in the "modules-wait" stage.
    # Each loader's CPU (since the third part; a child's CPU is not PID 1's): [(guest t, s)].
    r["loader_wait"], r["loader_cpu"] = 0.0, []
    for _, g, s in pk:
        m = re.search(r"^cvminit: modules: (.+) modules loaded in the background, \d+ ms "
                      r"after their start \(waited for (\d+) ms(?:; the loader's CPU (\d+) "
                      r"ms)?\)", s)
        if m and m.group(1) != "config":
            r["loader_wait"] += int(m.group(2)) / 1000
        if m and m.group(3):
            r["loader_cpu"].append((g, int(m.group(3)) / 1000))
    # Each stage's own duration (from the previous mark), e.g. "modules" and "modules-extra".
    prev = 0.0
    r["stage_s"] = {}
    for name, at in r["stages"]:
        r["stage_s"][name] = at - prev
        prev = at
    r["events"] = [(name, at) for name, at in r["stages"]]
    return r


DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|min|ms|us|s)")
UNIT_SCALE = {"h": 3600, "min": 60, "s": 1, "ms": 1e-3, "us": 1e-6}


def duration(text):
    """systemd's time spans ("2min 31.523s", "812ms") in seconds."""
    return sum(float(v) * UNIT_SCALE[u] for v, u in DURATION.findall(text))


CHAIN_LINE = re.compile(r"^[\s\u2502\u2514\u251c\u2500|]*(?:`-|\|-)?(\S+)"
                        r"(?: @((?:[\d.]+(?:h|min|ms|us|s) ?)+))?(?: \+((?:[\d.]+(?:h|min|ms|us|s) ?)+))?\s*$")


def parse_critical_chain(lines):
    """systemd-analyze critical-chain's tree as [{unit, at, took}], the target first, in
    seconds since userspace started: for a unit with a start job of its own ("@at +took"),
    at is when that job began (the unit left "inactive") and at + took when the unit became
    active; for one without (a target, a socket, a device: took None), at is when it became
    active. (systemd-analyze prints the activating time after "@" when it prints a "+".)"""
    out = []
    for s in lines:
        m = CHAIN_LINE.match(s.rstrip())
        if not m or "." not in m.group(1):
            continue
        out.append({"unit": m.group(1), "at": duration(m.group(2)) if m.group(2) else None,
                    "took": duration(m.group(3)) if m.group(3) else None})
    return out


def parse_blame(lines):
    """systemd-analyze blame as [(seconds, unit)], longest first."""
    out = []
    for s in lines:
        m = re.match(r"^\s*((?:[\d.]+(?:h|min|ms|us|s) ?)+)\s+(\S+)\s*$", s)
        if m:
            out.append((duration(m.group(1)), m.group(2)))
    return out


def parse_all_units(lines):
    """systemctl show of every unit (Id, InactiveExit, ActiveEnter and InactiveEnter
    timestamps, blank lines between units) as {unit: (left inactive, became active, went
    inactive again)} in seconds, None where the unit did not (0 in systemd's output; a
    oneshot without RemainAfterExit goes from activating back to inactive)."""
    out, block = {}, {}
    for s in lines + [""]:
        m = re.match(r"^\s*(\w+)=(.*)$", s)
        if m:
            block[m.group(1)] = m.group(2).strip()
            continue
        if not s.strip() and block.get("Id"):
            t = []
            for k in ("InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic",
                      "InactiveEnterTimestampMonotonic"):
                v = block.get(k, "0")
                t.append(int(v) / 1e6 if v.isdigit() and int(v) else None)
            out[block["Id"]] = tuple(t)
            block = {}
    return out


def parse_samples(lines):
    """The reference's CPU sampler (tests/bench/cpu-sampler.c): a line every 5 s from the
    initrd's start on, "s <mono_us> busy=<ticks> idle=<ticks> q=<0|1> [seq=<uevents>]
    [sys=<usec>] <cgroup>=<v> ...", a cgroup only when its total changed; <v> is "<usec>",
    "!<usec>" for a new cgroup under a name seen before (a unit of the initrd stopped and
    one of the root's started under its name: its total starts again) or "-" once when the
    cgroup is gone. As [{t, busy, idle, q, seq, sys, cg: {cgroup: seconds}, ended: [cgroup]}]
    in time order, where a cgroup's seconds are its total over all cgroups of that name
    (each one's total at its last line, plus the current one's): it only grows, so the
    difference between two samples is CPU spent between them, whatever cgroup came and went;
    a cgroup's CPU after its last line is only in sys (system.slice's total). A damaged
    line (another writer on the console) is skipped."""
    out, base, cur = [], {}, {}
    for s in lines:
        m = re.search(r"\bs (\d+) busy=(\d+) idle=(\d+) q=([01])(?: seq=(\d+))?(?: sys=(\d+))?"
                      r"((?: [\w@.:\\-]+=(?:!?\d+|-))*)\s*$", s)
        if not m:
            continue
        t = int(m.group(1)) / 1e6
        if out and t <= out[-1]["t"]:
            continue
        ended = []
        for name, v in re.findall(r" ([\w@.:\\-]+)=(!?\d+|-)", m.group(7)):
            if v == "-" or v.startswith("!"):
                base[name] = base.get(name, 0.0) + cur.get(name, 0.0)
                cur[name] = 0.0
                ended.append(name)
            if v != "-":
                cur[name] = int(v.lstrip("!")) / 1e6
        out.append({"t": t, "busy": int(m.group(2)), "idle": int(m.group(3)),
                    "q": m.group(4) == "1", "ended": ended,
                    "cg": {n: base.get(n, 0.0) + v for n, v in cur.items()},
                    "seq": int(m.group(5)) if m.group(5) else None,
                    "sys": int(m.group(6)) / 1e6 if m.group(6) else None})
    return out


def parse_systemd(lines):
    r = {"events": []}
    texts = [s for _, s in lines]
    try:
        b = max(i for i, s in enumerate(texts) if s.strip() == "bench-report: begin")
        e = next(i for i in range(b, len(texts)) if texts[i].strip() == "bench-report: end")
    except (ValueError, StopIteration):
        raise TestFailure("no bench-report block on the console")
    # Sections: the manager's properties, "units:" (blocks of properties separated by blank
    # lines, each with its Id=), "journal:" (JSON lines).
    manager, units, journal, section, block = {}, {}, [], "manager", {}
    raw = {"critical-chain": [], "blame": [], "all-units": [], "samples": [],
           "journal-sources": []}

    def flush():
        if block.get("Id"):
            units[block["Id"]] = dict(block)
        block.clear()
    for s in texts[b + 1:e]:
        if s.strip() in ("bench-report: units", "bench-report: journal",
                         "bench-report: critical-chain", "bench-report: blame",
                         "bench-report: all-units", "bench-report: samples",
                         "bench-report: journal-sources"):
            flush()
            section = s.split()[-1]
            continue
        if section in raw:
            raw[section].append(s.rstrip())
            continue
        s = s.strip()
        if section == "journal":
            if s.startswith("{"):
                try:
                    journal.append(json.loads(s))
                except ValueError:
                    pass
            continue
        if not s:
            if section == "units":
                flush()
            continue
        m = re.match(r"^(\w+)=(.*)$", s)
        if m:
            (manager if section == "manager" else block)[m.group(1)] = m.group(2)
    flush()

    def mono(d, k):
        try:
            v = int(d.get(k, "0"))
        except ValueError:
            return None
        return v / 1e6 if v else None

    def jtime(entry):
        for k in ("_SOURCE_MONOTONIC_TIMESTAMP", "__MONOTONIC_TIMESTAMP"):
            if entry.get(k):
                return int(entry[k]) / 1e6
        return None

    def jfind(regex):
        rx = re.compile(regex)
        for entry in journal:
            msg = entry.get("MESSAGE")
            if isinstance(msg, str) and rx.search(msg):
                return jtime(entry)
        return None

    r["manager"] = manager
    r["units"] = units
    r["critical_chain"] = parse_critical_chain(raw["critical-chain"])
    r["blame"] = parse_blame(raw["blame"])
    r["unit_cpu"] = {u: int(d["CPUUsageNSec"]) / 1e9 for u, d in units.items()
                     if d.get("CPUUsageNSec", "").isdigit()}
    r["journal_entries"] = len(journal)
    r["all_units"] = parse_all_units(raw["all-units"])
    r["samples"] = parse_samples(raw["samples"])
    r["journal_sources"] = [x.strip() for x in raw["journal-sources"] if x.strip()]
    for k, key in (("UdevDevices", "udev_devices"), ("DeviceUnits", "device_units")):
        if manager.get(k, "").isdigit():
            r[key] = int(manager[k])
    if "Modules" in manager:
        r["modules"] = manager["Modules"].split()
    r["init_start"] = mono(manager, "InitRDTimestampMonotonic")
    r["userspace_start"] = mono(manager, "UserspaceTimestampMonotonic")
    r["root"] = jfind(r"^Mounted sysroot\.mount")
    r["state"] = jfind(r"^Mounted sysroot-var\.mount") or mono(units.get("var.mount", {}),
                                                               "ActiveEnterTimestampMonotonic")
    r["switch_root"] = jfind(r"^Switching root")
    cd = units.get("containerd.service", {})
    r["containerd_started"] = mono(cd, "ExecMainStartTimestampMonotonic")
    r["containerd_ready"] = mono(cd, "ActiveEnterTimestampMonotonic")
    r["kubelet_started_init"] = mono(units.get("kubelet.service", {}),
                                     "ExecMainStartTimestampMonotonic")
    r["network_ready"] = mono(units.get("network-online.target", {}),
                              "ActiveEnterTimestampMonotonic")
    marks = [
        ("udevd", r"^Started systemd-udevd\.service"),
        ("tpm2.target", r"^Reached target tpm2\.target"),
        ("pcrphase", r"^Finished systemd-pcrphase-initrd\.service"),
        ("verity", r"^Finished systemd-veritysetup@root\.service"),
        ("sysroot", r"^Mounted sysroot\.mount"),
        ("repart", r"^Finished (state-repart|systemd-repart)\.service"),
        ("cryptsetup", r"^Finished systemd-cryptsetup@state\.service"),
        ("sysroot-var", r"^Mounted sysroot-var\.mount"),
        ("switch-root", r"^Switching root"),
        ("sysinit", r"^Reached target sysinit\.target"),
        ("basic", r"^Reached target basic\.target"),
        ("containerd exec", r"^Starting containerd\.service"),
    ]
    for name, rx in marks:
        t = jfind(rx)
        if t is not None:
            r["events"].append((name, t))
    r["events"].sort(key=lambda x: x[1])
    return r


def analyse(image, run, required=("init_start", "root", "state", "containerd_ready")):
    lines = run["lines"]
    pk = printk_lines(lines)
    if not pk:
        raise TestFailure("no kernel console lines")
    # The kernel's start in host time: the smallest lag of an early console line.
    kernel_wall = min(t - g for t, g, _ in pk[:300])
    probe = parse_probe(run["chan"])
    if "start" not in probe:
        raise TestFailure("no bench-probe line on the test channel")
    r = parse_cvminit(lines, pk) if image != "systemd" else parse_systemd(lines)
    r.pop("manager", None)
    r.pop("units", None)
    start = probe["start"]
    kub = int(start["mono_us"]) / 1e6
    hz = int(start.get("hz", 100))
    p1 = probe.get("pid1", {})
    cpu = probe.get("cpu", {})
    r.update({
        "kernel_start_wall": kernel_wall,
        "kubelet_started": kub,
        "kubelet_started_wall": start["_host_t"],
        "done_wall": run["t_done"],
        "clean_shutdown": run["clean_shutdown"],
        "pid1_comm": p1.get("comm"),
        "pid1_cpu": int(p1["sched_ns"]) / 1e9 if p1.get("sched_ns") else None,
        "pid1_cpu_ticks": (int(p1["utime"]) + int(p1["stime"])) / hz if p1 else None,
        "pid1_children_cpu": (int(p1["cutime"]) + int(p1["cstime"])) / hz if p1 else None,
        "pid1_rss_kb": int(p1["rss_kb"]) if p1 else None,
        "pid1_hwm_kb": int(p1["hwm_kb"]) if p1 else None,
        "pid1_rss_anon_kb": int(p1["rss_anon_kb"]) if p1.get("rss_anon_kb") else None,
        "pid1_rss_file_kb": int(p1["rss_file_kb"]) if p1.get("rss_file_kb") else None,
        "machine_busy_cpu": int(cpu["busy_ticks"]) / hz if cpu else None,
        "ncpu": int(cpu.get("ncpu", 0)) if cpu else None,
        "top": probe.get("top", []),
        "top_hz": hz,
        "var": probe.get("var", {}).get("dm_uuid"),
    })
    for k in required:
        if r.get(k) is None:
            raise TestFailure(f"{image}: no '{k}' time found on the console")
    return r


# ------------------------------------------------------------------------------ report

ROWS = [
    # key, label, unit, function(run) -> value
    ("kernel", "kernel start → init start (guest)", "s", lambda r: r["init_start"]),
    ("root", "init start → root mounted", "s", lambda r: r["root"] - r["init_start"]),
    ("state", "init start → state mounted", "s", lambda r: r["state"] - r["init_start"]),
    ("containerd", "init start → containerd ready", "s",
     lambda r: r["containerd_ready"] - r["init_start"]),
    ("kubelet", "init start → kubelet started", "s",
     lambda r: r["kubelet_started"] - r["init_start"]),
    ("containerd_exec", "init start → containerd exec", "s",
     lambda r: r["containerd_started"] - r["init_start"]),
    ("containerd_exec_abs", "kernel start → containerd exec (guest)", "s",
     lambda r: r["containerd_started"]),
    ("modules", "cvminit: module stage (the initrd's modules)", "s",
     lambda r: r["stage_s"]["modules"]),
    ("modules_bg", "cvminit: module stage + PID 1's waits for its background loader "
     "(before the root, in the state volume's opening)", "s",
     lambda r: r["stage_s"]["modules"] + r.get("loader_wait", 0.0)),
    ("modules_extra", "cvminit: the config's modules (networking, from the root), PID 1's wait",
     "s", lambda r: r["stage_s"]["modules-extra"] if "modules-extra" in r["stage_s"]
     else r["config_modules_wait"]),
    ("join", "join: started → ready (attested by cvm-join, bootstrap kubeconfig written)", "s",
     lambda r: r["join_ready"] - r["join_started"]),
    ("join_wait", "join: kubelet's wait for it after containerd and the network are ready",
     "s", lambda r: join_wait(r)),
    ("join_share", "join's share of init start → kubelet started (the reference has none)",
     "%", lambda r: 100 * join_wait(r) / (r["kubelet_started"] - r["init_start"])),
    ("net_wait", "network: kubelet's wait for it after containerd ready", "s",
     lambda r: max(0.0, r["network_ready"] - r["containerd_ready"])),
    ("net_share", "network's share of init start → kubelet started", "%",
     lambda r: 100 * net_cost(r) / (r["kubelet_started"] - r["init_start"])),
    ("kubelet_abs", "kernel start → kubelet started (guest)", "s",
     lambda r: r["kubelet_started"]),
    ("firmware", "QEMU start → kernel start (wall: OVMF + stub)", "s",
     lambda r: r["kernel_start_wall"]),
    ("wall", "QEMU start → kubelet started (wall)", "s", lambda r: r["kubelet_started_wall"]),
    ("containerd_own", "containerd exec → ready (containerd's own start)", "s",
     lambda r: r["containerd_ready"] - r["containerd_started"]
     if r.get("containerd_started") else None),
    ("pid1_cpu", "PID 1 CPU until kubelet start (kernel's start included)", "s",
     lambda r: r["pid1_cpu"]),
    ("init_cpu", "init's own CPU (PID 1 and its module loaders until kubelet's start, minus "
     "the kernel's share before /init)", "s",
     lambda r: r.get("init_cpu")),
    ("init_share", "init's own CPU / (init start → kubelet started)", "%",
     lambda r: 100 * r["init_cpu"] / (r["kubelet_started"] - r["init_start"])
     if r.get("init_cpu") is not None else None),
    ("pid1_children", "CPU of PID 1's reaped children (generators, helpers)", "s",
     lambda r: r["pid1_children_cpu"]),
    ("busy", "machine busy CPU until kubelet start (all vCPUs)", "s",
     lambda r: r["machine_busy_cpu"]),
    ("rss", "PID 1 RSS at kubelet start", "MiB",
     lambda r: r["pid1_rss_kb"] / 1024 if r["pid1_rss_kb"] is not None else None),
]


def join_wait(r):
    """The part of init start → kubelet started that only the join explains: it starts
    once the network is ready, and kubelet waits for it after containerd and the network.
    KeyError or TypeError for a run without a join (the reference, an older image)."""
    return max(0.0, r["join_ready"] - max(r["containerd_ready"], r["network_ready"]))


def net_cost(r):
    """The part of init start → kubelet started that only the network explains: kubelet's
    wait for it once containerd is ready, plus (cvminit) the networking modules and the NIC
    stage, which run before any service starts. systemd loads its modules and runs networkd
    beside other units: only its wait counts."""
    wait = max(0.0, r["network_ready"] - r["containerd_ready"])
    if "stage_s" in r:
        wait += r["stage_s"].get("modules-extra", 0.0) + r["stage_s"].get("network", 0.0)
    return wait


# QEMU runs the guest's vCPUs on one host thread (-accel tcg,thread=single): once one vCPU
# is busy the whole second of emulation goes to the guest's work, whatever the other does.
HOST_CPUS = 1.0
# The busy CPU outside init.scope and every unit's cgroup.
KERNEL = "kernel threads, interrupts (no unit's cgroup)"
# system.slice's CPU beyond what its cgroups' lines account for: units whose cgroup ended
# (or began and ended) between two samples, which no line could read at their end (the
# stretch's detail names those the sampler saw go).
ENDED = "units that ended between two samples (system.slice's total)"


def _at(samples, t, key):
    """A cumulative value of the sampler at time t (linear between its samples)."""
    for a, b in zip(samples, samples[1:]):
        if a["t"] <= t <= b["t"]:
            va, vb = key(a), key(b)
            return va + (vb - va) * (t - a["t"]) / (b["t"] - a["t"])
    return None


def gap_cpu(r, a, b):
    """What used the CPU in the stretch [a, b] (guest monotonic seconds) of the root's path,
    from the reference's sampler. How much of it is explained: per interval between two
    samples, the part of it that the machine was busy (its busy CPU over the interval's
    length, at most HOST_CPUS: the emulation's one host thread); the rest of the interval
    the machine was idle, which this does not explain. Who used it: the explained seconds
    shared among PID 1 (init.scope), the units' cgroups and the kernel's own work (busy CPU
    outside every cgroup) in proportion to their CPU over the whole stretch (a cgroup's
    total is updated in bursts, so one interval's split would be noise). Returns
    {"explained": seconds, "cpu": {who: seconds}, "udev_queue": seconds with udev events
    queued, "sampled": seconds of the stretch the sampler covered, "uevents": how many the
    kernel sent meanwhile (a sampler that reports them), "ended": the cgroups the sampler
    saw go in the intervals that overlap it} or None without samples. With system.slice's
    total (sys) in every sample, the CPU of units that ended between two samples is its
    own share (ENDED), not the kernel's."""
    sm = r.get("samples") or []
    hz = r.get("top_hz") or 100
    if len(sm) < 2:
        return None
    out = {"explained": 0.0, "cpu": {}, "udev_queue": 0.0, "sampled": 0.0}
    for x, y in zip(sm, sm[1:]):
        lo, hi = max(a, x["t"]), min(b, y["t"])
        if hi <= lo:
            continue
        busy = (y["busy"] - x["busy"]) / hz
        out["sampled"] += hi - lo
        out["explained"] += (hi - lo) * min(1.0, busy / (HOST_CPUS * (y["t"] - x["t"])))
        if y["q"] or x["q"]:
            out["udev_queue"] += hi - lo
    if not out["sampled"]:
        return out
    lo, hi = max(a, sm[0]["t"]), min(b, sm[-1]["t"])
    names = set(sm[-1]["cg"])
    use = {n: _at(sm, hi, lambda x: x["cg"].get(n, 0.0)) -
           _at(sm, lo, lambda x: x["cg"].get(n, 0.0)) for n in names}
    use = {n: v for n, v in use.items() if v > 0}
    busy = (_at(sm, hi, lambda x: x["busy"]) - _at(sm, lo, lambda x: x["busy"])) / hz
    if all(x.get("sys") is not None for x in sm):
        units = sum(v for n, v in use.items() if n != "init.scope")
        sys_use = _at(sm, hi, lambda x: x["sys"]) - _at(sm, lo, lambda x: x["sys"])
        use[ENDED] = max(0.0, sys_use - units)
    out["ended"] = sorted({n for x, y in zip(sm, sm[1:]) if y["t"] > a and x["t"] < b
                           for n in y.get("ended", ())})
    if all(x.get("seq") is not None for x in sm):
        out["uevents"] = round(_at(sm, hi, lambda x: x["seq"]) - _at(sm, lo, lambda x: x["seq"]))
    use[KERNEL] = max(0.0, busy - sum(use.values()))
    total = sum(use.values())
    if total > 0:
        out["cpu"] = {n: out["explained"] * v / total for n, v in use.items() if v > 0}
    return out


def activating_in(r, a, b, skip=()):
    """Units that were starting during [a, b] (left inactive before b, became active or
    inactive again after a), with how long of the stretch each was; devices, slices and
    units whose start has no end on record left out."""
    out = []
    for unit, (left, active, back) in (r.get("all_units") or {}).items():
        if left is None or unit in skip or unit.endswith((".device", ".slice", ".scope")):
            continue
        ends = [t for t in (active, back) if t is not None and t >= left]
        if not ends:
            continue
        lo, hi = max(a, left), min(b, min(ends))
        if hi - lo >= 0.5:
            out.append((unit, hi - lo))
    return sorted(out, key=lambda x: -x[1])


# The label of the root's first stretch without a start job on the chain: from the root's
# manager's start to its first chain job (its generators and unit loading, the units it
# starts first), which the sampler covers from the initrd on.
AFTER_SWITCH = "after the switch-root"


def initrd_stretches(r):
    """The initrd's part of the path, init start → "Switching root", split at the journal's
    milestones: [(name of the step that ends the stretch, from, to)]."""
    lo, sw = r["init_start"], r.get("switch_root")
    out, prev = [], lo
    for name, t in sorted(r.get("events", []), key=lambda x: x[1]):
        if prev < t <= sw:
            out.append((name, prev, t))
            prev = t
    if sw > prev:
        out.append(("switch-root", prev, sw))
    return out


def chain_attribution(r):
    """How much of systemd's init start → kubelet started is explained, in four parts:
    the initrd (init start → "Switching root"), split at the journal's milestones, each
    stretch named by the step that ends it (they depend on each other in that order:
    udev, the TPM, verity, /sysroot, repart, cryptsetup, /sysroot/var); the switch-root
    (→ the root's manager starts, UserspaceTimestamp); on the root's side the union of
    the critical chain's start jobs ([at, at + took]); and the stretches between
    them, where no start job on the chain ran and the chain's next job waited in PID 1's
    queue: there the CPU they were spent on (gap_cpu(): PID 1, udev, journald, the
    kernel, ...) as far as the machine was busy. The first of those stretches, from the
    root's manager's start to its first chain job, is labelled AFTER_SWITCH, the others
    "gaps". A stretch where the machine was idle, or that the sampler did not cover,
    stays unexplained.
    Returns (share in %, [(what, seconds)] largest first, the root's uncovered gaps as
    dicts: from, to (seconds after init start), explained, cpu, udev_queue, activating,
    ended, after_switch)."""
    chain, base = r.get("critical_chain") or [], r.get("userspace_start")
    lo, hi, sw = r["init_start"], r["kubelet_started"], r.get("switch_root")
    if not chain or base is None or sw is None or not lo < sw <= base < hi:
        return None, [], []
    parts = [(f"initrd: → {name}", b - a) for name, a, b in initrd_stretches(r)]
    parts.append(("switch-root → the root's manager", base - sw))
    spans = []
    for c in chain:
        if c["at"] is not None and c["took"]:
            a, b = max(base, base + c["at"]), min(hi, base + c["at"] + c["took"])
            if b > a:
                spans.append((a, b, c["unit"]))
    spans.sort()
    covered, holes, cur = 0.0, [], base
    for a, b, unit in spans:
        if a > cur:
            holes.append((cur, a))
            cur = a
        if b > cur:
            parts.append((unit, b - cur))
            covered += b - cur
            cur = b
    if hi > cur:
        holes.append((cur, hi))
    on_chain = {c["unit"] for c in chain}
    gaps, cpu = [], {}
    for a, b in holes:
        g = gap_cpu(r, a, b)
        where = AFTER_SWITCH if a == base else "gaps"
        if g:
            covered += g["explained"]
            for n, v in g["cpu"].items():
                cpu[(where, n)] = cpu.get((where, n), 0.0) + v
        gaps.append({"from": a - lo, "to": b - lo,
                     "explained": g["explained"] if g else 0.0,
                     "cpu": g["cpu"] if g else {},
                     "udev_queue": g["udev_queue"] if g else 0.0,
                     "ended": g.get("ended", []) if g else [],
                     "after_switch": a == base,
                     "activating": activating_in(r, a, b, on_chain)})
    parts += [(f"{where}: CPU of {n}", v) for (where, n), v in cpu.items() if v > 0]
    explained = (base - lo) + covered
    return 100 * explained / (hi - lo), sorted(parts, key=lambda x: -x[1]), gaps


def is_device(unit):
    """A device unit in blame's list, whose long names blame cuts with "…" before ".device"
    (devices are named after their /dev or /sys path)."""
    return unit.endswith(".device") or unit.startswith(("dev-", "sys-devices-", "sys-module-",
                                                        "sys-subsystem-"))


def systemd_path(results, kind):
    """The median systemd run's critical chain, attribution and journald's cost (markdown)."""
    runs = [r for r in results["systemd"][kind] if r.get("critical_chain")]
    if not runs:
        return ""
    r = sorted(runs, key=lambda x: x["kubelet_started"])[len(runs) // 2]
    share, units, gaps = chain_attribution(r)
    span = r["kubelet_started"] - r["init_start"]
    cpu = r.get("unit_cpu", {})
    sm = r.get("samples") or []
    if share is not None:
        d = dict(units)
        initrd = sum(v for k, v in units if k.startswith("initrd: "))
        on_chain = sum(v for k, v in units if not k.startswith(
            ("initrd: ", "switch-root → ", f"{AFTER_SWITCH}: ", "gaps: ")))
        after = [g for g in gaps if g["after_switch"]]
        other = [g for g in gaps if not g["after_switch"]]
        out = [f"systemd's path to kubelet ({r['name']}, init start → kubelet started"
               f" {span:.2f} s): {share:.0f} % of it is explained: the initrd's steps"
               f" {initrd:.1f} s (journal), the switch-root"
               f" {d.get('switch-root → the root' + chr(39) + 's manager', 0.0):.1f} s,"
               f" the start jobs on the critical chain {on_chain:.1f} s (systemd-analyze"
               f" critical-chain kubelet.service) and, where no job on the chain ran, the CPU"
               f" the machine spent on PID 1, udev, journald and the rest while the chain's"
               f" next job waited: {sum(g['explained'] for g in after):.1f} s of the"
               f" {sum(g['to'] - g['from'] for g in after):.1f} s from the root's manager's"
               f" start to the chain's first job ({AFTER_SWITCH}),"
               f" {sum(g['explained'] for g in other):.1f} s of the"
               f" {sum(g['to'] - g['from'] for g in other):.1f} s of the other gaps (the"
               f" sampler's busy seconds; idle seconds, and a stretch with no samples, are"
               f" not explained).", ""]
    else:
        out = ["systemd's critical chain: not reported.", ""]
    # What the machine's CPU went to while each step ran (the sampler): a start job's time
    # is its own work and its wait for the CPU others took; the initrd's steps likewise.
    spans = {}
    base = r.get("userspace_start")
    windows = []
    if share is not None:
        windows = [(f"initrd: → {n}", a, b) for n, a, b in initrd_stretches(r)]
        windows.append(("switch-root → the root's manager", r["switch_root"], base))
    for c in r.get("critical_chain") or []:
        if base is not None and c["at"] is not None and c["took"]:
            windows.append((c["unit"], base + c["at"],
                            min(r["kubelet_started"], base + c["at"] + c["took"])))
    for what, a, b in windows:
        g = gap_cpu(r, a, b)
        if g and g["cpu"]:
            top = sorted(g["cpu"].items(), key=lambda x: -x[1])[:3]
            spans[what] = ", ".join(f"{n} {v:.1f} s" for n, v in top) + (
                f"; {g['uevents']} uevents" if "uevents" in g else "")
    out += ["| step (initrd: the stretch that ends with it; after the switch-root and gaps:"
            " CPU between the chain's jobs) | time on the path | the CPU meanwhile (sampler;"
            " largest three) |",
            "|---|---|---|"]
    out += [f"| {u} | {t:.2f} s | {spans.get(u, '')} |" for u, t in units[:16]]
    listed = [g for g in gaps if g["to"] - g["from"] >= 0.5]
    if listed:
        out += ["", "Gaps on the root's side (no start job on the chain running), with what used"
                " the CPU in each, the units starting meanwhile and the cgroups that ended:",
                ""]
        for g in listed:
            top = sorted(g["cpu"].items(), key=lambda x: -x[1])[:4]
            acts = ", ".join(f"{u} {t:.1f} s" for u, t in g["activating"][:4])
            ended = ", ".join(g.get("ended", [])[:6])
            out.append(f"- {g['from']:.1f}–{g['to']:.1f} s after init start"
                       + f" ({AFTER_SWITCH + '; ' if g.get('after_switch') else ''}"
                       f"{g['to'] - g['from']:.1f} s, {g['explained']:.1f} s busy"
                       f", udev's queue non-empty {g['udev_queue']:.1f} s): "
                       + (", ".join(f"{n} {v:.1f} s" for n, v in top) or "no samples")
                       + (f"; starting: {acts}" if acts else "")
                       + (f"; ended: {ended}" if ended else "") + ".")
    if len(sm) > 1 and share is not None:
        after = sum(1 for x in sm if x["t"] > r["switch_root"])
        out += ["", f"The sampler's samples: {len(sm)}, from {sm[0]['t'] - r['init_start']:.1f} s"
                f" after init start to {sm[-1]['t'] - r['init_start']:.1f} s; {after} after the"
                f" switch-root ({r['switch_root'] - r['init_start']:.1f} s)."]
    if len(sm) > 1 and sm[0].get("seq") is not None and sm[-1].get("seq") is not None:
        out += ["", f"uevents the kernel sent (its sequence number): {sm[0]['seq']} by the"
                f" sampler's first sample ({sm[0]['t'] - r['init_start']:.1f} s after init"
                f" start), {sm[-1]['seq']} by its last ({sm[-1]['t'] - r['init_start']:.1f} s)."]
    if r.get("udev_devices") or r.get("journal_entries"):
        out += ["", f"udev's database: {r.get('udev_devices', '?')} devices; PID 1's device units:"
                f" {r.get('device_units', '?')}; modules loaded: "
                f"{len(r['modules']) if 'modules' in r else '?'}; PID 1's journal entries: "
                f"{r.get('journal_entries', '?')}"
                + (f"; the journal by sender: {'; '.join(r['journal_sources'][:8])}"
                   if r.get("journal_sources") else "") + "."]
    if cpu:
        out += ["", "CPU until the report (cgroup accounting): " + ", ".join(
            f"{u} {v:.2f} s" for u, v in sorted(cpu.items(), key=lambda x: -x[1])
            if v >= 0.05) + "."]
    if r.get("blame"):
        out += ["", "Longest start jobs (systemd-analyze blame): " + ", ".join(
            f"{u} {t:.2f} s" for t, u in [b for b in r["blame"] if not is_device(b[1])][:10])
            + "."]
    return "\n".join(out) + "\n"


def summarise(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "values": vals}


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "%":
        return f"{v:.1f} %"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    return f"{v:.2f} s"


def fmt_size(b):
    return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 1024:.0f} KiB"


def cell(s, unit):
    if s is None:
        return "–"
    if s["n"] == 1:
        return fmt(s["median"], unit)
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit).split()[0]}–{fmt(s['max'], unit)})"


def ratio(a, b):
    if a is None or b is None or not b["median"]:
        return "–"
    return f"{a['median'] / b['median']:.2f}"


def table(results, kind):
    out = [f"| {kind} | cvminit | systemd | cvminit/systemd |", "|---|---|---|---|"]
    stats = {}
    for key, label, unit, f in ROWS:
        per = {}
        for img in IMAGES:
            vals = []
            for r in results[img][kind]:
                try:
                    vals.append(f(r))
                except (TypeError, KeyError, ZeroDivisionError):
                    vals.append(None)
            per[img] = summarise(vals)
        stats[key] = per
        out.append(f"| {label} | {cell(per['cvminit'], unit)} | {cell(per['systemd'], unit)} | "
                   f"{ratio(per['cvminit'], per['systemd'])} |")
    return "\n".join(out), stats


def top_table(results, kind):
    out = []
    for img in IMAGES:
        runs = results[img][kind]
        if not runs:
            continue
        r = runs[len(runs) // 2]
        hz = r.get("top_hz", 100)
        items = ", ".join(f"{p['comm']} {p['ticks'] / hz:.2f} s" for p in r["top"])
        out.append(f"- {img}: {items}")
    return "\n".join(out)


BEFORE_ROWS = ("containerd_exec", "modules", "modules_bg", "modules_extra", "containerd_exec_abs",
               "kubelet", "join", "join_wait", "kubelet_abs", "init_cpu", "rss", "firmware",
               "wall")


def before_after(results, meta, sz):
    """cvminit before (--before) and after, from one run: the rows of BEFORE_ROWS."""
    md = [f"cvminit before and after, one run ({meta['date']}; load average at its end "
          f"{meta.get('load_end', '?')})", ""]
    for kind in ("later", "first"):
        md += [f"| {kind} | before | after | after/before |", "|---|---|---|---|"]
        for key, label, unit, f in ROWS:
            if key not in BEFORE_ROWS:
                continue
            per = {}
            for img in (BEFORE, "cvminit"):
                vals = []
                for r in results[img][kind]:
                    try:
                        vals.append(f(r))
                    except (TypeError, KeyError, ZeroDivisionError):
                        vals.append(None)
                per[img] = summarise(vals)
            md.append(f"| {label} | {cell(per[BEFORE], unit)} | {cell(per['cvminit'], unit)} | "
                      f"{ratio(per['cvminit'], per[BEFORE])} |")
        md.append("")
    if BEFORE in sz and "cvminit" in sz:
        a, b = sz[BEFORE], sz["cvminit"]
        md += ["| sizes | before | after | after/before |", "|---|---|---|---|"]
        for k, label in (("init_binary_bytes", "/init (cvminit)"),
                         ("initrd_bytes", "initrd in the UKI"), ("uki_bytes", "UKI")):
            md.append(f"| {label} | {a[k]:,} B | {b[k]:,} B | {b[k] / a[k]:.2f} |")
        md.append("")
    return "\n".join(md)


JOIN_NOTE = ("The systemd reference has no join: its kubelet starts without attesting the node "
             "to a join service, cvminit's only after it (the join rows). Ratios from init "
             "start → kubelet started on therefore include cvminit's join; init start → "
             "containerd exec is where both images have done the same work (the headline).")


def headline(results):
    """The headline ratio: init start → containerd exec on later boots, where both images
    have done the same work (cvminit's join comes after it, and the reference has none)."""
    per = {}
    for img in IMAGES:
        vals = []
        for r in results[img]["later"]:
            try:
                vals.append(r["containerd_started"] - r["init_start"])
            except (TypeError, KeyError):
                pass
        per[img] = summarise(vals)
    if not per["cvminit"] or not per["systemd"]:
        return ""
    return (f"Headline (later boots, init start → containerd exec, the same work in both): "
            f"cvminit {cell(per['cvminit'], 's')}, systemd {cell(per['systemd'], 's')}: "
            f"{ratio(per['cvminit'], per['systemd'])} of the reference's time.")


def write_report(results, meta, sz):
    md = []
    md.append(f"Command: `{meta['command']}`  ")
    md.append(f"Date: {meta['date']}  ")
    md.append(f"Machine: {meta['machine']}  ")
    md.append(f"QEMU: {meta['qemu']}; TCG, q35, OVMF, swtpm, 2 vCPUs, 2 GiB, virtio-blk  ")
    md.append(f"Kernel: {meta['kernel']}  ")
    if meta.get("load_end"):
        md.append(f"Load average at the end (1, 5, 15 min; the host is shared): "
                  f"{meta['load_end']}  ")
    md.append(f"Runs: {meta['first']} first boot(s) and {meta['n']} later boot(s) per image, "
              f"alternating; values are median (min–max).")
    md.append("")
    head = headline(results)
    if head:
        md += [head, ""]
    stats = {}
    for kind, title in (("later", "Later boots (state volume exists: unlock and mount)"),
                        ("first", "First boot (state volume made: LUKS2 format, TPM2 "
                                  "enrolment, ext4)")):
        if not any(results[i][kind] for i in IMAGES):
            continue
        t, stats[kind] = table(results, kind)
        md += [f"### {title}", "", t, "", JOIN_NOTE, ""]
        md += ["Largest CPU users at kubelet start (the median run; user+system):", "",
               top_table(results, kind), ""]
        sp = systemd_path(results, kind)
        if sp:
            md += [sp]
    if not all(img in sz for img in IMAGES):  # an --only run: one image, nothing to compare
        return "\n".join(md), stats
    md += ["### Sizes", "", "| | cvminit | systemd | cvminit/systemd |", "|---|---|---|---|"]
    for k, label in (("initrd_bytes", "initrd(s) in the UKI (as stored)"),
                     ("initrd_unpacked_bytes", "initrd unpacked (regular files)"),
                     ("init_binary_bytes", "init binary (+ its private libraries)"),
                     ("uki_bytes", "UKI")):
        a, b = sz["cvminit"][k], sz["systemd"][k]
        md.append(f"| {label} | {fmt_size(a)} | {fmt_size(b)} | {a / b:.3f} |")
    md.append(f"| initrd files | {sz['cvminit']['initrd_files']} | "
              f"{sz['systemd']['initrd_files']} | |")
    md.append("")
    md.append("Init binaries: " + "; ".join(
        f"{img}: " + ", ".join(f"{n} {fmt_size(s)}" for n, s in sz[img]["init_binary"].items())
        for img in IMAGES))
    md.append("")
    return "\n".join(md), stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=int(os.environ.get("BENCH_N", 2)),
                    help="later boots per image (default 2, or $BENCH_N)")
    ap.add_argument("--first", type=int, default=int(os.environ.get("BENCH_FIRST", 1)),
                    help="first boots per image (default 1, or $BENCH_FIRST)")
    ap.add_argument("--no-build", action="store_true", help="use the images as they are")
    ap.add_argument("--only", choices=IMAGES, help="boot one image only (development)")
    ap.add_argument("--before", metavar="DIR",
                    help="also boot the cvminit image saved in DIR (cvminit.raw, cvminit.efi) "
                    "as cvminit-before, alternating, and compare it with the new one")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the baseline boot (the kernel's share of PID 1's CPU)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per boot")
    ap.add_argument("--growth", action="store_true",
                    help="cvminit only: how its boot grows with the state volume's size "
                    "(with and without integrity) and the number of services (make "
                    "bench-growth)")
    ap.add_argument("--growth-sizes", nargs="+", default=["256M", "2G", "8G"],
                    help="state volume sizes for --growth (default 256M 2G 8G)")
    ap.add_argument("--from-results", metavar="JSON",
                    help="boot nothing: write the report (and with --docs the docs) from a "
                    "results.json of an earlier run")
    ap.add_argument("--docs", action="store_true",
                    help="also write docs/benchmarks.svg and the results in docs/benchmarks.md")
    args = ap.parse_args()
    if args.first < 1:
        sys.exit("bench: --first must be at least 1 (later boots need a made state volume)")

    # SIGTERM: leave through sys.exit so that vm.py's atexit stops QEMU and swtpm.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "runs").mkdir(exist_ok=True)
    if args.growth:
        return growth(args)
    if args.from_results:
        return rerender(args)
    if not args.no_build:
        build_images(args.only)
    images = {"cvminit": CVM_OUT / "cvminit.raw", "systemd": SD_OUT / "systemd-ref.raw"}
    order = [args.only] if args.only else list(IMAGES)
    if args.before:
        global BEFORE_DIR
        BEFORE_DIR = Path(args.before).resolve()
        images[BEFORE] = BEFORE_DIR / "cvminit.raw"
        order.insert(0, BEFORE)
    for img in order:
        if not images[img].is_file():
            sys.exit(f"bench: {images[img]} missing (run without --no-build)")
    sz = {img: sizes(img) for img in order}
    ukis = {"cvminit": CVM_OUT / "cvminit.efi", "systemd": None}
    if args.before:
        ukis[BEFORE] = BEFORE_DIR / "cvminit.efi"
    joins = {img: bool(ukis[img]) and has_join(ukis[img]) for img in order}
    if joins.get("cvminit"):
        join_env()  # cvm-join, cvm-measure and the key also with --no-build
    log("join service for: " + (", ".join(i for i in order if joins[i]) or "none"))
    results = {img: {"first": [], "later": []} for img in list(IMAGES) + [BEFORE]}
    failures = []
    disks = {}

    def run(img, kind, k):
        d = disks[img]
        name = f"bench-{img}-{kind}{k}"
        log(f"{name}: booting")
        try:
            raw = boot_once(img, d["disk"], d["tpm"], name, args.timeout, join=joins[img])
            r = analyse(img, raw)
        except TestFailure as e:
            log(f"{name}: FAILED: {e}")
            failures.append((name, str(e).splitlines()[0]))
            return
        r["name"] = name
        r["first_boot"] = kind == "first"
        results[img][kind].append(r)
        joined = (f", join {r['join_ready'] - r['join_started']:.2f} s"
                  if r.get("join_ready") and r.get("join_started") else "")
        log(f"{name}: kernel→init {r['init_start']:.2f} s, root {r['root']:.2f}, "
            f"state {r['state']:.2f}, containerd ready {r['containerd_ready']:.2f}{joined}, "
            f"kubelet {r['kubelet_started']:.2f} s guest / {r['kubelet_started_wall']:.1f} s wall;"
            f" PID 1 CPU {r['pid1_cpu'] or 0:.2f} s, RSS {(r['pid1_rss_kb'] or 0) / 1024:.1f} MiB")

    baseline = None
    try:
        if args.no_baseline:
            raise KeyError("skipped (--no-baseline)")
        log("baseline: the kernel alone (PID 1 before any init)")
        baseline = baseline_boot(300)
        log(f"baseline: PID 1 CPU {baseline['pid1_cpu']:.2f} s when /init starts at "
            f"{baseline['at']:.2f} s")
    except (TestFailure, KeyError, ValueError) as e:
        log(f"baseline: FAILED: {str(e).splitlines()[0]}")
        failures.append(("baseline", str(e).splitlines()[0]))
    for k in range(args.first):
        for img in order:
            work = OUT / "run" / img
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            subprocess.run(["cp", "--sparse=always", str(images[img]), str(work / "disk.raw")],
                           check=True)
            disks[img] = {"disk": work / "disk.raw", "tpm": work / "tpm"}
            run(img, "first", k + 1)
    for k in range(args.n):
        for img in order:
            run(img, "later", k + 1)

    meta = {
        "command": os.environ.get("BENCH_COMMAND", "python3 " + " ".join(sys.argv)),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "qemu": subprocess.run(["qemu-system-x86_64", "--version"], stdout=subprocess.PIPE,
                               text=True).stdout.splitlines()[0],
        "kernel": kernel_of(),
        "n": args.n, "first": args.first,
        "duration_s": round(time.monotonic() - t_start),
        "baseline": baseline,
        "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for img in results:
        for kind in ("first", "later"):
            for r in results[img][kind]:
                if r.get("pid1_cpu") is None:
                    continue
                if "init-start" in r.get("stage_cpu", {}):
                    r["init_cpu"] = own_cpu(r)
                    r["init_cpu_from"] = "timeline"
                elif baseline:
                    r["init_cpu"] = r["pid1_cpu"] - baseline["pid1_cpu"]
                    r["init_cpu_from"] = "baseline"
    (OUT / "results.json").write_text(json.dumps(
        {"meta": meta, "sizes": sz, "results": results, "failures": failures},
        indent=1, default=str))
    if args.before:
        ba = before_after(results, meta, sz)
        (OUT / "before-after.md").write_text(ba)
        print(ba)
    if args.only:
        log(f"done ({args.only} only); results in {OUT / 'results.json'}")
        return 1 if failures else 0
    md, _ = write_report(results, meta, sz)
    if args.before:
        md += "\n### cvminit before and after (issue 15), the same run\n\n" + ba
    if failures:
        md += "\nFailed runs (left out above): " + "; ".join(f"{n}: {w}" for n, w in failures) + "\n"
    (OUT / "report.md").write_text(md)
    picture = svg.timeline(results, meta)
    (OUT / "timeline.svg").write_text(picture)
    print(md)
    if args.docs:
        (REPO / "docs" / "benchmarks.svg").write_text(picture)
        update_docs(md)
        log("wrote docs/benchmarks.svg and the results section of docs/benchmarks.md")
    log(f"done in {meta['duration_s']} s; {OUT / 'report.md'}, {OUT / 'timeline.svg'}")
    return 1 if failures else 0


def rerender(args):
    """The report, before/after table, picture and docs of an earlier run's results.json."""
    d = json.loads(Path(args.from_results).read_text())
    results, meta, sz = d["results"], d["meta"], d["sizes"]
    for img in list(IMAGES) + [BEFORE]:
        results.setdefault(img, {"first": [], "later": []})
    md, _ = write_report(results, meta, sz)
    if d.get("failures"):
        md += "\nFailed runs (left out above): " + "; ".join(
            f"{n}: {w}" for n, w in d["failures"]) + "\n"
    if results[BEFORE]["later"] or results[BEFORE]["first"]:
        ba = before_after(results, meta, sz)
        (OUT / "before-after.md").write_text(ba)
        md += "\n### cvminit before and after (issue 15), the same run\n\n" + ba
    (OUT / "report.md").write_text(md)
    picture = svg.timeline(results, meta)
    (OUT / "timeline.svg").write_text(picture)
    print(md)
    if args.docs:
        (REPO / "docs" / "benchmarks.svg").write_text(picture)
        update_docs(md)
    return 0


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_docs(md, section="bench"):
    global BEGIN, END
    BEGIN, END = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    picture = "![boot timelines](benchmarks.svg)\n\n" if section == "bench" else ""
    doc = REPO / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{md}\n{picture}{END}{tail}")


def machine():
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    osr = ""
    try:
        osr = re.search(r'PRETTY_NAME="([^"]*)"', Path("/etc/os-release").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return f"{osr}, {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, host kernel {platform.release()}"


def kernel_of():
    try:
        sec = pe_sections(CVM_OUT / "cvminit.efi")
        a = sec[".uname"].rstrip(b"\0").decode().strip()
        b = pe_sections(SD_OUT / "systemd-ref.efi")[".uname"].rstrip(b"\0").decode().strip()
        return a if a == b else f"cvminit {a}, systemd {b} (DIFFERENT)"
    except (OSError, KeyError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
