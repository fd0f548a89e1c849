/* Which TPM or RTMR the node trusts: the snapshot reader over sysfs/configfs-tsm and the
 * pure rule over the snapshot (docs/measured-boot.md, "Which TPM or RTMR is trusted"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_mu.h>

#include "../lib/file.h"
#include "../lib/log.h"
#include "platform.h"

/*
 * Paths below root. TDX, SEV-SNP and an SVSM cannot exist on the machines this project is
 * built and tested on: the unit tests point root at fake trees laid out like these sysfs
 * and configfs-tsm interfaces (regular files and directories), never at a real guest's.
 *
 * A guest learns its platform from the kernel, which detected it from CPUID/MSRs the host
 * cannot fake once the guest runs confidential: /proc/cpuinfo's "tdx_guest" and "sev_snp"
 * flags, the TDX guest device (tdx-guest module), the "sev-guest" platform device the SNP
 * core registers (before any module loads), and the configfs-tsm provider name.
 */
#define CLASS_TPM    "sys/class/tpm"
#define CPUINFO	     "proc/cpuinfo"
#define TDX_CLASS    "sys/class/misc/tdx_guest"
#define TDX_DEV	     "dev/tdx_guest"
#define TDX_RTMR     "sys/class/misc/tdx_guest/measurements/rtmr%d:sha384"
#define SNP_PLATFORM "sys/devices/platform/sev-guest"
#define SNP_DEV	     "dev/sev-guest"
#define TSM_REPORT   "sys/kernel/config/tsm/report"
#define TSM_ENTRY    "cvminit-platform"

int path_at(char *buf, size_t size, const char *root, const char *rel)
{
	int n;

	if (!root || !*root)
		root = "/";
	n = snprintf(buf, size, "%s%s%s", root, root[strlen(root) - 1] == '/' ? "" : "/",
		     rel);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static bool exists(const char *root, const char *rel)
{
	char p[PATH_MAX];

	return path_at(p, sizeof(p), root, rel) == 0 && access(p, F_OK) == 0;
}

/* A configfs attribute takes one write of its value. */
static int write_attr(const char *dir, const char *name, const char *value)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	return write_file_text(p, value);
}

static void count_tpms(const char *root, struct platform_facts *f)
{
	char p[PATH_MAX];
	struct dirent *e;
	DIR *d;

	f->n_tpms = 0;
	f->tpm_index = -1;
	if (path_at(p, sizeof(p), root, CLASS_TPM) < 0 || !(d = opendir(p)))
		return;
	while ((e = readdir(d))) {
		char *end;
		long n;

		if (strncmp(e->d_name, "tpm", 3) != 0 || e->d_name[3] < '0' ||
		    e->d_name[3] > '9')
			continue;
		n = strtol(e->d_name + 3, &end, 10);
		if (*end || n > 1000)
			continue;
		f->n_tpms++;
		if (f->tpm_index < 0 || n < f->tpm_index)
			f->tpm_index = (int)n;
	}
	closedir(d);
}

/* The "flags" line of the first CPU in /proc/cpuinfo has word; all CPUs carry the same.
 */
static bool cpu_flag(const char *cpuinfo, const char *word)
{
	const char *line = strstr(cpuinfo, "\nflags");
	size_t wlen = strlen(word);

	if (!line)
		return false;
	line = strchr(line, ':');
	if (!line)
		return false;
	for (const char *p = line + 1; *p && *p != '\n';) {
		size_t n;

		p += strspn(p, " \t");
		n = strcspn(p, " \t\n");
		if (n == wlen && memcmp(p, word, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/*
 * configfs-tsm: a report entry is a directory the reader makes; its "provider" names the
 * TSM (tdx_guest, sev_guest). Under an SVSM the entry also offers service_provider: with
 * "svsm", the vTPM's GUID and manifest version 0, reading manifestblob asks the SVSM (via
 * the SNP guest channel the host cannot read or forge) for the vTPM's manifest.
 */
static void read_tsm(const char *root, struct platform_facts *f)
{
	char dir[PATH_MAX], p[PATH_MAX + 32];
	bool made = false;
	ssize_t n;

	if (path_at(dir, sizeof(dir), root, TSM_REPORT "/" TSM_ENTRY) < 0)
		return;
	if (mkdir(dir, 0700) == 0)
		made = true;
	else if (errno != EEXIST)
		return; /* no configfs-tsm (module not loaded, kernel without it) */

	snprintf(p, sizeof(p), "%s/provider", dir);
	n = read_file_bytes(p, f->tsm_provider, sizeof(f->tsm_provider) - 1);
	if (n > 0) {
		f->tsm_provider[n] = '\0';
		f->tsm_provider[strcspn(f->tsm_provider, "\n")] = '\0';
	} else {
		f->tsm_provider[0] = '\0';
	}

	snprintf(p, sizeof(p), "%s/service_provider", dir);
	f->svsm = access(p, F_OK) == 0;
	if (f->svsm && write_attr(dir, "service_provider", "svsm") == 0 &&
	    write_attr(dir, "service_guid", PLATFORM_SVSM_VTPM_GUID) == 0 &&
	    write_attr(dir, "service_manifest_version", "0") == 0) {
		/* One byte more than a blob may hold, so an oversized one is seen. */
		static uint8_t buf[PLATFORM_BLOB_MAX + 1];

		snprintf(p, sizeof(p), "%s/manifestblob", dir);
		n = read_file_bytes(p, buf, sizeof(buf));
		if (n > (ssize_t)PLATFORM_BLOB_MAX) {
			f->manifest = PLATFORM_BLOB_MALFORMED;
		} else if (n > 0) {
			memcpy(f->manifest_buf, buf, (size_t)n);
			f->manifest_len = (size_t)n;
			f->manifest = platform_blob_check(buf, (size_t)n);
		}
	}
	if (made)
		rmdir(dir);
}

void platform_read(const char *root, struct platform_facts *f)
{
	static char cpuinfo[32768];
	char p[PATH_MAX];
	ssize_t n;

	memset(f, 0, sizeof(*f));
	count_tpms(root, f);

	cpuinfo[0] = '\n';
	n = path_at(p, sizeof(p), root, CPUINFO) < 0
		    ? -1
		    : read_file_bytes(p, cpuinfo + 1, sizeof(cpuinfo) - 2);
	cpuinfo[n > 0 ? n + 1 : 1] = '\0';

	read_tsm(root, f);

	f->tdx = cpu_flag(cpuinfo, "tdx_guest") || exists(root, TDX_CLASS) ||
		 exists(root, TDX_DEV) || strcmp(f->tsm_provider, "tdx_guest") == 0;
	f->snp = cpu_flag(cpuinfo, "sev_snp") || exists(root, SNP_PLATFORM) ||
		 exists(root, SNP_DEV) || strcmp(f->tsm_provider, "sev_guest") == 0;
	/* measure() extends RTMR 0-2 (the UEFI PCR mapping); RTMR 3 is not used. */
	f->rtmr = true;
	for (int i = 0; i <= 2; i++) {
		char rel[96];

		snprintf(rel, sizeof(rel), TDX_RTMR, i);
		f->rtmr &= exists(root, rel);
	}
}

bool platform_needs_ek(const struct platform_facts *f)
{
	return f->snp && f->n_tpms == 1 && f->manifest == PLATFORM_BLOB_OK;
}

enum platform_blob platform_blob_check(const uint8_t *buf, size_t len)
{
	TPMT_PUBLIC pub;
	size_t off = 0;

	if (len == 0)
		return PLATFORM_BLOB_ABSENT;
	if (len > PLATFORM_BLOB_MAX ||
	    Tss2_MU_TPMT_PUBLIC_Unmarshal(buf, len, &off, &pub) != TSS2_RC_SUCCESS ||
	    off != len)
		return PLATFORM_BLOB_MALFORMED;
	return PLATFORM_BLOB_OK;
}

static const char *yes(bool b)
{
	return b ? "yes" : "no";
}

static void describe(const struct platform_facts *f, char *out, size_t size)
{
	static const char *const blob[] = {
		[PLATFORM_BLOB_ABSENT] = "none",
		[PLATFORM_BLOB_OK] = "ok",
		[PLATFORM_BLOB_MALFORMED] = "malformed",
	};

	snprintf(out, size,
		 "TPMs %d, TDX %s (RTMR sysfs %s), SEV-SNP %s, configfs-tsm provider "
		 "%s, SVSM %s, vTPM manifest %s (%zu bytes)",
		 f->n_tpms, yes(f->tdx), yes(f->rtmr), yes(f->snp),
		 f->tsm_provider[0] ? f->tsm_provider : "none", yes(f->svsm),
		 blob[f->manifest], f->manifest_len);
}

static void set(struct platform_decision *d, enum measurer_backend backend, bool refuse,
		const char *fmt, ...) _printf_(4, 5);

static void set(struct platform_decision *d, enum measurer_backend backend, bool refuse,
		const char *fmt, ...)
{
	va_list ap;

	d->backend = backend;
	/* RTMRs cannot seal; a TPM is chosen only when the rule trusts it. */
	d->may_seal = backend == MEASURER_TPM;
	d->refuse = refuse;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
}

#define FIX_DECLARE                                                                      \
	"or, if this cloud's vTPM is trusted, say so with `set tpm=platform` in "        \
	"/etc/cvminit/cvminit.conf"

static void decide_tdx(const struct platform_facts *f, bool tpm_platform,
		       struct platform_decision *d)
{
	if (tpm_platform && f->n_tpms == 1)
		return set(d, MEASURER_TPM, false,
			   "Intel TDX guest; the config declares the platform's vTPM "
			   "trusted (tpm=platform): measuring into and sealing with "
			   "the TPM");
	if (f->rtmr)
		return set(
			d, MEASURER_TDX, false,
			"Intel TDX guest: measuring into the RTMRs%s; nothing may seal "
			"the state key (RTMRs cannot; a TPM only with tpm=platform)",
			f->n_tpms ? ", not into the TPM present (the host can attach one)"
				  : "");
	if (f->n_tpms)
		return set(d, MEASURER_NONE, false,
			   "Intel TDX guest without the RTMR sysfs "
			   "(/sys/class/misc/tdx_guest/measurements, Linux >= 6.16 "
			   "with CONFIG_TSM_MEASUREMENTS) and with a TPM no one "
			   "vouches for (the host can attach one): nothing trusted to "
			   "measure into. Boot a kernel with the RTMR sysfs "
			   "(trixie-backports 7.x), " FIX_DECLARE);
	return set(d, MEASURER_NONE, false,
		   "Intel TDX guest without the RTMR sysfs (Linux >= 6.16 with "
		   "CONFIG_TSM_MEASUREMENTS) and without a TPM: nothing to measure "
		   "into. Boot a kernel with the RTMR sysfs (trixie-backports 7.x)");
}

static void decide_snp(const struct platform_facts *f, bool tpm_platform,
		       struct platform_decision *d)
{
	if (f->manifest == PLATFORM_BLOB_MALFORMED)
		return set(d, MEASURER_NONE, true,
			   "AMD SEV-SNP guest: the SVSM's vTPM manifest (configfs-tsm "
			   "manifestblob, %zu bytes) is not one TPMT_PUBLIC: the vTPM "
			   "cannot be bound to the SNP report. Check the SVSM "
			   "(COCONUT-SVSM) and the kernel's sev-guest driver",
			   f->manifest_len);
	if (f->manifest == PLATFORM_BLOB_OK && f->n_tpms == 1) {
		bool same = f->ek == PLATFORM_BLOB_OK && f->ek_len == f->manifest_len &&
			    memcmp(f->ek_buf, f->manifest_buf, f->ek_len) == 0;

		if (same && !f->ek_possessed)
			return set(d, MEASURER_NONE, true,
				   "AMD SEV-SNP guest: the TPM shows the SVSM vTPM's EK "
				   "public but cannot prove it holds the EK (a session "
				   "salted to the EK failed): another TPM may be echoing "
				   "the SVSM's. Remove the extra TPM device from the VM");
		if (same)
			return set(d, MEASURER_TPM, false,
				   "AMD SEV-SNP guest: the TPM is the SVSM vTPM (its EK "
				   "public equals the vTPM manifest the SVSM attests in "
				   "the SNP report)");
		return set(
			d, MEASURER_NONE, true,
			"AMD SEV-SNP guest: the TPM's EK public (%s, %zu bytes) "
			"differs from the SVSM vTPM's manifest (%zu bytes): this TPM "
			"is not the SVSM's, the host may have attached its own. Remove "
			"the extra TPM device from the VM",
			f->ek == PLATFORM_BLOB_OK ? "read" : "unreadable", f->ek_len,
			f->manifest_len);
	}
	if (tpm_platform && f->n_tpms == 1)
		return set(d, MEASURER_TPM, false,
			   "AMD SEV-SNP guest; the config declares the platform's vTPM "
			   "trusted (tpm=platform): measuring into and sealing with "
			   "the TPM");
	if (f->manifest == PLATFORM_BLOB_OK)
		return set(
			d, MEASURER_NONE, false,
			"AMD SEV-SNP guest: the SVSM offers a vTPM but this kernel "
			"has no TPM for it (no CONFIG_TCG_SVSM: Debian's kernels "
			"lack it). Boot a kernel with the SVSM vTPM driver, " FIX_DECLARE);
	if (f->n_tpms)
		return set(d, MEASURER_NONE, false,
			   "AMD SEV-SNP guest with a TPM no SVSM vouches for (%s): the "
			   "host can attach one. Run the SVSM vTPM (COCONUT-SVSM, a "
			   "kernel with CONFIG_TCG_SVSM), " FIX_DECLARE,
			   f->svsm ? "the SVSM offers no vTPM manifest" : "no SVSM");
	return set(d, MEASURER_NONE, false,
		   "AMD SEV-SNP guest without a TPM: nothing to measure into. Run the "
		   "SVSM vTPM, or give the VM the cloud's vTPM and declare it with `set "
		   "tpm=platform`");
}

void platform_decide(const struct platform_facts *f, bool tpm_platform,
		     struct platform_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->n_tpms = f->n_tpms;
	d->tpm_index = f->tpm_index;
	describe(f, d->found, sizeof(d->found));

	if (f->n_tpms > 1)
		return set(d, MEASURER_NONE, true,
			   "%d TPMs (/sys/class/tpm): one may be the host's and "
			   "nothing tells which the platform vouches for. Give the VM "
			   "one TPM (the platform's vTPM), or none on TDX",
			   f->n_tpms);
	if (f->tdx && f->snp)
		return set(d, MEASURER_NONE, true,
			   "both Intel TDX and AMD SEV-SNP guest interfaces are "
			   "present: the kernel's view of the platform is inconsistent");
	if (f->tdx)
		return decide_tdx(f, tpm_platform, d);
	if (f->snp)
		return decide_snp(f, tpm_platform, d);
	if (f->n_tpms == 1)
		return set(d, MEASURER_TPM, false,
			   "no confidential-computing platform (plain VM): the TPM is "
			   "used as found; only a verifier that demands a TDX or SNP "
			   "report tells this from a host that launched the VM without "
			   "one");
	return set(d, MEASURER_NONE, false,
		   "no confidential-computing platform (plain VM), no TPM "
		   "(/dev/tpmrm0) and no Intel TDX RTMRs: nothing to measure into. "
		   "Give the VM a vTPM");
}
