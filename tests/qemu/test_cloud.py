"""Cloud readiness: `make image KUBELET=...` puts that kubelet in the image (a real mkosi
build); the node boots with its OS disk on each interface QEMU has of those the clouds
give a confidential VM (virtio-blk, virtio-scsi, NVMe; Hyper-V's VMBus SCSI cannot be
emulated here, so that path is untested) with the same measurements; the upload
artefacts of `make cloud-images` hold the image's bits (the Azure VHD boots)."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import helpers
from vm import REPO, VM, WORK_ROOT, TestFailure, gpt_partitions, note, scaled

ROOT_TYPE = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
IMAGE_VARS = ("KUBELET", "KUBELET_SHA256", "CVMINIT_INIT", "CVMINIT_INITRD",
              "CVMINIT_EXTRA_TREE", "CVMINIT_STATE_SIZE", "SOURCE_DATE_EPOCH")


sha256 = helpers.sha256


def make_env():
    """The environment of a make this test runs: no image variable and no outer make's
    flags (make check's own command line must not reach it)."""
    drop = set(IMAGE_VARS) | {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def image_file(disk, path):
    """The content of path in the image's erofs root, read on the host with dump.erofs
    from the image's tools tree (through the tree's own loader: its libraries are
    trixie's)."""
    tree = subprocess.run([str(REPO / "image/tools-tree.sh"), "--path"], stdout=subprocess.PIPE,
                          text=True, check=True).stdout.strip().splitlines()[-1]
    off, _ = gpt_partitions(disk)[ROOT_TYPE]
    r = subprocess.run([f"{tree}/usr/lib64/ld-linux-x86-64.so.2", "--library-path",
                        f"{tree}/usr/lib/x86_64-linux-gnu", f"{tree}/usr/bin/dump.erofs",
                        f"--offset={off}", "--cat", f"--path={path}", str(disk)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise TestFailure(f"dump.erofs --cat {path} in {disk}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def test_cloud_image_kubelet_build():
    """A real `make image KUBELET=<file> KUBELET_SHA256=<its sha256>` (into its own image
    directory, IMAGE_DIR) puts exactly that file at /usr/bin/kubelet; the same command is
    then up to date and a plain `make image` is not. The file is the kubelet stand-in
    (tests/fixtures/kubelet-standin.c) under another name: Debian has no kubelet. The test
    image, made by its own rule with the stand-in, has it too."""
    standin = REPO / "build" / "kubelet-standin"
    if not standin.is_file():
        raise TestFailure(f"{standin} is missing: run 'make build/kubelet-standin'")
    work = WORK_ROOT / "cloud_image_kubelet"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    kubelet = work / "kubelet-standin-as-kubelet"
    shutil.copyfile(standin, kubelet)
    want = sha256(kubelet)
    image_dir = work / "image"
    args = ["make", "--no-print-directory", "-C", str(REPO), f"IMAGE_DIR={image_dir}", "image",
            f"KUBELET={kubelet}", f"KUBELET_SHA256={want}"]
    t0 = time.monotonic()
    with open(work / "make.log", "w") as log:
        r = subprocess.run(args, env=make_env(), stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise TestFailure(f"{' '.join(args)} failed ({r.returncode}); see {work / 'make.log'}")
    note(f"make image KUBELET=... took {time.monotonic() - t0:.0f} s")
    got = hashlib.sha256(image_file(image_dir / "cvminit.raw", "/usr/bin/kubelet")).hexdigest()
    if got != want:
        raise TestFailure(f"/usr/bin/kubelet in the image has sha256 {got}, the file given "
                          f"has {want}")
    note(f"/usr/bin/kubelet in {image_dir.name}/cvminit.raw: sha256 {got[:16]}… as given")
    q = subprocess.run(args[:1] + ["-q"] + args[1:], env=make_env())
    if q.returncode != 0:
        raise TestFailure(f"the same make image KUBELET=... is not up to date ({q.returncode})")
    q = subprocess.run(args[:5] + ["-q"] + args[5:6], env=make_env())
    if q.returncode != 1:
        raise TestFailure(f"make -q image without KUBELET: {q.returncode}, expected 1 (stale)")
    test_image = REPO / "build" / "image-test" / "cvminit.raw"
    if test_image.is_file():
        got = hashlib.sha256(image_file(test_image, "/usr/bin/kubelet")).hexdigest()
        if got != sha256(standin):
            raise TestFailure(f"the test image's /usr/bin/kubelet has sha256 {got}, "
                              f"build/kubelet-standin {sha256(standin)}")
    shutil.rmtree(image_dir, ignore_errors=True)


# The node's OS disk on each interface: one boot each, the same disk and vTPM throughout
# (a node whose disk moved), so the state volume sealed at the first boot must unseal on
# the others: the PCRs it is sealed to (4, 7, 11, 15) came out the same.
INTERFACES = [("virtio-blk", r"/dev/vda"), ("virtio-scsi", r"/dev/sda"),
              ("nvme", r"/dev/nvme0n1p")]


def boot_on(name, disk, interface, dev, tpm_from, first):
    """One node boot with the disk on interface; returns (its PCR values, the VM)."""
    kw = {"tpm_from": tpm_from} if tpm_from else {}
    v = VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
           name=name, memory=2048, timeout=scaled(600), disk_interface=interface,
           join=helpers.default_join(name), **kw)
    pcrs = {}
    with v:
        helpers.expect_start(v, f"OVMF+UKI on {interface}")
        for n in (4, 7, 11):
            m = v.wait_for(rf"cvminit: tpm: PCR {n} sha256 ([0-9a-f]{{64}})$",
                           scaled(helpers.NODE_STEP), since=0)
            pcrs[f"{n} sha256 at start"] = m.group(1)
        # The four partitions by type, on this interface's device names.
        for typ in ("esp", "root-x86-64", "root-x86-64-verity", "var"):
            v.wait_for(rf"cvminit: partitions: {re.escape(dev)}\d+ type {re.escape(typ)} ",
                       scaled(helpers.NODE_STEP), since=0)
        v.wait_for(r"cvminit: root: switched to the verified root", scaled(helpers.NODE_STEP),
                   since=0)
        m = v.wait_for(rf"cvminit: state: {re.escape(dev)}\d+ .* mounted on /var(.*)$",
                       scaled(helpers.NODE_STEP), since=0)
        if first != ("new filesystem" in m.group(1)):
            raise TestFailure(f"/var on {interface}: {m.group(0)} (first boot: {first})")
        if not first:
            m = v.wait_for(rf"cvminit: state: {re.escape(dev)}\d+: LUKS2 \S+ unsealed "
                           r"\(PCRs ([0-9,+ ]+)\)", scaled(helpers.NODE_STEP), since=0)
            note(f"{interface}: the state volume unsealed (PCRs {m.group(1)})")
            v.assert_absent(r"cvminit: state: .* is blank", f"the state was blank on {interface}")
        for bank in ("sha256", "sha384"):
            m = v.wait_for(rf"cvminit: measure: ready: PCR 11 {bank} ([0-9a-f]+)$",
                           scaled(helpers.NODE_STEP), since=0)
            pcrs[f"11 {bank} at ready"] = m.group(1)
        # PCR 15 ends with the per-boot generation record: compared without it.
        for bank, value in helpers.pcr15_without_generation(v).items():
            pcrs[f"15 {bank} at ready without the generation"] = value
        v.wait_for(r"cvminit: kubelet: started \(pid \d+\): " + re.escape(helpers.KUBELET_ARGV),
                   scaled(helpers.NODE_STEP), since=0)
        v.chan.wait_for(helpers.STANDIN + r"containerd answered", scaled(helpers.NODE_STEP),
                        since=0)
        helpers.expect_ready(v)
        # Every SCSI disk driver loaded but the Hyper-V one (no VMBus here: its
        # registration fails, and it is optional).
        v.assert_absent(r"cvminit: modules: (virtio_scsi|sd_mod|virtio_blk) \(optional, skipped\)",
                        "a disk driver of the initrd did not load")
        helpers.power_off_via_button(v)
    return pcrs, v


def test_cloud_disk_interfaces():
    """The test image boots to kubelet with its OS disk on virtio-blk, then (the same disk
    and vTPM) on virtio-scsi, then on NVMe: the partitions are found by type on each
    interface's devices, the state volume sealed on the first boot unseals on the others
    (PCRs 4, 7, 11, 15 as sealed), and PCR 4, 7 and 11 at start, PCR 11 at `ready` and
    PCR 15 at `ready` without the per-boot generation record (both banks) are the same on
    all three."""
    disk = helpers.node_disk("cloud_disks")
    tpm, seen = None, {}
    for i, (interface, dev) in enumerate(INTERFACES):
        pcrs, v = boot_on(f"cloud_disk_{interface}", disk, interface, dev, tpm, i == 0)
        seen[interface] = pcrs
        tpm = helpers.keep_tpm(v, disk.parent / "tpm")
    ref = seen["virtio-blk"]
    differ = [f"PCR {k}: virtio-blk {ref[k][:16]}…, {i} {p[k][:16]}…"
              for i, p in seen.items() for k in ref if p[k] != ref[k]]
    if differ:
        raise TestFailure("PCR values depend on the disk interface:\n" + "\n".join(differ))
    for k in sorted(ref):
        note(f"PCR {k}: {ref[k][:24]}… on virtio-blk, virtio-scsi and NVMe")


CLOUD_DIR = REPO / "build" / "cloud"


def test_cloud_vhd_boots():
    """The Azure VHD of `make cloud-images` (a fixed VHD, padded to a whole MiB) boots under
    QEMU through its vpc driver to `ready`, the partitions found by type although the GPT's
    backup is no longer at the disk's end, and PCR 4 and 11 are the ones measurements.json
    beside it predicts for the image's UKI: the VHD holds the image."""
    vhd = CLOUD_DIR / "azure" / "cvminit.vhd"
    if not vhd.is_file():
        raise TestFailure(f"{vhd} is missing: run 'make cloud-images' (make check does)")
    predicted = json.loads((CLOUD_DIR / "measurements.json").read_text())
    work = WORK_ROOT / "cloud_vhd-disk"
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "cvminit.vhd"
    subprocess.run(["cp", "--sparse=always", str(vhd), str(disk)], check=True)
    v = VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk), "format": "vpc"}],
           name="cloud_vhd", memory=2048, timeout=scaled(600),
           join=helpers.product_join("cloud_vhd", helpers.IMAGE_DIR / "cvminit.efi"))
    with v:
        helpers.expect_start(v, "OVMF+UKI from the VHD")
        pcr4 = v.wait_for(r"cvminit: tpm: PCR 4 sha256 ([0-9a-f]{64})$", scaled(helpers.NODE_STEP),
                          since=0).group(1)
        for typ in ("esp", "root-x86-64", "root-x86-64-verity", "var"):
            v.wait_for(rf"cvminit: partitions: /dev/vda\d+ type {re.escape(typ)} ",
                       scaled(helpers.NODE_STEP), since=0)
        v.wait_for(r"cvminit: root: switched to the verified root", scaled(helpers.NODE_STEP),
                   since=0)
        pcr11 = v.wait_for(r"cvminit: measure: ready: PCR 11 sha256 ([0-9a-f]{64})$",
                           scaled(helpers.NODE_STEP), since=0).group(1)
        helpers.expect_ready(v)
        helpers.power_off_via_button(v)
    if pcr11 != predicted["11"]["expected"] or pcr4 != predicted["4"]["expected"]:
        raise TestFailure(f"the VHD's boot: PCR 4 {pcr4}, PCR 11 {pcr11}; measurements.json "
                          f"beside it: PCR 4 {predicted['4']['expected']}, PCR 11 "
                          f"{predicted['11']['expected']}")
    gpt = v.find(r"GPT:.*not at the end of the disk")
    note(f"PCR 4 and 11 (sha256) as measurements.json predicts; kernel: "
         f"{gpt[0][1].split('] ', 1)[-1] if gpt else 'no GPT warning'}")
