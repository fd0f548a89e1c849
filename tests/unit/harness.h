/* A small unit test harness: TEST() registers a function, main() runs each in its own
 * forked process (a crash or a hang fails one test, not the run) and prints PASS/FAIL lines. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
/* limit: seconds the test may take before it is killed and fails, times CVM_TIMEOUT_SCALE
 * (tests/timing.py); 0 for HARNESS_LIMIT. */
void harness_register(const char *name, test_fn fn, unsigned limit);
__attribute__((noreturn, format(printf, 1, 2))) void harness_skip(const char *fmt, ...);
/* Runs a shell command; its first output line (newline removed) goes to out. Returns its
 * exit status, -1 when it did not run or exit. */
int run_capture(const char *cmd, char *out, size_t len);

/* Seconds a test may run (unscaled) unless it says otherwise with TEST_LIMIT. */
#define HARNESS_LIMIT 60

#define TEST(name) TEST_LIMIT(name, 0)

/* A test that needs more than HARNESS_LIMIT seconds, e.g. many TPM round trips. */
#define TEST_LIMIT(name, seconds)                                                        \
	static void name(void);                                                          \
	__attribute__((constructor)) static void register_##name(void)                   \
	{                                                                                \
		harness_register(#name, name, seconds);                                  \
	}                                                                                \
	static void name(void)

#define FAIL_AT(...)                                                                     \
	do {                                                                             \
		fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                        \
		fprintf(stderr, __VA_ARGS__);                                            \
		fprintf(stderr, "\n");                                                   \
		exit(1);                                                                 \
	} while (0)

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			FAIL_AT("CHECK(%s) failed", #cond);                              \
	} while (0)

#define CHECK_INT(got, want)                                                             \
	do {                                                                             \
		long long g_ = (long long)(got), w_ = (long long)(want);                 \
		if (g_ != w_)                                                            \
			FAIL_AT("%s == %lld, expected %lld", #got, g_, w_);              \
	} while (0)

#define CHECK_STR(got, want)                                                             \
	do {                                                                             \
		const char *g_ = (got), *w_ = (want);                                    \
		if (!g_ || strcmp(g_, w_) != 0)                                          \
			FAIL_AT("%s == \"%s\", expected \"%s\"", #got,                   \
				g_ ? g_ : "(null)", w_);                                 \
	} while (0)

#define CHECK_CONTAINS(hay, needle)                                                      \
	do {                                                                             \
		const char *h_ = (hay), *n_ = (needle);                                  \
		if (!h_ || !strstr(h_, n_))                                              \
			FAIL_AT("%s == \"%s\" does not contain \"%s\"", #hay,            \
				h_ ? h_ : "(null)", n_);                                 \
	} while (0)

/* Marks the current test as skipped (a prerequisite such as swtpm is missing). The message
 * goes on the SKIP line; tests/run.py fails a skip unless the message starts with "[id] "
 * for an id listed in tests/skips.py. */
#define SKIP(...) harness_skip(__VA_ARGS__)
