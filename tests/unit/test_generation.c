/* The node's generation counter (measured-boot/generation.c): the file's parser, the
 * next-value rule in each case, the durable store and bump in a directory, the record. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/file.h"
#include "../../measured-boot/generation.h"
#include "harness.h"

#define BOOT "6c1b5d7e-2f0a-4c8e-9d3b-1a2b3c4d5e6f"

TEST(generation_file_parses_one_number_and_a_newline)
{
	uint64_t g = 99;

	CHECK_INT(generation_parse_file("1\n", 2, &g), 0);
	CHECK_INT((int)g, 1);
	CHECK_INT(generation_parse_file("0\n", 2, &g), 0);
	CHECK_INT((int)g, 0);
	CHECK_INT(generation_parse_file("4711\n", 5, &g), 0);
	CHECK_INT((int)g, 4711);
	CHECK_INT(generation_parse_file("999999999999999999\n", 19, &g), 0);
	CHECK(g == GENERATION_MAX);
	CHECK_INT(generation_parse_file("1000000000000000000\n", 20, &g), -EBADMSG);
	CHECK_INT(generation_parse_file("", 0, &g), -EBADMSG);
	CHECK_INT(generation_parse_file("\n", 1, &g), -EBADMSG);
	CHECK_INT(generation_parse_file("7", 1, &g), -EBADMSG);	   /* no newline */
	CHECK_INT(generation_parse_file("07\n", 3, &g), -EBADMSG); /* leading zero */
	CHECK_INT(generation_parse_file("-1\n", 3, &g), -EBADMSG);
	CHECK_INT(generation_parse_file(" 7\n", 3, &g), -EBADMSG);
	CHECK_INT(generation_parse_file("7\n\n", 3, &g), -EBADMSG);
	CHECK_INT(generation_parse_file("7 \n", 3, &g), -EBADMSG);
	CHECK_INT(generation_parse_file("7\0\n", 3, &g), -EBADMSG);
}

TEST(generation_next_in_each_case)
{
	char why[160];

	CHECK_INT((int)generation_next(2, "5\n", false, why, sizeof(why)), 6);
	CHECK_STR(why, "");
	CHECK_INT((int)generation_next(2, "5\n", true, why, sizeof(why)), 6);
	CHECK_INT((int)generation_next(2, "0\n", false, why, sizeof(why)), 1);
	CHECK_INT((int)generation_next(-ENOENT, NULL, true, why, sizeof(why)), 1);
	CHECK_STR(why, "");
	/* Absent on an initialized volume: lost, never a reset to 1. */
	CHECK_INT((int)generation_next(-ENOENT, NULL, false, why, sizeof(why)), 0);
	CHECK_CONTAINS(why, "missing on a state volume made by an earlier boot");
	CHECK_INT((int)generation_next(3, "x1\n", true, why, sizeof(why)), 0);
	CHECK_CONTAINS(why, "malformed");
	CHECK_INT((int)generation_next(-EIO, NULL, true, why, sizeof(why)), 0);
	CHECK_CONTAINS(why, "cannot be read");
	CHECK_INT(
		(int)generation_next(19, "999999999999999999\n", false, why, sizeof(why)),
		0);
	CHECK_CONTAINS(why, "maximum");
}

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/gen-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
}

static void put(const char *text)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, GENERATION_FILE);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_INT(write_full(fd, text, strlen(text)), 0);
	close(fd);
}

static const char *got(void)
{
	static char buf[64];
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, GENERATION_FILE);
	if (read_file_text(path, buf, sizeof(buf)) < 0)
		return "(none)";
	return buf;
}

TEST(generation_bump_stores_before_returning)
{
	char why[160], tmp[128];
	uint64_t g = 99;

	mkdir_tmp();
	/* A fresh volume: 1, then 2, 3. */
	CHECK_INT(generation_bump(dir, true, &g, why, sizeof(why)), 0);
	CHECK_INT((int)g, 1);
	CHECK_STR(got(), "1\n");
	CHECK_INT(generation_bump(dir, false, &g, why, sizeof(why)), 0);
	CHECK_INT((int)g, 2);
	CHECK_STR(got(), "2\n");
	/* No temporary file left behind. */
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, GENERATION_FILE);
	CHECK(access(tmp, F_OK) < 0);
	/* Malformed on an existing volume: 0 measured and stored, so the next boot is 1
	 * (and the service, which saw more, refuses both until the operator re-enrols). */
	put("2x\n");
	CHECK_INT(generation_bump(dir, false, &g, why, sizeof(why)), 0);
	CHECK_INT((int)g, 0);
	CHECK_CONTAINS(why, "malformed");
	CHECK_STR(got(), "0\n");
	CHECK_INT(generation_bump(dir, false, &g, why, sizeof(why)), 0);
	CHECK_INT((int)g, 1);
	/* Too long to be a counter: malformed, not unreadable. */
	put("11111111111111111111111111111111111111111111111111111111111111111111111\n");
	CHECK_INT(generation_bump(dir, false, &g, why, sizeof(why)), 0);
	CHECK_INT((int)g, 0);
	CHECK_CONTAINS(why, "malformed");
	/* Missing on an existing volume: 0. */
	snprintf(tmp, sizeof(tmp), "%s/%s", dir, GENERATION_FILE);
	CHECK_INT(unlink(tmp), 0);
	CHECK_INT(generation_bump(dir, false, &g, why, sizeof(why)), 0);
	CHECK_INT((int)g, 0);
	/* A directory that is not there: the error, nothing to measure. */
	CHECK_INT(generation_bump("/nonexistent/dir", true, &g, why, sizeof(why)),
		  -ENOENT);
	unlink(tmp);
	rmdir(dir);
}

TEST(generation_record_content_round_trips)
{
	char out[GENERATION_CONTENT_MAX], boot[GENERATION_BOOT_LEN + 1];
	uint64_t g = 0;
	int n;

	n = generation_content(42, BOOT, out, sizeof(out));
	CHECK_INT(n, (int)strlen("generation=42 boot_id=" BOOT));
	CHECK_STR(out, "generation=42 boot_id=" BOOT);
	CHECK_INT(generation_content_parse((const uint8_t *)out, (size_t)n, &g, boot), 0);
	CHECK_INT((int)g, 42);
	CHECK_STR(boot, BOOT);
	n = generation_content(GENERATION_MAX, BOOT, out, sizeof(out));
	CHECK(n > 0);
	CHECK_INT(generation_content_parse((const uint8_t *)out, (size_t)n, &g, boot), 0);
	CHECK(g == GENERATION_MAX);
	CHECK_INT(generation_content(1, "short", out, sizeof(out)), -EINVAL);
	CHECK_INT(generation_content(GENERATION_MAX + 1, BOOT, out, sizeof(out)),
		  -EINVAL);
}

TEST(generation_record_parser_refuses_anything_else)
{
	static const char *const bad[] = {
		"",
		"generation=",
		"generation=1",
		"generation=1 boot_id=",
		"generation=01 boot_id=" BOOT,
		"generation=-1 boot_id=" BOOT,
		"generation=1  boot_id=" BOOT,
		"generation=1 boot_id=" BOOT " ",
		"generation=1 boot_id=6C1B5D7E-2F0A-4C8E-9D3B-1A2B3C4D5E6F",
		"generation=1 boot_id=6c1b5d7e-2f0a-4c8e-9d3b_1a2b3c4d5e6f",
		"generation=1 boot_id=6c1b5d7e-2f0a-4c8e-9d3b-1a2b3c4d5e6",
		"generation=1000000000000000000 boot_id=" BOOT,
		"Generation=1 boot_id=" BOOT,
		"generation=1 bootid=" BOOT,
	};
	char boot[GENERATION_BOOT_LEN + 1];
	uint64_t g;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_INT(generation_content_parse((const uint8_t *)bad[i],
						   strlen(bad[i]), &g, boot),
			  -EBADMSG);
	/* The good one, so the list above is not refused for a reason they all share. */
	CHECK_INT(generation_content_parse((const uint8_t *)"generation=1 boot_id=" BOOT,
					   strlen("generation=1 boot_id=" BOOT), &g,
					   boot),
		  0);
}
