/* Service output: lines split from a pipe, rate-limited to /dev/kmsg as "<name>: <line>" at
 * LOG_DEBUG (never on the console), and kept in <log_dir>/<name>.log, rotated into zstd files. */
#pragma once

#include <stdint.h>
#include <syslog.h>
#include <sys/types.h>

#include "util.h"

#define SVCLOG_LINE_MAX 896 /* a record with "<31>name: " fits kmsg's 992 */
/* The kmsg level of service lines: the console prints only levels below the console
 * level, which log_open_kmsg() holds at or under this (LOG_CONSOLE_LEVEL_MAX). */
#define SVCLOG_KMSG_LEVEL LOG_DEBUG
#define SVCLOG_RATE	  50  /* lines per second to kmsg, steady */
#define SVCLOG_BURST	  200 /* lines to kmsg at once after a quiet spell */
#define SVCLOG_ROTATE_SIZE                                                               \
	(1024 * 1024)	      /* <name>.log is rotated before it grows past this */
#define SVCLOG_KEEP	3     /* <name>.log.1.zst … .3.zst */
#define SVCLOG_RETRY_MS 10000 /* how often to retry opening an unwritable log */
/* The zstd work area: ZSTD_estimateCStreamSize for level 3 with a 1 MiB window is 2.5 MiB
 * (libzstd 1.5.4); whole pages, so it can be handed back with MADV_DONTNEED. */
#define SVCLOG_ZSTD_LEVEL 3
#define SVCLOG_ZSTD_WLOG  20
#define SVCLOG_ZSTD_WS	  (2816u * 1024)

/* Token bucket in thousandths of a line, so any rate works with integer arithmetic. */
struct svclog_rate {
	uint64_t last_ms;
	uint64_t last_drop_ms; /* when the last line was refused */
	uint32_t millitokens;
	uint32_t dropped; /* lines refused and not reported yet */
};

void svclog_rate_init(struct svclog_rate *r, uint64_t now_ms);
/* Refills for the time since the last call; true if a line may pass now. */
bool svclog_rate_take(struct svclog_rate *r, uint64_t now_ms);

/* A partial line carried between reads. */
struct svclog_lines {
	char buf[SVCLOG_LINE_MAX];
	size_t len;
};

typedef void (*svclog_emit_fn)(void *ctx, const char *line, size_t len);
/* Calls emit once per complete line in data (without its '\n'); a line longer than
 * SVCLOG_LINE_MAX comes out in pieces of that size. The rest waits for the next call. */
void svclog_split(struct svclog_lines *l, const char *data, size_t n, svclog_emit_fn emit,
		  void *ctx);
/* Emits what is left of an unterminated line (the writer exited). */
void svclog_split_flush(struct svclog_lines *l, svclog_emit_fn emit, void *ctx);

/* "<dir>/<name>.log" for n == 0, "<dir>/<name>.log.<n>.zst" otherwise. Returns the
 * length or -ENAMETOOLONG. */
int svclog_path(char *out, size_t len, const char *dir, const char *name, int n);
/* Compresses everything from src into dst (zstd, SVCLOG_ZSTD_LEVEL, with a checksum) using
 * the static work area; no allocation. Returns the compressed size or a negative errno. */
ssize_t svclog_compress(int src, int dst);
/* Rotates <dir>/<name>.log: .2.zst → .3.zst …, the live file compressed into .1.zst
 * (through a temp file and rename, so a final name never holds half a file), then the
 * live file truncated. live_fd is the open log (may be -1). Returns 0 or -errno. */
int svclog_rotate(const char *dir, const char *name, int live_fd);

/* Per-service output state: fixed buffers, nothing allocated. */
struct svclog {
	const char *name;
	struct svclog_lines lines;
	struct svclog_rate rate;
	int file_fd; /* -1 until the log directory is writable */
	off_t file_size;
	uint64_t file_retry_ms;	 /* next time to try opening the file */
	uint64_t now_ms;	 /* time of the data being split (for the rate limiter) */
	uint64_t next_report_ms; /* "N lines dropped" at most once a second */
};

/* Where output goes: the log directory (e.g. /var/log) and the kmsg device. Opens kmsg
 * unless the kernel would print LOG_DEBUG records on the console; returns 0 or -errno
 * (output then only goes to the files). */
int svclog_setup(const char *log_dir, const char *kmsg_path);
void svclog_init(struct svclog *l, const char *name, uint64_t now_ms);
/* Feeds bytes read from the service's pipe. */
void svclog_feed(struct svclog *l, const char *data, size_t n, uint64_t now_ms);
/* The writer exited: log a partial last line. */
void svclog_flush(struct svclog *l, uint64_t now_ms);
/* When "N lines dropped" is due for a service that went quiet (while lines still pass,
 * the report comes with them); 0 = nothing pending. */
uint64_t svclog_report_due(const struct svclog *l);
/* Writes that report if it is due. */
void svclog_report_dropped(struct svclog *l, uint64_t now_ms);
/* Closes the file (fsync first): at shutdown. */
void svclog_close(struct svclog *l);
