/* Shutdown, refusal and crash paths of PID 1. These run when everything else failed, so
 * they use only syscalls and the log, allocate nothing, and end in reboot(2). */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <time.h>

#include "../lib/secret.h"
#include "log.h"
#include "power.h"
#include "svc.h"

/* The settings as they are when a path runs: read then, not copied at power_init(). */
static const struct settings *settings;
static void (*shutdown_hook)(void);
static void (*close_hook)(void);

/* Before power_init() (nothing read yet): power off, the safe default. */
static enum power_action on_failure(void)
{
	return settings ? settings->on_failure : POWER_OFF;
}

static unsigned shutdown_timeout(void)
{
	return settings ? settings->shutdown_timeout : 10;
}

void power_set_shutdown_hook(void (*fn)(void))
{
	shutdown_hook = fn;
}

void power_set_close_hook(void (*fn)(void))
{
	close_hook = fn;
}

void power_init(const struct settings *s)
{
	settings = s;
}

static int reboot_cmd(enum power_action a)
{
	switch (a) {
	case POWER_REBOOT:
		return RB_AUTOBOOT;
	case POWER_HALT:
		return RB_HALT_SYSTEM;
	case POWER_OFF:
	default:
		return RB_POWER_OFF;
	}
}

/* The last step of every path. If reboot(2) fails (we are not PID 1 in the initial
 * namespace, or the kernel refuses) there is nothing safe left to do but wait. */
static _noreturn_ void final_reboot(enum power_action a)
{
	sync();
	reboot(reboot_cmd(a));
	for (;;)
		pause();
}

static void box_line(const char *text)
{
	log_msg(LOG_EMERG, "* %s", text);
}

void fail_closed(const char *fmt, ...)
{
	char reason[1536], line[600];
	va_list ap;

	/* A scope that would wipe a key never ends on this path. */
	secret_wipe_all();
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);

	log_msg(LOG_EMERG,
		"**********************************************************************");
	box_line("REFUSING TO BOOT");
	/* The reason may be long: wrap it at 66 columns inside the box. */
	for (const char *p = reason; *p;) {
		size_t n = strlen(p);
		if (n > 66) {
			/* At the last space; a longer word (a digest) is cut at 66. */
			n = 66;
			while (n > 30 && p[n] != ' ')
				n--;
			if (p[n] != ' ')
				n = 66;
		}
		snprintf(line, sizeof(line), "  %.*s", (int)n, p);
		box_line(line);
		p += n;
		while (*p == ' ')
			p++;
	}
	snprintf(line, sizeof(line),
		 "nothing was unlocked and nothing was started; action: %s",
		 power_action_to_string(on_failure()));
	box_line(line);
	log_msg(LOG_EMERG,
		"**********************************************************************");
	final_reboot(on_failure());
}

static void crash_handler(int sig)
{
	/* Async-signal context: only write(2), sync(2) and reboot(2), and the stores that
	 * wipe the live secrets. */
	const char *msg =
		"cvminit: PID 1 crashed (fatal signal); REFUSING TO CONTINUE, powering off";
	if (sig == SIGABRT)
		msg = "cvminit: PID 1 aborted; REFUSING TO CONTINUE, powering off";
	secret_wipe_all();
	log_console_raw(msg);
	sync();
	reboot(reboot_cmd(on_failure()));
	for (;;)
		pause();
}

void crash_handler_install(void)
{
	static char altstack[16384];
	const stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
	const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
	struct sigaction sa = {.sa_handler = crash_handler,
			       .sa_flags = SA_ONSTACK | SA_NODEFER};

	sigaltstack(&ss, NULL);
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, NULL);
}

/* Reaps whatever has exited; returns the number of children still running, 0 when
 * there are none (ECHILD). */
static int reap_nohang(void)
{
	for (;;) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);
		if (pid > 0)
			continue;
		if (pid < 0 && errno == EINTR)
			continue;
		return pid == 0 ? 1 : 0;
	}
}

/* Waits until no child is left or the deadline passes; returns true if none is left. */
static bool wait_children(unsigned seconds)
{
	struct timespec end, now;
	const struct timespec tick = {.tv_nsec = 50 * 1000 * 1000};

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += seconds;
	for (;;) {
		if (!reap_nohang())
			return true;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > end.tv_sec ||
		    (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
			return false;
		nanosleep(&tick, NULL);
	}
}

/* Unmounts the filesystems that hold data, remounting read-only what stays busy; the
 * API filesystems are left to the kernel. Returns the number that failed. */
static int unmount_data(void)
{
	/* The overlays keep their upper layers in /var: they go first. */
	static const char *const data_mounts[] = {"/etc/cni", "/etc/kubernetes", "/var"};
	int failed = 0;

	for (size_t i = 0; i < ARRAY_SIZE(data_mounts); i++) {
		if (umount2(data_mounts[i], 0) == 0) {
			log_info("shutdown: unmounted %s", data_mounts[i]);
			continue;
		}
		if (errno == EINVAL || errno == ENOENT)
			continue; /* not a mount point */
		failed++;
		log_warn_errno(-errno, "shutdown: unmount %s (remounting read-only)",
			       data_mounts[i]);
		mount(NULL, data_mounts[i], NULL, MS_REMOUNT | MS_RDONLY, NULL);
	}
	return failed;
}

void power_shutdown(enum power_action action, const char *why)
{
	const char *verb = action == POWER_OFF	    ? "powering off"
			   : action == POWER_REBOOT ? "rebooting"
						    : "halting";

	log_notice("%s: %s", why, verb);
	if (shutdown_hook)
		shutdown_hook();

	/* Services first, in reverse dependency order (kubelet must be gone before
	 * containerd), each dependency level given up to shutdown_timeout. */
	svc_stop_all(shutdown_timeout());
	log_info("shutdown: sending SIGTERM to all processes");
	kill(-1, SIGTERM);
	if (!wait_children(shutdown_timeout())) {
		log_warn("shutdown: processes left after %u s, sending SIGKILL",
			 shutdown_timeout());
		kill(-1, SIGKILL);
		wait_children(5);
	}
	log_info("shutdown: syncing");
	sync();
	if (unmount_data() == 0 && close_hook)
		close_hook();
	sync();
	log_notice("shutdown: %s now", verb);
	final_reboot(action);
}
