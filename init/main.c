/* cvminit: PID 1 of a confidential Kubernetes node. main() is the boot sequence, one
 * call per stage; after it, the supervisor loop that never returns. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <libcryptsetup.h>

#include "../measured-boot/digest.h"
#include "../measured-boot/measure.h"
#include "../measured-boot/platform.h"
#include "../measured-boot/tpm.h"
#include "config.h"
#include "log.h"
#include "modules.h"
#include "mount.h"
#include "net.h"
#include "partition.h"
#include "power.h"
#include "reference.h"
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

#define CONFIG_SIZE_MAX 65536

#define FIRMWARE_LOG_SRC "/sys/kernel/security/tpm0/binary_bios_measurements"
#define FIRMWARE_LOG     "/run/log/cvminit/firmware.log"

static struct settings settings;
static struct config cfg;
static char cmdline[4096];
static size_t cmdline_len;
static struct root root;
static struct measurer *measurer; /* NULL: no TPM/RTMR and the config allows that */
static struct platform_decision platform; /* which TPM or RTMR is trusted, and why */
static bool tpm_platform_declared;        /* the config's tpm=platform, read before it */
static struct reference ref;
static bool have_ref;

/* Extends pcr with data and logs the record (measure()). During boot a failed extend is a
 * refusal: the node could not prove what it runs. */
static void boot_measure(unsigned pcr, const char *event, const void *data, size_t len)
{
	int r;

	if (!measurer) {
		log_warn("measure: not measured (no TPM, measure=optional): PCR %u %s", pcr,
			 event);
		return;
	}
	r = measure(measurer, pcr, event, data, len);
	if (r < 0)
		fail_closed("cannot measure %s into PCR %u: %s. The TPM failed; the node cannot "
			    "prove what it runs. Check the vTPM (swtpm / the host's TPM service).",
			    event, pcr, strerror(-r));
}

static void boot_measure_phase(const char *phase)
{
	boot_measure(11, phase, phase, strlen(phase));
}

/* Logs PCR 11 and 15 in the sha256 and sha384 banks: what a verifier compares with
 * cvm-measure's prediction. */
static void report_pcrs(const char *when)
{
	static const unsigned pcrs[] = { 11, 15 };
	static const uint16_t algs[] = { 0x000B /* sha256 */, 0x000C /* sha384 */ };
	struct tpm *t = measurer ? measurer_tpm(measurer) : NULL;

	if (!t)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(pcrs); i++)
		for (size_t j = 0; j < ARRAY_SIZE(algs); j++) {
			uint8_t d[TPM_MAX_DIGEST];
			char hex[2 * TPM_MAX_DIGEST + 1];
			int len = tpm_pcr_read(t, algs[j], pcrs[i], d);
			if (len < 0)
				continue;
			for (int k = 0; k < len; k++)
				snprintf(hex + 2 * k, 3, "%02x", d[k]);
			log_info("measure: %s: PCR %u %s %s", when, pcrs[i], tpm_alg_name(algs[j]),
				 hex);
		}
}

/* The services are about to run the node's workload: PCR 11 gets "ready" (before the
 * last service starts, so nothing it runs sees the earlier value). */
static void on_all_started(void)
{
	boot_measure_phase("ready");
	report_pcrs("ready");
}

static void on_shutdown(void)
{
	/* At shutdown a failed extend is only logged: stopping must go on. */
	if (measurer)
		(void)measure(measurer, 11, "shutdown", "shutdown", 8);
}

/* Copies bytes of a file into buf (NUL-terminated). Returns the length, -ENOENT when
 * absent, -EFBIG when it does not fit, another negative errno. */
static ssize_t read_small_file(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n >= (ssize_t)size)
		return -EFBIG;
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

/* Reads /proc/cmdline once; every later use (measurement, reference check, parsing,
 * roothash=) works on this copy. Without its trailing newline. */
static void cmdline_read(void)
{
	ssize_t n = read_small_file("/proc/cmdline", cmdline, sizeof(cmdline));

	if (n < 0)
		fail_closed("cannot read /proc/cmdline: %s", strerror((int)-n));
	if (n > 0 && cmdline[n - 1] == '\n')
		cmdline[--n] = '\0';
	if (strlen(cmdline) != (size_t)n)
		fail_closed("/proc/cmdline contains a NUL byte");
	cmdline_len = (size_t)n;
}

/* The reference values of the measured initrd (image/uki-refs.py writes them). Absent in
 * initrds made without the image build (the direct-kernel test initrds): then only the TPM
 * seal binds the state key to what was measured. */
static void reference_load(void)
{
	static char text[REFERENCE_SIZE_MAX + 1];
	char err[REFERENCE_ERR_MAX];
	ssize_t n = read_small_file(REFERENCE_PATH, text, sizeof(text));

	if (n == -ENOENT) {
		log_warn("reference: no %s in the initrd: values are measured but not compared "
			 "locally", REFERENCE_PATH);
		return;
	}
	if (n < 0)
		fail_closed("cannot read the reference values %s: %s", REFERENCE_PATH,
			    strerror((int)-n));
	if (reference_parse(&ref, text, err, sizeof(err)) < 0)
		fail_closed("bad reference values: %s. The initrd was not made by the image build.",
			    err);
	have_ref = true;
	log_info("reference: %s: cmdline %s, config %s, root %s", REFERENCE_PATH,
		 ref.has_cmdline ? "yes" : "no", ref.has_config ? "yes" : "no",
		 ref.has_root ? "yes" : "no");
}

static void drift(const char *what, const char *expected, const char *got, const char *fix)
{
	log_error("reference: %s drifted: expected '%s', got '%s'", what, expected, got);
	fail_closed("DRIFT: the %s differs from the reference value this image was built "
		    "with. expected: '%s' got: '%s'. %s", what, expected, got, fix);
}

static void check_cmdline(void)
{
	long at;

	if (!have_ref || !ref.has_cmdline)
		return;
	at = reference_first_difference(ref.cmdline, cmdline);
	if (at < 0) {
		log_info("reference: kernel command line matches");
		return;
	}
	log_error("reference: kernel command line differs from byte %ld on", at);
	drift("kernel command line", ref.cmdline, cmdline,
	      "Boot the UKI's own command line: nothing may be added or changed.");
}

static void check_config(const char *text, size_t len, bool absent)
{
	char want[80], got[80];
	uint8_t sum[32];

	if (!have_ref || !ref.has_config)
		return;
	if (absent || ref.config_absent) {
		if (absent && ref.config_absent)
			return;
		drift("config file " CONFIG_PATH, ref.config_absent ? "none" : "present",
		      absent ? "none" : "present", "Use the initrd the image was built with.");
	}
	if (digest_compute(DIGEST_ALG_SHA256, text, len, sum) != 32)
		fail_closed("cannot hash %s", CONFIG_PATH);
	if (memcmp(sum, ref.config_sha256, sizeof(sum)) == 0) {
		log_info("reference: config matches");
		return;
	}
	snprintf(want, sizeof(want), "sha256:");
	digest_to_hex(ref.config_sha256, 32, want + 7);
	snprintf(got, sizeof(got), "sha256:");
	digest_to_hex(sum, 32, got + 7);
	drift("config file " CONFIG_PATH, want, got, "Use the initrd the image was built with.");
}

/* Applies the cvminit.* keys of the command line. A malformed or unknown key is a
 * refusal: the command line is part of what the node was measured to run with. */
static void cmdline_load(void)
{
	char err[SETTINGS_ERR_MAX];
	int r;

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

/* Reads /etc/cvminit/cvminit.conf of the initrd once (absent: no services), measures
 * those bytes, compares them with the reference, then parses them. A malformed line is a
 * refusal naming file:line. The command line's cvminit.* keys override its settings. */
static void config_load(void)
{
	static char text[CONFIG_SIZE_MAX + 1];
	char err[CONFIG_ERR_MAX];
	ssize_t n;
	int r;

	n = read_small_file(CONFIG_PATH, text, sizeof(text));
	if (n == -EFBIG)
		fail_closed("%s is larger than %d bytes", CONFIG_PATH, CONFIG_SIZE_MAX);
	if (n < 0 && n != -ENOENT)
		fail_closed("cannot read %s: %s", CONFIG_PATH, strerror((int)-n));
	boot_measure(15, "cvminit:config", text, n < 0 ? 0 : (size_t)n);
	check_config(text, n < 0 ? 0 : (size_t)n, n == -ENOENT);
	if (n == -ENOENT) {
		log_info("config: no %s, no services", CONFIG_PATH);
		return;
	}
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

/* Reports the TPM's PCR banks and the firmware's and stub's PCRs (4, 7, 11) as found. */
static void tpm_report(struct tpm *t, int index)
{
	static const unsigned report_pcrs[] = { 4, 7, 11 };
	struct tpm_bank banks[TPM_MAX_BANKS];
	char names[64] = "";
	int n;

	if (!t)
		return;
	n = tpm_pcr_banks(t, banks, ARRAY_SIZE(banks));
	for (int i = 0; i < n; i++) {
		size_t len = strlen(names);
		snprintf(names + len, sizeof(names) - len, "%s%s", i ? " " : "",
			 tpm_alg_name(banks[i].alg) ?: "?");
	}
	log_info("tpm: TPM 2.0 ready on /dev/tpmrm%d, PCR banks: %s", index, names);

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
}

/* Keeps the firmware's event log beside ours, so one directory replays the whole boot. */
static void firmware_log_copy(void)
{
	char buf[65536];
	ssize_t n, total = 0;
	int in, out;

	in = open(FIRMWARE_LOG_SRC, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		log_info("measure: no firmware event log (%s: %s)", FIRMWARE_LOG_SRC,
			 strerror(errno));
		return;
	}
	out = open(FIRMWARE_LOG, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		log_warn_errno(-errno, "measure: create %s", FIRMWARE_LOG);
		close(in);
		return;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			log_warn_errno(-errno, "measure: write %s", FIRMWARE_LOG);
			break;
		}
		total += n;
	}
	close(in);
	close(out);
	log_info("measure: firmware event log kept in %s (%zd bytes)", FIRMWARE_LOG, total);
}

/* The config's `set tpm=` is needed to choose the backend, and the backend must exist to
 * measure the config: its parse is peeked here, the same parser on the same bytes, and
 * config_load() measures those bytes into the chosen backend before anything else acts
 * (measurer_require() checks the two reads agree). A file that does not parse declares
 * nothing: config_load() refuses it anyway. */
static bool config_peek_tpm_platform(void)
{
	static char text[CONFIG_SIZE_MAX + 1];
	static struct config scratch;
	char err[CONFIG_ERR_MAX];
	struct settings s;
	ssize_t n = read_small_file(CONFIG_PATH, text, sizeof(text));

	if (n <= 0 || strlen(text) != (size_t)n)
		return false;
	settings_init(&s);
	if (config_parse(&scratch, &s, text, CONFIG_PATH, err, sizeof(err)) < 0)
		return false;
	return s.tpm_platform;
}

/* Finds the backend the platform rule trusts (measurer_open_platform(): the TPM, TDX
 * RTMRs or none), waiting briefly for a TPM whose driver may still be probing. Two TPMs,
 * or a TPM that is shown not to be the SVSM's, are refused here; none is decided once the
 * config is read. */
static void measurer_setup(void)
{
	int r = -ENODEV;

	tpm_platform_declared = config_peek_tpm_platform();
	for (int i = 0; i < 20; i++) {
		r = measurer_open_platform("/", MEASURE_LOG_PATH, tpm_platform_declared,
					   &platform, &measurer);
		/* Only a TPM still probing can change the answer: with one present (not
		 * trusted), asking again would repeat the SVSM request for nothing. */
		if (r != -ENODEV || platform.n_tpms > 0)
			break;
		usleep(50 * 1000);
	}
	log_info("platform: found %s%s", platform.found,
		 tpm_platform_declared ? "; the config declares tpm=platform" : "");
	if (r == -EPERM)
		fail_closed("REFUSING the platform's TPM/RTMR: %s. Found: %s.",
			    platform.reason, platform.found);
	if (r == -ENODEV) {
		measurer = NULL;
		log_warn("measure: %s", platform.reason);
		return;
	}
	if (r < 0)
		fail_closed("the TPM/RTMR the platform rule chose cannot be used: %s. "
			    "The node cannot measure its boot. Check the vTPM.",
			    platform.reason);
	log_info("measure: backend %s, event log %s; %s",
		 measurer_backend(measurer) == MEASURER_TPM ? "TPM 2.0"
							    : "Intel TDX RTMRs",
		 MEASURE_LOG_PATH, platform.reason);
	log_info("measure: the state key %s be sealed on this platform",
		 platform.may_seal ? "may" : "may NOT");
	/* The PCRs as the firmware and the stub left them, before the first extend. */
	if (measurer_backend(measurer) == MEASURER_TPM)
		tpm_report(measurer_tpm(measurer), platform.tpm_index);
	boot_measure_phase("enter-initrd");
	if (measurer_backend(measurer) == MEASURER_TPM)
		firmware_log_copy();
}

/* No backend: refused unless the measured config says measure=optional. */
static void measurer_require(void)
{
	if (settings.tpm_platform != tpm_platform_declared)
		fail_closed("the config read before measuring declared tpm=%s and the "
			    "measured one tpm=%s: %s changed during boot",
			    tpm_platform_declared ? "platform" : "verify",
			    settings.tpm_platform ? "platform" : "verify", CONFIG_PATH);
	if (measurer)
		return;
	if (settings.measure_required)
		fail_closed("this boot cannot be measured: %s. Found: %s.",
			    platform.reason, platform.found);
	log_warn("measure: measure=optional in %s: booting UNMEASURED; nothing can be sealed",
		 CONFIG_PATH);
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
	timeline_mark("init-start");
	/* No transparent huge pages for PID 1: khugepaged folds its few hundred KiB of .data,
	 * .bss and heap into 2 MiB pages, each +2 MiB of RSS at a random moment (issue 15:
	 * RSS 3.4 instead of 1.5 MiB). Inherited across exec: svc.c clears it for services. */
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
	cmdline_read();
	if (supervise_init() < 0)
		fail_closed("cannot set up signal handling for PID 1");

	/* Kernel modules (TPM, power button, storage, verity, crypto, erofs) from the
	 * initrd's own table, then the devices they bring. */
	modules_load();
	mount_late();
	timeline_mark("modules");

	/* Measured boot: enter-initrd first; then each value is measured, compared with
	 * the reference the initrd carries, and only then acted on. */
	measurer_setup();
	timeline_mark("tpm");
	reference_load();
	boot_measure(15, "cvminit:cmdline", cmdline, cmdline_len);
	check_cmdline();
	cmdline_load();
	timeline_mark("cmdline");
	config_load();
	measurer_require();
	power_init(&settings);
	timeline_mark("config");
	partitions_report();

	/* The verified root: roothash= names it, dm-verity maps it, erofs mounts it at
	 * /sysroot. Production images always carry roothash= in the UKI's command line;
	 * without it (the direct-kernel tests boot the initrd alone) the initrd stays the
	 * root. */
	if (root_find(cmdline, &settings, &root) > 0) {
		char ident[256];

		timeline_mark("root-find");
		snprintf(ident, sizeof(ident), "verity:%s:%s:%s:erofs", root.hash_hex,
			 root.data_uuid, root.hash_uuid);
		boot_measure(15, "cvminit:root", ident, strlen(ident));
		if (have_ref && ref.has_root && !streq(ref.root, ident))
			drift("verified root", ref.root, ident,
			      "Boot the disk this UKI was built with.");
		root_open(&root, &settings);
		timeline_mark("root-open");

		/* The state volume is unsealed while PCR 11 still says "in the initrd";
		 * its modules were loading in the background until now. */
		modules_wait();
		timeline_mark("modules-wait");
		state_open(measurer, &settings);
		timeline_mark("state-open");

		/* The workload fence: from here on the state key cannot be unsealed. */
		boot_measure_phase("leave-initrd");
		root_switch(&root);
		timeline_mark("switch-root");
		/* The config's modules come from the root: loaded in the background while
		 * /var is mounted and the NICs are set up, waited for before the sysctls. */
		modules_start_extra(cfg.modules, cfg.nmodules);

		/* /var on the state volume (ext4 made on first boot), then the writable
		 * paths containerd and kubelet need on the read-only root. */
		state_mount();
		state_writable_paths();
		timeline_mark("state");
		on_root = true;
	} else {
		modules_wait();
		log_info("root: no roothash= on the command line: staying in the initrd");
		if (have_ref && ref.has_root)
			drift("verified root", ref.root, "none (no roothash= on the command line)",
			      "Boot the UKI's own command line.");
		boot_measure_phase("leave-initrd");
	}

	/* Extra modules of the config come from the root's kernel modules (in the initrd
	 * when there is no root: loaded now). */
	if (!on_root && cfg.nmodules > 0)
		modules_load_extra(cfg.modules, cfg.nmodules);

	/* The node on the network (on the verified root only): drivers for the NICs
	 * present, loopback, the hostname from the machine ID (never from the host), then
	 * the root's sysctl.d, after the config's modules (the bridge keys need
	 * br_netfilter). Addresses, routes and DNS come from the network service. */
	if (on_root) {
		net_drivers_load();
		net_setup();
		net_hostname_set();
		modules_wait_extra();
		timeline_mark("modules-extra");
		sysctl_apply(NULL);
		timeline_mark("network");
	}

	mount_report();

	/* Services: output pipes, cgroups and environments set up now; the loop starts
	 * them in dependency order. */
	if (svc_init(&cfg, NULL) < 0)
		fail_closed("cannot set up the services (output pipes or cgroups)");
	power_set_shutdown_hook(on_shutdown);
	power_set_close_hook(state_close);
	if (cfg.nsvc > 0)
		svc_set_all_started_hook(on_all_started);
	else
		on_all_started();
	timeline_finish();
	supervise_loop();
}
