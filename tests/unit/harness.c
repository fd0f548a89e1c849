/* Runs every registered test in a child process and prints one line per test and a
 * summary "N passed, N failed[, N skipped]"; exits non-zero when any failed. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_TESTS 256
#define SKIP_MAX  512

static struct {
	const char *name;
	test_fn fn;
	unsigned limit;
} tests[MAX_TESTS];
static int ntests;
/* Shared with the test processes: the message of a SKIP, for the parent's SKIP line. */
static char *skip_msg;
/* The running test's process group, for a signal that ends the run. */
static volatile pid_t current;

void harness_register(const char *name, test_fn fn, unsigned limit)
{
	if (ntests < MAX_TESTS)
		tests[ntests++] =
			(typeof(tests[0])){name, fn, limit ? limit : HARNESS_LIMIT};
}

void harness_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (skip_msg)
		vsnprintf(skip_msg, SKIP_MAX, fmt, ap);
	va_end(ap);
	fprintf(stderr, "  skipped: %s\n", skip_msg ? skip_msg : fmt);
	exit(77);
}

/* CVM_TIMEOUT_SCALE, the rule of tests/timing.py: a positive factor, default 1. */
static double time_scale(void)
{
	const char *s = getenv("CVM_TIMEOUT_SCALE");
	char *end;
	double v;

	if (!s)
		return 1.0;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || isinf(v)) {
		fprintf(stderr, "CVM_TIMEOUT_SCALE=\"%s\": expected a positive number\n",
			s);
		exit(2);
	}
	return v;
}

/* A run stopped by ^C or SIGTERM takes the running test (and its helpers) with it. */
static void on_stop(int sig)
{
	if (current > 0)
		kill(-current, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Waits for the test process up to limit seconds; kills its process group after that.
 * Returns 0 with its status, 1 when it was killed for the limit, -1 on error. */
static int wait_limited(pid_t pid, double limit, int *status)
{
	struct timespec end, now, left;
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += (time_t)limit;
	end.tv_nsec += (long)((limit - (double)(time_t)limit) * 1e9);
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (left.tv_sec < 0)
			break;
		/* SIGCHLD is blocked: it stays pending until taken here, so none is lost. */
		if (sigtimedwait(&chld, NULL, &left) < 0 && errno != EAGAIN &&
		    errno != EINTR)
			return -1;
	}
	kill(-pid, SIGKILL);
	if (waitpid(pid, status, 0) < 0)
		return -1;
	return 1;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0, skipped = 0;
	double scale = time_scale();
	sigset_t chld, old;

	skip_msg = mmap(NULL, SKIP_MAX, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (skip_msg == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);

	for (int i = 0; i < ntests; i++) {
		double limit = tests[i].limit * scale;
		int status, r;
		pid_t pid;

		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		skip_msg[0] = '\0';
		fflush(NULL);
		pid = fork();
		if (pid == 0) {
			/* Its own process group: a test over its limit goes with its helpers. */
			setpgid(0, 0);
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			sigprocmask(SIG_SETMASK, &old, NULL);
			tests[i].fn();
			fflush(NULL);
			exit(0); /* runs atexit handlers: tests stop their helpers there */
		}
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		setpgid(pid, pid); /* also here: no window where the kill misses it */
		current = pid;
		r = wait_limited(pid, limit, &status);
		current = 0;
		if (r < 0) {
			perror("wait");
			return 2;
		}
		if (r == 1) {
			printf("FAIL %s: no result within %g s (its time limit), killed\n",
			       tests[i].name, limit);
			failed++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("PASS %s\n", tests[i].name);
			passed++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
			printf("SKIP %s: %s\n", tests[i].name,
			       skip_msg[0] ? skip_msg : "(no reason given)");
			skipped++;
		} else {
			if (WIFSIGNALED(status))
				printf("FAIL %s (signal %d)\n", tests[i].name,
				       WTERMSIG(status));
			else
				printf("FAIL %s\n", tests[i].name);
			failed++;
		}
		fflush(stdout);
	}
	printf("%d passed, %d failed", passed, failed);
	if (skipped)
		printf(", %d skipped", skipped);
	printf("\n");
	return failed ? 1 : 0;
}

int run_capture(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	int status;

	out[0] = '\0';
	if (!p)
		return -1;
	if (!fgets(out, (int)len, p))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
