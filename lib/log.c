/* The level filter and the sink every library logs through; the sink itself belongs to
 * the program (init/log.c for PID 1). Only the stderr sink for host tools lives here. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static int max_level = LOG_INFO;
static log_sink_fn sink = log_sink_stderr;

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

void log_set_sink(log_sink_fn fn)
{
	sink = fn ? fn : log_sink_stderr;
}

void log_sink_stderr(int level _unused_, const char *text)
{
	fprintf(stderr, "%s: %s\n", program_invocation_short_name, text);
}

void log_msg(int level, const char *fmt, ...)
{
	char text[960];
	int saved = errno;
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sink(level, text);
	errno = saved;
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
