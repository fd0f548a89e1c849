/* The boot timeline: a monotonic timestamp per stage, printed at the end of boot and
 * kept in /run/cvminit/timeline for the benchmark. */
#pragma once

#include <stdint.h>
#include <stddef.h>

#define TIMELINE_MAX 32

struct timeline {
	struct {
		const char *stage;
		uint64_t usec;	   /* CLOCK_MONOTONIC: 0 is (about) the kernel's start */
		uint64_t cpu_usec; /* PID 1's own CPU time then (0: not recorded) */
	} marks[TIMELINE_MAX];
	size_t n;
};

extern struct timeline boot_timeline;

/* Records that a stage ended now. */
void timeline_mark(const char *stage);
/* Records a stage with a given time (unit tests, and stages timed elsewhere). */
void timeline_add(struct timeline *t, const char *stage, uint64_t usec);
/* Formats the timeline as lines "<stage> <end ms> <duration ms>"; returns the length. */
size_t timeline_format(const struct timeline *t, char *buf, size_t len);
/* Logs the timeline and writes /run/cvminit/timeline. */
void timeline_finish(void);
