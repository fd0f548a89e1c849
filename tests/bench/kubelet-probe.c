/* kubelet-probe: the benchmark's /usr/bin/kubelet, in both the cvminit and the systemd image.
 * On its first start of a boot it records, from inside the guest, the moment kubelet is
 * started (CLOCK_MONOTONIC) and what the boot cost up to then: PID 1's CPU time (schedstat,
 * and utime/stime/cutime/cstime), its RSS, the whole machine's busy CPU time (/proc/stat),
 * the processes that used the most CPU, and what /var is mounted from. The lines go to the
 * test channel, the second serial port /dev/ttyS1 (never to the console, which carries no
 * service output), as "[<seconds>.<microseconds>] bench-probe: ..." with CLOCK_MONOTONIC,
 * and to stdout (the service's log).
 * Then it execs the kubelet stand-in (tests/fixtures/kubelet-standin.c) with its own argv.
 *
 * Run as PID 1 (the /init of a one-file initrd, the bench's baseline boot) it reports the
 * same at once and powers off: what PID 1 has used before any init runs is the kernel's own
 * start (kernel_init is PID 1 until it execs /init), to subtract from the figures above.
 *
 * It marks the stand-in's start counter as already started once (when /var/lib/kubelet/
 * standin-starts does not exist) so the stand-in skips its one-time test probes (container
 * run, SIGKILL to containerd): the bench measures boots, not the node test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define STANDIN "/usr/libexec/kubelet-standin"
#define DONE	"/run/bench-probe.done"

#define CHANNEL "/dev/ttyS1"

static int chan = -1;

/* O_NOCTTY: a service is a session leader and must not take the port as its terminal;
 * O_NONBLOCK only for the open (no carrier wait). */
static void open_channel(void)
{
	chan = open(CHANNEL, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (chan < 0)
		printf("bench-probe: %s: %s (no test channel)\n", CHANNEL,
		       strerror(errno));
	else
		fcntl(chan, F_SETFL, fcntl(chan, F_GETFL) & ~O_NONBLOCK);
}

static void say(const char *fmt, ...)
{
	char buf[900];
	struct timespec ts;
	va_list ap;
	int n, stamp;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	stamp = snprintf(buf, sizeof(buf), "[%5lld.%06ld] ", (long long)ts.tv_sec,
			 ts.tv_nsec / 1000);
	n = stamp + snprintf(buf + stamp, sizeof(buf) - (size_t)stamp, "bench-probe: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (chan >= 0)
		(void)!write(chan, buf, (size_t)n);
	printf("%.*s", n - stamp, buf + stamp);
}

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

struct pstat {
	char comm[32];
	unsigned long long utime, stime, cutime, cstime;
};

/* Fields 14-17 of /proc/<pid>/stat; the name may hold spaces and parentheses. */
static int proc_stat(const char *pid, struct pstat *ps)
{
	char path[64], buf[1024];
	char *open_paren, *close_paren;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	open_paren = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (!open_paren || !close_paren || close_paren < open_paren)
		return -1;
	snprintf(ps->comm, sizeof(ps->comm), "%.*s", (int)(close_paren - open_paren - 1),
		 open_paren + 1);
	for (char *c = ps->comm; *c; c++)
		if (*c == ' ' || *c == ':')
			*c = '_';
	/* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime(14) stime cutime cstime */
	if (sscanf(close_paren + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
		   &ps->utime, &ps->stime, &ps->cutime, &ps->cstime) != 4)
		return -1;
	return 0;
}

static unsigned long long status_kb(const char *status, const char *key)
{
	const char *p = strstr(status, key);

	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

struct top {
	char comm[32];
	long pid;
	unsigned long long ticks;
};

/* PID 1's mappings that hold 64 KiB or more, to see where its RSS is: "maps
 * <start>:<rss_kb>:<anon_kb>:<name> ..." (name "-" for an anonymous mapping). */
static void pid1_maps(void)
{
	char line[512], out[1536] = "", name[128] = "-";
	unsigned long start = 0, rss = 0, anon = 0;
	size_t off = 0;
	FILE *f = fopen("/proc/1/smaps", "re");

	if (!f)
		return;
	for (;;) {
		bool more = fgets(line, sizeof(line), f) != NULL;
		unsigned long a, b;
		char path[128] = "";

		if (!more ||
		    sscanf(line, "%lx-%lx %*s %*s %*s %*s %127s", &a, &b, path) >= 2) {
			if (rss >= 64 && off < sizeof(out) - 64)
				off += (size_t)snprintf(out + off, sizeof(out) - off,
							" %lx:%lu:%lu:%s", start, rss,
							anon, name);
			if (!more)
				break;
			start = a;
			rss = anon = 0;
			/* "[heap]" as "heap": the bench's parser ends a record at a '['. */
			snprintf(name, sizeof(name), "%s",
				 path[0] ? path + (path[0] == '[') : "-");
			name[strcspn(name, "]")] = '\0';
			continue;
		}
		sscanf(line, "Rss: %lu kB", &rss);
		sscanf(line, "Anonymous: %lu kB", &anon);
	}
	fclose(f);
	say("maps%s", out);
}

static void report(void)
{
	char buf[4096], status[4096];
	struct timespec mono, boot;
	struct pstat p1;
	struct stat st;
	struct top top[8] = {0};
	DIR *d;
	struct dirent *e;
	unsigned long long sched_ns = 0, u, n, s, idle, io, irq, sirq, steal;
	int nproc = 0;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_BOOTTIME, &boot);
	say("start mono_us=%llu boottime_us=%llu hz=%ld",
	    (unsigned long long)mono.tv_sec * 1000000 +
		    (unsigned long long)mono.tv_nsec / 1000,
	    (unsigned long long)boot.tv_sec * 1000000 +
		    (unsigned long long)boot.tv_nsec / 1000,
	    sysconf(_SC_CLK_TCK));

	if (read_file("/proc/1/schedstat", buf, sizeof(buf)) > 0)
		sched_ns = strtoull(buf, NULL, 10);
	read_file("/proc/1/status", status, sizeof(status));
	if (proc_stat("1", &p1) == 0)
		say("pid1 comm=%s sched_ns=%llu utime=%llu stime=%llu cutime=%llu cstime=%llu "
		    "rss_kb=%llu hwm_kb=%llu rss_anon_kb=%llu rss_file_kb=%llu",
		    p1.comm, sched_ns, p1.utime, p1.stime, p1.cutime, p1.cstime,
		    status_kb(status, "VmRSS:"), status_kb(status, "VmHWM:"),
		    status_kb(status, "RssAnon:"), status_kb(status, "RssFile:"));

	/* The machine: "cpu user nice system idle iowait irq softirq steal ..." in ticks. */
	if (read_file("/proc/stat", buf, sizeof(buf)) > 0 &&
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &s, &idle,
		   &io, &irq, &sirq, &steal) == 8)
		say("cpu busy_ticks=%llu user_ticks=%llu system_ticks=%llu idle_ticks=%llu "
		    "iowait_ticks=%llu ncpu=%ld",
		    u + n + s + irq + sirq + steal, u + n, s + irq + sirq, idle, io,
		    sysconf(_SC_NPROCESSORS_ONLN));

	/* The processes (kernel threads included) that used the most CPU so far. */
	d = opendir("/proc");
	while (d && (e = readdir(d))) {
		struct pstat ps;
		unsigned long long t;
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (*end || pid <= 0 || proc_stat(e->d_name, &ps) < 0)
			continue;
		nproc++;
		t = ps.utime + ps.stime;
		for (int i = 0; i < 8; i++) {
			if (t > top[i].ticks) {
				memmove(&top[i + 1], &top[i],
					sizeof(top[0]) * (size_t)(7 - i));
				snprintf(top[i].comm, sizeof(top[i].comm), "%s", ps.comm);
				top[i].pid = pid;
				top[i].ticks = t;
				break;
			}
		}
	}
	if (d)
		closedir(d);
	{
		char line[700];
		size_t off = 0;

		line[0] = '\0';
		for (int i = 0; i < 8 && top[i].ticks; i++)
			off += (size_t)snprintf(line + off, sizeof(line) - off,
						" %s:%ld:%llu", top[i].comm, top[i].pid,
						top[i].ticks);
		say("top nproc=%d%s", nproc, line);
	}

	pid1_maps();

	/* /var: its device, and the device-mapper UUID (CRYPT-LUKS2-... when encrypted). */
	if (stat("/var", &st) == 0) {
		char path[96], uuid[256] = "-";

		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/uuid",
			 major(st.st_dev), minor(st.st_dev));
		if (read_file(path, uuid, sizeof(uuid)) > 0)
			uuid[strcspn(uuid, "\n")] = '\0';
		else
			snprintf(uuid, sizeof(uuid), "-");
		say("var dev=%u:%u dm_uuid=%s", major(st.st_dev), minor(st.st_dev), uuid);
	}
	say("end");
}

int main(int argc, char **argv)
{
	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getpid() == 1) {
		mkdir("/proc", 0555);
		mkdir("/dev", 0755);
		mount("proc", "/proc", "proc", 0, NULL);
		mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
		open_channel();
		say("baseline: PID 1 before any init");
		report();
		sync();
		reboot(RB_POWER_OFF);
		for (;;)
			pause();
	}
	if (access(DONE, F_OK) != 0) {
		int fd;

		open_channel();
		report();
		if (chan >= 0)
			close(chan);
		fd = open(DONE, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
	}

	/* The stand-in records its starts here; an existing count skips its one-time probes. */
	mkdir("/var/lib", 0755);
	mkdir("/var/lib/kubelet", 0755);
	if (access("/var/lib/kubelet/standin-starts", F_OK) != 0) {
		int fd = open("/var/lib/kubelet/standin-starts",
			      O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0) {
			(void)!write(fd, "1\n", 2);
			fsync(fd);
			close(fd);
		}
	}
	fflush(stdout);
	execv(STANDIN, argv);
	printf("bench-probe: exec %s: %s\n", STANDIN, strerror(errno));
	return 127;
}
