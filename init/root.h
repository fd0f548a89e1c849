/* The verified root: roothash= from the command line, its data and hash partitions found
 * by type and PARTUUID, dm-verity, erofs at /sysroot, then switch_root into it. */
#pragma once

#include <stdint.h>

#include "settings.h"

#define ROOT_HASH_SIZE 32 /* sha256 */
#define ROOT_MOUNT     "/sysroot"
#define ROOT_DM_NAME   "root"

struct root {
	char hash_hex[2 * ROOT_HASH_SIZE + 1];
	uint8_t hash[ROOT_HASH_SIZE];
	char data_uuid[40]; /* PARTUUID of the root: the first 128 bits of the hash */
	char hash_uuid[40]; /* PARTUUID of root-verity: the last 128 bits */
	char data_dev[48];
	char hash_dev[48];
	char node[300]; /* the verity mapping, /dev/mapper/root */
};

/* Parses roothash= from a kernel command line. Returns 1 and fills hash_hex, hash and the
 * PARTUUIDs; 0 when absent; -EINVAL (malformed), -EEXIST (given twice) or -E2BIG with a
 * sentence in err naming the value and the expected form. */
int root_parse(const char *cmdline, struct root *r, char *err, size_t errlen);

/* Parses roothash= and waits up to settings->device_timeout seconds for exactly one
 * partition of each type with its PARTUUID. Returns 1 when found, 0 when the command line
 * has no roothash=; fails closed on anything else. */
int root_find(const char *cmdline, const struct settings *s, struct root *r);
/* Opens the verity mapping and mounts it (erofs, read-only) at /sysroot; fails closed. */
void root_open(struct root *r, const struct settings *s);
/* Moves /dev, /proc, /sys and /run into /sysroot, empties the initramfs (never crossing
 * a mount), makes /sysroot the root and chroots into it; fails closed. */
void root_switch(const struct root *r);
