/* The state partition's decisions as pure functions of what was read: the rows of the
 * crash table in init/state.c, unit-tested one by one (tests/unit/test_state_plan.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* What state_open() read once from the partition. */
struct state_seen {
	const char *dev; /* the partition, for the texts */
	const char *partuuid;
	int luks; /* luks2_inspect(): 1 a volume cvminit accepts, 0 no LUKS2 magic,
			       * < 0 anything else (luks_err says what) */
	const char *luks_err;
	bool primary_missing; /* luks == 1: only the secondary copy is there */
	bool initialized;     /* luks == 1: the token says the filesystem was recorded */
	int fs;		      /* luks == 0 only: probe of the partition, 1 a signature
			       * (fs_type), 0 blank, < 0 unreadable */
	const char *fs_type;
};

enum state_step {
	STATE_FIRST_BOOT, /* rows A, B: blank; make everything */
	STATE_REDO,   /* row C: a first boot cut off after W2; make everything again */
	STATE_OPEN,   /* rows D, E: unseal, activate */
	STATE_REFUSE, /* text says why */
};

/* Fills text (a notice for FIRST_BOOT and REDO, the refusal for REFUSE, empty for OPEN)
 * and returns the step. */
enum state_step state_plan_open(const struct state_seen *in, char *text, size_t len);

/* What state_mount() found on the opened volume, after switch_root. */
struct state_volume {
	const char *node; /* /dev/mapper/state */
	const char *dev;  /* the partition under it */
	int fs;		  /* probe: 1 a signature (fs_type), 0 blank, < 0 -errno (-EBUSY:
			   * two signatures) */
	const char *fs_type;
	bool initialized; /* the token's flag */
};

enum state_mount_step {
	MOUNT_MKFS,  /* row D without ext4: blank, never recorded: make ext4 */
	MOUNT_KEEP,  /* row D with ext4 (a cut after mkfs): mount it, record it */
	MOUNT_AS_IS, /* row E: mount */
	MOUNT_REFUSE,
};

/* The same for the mount: text is the notice (MKFS, KEEP) or the refusal. */
enum state_mount_step state_plan_mount(const struct state_volume *in, char *text,
				       size_t len);
