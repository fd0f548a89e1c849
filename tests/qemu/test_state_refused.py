"""State partitions cvminit must refuse and never format (docs/state.md, "Crash safety"):
the host controls the disk, so what it finds there that cvminit did not make, or that
says it holds data cvminit cannot see, stops the boot and is left exactly as it was."""
import subprocess

import helpers
from vm import TestFailure, note, scaled

STEP = 180
EXT4_MAGIC_AT = 1024 + 56  # s_magic in the ext4 superblock


def test_state_plain_ext4_refused_and_kept():
    """A plain ext4 filesystem on the state partition (what cvminit builds before LUKS2
    wrote, or the host's own): refused, never formatted; the filesystem is intact."""
    disk = helpers.node_disk("state_plain_ext4")
    base, size = helpers.state_part(disk)
    r = subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "old-var", "-E",
                        f"offset={base}", str(disk), str(size // 1024)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"mke2fs failed: {r.stdout}")
    before = helpers.read_part(disk, 0, 1 << 20)
    if before[EXT4_MAGIC_AT:EXT4_MAGIC_AT + 2] != b"\x53\xef":
        raise TestFailure("the test's ext4 has no magic where expected")
    with helpers.node("state_plain_ext4", disk) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"cvminit: .*the state partition /dev/vda\d holds ext4: refusing to "
                   r"format over it", scaled(STEP), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"first boot|sealed to PCRs|making ext4|mounted on /var",
                        "cvminit used a partition holding a filesystem")
    if helpers.read_part(disk, 0, 1 << 20) != before:
        raise TestFailure("the refused partition's first MiB changed")
    note("plain ext4 on the state partition: refused, its first MiB unchanged")


def test_state_initialized_secondary_without_primary_refused():
    """The node's initialized volume with its primary LUKS2 header wiped (the host, or a
    torn write): the secondary copy says the volume holds data, so cvminit does not start
    a first boot over it; it refuses and tells the operator to repair the header."""
    helpers.first_booted()
    disk, tpm = helpers.copy_base("state_secondary_only")
    base, _ = helpers.state_part(disk)
    with open(disk, "r+b") as f:
        f.seek(base)
        f.write(bytes(4096))  # the primary binary header, magic included
    before = helpers.read_part(disk, 0, helpers.DATA_OFFSET)
    with helpers.node("state_secondary_only", disk, tpm_from=tpm) as v:
        helpers.expect_start(v, "OVMF+UKI")
        v.wait_for(r"the primary LUKS2 header of /dev/vda\d is gone but its secondary copy "
                   r"says the volume holds data", scaled(STEP), since=0)
        helpers.expect_refusal_and_poweroff(v)
        v.assert_absent(r"first boot|sealed to PCRs|unsealed|making ext4|mounted on /var",
                        "cvminit started over a volume that holds data")
    if helpers.read_part(disk, 0, helpers.DATA_OFFSET) != before:
        raise TestFailure("the refused partition's header area changed")
    note("initialized secondary without primary: refused, header area unchanged")
