/* cvminit: PID 1 of a confidential Kubernetes node. main() is the boot sequence, one
 * call per stage; after it, the supervisor loop that never returns. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <libcryptsetup.h>

#include "../lib/file.h"
#include "../measured-boot/identity.h"
#include "../measured-boot/measure.h"
#include "config.h"
#include "log.h"
#include "measured.h"
#include "modules.h"
#include "mount.h"
#include "net.h"
#include "partition.h"
#include "power.h"
#include "root.h"
#include "settings.h"
#include "state.h"
#include "supervise.h"
#include "svc.h"
#include "sysctl.h"
#include "timeline.h"

#ifndef CVMINIT_VERSION
#define CVMINIT_VERSION "dev"
#endif

static struct settings settings;
static struct config cfg;
static char cmdline[4096];
static size_t cmdline_len;
static struct root root;

/* The services are about to run the node's workload: PCR 11 gets "ready" (before the
 * last service starts, so nothing it runs sees the earlier value). */
static void on_all_started(void)
{
	boot_measure_phase("ready");
	measured_report_pcrs("ready");
}

/* The NIC drivers, once: right before the service that configures the network (it comes
 * after containerd's start, which needs no NIC), then the sysctl.d keys they bring
 * (net.ipv6.conf.eth0.*) before that service reads them. */
static bool nics_loaded;

static void nics_load(void)
{
	if (nics_loaded)
		return;
	nics_loaded = true;
	net_drivers_load();
	sysctl_apply_later(false);
}

/* Before the first service that is not "early": the NIC drivers (when no network service
 * came first), the config's modules, then the sysctl.d keys that did not exist without
 * them. */
static void config_modules_gate(void)
{
	nics_load();
	/* Started already unless no early service came first. */
	modules_start_extra(cfg.modules, cfg.nmodules);
	modules_wait_extra();
	sysctl_apply_later(true);
}

static void svc_prestart(const struct svc_def *d)
{
	if (d->ready_network)
		nics_load();
}

static void on_shutdown(void)
{
	/* At shutdown a failed extend is only logged: stopping must go on. */
	if (measured_backend())
		(void)measure(measured_backend(), 11, "shutdown", "shutdown", 8);
}

/* Reads /proc/cmdline once; every later use (measurement, reference check, parsing,
 * roothash=) works on this copy. Without its trailing newline. */
static void cmdline_read(void)
{
	ssize_t n = read_file_text("/proc/cmdline", cmdline, sizeof(cmdline));

	if (n < 0)
		fail_closed("cannot read /proc/cmdline: %s", strerror((int)-n));
	if (n > 0 && cmdline[n - 1] == '\n')
		cmdline[--n] = '\0';
	if (strlen(cmdline) != (size_t)n)
		fail_closed("/proc/cmdline contains a NUL byte");
	cmdline_len = (size_t)n;
}

/* Applies the cvminit.* keys of the command line. A malformed or unknown key is a
 * refusal: the command line is part of what the node was measured to run with. */
static void cmdline_load(void)
{
	char err[SETTINGS_ERR_MAX];
	int r;

	r = cmdline_parse(&settings, cmdline, err, sizeof(err));
	if (r < 0) {
		log_error("cmdline: %s", err);
		fail_closed(
			"bad kernel command line: %s. Fix the cvminit.* keys in the UKI's "
			"command line (or the one passed to the kernel).",
			err);
	}
	log_set_max_level(settings.log_level);
	log_info("cmdline: %d cvminit.* key(s); on_failure=%s log_level=%s", r,
		 power_action_to_string(settings.on_failure),
		 log_level_to_string(settings.log_level));
}

/* Reads /etc/cvminit/cvminit.conf of the initrd once (absent: no services), measures
 * those bytes, compares them with the reference, then parses them. A malformed line is a
 * refusal naming file:line. The command line's cvminit.* keys override its settings. */
static void config_load(void)
{
	static char text[CONFIG_SIZE_MAX + 1];
	char err[CONFIG_ERR_MAX];
	struct settings next;
	ssize_t n;
	int r;

	n = read_file_text(CONFIG_PATH, text, sizeof(text));
	if (n == -EFBIG)
		fail_closed("%s is larger than %d bytes", CONFIG_PATH, CONFIG_SIZE_MAX);
	if (n < 0 && n != -ENOENT)
		fail_closed("cannot read %s: %s", CONFIG_PATH, strerror((int)-n));
	boot_measure_named(15, "cvminit:config", CONFIG_PATH, text,
			   n < 0 ? 0 : (size_t)n);
	ref_check_config(text, n < 0 ? 0 : (size_t)n, n == -ENOENT);
	if (n == -ENOENT) {
		log_info("config: no %s, no services", CONFIG_PATH);
		return;
	}
	if (strlen(text) != (size_t)n)
		fail_closed("%s contains a NUL byte: not a text file", CONFIG_PATH);

	/* Parsed into a copy: until the file passes, fail_closed() acts on the command
	 * line's settings, not on half a file's. */
	next = settings;
	settings_next_source(&next); /* the command line's keys win below */
	r = config_parse(&cfg, &next, text, CONFIG_PATH, err, sizeof(err));
	if (r < 0) {
		log_error("config: %s", err);
		fail_closed(
			"bad config: %s. Fix the file in the image (it is measured with it).",
			err);
	}
	settings_cmdline_wins(&next, cmdline);
	settings = next;
	log_set_max_level(settings.log_level);
	log_info("config: %s: %d service(s), %d extra module(s)", CONFIG_PATH, cfg.nsvc,
		 cfg.nmodules);
}

static void partitions_report(void)
{
	struct part parts[PART_MAX];
	int n = part_scan(parts, ARRAY_SIZE(parts));

	if (n <= 0) {
		log_info("partitions: no GPT partitions found");
		return;
	}
	for (int i = 0; i < n; i++)
		log_info("partitions: %s type %s (%s) partuuid %s", parts[i].dev,
			 dps_type_name(parts[i].type), parts[i].type_uuid, parts[i].uuid);
}

int main(int argc, char **argv)
{
	const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	bool on_root = false;

	if (streq(self, "modprobe"))
		return modprobe_main(argc, argv);
	if (argc > 1 && streq(argv[1], "--version")) {
		printf("cvminit %s\n", CVMINIT_VERSION);
		return 0;
	}
	if (getpid() != 1) {
		fprintf(stderr, "cvminit: must run as PID 1 (this is the node's init)\n");
		return 1;
	}

	/* From here on PID 1 never returns: every failure goes through fail_closed(). */
	log_use_console();
	timeline_mark("init-start");
	/* No transparent huge pages for PID 1: khugepaged folds its few hundred KiB of .data,
	 * .bss and heap into 2 MiB pages, each +2 MiB of RSS at a random moment (issue 15:
	 * RSS 3.4 instead of 1.5 MiB). Inherited across exec: svc.c clears it for services.
	 * The pages libc's start touched before this line can still get one at their fault
	 * if a 2 MiB-aligned range of .bss holds them (with ASLR, in some boots): .bss is
	 * kept smaller than 2 MiB for that (the large buffers are mapped when used). */
	prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	crash_handler_install();
	umask(022);
	chdir("/");

	/* API filesystems, then logging to /dev/kmsg. */
	mount_early();
	log_open_kmsg();
	/* Libraries never print: libcryptsetup's messages go through our log, tpm2-tss's
	 * are silenced (its return codes are decoded into our messages instead). */
	crypt_set_log_callback(NULL, log_cryptsetup, NULL);
	setenv("TSS2_LOG", "all+NONE", 1);
	log_info("cvminit %s starting as PID 1", CVMINIT_VERSION);
	timeline_mark("mounts");

	/* The command line, read once. Signals are blocked and routed to the signalfd
	 * before any child exists. */
	settings_init(&settings);
	power_init(&settings);
	cmdline_read();
	if (supervise_init() < 0)
		fail_closed("cannot set up signal handling for PID 1");

	/* Kernel modules from the initrd's own table: the TPM's and the platform's now,
	 * the root's and the state volume's in the background. */
	modules_load();
	mount_late();
	timeline_mark("modules");

	/* Measured boot: enter-initrd first; then each value is measured, compared with
	 * the reference the initrd carries, and only then acted on. */
	measured_setup();
	timeline_mark("tpm");
	ref_load();
	boot_measure(15, "cvminit:cmdline", cmdline, cmdline_len);
	ref_check_cmdline(cmdline);
	cmdline_load();
	timeline_mark("cmdline");
	config_load();
	measured_require(&settings);
	timeline_mark("config");
	/* The disk drivers, device-mapper, dm-verity and erofs, loaded in the background
	 * since the module stage. */
	modules_wait_root();
	timeline_mark("modules-root");
	partitions_report();

	/* The verified root: roothash= names it, dm-verity maps it, erofs mounts it at
	 * /sysroot. Production images always carry roothash= in the UKI's command line;
	 * without it (the direct-kernel tests boot the initrd alone) the initrd stays the
	 * root. */
	if (root_find(cmdline, &settings, &root) > 0) {
		char ident[IDENTITY_ROOT_MAX];

		timeline_mark("root-find");
		if (identity_root(root.hash_hex, ident, sizeof(ident)) < 0)
			fail_closed(
				"root: cannot form the root's identity from roothash=%s",
				root.hash_hex);
		boot_measure(15, "cvminit:root", ident, strlen(ident));
		ref_check_root(ident);
		root_open(&root, &settings);
		timeline_mark("root-open");

		/* The state volume is unsealed while PCR 11 still says "in the initrd".
		 * Its modules are loading in the background: state_open() waits for them
		 * after the TPM's part (the unseal, or the seal on a first boot). */
		state_open(measured_backend(), &settings);
		timeline_mark("state-open");

		/* The workload fence: from here on the state key cannot be unsealed. */
		boot_measure_phase("leave-initrd");
		root_switch(&root);
		timeline_mark("switch-root");

		/* /var on the state volume (ext4 made on first boot), then the writable
		 * paths containerd and kubelet need on the read-only root. */
		state_mount();
		state_writable_paths();
		timeline_mark("state");
		on_root = true;
	} else {
		modules_wait();
		log_info("root: no roothash= on the command line: staying in the initrd");
		ref_check_root(NULL);
		boot_measure_phase("leave-initrd");
	}

	/* Extra modules of the config come from the root's kernel modules (in the initrd
	 * when there is no root: loaded now). */
	if (!on_root && cfg.nmodules > 0)
		modules_load_extra(cfg.modules, cfg.nmodules);

	/* The node on the network (on the verified root only): loopback, the hostname from
	 * the machine ID (never from the host), then the root's sysctl.d (the keys of a NIC
	 * once its driver is in, the bridge keys, which need br_netfilter, once the config's
	 * modules are in). The NIC drivers right before the network service; addresses,
	 * routes and DNS come from it. */
	if (on_root) {
		net_setup();
		net_hostname_set();
		/* kernel.* and net.ipv4/ipv6.* now, before any service (dhcpcd reads the
		 * forwarding keys); the keys a config module brings wait for it. */
		sysctl_apply_present(NULL);
		timeline_mark("network");
	}

	mount_report();

	/* Services: output pipes, cgroups and environments set up now; the loop starts
	 * them in dependency order. */
	if (svc_init(&cfg, NULL) < 0)
		fail_closed("cannot set up the services (output pipes or cgroups)");
	/* The config's modules load beside the early services (containerd and dhcpcd use
	 * none of them); every other service starts only once they are in and their
	 * sysctl.d keys are set (kubelet: CNI bridges, kube-proxy's netfilter). */
	if (on_root) {
		supervise_set_child_hook(modules_reaped);
		svc_set_gate_hook(config_modules_gate);
		svc_set_prestart_hook(svc_prestart);
	}
	power_set_shutdown_hook(on_shutdown);
	power_set_close_hook(state_close);
	if (cfg.nsvc > 0)
		svc_set_all_started_hook(on_all_started);
	else
		on_all_started();
	timeline_finish();
	/* The early services first, then the config's modules from the root, loaded in the
	 * background beside them until config_modules_gate(): not beside the /var mount or
	 * containerd's fork and exec, which a loader on the same CPU made slower
	 * (docs/benchmarks.md). */
	svc_start_ready();
	if (on_root) {
		nics_load(); /* no network service, or it waits for another one */
		modules_start_extra(cfg.modules, cfg.nmodules);
	}
	supervise_loop();
}
