/* The crash table at the top of init/state.c, row by row, against the pure decisions in
 * init/state_plan.c: what the initrd does with each disk state, and what state_mount()
 * does after switch_root. */
#include <errno.h>

#include "../../init/state_plan.h"
#include "harness.h"

static enum state_step plan(struct state_seen in, char *text)
{
	in.dev = "/dev/vda3";
	in.partuuid = "0f1e";
	return state_plan_open(&in, text, 640);
}

TEST(row_a_blank_is_a_first_boot)
{
	char t[640];

	CHECK_INT(plan((struct state_seen){.luks = 0, .fs = 0}, t), STATE_FIRST_BOOT);
	CHECK_STR(t, "/dev/vda3 (partuuid 0f1e) is blank: first boot");
}

TEST(row_b_keyslots_without_a_header_are_blank_too)
{
	char t[640];

	/* W1 writes no magic and no signature blkid knows: the inputs of row A. */
	CHECK_INT(plan((struct state_seen){.luks = 0, .fs = 0, .initialized = true}, t),
		  STATE_FIRST_BOOT);
}

TEST(row_c_secondary_only_unfinished_starts_over)
{
	char t[640];

	CHECK_INT(plan((struct state_seen){.luks = 1, .primary_missing = true}, t),
		  STATE_REDO);
	CHECK_CONTAINS(t,
		       "/dev/vda3 has only a secondary header with an unfinished setup");
}

TEST(row_c_secondary_only_initialized_refuses)
{
	char t[640];

	CHECK_INT(plan((struct state_seen){.luks = 1,
					   .primary_missing = true,
					   .initialized = true},
		       t),
		  STATE_REFUSE);
	CHECK_CONTAINS(t, "primary LUKS2 header of /dev/vda3 is gone");
}

TEST(rows_d_and_e_open)
{
	char t[640];

	CHECK_INT(plan((struct state_seen){.luks = 1}, t), STATE_OPEN);
	CHECK_INT(plan((struct state_seen){.luks = 1, .initialized = true}, t),
		  STATE_OPEN);
	CHECK_STR(t, "");
}

TEST(another_signature_refuses)
{
	char t[640];

	CHECK_INT(plan((struct state_seen){.luks = 0, .fs = 1, .fs_type = "xfs"}, t),
		  STATE_REFUSE);
	CHECK_CONTAINS(t, "/dev/vda3 holds xfs: refusing to format over it");
	CHECK_INT(plan((struct state_seen){.luks = 0, .fs = -EBUSY}, t), STATE_REFUSE);
	CHECK_CONTAINS(t, "holds something unreadable: refusing to format");
}

TEST(a_header_cvminit_does_not_accept_refuses)
{
	char t[640];

	/* LUKS1, copies that disagree, anything off the allow-list: luks2_inspect() < 0,
	 * whatever blkid would say. */
	CHECK_INT(plan((struct state_seen){.luks = -EPROTONOSUPPORT,
					   .luks_err = "LUKS1",
					   .fs = 0},
		       t),
		  STATE_REFUSE);
	CHECK_CONTAINS(t, "does not hold a LUKS2 volume cvminit accepts: LUKS1");
}

static enum state_mount_step mount_plan(struct state_volume in, char *text)
{
	in.node = "/dev/mapper/state";
	in.dev = "/dev/vda3";
	return state_plan_mount(&in, text, 640);
}

TEST(row_d_blank_volume_gets_ext4)
{
	char t[640];

	CHECK_INT(mount_plan((struct state_volume){.fs = 0}, t), MOUNT_MKFS);
	CHECK_STR(t, "/dev/vda3 is blank: first boot, making ext4 on /dev/mapper/state");
}

TEST(row_d_ext4_after_a_cut_is_kept)
{
	char t[640];

	CHECK_INT(mount_plan((struct state_volume){.fs = 1, .fs_type = "ext4"}, t),
		  MOUNT_KEEP);
	CHECK_CONTAINS(t, "already holds ext4");
}

TEST(row_e_mounts)
{
	char t[640];

	CHECK_INT(mount_plan((struct state_volume){.fs = 1,
						   .fs_type = "ext4",
						   .initialized = true},
			     t),
		  MOUNT_AS_IS);
}

TEST(row_e_without_ext4_never_mkfs)
{
	char t[640];

	CHECK_INT(mount_plan((struct state_volume){.fs = 0, .initialized = true}, t),
		  MOUNT_REFUSE);
	CHECK_CONTAINS(t, "is marked initialized but holds no filesystem");
}

TEST(volume_with_another_filesystem_or_unreadable_refuses)
{
	char t[640];

	CHECK_INT(mount_plan((struct state_volume){.fs = 1, .fs_type = "xfs"}, t),
		  MOUNT_REFUSE);
	CHECK_CONTAINS(t, "holds xfs, not ext4");
	CHECK_INT(mount_plan((struct state_volume){.fs = 1,
						   .fs_type = "xfs",
						   .initialized = true},
			     t),
		  MOUNT_REFUSE);
	CHECK_INT(mount_plan((struct state_volume){.fs = -EBUSY}, t), MOUNT_REFUSE);
	CHECK_CONTAINS(t, "more than one signature on it");
	CHECK_INT(mount_plan((struct state_volume){.fs = -EIO}, t), MOUNT_REFUSE);
	CHECK_CONTAINS(t, "Input/output error");
}
