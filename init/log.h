/* Logging for PID 1: the console until devtmpfs is up, then /dev/kmsg (and the console
 * for levels the kernel would not echo). Helpers return the error they are given. */
#pragma once

#include <syslog.h>

#include "util.h"

void log_set_max_level(int level);
int log_get_max_level(void);
/* The highest kernel console level cvminit leaves: the kernel prints records whose level
 * is below it, so LOG_DEBUG records (services' output) never reach the serial console. */
#define LOG_CONSOLE_LEVEL_MAX LOG_DEBUG

/* Opens /dev/kmsg and pins the kernel's console level at or below LOG_CONSOLE_LEVEL_MAX
 * (with SysRq off and ignore_loglevel off); call once /dev, /proc and /sys exist. */
void log_open_kmsg(void);
/* True when the kernel would print a record of this level on the console (PID 1 only:
 * false elsewhere, where kmsg is not the console's). */
bool log_console_prints(int level);
/* Writes one record; returns nothing because logging must never fail the boot. */
void log_msg(int level, const char *fmt, ...) _printf_(2, 3);
/* Logs "<msg>: <strerror(-r)>" at LOG_ERR and returns r (a negative errno). */
int log_errno_at(int level, int r, const char *fmt, ...) _printf_(3, 4);
/* Writes a line straight to the console: for fail_closed() and the crash handler. */
void log_console_raw(const char *line);

#define log_debug(...)  log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...)  log_msg(LOG_ERR, __VA_ARGS__)
#define log_errno(r, ...) log_errno_at(LOG_ERR, r, __VA_ARGS__)
#define log_warn_errno(r, ...) log_errno_at(LOG_WARNING, r, __VA_ARGS__)

/* libcryptsetup's log callback (crypt_set_log_callback): its messages become ours. */
void log_cryptsetup(int level, const char *msg, void *data);

/* Parses "err", "info", "7", … into a syslog level; -EINVAL when unknown. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);
