/* Service output: the kmsg rate limiter, line splitting (partial and long lines), the
 * rotated file names and their shift, and a zstd round trip of a rotated log. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "../../init/svclog.h"
#include "harness.h"

/* --- rate limiter -------------------------------------------------------------- */

TEST(svclog_rate_burst_then_steady)
{
	struct svclog_rate r;
	int passed = 0;

	svclog_rate_init(&r, 1000);
	for (int i = 0; i < 1000; i++)
		passed += svclog_rate_take(&r, 1000);
	CHECK_INT(passed, SVCLOG_BURST);
	CHECK_INT(r.dropped, 1000 - SVCLOG_BURST);

	/* One second later: SVCLOG_RATE more, no matter how many ask. */
	passed = 0;
	for (int i = 0; i < 1000; i++)
		passed += svclog_rate_take(&r, 2000);
	CHECK_INT(passed, SVCLOG_RATE);
}

TEST(svclog_rate_refill_is_fractional)
{
	struct svclog_rate r;

	svclog_rate_init(&r, 0);
	while (svclog_rate_take(&r, 0))
		;
	/* 50 lines/s is one per 20 ms: 19 ms is not enough, 20 ms is, in small steps too. */
	CHECK(!svclog_rate_take(&r, 19));
	CHECK(svclog_rate_take(&r, 20));
	for (int t = 21; t < 40; t++)
		CHECK(!svclog_rate_take(&r, (uint64_t)t));
	CHECK(svclog_rate_take(&r, 40));
}

TEST(svclog_rate_caps_at_burst)
{
	struct svclog_rate r;
	int passed = 0;

	svclog_rate_init(&r, 0);
	svclog_rate_take(&r, 0);
	/* A day of silence refills the bucket, not more (and does not overflow). */
	for (int i = 0; i < 1000; i++)
		passed += svclog_rate_take(&r, 86400000ULL);
	CHECK_INT(passed, SVCLOG_BURST);
}

TEST(svclog_rate_clock_does_not_go_back)
{
	struct svclog_rate r;

	svclog_rate_init(&r, 5000);
	while (svclog_rate_take(&r, 5000))
		;
	CHECK(!svclog_rate_take(&r, 1000)); /* an earlier time refills nothing */
}

/* --- line splitting -------------------------------------------------------------- */

static char got[64][SVCLOG_LINE_MAX + 1];
static size_t got_len[64];
static int ngot;

static void collect(void *ctx, const char *line, size_t len)
{
	(void)ctx;
	if (ngot < 64) {
		memcpy(got[ngot], line, len);
		got[ngot][len] = '\0';
		got_len[ngot++] = len;
	}
}

TEST(svclog_split_lines_and_partials)
{
	struct svclog_lines l = {.len = 0};

	svclog_split(&l, "one\ntw", 6, collect, NULL);
	CHECK_INT(ngot, 1);
	CHECK_STR(got[0], "one");
	svclog_split(&l, "o\n\nthr", 6, collect, NULL);
	CHECK_INT(ngot, 3);
	CHECK_STR(got[1], "two");
	CHECK_STR(got[2], "");
	svclog_split(&l, "ee", 2, collect, NULL);
	CHECK_INT(ngot, 3);
	svclog_split_flush(&l, collect, NULL);
	CHECK_INT(ngot, 4);
	CHECK_STR(got[3], "three");
	svclog_split_flush(&l, collect, NULL);
	CHECK_INT(ngot, 4);
}

TEST(svclog_split_long_line)
{
	static char data[SVCLOG_LINE_MAX * 2 + 100];
	struct svclog_lines l = {.len = 0};
	size_t n = sizeof(data) - 1;

	memset(data, 'x', sizeof(data));
	data[n - 1] = 'y';
	data[n] = '\n';
	/* Fed in odd pieces: the split does not depend on how reads fall. */
	for (size_t off = 0; off <= n;) {
		size_t k = off + 77 > n + 1 ? n + 1 - off : 77;
		svclog_split(&l, data + off, k, collect, NULL);
		off += k;
	}
	CHECK_INT(ngot, 3);
	CHECK_INT(got_len[0], SVCLOG_LINE_MAX);
	CHECK_INT(got_len[1], SVCLOG_LINE_MAX);
	CHECK_INT(got_len[2], n - 2 * SVCLOG_LINE_MAX);
	CHECK_INT(got[2][got_len[2] - 1], 'y');
	CHECK_INT(l.len, 0);
}

TEST(svclog_split_exact_buffer_line)
{
	static char data[SVCLOG_LINE_MAX + 1];
	struct svclog_lines l = {.len = 0};

	/* A line that fills the buffer exactly is one line, not a line and an empty one. */
	memset(data, 'a', SVCLOG_LINE_MAX);
	data[SVCLOG_LINE_MAX] = '\n';
	svclog_split(&l, data, sizeof(data), collect, NULL);
	CHECK_INT(ngot, 1);
	CHECK_INT(got_len[0], SVCLOG_LINE_MAX);
	svclog_split_flush(&l, collect, NULL);
	CHECK_INT(ngot, 1);
}

/* --- rotation -------------------------------------------------------------------- */

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test-svclog-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
}

static void cleanup_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, text, strlen(text)), strlen(text));
	close(fd);
}

static char *read_file(const char *path, size_t *len)
{
	static char buf[4 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t n, total = 0;

	if (fd < 0)
		return NULL;
	while ((n = read(fd, buf + total, sizeof(buf) - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = '\0';
	if (len)
		*len = (size_t)total;
	return buf;
}

/* Decompresses a .zst with libzstd into a static buffer. */
static char *unzstd(const char *path, size_t *len)
{
	static char out[4 << 20];
	size_t n, clen;
	char *c = read_file(path, &clen);

	CHECK(c != NULL);
	CHECK(ZSTD_getFrameContentSize(c, clen) != ZSTD_CONTENTSIZE_ERROR);
	n = ZSTD_decompress(out, sizeof(out) - 1, c, clen);
	CHECK(!ZSTD_isError(n));
	out[n] = '\0';
	*len = n;
	return out;
}

TEST(svclog_path_names)
{
	char p[64];

	CHECK_INT(svclog_path(p, sizeof(p), "/var/log", "kubelet", 0), 20);
	CHECK_STR(p, "/var/log/kubelet.log");
	svclog_path(p, sizeof(p), "/var/log", "kubelet", 1);
	CHECK_STR(p, "/var/log/kubelet.log.1.zst");
	svclog_path(p, sizeof(p), "/var/log", "kubelet", 3);
	CHECK_STR(p, "/var/log/kubelet.log.3.zst");
	CHECK_INT(svclog_path(p, 20, "/var/log", "kubelet", 0), -ENAMETOOLONG);
}

TEST(svclog_zstd_workspace_is_enough)
{
	ZSTD_compressionParameters cp = ZSTD_getCParams(SVCLOG_ZSTD_LEVEL, 0, 0);

	/* The same limits svclog_compress sets: level 3 with the window capped. */
	cp.windowLog = SVCLOG_ZSTD_WLOG;
	CHECK(ZSTD_estimateCStreamSize_usingCParams(cp) <= SVCLOG_ZSTD_WS);
	CHECK_INT(SVCLOG_ZSTD_WS % 4096, 0);
}

TEST(svclog_rotate_shifts_and_compresses)
{
	char p[128], live[128];
	size_t n;
	int fd;

	make_dir();
	atexit(cleanup_dir);
	svclog_path(live, sizeof(live), dir, "svc", 0);
	write_file(live, "newest 1\nnewest 2\n");
	/* Stand-ins for older rotations: any bytes do, they are only renamed. */
	for (int i = 1; i <= SVCLOG_KEEP; i++) {
		char text[16];
		snprintf(text, sizeof(text), "old %d", i);
		svclog_path(p, sizeof(p), dir, "svc", i);
		write_file(p, text);
	}

	fd = open(live, O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK_INT(svclog_rotate(dir, "svc", fd), 0);

	/* The live log is empty and still the file we write to. */
	CHECK_INT(write(fd, "after\n", 6), 6);
	close(fd);
	CHECK_STR(read_file(live, NULL), "after\n");
	/* .1 is the compressed old live log, .2 and .3 the shifted ones, the oldest gone. */
	svclog_path(p, sizeof(p), dir, "svc", 1);
	CHECK_STR(unzstd(p, &n), "newest 1\nnewest 2\n");
	svclog_path(p, sizeof(p), dir, "svc", 2);
	CHECK_STR(read_file(p, NULL), "old 1");
	svclog_path(p, sizeof(p), dir, "svc", 3);
	CHECK_STR(read_file(p, NULL), "old 2");
	svclog_path(p, sizeof(p), dir, "svc", 4);
	CHECK(access(p, F_OK) < 0);
	snprintf(p, sizeof(p), "%s/svc.log.1.zst.tmp", dir);
	CHECK(access(p, F_OK) < 0);
}

TEST(svclog_rotate_first_time)
{
	char p[128], live[128];
	size_t n;

	make_dir();
	atexit(cleanup_dir);
	svclog_path(live, sizeof(live), dir, "a", 0);
	write_file(live, "x\n");
	CHECK_INT(svclog_rotate(dir, "a", -1), 0);
	svclog_path(p, sizeof(p), dir, "a", 1);
	CHECK_STR(unzstd(p, &n), "x\n");
	svclog_path(p, sizeof(p), dir, "a", 2);
	CHECK(access(p, F_OK) < 0);
	CHECK_INT(svclog_rotate(dir, "missing", -1), -ENOENT);
}

/* The whole path: lines through svclog_feed into the file until it rotates, every line
 * found again in the live log or the decompressed .1.zst, in order. */
TEST(svclog_feed_rotates_and_round_trips)
{
	static char expect[2 << 20], line[128];
	char p[128];
	size_t elen = 0, n1, nlive;
	struct svclog l;
	int i = 0;

	make_dir();
	atexit(cleanup_dir);
	snprintf(p, sizeof(p), "%s/kmsg", dir);
	write_file(p, "");
	CHECK_INT(svclog_setup(dir, p), 0);
	svclog_init(&l, "chatty", 0);
	/* Just past one rotation: about 1.3 MiB of numbered lines. */
	while (elen < SVCLOG_ROTATE_SIZE + SVCLOG_ROTATE_SIZE / 3) {
		int n = snprintf(line, sizeof(line),
				 "line %06d of the chatty service, padded out\n", i++);
		svclog_feed(&l, line, (size_t)n, 0);
		memcpy(expect + elen, line, (size_t)n);
		elen += (size_t)n;
	}
	svclog_close(&l);

	svclog_path(p, sizeof(p), dir, "chatty", 1);
	char *old = unzstd(p, &n1);
	CHECK(n1 <= SVCLOG_ROTATE_SIZE);
	CHECK(n1 > SVCLOG_ROTATE_SIZE - 100);
	CHECK(memcmp(old, expect, n1) == 0);
	svclog_path(p, sizeof(p), dir, "chatty", 0);
	char *live = read_file(p, &nlive);
	CHECK_INT(n1 + nlive, elen);
	CHECK(memcmp(live, expect + n1, nlive) == 0);

	/* kmsg saw the burst and then the refusals; the next line that passes reports them. */
	snprintf(p, sizeof(p), "%s/kmsg", dir);
	CHECK_CONTAINS(read_file(p, NULL), "<31>chatty: line 000199 of");
	svclog_feed(&l, "late\n", 5, 1000);
	char *k = read_file(p, NULL);
	char want[64];
	snprintf(want, sizeof(want),
		 "<31>chatty: %d lines dropped (rate limit)\n<31>chatty: late\n",
		 i - SVCLOG_BURST);
	CHECK_CONTAINS(k, want);
	CHECK(!strstr(k, "line 000200 of"));
}

TEST(svclog_report_dropped_when_quiet)
{
	char p[128];
	struct svclog l;

	make_dir();
	atexit(cleanup_dir);
	snprintf(p, sizeof(p), "%s/kmsg", dir);
	write_file(p, "");
	CHECK_INT(svclog_setup(dir, p), 0);
	svclog_init(&l, "s", 0);
	for (int i = 0; i < SVCLOG_BURST + 7; i++)
		svclog_feed(&l, "x\n", 2, 0);
	/* Pending until the service has been quiet for a second. */
	CHECK_INT(svclog_report_due(&l), 1000);
	svclog_report_dropped(&l, 999);
	CHECK_INT(l.rate.dropped, 7);
	svclog_report_dropped(&l, 1000);
	CHECK_INT(l.rate.dropped, 0);
	CHECK_INT(svclog_report_due(&l), 0);
	CHECK_CONTAINS(read_file(p, NULL), "<31>s: 7 lines dropped (rate limit)\n");
	svclog_close(&l);
}

/* A steady flood: its share of lines and at most one "dropped" report a second. */
TEST(svclog_sustained_flood_reports_once_a_second)
{
	char p[128];
	struct svclog l;
	int lines = 0, reports = 0;

	make_dir();
	atexit(cleanup_dir);
	snprintf(p, sizeof(p), "%s/kmsg", dir);
	write_file(p, "");
	CHECK_INT(svclog_setup(dir, p), 0);
	svclog_init(&l, "f", 0);
	/* 1000 lines a second for 10 s, one every millisecond. */
	for (uint64_t t = 0; t < 10000; t++)
		svclog_feed(&l, "y\n", 2, t);
	svclog_close(&l);
	for (char *k = read_file(p, NULL); (k = strstr(k, "<31>f: ")); k++) {
		if (strncmp(k + 7, "y\n", 2) == 0)
			lines++;
		else if (strstr(k, "lines dropped") < strchr(k, '\n'))
			reports++;
	}
	/* The burst plus 10 s of refill, less what is still in the bucket. */
	CHECK(lines > SVCLOG_BURST + 10 * SVCLOG_RATE - 3);
	CHECK(lines <= SVCLOG_BURST + 10 * SVCLOG_RATE);
	CHECK(reports >= 8 && reports <= 10);
}
