/* PID 1's measured boot: the backend the platform rule trusts, each value measured and
 * then compared with the reference the initrd carries, and the PCR reports in the log. */
#include <fcntl.h>
#include <stdio.h>

#include "../lib/digest.h"
#include "../lib/file.h"
#include "../lib/hex.h"
#include "../measured-boot/measure.h"
#include "../measured-boot/platform.h"
#include "../measured-boot/tpm.h"
#include "config.h"
#include "log.h"
#include "measured.h"
#include "power.h"
#include "reference.h"

#define FIRMWARE_LOG_SRC "/sys/kernel/security/tpm0/binary_bios_measurements"
#define FIRMWARE_LOG	 "/run/log/cvminit/firmware.log"

static struct measurer *measurer; /* NULL: no TPM/RTMR and the config allows that */
static struct platform_decision platform; /* which TPM or RTMR is trusted, and why */
static bool tpm_platform_declared;	  /* the config's tpm=platform, read before it */
static struct reference ref;
static bool have_ref;

struct measurer *measured_backend(void)
{
	return measurer;
}

/* Extends pcr with data and logs the record (measure()). During boot a failed extend is a
 * refusal: the node could not prove what it runs. */
void boot_measure_named(unsigned pcr, const char *event, const char *name,
			const void *data, size_t len)
{
	int r;

	if (!measurer) {
		log_warn("measure: not measured (no TPM, measure=optional): PCR %u %s",
			 pcr, event);
		return;
	}
	r = measure_named(measurer, pcr, event, name, data, len);
	if (r < 0)
		fail_closed(
			"cannot measure %s into PCR %u: %s. The TPM failed; the node cannot "
			"prove what it runs. Check the vTPM (swtpm / the host's TPM service).",
			event, pcr, strerror(-r));
}

void boot_measure(unsigned pcr, const char *event, const void *data, size_t len)
{
	boot_measure_named(pcr, event, NULL, data, len);
}

void boot_measure_phase(const char *phase)
{
	boot_measure(11, phase, phase, strlen(phase));
}

/* Logs PCR 11 and 15 in the sha256 and sha384 banks: what a verifier compares with
 * cvm-measure's prediction. */
void measured_report_pcrs(const char *when)
{
	static const unsigned pcrs[] = {11, 15};
	static const uint16_t algs[] = {0x000B /* sha256 */, 0x000C /* sha384 */};
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
			hex_encode(d, (size_t)len, hex);
			log_info("measure: %s: PCR %u %s %s", when, pcrs[i],
				 tpm_alg_name(algs[j]), hex);
		}
}

/* Reports the TPM's PCR banks and the firmware's and stub's PCRs (4, 7, 11) as found. */
static void tpm_report(struct tpm *t, int index)
{
	static const unsigned report_pcrs[] = {4, 7, 11};
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
		int len =
			tpm_pcr_read(t, 0x000B /* TPM2_ALG_SHA256 */, report_pcrs[i], d);
		if (len < 0)
			continue;
		hex_encode(d, (size_t)len, hex);
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
	log_info("measure: firmware event log kept in %s (%zd bytes)", FIRMWARE_LOG,
		 total);
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
	ssize_t n = read_file_text(CONFIG_PATH, text, sizeof(text));

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
void measured_setup(void)
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
void measured_require(const struct settings *s)
{
	if (s->tpm_platform != tpm_platform_declared)
		fail_closed("the config read before measuring declared tpm=%s and the "
			    "measured one tpm=%s: %s changed during boot",
			    tpm_platform_declared ? "platform" : "verify",
			    s->tpm_platform ? "platform" : "verify", CONFIG_PATH);
	if (measurer)
		return;
	if (s->measure_required)
		fail_closed("this boot cannot be measured: %s. Found: %s.",
			    platform.reason, platform.found);
	log_warn(
		"measure: measure=optional in %s: booting UNMEASURED; nothing can be sealed",
		CONFIG_PATH);
}

/* The reference values of the measured initrd (image/uki-refs.py writes them). Absent in
 * initrds made without the image build (the direct-kernel test initrds): then only the TPM
 * seal binds the state key to what was measured. */
void ref_load(void)
{
	static char text[REFERENCE_SIZE_MAX + 1];
	char err[REFERENCE_ERR_MAX];
	ssize_t n = read_file_text(REFERENCE_PATH, text, sizeof(text));

	if (n == -ENOENT) {
		log_warn(
			"reference: no %s in the initrd: values are measured but not compared "
			"locally",
			REFERENCE_PATH);
		return;
	}
	if (n < 0)
		fail_closed("cannot read the reference values %s: %s", REFERENCE_PATH,
			    strerror((int)-n));
	if (reference_parse(&ref, text, err, sizeof(err)) < 0)
		fail_closed(
			"bad reference values: %s. The initrd was not made by the image build.",
			err);
	have_ref = true;
	log_info("reference: %s: cmdline %s, config %s, root %s", REFERENCE_PATH,
		 ref.has_cmdline ? "yes" : "no", ref.has_config ? "yes" : "no",
		 ref.has_root ? "yes" : "no");
}

_noreturn_ static void drift(const char *what, const char *expected, const char *got,
			     const char *fix)
{
	log_error("reference: %s drifted: expected '%s', got '%s'", what, expected, got);
	fail_closed("DRIFT: the %s differs from the reference value this image was built "
		    "with. expected: '%s' got: '%s'. %s",
		    what, expected, got, fix);
}

void ref_check_cmdline(const char *cmdline)
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

void ref_check_config(const char *text, size_t len, bool absent)
{
	char want[80], got[80];
	uint8_t sum[32];

	if (!have_ref || !ref.has_config)
		return;
	if (absent || ref.config_absent) {
		if (absent && ref.config_absent)
			return;
		drift("config file " CONFIG_PATH, ref.config_absent ? "none" : "present",
		      absent ? "none" : "present",
		      "Use the initrd the image was built with.");
	}
	if (digest_compute(DIGEST_ALG_SHA256, text, len, sum) != 32)
		fail_closed("cannot hash %s", CONFIG_PATH);
	if (memcmp(sum, ref.config_sha256, sizeof(sum)) == 0) {
		log_info("reference: config matches");
		return;
	}
	snprintf(want, sizeof(want), "sha256:");
	hex_encode(ref.config_sha256, 32, want + 7);
	snprintf(got, sizeof(got), "sha256:");
	hex_encode(sum, 32, got + 7);
	drift("config file " CONFIG_PATH, want, got,
	      "Use the initrd the image was built with.");
}

void ref_check_root(const char *ident)
{
	if (!have_ref || !ref.has_root)
		return;
	if (!ident)
		drift("verified root", ref.root,
		      "none (no roothash= on the command line)",
		      "Boot the UKI's own command line.");
	if (!streq(ref.root, ident))
		drift("verified root", ref.root, ident,
		      "Boot the disk this UKI was built with.");
}
