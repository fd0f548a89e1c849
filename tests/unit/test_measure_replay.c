/* Replay of an event log into PCR values, and locating the first record that a set of PCR
 * values does not reflect. */
#include <errno.h>

#include "../../lib/hex.h"
#include "../../measured-boot/eventlog.h"
#include "../../measured-boot/replay.h"
#include "harness.h"

static struct eventlog_record rec(unsigned pcr, const char *data, bool extended)
{
	struct eventlog_record r = {
		.pcr = pcr, .rtmr = -1, .extended = extended, .n_digests = 2};

	r.digests[0] = (struct digest){.alg = DIGEST_ALG_SHA256, .size = 32};
	r.digests[1] = (struct digest){.alg = DIGEST_ALG_SHA384, .size = 48};
	digest_compute(DIGEST_ALG_SHA256, data, strlen(data), r.digests[0].buf);
	digest_compute(DIGEST_ALG_SHA384, data, strlen(data), r.digests[1].buf);
	return r;
}

/* 0: PCR 11 a; 1: PCR 15 b; 2: PCR 15 c (not extended); 3: PCR 15 d; 4: PCR 11 e. */
static struct eventlog_record recs[5];
static struct eventlog log_ = {recs, 5};

static void make_log(void)
{
	recs[0] = rec(11, "a", true);
	recs[1] = rec(15, "b", true);
	recs[2] = rec(15, "c", false);
	recs[3] = rec(15, "d", true);
	recs[4] = rec(11, "e", true);
}

static void hex_of(const uint8_t *d, size_t n, char *out)
{
	hex_encode(d, n, out);
}

TEST(replay_known_values)
{
	struct replay_pcrs p;
	char hex[2 * DIGEST_MAX + 1];

	make_log();
	CHECK_INT(replay_log(&log_, DIGEST_ALG_SHA256, &p), 32);
	/* Python's hashlib: z = bytes(32); H = sha256
	 * p11 = H(H(z + H(b"a")) + H(b"e")); p15 = H(H(z + H(b"b")) + H(b"d")). */
	hex_of(p.v[11], 32, hex);
	CHECK_STR(hex,
		  "fca4d06949734d2cfefea9f723cf96b12d40e12003d37884a3035d41fd7aaded");
	hex_of(p.v[15], 32, hex);
	CHECK_STR(hex,
		  "61787cda1f0cb1cecfb211ead286b8133b7f9ca7a5f672eb0cbad719dbeb497c");
	/* Untouched PCRs keep their reset values. */
	hex_of(p.v[16], 4, hex);
	CHECK_STR(hex, "00000000");
	hex_of(p.v[17], 4, hex);
	CHECK_STR(hex, "ffffffff");
	CHECK_INT(replay_log(&log_, 0x0012, &p), -EOPNOTSUPP);
	CHECK_INT(replay_log(&log_, DIGEST_ALG_SHA1, &p), -ENODATA);
}

TEST(replay_verify_divergence)
{
	struct replay_pcrs full, actual;
	struct replay_divergence d = {.pcr = 99, .record = 99};
	const uint32_t mask = (1u << 11) | (1u << 15) | (1u << 16);

	make_log();
	CHECK_INT(replay_log(&log_, DIGEST_ALG_SHA384, &full), 48);

	/* The TPM holds exactly what the log says. */
	actual = full;
	CHECK_INT(replay_verify(&log_, &actual, mask, &d), 0);

	/* PCR 15 only saw record 1: record 3 is the first it does not reflect (2 never
	 * reached it and does not count). */
	struct eventlog prefix = {recs, 2};
	CHECK_INT(replay_log(&prefix, DIGEST_ALG_SHA384, &actual), 48);
	memcpy(actual.v[11], full.v[11], 48);
	CHECK_INT(replay_verify(&log_, &actual, mask, &d), 1);
	CHECK_INT(d.pcr, 15);
	CHECK_INT(d.record, 3);
	CHECK(d.prefix_matched);
	CHECK_INT(d.n_records, 2); /* 1 and 3; 2 never reached the PCR */

	/* PCR 11 still at its reset value, PCR 15 unexplained: record 0 comes first. */
	memset(actual.v[11], 0, 48);
	actual.v[15][0] ^= 1;
	CHECK_INT(replay_verify(&log_, &actual, mask, &d), 1);
	CHECK_INT(d.pcr, 11);
	CHECK_INT(d.record, 0);

	/* Only PCR 15 asked about, matching no prefix: blame its first record. */
	CHECK_INT(replay_verify(&log_, &actual, 1u << 15, &d), 1);
	CHECK_INT(d.pcr, 15);
	CHECK_INT(d.record, 1);
	CHECK(!d.prefix_matched);

	/* A PCR extended by someone who did not log: no record to blame. */
	actual = full;
	actual.v[16][0] = 1;
	CHECK_INT(replay_verify(&log_, &actual, mask, &d), 1);
	CHECK_INT(d.pcr, 16);
	CHECK(d.record == SIZE_MAX);
	CHECK_INT(d.n_records, 0);
	/* Not asked about: no divergence. */
	CHECK_INT(replay_verify(&log_, &actual, mask & ~(1u << 16), &d), 0);
}

TEST(replay_skips_tdx_records)
{
	struct replay_pcrs p, q;

	make_log();
	CHECK_INT(replay_log(&log_, DIGEST_ALG_SHA384, &p), 48);
	recs[3].rtmr = 2;
	CHECK_INT(replay_log(&log_, DIGEST_ALG_SHA384, &q), 48);
	CHECK(memcmp(p.v[15], q.v[15], 48) != 0);
	CHECK(memcmp(p.v[11], q.v[11], 48) == 0);
}

TEST(replay_start_locality)
{
	struct replay_pcrs start, p, q;
	struct replay_divergence d;

	make_log();
	/* A TPM started from locality 3 resets PCR 0 to 00…03; nothing else changes. */
	CHECK_INT(replay_reset(&start, DIGEST_ALG_SHA256, 3), 32);
	CHECK_INT(start.v[0][31], 3);
	CHECK_INT(start.v[0][0], 0);
	CHECK_INT(start.v[17][0], 0xff);
	p = start;
	CHECK_INT(replay_apply(&log_, &p), 32);
	CHECK_INT(replay_log(&log_, DIGEST_ALG_SHA256, &q), 32);
	CHECK(memcmp(p.v[11], q.v[11], 32) == 0);
	CHECK(memcmp(p.v[0], q.v[0], 32) != 0);
	/* Verified from that start, PCR 0 matches; from the zero start it does not. */
	CHECK_INT(replay_verify_from(&log_, &start, &p, 1u << 0 | 1u << 11, &d), 0);
	CHECK_INT(replay_verify(&log_, &p, 1u << 0, &d), 1);
	CHECK_INT(d.pcr, 0);
	CHECK_INT(d.n_records, 0);
	/* The start must be in the bank compared. */
	CHECK_INT(replay_reset(&start, DIGEST_ALG_SHA384, 3), 48);
	CHECK_INT(replay_verify_from(&log_, &start, &p, 1u << 0, &d), -EINVAL);
}
