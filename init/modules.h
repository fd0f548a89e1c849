/* Kernel modules through libkmod: the boot's table (init/modules.list) and the
 * /sbin/modprobe personality the kernel calls for request_module(). */
#pragma once

/* Loads every module of the boot's table (init/modules.list) with its dependencies and
 * softdeps. Returns the number loaded (built-in and already loaded count), or fails
 * closed on a required one. */
int modules_load(void);
/* Loads the config's "module" lines, all required, the same way. */
int modules_load_extra(char *const *names, int n);
/* Loads what matches each alias (e.g. a device's modalias), none required: returns how
 * many matched something, and logs each failure naming the alias as a what. */
int modules_load_aliases(char *const *aliases, int n, const char *what);
/* Entry point when argv[0] is "modprobe": "modprobe [-q] [-b] [--] name [params]". */
int modprobe_main(int argc, char **argv);
