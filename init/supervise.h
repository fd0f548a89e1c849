/* The supervisor: PID 1's loop after boot. One signalfd and the power button devices
 * in one poll(); children are reaped here. */
#pragma once

#include "util.h"

/* Blocks the signals PID 1 handles, creates the signalfd and asks the kernel to send
 * SIGINT for ctrl-alt-del instead of rebooting. Call before starting any child. */
int supervise_init(void);
/* Restores the default signal mask and dispositions in a child before exec. */
void supervise_child_signals(void);
/* Never returns: waits for signals and the power button, reaps, shuts down. */
_noreturn_ void supervise_loop(void);
