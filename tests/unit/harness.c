/* Runs every registered test in a child process and prints one line per test and a
 * summary "N passed, N failed[, N skipped]"; exits non-zero when any failed. */
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MAX_TESTS 256

static struct {
	const char *name;
	test_fn fn;
} tests[MAX_TESTS];
static int ntests;

void harness_register(const char *name, test_fn fn)
{
	if (ntests < MAX_TESTS)
		tests[ntests++] = (typeof(tests[0])){ name, fn };
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0, skipped = 0;

	for (int i = 0; i < ntests; i++) {
		int status;
		pid_t pid;

		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		fflush(NULL);
		pid = fork();
		if (pid == 0) {
			tests[i].fn();
			fflush(NULL);
			exit(0); /* runs atexit handlers: tests stop their helpers there */
		}
		if (pid < 0 || waitpid(pid, &status, 0) < 0) {
			perror("fork/wait");
			return 2;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("PASS %s\n", tests[i].name);
			passed++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
			printf("SKIP %s\n", tests[i].name);
			skipped++;
		} else {
			if (WIFSIGNALED(status))
				printf("FAIL %s (signal %d)\n", tests[i].name, WTERMSIG(status));
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
