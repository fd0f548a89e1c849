/* Pure helpers: the boot timeline's format and the DPS type table. */
#include <errno.h>
#include <unistd.h>

#include "../../init/partition.h"
#include "../../init/timeline.h"
#include "../../init/log.h"
#include "harness.h"

TEST(timeline_format_durations)
{
	struct timeline t = {0};
	char buf[256];

	timeline_add(&t, "init-start", 1500000);
	timeline_add(&t, "mounts", 1502250);
	timeline_add(&t, "modules", 1600000);
	CHECK_INT(timeline_format(&t, buf, sizeof(buf)), strlen(buf));
	CHECK_STR(buf, "init-start 1500.000 1500.000\n"
		       "mounts 1502.250 2.250\n"
		       "modules 1600.000 97.750\n");
}

TEST(timeline_format_truncates_safely)
{
	struct timeline t = {0};
	char buf[16];

	timeline_add(&t, "a-long-stage-name", 1000);
	timeline_add(&t, "another", 2000);
	size_t n = timeline_format(&t, buf, sizeof(buf));
	CHECK(n < sizeof(buf));
	CHECK_INT(strlen(buf), n);
}

TEST(timeline_caps_at_max)
{
	struct timeline t = {0};

	for (int i = 0; i < TIMELINE_MAX + 5; i++)
		timeline_add(&t, "x", (uint64_t)i);
	CHECK_INT(t.n, TIMELINE_MAX);
}

TEST(dps_types)
{
	CHECK_INT(dps_type_from_uuid("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
		  DPS_ROOT_X86_64);
	CHECK_INT(dps_type_from_uuid("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
		  DPS_ROOT_X86_64);
	CHECK_INT(dps_type_from_uuid("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"),
		  DPS_ROOT_VERITY_X86_64);
	CHECK_INT(dps_type_from_uuid("4d21b016-b534-45c2-a9fb-5c16e091fd2d"), DPS_VAR);
	CHECK_INT(dps_type_from_uuid("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), DPS_ESP);
	CHECK_INT(dps_type_from_uuid("0fc63daf-8483-4772-8e79-3d69d8477de4"),
		  DPS_UNKNOWN);
	CHECK_STR(dps_type_name(DPS_VAR), "var");
	CHECK_STR(dps_type_name(DPS_UNKNOWN), "unknown");
}

TEST(log_levels)
{
	CHECK_INT(log_level_from_string("err"), 3);
	CHECK_INT(log_level_from_string("debug"), 7);
	CHECK_INT(log_level_from_string("0"), 0);
	CHECK_INT(log_level_from_string("errr"), -22);
	CHECK_INT(log_level_from_string(""), -22);
	CHECK_STR(log_level_to_string(4), "warning");
	CHECK_STR(log_level_to_string(9), "?");
}

TEST(log_errno_returns_its_error)
{
	CHECK_INT(log_errno(-2, "open %s", "/nonexistent"), -2);
	CHECK_INT(log_warn_errno(-5, "read"), -5);
}

/* A GPT image file with n partitions (1 MiB each, the first of type root-x86-64), made
 * with sfdisk: libblkid reads regular files as it reads disks. */
static void gpt_file(const char *path, int n)
{
	char cmd[256], out[512];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "rm -f %s && truncate -s %dM %s", path, n + 2, path);
	if (run_capture(cmd, out, sizeof(out)) != 0)
		FAIL_AT("%s: %s", cmd, out);
	snprintf(cmd, sizeof(cmd), "sfdisk -q %s > %s.out 2>&1", path, path);
	f = popen(cmd, "w");
	if (!f)
		FAIL_AT("popen sfdisk");
	fprintf(f, "label: gpt\ntable-length: 128\n");
	for (int i = 0; i < n; i++)
		fprintf(f, "size=1MiB, type=%s\n",
			i == 0 ? "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
			       : "0fc63daf-8483-4772-8e79-3d69d8477de4");
	if (pclose(f) != 0)
		FAIL_AT("sfdisk failed for %d partitions (see %s.out)", n, path);
}

TEST(part_scan_disk_reads_every_partition_up_to_max)
{
	struct part parts[PART_MAX];
	char path[64];

	snprintf(path, sizeof(path), "/tmp/cvminit-gpt-%d.img", (int)getpid());

	gpt_file(path, PART_MAX);
	CHECK_INT(part_scan_disk(path, "vda", parts, PART_MAX), PART_MAX);
	CHECK_STR(parts[0].dev, "/dev/vda1");
	CHECK_INT(parts[0].type, DPS_ROOT_X86_64);
	CHECK_STR(parts[PART_MAX - 1].dev, "/dev/vda32");
	CHECK_INT(parts[PART_MAX - 1].type, DPS_UNKNOWN);
	unlink(path);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), ".out");
	unlink(path);
}

/* Issue 11: partitions past the 32nd were ignored silently; now the scan says so. */
TEST(part_scan_disk_refuses_more_than_max)
{
	struct part parts[PART_MAX + 1];
	char path[64];

	snprintf(path, sizeof(path), "/tmp/cvminit-gpt-%d.img", (int)getpid());

	gpt_file(path, PART_MAX + 1);
	CHECK_INT(part_scan_disk(path, "nvme0n1", parts, PART_MAX), -E2BIG);
	CHECK_INT(part_scan_disk(path, "nvme0n1", parts, PART_MAX + 1), PART_MAX + 1);
	CHECK_STR(parts[PART_MAX].dev, "/dev/nvme0n1p33");
	CHECK(strstr(PART_TOO_MANY, "more than 32 GPT partitions") != NULL);
	unlink(path);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), ".out");
	unlink(path);
}
