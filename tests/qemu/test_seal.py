"""The state key against the host's own kernel (issue 11, finding 1).

The host owns the disk and the loader: it can boot the image's kernel as a bare EFI
binary (OVMF direct kernel boot: no systemd-stub, so nothing extends PCR 11) with an
initrd of its own, tests/fixtures/unseal-attacker.c. That program extends PCRs 11 and 15
with the digests the node's logs show, so both reach the values the key was sealed to,
and asks the node's vTPM to unseal, with cvminit's own sealing code:
  - the node's token (sealed to PCRs 4, 7, 11, 15): refused, PCR 4 names another binary;
  - a control token the test seals on the host with tpm2-tools into the same vTPM, to
    PCRs 7, 11 and 15 only, with the values the node's token recorded (the old seal):
    unsealed, so the replay is right and the test can fail.
Then the node's own UKI boots the same disk and vTPM and opens /var as before."""
import base64
import hashlib
import json
import os
import shutil
import subprocess

import hosttpm
import helpers
from vm import REPO, VM, TestFailure, boot, initrd_with, note, scaled

ATTACKER = REPO / "build" / "unseal-attacker"
STEP = 180


def control_token(tpm_state, token, work):
    """A key sealed to PCRs 7, 11, 15 (the values the node's token recorded) into a copy
    of the node's vTPM state (same owner seed: the same SRK). Returns (token JSON, key)."""
    d = work / "control"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(tpm_state, d / "state")
    values = token["cvminit-pcr-values"]
    (d / "pcrs.bin").write_bytes(b"".join(bytes.fromhex(values[p]) for p in ("7", "11", "15")))
    key = os.urandom(64)
    with hosttpm.host_tpm(d / "state", d) as tool:
        tool("tpm2_createpolicy", "-Q", "--policy-pcr", "-l", "sha256:7,11,15", "-f",
             "pcrs.bin", "-L", "policy.bin")
        policy = (d / "policy.bin").read_bytes()
        blob = hosttpm.seal_blob(tool, d, policy, key)
    ctl = dict(token)
    ctl["tpm2-blob"] = base64.b64encode(blob).decode()
    ctl["tpm2-pcrs"] = [7, 11, 15]
    ctl["tpm2-policy-hash"] = policy.hex()
    ctl["cvminit-pcr-values"] = {p: values[p] for p in ("7", "11", "15")}
    return json.dumps(ctl, separators=(",", ":")), key


def attack_plan(files, token_json, control_json):
    """The extends that take PCRs 11 and 15 from zero to the node's values before it
    sealed or unsealed (the stub's and cvminit's records), then the two tokens."""
    extends = (helpers.firmware_sha256_extends(files["/run/log/cvminit/firmware.log"])
               + helpers.cvminit_sha256_extends(files["/run/log/cvminit/measure.log"],
                                                   "cvminit:state"))
    lines = [f"extend {pcr} {dg.hex()}" for pcr, dg in extends if pcr in (11, 15)]
    if not any(x.startswith("extend 11 ") for x in lines) or \
            not any(x.startswith("extend 15 ") for x in lines):
        raise TestFailure(f"the node's logs gave no PCR 11 or 15 extends: {lines}")
    lines += [f"token node {token_json}", f"token control {control_json}"]
    return "\n".join(lines) + "\n", len(lines) - 2


def attacker_initrd(work, plan):
    """A newc cpio with the fixture as /init and the plan."""
    root = work / "attacker-root"
    shutil.rmtree(root, ignore_errors=True)
    for d in ("dev", "proc", "sys"):
        (root / d).mkdir(parents=True)
    shutil.copy(ATTACKER, root / "init")
    (root / "attack.plan").write_text(plan)
    out = work / "attacker.cpio"
    with open(out, "wb") as f:
        files = subprocess.run("find . | sort", shell=True, cwd=root, check=True,
                               stdout=subprocess.PIPE).stdout
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=root,
                       input=files, stdout=f, check=True)
    return out


def uki_kernel(disk, work):
    """The kernel inside the disk's UKI (its .linux section): the image's own kernel,
    booted bare."""
    uki = helpers.uki_from_disk(disk, work / "BOOTX64.EFI")
    out = work / "vmlinuz"
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.linux", str(uki), str(out)],
                   check=True)
    if out.stat().st_size < 1 << 20:
        raise TestFailure(f"{out}: the UKI's .linux section is {out.stat().st_size} bytes")
    return out


def test_seal_attacker_kernel_cannot_unseal():
    if not ATTACKER.is_file():
        raise TestFailure(f"{ATTACKER} is missing: run 'make build/unseal-attacker' "
                          "(make check does)")
    b = helpers.first_booted()
    disk, tpm = helpers.copy_base("seal_attack")
    work = disk.parent
    meta, _ = helpers.luks_json(disk, work)
    token = meta["tokens"]["0"]
    if token["tpm2-pcrs"] != [4, 7, 11, 15]:
        raise TestFailure(f"the node's key is sealed to PCRs {token['tpm2-pcrs']}")
    control_json, control_key = control_token(tpm, token, work)
    plan, n = attack_plan(b["files"], json.dumps(token, separators=(",", ":")),
                          control_json)
    initrd = attacker_initrd(work, plan)
    kernel = uki_kernel(disk, work)

    with VM(kernel, initrd, "console=ttyS0,115200 panic=-1", ovmf=True, tpm=True,
            disks=[disk], name="seal_attacker", memory=1024, timeout=scaled(300),
            tpm_from=tpm) as v:
        v.wait_for(r"attacker: started instead of the node's UKI", scaled(STEP))
        v.wait_for(rf"attacker: replayed {n} extends into PCRs 11 and 15", scaled(60))
        refused = v.wait_for(r"attacker: token node \(PCRs ([\d,]+)\): (.*)$", scaled(60))
        control = v.wait_for(r"attacker: token control \(PCRs ([\d,]+)\): (.*)$",
                             scaled(60))
        v.wait_for(r"attacker: done", scaled(60))
        helpers.expect_poweroff(v, scaled(60))
    if refused.group(1) != "4,7,11,15" or "unseal refused" not in refused.group(2):
        raise TestFailure(f"the attacker kernel got the node's key: {refused.group(0)}")
    want = f"UNSEALED 64 bytes, sha256 {hashlib.sha256(control_key).hexdigest()}"
    if control.group(1) != "7,11,15" or control.group(2) != want:
        raise TestFailure("the replay does not reach the sealed PCR values, so the refusal "
                          f"proves nothing: control token: {control.group(0)}")
    note(f"bare kernel + replayed PCRs 11/15 ({n} extends): node key "
         f"{refused.group(2)}; the same replay unseals a key sealed to 7,11,15")

    # The node's own UKI on the same disk and vTPM: unsealed, /var as it was, and the
    # phases measured in the order the docs promise.
    with helpers.node("seal_attack_after", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(helpers.UNSEALED, scaled(STEP), since=0)
        m = v.wait_for(helpers.MOUNTED, scaled(STEP), since=0)
        if "new filesystem" in m.group(2):
            raise TestFailure("the node's UKI made a new filesystem after the attack")
        v.chan.wait_for(r"kubelet-standin: start 2 recorded", scaled(STEP), since=0)
        # The workload fence: the stand-in (root, on the booted node) asks the TPM to
        # unseal the state key from the disk's token; after leave-initrd it must not.
        v.chan.wait_for(r"kubelet-standin: fence: attacker: fence: token of /dev/vda\d",
                        scaled(STEP), since=0)
        fence = v.chan.wait_for(r"kubelet-standin: fence: attacker: token disk \(PCRs "
                                r"([\d,]+)\): (.*)$", scaled(STEP), since=0)
        helpers.power_off_via_button(v)
    if fence.group(1) != "4,7,11,15" or "unseal refused: Key was rejected" not in \
            fence.group(2):
        raise TestFailure(f"the workload could unseal the state key: {fence.group(0)}")
    measurement_order(v)
    note("the node's UKI afterwards: unsealed, /var kept (stand-in start 2); unseal < "
         "leave-initrd < switch_root; ready < kubelet's start; shutdown < stopping; "
         f"the workload's unseal: {fence.group(2)}")


def measurement_order(v):
    """What docs/measured-boot.md promises about when cvminit extends PCR 11, from the
    order of cvminit's own lines: the key is unsealed before leave-initrd (after it, the
    workload fence, nothing can unseal), leave-initrd before the switch to the verified
    root, ready before kubelet starts, shutdown before the first service is stopped."""
    def at(regex):
        return helpers.index_of(v, regex)

    pairs = [
        (helpers.UNSEALED, r"cvminit: measure: PCR 11 \+= leave-initrd$"),
        (r"cvminit: measure: PCR 11 \+= leave-initrd$", r"cvminit: root: switched to the "
         r"verified root"),
        (r"cvminit: measure: PCR 11 \+= ready$", r"cvminit: kubelet: started \(pid"),
        (r"cvminit: measure: PCR 11 \+= shutdown$", r"cvminit: shutdown: stopping kubelet"),
    ]
    for first, then in pairs:
        if not at(first) < at(then):
            raise TestFailure(f"/{first}/ (line {at(first)}) is not before /{then}/ "
                              f"(line {at(then)})")
    if len(v.find(r"cvminit: measure: PCR 11 \+= ready$")) != 1:
        raise TestFailure("PCR 11 got 'ready' more or less than once")


def test_seal_other_vtpm_refused():
    """The node's disk with another vTPM (the host swapped it, or cleared it): the sealed
    key does not load under this TPM's SRK; cvminit says so, unlocks nothing, powers off."""
    helpers.first_booted()
    disk, _ = helpers.copy_base("seal_other_vtpm")
    with helpers.node("seal_other_vtpm", disk, tpm_from=None) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: seal: the sealed key does not load under this TPM's SRK",
                   scaled(STEP), since=0)
        v.wait_for(r"the state key of /dev/vda\d was sealed by another TPM \(or this one "
                   r"was cleared\): this node cannot open it\. Nothing was unlocked",
                   scaled(STEP), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"unsealed|making ext4|mounted on /var|leave-initrd",
                        "another vTPM unlocked the state")
    note("another vTPM: refused (the blob does not load under its SRK), nothing unlocked")


def test_seal_state_pcrs_from_config():
    """The initrd's config (measured) says `set state_pcrs=4,7,11,12,15`: the first boot
    seals the state key to exactly those PCRs, as the token on the disk records (direct
    kernel boot of the image disk with a test initrd carrying that config)."""
    h = helpers.roothash()
    disk = helpers.disk_copy("seal_state_pcrs")
    initrd = initrd_with({"/etc/cvminit/cvminit.conf": "set state_pcrs=4,7,11,12,15\n"})
    with boot(f"roothash={h}", ovmf=True, tpm=True, initrd=initrd,
              disks=[{"file": str(disk)}], memory=2048) as v:
        helpers.expect_start(v, "OVMF")
        v.wait_for(r"cvminit: state: first boot: /dev/vda\d is now LUKS2 \S+ .*key sealed "
                   r"to PCRs 4,7,11,12,15;", scaled(STEP), since=0)
        v.wait_for(helpers.MOUNTED, scaled(STEP), since=0)
        v.wait_for(helpers.READY, scaled(STEP), since=0)
        helpers.power_off_via_button(v)
    meta, _ = helpers.luks_json(disk, disk.parent)
    token = meta["tokens"]["0"]
    if token["tpm2-pcrs"] != [4, 7, 11, 12, 15] or \
            sorted(token["cvminit-pcr-values"], key=int) != ["4", "7", "11", "12", "15"]:
        raise TestFailure(f"the token says PCRs {token['tpm2-pcrs']}, values for "
                          f"{sorted(token['cvminit-pcr-values'])}; the config said "
                          "4,7,11,12,15")
    note("config state_pcrs=4,7,11,12,15: sealed to them, the token says so")
