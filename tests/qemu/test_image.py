"""Image scenarios: the mkosi disk image (build/image/cvminit.raw, made by `make image`)
booted through OVMF → systemd-stub UKI → cvminit's own initrd, with swtpm; and a second
build that must give the same root hash, UKI and disk."""
import hashlib
import os
import re
import shutil
import subprocess
import time

import helpers
from vm import REPO, WORK_ROOT, VM, TestFailure, note, scaled
from helpers import IMAGE, IMAGE_DIR, image_or_fail, image_vm, sha256  # noqa: F401

ZERO = "0" * 64


def test_image_uki_boot():
    """OVMF boots the UKI from the ESP; cvminit starts as PID 1 from the UKI's initrd, the
    firmware's and stub's measurements are there (PCR 4 and 11 non-zero), the four
    partitions are found with the root/verity PARTUUIDs taken from the root hash, and
    without a kubelet in the image containerd runs alone."""
    roothash = (IMAGE_DIR / "cvminit.roothash").read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{64}", roothash):
        raise TestFailure(f"bad roothash file: {roothash!r}")
    with image_vm("image_uki_boot") as v:
        helpers.expect_start(v, "OVMF+UKI")
        # The stub and the kernel's EFI stub say what they measured.
        pcr = {}
        for n in (4, 7, 11):
            m = v.wait_for(rf"cvminit: tpm: PCR {n} sha256 ([0-9a-f]{{64}})",
                           scaled(helpers.STEP_TIMEOUT), since=0)
            pcr[n] = m.group(1)
        for n in (4, 11):
            if pcr[n] == ZERO:
                raise TestFailure(f"PCR {n} is zero: the firmware/stub measured nothing")
        note(f"PCR 4 {pcr[4][:16]}…, PCR 11 {pcr[11][:16]}…")

        def uuid(h):
            return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

        want = {"root-x86-64": uuid(roothash[:32]), "root-x86-64-verity": uuid(roothash[32:])}
        for typ, partuuid in want.items():
            v.wait_for(rf"cvminit: partitions: /dev/vda\d type {re.escape(typ)} \(\S+\) "
                       rf"partuuid {partuuid}$", scaled(helpers.STEP_TIMEOUT), since=0)
        v.wait_for(r"cvminit: partitions: /dev/vda\d type var ", scaled(30), since=0)
        v.wait_for(r"cvminit: partitions: /dev/vda\d type esp ", scaled(30), since=0)
        helpers.expect_ready(v)
        # The plain image has no kubelet (Debian has none, none was given): containerd
        # runs, kubelet's start fails by name and is retried.
        v.wait_for(r"cvminit: containerd: ready \(socket ", scaled(120), since=0)
        v.wait_for(r"cvminit: kubelet: exec /usr/bin/kubelet: No such file or directory",
                   scaled(60), since=0)
        helpers.power_off_via_button(v)


def test_image_reproducible():
    """A second build from the same inputs gives the same root hash, UKI and disk image."""
    image_or_fail()
    files = ["cvminit.roothash", "cvminit.efi", "cvminit.raw"]
    before = {f: sha256(IMAGE_DIR / f) for f in files}
    t0 = time.monotonic()
    log = WORK_ROOT / "image_reproducible.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The same inputs as the first build: make records them in .inputs ("VAR=[value]"),
    # among them the join service's address and key (build-image.sh refuses a build
    # without them).
    inputs = dict(re.findall(r"(\w+)=\[([^\]]*)\]", (IMAGE_DIR / ".inputs").read_text()))
    env = dict(os.environ, **{k: v for k, v in inputs.items() if v})
    if "JOIN_KEY" in env:
        env["JOIN_KEY"] = str((REPO / env["JOIN_KEY"]).resolve())
    with open(log, "w") as out:
        r = subprocess.run([str(REPO / "image/build-image.sh")], cwd=REPO, stdout=out,
                           stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        raise TestFailure(f"second image build failed ({r.returncode}); see {log}")
    note(f"second build took {time.monotonic() - t0:.0f} s")
    after = {f: sha256(IMAGE_DIR / f) for f in files}
    differ = [f for f in files if before[f] != after[f]]
    if differ:
        raise TestFailure("not reproducible: " + ", ".join(
            f"{f} {before[f][:12]} → {after[f][:12]}" for f in differ))
    note(f"roothash {(IMAGE_DIR / 'cvminit.roothash').read_text().strip()[:16]}…, "
         f"UKI sha256 {after['cvminit.efi'][:16]}…")
