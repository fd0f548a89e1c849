/* Logging for PID 1. Every record goes to /dev/kmsg once it is open; it goes to the
 * console too when the kernel would not echo it there (level >= console_loglevel). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>

#include <libcryptsetup.h>

#include "log.h"

static int max_level = LOG_INFO;
static int kmsg_fd = -1;
static int console_fd = -1;
/* Records below this level are printed on the console by the kernel itself. */
static int kernel_console_level = 0;

static const char *const level_names[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

int log_level_from_string(const char *s)
{
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (streq(s, level_names[i]))
			return (int)i;
	return -EINVAL;
}

const char *log_level_to_string(int level)
{
	if (level < 0 || level >= (int)ARRAY_SIZE(level_names))
		return "?";
	return level_names[level];
}

void log_set_max_level(int level)
{
	max_level = level;
}

int log_get_max_level(void)
{
	return max_level;
}

/* Only PID 1 owns the console; anything else (modprobe, unit tests) logs to stderr. */
static int console(void)
{
	if (console_fd < 0 && getpid() == 1)
		console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	return console_fd >= 0 ? console_fd : STDERR_FILENO;
}

void log_open_kmsg(void)
{
	char buf[64];
	int fd;

	if (kmsg_fd < 0)
		kmsg_fd = open("/dev/kmsg", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (getpid() != 1)
		return;
	/* The console may only have appeared with devtmpfs. */
	if (console_fd < 0)
		console();

	/* PID 1 must not lose its own records to /dev/kmsg's per-writer rate limit
	 * (10 per 5 s); service output is rate-limited by the supervisor instead. */
	fd = open("/proc/sys/kernel/printk_devkmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "on\n", 3);
		close(fd);
	}

	fd = open("/proc/sys/kernel/printk", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			kernel_console_level = atoi(buf);
		}
		close(fd);
	}
}

static void write_console(const char *msg, size_t len)
{
	struct timespec ts;
	char stamp[32];
	int n;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	n = snprintf(stamp, sizeof(stamp), "[%5lld.%06ld] ", (long long)ts.tv_sec,
		     ts.tv_nsec / 1000);
	struct iovec iov[3] = {
		{ .iov_base = stamp, .iov_len = (size_t)n },
		{ .iov_base = (void *)msg, .iov_len = len },
		{ .iov_base = "\n", .iov_len = 1 },
	};
	(void)!writev(console(), iov, 3);
}

static void log_write(int level, const char *text)
{
	char line[1024];
	int n;

	/* The newline ends the record: without it the kernel keeps the record open and
	 * prints it on the console only when the next one arrives. */
	n = snprintf(line, sizeof(line), "<%d>cvminit: %s\n", LOG_DAEMON | level, text);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* The console copy goes without "<NN>" and without the newline (added there). */
	const char *plain = strchr(line, '>') + 1;
	size_t plain_len = (size_t)n - (size_t)(plain - line) - 1;

	if (kmsg_fd >= 0 && write(kmsg_fd, line, (size_t)n) == n) {
		if (level >= kernel_console_level)
			write_console(plain, plain_len);
	} else {
		write_console(plain, plain_len);
	}
}

static void log_vmsg(int level, const char *fmt, va_list ap)
{
	char text[960];
	int saved = errno;

	if (level > max_level)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	log_write(level, text);
	errno = saved;
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

int log_errno_at(int level, int r, const char *fmt, ...)
{
	char text[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_msg(level, "%s: %s", text, strerror(r < 0 ? -r : r));
	return r;
}

void log_console_raw(const char *line)
{
	write_console(line, strlen(line));
}

void log_cryptsetup(int level, const char *msg, void *data _unused_)
{
	char text[512];
	int prio = level == CRYPT_LOG_ERROR ? LOG_ERR :
		   level == CRYPT_LOG_NORMAL ? LOG_INFO :
					       LOG_DEBUG;

	snprintf(text, sizeof(text), "%s", msg);
	text[strcspn(text, "\n")] = '\0';
	log_msg(prio, "cryptsetup: %s", text);
}
