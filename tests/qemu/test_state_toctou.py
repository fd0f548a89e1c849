"""The CVE-2025-59054 defence (docs/state.md, "Later boots"): the state header is read once,
validated, and that copy is what libcryptsetup activates from, whatever the disk says later.

The host changes the state partition's LUKS2 header between cvminit's read and its
activation, deterministically: the node's disk is served by our NBD server
(tests/qemu/nbd_server.py), which answers with the real header until the guest has read
all 32 KiB of it once (cvminit's one read) and with an attacker's header from then on.
The attacker's header has the same keyslot, digest (so the unsealed key matches it),
token, cipher, key size, sector size and UUID, valid checksums, and segment 0 moved from
16 MiB to 32 MiB into the partition: activated from it, the volume maps other sectors and
/var's ext4 is not there; cvminit's after-load comparison (libcryptsetup's data offset
against its own) refuses it first, which fails this test just the same. A node that
activates from the validated copy boots normally and finds the stand-in's counter where
it left it. (iv_tweak moved, and segment 0's size fixed at 8 MiB, were tried first: a
build activating from the disk's header booted normally with either (libcryptsetup 2.6.1
seems not to use them for a plain crypt segment), so they proved nothing.)"""
import hashlib
import json
import subprocess

from nbd_server import NbdServer, nbd_read
from helpers import (CLOSED, DATA_OFFSET, HDR, MEASURED, MOUNTED, STATE_STEP as STEP, UNSEALED, copy_base, cryptsetup, first_booted, keep_tpm, read_part, state_part)
import helpers
from vm import VM, TestFailure, note, scaled

AREA = 2 * HDR        # both header copies: what cvminit reads once
EVIL_OFFSET = str(32 << 20)  # the data segment moved: other sectors, no ext4 there


def with_json(copy, fn):
    """One 16 KiB header copy with its JSON rewritten by fn(dict) and its checksum
    recomputed (sha256 over the copy with the checksum field zeroed)."""
    copy = bytearray(copy)
    meta = json.loads(copy[4096:].split(b"\0", 1)[0])
    fn(meta)
    text = json.dumps(meta, separators=(",", ":")).encode()
    copy[4096:] = text + bytes(HDR - 4096 - len(text))
    copy[448:512] = bytes(64)
    copy[448:480] = hashlib.sha256(bytes(copy)).digest()
    return bytes(copy)


def attacker_header(area):
    """Both copies of the node's header with segment 0 moved; the keyslot, the digest the
    unsealed key is checked against, the token and the UUID left as they are."""
    def move(meta):
        if meta["segments"]["0"].get("offset") != str(DATA_OFFSET):
            raise TestFailure(f"segment 0 is {meta['segments']['0']}")
        meta["segments"]["0"]["offset"] = EVIL_OFFSET
    return b"".join(with_json(area[c * HDR:(c + 1) * HDR], move) for c in (0, 1))


def host_reads(disk, area, work, name):
    """The segment libcryptsetup (the host's cryptsetup) reads from a header area put in
    front of the node's keyslots: it loads it (checksums and all) or this fails."""
    f = work / f"{name}.hdr"
    f.write_bytes(area + read_part(disk, len(area), DATA_OFFSET - len(area)))
    r = subprocess.run([cryptsetup(), "luksDump", "--dump-json-metadata", str(f)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"cryptsetup does not load the {name} header: {r.stdout}")
    return json.loads(r.stdout)


def test_state_header_swapped_after_validation():
    """Later boot through an NBD server that swaps the state header for an attacker's
    (segment 0 moved to 32 MiB, checksums valid, same digest) right after cvminit's one
    read: the node unseals, activates, mounts its old /var (stand-in start 2), measures
    the same identity; the swap is shown to have happened (the server's log of what it
    served, and a read back through it after the boot)."""
    b = first_booted()
    disk, tpm = copy_base("state_toctou")
    work = disk.parent
    base, _ = state_part(disk)
    area = read_part(disk, 0, AREA)
    evil = attacker_header(area)
    good_meta = host_reads(disk, area, work, "original")
    evil_meta = host_reads(disk, evil, work, "attacker")
    if (good_meta["segments"]["0"]["offset"], evil_meta["segments"]["0"]["offset"]) != (
            str(DATA_OFFSET), EVIL_OFFSET) or good_meta["digests"] != evil_meta["digests"]:
        raise TestFailure("the attacker's header is not the original with segment 0 moved")

    with NbdServer(disk, lifetime=scaled(900), log=work / "nbd.log") as srv:
        srv.swap_after_read(base, evil)
        with VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": srv.url}],
                name="state_toctou", memory=2048, timeout=scaled(600),
                tpm_from=tpm, join=helpers.default_join("state_toctou")) as v:
            helpers.expect_start(v, "OVMF+UKI")
            m = v.wait_for(rf"cvminit: state: (/dev/vda\d: LUKS2 {b['uuid']}, "
                           r"aes-xts-plain64 512-bit, 4096-byte sectors, integrity hmac\(sha256\), "
                           r"header copy primary \(seqid \d+\) validated|the state "
                           r"partition .* does not hold a LUKS2 volume cvminit accepts.*)",
                           scaled(STEP), since=0)
            if "validated" not in m.group(1):
                raise TestFailure(f"cvminit read the attacker's header ({m.group(1)}): "
                                  "something read the whole header area before it and "
                                  "the swap came early")
            if srv.swapped_at is None:
                raise TestFailure("cvminit validated a header but the server never saw "
                                  "all of it read: the swap did not happen")
            v.wait_for(UNSEALED, scaled(STEP), since=0)
            ident = v.wait_for(MEASURED, scaled(STEP), since=0).group(1)
            if ident != f"luks2:{b['uuid']}:aes-xts-plain64:512:4096:hmac(sha256)":
                raise TestFailure(f"measured {ident}")
            m = v.wait_for(MOUNTED, scaled(STEP), since=0)
            if "new filesystem" in m.group(2):
                raise TestFailure("the swapped boot made a new filesystem")
            v.chan.wait_for(r"kubelet-standin: start 2 recorded", scaled(STEP), since=0)
            v.assert_absent(r"(?i)making ext4|refus", "the node did not boot normally")
            helpers.expect_boot_complete(v)
            helpers.power_off_via_button(v)
            v.wait_for(CLOSED, 5, since=0)
        keep_tpm(v, tpm)
        guest = srv.region_events()
        writes = [e for e in guest if e[1] == "write"]
        back = nbd_read(srv.url, base, AREA, timeout=scaled(30))
        errors = list(srv.errors)
    if errors:
        raise TestFailure(f"the NBD server had errors: {errors}")
    if writes:
        raise TestFailure(f"the guest wrote into the header area on a later boot: {writes}")
    if back != evil:
        raise TestFailure("a read through the server after the boot does not return the "
                          "attacker's header: the swap did not take effect")
    swap_t = next(e[0] for e in guest if e[1] == "swap")
    before = [e for e in guest if e[1] == "read" and e[0] <= swap_t]
    after = [e for e in guest if e[1] == "read" and e[0] > swap_t]
    if any("swapped" not in e[4] for e in after) or any("original" not in e[4]
                                                        for e in before):
        raise TestFailure(f"the server served the wrong bytes: {guest}")
    note(f"header reads before the swap: {len(before)} (the last one completing the 32 KiB "
         f"at {swap_t:.1f} s); reads of the header area after it, given the attacker's "
         f"bytes: {len(after)}"
         + (" (" + ", ".join(f"{e[2]}+{e[3]} at {e[0]:.1f} s" for e in after[:4]) + ")"
            if after else "")
         + "; read back through the server after the boot: the attacker's header"
         + f"; node up from the validated copy, /var kept (stand-in start 2), "
         f"{ident} measured")
