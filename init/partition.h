/* Partitions by Discoverable Partitions Specification type, found with libblkid. */
#pragma once

#include <stddef.h>

#define PART_MAX 32 /* PART_TOO_MANY says this number */

enum dps_type {
	DPS_UNKNOWN,
	DPS_ESP,
	DPS_ROOT_X86_64,
	DPS_ROOT_VERITY_X86_64,
	DPS_VAR,
};

struct part {
	char dev[48];	    /* /dev/vda2 */
	char type_uuid[40]; /* GPT partition type, lower case */
	char uuid[40];	    /* PARTUUID, lower case */
	char label[72];
	enum dps_type type;
};

/* The DPS name of a type ("root-x86-64", …); "unknown" for others. */
const char *dps_type_name(enum dps_type t);
/* Maps a GPT type UUID string (any case) to its DPS type. */
enum dps_type dps_type_from_uuid(const char *uuid);

/* Probes every disk in /sys/block (not loop/ram/zram) for a GPT and returns the number
 * of partitions written to parts, or a negative errno: -E2BIG when the disks carry more
 * partitions than max (then PART_TOO_MANY is the refusal). */
int part_scan(struct part *parts, size_t max);
/* Reads the GPT of one disk (path: its node, or an image file in tests; disk: its kernel
 * name for the partitions' /dev names). Returns the partitions written, -E2BIG when it
 * has more than max. */
int part_scan_disk(const char *path, const char *disk, struct part *parts, size_t max);

#define PART_TOO_MANY                                                                     \
	"the attached disks carry more than 32 GPT partitions, more than cvminit reads: " \
	"one it did not read could be a second root or state partition, and it does not " \
	"guess. Attach only the node's disk (and its state disk)."
