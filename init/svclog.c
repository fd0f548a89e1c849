/* Service output: line splitting, the kmsg rate limiter, the per-service log file and
 * its size-based rotation into zstd files. All buffers are fixed; nothing is allocated. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/uio.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_initStaticCCtx: the release links libzstd.a */
#include <zstd.h>

#include "../lib/file.h"
#include "config.h"
#include "log.h"
#include "svclog.h"

static const char *log_dir = "/var/log";
static int kmsg_fd = -1;

void svclog_rate_init(struct svclog_rate *r, uint64_t now_ms)
{
	*r = (struct svclog_rate){.last_ms = now_ms, .millitokens = SVCLOG_BURST * 1000u};
}

bool svclog_rate_take(struct svclog_rate *r, uint64_t now_ms)
{
	if (now_ms > r->last_ms) {
		/* Cap the elapsed time before multiplying: a long quiet spell only fills the
		 * bucket, and the product cannot overflow. */
		uint64_t dt = now_ms - r->last_ms;
		uint64_t t = r->millitokens + (dt > 10000 ? 10000 : dt) * SVCLOG_RATE;

		r->millitokens =
			t > SVCLOG_BURST * 1000u ? SVCLOG_BURST * 1000u : (uint32_t)t;
		r->last_ms = now_ms;
	}
	if (r->millitokens < 1000) {
		r->dropped++;
		r->last_drop_ms = now_ms;
		return false;
	}
	r->millitokens -= 1000;
	return true;
}

void svclog_split(struct svclog_lines *l, const char *data, size_t n, svclog_emit_fn emit,
		  void *ctx)
{
	while (n) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;
		size_t room = sizeof(l->buf) - l->len;

		if (take > room) {
			/* A long line: pass on a full buffer and keep going with the rest. */
			memcpy(l->buf + l->len, data, room);
			emit(ctx, l->buf, sizeof(l->buf));
			l->len = 0;
			data += room;
			n -= room;
			continue;
		}
		memcpy(l->buf + l->len, data, take);
		l->len += take;
		if (!nl)
			return;
		emit(ctx, l->buf, l->len);
		l->len = 0;
		data += take + 1;
		n -= take + 1;
	}
}

void svclog_split_flush(struct svclog_lines *l, svclog_emit_fn emit, void *ctx)
{
	if (l->len)
		emit(ctx, l->buf, l->len);
	l->len = 0;
}

int svclog_path(char *out, size_t len, const char *dir, const char *name, int n)
{
	int r = n ? snprintf(out, len, "%s/%s.log.%d.zst", dir, name, n)
		  : snprintf(out, len, "%s/%s.log", dir, name);

	if (r < 0 || (size_t)r >= len)
		return -ENAMETOOLONG;
	return r;
}

static uint8_t zin[64 * 1024], zout[64 * 1024];

static ssize_t compress_fd(ZSTD_CCtx *cc, int src, int dst)
{
	ssize_t total = 0;
	bool eof = false;

	while (!eof) {
		ssize_t n = read(src, zin, sizeof(zin));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		eof = n == 0;

		ZSTD_inBuffer in = {zin, (size_t)n, 0};
		size_t left;
		do {
			ZSTD_outBuffer out = {zout, sizeof(zout), 0};
			int r;

			left = ZSTD_compressStream2(cc, &out, &in,
						    eof ? ZSTD_e_end : ZSTD_e_continue);
			if (ZSTD_isError(left))
				return -EIO;
			if ((r = write_full(dst, zout, out.pos)) < 0)
				return r;
			total += (ssize_t)out.pos;
		} while (eof ? left != 0 : in.pos < in.size);
	}
	return total;
}

ssize_t svclog_compress(int src, int dst)
{
	struct stat st;
	ZSTD_CCtx *cc;
	ssize_t r = -EINVAL;
	void *ws;

	if (fstat(src, &st) < 0)
		return -errno;
	/* The work area is mapped for this compression only (rotation is rare), not a
	 * static buffer: PID 1's .bss stays smaller than one transparent huge page
	 * (init/main.c says why that matters). A static context never allocates: if these
	 * parameters ever need more room (another libzstd), it fails here. */
	ws = mmap(NULL, SVCLOG_ZSTD_WS, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ws == MAP_FAILED)
		return -errno;
	cc = ZSTD_initStaticCCtx(ws, SVCLOG_ZSTD_WS);
	if (!cc)
		r = -ENOMEM;
	else if (!ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel,
						      SVCLOG_ZSTD_LEVEL)) &&
		 !ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog,
						      SVCLOG_ZSTD_WLOG)) &&
		 !ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)) &&
		 !ZSTD_isError(
			 ZSTD_CCtx_setPledgedSrcSize(cc, (unsigned long long)st.st_size)))
		r = compress_fd(cc, src, dst);
	munmap(ws, SVCLOG_ZSTD_WS);
	return r;
}

/* The compression in a child process: the zstd work area (2.75 MiB) is touched there and
 * not in PID 1, whose resident size the node pays for as long as it runs (issue 15: a
 * rotation at kubelet's start showed PID 1 at 5.4 MiB). PID 1 waits: rotation is rare. */
static ssize_t compress_in_child(int src, int dst)
{
	pid_t pid, w;
	int status;

	pid = fork();
	if (pid < 0)
		return svclog_compress(src, dst);
	if (pid == 0)
		_exit(svclog_compress(src, dst) < 0 ? 1 : 0);
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int svclog_rotate(const char *dir, const char *name, int live_fd)
{
	char from[256], to[256], tmp[264];
	_cleanup_close_ int src = -1, dst = -1;
	ssize_t r;

	/* Compress first: until the rename below, every final name still holds what it
	 * held, so a power cut at any point loses nothing but the temp file. */
	if (svclog_path(from, sizeof(from), dir, name, 0) < 0 ||
	    svclog_path(to, sizeof(to), dir, name, 1) < 0)
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	src = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (src < 0)
		return -errno;
	dst = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (dst < 0)
		return -errno;
	r = compress_in_child(src, dst);
	if (r >= 0 && fsync(dst) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return (int)r;
	}

	/* Shift the older ones up; the oldest falls off when .2 is renamed over it. */
	for (int i = SVCLOG_KEEP - 1; i >= 1; i--) {
		svclog_path(from, sizeof(from), dir, name, i);
		svclog_path(to, sizeof(to), dir, name, i + 1);
		if (rename(from, to) < 0 && errno != ENOENT)
			return -errno;
	}
	svclog_path(to, sizeof(to), dir, name, 1);
	if (rename(tmp, to) < 0)
		return -errno;
	fsync_dir(dir);
	/* A power cut before this truncate leaves these lines twice, never lost. */
	if (live_fd >= 0 && ftruncate(live_fd, 0) < 0)
		return -errno;
	return 0;
}

int svclog_setup(const char *dir, const char *kmsg_path)
{
	log_dir = dir;
	if (kmsg_fd >= 0)
		close(kmsg_fd);
	kmsg_fd = -1;
	/* The console is the host's: if the kernel would print service lines there (its
	 * level could not be pinned), they go to the files only. */
	if (log_console_prints(SVCLOG_KMSG_LEVEL)) {
		log_error(
			"service output: the kernel console prints level %d: service lines "
			"go to %s only, not to kmsg",
			SVCLOG_KMSG_LEVEL, dir);
		return -EPERM;
	}
	/* No O_CREAT: before devtmpfs that would leave a plain file named /dev/kmsg. */
	kmsg_fd = open(kmsg_path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);
	if (kmsg_fd < 0)
		return log_warn_errno(-errno, "service output: open %s", kmsg_path);
	return 0;
}

void svclog_init(struct svclog *l, const char *name, uint64_t now_ms)
{
	*l = (struct svclog){.name = name, .file_fd = -1};
	svclog_rate_init(&l->rate, now_ms);
}

static void kmsg_write(const struct svclog *l, const char *line, size_t len)
{
	char prefix[8 + SVC_NAME_MAX];
	/* LOG_DEBUG: the host reads the serial console, and services' lines name pods,
	 * images and errors. The kernel prints a record on the console only below
	 * console_loglevel, which cvminit caps at SVCLOG_KMSG_LEVEL (log_open_kmsg). */
	int n = snprintf(prefix, sizeof(prefix),
			 "<%d>%s: ", LOG_DAEMON | SVCLOG_KMSG_LEVEL, l->name);
	struct iovec iov[3] = {
		{.iov_base = prefix, .iov_len = (size_t)n},
		{.iov_base = (void *)line, .iov_len = len},
		{.iov_base = "\n", .iov_len = 1},
	};

	/* One writev is one kmsg record. */
	if (kmsg_fd >= 0)
		(void)!writev(kmsg_fd, iov, 3);
}

static void file_open(struct svclog *l)
{
	char path[256];
	struct stat st;

	if (l->file_fd >= 0 || l->now_ms < l->file_retry_ms)
		return;
	l->file_retry_ms = l->now_ms + SVCLOG_RETRY_MS;
	if (svclog_path(path, sizeof(path), log_dir, l->name, 0) < 0)
		return;
	/* /var/log appears when the state partition is mounted; until then, retry now
	 * and then rather than on every line. */
	mkdir(log_dir, 0755);
	l->file_fd =
		open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (l->file_fd < 0)
		return;
	l->file_size = fstat(l->file_fd, &st) == 0 ? st.st_size : 0;
}

static void file_write(struct svclog *l, const char *line, size_t len)
{
	struct iovec iov[2] = {
		{.iov_base = (void *)line, .iov_len = len},
		{.iov_base = "\n", .iov_len = 1},
	};
	ssize_t w;
	int r;

	file_open(l);
	if (l->file_fd < 0)
		return;
	if (l->file_size > 0 && l->file_size + (off_t)len + 1 > SVCLOG_ROTATE_SIZE) {
		r = svclog_rotate(log_dir, l->name, l->file_fd);
		if (r < 0) {
			/* Never let a log that cannot rotate fill /var: start it over. */
			log_warn_errno(r, "%s: rotate %s/%s.log (truncating it)", l->name,
				       log_dir, l->name);
			if (ftruncate(l->file_fd, 0) < 0) {
				close(l->file_fd);
				l->file_fd = -1;
				return;
			}
		}
		l->file_size = 0;
	}
	w = writev(l->file_fd, iov, 2);
	if (w < 0) {
		log_warn_errno(-errno, "%s: write %s/%s.log", l->name, log_dir, l->name);
		close(l->file_fd);
		l->file_fd = -1;
		return;
	}
	l->file_size += w;
}

static void report_dropped(struct svclog *l, uint64_t now_ms)
{
	char msg[64];
	int n = snprintf(msg, sizeof(msg), "%u lines dropped (rate limit)",
			 l->rate.dropped);

	kmsg_write(l, msg, (size_t)n);
	l->rate.dropped = 0;
	l->next_report_ms = now_ms + 1000;
}

static void emit_line(void *ctx, const char *line, size_t len)
{
	struct svclog *l = ctx;

	/* Everything goes to the file; kmsg is shared with the kernel and PID 1, so a
	 * chatty service only gets its share there. */
	file_write(l, line, len);
	if (!svclog_rate_take(&l->rate, l->now_ms))
		return;
	if (l->rate.dropped && l->now_ms >= l->next_report_ms)
		report_dropped(l, l->now_ms);
	kmsg_write(l, line, len);
}

void svclog_feed(struct svclog *l, const char *data, size_t n, uint64_t now_ms)
{
	l->now_ms = now_ms;
	svclog_split(&l->lines, data, n, emit_line, l);
}

void svclog_flush(struct svclog *l, uint64_t now_ms)
{
	l->now_ms = now_ms;
	svclog_split_flush(&l->lines, emit_line, l);
}

uint64_t svclog_report_due(const struct svclog *l)
{
	return l->rate.dropped ? l->rate.last_drop_ms + 1000 : 0;
}

void svclog_report_dropped(struct svclog *l, uint64_t now_ms)
{
	uint64_t due = svclog_report_due(l);

	if (due && now_ms >= due)
		report_dropped(l, now_ms);
}

void svclog_close(struct svclog *l)
{
	if (l->file_fd < 0)
		return;
	fsync(l->file_fd);
	close(l->file_fd);
	l->file_fd = -1;
}
