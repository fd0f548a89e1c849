/* The state partition's crash table (init/state.c) as two pure functions: what was read
 * in, the next step and its text out. No I/O, so every row has a unit test. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../lib/util.h"
#include "state_plan.h"

enum state_step state_plan_open(const struct state_seen *in, char *text, size_t len)
{
	text[0] = '\0';
	if (in->luks < 0) {
		/* LUKS1, another header size, copies that disagree, a header cvminit does
		 * not make: never use it, never format it. */
		snprintf(
			text, len,
			"the state partition %s does not hold a LUKS2 volume cvminit accepts: %s. Refusing to use or format it.",
			in->dev, in->luks_err);
		return STATE_REFUSE;
	}
	if (in->luks == 0) {
		if (in->fs != 0) {
			snprintf(
				text, len,
				"the state partition %s holds %s: refusing to format over it. Give the node an empty state partition or the disk it made.",
				in->dev,
				in->fs < 0 ? "something unreadable" : in->fs_type);
			return STATE_REFUSE;
		}
		/* Rows A and B: W1 alone leaves no magic, so blank to blkid and to us. */
		snprintf(text, len, "%s (partuuid %s) is blank: first boot", in->dev,
			 in->partuuid);
		return STATE_FIRST_BOOT;
	}
	if (in->primary_missing) {
		if (in->initialized) {
			snprintf(
				text, len,
				"the primary LUKS2 header of %s is gone but its secondary copy says the volume holds data: repair the header from its copy (cryptsetup repair) on a trusted host",
				in->dev);
			return STATE_REFUSE;
		}
		/* Row C: W2 done, W3 never; nothing was ever stored in it. */
		snprintf(
			text, len,
			"%s has only a secondary header with an unfinished setup: the first boot was cut off; starting it over",
			in->dev);
		return STATE_REDO;
	}
	return STATE_OPEN;
}

enum state_mount_step state_plan_mount(const struct state_volume *in, char *text,
				       size_t len)
{
	text[0] = '\0';
	if (in->fs < 0) {
		snprintf(text, len, "cannot read the state volume %s (on %s): %s",
			 in->node, in->dev,
			 in->fs == -EBUSY ? "more than one signature on it"
					  : strerror(-in->fs));
		return MOUNT_REFUSE;
	}
	if (in->fs == 0 && in->initialized) {
		/* Row E without a filesystem: the data is gone; mkfs would hide it. */
		snprintf(
			text, len,
			"the state volume %s (on %s) is marked initialized but holds no filesystem: its data was destroyed. Refusing to format over it; give the node a blank state partition to start over.",
			in->node, in->dev);
		return MOUNT_REFUSE;
	}
	if (in->fs == 1 && !streq(in->fs_type, "ext4")) {
		snprintf(
			text, len,
			"the state volume %s (on %s) holds %s, not ext4: refusing to format over it",
			in->node, in->dev, in->fs_type);
		return MOUNT_REFUSE;
	}
	if (in->fs == 0) {
		snprintf(text, len, "%s is blank: first boot, making ext4 on %s", in->dev,
			 in->node);
		return MOUNT_MKFS;
	}
	if (!in->initialized) {
		snprintf(
			text, len,
			"%s already holds ext4 (a previous boot stopped before recording it): keeping it",
			in->node);
		return MOUNT_KEEP;
	}
	return MOUNT_AS_IS;
}
