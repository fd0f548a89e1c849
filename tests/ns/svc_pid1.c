/* Test driver: the real supervisor loop as PID 1 of a pid namespace, with the services of
 * a test config, their cgroups under a scratch cgroup and their logs in a scratch dir. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>

#include "../../init/config.h"
#include "../../init/log.h"
#include "../../init/power.h"
#include "../../init/settings.h"
#include "../../init/supervise.h"
#include "../../init/svc.h"

static struct config cfg;
static struct settings settings;

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
	supervise_loop();
}
