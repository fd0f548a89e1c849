/* /var and the writable paths. For now the state partition is plain ext4; the sealed LUKS2
 * layer goes under it with the "state" work (issue 6), through the same entry points. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <blkid/blkid.h>

#include "log.h"
#include "partition.h"
#include "power.h"
#include "state.h"

/* Which filesystem the partition holds: 1 and its type in type, 0 when blank, or a
 * negative errno (-EBUSY for an ambiguous probe: two signatures, never guess). */
static int probe_fs(const char *dev, char *type, size_t len)
{
	const char *v = NULL;
	blkid_probe pr;
	int r;

	pr = blkid_new_probe_from_filename(dev);
	if (!pr)
		return -errno ? -errno : -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
	blkid_probe_enable_partitions(pr, 1); /* a partition table inside counts as data */
	r = blkid_do_safeprobe(pr);
	if (r == 0 && blkid_probe_lookup_value(pr, "TYPE", &v, NULL) == 0)
		snprintf(type, len, "%s", v);
	else if (r == 0 && blkid_probe_lookup_value(pr, "PTTYPE", &v, NULL) == 0)
		snprintf(type, len, "partition table %s", v);
	blkid_free_probe(pr);
	if (r == -2)
		return -EBUSY;
	if (r < 0)
		return -EIO;
	return r == 0 ? 1 : 0;
}

static int run_wait(char *const argv[])
{
	char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void find_state(struct part *out)
{
	struct part parts[PART_MAX];
	int n = part_scan(parts, ARRAY_SIZE(parts)), found = 0;

	for (int i = 0; i < n; i++) {
		if (parts[i].type != DPS_VAR)
			continue;
		if (found++)
			fail_closed("two state partitions (type var %s): %s and %s; a node has "
				    "exactly one", parts[i].type_uuid, out->dev, parts[i].dev);
		*out = parts[i];
	}
	if (!found)
		fail_closed("no state partition (type var 4d21b016-b534-45c2-a9fb-5c16e091fd2d) "
			    "on any disk: the image or the state disk is missing");
}

int state_mount(void)
{
	char *mkfs[] = { "/usr/sbin/mkfs.ext4", "-q", "-L", "state", "-E", "nodiscard", NULL,
			 NULL };
	char type[64] = "";
	struct part p;
	int made = 0, r;

	find_state(&p);
	r = probe_fs(p.dev, type, sizeof(type));
	if (r < 0)
		fail_closed("cannot read the state partition %s: %s", p.dev,
			    r == -EBUSY ? "more than one signature on it" : strerror(-r));
	if (r == 0) {
		log_notice("state: %s is blank: first boot, making ext4", p.dev);
		mkfs[6] = p.dev;
		r = run_wait(mkfs);
		if (r != 0)
			fail_closed("mkfs.ext4 on the state partition %s failed (status %d)", p.dev,
				    r);
		made = 1;
	} else if (strcmp(type, "ext4") != 0) {
		fail_closed("the state partition %s holds %s, not ext4: refusing to format over "
			    "it. Give the node an empty state partition or the disk it made.",
			    p.dev, type);
	}

	mkdir(STATE_MOUNT, 0755);
	if (mount(p.dev, STATE_MOUNT, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME,
		  "errors=remount-ro") < 0)
		fail_closed("cannot mount the state partition %s (ext4) on %s: %s", p.dev,
			    STATE_MOUNT, strerror(errno));
	log_info("state: %s (partuuid %s) mounted on %s%s", p.dev, p.uuid, STATE_MOUNT,
		 made ? " (new filesystem)" : "");
	return made;
}

static void mkdir_p(const char *path, mode_t mode)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *s = buf + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(buf, 0755);
			*s = '/';
		}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		log_warn_errno(-errno, "state: mkdir %s", buf);
}

/* An overlay over a read-only directory of the root, its changes kept in /var. */
static int overlay_writable(const char *dir, const char *name)
{
	char upper[128], work[128], opts[512];

	snprintf(upper, sizeof(upper), "/var/lib/cvminit/overlay/%s/upper", name);
	snprintf(work, sizeof(work), "/var/lib/cvminit/overlay/%s/work", name);
	mkdir_p(upper, 0755);
	mkdir_p(work, 0700);
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", dir, upper, work);
	if (mount("overlay", dir, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
		return log_errno(-errno, "state: overlay on %s", dir);
	log_info("state: %s is writable (changes kept in %s)", dir, upper);
	return 0;
}

void state_writable_paths(void)
{
	static const char *const var_dirs[] = {
		"/var/log", "/var/lib/containerd", "/var/lib/kubelet", "/var/lib/cni",
		"/var/tmp",
	};

	for (size_t i = 0; i < ARRAY_SIZE(var_dirs); i++)
		mkdir_p(var_dirs[i], 0755);
	chmod("/var/tmp", 01777);
	/* kubelet writes its kubeconfig and PKI under /etc/kubernetes, CNI plugins their
	 * config under /etc/cni; the root keeps its own files underneath. */
	if (overlay_writable("/etc/kubernetes", "etc-kubernetes") < 0 ||
	    overlay_writable("/etc/cni", "etc-cni") < 0)
		fail_closed("cannot make /etc/kubernetes and /etc/cni writable: kubelet would "
			    "fail; is the overlay module in the initrd?");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		log_warn_errno(-errno, "state: tmpfs on /tmp");
}

/* Placeholder until the LUKS2 state lands (issue 6): the partition stays plain ext4. */
void state_open(struct measurer *m, const struct settings *s)
{
	(void)m;
	(void)s;
}

void state_close(void)
{
}
