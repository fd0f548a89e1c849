/* The supervisor: PID 1's loop after boot. One signalfd and the power button devices
 * in one poll(); children are reaped here. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "util.h"

/* Blocks the signals PID 1 handles, creates the signalfd and asks the kernel to send
 * SIGINT for ctrl-alt-del instead of rebooting. Call before starting any child. */
int supervise_init(void);
/* Restores the default signal mask and dispositions in a child before exec. Inline so
 * the service code can be linked (and unit tested) without the loop. */
static inline void supervise_child_signals(void)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t set;

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	sigemptyset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
}
/* fn is asked first about every reaped child (with its resource usage): true = one of the
 * boot's own (the config's module loader, which runs beside the first services), not a
 * service or an orphan. */
struct rusage;
void supervise_set_child_hook(bool (*fn)(pid_t pid, int status, const struct rusage *ru));
/* Never returns: waits for signals, the power button and service output; runs the
 * service timers, reaps, shuts down. */
_noreturn_ void supervise_loop(void);
