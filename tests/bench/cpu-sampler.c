/* cpu-sampler: for the benchmark's systemd reference only (bench-sampler.service, started in
 * the initrd and kept across the switch-root), what used the CPU while the boot ran: every
 * INTERVAL seconds the machine's busy and idle time (/proc/stat), the cgroup CPU time
 * (cpu.stat usage_usec) of init.scope (PID 1), of system.slice as a whole and of each cgroup
 * right under it, whether udev has events queued (/run/udev/queue) and how many uevents the
 * kernel has sent (/sys/kernel/uevent_seqnum), appended as one line to a file in /run
 * (tmpfs: no journal, no console, no disk while the boot is measured; systemd moves the
 * initrd's /run into the root at the switch-root, with the file open here):
 *
 *   s <mono_us> busy=<ticks> idle=<ticks> q=<0|1> seq=<uevents> sys=<usec> <cgroup>=<v> ...
 *
 * A cgroup is written only when its value changed since its last line (values are totals
 * since the cgroup was made): <v> is "<usec>", "!<usec>" when the cgroup is a new one under
 * a name seen before (the initrd's udevd stopped, the root's started: its total starts
 * again), "-" once when it is gone (a unit stopped: its CPU since the last line is only in
 * sys=). bench-report prints the file after kubelet has started; the bench's parser
 * (tests/bench/bench.py, parse_samples(), gap_cpu()) tells the path's gaps from it.
 *
 * The unit runs it as "@cpu-sampler": systemd's PID 1 spares a process whose argv[0]
 * starts with '@' when it kills the initrd's processes at the switch-root. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef CG /* another tree only to try it on a host without cgroup2 */
#define CG "/sys/fs/cgroup"
#endif
#define MAX_CG 256
/* A sample (some 30 cgroup files) cost about 0.15 s of CPU under TCG in the first trial
 * (one a second: 10 s in a 65 s stretch of the root's start): every 5 s it is a small part
 * of the boot it measures, and the gaps it explains are longer. Sleeps are relative: a
 * sampler starved for a while takes one sample, not a burst of catch-up ones. */
#ifndef INTERVAL
#define INTERVAL 5
#endif
#define MAX_SAMPLES 240

struct cg {
	char name[96];
	unsigned long long usec;
	unsigned long long ino; /* the cgroup directory's: a new cgroup has a new one */
	int present, gone;
};

static struct cg seen[MAX_CG];
static int nseen;

static int read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return (int)n;
}

static int usage_usec(const char *dir, unsigned long long *usec)
{
	char path[300], buf[512];

	snprintf(path, sizeof(path), "%s/cpu.stat", dir);
	if (read_small(path, buf, sizeof(buf)) < 0 || strncmp(buf, "usage_usec ", 11))
		return -1;
	*usec = strtoull(buf + 11, NULL, 10);
	return 0;
}

static struct cg *find_cg(const char *name)
{
	int i;

	for (i = 0; i < nseen; i++)
		if (!strcmp(seen[i].name, name))
			return &seen[i];
	if (nseen == MAX_CG)
		return NULL;
	snprintf(seen[nseen].name, sizeof(seen[nseen].name), "%s", name);
	seen[nseen].ino = 0;
	seen[nseen].gone = 1; /* never seen: its first value is not a restart */
	return &seen[nseen++];
}

static size_t put(char *out, size_t len, size_t size, const char *fmt, const char *name,
		  unsigned long long v)
{
	int n = snprintf(out + len, size - len, fmt, name, v);

	return n > 0 && (size_t)n < size - len ? len + n : len;
}

/* Appends " name=usec" when the value changed since this cgroup's last line, "=!usec" for
 * a new cgroup under a known name (ino differs from the one seen). */
static size_t put_cg(char *out, size_t len, size_t size, const char *name,
		     unsigned long long ino, unsigned long long v)
{
	struct cg *c = find_cg(name);
	int restarted;

	if (!c)
		return len;
	restarted = c->ino && c->ino != ino;
	c->present = 1;
	if (!restarted && !c->gone && c->usec == v)
		return len;
	/* A name back after "-" is a new cgroup too, unless it was never seen. */
	restarted = restarted || (c->gone && c->ino);
	c->gone = 0;
	c->ino = ino;
	c->usec = v;
	return put(out, len, size, restarted ? " %s=!%llu" : " %s=%llu", name, v);
}

static size_t sample(char *out, size_t size)
{
	unsigned long long t[8] = {0}, v;
	char buf[4096], path[300];
	struct timespec ts;
	struct dirent *d;
	size_t len;
	DIR *dir;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (read_small("/proc/stat", buf, sizeof(buf)) > 0)
		sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &t[0], &t[1],
		       &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
	if (read_small("/sys/kernel/uevent_seqnum", buf, sizeof(buf)) > 0)
		v = strtoull(buf, NULL, 10);
	else
		v = 0;
	len = snprintf(out, size, "s %lld busy=%llu idle=%llu q=%d seq=%llu",
		       (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
		       t[0] + t[1] + t[2] + t[5] + t[6] + t[7], t[3] + t[4],
		       access("/run/udev/queue", F_OK) == 0, v);
	if (!usage_usec(CG "/system.slice", &v))
		len = put(out, len, size, " %s=%llu", "sys", v);
	for (i = 0; i < nseen; i++)
		seen[i].present = 0;
	if (!usage_usec(CG "/init.scope", &v))
		len = put_cg(out, len, size, "init.scope", 1, v);
	dir = opendir(CG "/system.slice");
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.' || d->d_type != DT_DIR)
			continue;
		snprintf(path, sizeof(path), CG "/system.slice/%s", d->d_name);
		if (!usage_usec(path, &v))
			len = put_cg(out, len, size, d->d_name, d->d_ino, v);
	}
	if (dir)
		closedir(dir);
	for (i = 0; i < nseen; i++)
		if (!seen[i].present && !seen[i].gone) {
			seen[i].gone = 1;
			len = put(out, len, size, " %s=-", seen[i].name, 0);
		}
	if (len < size - 1)
		out[len++] = '\n';
	return len;
}

int main(int argc, char **argv)
{
	struct timespec pause = {.tv_sec = INTERVAL};
	char line[16384];
	int fd, i;

	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	/* Bounded: the report comes within minutes; a boot that never gets there ends too. */
	for (i = 0; i < MAX_SAMPLES; i++) {
		size_t n = sample(line, sizeof(line));

		if (write(fd, line, n) != (ssize_t)n)
			return 1;
		nanosleep(&pause, NULL);
	}
	return 0;
}
