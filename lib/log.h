/* Logging for every cvminit library: a record goes to the sink the program sets (PID 1:
 * the console and /dev/kmsg, init/log.c; cvm-measure: stderr). Libraries never print. */
#pragma once

#include <syslog.h>

#include "util.h"

/* Receives one record that passed the level filter: text without a newline. */
typedef void (*log_sink_fn)(int level, const char *text);

/* Sets where records go; NULL sets log_sink_stderr (the default). */
void log_set_sink(log_sink_fn sink);
/* "<program>: <text>" on stderr: host tools and unit tests. */
void log_sink_stderr(int level, const char *text);

void log_set_max_level(int level);
int log_get_max_level(void);

/* Writes one record; returns nothing because logging must never fail the caller. */
void log_msg(int level, const char *fmt, ...) _printf_(2, 3);
/* Logs "<msg>: <strerror(-r)>" at level and returns r (a negative errno). */
int log_errno_at(int level, int r, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...)	       log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	       log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)	       log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)	       log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...)	       log_msg(LOG_ERR, __VA_ARGS__)
#define log_errno(r, ...)      log_errno_at(LOG_ERR, r, __VA_ARGS__)
#define log_warn_errno(r, ...) log_errno_at(LOG_WARNING, r, __VA_ARGS__)

/* Parses "err", "info", "7", … into a syslog level; -EINVAL when unknown. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
