"""Root scenarios: roothash= on the command line → the root and verity partitions by type
and PARTUUID → dm-verity (libcryptsetup) → erofs on /sysroot → switch_root, then the
root's config and services. Tampering with the root or its hash tree, and bad roothash=
values, must refuse the boot (or restart the node), never serve the changed root.

The image scenarios boot a private copy of build/image/cvminit.raw (OVMF → UKI, whose
command line carries roothash=); the others boot the run's kernel and initrd directly,
with the image's disk attached and roothash= given on the command line."""
import re
import struct
import subprocess

import vm
import helpers
from vm import VM, WORK_ROOT, TestFailure, boot, gpt_partitions as partitions, note, scaled
from helpers import disk_copy, roothash, uki_cmdline  # noqa: F401

ROOT_TYPE = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
VERITY_TYPE = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
SWITCHED = (r"cvminit: root: switched to the verified root "
            r"\(erofs on (\S+), roothash ([0-9a-f]{64})\)")
MISMATCH = r"cvminit: root: root hash does not match the verity partition /dev/vda\d"


def flip(disk, offset):
    with open(disk, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def image_vm(name, disk, timeout=400):
    """OVMF → the UKI on disk (a private copy), with swtpm."""
    return VM(None, None, None, ovmf=True, tpm=True, disks=[{"file": str(disk)}],
              name=name, memory=2048, timeout=scaled(timeout))


def test_root_switch():
    """The image boots: roothash= from the UKI, both partitions found by PARTUUID, verity
    opened, erofs mounted, switch_root; the config read from the initrd before the root,
    ready, and the power button powers the node off cleanly."""
    h = roothash()
    step = scaled(helpers.STEP_TIMEOUT)
    with image_vm("root_switch", disk_copy("root_switch")) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(rf"cvminit: root: roothash {h}: root partition {h[:8]}-", step)
        v.wait_for(r"cvminit: root: data /dev/vda\d, hash tree /dev/vda\d "
                   r"\(found after \d+ ms\)", step)
        v.wait_for(r"cvminit: verity: /dev/vda\d: sha256, format 1, ", step)
        v.wait_for(r"cvminit: root: /dev/mapper/root mounted read-only on /sysroot \(erofs\)",
                   step)
        m = v.wait_for(SWITCHED, step)
        if m.group(1) != "/dev/mapper/root" or m.group(2) != h:
            raise TestFailure(f"switched line names {m.group(1)} {m.group(2)}: {m.group(0)}")
        note(m.group(0).split("cvminit: ", 1)[1])
        # The config comes from the initrd (measured and compared before the root is
        # opened); the services start after the switch.
        m = v.wait_for(r"cvminit: config: /etc/cvminit/cvminit\.conf: (\d+) service\(s\)",
                       step, since=0)
        if helpers.index_of(v, re.escape(m.group(0))) > helpers.index_of(v, SWITCHED):
            raise TestFailure("the config was loaded after switch_root, not from the initrd")
        note(f"initrd's config: {m.group(1)} service(s)")
        total, after = helpers.expect_boot_complete(v)
        helpers.expect_ready(v)
        helpers.timeline_note(v, total, after)
        v.assert_absent(r"cvminit: root: no roothash=", "the UKI carries roothash=")
        helpers.power_off_via_button(v)


def test_root_tampered_data():
    """One byte of the erofs superblock (read at mount) flipped in the root partition:
    dm-verity catches it at mount and restarts the node (restart_on_corruption); the root
    is never switched to."""
    disk = disk_copy("root_tampered_data")
    off, size = partitions(disk)[ROOT_TYPE]
    flip(disk, off + 1024 + 8)  # inside the erofs superblock (offset 1024)
    with image_vm("root_tampered_data", disk) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: verity: /dev/vda\d: sha256", scaled(helpers.STEP_TIMEOUT))
        v.wait_exit(scaled(120))
        reason = v.shutdown_reason()
        v.assert_absent(SWITCHED, "a tampered root was switched to")
        v.assert_absent(helpers.READY, "a tampered root came up")
        corrupt = v.find(r"device-mapper: verity: .*is corrupted")
        # dm-verity must be what caught it (its line), then either its restart or, when
        # the failed read reached cvminit's mount first, cvminit's refusal.
        if not corrupt:
            raise TestFailure(f"QEMU stopped with reason {reason} without dm-verity's "
                              "corruption line: the tampered block was not caught by verity")
        if reason != "guest-reset" and not v.find("REFUSING TO BOOT"):
            raise TestFailure(f"QEMU stopped with reason {reason}, expected dm-verity's "
                              f"restart (restart_on_corruption) or a refusal")
        note(f"stopped: {reason}; kernel: {corrupt[0][1].strip() if corrupt else '(no line)'}")


def test_root_tampered_data_panic():
    """The same flipped byte, booted with cvminit.verity_error=panic (direct kernel, the
    image's root hash): dm-verity panics the kernel instead of restarting it; the root is
    never switched to."""
    h = roothash()
    disk = disk_copy("root_tampered_data_panic")
    off, size = partitions(disk)[ROOT_TYPE]
    flip(disk, off + 1024 + 8)
    no_panic_fail = [p for p in vm.FAIL_PATTERNS if p[0] != "kernel panic"]
    with boot(f"roothash={h} cvminit.verity_error=panic", ovmf=False,
              disks=[{"file": str(disk)}], memory=1024, fail_patterns=no_panic_fail) as v:
        helpers.expect_start(v, "SeaBIOS")
        m = v.wait_for(r"Kernel panic.*", scaled(120), since=0)
        v.wait_exit(scaled(60))
        v.assert_absent(SWITCHED, "a tampered root was switched to")
        if not v.find(r"device-mapper: verity: .*is corrupted"):
            raise TestFailure("the kernel panicked, but not after a dm-verity corruption line")
        note(f"kernel: {m.group(0).strip()}")


def test_root_tampered_hash_tree():
    """One byte of the verity partition's top hash block flipped: the root hash no longer
    matches, and cvminit refuses before activating anything (direct kernel, image disk)."""
    h = roothash()
    disk = disk_copy("root_tampered_hash_tree")
    off, size = partitions(disk)[VERITY_TYPE]
    flip(disk, off + 4096 + 17)  # the top hash block follows the 4 KiB superblock block
    with boot(f"roothash={h}", ovmf=False, disks=[{"file": str(disk)}], memory=1024) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(rf"cvminit: verity: top hash block of /dev/vda\d hashes to [0-9a-f]{{64}}, "
                   rf"roothash= is {h}", scaled(helpers.STEP_TIMEOUT), since=0)
        v.wait_for(MISMATCH + r" \(roothash=[0-9a-f]{64}\): the root was changed or the UKI "
                   r"is not for this disk", scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(SWITCHED)


def test_root_no_partition():
    """roothash= of zeros with the image disk attached: no partition has those PARTUUIDs;
    cvminit waits cvminit.device_timeout seconds, names what it looked for, refuses."""
    disk = disk_copy("root_no_partition")
    zero_uuid = "00000000-0000-0000-0000-000000000000"
    with boot("roothash=" + "0" * 64 + " cvminit.device_timeout=2", ovmf=False,
              disks=[{"file": str(disk)}]) as v:
        helpers.expect_start(v, "SeaBIOS")
        want = (f"no partition of type root-x86-64 with PARTUUID {zero_uuid}, nor of type "
                f"root-x86-64-verity with PARTUUID {zero_uuid} after 2 s")
        v.wait_for("cvminit: root: " + re.escape(want), scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)


def test_root_bad_roothash():
    """roothash=xyz: a refusal naming the value and the expected form."""
    with boot("roothash=xyz", ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit: root: bad kernel command line: roothash=xyz is not a root hash: "
                   r"expected 64 lower-case hex digits", scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)


def test_root_empty_roothash():
    """roothash= with no value is not "no root hash": refused."""
    with boot("roothash=", ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit: root: bad kernel command line: roothash= is empty: expected 64 "
                   r"lower-case hex digits", scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"cvminit: root: no roothash=", "an empty roothash= passed for none")


def test_root_roothash_twice():
    """roothash= given twice: ambiguous, refused."""
    h = "ab" * 32
    with boot(f"roothash={h} roothash={h}", ovmf=False) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(r"cvminit: root: bad kernel command line: roothash= is given more than "
                   r"once",
                   scaled(helpers.STEP_TIMEOUT), since=0)
        helpers.expect_refusal_and_poweroff(v)


def test_root_two_disks():
    """Two disks carrying the same root (the host attached a copy): the root is ambiguous,
    cvminit refuses rather than pick one."""
    h = roothash()
    a, b = disk_copy("root_two_disks_a"), disk_copy("root_two_disks_b")
    with boot(f"roothash={h}", ovmf=False, disks=[{"file": str(a)}, {"file": str(b)}]) as v:
        helpers.expect_start(v, "SeaBIOS")
        v.wait_for(rf"cvminit: root: 2 partitions of type root-x86-64(-verity)? with PARTUUID "
                   rf"{h[:8]}-\S+: the root is ambiguous", scaled(helpers.STEP_TIMEOUT),
                   since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"cvminit: verity: ", "a verity device was opened despite two roots")
