/* Module loading with libkmod. libkmod's own messages are routed into our log, so a
 * missing module or a bad signature shows up with the module's name. */
#define _GNU_SOURCE /* unshare */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <time.h>

#include <libkmod.h>

#include "log.h"
#include "modules.h"
#include "power.h"

struct module_entry {
	const char *name;
	bool required;
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

/* Loads one module (a name or an alias) with its dependencies. Returns 1 when something
 * was inserted or was there already, 0 when nothing matches, negative errno on error. */
static int load_one(struct kmod_ctx *ctx, const char *name, const char *options)
{
	struct kmod_list *list = NULL, *it;
	int r, matched = 0;

	r = kmod_module_new_from_lookup(ctx, name, &list);
	if (r < 0)
		return r;
	kmod_list_foreach(it, list) {
		struct kmod_module *mod = kmod_module_get_module(it);

		/* No flags: a module already in the kernel (loaded or built in) is
		 * success, and softdeps and blacklist are applied. */
		r = kmod_module_probe_insert_module(mod, 0, options, NULL, NULL, NULL);
		if (r == 0)
			matched = 1;
		else if (r > 0) /* blacklisted: not an error of ours, but not loaded */
			log_warn("modules: %s is blacklisted", kmod_module_get_name(mod));
		kmod_module_unref(mod);
		if (r < 0 && !matched) {
			kmod_module_unref_list(list);
			return r;
		}
	}
	kmod_module_unref_list(list);
	return matched;
}

/* Loads one module of the boot; returns 1 if it is in the kernel now, 0 if an optional
 * one is missing; fails closed for a required one. */
static int load_boot_module(struct kmod_ctx *ctx, const char *name, bool required,
			    const char *release)
{
	struct timespec a, b;
	long long ms;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &a);
	r = load_one(ctx, name, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000LL + (b.tv_nsec - a.tv_nsec) / 1000000;
	if (r > 0) {
		/* The slow ones by name: module loading is the longest stage of the boot. */
		if (ms >= 100)
			log_info("modules: %s loaded in %lld ms (with its dependencies)", name, ms);
		else
			log_debug("modules: %s loaded in %lld ms", name, ms);
		return 1;
	}
	if (r == 0)
		r = -ENOENT;
	if (required)
		fail_closed("cannot load kernel module %s: %s. The initrd must carry it for "
			    "kernel %s (see init/modules.list and the config's module lines).",
			    name, strerror(-r), release);
	log_warn_errno(r, "modules: %s (optional, skipped)", name);
	return 0;
}

/* Loads table entries, then extra names (all required), in one libkmod context; what
 * says which list it is in the summary line. */
static int load_modules(const struct module_entry *table, size_t ntable, char *const *extra,
			int nextra, const char *what)
{
	struct utsname u;
	struct kmod_ctx *ctx;
	int loaded = 0, total = 0;

	uname(&u);
	ctx = kmod_open();
	if (!ctx)
		fail_closed("cannot set up libkmod for /lib/modules/%s: out of memory or the "
			    "initrd has no module index", u.release);

	for (size_t i = 0; i < ntable; i++, total++)
		loaded += load_boot_module(ctx, table[i].name, table[i].required, u.release);
	for (int i = 0; i < nextra; i++, total++)
		loaded += load_boot_module(ctx, extra[i], true, u.release);
	kmod_unref(ctx);
	log_info("modules: %d %s module(s) loaded, %d optional missing, kernel %s", loaded, what,
		 total - loaded, u.release);
	return loaded;
}

int modules_load(void)
{
	return load_modules(module_table, ARRAY_SIZE(module_table), NULL, 0, "boot");
}

int modules_load_extra(char *const *names, int n)
{
	return load_modules(NULL, 0, names, n, "config");
}

int modules_load_aliases(char *const *aliases, int n, const char *what)
{
	struct kmod_ctx *ctx;
	int loaded = 0;

	if (n <= 0)
		return 0;
	ctx = kmod_open();
	if (!ctx)
		return log_errno(-ENOMEM, "modules: cannot set up libkmod for the %s", what);
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
			log_error("modprobe: unsupported option %s (cvminit's modprobe takes "
				  "[-q] [-b] [--] name [options])", argv[i]);
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
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
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
