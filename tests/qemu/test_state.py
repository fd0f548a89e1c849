"""State scenarios: the node image (build/image-test, `make test-image`) makes a LUKS2 state
volume on its first boot, seals the key to the TPM (swtpm, kept across boots), and opens
it on later boots; /var persists. The host then checks the header as stored (only our
keyslot and token), recovers the key the way the node does (replaying the logged PCR
extends into a copy of the node's swtpm and unsealing the token's blob with tpm2-tools),
opens the keyslot with it and finds no plaintext copy of it on the partition.

hmac-sha256 integrity is the default: the first boot zeroes only the ends of the volume
that libblkid probes (no full wipe); every boot here checks that no read of the volume
failed (dm-crypt's "INTEGRITY AEAD ERROR", I/O errors, ext4 errors) and later boots that
16 MiB the stand-in wrote on the first boot read back intact.

Refusals: a header switched to cipher_null (checksums fixed up), PCR drift from a UKI with
another command line (the PCRs named; the right UKI opens the state again). Crash safety:
header writes of the first boot made to fail one at a time with QEMU's blkdebug driver (an
EIO on exactly one sector stops cvminit at that point, like a power cut), and QEMU killed
as mkfs starts and while it runs (on a 1 GiB volume); each following boot must finish or
redo the setup, never mkfs over data. Plain XTS (state_integrity=none) through the
command line (references kept consistent)."""
import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import time
import uuid as uuid_mod
import zlib

import hosttpm
import helpers
from vm import WORK_ROOT, VM, TestFailure, gpt_partitions, note, scaled
from helpers import BLANK, CLOSED, DATA, DATA_OFFSET, DIGEST_SIZES, ENDS, HDR, IO_ERRORS, MADE, MEASURED, MOUNTED, SECTOR, STATE_TYPE, STATE_STEP as STEP, UNSEALED, _base, blkdebug, copy_base, cryptsetup, cvminit_sha256_extends, firmware_sha256_extends, first_booted, header_file, keep_tpm, luks_json, node, read_part, replay_sealed_pcrs, stage_ms, state_part, timeline_times, unseal_on_host, var_checked  # noqa: F401


def check_header(meta, integrity=False):
    """Only what cvminit makes: one keyslot, digest, segment and token, ours."""
    for section in ("keyslots", "tokens", "digests", "segments"):
        if sorted(meta[section]) != ["0"]:
            raise TestFailure(f"the stored header has {section} {sorted(meta[section])}, "
                              "expected exactly [\"0\"]")
    seg = meta["segments"]["0"]
    if (seg["encryption"], seg["sector_size"], seg["offset"]) != ("aes-xts-plain64", 4096,
                                                                    str(DATA_OFFSET)):
        raise TestFailure(f"segment 0 is {seg}")
    if bool(seg.get("integrity")) != integrity or (
            integrity and seg["integrity"]["type"] != "hmac(sha256)"):
        raise TestFailure(f"segment 0's integrity is {seg.get('integrity')}")
    ks = meta["keyslots"]["0"]
    if ks["kdf"]["type"] != "pbkdf2" or ks["kdf"]["iterations"] != 1000:
        raise TestFailure(f"keyslot 0's kdf is {ks['kdf']}")
    tok = meta["tokens"]["0"]
    want = {"type": "systemd-tpm2", "keyslots": ["0"], "tpm2-pcrs": [4, 7, 11, 15],
            "tpm2-pcr-bank": "sha256", "tpm2-primary-alg": "ecc", "tpm2-pin": False,
            "cvminit-initialized": True}
    for k, val in want.items():
        if tok.get(k) != val:
            raise TestFailure(f"token field {k} is {tok.get(k)!r}, expected {val!r}")
    if sorted(tok["cvminit-pcr-values"]) != ["11", "15", "4", "7"]:
        raise TestFailure(f"cvminit-pcr-values: {tok['cvminit-pcr-values']}")
    return tok


# --- recovering the key on the host: the node's logs replayed into its vTPM ----------


def integrity_journal(disk):
    """The size in bytes of dm-integrity's journal, from its superblock at the start of the
    state partition's data area: journal_sections times the sectors of a section (for
    32-byte tags on 4 KiB blocks: 4 entries of 104 bytes per 512-byte journal sector, 8
    sectors of entries per section, so 32 blocks of 8 sectors plus those 8)."""
    sb = read_part(disk, DATA_OFFSET, 32)
    magic, _, _, tag, sections = struct.unpack_from("<8sBBHI", sb, 0)
    if magic != b"integrt\0" or tag != 32:
        raise TestFailure(f"no dm-integrity superblock with 32-byte tags: {sb[:16].hex()}")
    return sections * (32 * 8 + 8) * SECTOR


def check_journal(disk):
    """cvminit asks for a fixed 8 MiB journal (the kernel's default grows with the disk)."""
    j = integrity_journal(disk)
    if not (8 << 20) - 264 * SECTOR < j <= 8 << 20:
        raise TestFailure(f"dm-integrity's journal has {j} bytes, expected 8 MiB")
    return j


# --- the first boot and a later one, shared by the scenarios below --------------------


def later_boot(name, disk, tpm, uuid, start_n):
    """A later boot: header validated, key unsealed, /var as the last boot left it."""
    with node(name, disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(rf"cvminit: state: /dev/vda\d: LUKS2 {uuid}, aes-xts-plain64 512-bit, "
                   r"4096-byte sectors, integrity \S+, header copy primary \(seqid \d+\) "
                   r"validated", scaled(STEP), since=0)
        m = v.wait_for(UNSEALED, scaled(STEP), since=0)
        unseal = (int(m.group(3)), int(m.group(5)))
        m = v.wait_for(MOUNTED, scaled(STEP), since=0)
        if "new filesystem" in m.group(2):
            raise TestFailure("a later boot made a new filesystem")
        v.chan.wait_for(rf"kubelet-standin: start {start_n} recorded", scaled(STEP), since=0)
        var_checked(v, "read back")
        times = timeline_times(v)
        v.assert_absent(r"making ext4", "a later boot ran mkfs")
        helpers.power_off_via_button(v)
        v.wait_for(CLOSED, 5, since=0)
    keep_tpm(v, tpm)
    return times, unseal


def test_state_first_boot_sealed_and_reopened():
    """First boot: blank → LUKS2 + sealed key + ext4, measured, /var used by the stand-in;
    the stored header holds only our keyslot and token; the key, recovered on the host
    from the node's vTPM and logs, opens the keyslot and appears nowhere in clear on the
    partition; the next boot unseals, opens and finds /var as left."""
    b = first_booted()
    work = b["disk"].parent
    meta, hdr = luks_json(b["disk"], work)
    tok = check_header(meta, integrity=True)
    check_journal(b["disk"])
    key = unseal_on_host(b["tpm"], b["files"], tok, work)
    if len(key) != 96:
        raise TestFailure(f"the unsealed key has {len(key)} bytes, expected 96 (cipher "
                          "and HMAC keys)")
    (work / "key.bin").write_bytes(key)
    r = subprocess.run([cryptsetup(), "luksOpen", "--test-passphrase", "--key-file",
                        str(work / "key.bin"), str(hdr)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"the unsealed key does not open the keyslot: {r.stdout}")
    base, size = state_part(b["disk"])
    with open(b["disk"], "rb") as f:
        f.seek(base)
        raw = f.read(size)
    for what, needle in (("the key", key), ("its first cipher half", key[:32]),
                         ("its second cipher half", key[32:64]),
                         ("its HMAC key", key[64:]), ("its hex", key.hex().encode())):
        if raw.find(needle) >= 0:
            raise TestFailure(f"{what} is on the state partition in clear")
    os.unlink(work / "key.bin")
    note(f"header: 1 keyslot, 1 systemd-tpm2 token, aes-xts-plain64 512-bit, 4096-byte "
         f"sectors, hmac(sha256) integrity;"
         f" key unsealed on the host from the replayed logs, keyslot opens, "
         f"not on the {size >> 20} MiB partition in clear")

    disk, tpm = copy_base("state_later")
    (o2, m2), unseal = later_boot("state_boot2", disk, tpm, b["uuid"], 2)
    o1, m1 = b["first"]
    s = b["setup"]
    note(f"first boot (hmac(sha256), {b['ends']} MiB volume): state-open {o1:.0f} ms (seal "
         f"{s['seal']}, format {s['format']}, activate+ends {s['activate']}, commit "
         f"{s['commit']}), state (mkfs + mount + flag) {m1:.0f} ms; later boot: state-open {o2:.0f} ms (unseal "
         f"{unseal[0]}, activate {unseal[1]}), state (mount) {m2:.0f} ms")


def rewrite_json(disk, fn):
    """Rewrites the LUKS2 JSON of both header copies with fn(dict) and fixes up their
    checksums, as a host with write access to the disk can."""
    base, _ = state_part(disk)
    with open(disk, "r+b") as f:
        for c in (0, 1):
            f.seek(base + c * HDR)
            copy = bytearray(f.read(HDR))
            meta = json.loads(copy[4096:].split(b"\0", 1)[0])
            fn(meta)
            text = json.dumps(meta, separators=(",", ":")).encode()
            copy[4096:] = text + bytes(HDR - 4096 - len(text))
            copy[448:512] = bytes(64)
            copy[448:480] = hashlib.sha256(bytes(copy)).digest()
            f.seek(base + c * HDR)
            f.write(copy)


def test_state_cipher_null_refused():
    """The header's segment switched to cipher_null (the digest, keyslot and token kept,
    checksums fixed up): cvminit refuses from its one validated copy, unseals nothing."""
    b = first_booted()
    disk, tpm = copy_base("state_cipher_null")

    def null(meta):
        meta["segments"]["0"]["encryption"] = "cipher_null-ecb"
    rewrite_json(disk, null)
    with node("state_cipher_null", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        m = v.wait_for(r"cvminit: state: the state partition /dev/vda\d does not hold a "
                       r"LUKS2 volume cvminit accepts: segment 0 uses cipher "
                       r"\"cipher_null-ecb\"", scaled(STEP), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"unsealed|cvminit: state: measured", "a cipher_null header was used")
    note(m.group(0).split("cvminit: ", 1)[1])
    if not b["uuid"]:
        raise TestFailure("no base volume")


def esp_bytes(disk):
    off = helpers.esp_offset(disk)
    size = gpt_partitions(disk)[helpers.ESP_TYPE][1]
    with open(disk, "rb") as f:
        f.seek(off)
        return off, f.read(size)


def test_state_drift_refused_then_reopened():
    """An updated image on an old disk: the UKI's command line changed (references
    consistent, so only the TPM notices). PCR 4 (the firmware's hash of the new UKI and its
    kernel), 11 and 15 differ from sealing time, the TPM refuses, cvminit names all three
    with expected and current values and their events, unlocks nothing. The original UKI
    put back: the state opens and the stand-in's counter in /var is still there."""
    b = first_booted()
    disk, tpm = copy_base("state_drift")
    off, esp = esp_bytes(disk)
    helpers.add_to_uki_cmdline(disk, "cvminit.log_level=info")
    with node("state_drift", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: seal: the TPM refused to unseal: the PCR policy does not match",
                   scaled(STEP), since=0)
        p4 = v.wait_for(r"cvminit: seal: PCR 4 \(sha256\) expected ([0-9a-f]{64}) got "
                        r"([0-9a-f]{64}); events: (.*)$", scaled(STEP), since=0)
        p11 = v.wait_for(r"cvminit: seal: PCR 11 \(sha256\) expected ([0-9a-f]{64}) got "
                         r"([0-9a-f]{64}); events: (.*)$", scaled(STEP), since=0)
        p15 = v.wait_for(r"cvminit: seal: PCR 15 \(sha256\) expected ([0-9a-f]{64}) got "
                         r"([0-9a-f]{64}); events: (.*)$", scaled(STEP), since=0)
        v.wait_for(r"cvminit: state: the TPM refuses to unseal the state key of /dev/vda\d: "
                   r"the boot differs from the one it was sealed in: PCR 4 expected "
                   r"[0-9a-f]+ got [0-9a-f]+ \(events: \(none by cvminit: firmware or boot "
                   r"loader\)\); PCR 11 expected", 5,
                   since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"PCR 7 \(sha256\) expected", "PCR 7 did not change")
        v.assert_absent(r"unsealed|making ext4|mounted on /var", "drift unlocked the state")
    if p4.group(1) == p4.group(2):
        raise TestFailure(f"PCR 4 named as drifted with equal values: {p4.group(0)}")
    if "cvminit:cmdline" not in p15.group(3) or "enter-initrd" not in p11.group(3):
        raise TestFailure(f"events named: PCR 11: {p11.group(3)}; PCR 15: {p15.group(3)}")
    box = [s.split("* ", 1)[1] for _, s in v.find(r"\* ")]
    note("refusal: " + " ".join(x.strip() for x in box[1:-1]))
    with open(disk, "r+b") as f:
        f.seek(off)
        f.write(esp)
    later_boot("state_drift_fixed", disk, tpm, b["uuid"], 2)
    note("the original UKI back: unsealed, /var kept (stand-in start 2)")


# --- crash safety --------------------------------------------------------------------


def refused(v, regex):
    m = v.wait_for(regex, scaled(STEP), since=0)
    helpers.expect_refusal_and_poweroff(v)
    v.chan.assert_absent(r"kubelet-standin: start", "services ran after a failed setup step")
    return m.group(0).split("cvminit: ", 1)[1]


def magic(disk):
    return read_part(disk, 0, 6), read_part(disk, HDR, 6)


def test_state_crash_points():
    """One disk, one vTPM, five boots, hmac(sha256) integrity (the default); each of the
    first four stops at one point:
    (A) the secondary header write fails: keyslot area only (blank to the next boot);
    (B) the primary header write fails: secondary only, initialized=false → redo;
    (C) setup redone, QEMU killed as mkfs starts: header complete, no filesystem, a
        volume whose sectors were never written apart from the probed ends;
    (D) a later boot finds that volume empty, makes ext4, mounts; the token's flag write
        fails;
    (E) the normal boot keeps D's filesystem (no mkfs), sets the flag, comes up.
    C is a kill, not a blkdebug write failure: with integrity, ext4's writes reach the
    disk through dm-integrity's journal, later and in an order of its own, and every
    sector of the volume that is written before mkfs (dm-integrity's superblock and
    journal, the probed ends) would fail the format or the zeroing instead."""
    disk = helpers.node_disk("state_crash")
    work = disk.parent
    tpm = work / "tpm"
    steps = []

    conf = blkdebug(work, "secondary", disk, HDR // SECTOR)
    with node("state_crash_a", disk, blkdebug=conf) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(BLANK, scaled(STEP), since=0)
        steps.append("A: " + refused(v, r"cvminit: state: cannot write the new LUKS2 header"))
    keep_tpm(v, tpm)
    if magic(disk) != (bytes(6), bytes(6)):
        raise TestFailure(f"after A the header magics are {magic(disk)}")

    conf = blkdebug(work, "primary", disk, 0)
    with node("state_crash_b", disk, tpm_from=tpm, blkdebug=conf) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(BLANK, scaled(STEP), since=0)  # A left nothing a boot recognises
        steps.append("B: " + refused(v, r"cvminit: state: cannot write the new LUKS2 header"))
    keep_tpm(v, tpm)
    if magic(disk) != (bytes(6), b"SKUL\xba\xbe"):
        raise TestFailure(f"after B the header magics are {magic(disk)}")

    with node("state_crash_c", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: state: /dev/vda\d has only a secondary header with an "
                   r"unfinished setup: the first boot was cut off; starting it over",
                   scaled(STEP), since=0)
        m = v.wait_for(MADE, scaled(STEP), since=0)
        uuid = m.group(2)
        if m.group(3) != "with hmac(sha256) integrity":
            raise TestFailure(f"C made: {m.group(0)}")
        v.wait_for(ENDS, scaled(STEP), since=0)
        v.wait_for(r"making ext4", scaled(STEP), since=0)
        v.qmp("quit")
        v.wait_exit(30)
    steps.append("C: killed as mkfs started (header committed)")
    keep_tpm(v, tpm)
    meta, _ = luks_json(disk, work)
    if meta["tokens"]["0"]["cvminit-initialized"] is not False:
        raise TestFailure("after C the token says initialized")

    conf = blkdebug(work, "secondary2", disk, HDR // SECTOR)
    with node("state_crash_d", disk, tpm_from=tpm, blkdebug=conf) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(UNSEALED + r" \(setup not finished: state_mount does\)", scaled(STEP),
                   since=0)
        v.wait_for(r"cvminit: state: /dev/vda\d is blank: first boot, making ext4",
                   scaled(STEP), since=0)
        steps.append("D: " + refused(v, r"cvminit: state: cannot record in the LUKS2 token"))
        v.assert_absent(IO_ERRORS, "a read of the never-written volume failed")
    keep_tpm(v, tpm)

    with node("state_crash_e", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(UNSEALED, scaled(STEP), since=0)
        v.wait_for(r"cvminit: state: /dev/mapper/state already holds ext4 \(a previous boot "
                   r"stopped before recording it\): keeping it", scaled(STEP), since=0)
        v.wait_for(r"marked initialized in its LUKS2 token", scaled(STEP), since=0)
        m = v.wait_for(MOUNTED, scaled(STEP), since=0)
        if "new filesystem" in m.group(2):
            raise TestFailure("E made a filesystem over D's")
        v.chan.wait_for(r"kubelet-standin: start 1 recorded", scaled(STEP), since=0)
        var_checked(v, "wrote")
        v.assert_absent(r"making ext4", "E ran mkfs")
        helpers.power_off_via_button(v)
    meta, _ = luks_json(disk, work)
    check_header(meta, integrity=True)
    note("\n".join(steps) + f"\nE: LUKS2 {uuid}: the ext4 D made kept, flag set, node up")


def grow_state(disk, size):
    """Grows the disk image so that its state partition (the last one) has size bytes:
    the file extended, the partition's last LBA moved, the backup GPT rewritten at the new
    end, both headers' CRCs and the protective MBR fixed (a bigger blank state disk, as a
    node would be given)."""
    with open(disk, "r+b") as f:
        f.seek(512)
        hdr = bytearray(f.read(92))
        lba, count, esize = struct.unpack_from("<QII", hdr, 72)
        f.seek(lba * SECTOR)
        table = bytearray(f.read(count * esize))
        old_backup = struct.unpack_from("<Q", hdr, 32)[0]
        for i in range(count):
            e = i * esize
            if str(uuid_mod.UUID(bytes_le=bytes(table[e:e + 16]))) == STATE_TYPE:
                first = struct.unpack_from("<Q", table, e + 32)[0]
                struct.pack_into("<Q", table, e + 40, first + size // SECTOR - 1)
                break
        else:
            raise TestFailure(f"{disk}: no state partition")
        ent_sectors = count * esize // SECTOR
        total = first + size // SECTOR + ent_sectors + 1
        f.truncate(total * SECTOR)
        f.seek(old_backup * SECTOR)  # the old backup header is now inside the partition
        f.write(bytes(SECTOR))
        struct.pack_into("<Q", hdr, 32, total - 1)
        struct.pack_into("<Q", hdr, 48, total - 2 - ent_sectors)
        struct.pack_into("<I", hdr, 88, zlib.crc32(table))

        def with_crc(h):
            h[16:20] = bytes(4)
            struct.pack_into("<I", h, 16, zlib.crc32(h[:struct.unpack_from("<I", h, 12)[0]]))
            return h
        f.seek(446 + 12)  # the protective MBR's partition covers the whole disk
        f.write(struct.pack("<I", min(total - 1, 0xFFFFFFFF)))
        backup = bytearray(hdr)
        struct.pack_into("<QQ", backup, 24, total - 1, 1)
        struct.pack_into("<Q", backup, 72, total - 1 - ent_sectors)
        f.seek(512)
        f.write(with_crc(hdr))
        f.seek(lba * SECTOR)
        f.write(table)
        f.seek((total - 1 - ent_sectors) * SECTOR)
        f.write(table)
        f.write(with_crc(backup))
    if state_part(disk)[1] != size:
        raise TestFailure(f"{disk}: the state partition did not grow to {size}")


def test_state_integrity_killed_during_mkfs():
    """A 1 GiB state partition (4x the image's), hmac(sha256) integrity by default: the
    first boot zeroes the same probed ends as on 256 MiB (its cost does not grow with the
    disk); QEMU is killed while mkfs runs; the next boot redoes mkfs (or keeps a finished
    one) and comes up; a third boot opens it and reads the stand-in's data back. Times of
    both kinds of boot noted."""
    disk = helpers.node_disk("state_integrity")
    work = disk.parent
    tpm = work / "tpm"
    grow_state(disk, 1 << 30)

    with node("state_integrity_1", disk) as v:
        helpers.expect_start(v, "OVMF+UKI")
        m = v.wait_for(MADE, scaled(600), since=0)
        if m.group(3) != "with hmac(sha256) integrity":
            raise TestFailure(f"first boot made: {m.group(0)}")
        uuid = m.group(2)
        first = {k: int(m.group(i)) for i, k in enumerate(
            ("seal", "format", "ends", "commit"), start=4)}
        vol = int(v.wait_for(ENDS, scaled(STEP), since=0).group(1))
        v.wait_for(rf"cvminit: state: measured luks2:{uuid}:aes-xts-plain64:512:4096:"
                   r"hmac\(sha256\) into PCR 15", scaled(STEP), since=0)
        v.wait_for(r"making ext4", scaled(STEP), since=0)
        time.sleep(0.3)
        v.qmp("quit")
        v.wait_exit(30)
        # Killed while mkfs ran: nothing after it (the flag, the mount) had happened.
        v.assert_absent(r"marked initialized|mounted on /var",
                        "mkfs had finished before the kill: the kill tests nothing")
    keep_tpm(v, tpm)
    if not 960 <= vol < 1024:  # 1 GiB less the LUKS2 metadata and the integrity tags
        raise TestFailure(f"the volume has {vol} MiB, expected about 1 GiB")
    check_journal(disk)
    killed = "after the header commit, while mkfs ran"

    with node("state_integrity_2", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(UNSEALED + r" \(setup not finished: state_mount does\)", scaled(STEP),
                   since=0)
        m = v.wait_for(r"cvminit: state: (/dev/vda\d is blank: first boot, making ext4|"
                       r"/dev/mapper/state already holds ext4)", scaled(STEP), since=0)
        v.wait_for(r"marked initialized in its LUKS2 token", scaled(STEP), since=0)
        v.chan.wait_for(r"kubelet-standin: start 1 recorded", scaled(STEP), since=0)
        var_checked(v, "wrote")
        mount2 = timeline_times(v)[1]
        helpers.power_off_via_button(v)
    keep_tpm(v, tpm)
    redo = "mkfs redone" if "making ext4" in m.group(1) else "finished ext4 kept"
    meta, _ = luks_json(disk, work)
    check_header(meta, integrity=True)

    (o3, m3), unseal = later_boot("state_integrity_3", disk, tpm, uuid, 2)
    note(f"{vol} MiB volume; killed {killed}; next boot: {redo}, up. First boot: "
         f"seal {first['seal']} ms, format {first['format']} ms, activate+ends "
         f"{first['ends']} ms, commit {first['commit']} ms (killed before the timeline is "
         f"printed); next boot "
         f"state (mkfs + mount + flag) {mount2:.0f} ms; later boot: state-open {o3:.0f} ms "
         f"(unseal {unseal[0]}, activate {unseal[1]}), state (mount) {m3:.0f} ms")


def test_state_plain_xts_option():
    """state_integrity=none on the UKI's command line (references made consistent): the
    first boot makes plain aes-xts-plain64 (no integrity, 64-byte key, no zeroing),
    measures it as such, makes ext4 and comes up. Then the host overwrites the start of
    the encrypted data (plain XTS has no tags to stop that): the volume is marked
    initialized but holds no filesystem, and the next boot refuses without formatting."""
    disk = helpers.node_disk("state_plain")
    helpers.add_to_uki_cmdline(disk, "cvminit.state_integrity=none")
    with node("state_plain", disk) as v:
        helpers.expect_start(v, "OVMF+UKI")
        m = v.wait_for(MADE, scaled(STEP), since=0)
        if m.group(3) != "no integrity":
            raise TestFailure(f"first boot made: {m.group(0)}")
        uuid = m.group(2)
        t = {k: int(m.group(i)) for i, k in enumerate(
            ("seal", "format", "activate", "commit"), start=4)}
        v.wait_for(rf"cvminit: state: measured luks2:{uuid}:aes-xts-plain64:512:4096:none "
                   r"into PCR 15", scaled(STEP), since=0)
        v.chan.wait_for(r"kubelet-standin: start 1 recorded", scaled(STEP), since=0)
        var_checked(v, "wrote")
        v.assert_absent(r"zeroed the first", "plain XTS zeroed the volume's ends")
        open_ms, mount_ms = timeline_times(v)
        helpers.power_off_via_button(v)
    tpm = keep_tpm(v, disk.parent / "tpm-plain")
    meta, _ = luks_json(disk, disk.parent)
    check_header(meta, integrity=False)

    base, _ = state_part(disk)
    with open(disk, "r+b") as f:
        f.seek(base + DATA_OFFSET)
        f.write(bytes(1 << 20))  # ext4's superblock and group descriptors, decrypted garbage
    with node("state_plain_2", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(UNSEALED, scaled(STEP), since=0)
        v.wait_for(r"the state volume \S+ \(on /dev/vda\d\) is marked "
                   r"initialized but holds no filesystem", scaled(STEP), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"making ext4|mounted on /var", "a destroyed volume was formatted")
    note("initialized, filesystem destroyed by the host: refused, not formatted")
    note(f"plain XTS first boot: state-open {open_ms:.0f} ms (seal {t['seal']}, format "
         f"{t['format']}, activate {t['activate']}, commit {t['commit']}), state (mkfs + "
         f"mount + flag) {mount_ms:.0f} ms")
