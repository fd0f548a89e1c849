"""The volume key in PCR 15: a LUKS2 header of another key, made the way a privileged
process on the node could (cryptsetup with the parameters cvminit accepts, the node's
token with a blob sealed into the node's own vTPM under the SRK with the token's PCR
policy), written over the state partition's header. cvminit validates it, the TPM unseals
the attacker's key and the boot goes on, with the same `cvminit:state` identity (same
UUID, cipher, sizes) as before; PCR 15 at `ready` differs from the first boot's, and only
the `cvminit:volume-key` records tell why. Two boots: the first makes the state, the
second opens the swapped header."""
import base64
import json
import os
import shutil
import subprocess

import hosttpm
import helpers
from vm import TestFailure, note, scaled

BANKS = ("sha256", "sha384")
STEP = 300
READY = r"cvminit: measure: ready: PCR 15 {bank} ([0-9a-f]+)$"
VK_EVENT = "cvminit:volume-key:"


def boot(name, disk, tpm_from=None):
    """Boots the node until the stand-in printed the logs; returns PCR 15 at ready per
    bank, the measured identity, the console lines and the guest's files."""
    pcr15 = {}
    v = helpers.node_vm(name, disk, tpm_from=tpm_from)
    with v:
        helpers.expect_start(v, "OVMF+UKI")
        ident = v.wait_for(helpers.MEASURED, scaled(STEP), since=0).group(1)
        for bank in BANKS:
            pcr15[bank] = v.wait_for(READY.format(bank=bank), scaled(STEP),
                                     since=0).group(1)
        v.chan.wait_for(r"kubelet-standin: end /run/log/cvminit/firmware.log \d+$",
                        scaled(STEP), since=0)
        files = helpers._standin_files(v)
        helpers.power_off_via_button(v)
        v.wait_for(helpers.CLOSED, 5, since=0)
    return pcr15, ident, v, files


def records(log, pcr=15):
    out = []
    for rec in log.split(b"\x1e"):
        if rec.strip():
            r = json.loads(rec)
            if r["pcr"] == pcr:
                out.append(r)
    return out


def volume_key_record(files):
    recs = [r for r in records(files["/run/log/cvminit/measure.log"])
            if r["content"].get("eventType") == "volume-key"]
    if len(recs) != 1:
        raise TestFailure(f"the node's log has {len(recs)} volume-key records, expected 1")
    r = recs[0]
    if not r["content"]["string"].startswith(VK_EVENT) or not r["content"]["extended"]:
        raise TestFailure(f"volume-key record: {r}")
    return r


def digests(rec):
    return {d["hashAlg"]: d["digest"] for d in rec["digests"]}


def seal_in_node_tpm(tpm_state, token, key, work):
    """What root on the node can do with /dev/tpmrm0: TPM2_Create a sealed object under
    the SRK (the TCG ECC template cvminit uses) whose authPolicy is the token's
    tpm2-policy-hash, holding key. Run on the host against the node's swtpm state, after
    boot 1. Returns the blob as the token stores it (TPM2B_PRIVATE then TPM2B_PUBLIC)."""
    d = work / "attacker-tpm"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    with hosttpm.host_tpm(tpm_state, d) as tool:
        return hosttpm.seal_blob(tool, d, bytes.fromhex(token["tpm2-policy-hash"]), key)


def attacker_header(meta, hdr, token, blob, key, work):
    """A LUKS2 header of key with the node's UUID and every parameter cvminit's
    validator wants (init/luks.c), and the node's token carrying blob; the token says
    the filesystem is not made yet, so cvminit makes one (a volume whose key the
    attacker knows). Returns its first 16 MiB."""
    seg = meta["segments"]["0"]
    if seg.get("integrity"):
        raise TestFailure("this test makes headers without integrity; the node's has "
                          f"{seg['integrity']}")
    img = work / "attacker.img"
    kf = work / "attacker-key.bin"
    kf.write_bytes(key)
    with open(img, "wb") as f:
        f.truncate(helpers.DATA_OFFSET + (1 << 20))
    uuid = subprocess.run([helpers.cryptsetup(), "luksUUID", str(hdr)],
                          stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    try:
        r = subprocess.run(
            [helpers.cryptsetup(), "luksFormat", "--batch-mode", "--type", "luks2",
             "--cipher", "aes-xts-plain64", "--key-size", str(len(key) * 8),
             "--sector-size", "4096", "--hash", "sha256", "--pbkdf", "pbkdf2",
             "--pbkdf-force-iterations", "1000", "--luks2-metadata-size", "16k",
             "--luks2-keyslots-size", "512k", "--offset", str(helpers.DATA_OFFSET // 512),
             "--uuid", uuid, "--label", "cvminit-state", "--volume-key-file", str(kf),
             "--key-file", str(kf), str(img)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise TestFailure(f"cryptsetup luksFormat (attacker's header): {r.stdout}")
    finally:
        os.unlink(kf)
    tok = dict(token, **{"tpm2-blob": base64.b64encode(blob).decode(),
                         "cvminit-initialized": False})
    (work / "attacker-token.json").write_text(json.dumps(tok))
    r = subprocess.run([helpers.cryptsetup(), "token", "import", "--token-id", "0",
                        "--json-file", str(work / "attacker-token.json"), str(img)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"cryptsetup token import: {r.stdout}")
    with open(img, "rb") as f:
        return f.read(helpers.DATA_OFFSET)


def test_volume_key_swapped_header_changes_pcr15():
    """Boot 1 makes the state; a header of another volume key sealed with the token's
    policy into the node's vTPM replaces it; boot 2 unseals that key and opens the volume
    with the same cvminit:state identity, and PCR 15 at ready differs from boot 1's,
    through the cvminit:volume-key record (every other record the same, but the
    per-boot cvminit:generation). The value predict pins from boot 1's log is boot 1's
    PCR 15 and not boot 2's."""
    disk = helpers.node_disk("vkey")
    work = disk.parent
    # The attacker's header is made with the host's cryptsetup, which cannot format
    # dm-integrity without device-mapper: this node uses the plain-XTS option.
    helpers.add_to_uki_cmdline(disk, "cvminit.state_integrity=none")
    uki = helpers.uki_from_disk(disk, work / "BOOTX64.EFI")
    pcr1, ident1, v1, files1 = boot("vkey_boot1", disk)
    tpm = helpers.keep_tpm(v1, work / "tpm")
    if not v1.find(helpers.MADE):
        raise TestFailure("boot 1 did not make the state volume")
    vk1 = volume_key_record(files1)
    meta, hdr = helpers.luks_json(disk, work)
    token = meta["tokens"]["0"]

    # The attacker: a key of its own, sealed in the node's TPM, in a header cvminit takes.
    key = os.urandom(64)
    blob = seal_in_node_tpm(tpm, token, key, work)
    area = attacker_header(meta, hdr, token, blob, key, work)
    base, _ = helpers.state_part(disk)
    with open(disk, "r+b") as f:
        f.seek(base)
        f.write(area)
    meta2, _ = helpers.luks_json(disk, work)
    if meta2["digests"]["0"]["digest"] == meta["digests"]["0"]["digest"]:
        raise TestFailure("the swapped header has the node's key digest")

    pcr2, ident2, v2, files2 = boot("vkey_boot2", disk, tpm_from=tpm)
    uuid = ident1.split(":")[1]
    v2.wait_for(rf"cvminit: state: /dev/vda\d: LUKS2 {uuid} unsealed", 1, since=0)
    v2.wait_for(r"cvminit: state: /dev/vda\d is blank: first boot, making ext4", 1,
                since=0)
    vk2 = volume_key_record(files2)

    # Same identity, same cvminit:state digests; different volume-key record and PCR 15.
    if ident2 != ident1:
        raise TestFailure(f"cvminit:state differs: {ident1} then {ident2}")
    st1 = [r for r in records(files1["/run/log/cvminit/measure.log"])
           if r["content"]["string"] == "cvminit:state"]
    st2 = [r for r in records(files2["/run/log/cvminit/measure.log"])
           if r["content"]["string"] == "cvminit:state"]
    if len(st1) != 1 or len(st2) != 1 or digests(st1[0]) != digests(st2[0]):
        raise TestFailure("the cvminit:state records differ between the boots")
    if vk1["content"]["string"] != vk2["content"]["string"]:
        raise TestFailure(f"labels differ: {vk1['content']['string']} "
                          f"{vk2['content']['string']}")
    for bank in BANKS:
        if digests(vk1)[bank] == digests(vk2)[bank]:
            raise TestFailure(f"the volume-key records agree in {bank}")
        if pcr1[bank] == pcr2[bank]:
            raise TestFailure(f"PCR 15 {bank} at ready is the same with another volume "
                              f"key: {pcr1[bank]}")
    # Every other record is the same in both boots, but the generation (its boot ID is
    # per boot: docs/attestation.md, "Freshness").
    pre1 = [digests(r) for r in records(files1["/run/log/cvminit/measure.log"])
            if r["content"].get("eventType") != "volume-key"
            and r["content"]["string"] != "cvminit:generation"]
    pre2 = [digests(r) for r in records(files2["/run/log/cvminit/measure.log"])
            if r["content"].get("eventType") != "volume-key"
            and r["content"]["string"] != "cvminit:generation"]
    if pre1 != pre2:
        raise TestFailure("PCR 15 records other than the volume key differ between boots")

    # Measured right after cvminit:state and before /var is mounted, in both boots.
    for v, files in ((v1, files1), (v2, files2)):
        log = [json.loads(r) for r in files["/run/log/cvminit/measure.log"].split(b"\x1e")
               if r.strip()]
        names = [r["content"]["string"] for r in log]
        i = names.index("cvminit:state")
        if i + 1 >= len(names) or not names[i + 1].startswith(VK_EVENT):
            raise TestFailure(f"the record after cvminit:state is not the volume key: {names}")
        if helpers.index_of(v, r"measure: PCR 15 \+= cvminit:volume-key:") > \
                helpers.index_of(v, helpers.MOUNTED):
            raise TestFailure("the volume key was measured after /var was mounted")

    # A verifier that pinned boot 1's record: predict gives boot 1's PCR 15, not boot 2's.
    log1 = work / "measure-boot1.log"
    log1.write_bytes(files1["/run/log/cvminit/measure.log"])
    out = work / "measurements.json"
    helpers._cvm_measure("predict", "--uki", uki, "--state", ident1, "--node-log",
                              log1, "--json", out)
    pinned = json.loads(out.read_text())["15"]["expected"]
    if pinned != pcr1["sha256"] or pinned == pcr2["sha256"]:
        raise TestFailure(f"pinned PCR 15 {pinned}; boot 1 {pcr1['sha256']}, boot 2 "
                          f"{pcr2['sha256']}")
    note(f"cvminit:state both boots: {ident1}")
    note(f"{vk1['content']['string']} sha256: boot 1 {digests(vk1)['sha256']}, boot 2 "
         f"{digests(vk2)['sha256']}")
    for bank in BANKS:
        note(f"PCR 15 {bank} at ready: boot 1 {pcr1[bank]}, boot 2 {pcr2[bank]}")
