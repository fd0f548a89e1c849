/* Kernel settings from the root's sysctl.d files (/usr/lib/sysctl.d, then /etc/sysctl.d;
 * a file in /etc replaces one of the same name), applied before services start; the keys
 * a module of the config brings, before the services that are not "early". */
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
/* The same, but a key whose /proc/sys file does not exist yet is kept (up to 32), not
 * failed: the NIC drivers (net.ipv6.conf.eth0.*) and the config's modules, loaded beside
 * the first services, bring those (net.bridge.* with br_netfilter). sysctl_apply_later()
 * sets them: not final (once the NIC drivers are in), a key still missing is kept; final
 * (once the config's modules are in), it is a named failure. Both return the number of
 * settings that failed. */
int sysctl_apply_present(const char *const *dirs);
int sysctl_apply_later(bool final);
