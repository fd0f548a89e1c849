/* The power button: the kernel reports it as KEY_POWER on an input device and does not
 * signal PID 1, so cvminit watches those devices itself. */
#pragma once

#include <stddef.h>

#define POWERBTN_MAX 4

/* Opens every /dev/input/event* that can report KEY_POWER (non-blocking); returns the
 * number found. Names the first device in first_path. */
int powerbtn_open(int fds[POWERBTN_MAX], char *first_path, size_t pathlen);
/* Drains pending events from fd; returns 1 if KEY_POWER was pressed, 0 if not. */
int powerbtn_pressed(int fd);
