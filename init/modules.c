/* Module loading with libkmod. libkmod's own messages are routed into our log, so a
 * missing module or a bad signature shows up with the module's name. */
#define _GNU_SOURCE /* unshare */
#include <dirent.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libkmod.h>

#include "../lib/file.h"
#include "log.h"
#include "modules.h"
#include "power.h"

struct module_entry {
	const char *name;
	bool required;
	/* Loaded by a child process while PID 1 sets up the TPM and the root; waited for
	 * before the state volume is opened (modules_wait()). */
	bool background;
	/* Tried only where a device present asks for it: a modalias under /sys/bus/{pci,
	 * virtio,vmbus}/devices resolves to it (a disk driver for another cloud's disk
	 * interface would only cost its load, 0.1-0.3 s under emulation). */
	bool device;
	/* Tried only where the platform can have it: a /proc/cpuinfo flag or a path that
	 * exists (any; none given: always). */
	const char *cpu_flag;
	const char *exists[2];
};

/* Generated from init/modules.list by the Makefile: one source for init and initrd. */
static const struct module_entry module_table[] = {
#include "modules-table.h"
};

static void kmod_log(void *data _unused_, int priority, const char *file _unused_,
		     int line _unused_, const char *fn _unused_, const char *format,
		     va_list args)
{
	char text[512];

	vsnprintf(text, sizeof(text), format, args);
	text[strcspn(text, "\n")] = '\0';
	/* libkmod reports failed lookups (e.g. of a built-in module) at notice and info
	 * level; our own summary says what matters, so those are debug here. */
	log_msg(priority <= LOG_WARNING ? priority : LOG_DEBUG, "kmod: %s", text);
}

/*
 * libkmod reads /proc/cmdline when it builds its context and applies what it finds there
 * (modprobe.blacklist=, <module>.<option>=) to every module it loads. PID 1 loads the
 * boot's modules before the TPM is up, so before the command line is measured, and the
 * host writes the loader's command line: libkmod must never see it. Module options come
 * only from the measured initrd's and root's modprobe.d. /dev/null is bound over
 * /proc/cmdline while the context is made (it reads the file there and never again).
 */
static struct kmod_ctx *kmod_new_without_cmdline(void)
{
	struct kmod_ctx *ctx;

	if (mount("/dev/null", "/proc/cmdline", NULL, MS_BIND, NULL) < 0) {
		log_errno(-errno, "modules: cannot hide /proc/cmdline from libkmod");
		return NULL;
	}
	ctx = kmod_new(NULL, NULL);
	if (umount2("/proc/cmdline", MNT_DETACH) < 0)
		log_errno(-errno, "modules: cannot unmount /dev/null from /proc/cmdline");
	return ctx;
}

static struct kmod_ctx *kmod_open(void)
{
	struct kmod_ctx *ctx = kmod_new_without_cmdline();

	if (!ctx)
		return NULL;
	kmod_set_log_fn(ctx, kmod_log, NULL);
	kmod_set_log_priority(ctx, log_get_max_level());
	kmod_load_resources(ctx);
	return ctx;
}

/* Inserts mod with its dependencies and drops the reference. No flags: a module already
 * in the kernel (loaded or built in) is success (0), and softdeps and blacklist are
 * applied (> 0: blacklisted, not an error of ours, but not loaded). */
static int insert_module(struct kmod_module *mod, const char *options)
{
	int r = kmod_module_probe_insert_module(mod, 0, options, NULL, NULL, NULL);

	if (r > 0)
		log_warn("modules: %s is blacklisted", kmod_module_get_name(mod));
	kmod_module_unref(mod);
	return r;
}

/* Loads one module (a name or an alias) with its dependencies. Returns 1 when something
 * was inserted or was there already, 0 when nothing matches, negative errno on error. */
static int load_one(struct kmod_ctx *ctx, const char *name, const char *options)
{
	struct kmod_list *list = NULL, *it;
	int r, matched = 0;

	r = kmod_module_new_from_lookup(ctx, name, &list);
	if (r < 0)
		return r;
	kmod_list_foreach(it, list)
	{
		r = insert_module(kmod_module_get_module(it), options);
		if (r == 0)
			matched = 1;
		if (r < 0 && !matched) {
			kmod_module_unref_list(list);
			return r;
		}
	}
	kmod_module_unref_list(list);
	return matched;
}

/* Loads one module of init/modules.list by its name: modules.dep or modules.builtin only,
 * never the alias index, whose wildcard search is what a built-in or missing name costs
 * kmod_module_new_from_lookup() (several ms each under TCG; issue 15). Returns as
 * load_one(). */
static int load_named(struct kmod_ctx *ctx, const char *name)
{
	struct kmod_module *mod = NULL;
	int r = kmod_module_new_from_name_lookup(ctx, name, &mod);

	if (r < 0 || !mod)
		return r;
	r = insert_module(mod, NULL);
	return r < 0 ? r : r == 0;
}

/* Why the kernel refused a module with EPERM, when it is because it is locked down
 * (Secure Boot on, or lockdown= on the command line): a locked-down kernel loads only
 * signed modules, and the image stores them without their signatures unless it was
 * built with MODULE_SIGNATURES=keep (image/mkinitrd.py, strip_signature). "" otherwise. */
static const char *refusal_hint(int r)
{
	char mode[128];

	if (r != -EPERM ||
	    read_file_text("/sys/kernel/security/lockdown", mode, sizeof(mode)) <= 0 ||
	    strstr(mode, "[none]"))
		return "";
	return "; the kernel is locked down (/sys/kernel/security/lockdown) and loads only "
	       "signed modules: build the image with MODULE_SIGNATURES=keep, or boot with "
	       "Secure Boot off (docs/clouds.md)";
}

/* Set in a loader child (batch_start()): a required module that fails is logged and
 * counted there, and PID 1 fails closed when it sees the child's exit status. */
static bool loader_child;
static int loader_failed;

/* Loads one module of the boot; returns 1 if it is in the kernel now, 0 if an optional
 * one is missing; fails closed for a required one. */
static int load_boot_module(struct kmod_ctx *ctx, const char *name, bool required,
			    bool by_name, const char *release)
{
	struct timespec a, b;
	long long ms;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &a);
	r = by_name ? load_named(ctx, name) : load_one(ctx, name, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000LL + (b.tv_nsec - a.tv_nsec) / 1000000;
	if (r > 0) {
		/* The slow ones by name: module loading is the longest stage of the boot. */
		if (ms >= 100)
			log_info("modules: %s loaded in %lld ms (with its dependencies)",
				 name, ms);
		else
			log_debug("modules: %s loaded in %lld ms", name, ms);
		return 1;
	}
	if (r == 0)
		r = -ENOENT;
	if (required && loader_child) {
		loader_failed++;
		return log_error(
			       "modules: cannot load kernel module %s: %s (kernel %s)%s",
			       name, strerror(-r), release, refusal_hint(r)),
		       0;
	}
	if (required)
		fail_closed(
			"cannot load kernel module %s: %s%s. The initrd must carry it for "
			"kernel %s (see init/modules.list and the config's module lines).",
			name, strerror(-r), refusal_hint(r), release);
	log_warn("modules: %s (optional, skipped): %s%s", name, strerror(-r),
		 refusal_hint(r));
	return 0;
}

static bool cpu_has_flag(const char *flag)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		for (char *w = strtok(strchr(line, ':') ?: line, " :\n"); w && !found;
		     w = strtok(NULL, " \n"))
			found = streq(w, flag);
		break;
	}
	fclose(f);
	return found;
}

/* Whether the platform can have the module: a guest driver for another platform would
 * be inserted only to fail its probe (about 0.1 s each under emulation). */
static bool module_wanted(const struct module_entry *m)
{
	if (!m->cpu_flag && !m->exists[0])
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(m->exists); i++)
		if (m->exists[i] && access(m->exists[i], F_OK) == 0)
			return true;
	return m->cpu_flag && cpu_has_flag(m->cpu_flag);
}

/* Whether a device's modalias resolves to the module, looked up at this moment: the
 * devices of a bus driver loaded just before (virtio_pci's) count. A device that has a
 * driver already asks for none (and costs no alias lookup). */
static bool module_has_device(struct kmod_ctx *ctx, const char *name)
{
	static const char *const buses[] = {"pci", "virtio", "vmbus"};
	bool found = false;

	for (size_t b = 0; b < ARRAY_SIZE(buses) && !found; b++) {
		char dir[64], path[352], alias[256];
		struct dirent *e;
		DIR *d;

		snprintf(dir, sizeof(dir), "/sys/bus/%s/devices", buses[b]);
		d = opendir(dir);
		while (d && !found && (e = readdir(d))) {
			struct kmod_list *list = NULL, *it;
			ssize_t n;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s/driver", dir, e->d_name);
			if (access(path, F_OK) == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s/modalias", dir, e->d_name);
			n = read_file_text(path, alias, sizeof(alias));
			if (n <= 0)
				continue;
			alias[strcspn(alias, "\n")] = '\0';
			if (kmod_module_new_from_lookup(ctx, alias, &list) < 0)
				continue;
			kmod_list_foreach(it, list)
			{
				struct kmod_module *mod = kmod_module_get_module(it);

				found |= streq(kmod_module_get_name(mod), name);
				kmod_module_unref(mod);
			}
			kmod_module_unref_list(list);
		}
		if (d)
			closedir(d);
	}
	return found;
}

/* Loads table entries (those of one kind: background or not), then extra names (all
 * required), in one libkmod context; what says which list it is in the summary line.
 * A required one that fails: fail_closed() in PID 1, exit status 1 in a loader child. */
static int load_modules(const struct module_entry *table, size_t ntable, bool background,
			char *const *extra, int nextra, const char *what)
{
	struct utsname u;
	struct kmod_ctx *ctx;
	int loaded = 0, total = 0, skipped = 0;

	uname(&u);
	ctx = kmod_open();
	if (!ctx && loader_child)
		_exit(1);
	if (!ctx)
		fail_closed(
			"cannot set up libkmod for /lib/modules/%s: out of memory or the "
			"initrd has no module index",
			u.release);

	for (size_t i = 0; i < ntable; i++) {
		if (table[i].background != background)
			continue;
		if (!module_wanted(&table[i])) {
			log_debug("modules: %s skipped: not this platform's",
				  table[i].name);
			skipped++;
			continue;
		}
		if (table[i].device && !module_has_device(ctx, table[i].name)) {
			log_debug("modules: %s skipped: no device for it", table[i].name);
			skipped++;
			continue;
		}
		total++;
		loaded += load_boot_module(ctx, table[i].name, table[i].required, true,
					   u.release);
	}
	for (int i = 0; i < nextra; i++, total++)
		loaded += load_boot_module(ctx, extra[i], true, false, u.release);
	kmod_unref(ctx);
	log_info(
		"modules: %d %s module(s) loaded, %d optional missing, %d not for this platform or its devices, kernel %s",
		loaded, what, total - loaded, skipped, u.release);
	return loaded;
}

/*
 * A batch of modules loaded by a child process while PID 1 goes on: loading is CPU work
 * in the kernel, and PID 1's next steps wait on the TPM and the disk, when the other
 * work can run (under QEMU's single-threaded TCG too). A child, not a thread: libkmod's
 * and our log's state stay single-threaded, and the child's memory is not PID 1's. Its
 * own mount namespace hides /proc/cmdline from libkmod without touching PID 1's.
 */
struct batch {
	pid_t pid;
	const char *what;
	struct timespec start;
	/* Reaped by the supervisor's SIGCHLD loop before anything waited for it (the
	 * config's batch runs beside the early services): its status, kept for
	 * batch_wait(). */
	bool reaped;
	int status;
	bool done; /* waited for: never started again */
};

static struct batch batches[2];

static void batch_start(struct batch *b, const char *what, char *const *extra, int nextra)
{
	pid_t pid;

	if (b->pid > 0 || b->done)
		return;
	clock_gettime(CLOCK_MONOTONIC, &b->start);
	b->what = what;
	pid = fork();
	if (pid < 0) {
		/* No child: load them here, in order, as before. */
		log_warn_errno(
			-errno,
			"modules: cannot fork for the %s modules; loading them now",
			what);
		load_modules(module_table, extra ? 0 : ARRAY_SIZE(module_table), true,
			     extra, nextra, what);
		return;
	}
	if (pid == 0) {
		/* fail_closed() in a child would act for the node: the exit status tells
		 * PID 1, which does. load_boot_module() names the module first. */
		loader_child = true;
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			_exit(2);
		load_modules(module_table, extra ? 0 : ARRAY_SIZE(module_table), true,
			     extra, nextra, what);
		_exit(loader_failed ? 1 : 0);
	}
	b->pid = pid;
}

static void batch_wait(struct batch *b)
{
	struct timespec called, now;
	int status = b->status;
	pid_t r = b->pid;

	if (b->pid <= 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &called);
	while (!b->reaped && (r = waitpid(b->pid, &status, 0)) < 0 && errno == EINTR)
		;
	b->pid = 0;
	b->reaped = false;
	b->done = true;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_closed(
			"cannot load the %s kernel modules: the loader %s (see the modules: "
			"lines above)",
			b->what,
			r < 0		    ? "vanished"
			: WIFEXITED(status) ? "failed"
					    : "was killed");
	log_info(
		"modules: %s modules loaded in the background, %lld ms after their start "
		"(waited for %lld ms)",
		b->what,
		(long long)(now.tv_sec - b->start.tv_sec) * 1000 +
			(now.tv_nsec - b->start.tv_nsec) / 1000000,
		(long long)(now.tv_sec - called.tv_sec) * 1000 +
			(now.tv_nsec - called.tv_nsec) / 1000000);
}

bool modules_reaped(pid_t pid, int status)
{
	for (size_t i = 0; i < ARRAY_SIZE(batches); i++)
		if (batches[i].pid == pid && !batches[i].reaped) {
			batches[i].reaped = true;
			batches[i].status = status;
			/* A required module missing: act now (fail_closed), not only when a
			 * service that needs the batch is due. */
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				batch_wait(&batches[i]);
			return true;
		}
	return false;
}

int modules_load(void)
{
	int r = load_modules(module_table, ARRAY_SIZE(module_table), false, NULL, 0,
			     "boot");

	batch_start(&batches[0], "state", NULL, 0);
	return r;
}

void modules_wait(void)
{
	batch_wait(&batches[0]);
}

int modules_load_extra(char *const *names, int n)
{
	return load_modules(NULL, 0, false, names, n, "config");
}

void modules_start_extra(char *const *names, int n)
{
	if (n > 0)
		batch_start(&batches[1], "config", names, n);
}

void modules_wait_extra(void)
{
	batch_wait(&batches[1]);
}

int modules_load_aliases(char *const *aliases, int n, const char *what)
{
	struct kmod_ctx *ctx;
	int loaded = 0;

	if (n <= 0)
		return 0;
	ctx = kmod_open();
	if (!ctx)
		return log_errno(-ENOMEM, "modules: cannot set up libkmod for the %s",
				 what);
	for (int i = 0; i < n; i++) {
		int r = load_one(ctx, aliases[i], NULL);

		if (r > 0)
			loaded++;
		else if (r == 0)
			log_debug("modules: no module for %s %s", what, aliases[i]);
		else
			log_warn_errno(r, "modules: %s %s", what, aliases[i]);
	}
	kmod_unref(ctx);
	return loaded;
}

/* The kernel runs "/sbin/modprobe -q -- <name>" with an empty environment and no
 * console; our log goes to /dev/kmsg. Module options after the name are joined. */
int modprobe_main(int argc, char **argv)
{
	char options[512] = "";
	struct kmod_ctx *ctx;
	const char *name = NULL;
	bool quiet = false;
	int i, r;

	log_open_kmsg();
	for (i = 1; i < argc; i++) {
		if (streq(argv[i], "--")) {
			i++;
			break;
		}
		if (streq(argv[i], "-q"))
			quiet = true;
		else if (streq(argv[i], "-b") || streq(argv[i], "-s"))
			; /* blacklist is always applied by lookup; syslog is our default */
		else if (argv[i][0] == '-') {
			log_error(
				"modprobe: unsupported option %s (cvminit's modprobe takes "
				"[-q] [-b] [--] name [options])",
				argv[i]);
			return 2;
		} else
			break;
	}
	if (i >= argc) {
		log_error("modprobe: no module name given");
		return 2;
	}
	name = argv[i++];
	for (; i < argc; i++) {
		size_t n = strlen(options);
		snprintf(options + n, sizeof(options) - n, "%s%s", n ? " " : "", argv[i]);
	}

	if (quiet)
		log_set_max_level(LOG_WARNING);
	/* The kernel starts this with PID 1's mounts: hide the command line in a mount
	 * namespace of our own, so PID 1's /proc/cmdline is never covered by us. */
	if (unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		log_errno(-errno, "modprobe: %s: no private mount namespace", name);
		return 1;
	}
	ctx = kmod_open();
	if (!ctx)
		return 1;
	r = load_one(ctx, name, options[0] ? options : NULL);
	kmod_unref(ctx);
	if (r > 0)
		return 0;
	if (!quiet || r < 0)
		log_msg(quiet ? LOG_DEBUG : LOG_ERR, "modprobe: %s: %s", name,
			r == 0 ? "no such module" : strerror(-r));
	return 1;
}
