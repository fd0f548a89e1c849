/* Kernel settings from the root's sysctl.d files (/usr/lib/sysctl.d, then /etc/sysctl.d;
 * a file in /etc replaces one of the same name), applied before services start. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* One line of a sysctl.d file, modified in place: 1 with *key (dots or slashes) and
 * *value set, 0 for a blank or comment line, -EINVAL when it is not "key = value".
 * *ignore_failure: the line began with '-'. */
int sysctl_parse_line(char *line, char **key, char **value, bool *ignore_failure);
/* Applies every file of the directories (NULL: the root's). Returns the number of
 * settings that failed (each logged with file:line and the key). */
int sysctl_apply(const char *const *dirs);
