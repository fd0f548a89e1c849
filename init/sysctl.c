/* sysctl.d for PID 1: the root's files in name order, each "key = value" written to
 * /proc/sys; a failure is named (file:line key) and the next line goes on. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "sysctl.h"
#include "util.h"

#define SYSCTL_FILES_MAX 64
#define SYSCTL_NAME_MAX	 128
#define SYSCTL_LATER_MAX 32

/* Keys whose /proc/sys file did not exist yet (sysctl_apply_present()): a module of the
 * config brings them (net.bridge.* with br_netfilter); set by sysctl_apply_later(). */
static struct {
	const char *file; /* one of sysctl_apply's names[], kept until then */
	int line;
	bool ignore_failure;
	char key[SYSCTL_NAME_MAX];
	char value[SYSCTL_NAME_MAX];
} later[SYSCTL_LATER_MAX];
static int nlater;

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

int sysctl_parse_line(char *line, char **key, char **value, bool *ignore_failure)
{
	char *eq;

	line = trim(line);
	if (!*line || *line == '#' || *line == ';')
		return 0;
	*ignore_failure = *line == '-';
	if (*ignore_failure)
		line++;
	eq = strchr(line, '=');
	if (!eq)
		return -EINVAL;
	*eq = '\0';
	*key = trim(line);
	*value = trim(eq + 1);
	/* A key names a file under /proc/sys: no way out of it, nothing empty. */
	if (!**key || strstr(*key, "..") || **key == '/' || **key == '.')
		return -EINVAL;
	for (const char *c = *key; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-/", *c))
			return -EINVAL;
	return 1;
}

/* /proc/sys/<key> with dots as slashes (a key with slashes is taken as a path). */
static void key_path(const char *key, char *path, size_t len)
{
	bool slashes = strchr(key, '/') != NULL;
	size_t n = (size_t)snprintf(path, len, "/proc/sys/%s", key);

	if (!slashes)
		for (size_t i = strlen("/proc/sys/"); i < n && i < len; i++)
			if (path[i] == '.')
				path[i] = '/';
}

/* 1 set, 0 ignored ('-'), 2 kept for later (defer, and the key does not exist yet), or
 * a negative errno (logged). */
static int apply_one(const char *file, int line, const char *key, const char *value,
		     bool ignore_failure, bool defer)
{
	char path[256];
	_cleanup_close_ int fd = -1;
	size_t n = strlen(value);

	key_path(key, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && defer && nlater < SYSCTL_LATER_MAX &&
	    strlen(key) < SYSCTL_NAME_MAX && n < SYSCTL_NAME_MAX) {
		later[nlater].file = file;
		later[nlater].line = line;
		later[nlater].ignore_failure = ignore_failure;
		/* memmove: sysctl_apply_later() keeps an entry by passing its own strings. */
		memmove(later[nlater].key, key, strlen(key) + 1);
		memmove(later[nlater].value, value, n + 1);
		nlater++;
		log_debug("sysctl: %s:%d: %s waits for the config's modules", file, line,
			  key);
		return 2;
	}
	if (fd < 0 || write(fd, value, n) != (ssize_t)n) {
		int r = -errno;
		if (ignore_failure) {
			log_debug("sysctl: %s:%d: %s: %s (ignored: '-')", file, line, key,
				  strerror(-r));
			return 0;
		}
		log_error("sysctl: %s:%d: cannot set %s = %s: %s", file, line, key, value,
			  strerror(-r));
		return r;
	}
	log_debug("sysctl: %s = %s", key, value);
	return 1;
}

static int apply_file(const char *file, int *applied, int *deferred, bool defer)
{
	static char text[65536];
	int failed = 0, lineno = 0;
	ssize_t n;
	int fd = open(file, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		log_error("sysctl: cannot read %s: %s", file, strerror(errno));
		return 1;
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(text) - 1) {
		log_error("sysctl: %s: %s", file, n < 0 ? strerror(errno) : "too large");
		return 1;
	}
	text[n] = '\0';
	for (char *p = text, *next; p; p = next) {
		char *key, *value;
		bool ign;
		int r;

		next = strchr(p, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		r = sysctl_parse_line(p, &key, &value, &ign);
		if (r == 0)
			continue;
		if (r < 0) {
			log_error("sysctl: %s:%d: not \"key = value\"", file, lineno);
			failed++;
			continue;
		}
		r = apply_one(file, lineno, key, value, ign, defer);
		if (r < 0)
			failed++;
		else if (r == 2)
			(*deferred)++;
		else
			*applied += r;
	}
	return failed;
}

static int cmp_name(const void *a, const void *b)
{
	const char *x = strrchr(*(char *const *)a, '/') + 1;
	const char *y = strrchr(*(char *const *)b, '/') + 1;
	return strcmp(x, y);
}

static int apply_dirs(const char *const *dirs, bool defer)
{
	static const char *const root_dirs[] = {"/usr/lib/sysctl.d", "/etc/sysctl.d",
						NULL};
	static char names[SYSCTL_FILES_MAX][512];
	char *files[SYSCTL_FILES_MAX];
	int nfiles = 0, failed = 0, applied = 0, deferred = 0;

	if (!dirs)
		dirs = root_dirs;
	for (int d = 0; dirs[d]; d++) {
		DIR *dir = opendir(dirs[d]);
		struct dirent *e;

		while (dir && (e = readdir(dir))) {
			size_t len = strlen(e->d_name);
			int same = -1;

			if (len < 6 || !streq(e->d_name + len - 5, ".conf") ||
			    len > SYSCTL_NAME_MAX)
				continue;
			/* A later directory's file replaces an earlier one of that name. */
			for (int i = 0; i < nfiles; i++)
				if (streq(strrchr(files[i], '/') + 1, e->d_name))
					same = i;
			if (same < 0 && nfiles == SYSCTL_FILES_MAX) {
				log_error("sysctl: more than %d files: %s/%s skipped",
					  SYSCTL_FILES_MAX, dirs[d], e->d_name);
				failed++;
				continue;
			}
			if (same < 0)
				same = nfiles++;
			snprintf(names[same], sizeof(names[0]), "%.200s/%.128s", dirs[d],
				 e->d_name);
			files[same] = names[same];
		}
		if (dir)
			closedir(dir);
	}
	qsort(files, (size_t)nfiles, sizeof(files[0]), cmp_name);
	for (int i = 0; i < nfiles; i++)
		failed += apply_file(files[i], &applied, &deferred, defer);
	if (nfiles && deferred)
		log_msg(failed ? LOG_ERR : LOG_INFO,
			"sysctl: %d setting(s) applied from %d file(s), %d failed, %d wait for the config's modules",
			applied, nfiles, failed, deferred);
	else if (nfiles)
		log_msg(failed ? LOG_ERR : LOG_INFO,
			"sysctl: %d setting(s) applied from %d file(s), %d failed",
			applied, nfiles, failed);
	return failed;
}

int sysctl_apply(const char *const *dirs)
{
	return apply_dirs(dirs, false);
}

int sysctl_apply_present(const char *const *dirs)
{
	return apply_dirs(dirs, true);
}

int sysctl_apply_later(bool final)
{
	int failed = 0, applied = 0, n = nlater;

	nlater = 0;
	for (int i = 0; i < n; i++) {
		/* Not final: a key still missing is kept again (at an index <= i). */
		int r = apply_one(later[i].file, later[i].line, later[i].key,
				  later[i].value, later[i].ignore_failure, !final);
		if (r < 0)
			failed++;
		else if (r != 2)
			applied += r;
	}
	if (final && n)
		log_msg(failed ? LOG_ERR : LOG_INFO,
			"sysctl: %d setting(s) applied after the config's modules, %d failed",
			applied, failed);
	else if (applied || failed)
		log_msg(failed ? LOG_ERR : LOG_INFO,
			"sysctl: %d setting(s) applied once the NIC drivers were loaded, %d failed, %d wait for the config's modules",
			applied, failed, nlater);
	return failed;
}
