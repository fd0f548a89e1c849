/* cvminit: PID 1 of a confidential Kubernetes node. main() is the boot sequence, one
 * call per stage; after it, the supervisor loop that never returns. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <libcryptsetup.h>

#include "../measured-boot/tpm.h"
#include "config.h"
#include "log.h"
#include "modules.h"
#include "mount.h"
#include "partition.h"
#include "power.h"
#include "root.h"
#include "settings.h"
#include "state.h"
#include "supervise.h"
#include "svc.h"
#include "timeline.h"

#ifndef CVMINIT_VERSION
#define CVMINIT_VERSION "dev"
#endif

#define CONFIG_SIZE_MAX 65536

static struct settings settings;
static struct config cfg;
static char cmdline[4096];
static struct root root;

/* Reads /proc/cmdline and applies its cvminit.* keys. A malformed or unknown key is a
 * refusal: the command line is part of what the node was measured to run with. */
static void cmdline_load(void)
{
	char err[SETTINGS_ERR_MAX];
	ssize_t n;
	int fd, r;

	fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_closed("cannot read /proc/cmdline: %s", strerror(errno));
	n = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	if (n < 0)
		fail_closed("cannot read /proc/cmdline: %s", strerror(errno));
	cmdline[n] = '\0';
	cmdline[strcspn(cmdline, "\n")] = '\0';

	r = cmdline_parse(&settings, cmdline, err, sizeof(err));
	power_init(&settings);
	if (r < 0) {
		log_error("cmdline: %s", err);
		fail_closed("bad kernel command line: %s. Fix the cvminit.* keys in the UKI's "
			    "command line (or the one passed to the kernel).", err);
	}
	log_set_max_level(settings.log_level);
	log_info("cmdline: %d cvminit.* key(s); on_failure=%s log_level=%s", r,
		 power_action_to_string(settings.on_failure),
		 log_level_to_string(settings.log_level));
}

/* Reads and parses /etc/cvminit/cvminit.conf (absent: no services). A malformed line is a
 * refusal naming file:line. The command line's cvminit.* keys override its settings. */
static void config_load(void)
{
	static char text[CONFIG_SIZE_MAX + 1];
	char err[CONFIG_ERR_MAX];
	ssize_t n;
	int fd, r;

	fd = open(CONFIG_PATH, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		log_info("config: no %s, no services", CONFIG_PATH);
		return;
	}
	if (fd < 0)
		fail_closed("cannot open %s: %s", CONFIG_PATH, strerror(errno));
	n = read(fd, text, sizeof(text));
	close(fd);
	if (n < 0)
		fail_closed("cannot read %s: %s", CONFIG_PATH, strerror(errno));
	if (n > CONFIG_SIZE_MAX)
		fail_closed("%s is larger than %d bytes", CONFIG_PATH, CONFIG_SIZE_MAX);
	text[n] = '\0';
	if (strlen(text) != (size_t)n)
		fail_closed("%s contains a NUL byte: not a text file", CONFIG_PATH);

	r = config_parse(&cfg, &settings, text, CONFIG_PATH, err, sizeof(err));
	if (r < 0) {
		log_error("config: %s", err);
		fail_closed("bad config: %s. Fix the file in the image (it is measured with it).",
			    err);
	}
	/* The command line wins over the file: apply its keys again, each once. */
	settings.seen = 0;
	cmdline_parse(&settings, cmdline, err, sizeof(err));
	power_init(&settings);
	log_set_max_level(settings.log_level);
	log_info("config: %s: %d service(s), %d extra module(s)", CONFIG_PATH, cfg.nsvc,
		 cfg.nmodules);
}

/* Finds the TPM and reports its PCR banks and the firmware's and stub's PCRs. The
 * measurement backend built on this comes with measured boot. */
static void tpm_probe(void)
{
	static const unsigned report_pcrs[] = { 4, 7, 11 };
	struct tpm_bank banks[TPM_MAX_BANKS];
	char names[64] = "";
	struct tpm *t;
	int n, r;

	r = tpm_open("device", "/dev/tpmrm0", &t);
	if (r == -ENOENT) {
		log_warn("tpm: no TPM (/dev/tpmrm0 does not exist)");
		return;
	}
	if (r < 0) {
		log_warn_errno(r, "tpm: open /dev/tpmrm0");
		return;
	}
	n = tpm_pcr_banks(t, banks, ARRAY_SIZE(banks));
	for (int i = 0; i < n; i++) {
		size_t len = strlen(names);
		snprintf(names + len, sizeof(names) - len, "%s%s", i ? " " : "",
			 tpm_alg_name(banks[i].alg));
	}
	log_info("tpm: TPM 2.0 ready on /dev/tpmrm0, PCR banks: %s", names);

	for (size_t i = 0; i < ARRAY_SIZE(report_pcrs); i++) {
		uint8_t d[TPM_MAX_DIGEST];
		char hex[2 * TPM_MAX_DIGEST + 1];
		int len = tpm_pcr_read(t, 0x000B /* TPM2_ALG_SHA256 */, report_pcrs[i], d);
		if (len < 0)
			continue;
		for (int j = 0; j < len; j++)
			snprintf(hex + 2 * j, 3, "%02x", d[j]);
		log_info("tpm: PCR %u sha256 %s", report_pcrs[i], hex);
	}
	tpm_close(t);
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
	timeline_mark("init-start");
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

	/* Settings from the kernel command line, validated before anything acts on them. */
	settings_init(&settings);
	cmdline_load();
	timeline_mark("cmdline");

	/* Signals are blocked and routed to the signalfd before any child exists. */
	if (supervise_init() < 0)
		fail_closed("cannot set up signal handling for PID 1");

	/* Kernel modules (TPM, power button, storage, verity, erofs), then the devices
	 * they bring. */
	modules_load();
	mount_late();
	timeline_mark("modules");
	tpm_probe();
	timeline_mark("tpm");
	partitions_report();
	timeline_mark("partitions");

	/* The verified root: roothash= names it, dm-verity maps it, erofs mounts it, and
	 * cvminit moves into it. Production images always carry roothash= in the UKI's
	 * command line; without it (the direct-kernel tests boot the initrd alone) the
	 * initrd stays the root. Issue "measured boot" makes its absence a refusal. */
	if (root_find(cmdline, &settings, &root) > 0) {
		timeline_mark("root-find");
		root_open(&root, &settings);
		timeline_mark("root-open");
		root_switch(&root);
		timeline_mark("switch-root");

		/* /var on the state partition (made on first boot), then the writable
		 * paths containerd and kubelet need on the read-only root. */
		state_mount();
		state_writable_paths();
		timeline_mark("state");
	} else {
		log_info("root: no roothash= on the command line: staying in the initrd");
	}

	/* The config (services, extra modules, settings) of the root now in place,
	 * validated before it is used; its extra modules come from the root's kernel
	 * modules. */
	config_load();
	if (cfg.nmodules > 0)
		modules_load_extra(cfg.modules, cfg.nmodules);
	timeline_mark("config");

	mount_report();

	/* Services: output pipes, cgroups and environments set up now; the loop starts
	 * them in dependency order. */
	if (svc_init(&cfg, NULL) < 0)
		fail_closed("cannot set up the services (output pipes or cgroups)");
	timeline_finish();
	supervise_loop();
}
