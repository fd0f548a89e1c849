/* The measurement backends behind measure(): a TPM through tpm.c, or TDX RTMRs through
 * the kernel's tdx_guest sysfs attributes. The event log lock spans extend and record. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../init/log.h"
#include "digest.h"
#include "eventlog.h"
#include "measure.h"
#include "tpm.h"

#define TDX_MEASUREMENTS "sys/class/misc/tdx_guest/measurements"
#define RTMR_DIGEST_SIZE 48

struct measurer {
	enum measurer_backend backend;
	struct tpm *tpm;
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

static int join(char *buf, size_t size, const char *root, const char *rel)
{
	int n;

	if (!root || !*root)
		root = "/";
	n = snprintf(buf, size, "%s%s%s", root, root[strlen(root) - 1] == '/' ? "" : "/",
		     rel);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

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
	return m->backend == MEASURER_TPM ? m->tpm : NULL;
}

int measurer_open_tpm(const char *tcti, const char *conf, const char *log_path,
		      struct measurer **ret)
{
	struct tpm_bank banks[TPM_MAX_BANKS];
	struct measurer *m = NULL;
	struct tpm *t;
	int r, n;

	r = tpm_open(tcti, conf, &t);
	if (r < 0)
		return r;
	n = tpm_pcr_banks(t, banks, ARRAY_SIZE(banks));
	if (n <= 0) {
		r = n < 0 ? n
			  : log_errno(-ENODEV, "measure: the TPM has no active PCR bank");
		goto fail;
	}
	/* A bank we cannot extend would keep its reset value, and a policy over it would
	 * still unseal whatever ran: refuse rather than measure some banks only. */
	for (int i = 0; i < n; i++)
		if (digest_size(banks[i].alg) != banks[i].size) {
			r = log_errno(-EOPNOTSUPP,
				      "measure: active PCR bank %s (0x%04x) unsupported",
				      tpm_alg_name(banks[i].alg) ?: "?", banks[i].alg);
			goto fail;
		}
	r = measurer_new(log_path, &m);
	if (r < 0)
		goto fail;
	m->backend = MEASURER_TPM;
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

int measurer_open_tdx(const char *root, const char *log_path, struct measurer **ret)
{
	char path[PATH_MAX];
	struct measurer *m;
	int fd, r;

	r = join(path, sizeof(path), root, TDX_MEASUREMENTS);
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

int measurer_open(const char *root, const char *log_path, struct measurer **ret)
{
	char dev[PATH_MAX];
	int r;

	r = join(dev, sizeof(dev), root, "dev/tpmrm0");
	if (r < 0)
		return r;
	/* A TPM that is present but fails is an error, not a reason to try TDX. */
	r = measurer_open_tpm("device", dev, log_path, ret);
	if (r != -ENOENT)
		return r;
	r = measurer_open_tdx(root, log_path, ret);
	if (r != -ENOENT)
		return r;
	return -ENODEV; /* the caller decides: fail closed or measure=optional */
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

int measure(struct measurer *m, unsigned pcr, const char *event, const void *data,
	    size_t len)
{
	struct eventlog_record rec = {.pcr = pcr, .rtmr = -1, .event = (char *)event};
	int r, r_log;

	if (pcr > EVENTLOG_MAX_PCR || !event)
		return -EINVAL;
	/* Not freed by the eventlog: only records its reader made own their strings. */
	if (pcr == 11)
		rec.event_type = (char *)"phase";

	if (m->backend == MEASURER_TDX) {
		rec.rtmr = tdx_pcr_to_rtmr(pcr);
		if (rec.rtmr < 0)
			return log_errno(rec.rtmr, "measure: PCR %u has no TDX RTMR",
					 pcr);
		rec.digests[0].alg = DIGEST_ALG_SHA384;
		rec.n_digests = 1;
	} else {
		for (size_t i = 0; i < m->n_banks; i++)
			rec.digests[i].alg = m->banks[i];
		rec.n_digests = m->n_banks;
	}
	for (size_t i = 0; i < rec.n_digests; i++) {
		r = digest_compute(rec.digests[i].alg, data, len, rec.digests[i].buf);
		if (r < 0)
			return log_errno(r, "measure: digest of %s", event);
		rec.digests[i].size = (uint16_t)r;
	}

	/* No extend without its record: hold the log lock across both. */
	r = eventlog_lock(m->log_fd);
	if (r < 0)
		return r;
	if (m->backend == MEASURER_TDX)
		r = tdx_extend(m, rec.rtmr, &rec.digests[0]);
	else
		r = tpm_pcr_extend(m->tpm, pcr, rec.digests, rec.n_digests);
	rec.extended = r == 0;
	r_log = eventlog_append_locked(m->log_fd, &rec);
	eventlog_unlock(m->log_fd);

	if (r < 0)
		return log_errno(r, "measure: extend PCR %u with %s", pcr, event);
	if (r_log < 0)
		return log_errno(r_log, "measure: PCR %u extended with %s but not logged",
				 pcr, event);
	log_info("measure: PCR %u += %s", pcr, event);
	return 0;
}

/* Extends and logs rec, whose digests (one per bank of the backend, in m->banks' order,
 * or sha384 alone under TDX) the caller computed. The same critical section as measure().
 */
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
	log_info("measure: PCR %u += %s (%s)", rec->pcr, rec->event, rec->event_type);
	return 0;
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
	if (m->backend == MEASURER_TDX) {
		rec.rtmr = tdx_pcr_to_rtmr(pcr);
		if (rec.rtmr < 0)
			return log_errno(rec.rtmr, "measure: PCR %u has no TDX RTMR",
					 pcr);
		rec.digests[0].alg = DIGEST_ALG_SHA384;
		rec.n_digests = 1;
	} else {
		for (size_t i = 0; i < m->n_banks; i++)
			rec.digests[i].alg = m->banks[i];
		rec.n_digests = m->n_banks;
	}
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
