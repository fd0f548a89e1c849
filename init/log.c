/* PID 1's log sink. Every record goes to /dev/kmsg once it is open; it goes to the
 * console too when the kernel would not echo it there (level >= console_loglevel). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/klog.h>
#include <sys/uio.h>
#include <time.h>

#include <libcryptsetup.h>

#include "../lib/file.h"
#include "log.h"

static int kmsg_fd = -1;
static int console_fd = -1;
/* Records below this level are printed on the console by the kernel itself. */
static int kernel_console_level = 0;
/* The kernel prints every record on the console, whatever its level (ignore_loglevel). */
static bool kernel_ignores_level;

/* Only PID 1 owns the console; anything else (modprobe, unit tests) logs to stderr. */
static int console(void)
{
	if (console_fd < 0 && getpid() == 1)
		console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	return console_fd >= 0 ? console_fd : STDERR_FILENO;
}

/* The host reads the serial console, so what the kernel prints there is kept to levels
 * below LOG_CONSOLE_LEVEL_MAX: services' output (LOG_DEBUG, svclog.h) never shows. The
 * kernel's default is 7 already; this undoes what could have raised it before PID 1
 * (loglevel=, debug, ignore_loglevel, sysctl.kernel.printk= on the command line: pinned by
 * the UKI's reference, but this does not depend on it) and what could raise it later from
 * outside (a serial BREAK + SysRq digit; an oops, which would leave it at 15). A lower
 * level (quiet) is kept: cvminit prints its own records that the kernel would not. */
static void console_level_pin(void)
{
	char buf[64];

	/* SysRq over the serial line is the host's keyboard: '9' would raise the level. */
	if (write_file_text("/proc/sys/kernel/sysrq", "0\n") < 0)
		log_msg(LOG_WARNING,
			"console: cannot disable SysRq (/proc/sys/kernel/sysrq)");
	/* An oops or a panic must not leave the console at level 15 (console_verbose). */
	write_file_text("/sys/module/printk/parameters/console_no_auto_verbose", "Y\n");
	write_file_text("/sys/module/printk/parameters/ignore_loglevel", "N\n");
	kernel_ignores_level =
		read_file_text("/sys/module/printk/parameters/ignore_loglevel", buf,
			       sizeof(buf)) > 0 &&
		buf[0] == 'Y';

	if (read_file_text("/proc/sys/kernel/printk", buf, sizeof(buf)) > 0)
		kernel_console_level = atoi(buf);
	if (kernel_console_level > LOG_CONSOLE_LEVEL_MAX) {
		int was = kernel_console_level;

		/* syslog(SYSLOG_ACTION_CONSOLE_LEVEL): the kernel prints levels below it. */
		if (klogctl(8, NULL, LOG_CONSOLE_LEVEL_MAX) == 0 &&
		    read_file_text("/proc/sys/kernel/printk", buf, sizeof(buf)) > 0)
			kernel_console_level = atoi(buf);
		log_msg(LOG_NOTICE, "console: kernel console level %d lowered to %d", was,
			kernel_console_level);
	}
}

bool log_console_prints(int level)
{
	/* Only PID 1 knows the kernel's console; elsewhere kmsg is not the console. */
	if (getpid() != 1)
		return false;
	return kernel_ignores_level || level < kernel_console_level;
}

void log_open_kmsg(void)
{
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

	console_level_pin();
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
		{.iov_base = stamp, .iov_len = (size_t)n},
		{.iov_base = (void *)msg, .iov_len = len},
		{.iov_base = "\n", .iov_len = 1},
	};
	(void)!writev(console(), iov, 3);
}

static void sink_console(int level, const char *text)
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

void log_use_console(void)
{
	log_set_sink(sink_console);
}

void log_console_raw(const char *line)
{
	write_console(line, strlen(line));
}

void log_cryptsetup(int level, const char *msg, void *data _unused_)
{
	char text[512];
	int prio = level == CRYPT_LOG_ERROR    ? LOG_ERR
		   : level == CRYPT_LOG_NORMAL ? LOG_INFO
					       : LOG_DEBUG;

	snprintf(text, sizeof(text), "%s", msg);
	text[strcspn(text, "\n")] = '\0';
	log_msg(prio, "cryptsetup: %s", text);
}
