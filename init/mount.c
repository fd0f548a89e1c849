/* Early mounts from a table, as systemd's mount-setup does: each entry says whether the
 * boot can go on without it. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "log.h"
#include "mount.h"
#include "power.h"

/* MOUNT_FATAL: the node cannot be trusted to run without it. MOUNT_LATE: mounted by
 * mount_late(), as the filesystem (or its mount point, as for configfs) only exists once
 * its module is loaded. MOUNT_IF_KNOWN: only if the kernel knows the filesystem now
 * (/proc/filesystems): the module is loaded only where something needs it, and a mount
 * of an unknown type would make the kernel ask /sbin/modprobe (cvminit) for it anyway. */
enum {
	MOUNT_FATAL = 1 << 0,
	MOUNT_LATE = 1 << 1,
	MOUNT_IF_KNOWN = 1 << 2,
};

struct mount_entry {
	const char *what;
	const char *where;
	const char *type;
	unsigned long flags;
	const char *options;
	unsigned how; /* MOUNT_FATAL, MOUNT_LATE */
	/* Tried when the kernel refuses options (EINVAL): an option an older kernel lacks. */
	const char *fallback_options;
};

#define NOSUID_NODEV_NOEXEC (MS_NOSUID | MS_NODEV | MS_NOEXEC)

static const struct mount_entry mount_table[] = {
	{"proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, NULL, MOUNT_FATAL, NULL},
	{"sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, NULL, MOUNT_FATAL, NULL},
	{"devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=4m",
	 MOUNT_FATAL, NULL},
	{"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=20%",
	 MOUNT_FATAL, NULL},
	/* The firmware's TPM event log lives here. */
	{"securityfs", "/sys/kernel/security", "securityfs", NOSUID_NODEV_NOEXEC, NULL,
	 MOUNT_FATAL, NULL},
	/* containerd and kubelet need the unified hierarchy; services get a cgroup each.
	 * favordynmods (Linux 6.0): moving a process into a cgroup (each service start,
	 * every container) without waiting for an RCU grace period, at a small cost to
	 * every fork and exit (issue 15: the first service start took 0.25-0.35 s under
	 * TCG, 0.18 s with it; one boot each). */
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", NOSUID_NODEV_NOEXEC,
	 "nsdelegate,favordynmods", MOUNT_FATAL, "nsdelegate"},
	{"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666",
	 0, NULL},
	{"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 0, NULL},
	/* configfs-tsm (TDX and SEV-SNP reports): init/modules.list loads configfs only on
	 * those platforms (built in, it is always there). */
	{"configfs", "/sys/kernel/config", "configfs", NOSUID_NODEV_NOEXEC, NULL,
	 MOUNT_LATE | MOUNT_IF_KNOWN, NULL},
};

/* Whether /proc/filesystems lists type ("nodev\tconfigfs"). */
static bool fs_known(const char *type)
{
	char line[128];
	bool found = false;
	FILE *f = fopen("/proc/filesystems", "re");

	if (!f)
		return true; /* cannot tell: try the mount */
	while (!found && fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, '\t');

		name = name ? name + 1 : line;
		name[strcspn(name, "\n")] = '\0';
		found = streq(name, type);
	}
	fclose(f);
	return found;
}

static int mount_table_pass(bool late)
{
	int mounted = 0;

	for (size_t i = 0; i < ARRAY_SIZE(mount_table); i++) {
		const struct mount_entry *m = &mount_table[i];

		if (!!(m->how & MOUNT_LATE) != late)
			continue;
		if ((m->how & MOUNT_IF_KNOWN) && !fs_known(m->type)) {
			log_debug("mounts: %s not mounted: no %s in this kernel now",
				  m->where, m->type);
			continue;
		}
		if (mkdir(m->where, 0755) < 0 && errno != EEXIST)
			log_debug("mkdir %s: %m", m->where);
		if (mount(m->what, m->where, m->type, m->flags, m->options) == 0 ||
		    (errno == EINVAL && m->fallback_options &&
		     mount(m->what, m->where, m->type, m->flags, m->fallback_options) ==
			     0)) {
			mounted++;
			continue;
		}
		if (errno ==
		    EBUSY) /* already there (e.g. the kernel's devtmpfs automount) */
			continue;
		if (m->how & MOUNT_FATAL)
			fail_closed(
				"cannot mount %s on %s: %s. The kernel lacks %s support; "
				"use a kernel built for this image.",
				m->type, m->where, strerror(errno), m->type);
		log_warn_errno(-errno, "mount %s on %s (continuing without it)", m->type,
			       m->where);
	}
	return mounted;
}

int mount_early(void)
{
	return mount_table_pass(false);
}

int mount_late(void)
{
	return mount_table_pass(true);
}

int mount_report(void)
{
	char line[512], list[768] = "", where[256], type[64];
	bool found[ARRAY_SIZE(mount_table)] = {false};
	int missing = 0;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return log_errno(-errno, "open /proc/self/mountinfo");
	/* "36 35 98:0 / /mnt rw,noatime master:1 - ext3 /dev/root rw" */
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %255s", where) != 1 ||
		    sscanf(sep + 3, "%63s", type) != 1)
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(mount_table); i++)
			if (streq(where, mount_table[i].where) &&
			    streq(type, mount_table[i].type))
				found[i] = true;
	}
	fclose(f);

	for (size_t i = 0; i < ARRAY_SIZE(mount_table); i++) {
		size_t n = strlen(list);
		if (!found[i]) {
			missing++;
			continue;
		}
		snprintf(list + n, sizeof(list) - n, "%s%s %s", n ? ", " : "",
			 mount_table[i].where, mount_table[i].type);
	}
	log_info("mounts: %s", list);
	return missing;
}
