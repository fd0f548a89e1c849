/* The ways PID 1 leaves: an orderly shutdown, a refusal to boot, and a crash. Every one
 * ends in reboot(2); none returns. */
#pragma once

#include "settings.h"
#include "util.h"

/* Remembers the settings fail_closed(), the crash handler and power_shutdown() act on;
 * they read them when they run, so one call before the first refusal covers every later
 * change (the command line, then the config). */
void power_init(const struct settings *s);
/* Routes SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT to a handler that powers off. */
void crash_handler_install(void);

/* Logs a boxed refusal (what went wrong and what the operator should do), starts
 * nothing, syncs, then does the configured on_failure action. */
_noreturn_ void fail_closed(const char *fmt, ...) _printf_(1, 2);

/* fn runs first in power_shutdown() (cvminit measures "shutdown" there). */
void power_set_shutdown_hook(void (*fn)(void));
/* fn runs after the data mounts are gone (cvminit closes the state volume there). */
void power_set_close_hook(void (*fn)(void));

/* Orderly stop: the services (svc_stop_all), then TERM everything, wait up to
 * shutdown_timeout, KILL the rest, sync, unmount, then the action. */
_noreturn_ void power_shutdown(enum power_action action, const char *why);
