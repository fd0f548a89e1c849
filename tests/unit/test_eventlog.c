/* The CEL-JSON event log: records written under flock() read back equal, the exact bytes
 * of a record, and malformed or truncated logs reported with the byte offset of the bad
 * record. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../measured-boot/eventlog.h"
#include "harness.h"

static char dir[64], path[128];

static void tmp_log(void)
{
	snprintf(dir, sizeof(dir), "/tmp/cvminit-eventlog.XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	/* A directory that does not exist yet: eventlog_open creates it. */
	snprintf(path, sizeof(path), "%s/run/log/cvminit/measure.log", dir);
}

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

static struct eventlog_record make(unsigned i)
{
	static char names[8][32];
	struct eventlog_record r = {.pcr = 11 + (i % 5),
				    .rtmr = i == 3 ? 2 : -1,
				    .extended = i != 2,
				    .n_digests = 2};

	snprintf(names[i % 8], sizeof(names[0]), "cvminit:event/%u \"q\"", i);
	r.event = names[i % 8];
	r.event_type = i % 2 ? NULL : (char *)"phase";
	r.digests[0] = (struct digest){.alg = DIGEST_ALG_SHA256, .size = 32};
	r.digests[1] = (struct digest){.alg = DIGEST_ALG_SHA384, .size = 48};
	digest_compute(DIGEST_ALG_SHA256, r.event, strlen(r.event), r.digests[0].buf);
	digest_compute(DIGEST_ALG_SHA384, r.event, strlen(r.event), r.digests[1].buf);
	return r;
}

static size_t slurp(char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	CHECK(fd >= 0);
	n = read(fd, buf, cap);
	CHECK(n >= 0);
	close(fd);
	return (size_t)n;
}

TEST(eventlog_round_trip)
{
	struct eventlog log;
	size_t bad = 99;
	int fd;

	tmp_log();
	atexit(cleanup);
	fd = eventlog_open(path);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	CHECK(fcntl(fd, F_GETFL) & O_APPEND);
	for (unsigned i = 0; i < 6; i++) {
		struct eventlog_record r = make(i);
		CHECK_INT(eventlog_append(fd, &r), 0);
		CHECK_INT(r.recnum, i);
	}
	close(fd);

	CHECK_INT(eventlog_read(path, &log, &bad), 6);
	CHECK_INT(bad, 0);
	for (unsigned i = 0; i < 6; i++) {
		struct eventlog_record w = make(i), *g = &log.records[i];

		CHECK_INT(g->recnum, i);
		CHECK_INT(g->pcr, w.pcr);
		CHECK_INT(g->rtmr, w.rtmr);
		CHECK_INT(g->extended, w.extended);
		CHECK_STR(g->event, w.event);
		if (w.event_type)
			CHECK_STR(g->event_type, w.event_type);
		else
			CHECK(g->event_type == NULL);
		CHECK_INT(g->n_digests, 2);
		for (unsigned k = 0; k < 2; k++) {
			CHECK_INT(g->digests[k].alg, w.digests[k].alg);
			CHECK_INT(g->digests[k].size, w.digests[k].size);
			CHECK(memcmp(g->digests[k].buf, w.digests[k].buf,
				     w.digests[k].size) == 0);
		}
		if (i > 0)
			CHECK(g->offset > log.records[i - 1].offset);
	}
	eventlog_free(&log);

	/* A second writer (a reopened fd) continues the numbering. */
	fd = eventlog_open(path);
	struct eventlog_record r = make(7);
	CHECK_INT(eventlog_append(fd, &r), 0);
	CHECK_INT(r.recnum, 6);
	close(fd);
}

TEST(eventlog_record_bytes)
{
	struct eventlog_record r = {.pcr = 11,
				    .rtmr = -1,
				    .event = (char *)"enter-initrd",
				    .event_type = (char *)"phase",
				    .extended = true,
				    .n_digests = 1};
	char buf[1024];
	size_t n;
	int fd;

	tmp_log();
	atexit(cleanup);
	r.digests[0] = (struct digest){.alg = DIGEST_ALG_SHA256, .size = 32};
	digest_compute(DIGEST_ALG_SHA256, "enter-initrd", 12, r.digests[0].buf);
	fd = eventlog_open(path);
	CHECK_INT(eventlog_append(fd, &r), 0);
	close(fd);
	n = slurp(buf, sizeof(buf) - 1);
	buf[n] = '\0';
	/* sha256("enter-initrd") from Python's hashlib. The field names are systemd's. */
	CHECK_STR(buf,
		  "\x1e{\"recnum\":0,\"pcr\":11,\"digests\":[{\"hashAlg\":\"sha256\","
		  "\"digest\":"
		  "\""
		  "51e6b92f405d1f98d96e3de343d61d420ad6923b25de21d766f9298192f14fed"
		  "\"}],"
		  "\"content_type\":\"systemd\",\"content\":{\"string\":\"enter-initrd\","
		  "\"eventType\":\"phase\",\"extended\":true}}\n");
}

static const char good[] =
	"\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":"
	"\"51e6b92f405d1f98d96e3de343d61d420ad6923b25de21d766f9298192f14fed\"}],"
	"\"content_type\":\"systemd\",\"content\":{\"string\":\"x\"}}\n";

/* Parses good followed by tail; expects -EBADMSG at the offset of tail, one good record.
 */
static void expect_bad(const char *tail, size_t tail_len)
{
	char buf[1024];
	struct eventlog log;
	size_t bad = 0, n = sizeof(good) - 1;

	memcpy(buf, good, n);
	memcpy(buf + n, tail, tail_len);
	CHECK_INT(eventlog_parse(buf, n + tail_len, &log, &bad), -EBADMSG);
	CHECK_INT(bad, n);
	CHECK_INT(log.n, 1);
	/* systemd's own records have no "extended": they count as extended. */
	CHECK(log.records[0].extended);
	CHECK_STR(log.records[0].event, "x");
	eventlog_free(&log);
}

/* The length of a literal, embedded NULs included. */
#define BAD(lit) expect_bad(lit, sizeof(lit) - 1)

TEST(eventlog_bad_records_report_offset)
{
	/* A record cut off mid-write. */
	expect_bad(good, sizeof(good) / 2);
	/* Garbage after a separator. */
	BAD("\x1egarbage\n");
	/* Two separators in a row: an empty record. */
	BAD("\x1e\x1e");
	/* Valid JSON, wrong shapes. */
	BAD("\x1e[1,2]\n");
	BAD("\x1e{\"pcr\":24,\"digests\":[]}\n");
	BAD("\x1e{\"pcr\":\"15\",\"digests\":[]}\n");
	BAD("\x1e{\"pcr\":1,\"digests\":[]}\n");
	BAD("\x1e{\"pcr\":1,\"digests\":[{\"hashAlg\":\"sha256\",\"digest\":\"abcd\"}]}"
	    "\n");
	BAD("\x1e{\"pcr\":1,\"digests\":[{\"hashAlg\":\"sha1\"}]}\n");
	BAD("\x1e{\"pcr\":1} {}\n");
	BAD("\x1e{\"pcr\":1,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":"
	    "\"a9993e364706816aba3e25717850c26c9cd0d89d\"}],\"content_type\":\"systemd\","
	    "\"content\":{\"extended\":1}}\n");
	/* A NUL byte inside a record. */
	BAD("\x1e{\"pcr\":1\0}\n");
}

TEST(eventlog_parse_edge_cases)
{
	struct eventlog log;
	size_t bad = 7;

	/* Garbage with no separator of its own belongs to the record before it. */
	char buf[512];
	memcpy(buf, good, sizeof(good) - 1);
	memcpy(buf + sizeof(good) - 1, "garbage", 7);
	CHECK_INT(eventlog_parse(buf, sizeof(good) - 1 + 7, &log, &bad), -EBADMSG);
	CHECK_INT(bad, 0);
	CHECK_INT(log.n, 0);
	eventlog_free(&log);
	/* A log that does not start with a separator. */
	CHECK_INT(eventlog_parse("{}\n", 3, &log, &bad), -EBADMSG);
	CHECK_INT(bad, 0);
	eventlog_free(&log);
	/* Empty log. */
	CHECK_INT(eventlog_parse("", 0, &log, &bad), 0);
	CHECK_INT(log.n, 0);
	eventlog_free(&log);
	/* Unknown banks are skipped, other producers' content is accepted. */
	const char *s =
		"\x1e{\"pcr\":8,\"digests\":[{\"hashAlg\":\"sm3_256\",\"digest\":\"00\"},"
		"{\"hashAlg\":\"sha1\",\"digest\":"
		"\"a9993e364706816aba3e25717850c26c9cd0d89d\"}],"
		"\"content_type\":\"pcclient_std\",\"content\":{}}";
	CHECK_INT(eventlog_parse(s, strlen(s), &log, &bad), 1);
	CHECK_INT(log.records[0].n_digests, 1);
	CHECK_INT(log.records[0].digests[0].alg, DIGEST_ALG_SHA1);
	CHECK(log.records[0].event == NULL);
	eventlog_free(&log);
	/* A missing file is an error, not a crash. */
	CHECK_INT(eventlog_read("/nonexistent/measure.log", &log, &bad), -ENOENT);
}

TEST(eventlog_refuses_bad_input)
{
	struct eventlog_record r = make(0);
	int fd;

	tmp_log();
	atexit(cleanup);
	fd = eventlog_open(path);
	r.pcr = 24;
	CHECK_INT(eventlog_append(fd, &r), -EINVAL);
	r = make(0);
	r.digests[0].size = 20;
	CHECK_INT(eventlog_append(fd, &r), -EINVAL);
	r = make(0);
	r.n_digests = 0;
	CHECK_INT(eventlog_append(fd, &r), -EINVAL);
	close(fd);
	struct stat st;
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_size, 0);
}

/* Each record carries what was measured: text as "data", other bytes as "dataHex", the
 * config's path as "name"; the reader gets the same bytes back and the digests check. */
TEST(eventlog_content_round_trip_and_check)
{
	static const uint8_t bin[] = {0x00, 0xff, 'a', 0xc3};
	static const char text[] = "roothash=ab console=ttyS0,115200 \"q\" \xc3\xa9\t";
	struct eventlog_record w[3] = {{.pcr = 15, .rtmr = -1, .extended = true},
				       {.pcr = 15, .rtmr = -1, .extended = true},
				       {.pcr = 15, .rtmr = -1, .extended = true}};
	const void *data[3] = {text, bin, ""};
	size_t len[3] = {sizeof(text) - 1, sizeof(bin), 0};
	struct eventlog log;
	char why[160], buf[4096];
	size_t bad, n;
	int fd;

	tmp_log();
	atexit(cleanup);
	fd = eventlog_open(path);
	CHECK(fd >= 0);
	for (unsigned i = 0; i < 3; i++) {
		w[i].event = (char *)(i == 0 ? "cvminit:cmdline" : "cvminit:config");
		w[i].name = i ? (char *)"/etc/cvminit/cvminit.conf" : NULL;
		w[i].data = (uint8_t *)data[i];
		w[i].data_len = len[i];
		w[i].has_data = true;
		w[i].n_digests = 2;
		w[i].digests[0] = (struct digest){.alg = DIGEST_ALG_SHA256, .size = 32};
		w[i].digests[1] = (struct digest){.alg = DIGEST_ALG_SHA384, .size = 48};
		digest_compute(DIGEST_ALG_SHA256, data[i], len[i], w[i].digests[0].buf);
		digest_compute(DIGEST_ALG_SHA384, data[i], len[i], w[i].digests[1].buf);
		CHECK_INT(eventlog_append(fd, &w[i]), 0);
	}
	close(fd);
	n = slurp(buf, sizeof(buf) - 1);
	buf[n] = '\0';
	/* Text stays readable; the binary record is hex. */
	CHECK_CONTAINS(
		buf,
		"\"data\":\"roothash=ab console=ttyS0,115200 \\\"q\\\" \xc3\xa9\\t\"");
	CHECK_CONTAINS(buf, "\"dataHex\":\"00ff61c3\"");
	CHECK_CONTAINS(buf, "\"name\":\"/etc/cvminit/cvminit.conf\"");
	CHECK_INT(eventlog_read(path, &log, &bad), 3);
	for (unsigned i = 0; i < 3; i++) {
		CHECK(log.records[i].has_data);
		CHECK_INT(log.records[i].data_len, len[i]);
		CHECK(len[i] == 0 || memcmp(log.records[i].data, data[i], len[i]) == 0);
		CHECK_INT(eventlog_check_content(&log.records[i], why, sizeof(why)), 0);
	}
	CHECK_STR(log.records[1].name, "/etc/cvminit/cvminit.conf");
	CHECK(log.records[0].name == NULL);

	/* One byte of content changed: the digests no longer match, and it says which. */
	log.records[0].data[0] ^= 1;
	CHECK_INT(eventlog_check_content(&log.records[0], why, sizeof(why)), 1);
	CHECK_CONTAINS(why, "sha256 digest is not the digest of its content");
	/* A record without data: systemd's rule, the string is what was hashed. */
	free(log.records[1].data);
	log.records[1].data = NULL;
	log.records[1].has_data = false;
	CHECK_INT(eventlog_check_content(&log.records[1], why, sizeof(why)), 1);
	/* A volume-key HMAC cannot be checked; a record without any content neither. */
	log.records[2].event_type = strdup("volume-key");
	CHECK_INT(eventlog_check_content(&log.records[2], why, sizeof(why)), -ENOKEY);
	free(log.records[2].event_type);
	log.records[2].event_type = NULL;
	free(log.records[2].event);
	log.records[2].event = NULL;
	log.records[2].has_data = false;
	CHECK_INT(eventlog_check_content(&log.records[2], why, sizeof(why)), -ENODATA);
	eventlog_free(&log);
}

/* The reader refuses malformed content fields with the record's offset. */
TEST(eventlog_content_malformed)
{
	static const char *const bad_content[] = {
		"\"data\":1",
		"\"dataHex\":\"0\"",
		"\"dataHex\":\"zz\"",
		"\"dataHex\":[]",
		"\"data\":\"a\",\"dataHex\":\"61\"",
		"\"name\":\"x\",\"data\":null",
	};
	struct eventlog log;
	char buf[512];
	size_t bad;

	for (size_t i = 0; i < sizeof(bad_content) / sizeof(bad_content[0]); i++) {
		int n = snprintf(
			buf, sizeof(buf),
			"\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":"
			"\"a9993e364706816aba3e25717850c26c9cd0d89d\"}],"
			"\"content_type\":\"systemd\",\"content\":{\"string\":\"e\",%s}}\n"
			"\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":"
			"\"a9993e364706816aba3e25717850c26c9cd0d89d\"}],"
			"\"content_type\":\"systemd\",\"content\":{\"string\":\"e\",%s}}\n",
			"\"data\":\"abc\"", bad_content[i]);
		bad = 0;
		CHECK_INT(eventlog_parse(buf, (size_t)n, &log, &bad), -EBADMSG);
		CHECK_INT(log.n, 1);
		CHECK(bad > 0);
		/* "abc" is the data the sha1 digest is of. */
		CHECK_INT(eventlog_check_content(&log.records[0], buf, sizeof(buf)), 0);
		eventlog_free(&log);
	}
	/* dataHex "" is zero bytes of content, not an error. */
	const char *empty =
		"\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":"
		"\"da39a3ee5e6b4b0d3255bfef95601890afd80709\"}],"
		"\"content_type\":\"systemd\",\"content\":{\"string\":\"e\","
		"\"dataHex\":\"\"}}\n";
	CHECK_INT(eventlog_parse(empty, strlen(empty), &log, &bad), 1);
	CHECK_INT(log.records[0].data_len, 0);
	CHECK_INT(eventlog_check_content(&log.records[0], buf, sizeof(buf)), 0);
	eventlog_free(&log);
}
