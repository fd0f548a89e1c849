/* PID 1's main loop. Signals arrive through one signalfd and are dispatched from a table
 * (sinit's sigmap); service output and timers share the same poll(); nothing allocates. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "log.h"
#include "power.h"
#include "powerbtn.h"
#include "supervise.h"
#include "svc.h"

static int signal_fd = -1;
static unsigned long orphans_reaped;
static bool (*child_hook)(pid_t pid, int status, const struct rusage *ru);

void supervise_set_child_hook(bool (*fn)(pid_t pid, int status, const struct rusage *ru))
{
	child_hook = fn;
}

static void on_sigchld(void)
{
	struct rusage ru;
	int status;
	pid_t pid;

	/* Several children may have exited for one SIGCHLD: reap until none is left. */
	while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
		if (child_hook && child_hook(pid, status, &ru))
			continue;
		if (svc_reaped(pid, status))
			continue;
		/* Not a service: an orphan that the kernel re-parented to us. */
		orphans_reaped++;
		log_debug("reaped orphan %d (%s %d), %lu so far", (int)pid,
			  WIFEXITED(status) ? "exit" : "signal",
			  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			  orphans_reaped);
	}
}

static void on_sigterm(void)
{
	power_shutdown(POWER_OFF, "SIGTERM");
}

static void on_sigint(void)
{
	power_shutdown(POWER_REBOOT, "SIGINT (ctrl-alt-del)");
}

static void on_sigpwr(void)
{
	power_shutdown(POWER_OFF, "SIGPWR");
}

static void on_sighup(void)
{
	log_info("SIGHUP received: nothing to reload");
}

static const struct {
	int sig;
	void (*handler)(void);
} sigmap[] = {
	{SIGCHLD, on_sigchld}, {SIGTERM, on_sigterm}, {SIGINT, on_sigint},
	{SIGPWR, on_sigpwr},   {SIGHUP, on_sighup},
};

static void sigmap_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < ARRAY_SIZE(sigmap); i++)
		sigaddset(set, sigmap[i].sig);
}

int supervise_init(void)
{
	sigset_t set;

	sigmap_set(&set);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return log_errno(-errno, "block signals");
	signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (signal_fd < 0)
		return log_errno(-errno, "signalfd");
	/* ctrl-alt-del sends SIGINT to PID 1 instead of an immediate reboot. */
	if (reboot(RB_DISABLE_CAD) < 0)
		log_warn_errno(-errno, "disable ctrl-alt-del reboot");
	return 0;
}

static void dispatch_signals(void)
{
	struct signalfd_siginfo si;

	while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		for (size_t i = 0; i < ARRAY_SIZE(sigmap); i++)
			if ((int)si.ssi_signo == sigmap[i].sig)
				sigmap[i].handler();
	}
}

void supervise_loop(void)
{
	struct pollfd pfd[1 + POWERBTN_MAX + SVC_MAX];
	int btn[POWERBTN_MAX];
	char path[64], why[128];
	enum power_action action;
	int nbtn;

	nbtn = powerbtn_open(btn, path, sizeof(path));
	pfd[0] = (struct pollfd){.fd = signal_fd, .events = POLLIN};
	for (int i = 0; i < nbtn; i++)
		pfd[1 + i] = (struct pollfd){.fd = btn[i], .events = POLLIN};
	if (nbtn)
		log_info("ready: waiting for signals and the power button (%s%s)", path,
			 nbtn > 1 ? " and others" : "");
	else
		log_warn("ready: waiting for signals; no power button found (is evdev "
			 "loaded?), so only SIGTERM/SIGINT stop this node");

	/* Children may have exited before the signalfd was polled. */
	on_sigchld();
	for (;;) {
		int fixed = 1 + nbtn, nsvcfd, r;

		svc_start_ready();
		nsvcfd = svc_pollfds(pfd + fixed, (int)ARRAY_SIZE(pfd) - fixed);
		r = poll(pfd, (nfds_t)(fixed + nsvcfd), svc_timeout_ms());
		if (r < 0) {
			if (errno != EINTR)
				log_warn_errno(-errno, "poll");
			continue;
		}
		/* Output first, so a service's last lines come before the news of its exit. */
		svc_handle_pollfds(pfd + fixed, nsvcfd);
		if (pfd[0].revents & POLLIN)
			dispatch_signals();
		for (int i = 0; i < nbtn; i++)
			if ((pfd[1 + i].revents & POLLIN) && powerbtn_pressed(btn[i]))
				power_shutdown(POWER_OFF, "power button");
		svc_tick();
		if (svc_shutdown_requested(&action, why, sizeof(why)))
			power_shutdown(action, why);
	}
}
