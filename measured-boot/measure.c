/* The measurement backends behind measure(): a TPM through tpm.c, or TDX RTMRs through
 * the kernel's tdx_guest sysfs attributes. The event log lock spans extend and record. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/digest.h"
#include "eventlog.h"
#include "measure.h"
#include "platform.h"
#include "tpm.h"

#define TDX_MEASUREMENTS "sys/class/misc/tdx_guest/measurements"
#define RTMR_DIGEST_SIZE 48

struct measurer {
	enum measurer_backend backend;
	struct tpm *tpm;
	bool may_seal; /* the platform rule lets this TPM hold the state key */
	size_t n_banks;
	uint16_t banks[TPM_MAX_BANKS];
	/*
	 * TDX: the measurements directory. TDX hardware cannot exist on a build host, so
	 * the backend takes a root directory and tests point it at a fake tree of regular
	 * files, checking what was written; on a node root is "/" and these are sysfs
	 * attributes that extend the RTMR on one write of the 48-byte sha384 digest.
	 */
	int tdx_dirfd;
	int log_fd;
};

static int measurer_new(const char *log_path, struct measurer **ret)
{
	struct measurer *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->tdx_dirfd = -1;
	m->log_fd = eventlog_open(log_path);
	if (m->log_fd < 0) {
		int r = m->log_fd;
		free(m);
		return r;
	}
	*ret = m;
	return 0;
}

void measurer_close(struct measurer *m)
{
	if (!m)
		return;
	tpm_close(m->tpm);
	if (m->tdx_dirfd >= 0)
		close(m->tdx_dirfd);
	if (m->log_fd >= 0)
		close(m->log_fd);
	free(m);
}

enum measurer_backend measurer_backend(const struct measurer *m)
{
	return m->backend;
}

struct tpm *measurer_tpm(struct measurer *m)
{
	return m->backend == MEASURER_TPM && m->may_seal ? m->tpm : NULL;
}

int measure_banks_check(const struct tpm_bank *banks, size_t n, char *err, size_t errlen)
{
	if (n == 0) {
		snprintf(err, errlen, "the TPM has no active PCR bank");
		return -ENODEV;
	}
	for (size_t i = 0; i < n; i++) {
		int size = digest_size(banks[i].alg);

		if (size <= 0 || size != banks[i].size) {
			snprintf(
				err, errlen,
				"the TPM's active PCR bank 0x%04x (%s) is an algorithm "
				"cvminit cannot extend: it would keep its reset value and a "
				"policy over it would unseal whatever ran. Deactivate that "
				"bank (tpm2_pcrallocate) or give the VM a TPM with sha1, "
				"sha256, sha384 and sha512 banks only",
				banks[i].alg,
				tpm_alg_name(banks[i].alg) ?: "unknown algorithm");
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

static int open_tpm(const char *tcti, const char *conf, const char *log_path, char *err,
		    size_t errlen, struct measurer **ret)
{
	struct tpm_bank banks[TPM_MAX_BANKS];
	struct measurer *m = NULL;
	struct tpm *t;
	int r, n;

	r = tpm_open(tcti, conf, &t);
	if (r < 0)
		return r;
	n = tpm_pcr_banks(t, banks, ARRAY_SIZE(banks));
	if (n < 0) {
		r = n;
		snprintf(err, errlen, "cannot list the TPM's PCR banks: %s",
			 strerror(-n));
		goto fail;
	}
	/* Refuse rather than measure some banks only. */
	r = measure_banks_check(banks, (size_t)n, err, errlen);
	if (r < 0) {
		log_error("measure: %s", err);
		goto fail;
	}
	r = measurer_new(log_path, &m);
	if (r < 0)
		goto fail;
	m->backend = MEASURER_TPM;
	m->may_seal = true;
	m->tpm = t;
	m->n_banks = (size_t)n;
	for (int i = 0; i < n; i++)
		m->banks[i] = banks[i].alg;
	*ret = m;
	return 0;
fail:
	tpm_close(t);
	return r;
}

int measurer_open_tpm(const char *tcti, const char *conf, const char *log_path,
		      struct measurer **ret)
{
	char err[PLATFORM_REASON_MAX];

	return open_tpm(tcti, conf, log_path, err, sizeof(err), ret);
}

int measurer_open_tdx(const char *root, const char *log_path, struct measurer **ret)
{
	char path[PATH_MAX];
	struct measurer *m;
	int fd, r;

	r = path_at(path, sizeof(path), root, TDX_MEASUREMENTS);
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = measurer_new(log_path, &m);
	if (r < 0) {
		close(fd);
		return r;
	}
	m->backend = MEASURER_TDX;
	m->tdx_dirfd = fd;
	*ret = m;
	return 0;
}

/* The EK public of the one TPM, for comparison with the SVSM vTPM manifest, and whether
 * the TPM proved it holds the EK. */
static void read_ek(const char *dev, struct platform_facts *f)
{
	struct tpm *t;
	int n;

	if (tpm_open("device", dev, &t) < 0)
		return;
	n = tpm_ek_public(t, f->ek_buf, sizeof(f->ek_buf), &f->ek_possessed);
	tpm_close(t);
	if (n > 0) {
		f->ek_len = (size_t)n;
		f->ek = PLATFORM_BLOB_OK;
	}
}

int measurer_open_platform(const char *root, const char *log_path, bool tpm_platform,
			   struct platform_decision *d, struct measurer **ret)
{
	static struct platform_facts f;
	char dev[PATH_MAX], rel[32];
	int r = 0;

	*ret = NULL;
	platform_read(root, &f);
	snprintf(rel, sizeof(rel), "dev/tpmrm%d", f.tpm_index < 0 ? 0 : f.tpm_index);
	if (path_at(dev, sizeof(dev), root, rel) < 0)
		return -ENAMETOOLONG;
	if (platform_needs_ek(&f))
		read_ek(dev, &f);
	platform_decide(&f, tpm_platform, d);
	if (d->refuse)
		return -EPERM;

	switch (d->backend) {
	case MEASURER_TPM:
		/* A TPM that is present but fails is an error, not a reason to try TDX. */
		r = open_tpm("device", dev, log_path, d->reason, sizeof(d->reason), ret);
		if (r < 0 && r != -EOPNOTSUPP && r != -ENODEV)
			snprintf(d->reason, sizeof(d->reason),
				 "cannot use the TPM %.200s: %s", dev, strerror(-r));
		if (r == -ENODEV)
			r = -EIO; /* a TPM without banks is broken, not absent */
		break;
	case MEASURER_TDX:
		r = measurer_open_tdx(root, log_path, ret);
		if (r < 0)
			snprintf(d->reason, sizeof(d->reason),
				 "cannot open the TDX RTMRs: %s", strerror(-r));
		break;
	case MEASURER_NONE:
		return -ENODEV; /* the caller decides: fail closed or measure=optional */
	}
	if (r < 0)
		return r;
	(*ret)->may_seal = d->may_seal;
	return 0;
}

int measurer_open(const char *root, const char *log_path, struct measurer **ret)
{
	struct platform_decision d;

	return measurer_open_platform(root, log_path, false, &d, ret);
}

int tdx_pcr_to_rtmr(unsigned pcr)
{
	if (pcr == 1 || pcr == 7)
		return 0;
	if (pcr >= 2 && pcr <= 6)
		return 1;
	if (pcr >= 8 && pcr <= 15)
		return 2;
	return pcr <= 23 ? -EOPNOTSUPP : -EINVAL;
}

static int tdx_extend(struct measurer *m, int rtmr, const struct digest *d)
{
	char name[32];
	ssize_t n;
	int fd;

	snprintf(name, sizeof(name), "rtmr%d:sha384", rtmr);
	fd = openat(m->tdx_dirfd, name, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return log_errno(-errno, "measure: open %s", name);
	/* The kernel takes exactly one write of the digest at offset 0: no retry on a
	 * short one. */
	n = write(fd, d->buf, RTMR_DIGEST_SIZE);
	close(fd);
	if (n < 0)
		return log_errno(-errno, "measure: extend RTMR %d", rtmr);
	if (n != RTMR_DIGEST_SIZE)
		return log_errno(-EIO, "measure: short write extending RTMR %d", rtmr);
	return 0;
}

/* Fills rec's digest slots for the backend: every active bank of the TPM, or under TDX
 * sha384 alone for the RTMR that pcr maps to. */
static int record_banks(const struct measurer *m, unsigned pcr,
			struct eventlog_record *rec)
{
	if (m->backend == MEASURER_TDX) {
		rec->rtmr = tdx_pcr_to_rtmr(pcr);
		if (rec->rtmr < 0)
			return log_errno(rec->rtmr, "measure: PCR %u has no TDX RTMR",
					 pcr);
		rec->digests[0].alg = DIGEST_ALG_SHA384;
		rec->n_digests = 1;
		return 0;
	}
	for (size_t i = 0; i < m->n_banks; i++)
		rec->digests[i].alg = m->banks[i];
	rec->n_digests = m->n_banks;
	return 0;
}

/* Extends and logs rec, whose digests the caller computed. No extend without its record:
 * the log lock is held across both. */
static int measure_digests(struct measurer *m, struct eventlog_record *rec)
{
	int r, r_log;

	r = eventlog_lock(m->log_fd);
	if (r < 0)
		return r;
	if (m->backend == MEASURER_TDX)
		r = tdx_extend(m, rec->rtmr, &rec->digests[0]);
	else
		r = tpm_pcr_extend(m->tpm, rec->pcr, rec->digests, rec->n_digests);
	rec->extended = r == 0;
	r_log = eventlog_append_locked(m->log_fd, rec);
	eventlog_unlock(m->log_fd);

	if (r < 0)
		return log_errno(r, "measure: extend PCR %u with %s", rec->pcr,
				 rec->event);
	if (r_log < 0)
		return log_errno(r_log, "measure: PCR %u extended with %s but not logged",
				 rec->pcr, rec->event);
	log_info("measure: PCR %u += %s", rec->pcr, rec->event);
	return 0;
}

int measure_named(struct measurer *m, unsigned pcr, const char *event, const char *name,
		  const void *data, size_t len)
{
	struct eventlog_record rec = {.pcr = pcr,
				      .rtmr = -1,
				      .event = (char *)event,
				      .data = (uint8_t *)data,
				      .data_len = len,
				      .has_data = true,
				      .name = (char *)name};
	int r;

	if (pcr > EVENTLOG_MAX_PCR || !event)
		return -EINVAL;
	/* Not freed by the eventlog: only records its reader made own their strings. */
	if (pcr == 11)
		rec.event_type = (char *)"phase";
	r = record_banks(m, pcr, &rec);
	if (r < 0)
		return r;
	for (size_t i = 0; i < rec.n_digests; i++) {
		r = digest_compute(rec.digests[i].alg, data, len, rec.digests[i].buf);
		if (r < 0)
			return log_errno(r, "measure: digest of %s", event);
		rec.digests[i].size = (uint16_t)r;
	}
	return measure_digests(m, &rec);
}

int measure(struct measurer *m, unsigned pcr, const char *event, const void *data,
	    size_t len)
{
	return measure_named(m, pcr, event, NULL, data, len);
}

int measure_hmac(struct measurer *m, unsigned pcr, const char *label,
		 const char *event_type, const void *key, size_t key_len)
{
	struct eventlog_record rec = {.pcr = pcr,
				      .rtmr = -1,
				      .event = (char *)label,
				      .event_type = (char *)event_type};
	int r;

	if (pcr > EVENTLOG_MAX_PCR || !label || !event_type || !key || key_len == 0)
		return -EINVAL;
	r = record_banks(m, pcr, &rec);
	if (r < 0)
		return r;
	/* The label is the message and the secret the HMAC key, as systemd-cryptsetup
	 * measures a volume key: neither the TPM nor the log sees a plain hash of it. */
	for (size_t i = 0; i < rec.n_digests; i++) {
		r = digest_hmac(rec.digests[i].alg, key, key_len, label, strlen(label),
				rec.digests[i].buf);
		if (r < 0)
			return log_errno(r, "measure: HMAC for %s", label);
		rec.digests[i].size = (uint16_t)r;
	}
	return measure_digests(m, &rec);
}
