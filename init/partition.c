/* Partition discovery: every disk's GPT, read with libblkid, each partition classified
 * by its Discoverable Partitions Specification type UUID. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>

#include <blkid/blkid.h>

#include "log.h"
#include "partition.h"

static const struct {
	enum dps_type type;
	const char *uuid;
	const char *name;
} dps_types[] = {
	{DPS_ESP, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "esp"},
	{DPS_ROOT_X86_64, "4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "root-x86-64"},
	{DPS_ROOT_VERITY_X86_64, "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
	 "root-x86-64-verity"},
	{DPS_VAR, "4d21b016-b534-45c2-a9fb-5c16e091fd2d", "var"},
};

const char *dps_type_name(enum dps_type t)
{
	for (size_t i = 0; i < ARRAY_SIZE(dps_types); i++)
		if (dps_types[i].type == t)
			return dps_types[i].name;
	return "unknown";
}

enum dps_type dps_type_from_uuid(const char *uuid)
{
	for (size_t i = 0; i < ARRAY_SIZE(dps_types); i++)
		if (strcasecmp(uuid, dps_types[i].uuid) == 0)
			return dps_types[i].type;
	return DPS_UNKNOWN;
}

static void copy_lower(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; src && src[i] && i + 1 < len; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

int part_scan_disk(const char *path, const char *disk, struct part *parts, size_t max)
{
	blkid_probe pr;
	blkid_partlist pl;
	int n = 0, count;

	pr = blkid_new_probe_from_filename(path);
	if (!pr)
		return log_warn_errno(-errno, "partitions: open %s", path);
	blkid_probe_enable_superblocks(pr, 0);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	pl = blkid_probe_get_partitions(pr);
	count = pl ? blkid_partlist_numof_partitions(pl) : 0;
	/* A partition left unread could be the one that matters (a second root or state
	 * partition the host added): more than fit is an error, never a silent cut. */
	if (count > 0 && (size_t)count > max) {
		blkid_free_probe(pr);
		log_error(
			"partitions: %s has %d partitions, more than the %zu cvminit has room "
			"for",
			path, count, max);
		return -E2BIG;
	}

	for (int i = 0; i < count; i++) {
		blkid_partition p = blkid_partlist_get_partition(pl, i);
		struct part *out = &parts[n];
		int no = blkid_partition_get_partno(p);

		/* Kernel naming: vda1, but nvme0n1p1 and mmcblk0p1. */
		snprintf(out->dev, sizeof(out->dev), "/dev/%.31s%s%d", disk,
			 isdigit((unsigned char)disk[strlen(disk) - 1]) ? "p" : "", no);
		copy_lower(out->type_uuid, sizeof(out->type_uuid),
			   blkid_partition_get_type_string(p));
		copy_lower(out->uuid, sizeof(out->uuid), blkid_partition_get_uuid(p));
		snprintf(out->label, sizeof(out->label), "%s",
			 blkid_partition_get_name(p) ? blkid_partition_get_name(p) : "");
		out->type = dps_type_from_uuid(out->type_uuid);
		n++;
	}
	blkid_free_probe(pr);
	return n;
}

int part_scan(struct part *parts, size_t max)
{
	struct dirent *de;
	DIR *d;
	int n = 0;

	d = opendir("/sys/block");
	if (!d)
		return log_errno(-errno, "partitions: open /sys/block");
	while ((de = readdir(d))) {
		/* Only disks that can carry a GPT of ours: not loop, RAM, optical or
		 * device-mapper devices. */
		if (de->d_name[0] == '.' || startswith(de->d_name, "loop") ||
		    startswith(de->d_name, "ram") || startswith(de->d_name, "zram") ||
		    startswith(de->d_name, "sr") || startswith(de->d_name, "dm-"))
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/dev/%.31s", de->d_name);
		int r = part_scan_disk(path, de->d_name, parts + n, max - (size_t)n);
		if (r == -E2BIG) {
			closedir(d);
			return r;
		}
		if (r > 0)
			n += r;
	}
	closedir(d);
	return n;
}
