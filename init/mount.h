/* The early mounts: the API filesystems every later stage needs. */
#pragma once

/* Mounts the table in order. Returns the number mounted, or fails closed when a mount
 * marked fatal fails (the node cannot be trusted to run without it). */
int mount_early(void);
/* Mounts the entries that need a kernel module first (configfs); after modules_load(). */
int mount_late(void);
/* Logs the mounts from the table that /proc/self/mountinfo shows, as proof of what
 * the kernel really has; returns how many of the table's mounts are missing. */
int mount_report(void);
