/* Module loading with libkmod. libkmod's own messages are routed into our log, so a
 * missing module or a bad signature shows up with the module's name. */
#define _GNU_SOURCE /* unshare */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libkmod.h>

#include "../lib/file.h"
#include "log.h"
#include "modules.h"
#include "power.h"

/* When a module of the table is loaded. The two background phases are one child process
 * (the loader), which runs while PID 1 sets up the TPM and measures the command line and
 * the config: PID 1 waits on the TPM there (swtpm, or the cloud's vTPM), and the kernel's
 * module work runs in those waits. */
enum module_phase {
	PHASE_NOW,   /* PID 1, before the TPM: the TPM's and the platform's drivers */
	PHASE_ROOT,  /* the loader, first: waited for before the root's partitions are
		      * looked for (modules_wait_root()) */
	PHASE_STATE, /* the loader, then: waited for before the state volume is opened
		      * (modules_wait()) */
};

struct module_entry {
	const char *name;
	bool required;
	enum module_phase phase;
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

/* The refusal for a required module that did not load, in PID 1 (for its own load, or for
 * the one a loader child reported): the module, the kernel's reason and what to do. */
static _noreturn_ void refuse_module(const char *name, int r)
{
	struct utsname u;

	uname(&u);
	fail_closed("cannot load kernel module %s: %s%s. The initrd must carry it for "
		    "kernel %s (see init/modules.list and the config's module lines).",
		    name, strerror(-r), refusal_hint(r), u.release);
}

/*
 * What a loader child (batch_start()) tells PID 1 through its pipe: the root's modules
 * are in ('R'), or a required module failed ('F', then it exits 1): PID 1 refuses naming
 * it, as for a module of its own. One write of less than PIPE_BUF each: never split.
 */
struct loader_msg {
	char kind;
	int err;
	char name[64];
};

/* The write end of the pipe in a loader child, -1 in PID 1. */
static int loader_fd = -1;

static void loader_say(char kind, int err, const char *name)
{
	struct loader_msg m = {.kind = kind, .err = err};

	snprintf(m.name, sizeof(m.name), "%s", name);
	if (write_full(loader_fd, &m, sizeof(m)) < 0)
		_exit(1); /* PID 1 is gone or closed the pipe: nothing to load for */
}

/* Loads one module of the boot; returns 1 if it is in the kernel now, 0 if an optional
 * one is missing; a required one that fails: refused (PID 1) or reported and exit 1 (a
 * loader child). */
static int load_boot_module(struct kmod_ctx *ctx, const char *name, bool required,
			    bool by_name, const char *release)
{
	uint64_t t0 = now_ms(), ms;
	int r;

	r = by_name ? load_named(ctx, name) : load_one(ctx, name, NULL);
	ms = now_ms() - t0;
	if (r > 0) {
		/* The slow ones by name: module loading is the longest stage of the boot. */
		if (ms >= 100)
			log_info("modules: %s loaded in %llu ms (with its dependencies)",
				 name, (unsigned long long)ms);
		else
			log_debug("modules: %s loaded in %llu ms", name,
				  (unsigned long long)ms);
		return 1;
	}
	if (r == 0)
		r = -ENOENT;
	if (required && loader_fd >= 0) {
		log_error("modules: cannot load kernel module %s: %s (kernel %s)%s", name,
			  strerror(-r), release, refusal_hint(r));
		loader_say('F', -r, name);
		_exit(1);
	}
	if (required)
		refuse_module(name, r);
	log_warn("modules: %s (optional, skipped): %s%s", name, strerror(-r),
		 refusal_hint(r));
	return 0;
}

/* Whether /proc/cpuinfo's first flags line has flag; the last answer is kept (the flags
 * do not change, and each read makes the kernel format every CPU's entry). */
static bool cpu_has_flag(const char *flag)
{
	static char last[32];
	static bool last_found;
	char line[4096];
	bool found = false;
	FILE *f;

	if (streq(last, flag))
		return last_found;
	f = fopen("/proc/cpuinfo", "re");
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
	snprintf(last, sizeof(last), "%s", flag);
	last_found = found;
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

/* The answers alias_has_module() keeps, for one libkmod context (load_modules() empties
 * them: another context may read another kernel's index). */
static struct {
	char alias[256];
	char names[256];
} memo[16];
static size_t nmemo;

/* Whether a modalias resolves to the module. Each alias is looked up once and its answer
 * kept as " name name " (a lookup searches the alias index with wildcards: milliseconds
 * under TCG, and every disk driver of the table asks about every device); an answer too
 * long to keep is looked up each time. */
static bool alias_has_module(struct kmod_ctx *ctx, const char *alias, const char *name)
{
	struct kmod_list *list = NULL, *it;
	char want[80], names[256] = " ";
	size_t len = 1;
	bool found = false, keep = strlen(alias) < sizeof(memo[0].alias);

	snprintf(want, sizeof(want), " %s ", name);
	for (size_t i = 0; i < nmemo; i++)
		if (streq(memo[i].alias, alias))
			return strstr(memo[i].names, want) != NULL;
	if (kmod_module_new_from_lookup(ctx, alias, &list) < 0)
		return false;
	kmod_list_foreach(it, list)
	{
		struct kmod_module *mod = kmod_module_get_module(it);
		const char *got = kmod_module_get_name(mod);
		int n = snprintf(names + len, sizeof(names) - len, "%s ", got);

		found |= streq(got, name);
		if (n < 0 || (size_t)n >= sizeof(names) - len)
			keep = false;
		else
			len += n;
		kmod_module_unref(mod);
	}
	kmod_module_unref_list(list);
	if (keep && nmemo < ARRAY_SIZE(memo)) {
		snprintf(memo[nmemo].alias, sizeof(memo[0].alias), "%s", alias);
		memcpy(memo[nmemo++].names, names, sizeof(names));
	}
	return found;
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
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s/driver", dir, e->d_name);
			if (access(path, F_OK) == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s/modalias", dir, e->d_name);
			if (read_file_text(path, alias, sizeof(alias)) <= 0)
				continue;
			alias[strcspn(alias, "\n")] = '\0';
			found = alias_has_module(ctx, alias, name);
		}
		if (d)
			closedir(d);
	}
	return found;
}

/* A libkmod context for loading; fails closed in PID 1, exits 1 in a loader child. */
static struct kmod_ctx *kmod_open_for_boot(void)
{
	struct kmod_ctx *ctx = kmod_open();
	struct utsname u;

	if (ctx)
		return ctx;
	uname(&u);
	if (loader_fd >= 0) {
		log_error(
			"modules: cannot set up libkmod for /lib/modules/%s: out of memory "
			"or the initrd has no module index",
			u.release);
		_exit(1);
	}
	fail_closed("cannot set up libkmod for /lib/modules/%s: out of memory or the "
		    "initrd has no module index",
		    u.release);
}

/* Loads the table's entries of one phase, then extra names (all required), in ctx; what
 * says which list it is in the summary line. */
static int load_modules(struct kmod_ctx *ctx, enum module_phase phase, char *const *extra,
			int nextra, const char *what)
{
	size_t ntable = extra ? 0 : ARRAY_SIZE(module_table);
	int loaded = 0, total = 0, skipped = 0;
	struct utsname u;

	uname(&u);
	nmemo = 0;
	for (size_t i = 0; i < ntable; i++) {
		const struct module_entry *m = &module_table[i];

		if (m->phase != phase)
			continue;
		if (!module_wanted(m)) {
			log_debug("modules: %s skipped: not this platform's", m->name);
			skipped++;
			continue;
		}
		if (m->device && !module_has_device(ctx, m->name)) {
			log_debug("modules: %s skipped: no device for it", m->name);
			skipped++;
			continue;
		}
		total++;
		loaded += load_boot_module(ctx, m->name, m->required, true, u.release);
	}
	for (int i = 0; i < nextra; i++, total++)
		loaded += load_boot_module(ctx, extra[i], true, false, u.release);
	log_info(
		"modules: %d %s module(s) loaded, %d optional missing, %d not for this platform or its devices, kernel %s",
		loaded, what, total - loaded, skipped, u.release);
	return loaded;
}

/* What a loader loads: the config's names, or the table's root and state phases (the
 * root's announced on the pipe as soon as they are in). */
static void loader_run(char *const *extra, int nextra, const char *what)
{
	struct kmod_ctx *ctx = kmod_open_for_boot();

	if (extra) {
		load_modules(ctx, PHASE_NOW, extra, nextra, what);
	} else {
		load_modules(ctx, PHASE_ROOT, NULL, 0, "root");
		if (loader_fd >= 0)
			loader_say('R', 0, "");
		load_modules(ctx, PHASE_STATE, NULL, 0, "state");
	}
	kmod_unref(ctx);
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
	int fd; /* the read end of the loader's pipe (struct loader_msg), -1 once at EOF */
	const char *what;
	uint64_t start_ms;
	bool root_in; /* the loader said 'R' */
	/* Reaped by the supervisor's SIGCHLD loop before anything waited for it (the
	 * config's batch runs beside the early services): its status, kept for
	 * batch_wait(). */
	bool reaped;
	int status;
	struct rusage ru; /* its CPU, logged: the loaders' work is init's too */
	bool done;	  /* waited for: never started again */
};

static struct batch batches[2] = {{.fd = -1}, {.fd = -1}};

static void batch_start(struct batch *b, const char *what, char *const *extra, int nextra)
{
	int fds[2];
	pid_t pid;

	if (b->pid > 0 || b->done)
		return;
	b->start_ms = now_ms();
	b->what = what;
	pid = pipe2(fds, O_CLOEXEC) < 0 ? -1 : fork();
	if (pid < 0) {
		/* No child: load them here, in order, as before. */
		log_warn_errno(-errno,
			       "modules: cannot start a loader for the %s modules; "
			       "loading them now",
			       what);
		loader_run(extra, nextra, what);
		b->root_in = true;
		return;
	}
	if (pid == 0) {
		/* A required module that fails is reported on the pipe and ends the child:
		 * fail_closed() in a child would act for the node; PID 1 does. */
		loader_fd = fds[1];
		close(fds[0]);
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			_exit(2);
		loader_run(extra, nextra, what);
		_exit(0);
	}
	close(fds[1]);
	b->fd = fds[0];
	b->pid = pid;
}

/* Reads the loader's messages until it says the root's modules are in (until_root) or
 * closes its end (it exited, or died); a module it reports as failed is refused here.
 * Returns whether 'R' was read. */
static bool batch_read(struct batch *b, bool until_root)
{
	struct loader_msg m;

	while (b->fd >= 0) {
		ssize_t n = read(b->fd, &m, sizeof(m));

		if (n < 0 && errno == EINTR)
			continue;
		if (n == sizeof(m) && m.kind == 'F') {
			m.name[sizeof(m.name) - 1] = '\0';
			refuse_module(m.name, -m.err);
		}
		if (n == sizeof(m) && m.kind == 'R') {
			b->root_in = true;
			if (until_root)
				return true;
			continue;
		}
		close(b->fd);
		b->fd = -1;
	}
	return b->root_in;
}

static void batch_wait(struct batch *b)
{
	uint64_t called = now_ms();
	int status = b->status;
	pid_t r = b->pid;

	if (b->pid <= 0)
		return;
	batch_read(b, false);
	while (!b->reaped && (r = wait4(b->pid, &status, 0, &b->ru)) < 0 &&
	       errno == EINTR)
		;
	b->pid = 0;
	b->reaped = false;
	b->done = true;
	if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_closed(
			"cannot load the %s kernel modules: the loader %s (see the modules: "
			"lines above)",
			b->what,
			r < 0		    ? "vanished"
			: WIFEXITED(status) ? "failed"
					    : "was killed");
	log_info(
		"modules: %s modules loaded in the background, %llu ms after their start "
		"(waited for %llu ms; the loader's CPU %lld ms)",
		b->what, (unsigned long long)(now_ms() - b->start_ms),
		(unsigned long long)(now_ms() - called),
		(long long)(b->ru.ru_utime.tv_sec + b->ru.ru_stime.tv_sec) * 1000 +
			(b->ru.ru_utime.tv_usec + b->ru.ru_stime.tv_usec) / 1000);
}

bool modules_reaped(pid_t pid, int status, const struct rusage *ru)
{
	for (size_t i = 0; i < ARRAY_SIZE(batches); i++)
		if (batches[i].pid == pid && !batches[i].reaped) {
			batches[i].reaped = true;
			batches[i].status = status;
			batches[i].ru = *ru;
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
	struct kmod_ctx *ctx = kmod_open_for_boot();
	int r = load_modules(ctx, PHASE_NOW, NULL, 0, "boot");

	kmod_unref(ctx);
	batch_start(&batches[0], "root and state", NULL, 0);
	return r;
}

void modules_wait_root(void)
{
	struct batch *b = &batches[0];
	uint64_t called = now_ms();

	if (b->pid <= 0 || b->root_in)
		return;
	if (!batch_read(b, true))
		batch_wait(b); /* ended without them: fails closed on its status */
	log_info(
		"modules: root modules loaded in the background, %llu ms after their start "
		"(waited for %llu ms)",
		(unsigned long long)(now_ms() - b->start_ms),
		(unsigned long long)(now_ms() - called));
}

void modules_wait(void)
{
	batch_wait(&batches[0]);
}

int modules_load_extra(char *const *names, int n)
{
	struct kmod_ctx *ctx;
	int r;

	if (n <= 0)
		return 0;
	ctx = kmod_open_for_boot();
	r = load_modules(ctx, PHASE_NOW, names, n, "config");
	kmod_unref(ctx);
	return r;
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
