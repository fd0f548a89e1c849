/* Test driver: the real supervisor loop as PID 1 of a pid namespace, with the services of
 * a test config, their cgroups under a scratch cgroup and their logs in a scratch dir. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>

#include "../../init/config.h"
#include "../../init/log.h"
#include "../../init/power.h"
#include "../../init/settings.h"
#include "../../init/supervise.h"
#include "../../init/svc.h"

static struct config cfg;
static struct settings settings;

/*
 * When the config has an "early" service: a stand-in for cvminit's loader of the
 * config's modules (init/modules.c needs libkmod and a kernel's modules, which a pid
 * namespace on the build host cannot load): a child that runs 1 s and exits 7, started
 * before the loop, reaped by the loop through the child hook when it ends first, and
 * waited for by the gate before the first service that is not early, as main() does.
 */
static pid_t loader;
static bool loader_reaped;
static int loader_status;

static bool loader_hook(pid_t pid, int status, const struct rusage *ru _unused_)
{
	if (pid != loader || loader_reaped)
		return false;
	loader_reaped = true;
	loader_status = status;
	log_info("svc_pid1: loader %d reaped by the loop", (int)pid);
	return true;
}

static void loader_gate(void)
{
	int status = loader_status;
	bool by_loop = loader_reaped;

	if (!by_loop)
		while (waitpid(loader, &status, 0) < 0 && errno == EINTR)
			;
	log_info("svc_pid1: gate: loader exit %d, %s", WEXITSTATUS(status),
		 by_loop ? "reaped by the loop" : "waited for");
}

static void loader_start(void)
{
	bool early = false;

	for (int i = 0; i < cfg.nsvc; i++)
		early |= cfg.svc[i].early;
	if (!early)
		return;
	supervise_set_child_hook(loader_hook);
	svc_set_gate_hook(loader_gate);
	loader = fork();
	if (loader == 0) {
		nanosleep(&(struct timespec){1, 0}, NULL);
		_exit(7);
	}
	log_info("svc_pid1: loader %d started", (int)loader);
}

int main(int argc, char **argv)
{
	static char text[CONFIG_ARENA];
	char err[CONFIG_ERR_MAX];
	ssize_t n;
	int fd, r;

	if (argc != 6) {
		fprintf(stderr,
			"usage: %s CONFIG CGROUP-ROOT LOG-DIR KMSG-FILE CONSOLE-FILE\n"
			"run as PID 1 of a pid+mount namespace (unshare --pid --fork --mount "
			"--mount-proc)\n",
			argv[0]);
		return 2;
	}
	if (getpid() != 1) {
		fprintf(stderr, "svc_pid1: must be PID 1 of a pid namespace\n");
		return 2;
	}
	/* log.c writes PID 1's records to /dev/console: in this private mount namespace
	 * that is the console file, not the machine's console. */
	if (access("/dev/console", F_OK) == 0) {
		if (mount(argv[5], "/dev/console", NULL, MS_BIND, NULL) < 0) {
			perror("svc_pid1: bind the console file over /dev/console");
			return 2;
		}
	} else {
		fd = open(argv[5], O_WRONLY | O_APPEND);
		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
			return 2;
	}

	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return 2;
	text[n] = '\0';
	settings_init(&settings);
	if (config_parse(&cfg, &settings, text, argv[1], err, sizeof(err)) < 0) {
		fprintf(stderr, "svc_pid1: %s\n", err);
		return 2;
	}
	power_init(&settings);
	/* PID 1 of its namespace: the same sink as cvminit's (run.py reads its lines). */
	log_use_console();
	log_set_max_level(settings.log_level);
	log_info("svc_pid1: %d services, shutdown_timeout %u s", cfg.nsvc,
		 settings.shutdown_timeout);

	/* The same order as main(): signals before any child, then the services. */
	if (supervise_init() < 0)
		return 2;
	r = svc_init(&cfg, &(struct svc_paths){.cgroup_root = argv[2],
					       .log_dir = argv[3],
					       .kmsg = argv[4]});
	if (r < 0)
		return 2;
	loader_start();
	supervise_loop();
}
