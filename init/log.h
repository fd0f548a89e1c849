/* PID 1's log sink: the console until devtmpfs is up, then /dev/kmsg (and the console
 * for levels the kernel would not echo). The logging API itself is lib/log.h. */
#pragma once

#include "../lib/log.h"

/* The highest kernel console level cvminit leaves: the kernel prints records whose level
 * is below it, so LOG_DEBUG records (services' output) never reach the serial console. */
#define LOG_CONSOLE_LEVEL_MAX LOG_DEBUG

/* Sends every record to PID 1's sink (the console; /dev/kmsg once opened). */
void log_use_console(void);
/* Opens /dev/kmsg and pins the kernel's console level at or below LOG_CONSOLE_LEVEL_MAX
 * (with SysRq off and ignore_loglevel off); call once /dev, /proc and /sys exist. */
void log_open_kmsg(void);
/* True when the kernel would print a record of this level on the console (PID 1 only:
 * false elsewhere, where kmsg is not the console's). */
bool log_console_prints(int level);
/* Writes a line straight to the console: for fail_closed() and the crash handler. */
void log_console_raw(const char *line);

/* libcryptsetup's log callback (crypt_set_log_callback): its messages become ours. */
void log_cryptsetup(int level, const char *msg, void *data);
