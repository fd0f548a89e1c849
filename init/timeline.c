/* Boot timeline. Times are CLOCK_MONOTONIC, which starts near the kernel's own start, so
 * the first mark also tells how long the kernel took to reach PID 1. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "timeline.h"

struct timeline boot_timeline;

static uint64_t clock_usec(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void timeline_add(struct timeline *t, const char *stage, uint64_t usec)
{
	if (t->n < TIMELINE_MAX)
		t->marks[t->n++] = (typeof(t->marks[0])){stage, usec, 0};
}

void timeline_mark(const char *stage)
{
	struct timeline *t = &boot_timeline;

	timeline_add(t, stage, clock_usec(CLOCK_MONOTONIC));
	/* PID 1's own CPU (not its children's): how much of a stage is cvminit's work and
	 * how much waiting (for the TPM, devices, the kernel). */
	if (t->n > 0)
		t->marks[t->n - 1].cpu_usec = clock_usec(CLOCK_PROCESS_CPUTIME_ID);
}

size_t timeline_format(const struct timeline *t, char *buf, size_t len)
{
	size_t off = 0;
	uint64_t prev = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < t->n && off < len; i++) {
		uint64_t at = t->marks[i].usec;
		int n = snprintf(buf + off, len - off, "%s %llu.%03llu %llu.%03llu\n",
				 t->marks[i].stage, (unsigned long long)(at / 1000),
				 (unsigned long long)(at % 1000),
				 (unsigned long long)((at - prev) / 1000),
				 (unsigned long long)((at - prev) % 1000));
		if (n < 0)
			break;
		off += (size_t)n;
		prev = at;
	}
	return off < len ? off : len - 1;
}

void timeline_finish(void)
{
	const struct timeline *t = &boot_timeline;
	char buf[TIMELINE_MAX * 64];
	size_t len;
	int fd;

	if (t->n == 0)
		return;
	timeline_mark("boot-complete");
	log_info(
		"boot complete in %llu ms (%llu ms since the kernel started)",
		(unsigned long long)((t->marks[t->n - 1].usec - t->marks[0].usec) / 1000),
		(unsigned long long)(t->marks[t->n - 1].usec / 1000));
	for (size_t i = 0; i < t->n; i++) {
		uint64_t d = t->marks[i].usec - (i ? t->marks[i - 1].usec : 0);
		log_info(
			"timeline: %s %llu.%03llu ms (+%llu.%03llu ms) cpu %llu.%03llu ms",
			t->marks[i].stage, (unsigned long long)(t->marks[i].usec / 1000),
			(unsigned long long)(t->marks[i].usec % 1000),
			(unsigned long long)(d / 1000), (unsigned long long)(d % 1000),
			(unsigned long long)(t->marks[i].cpu_usec / 1000),
			(unsigned long long)(t->marks[i].cpu_usec % 1000));
	}

	len = timeline_format(t, buf, sizeof(buf));
	mkdir("/run/cvminit", 0755);
	fd = open("/run/cvminit/timeline", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  0644);
	if (fd < 0) {
		log_warn_errno(-errno, "write /run/cvminit/timeline");
		return;
	}
	if (write(fd, buf, len) != (ssize_t)len)
		log_warn_errno(-errno, "write /run/cvminit/timeline");
	close(fd);
}
