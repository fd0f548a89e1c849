/* Kernel modules through libkmod: the boot's table (init/modules.list) and the
 * /sbin/modprobe personality the kernel calls for request_module(). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* Loads the modules of the boot's table (init/modules.list) with their dependencies and
 * softdeps: the unmarked ones now, those marked "root" and then "background" in a child
 * process (the loader). Returns the number loaded now (built-in and already loaded
 * count), or fails closed on a required one. modules_wait_root() waits until the
 * loader has the "root" ones in, modules_wait() until it is done; both fail closed,
 * naming the module, if a required one failed. */
int modules_load(void);
void modules_wait_root(void);
void modules_wait(void);
/* Loads the config's "module" lines, all required, the same way: now, or in a child
 * process (start, then wait before what needs them: the sysctls of br_netfilter). A
 * child already waited for is not started again. */
int modules_load_extra(char *const *names, int n);
void modules_start_extra(char *const *names, int n);
void modules_wait_extra(void);
/* The supervisor reaped pid: true when it is a loader child, whose status the next
 * modules_wait*() then uses; one that failed fails closed at once. */
struct rusage;
bool modules_reaped(pid_t pid, int status, const struct rusage *ru);
/* Loads what matches each alias (e.g. a device's modalias), none required: returns how
 * many matched something, and logs each failure naming the alias as a what. */
int modules_load_aliases(char *const *aliases, int n, const char *what);
/* Entry point when argv[0] is "modprobe": "modprobe [-q] [-b] [--] name [params]". */
int modprobe_main(int argc, char **argv);
