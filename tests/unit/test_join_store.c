/* cvm-join's freshness store (measured-boot/join-store.c): every rule of join_decide, the
 * node file's format and parser, the store and enrolment in a directory, and what
 * attest_peer_records takes from a verified log. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/digest.h"
#include "../../lib/file.h"
#include "../../measured-boot/attest-cmd.h"
#include "../../measured-boot/eventlog.h"
#include "../../measured-boot/join-store.h"
#include "harness.h"

#define BOOT_A "6c1b5d7e-2f0a-4c8e-9d3b-1a2b3c4d5e6f"
#define BOOT_B "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
#define ID     "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

static struct join_node node(uint64_t g, const char *boot, uint8_t key)
{
	struct join_node n = {.generation = g};

	snprintf(n.boot_id, sizeof(n.boot_id), "%s", boot);
	memset(n.volume_key, key, sizeof(n.volume_key));
	return n;
}

TEST(join_decide_every_rule)
{
	struct join_node st = node(5, BOOT_A, 0x11), seen;
	char why[256];

	seen = node(6, BOOT_B, 0x11);
	CHECK_INT(join_decide(&st, false, false, &seen, why, sizeof(why)),
		  JOIN_ACCEPT_NEWER);
	CHECK_STR(why, "fresh (generation 6, last seen 5)");
	seen = node(5, BOOT_A, 0x11);
	CHECK_INT(join_decide(&st, false, false, &seen, why, sizeof(why)),
		  JOIN_ACCEPT_RETRY);
	CHECK_CONTAINS(why, "a retry of the same boot");
	/* The same generation from another boot: the disk was put back. */
	seen = node(5, BOOT_B, 0x11);
	CHECK_INT(join_decide(&st, false, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_ROLLBACK);
	CHECK_STR(why, "REFUSED: rolled back (generation 5, last seen 5)");
	seen = node(3, BOOT_B, 0x11);
	CHECK_INT(join_decide(&st, false, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_ROLLBACK);
	CHECK_STR(why, "REFUSED: rolled back (generation 3, last seen 5)");
	/* Another volume key, whatever the generation. */
	seen = node(9, BOOT_B, 0x22);
	CHECK_INT(join_decide(&st, false, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_SWAPPED);
	CHECK_CONTAINS(why, "REFUSED: swapped state volume");
	seen = node(0, BOOT_B, 0x11);
	CHECK_INT(join_decide(&st, false, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_LOST);
	CHECK_CONTAINS(why, "REFUSED: generation counter lost");
	/* Unknown: generation 1 only. */
	seen = node(1, BOOT_B, 0x33);
	CHECK_INT(join_decide(NULL, false, false, &seen, why, sizeof(why)),
		  JOIN_ACCEPT_NEW);
	CHECK_CONTAINS(why, "ENROLLED");
	seen = node(2, BOOT_B, 0x33);
	CHECK_INT(join_decide(NULL, false, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_UNKNOWN);
	CHECK_CONTAINS(why, "REFUSED: unknown node at generation 2");
	seen = node(0, BOOT_B, 0x33);
	CHECK_INT(join_decide(NULL, false, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_UNKNOWN);
	/* A corrupt record is refused, never taken for an unknown node. */
	seen = node(1, BOOT_B, 0x11);
	CHECK_INT(join_decide(NULL, true, false, &seen, why, sizeof(why)),
		  JOIN_REFUSE_CORRUPT);
	CHECK_CONTAINS(why, "REFUSED: the join service's record of this node is corrupt");
	/* The operator's enrolment: any key and generation, over every refusal. */
	seen = node(0, BOOT_B, 0x22);
	CHECK_INT(join_decide(&st, false, true, &seen, why, sizeof(why)),
		  JOIN_ACCEPT_ENROLLED);
	CHECK_INT(join_decide(NULL, true, true, &seen, why, sizeof(why)),
		  JOIN_ACCEPT_ENROLLED);
	CHECK_CONTAINS(why, "ENROLLED by the operator");
	for (int v = JOIN_ACCEPT_NEWER; v <= JOIN_REFUSE_CORRUPT; v++)
		CHECK(join_verdict_accepts(v) == (v <= JOIN_ACCEPT_ENROLLED));
}

TEST(join_store_file_round_trips_and_refuses_the_rest)
{
	struct join_node a = node(42, BOOT_A, 0xab), b;
	char text[512], bad[600];
	int n = join_store_format(&a, text, sizeof(text));

	CHECK(n > 0);
	CHECK_INT(join_store_parse(text, (size_t)n, &b), 0);
	CHECK(b.generation == 42);
	CHECK_STR(b.boot_id, BOOT_A);
	CHECK(memcmp(a.volume_key, b.volume_key, 32) == 0);
	/* Every truncation, and every byte changed to one outside the format. */
	for (int i = 0; i < n; i++)
		CHECK_INT(join_store_parse(text, (size_t)i, &b), -EBADMSG);
	for (int i = 0; i < n; i++) {
		memcpy(bad, text, (size_t)n);
		bad[i] = bad[i] == '\n' ? 'x' : (bad[i] == ' ' ? '\n' : '\x01');
		CHECK_INT(join_store_parse(bad, (size_t)n, &b), -EBADMSG);
	}
	/* A NUL inside a value (found by the fuzz target): not the value before it. */
	{
		static const char nul[] =
			"cvm-join node v1\ngeneration 8\0\0\05\nboot_id " BOOT_A
			"\nvolume_key "
			"abababababababababababababababababababababababababababababababab\n";

		CHECK_INT(join_store_parse(nul, sizeof(nul) - 1, &b), -EBADMSG);
	}
	memcpy(bad, text, (size_t)n);
	bad[n] = '\n';
	CHECK_INT(join_store_parse(bad, (size_t)n + 1, &b), -EBADMSG);
	CHECK(join_node_id_valid(ID));
	CHECK(!join_node_id_valid("../" ID));
	CHECK(!join_node_id_valid(
		"A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90"));
	CHECK(!join_node_id_valid(ID "0"));
}

TEST(join_store_in_a_directory)
{
	struct join_node a = node(7, BOOT_A, 0x5a), b;
	char dir[] = "/tmp/join-store-XXXXXX", path[128], tmp[128];
	int fd;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(join_store_load(dir, ID, &b), -ENOENT);
	CHECK_INT(join_store_save(dir, ID, &a), 0);
	CHECK_INT(join_store_load(dir, ID, &b), 0);
	CHECK(b.generation == 7);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, ID);
	CHECK(access(tmp, F_OK) < 0);
	CHECK_INT(join_store_save(dir, "../x", &a), -EINVAL);
	/* A corrupt file: -EBADMSG (refused by the rules above), left as it is. */
	snprintf(path, sizeof(path), "%s/%s", dir, ID);
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK_INT(write_full(fd, "cvm-join node v1\ngeneration 7\n", 30), 0);
	close(fd);
	CHECK_INT(join_store_load(dir, ID, &b), -EBADMSG);
	/* Enrolment: armed, seen, cleared. */
	CHECK(!join_enrol_pending(dir, ID));
	CHECK_INT(join_enrol_arm(dir, ID), 0);
	CHECK(join_enrol_pending(dir, ID));
	CHECK_INT(join_enrol_clear(dir, ID), 0);
	CHECK(!join_enrol_pending(dir, ID));
	CHECK_INT(join_enrol_arm(dir, "nothex"), -EINVAL);
	unlink(path);
	CHECK_INT(rmdir(dir), 0);
}

/* A PCR 15 record with a sha256 digest of data (or, for the volume key, of nothing). */
static void rec(struct eventlog_record *r, unsigned pcr, const char *event,
		const char *type, const char *data, bool extended)
{
	memset(r, 0, sizeof(*r));
	r->pcr = pcr;
	r->rtmr = -1;
	r->event = (char *)event;
	r->event_type = (char *)type;
	r->extended = extended;
	r->n_digests = 1;
	r->digests[0].alg = DIGEST_ALG_SHA256;
	r->digests[0].size = 32;
	digest_compute(DIGEST_ALG_SHA256, data ? data : event,
		       strlen(data ? data : event), r->digests[0].buf);
	if (data) {
		r->data = (uint8_t *)data;
		r->data_len = strlen(data);
		r->has_data = true;
	}
}

TEST(attest_peer_takes_one_of_each_record)
{
	struct eventlog_record r[6];
	struct eventlog log = {r, 0};
	struct attest_peer p;
	static const char gen[] = "generation=3 boot_id=" BOOT_A;

	rec(&r[0], 15, "cvminit:cmdline", NULL, "console=ttyS0", true);
	rec(&r[1], 15, "cvminit:volume-key:u", "volume-key", NULL, true);
	rec(&r[2], 15, GENERATION_EVENT, NULL, gen, true);
	log.n = 3;
	attest_peer_records(&log, 0, &p);
	CHECK(p.has_volume_key && p.has_generation);
	CHECK(p.generation == 3);
	CHECK_STR(p.boot_id, BOOT_A);
	CHECK(memcmp(p.volume_key, r[1].digests[0].buf, 32) == 0);
	/* Records before first (the firmware's) do not count. */
	attest_peer_records(&log, 2, &p);
	CHECK(!p.has_volume_key);
	CHECK_CONTAINS(p.why, "0 cvminit:volume-key records");
	/* A second generation record: neither is taken. */
	rec(&r[3], 15, GENERATION_EVENT, NULL, "generation=9 boot_id=" BOOT_B, true);
	log.n = 4;
	attest_peer_records(&log, 0, &p);
	CHECK(!p.has_generation);
	CHECK_CONTAINS(p.why, "2 cvminit:generation records");
	/* One in another PCR, or not extended: not in PCR 15, not counted. */
	rec(&r[3], 14, GENERATION_EVENT, NULL, "generation=9 boot_id=" BOOT_B, true);
	rec(&r[4], 15, GENERATION_EVENT, NULL, "generation=9 boot_id=" BOOT_B, false);
	log.n = 5;
	attest_peer_records(&log, 0, &p);
	CHECK(p.has_generation);
	CHECK(p.generation == 3);
	/* A malformed content. */
	rec(&r[2], 15, GENERATION_EVENT, NULL, "generation=3", true);
	log.n = 3;
	attest_peer_records(&log, 0, &p);
	CHECK(!p.has_generation);
	CHECK_CONTAINS(p.why, "malformed");
	/* Two volume-key records. */
	rec(&r[2], 15, "cvminit:volume-key:v", "volume-key", NULL, true);
	attest_peer_records(&log, 0, &p);
	CHECK(!p.has_volume_key);
	CHECK_CONTAINS(p.why, "2 cvminit:volume-key records");
}
