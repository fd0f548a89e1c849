/* The node side of remote attestation: keys, quote, EK certificate, ActivateCredential
 * (tpm2-tss ESYS) and the configfs-tsm report, assembled into an evidence response. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "../lib/log.h"
#include "attest-node.h"
#include "tpm.h"

#define TSM_ENTRY      "cvminit-agent"
#define TSM_MAX_REPORT (64u << 10)

static int tss_error(TSS2_RC rc, const char *what)
{
	log_error("agent: %s failed: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
	return -EIO;
}

int attest_keys_create(struct tpm *t, struct attest_keys *k)
{
	ESYS_CONTEXT *esys = tpm_esys(t);
	TPM2B_PUBLIC ek_tmpl,
		ak_tmpl = {
			.publicArea =
				{
					.type = TPM2_ALG_RSA,
					.nameAlg = TPM2_ALG_SHA256,
					/* Restricted signing: the TPM signs with it only
					 * digests it computed itself (quotes), never an
					 * outside message that looks like one. */
					.objectAttributes =
						TPMA_OBJECT_FIXEDTPM |
						TPMA_OBJECT_FIXEDPARENT |
						TPMA_OBJECT_SENSITIVEDATAORIGIN |
						TPMA_OBJECT_USERWITHAUTH |
						TPMA_OBJECT_RESTRICTED |
						TPMA_OBJECT_SIGN_ENCRYPT,
					.parameters.rsaDetail =
						{
							.symmetric =
								{.algorithm =
									 TPM2_ALG_NULL},
							.scheme =
								{.scheme =
									 TPM2_ALG_RSASSA,
								 .details.rsassa.hashAlg =
									 TPM2_ALG_SHA256},
							.keyBits = 2048,
							.exponent = 0,
						},
				},
		};
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPML_PCR_SELECTION none = {0};
	TPM2B_DATA outside = {0};
	TPM2B_PUBLIC *pub = NULL;
	ESYS_TR ek = ESYS_TR_NONE, ak = ESYS_TR_NONE;
	size_t off = 0;
	TSS2_RC rc;

	tpm_ek_template(&ek_tmpl);
	rc = Esys_CreatePrimary(esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
				ESYS_TR_NONE, ESYS_TR_NONE, &sens, &ek_tmpl, &outside,
				&none, &ek, NULL, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "CreatePrimary(EK)");
	rc = Esys_CreatePrimary(esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
				ESYS_TR_NONE, ESYS_TR_NONE, &sens, &ak_tmpl, &outside,
				&none, &ak, &pub, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		Esys_FlushContext(esys, ek);
		return tss_error(rc, "CreatePrimary(AK)");
	}
	rc = Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, k->ak_public,
					 sizeof(k->ak_public), &off);
	Esys_Free(pub);
	if (rc != TSS2_RC_SUCCESS) {
		Esys_FlushContext(esys, ek);
		Esys_FlushContext(esys, ak);
		return tss_error(rc, "marshal the AK public");
	}
	k->ak_public_len = off;
	k->ek = ek;
	k->ak = ak;
	return 0;
}

void attest_keys_free(struct tpm *t, struct attest_keys *k)
{
	if (k->ek != ESYS_TR_NONE && k->ek)
		Esys_FlushContext(tpm_esys(t), k->ek);
	if (k->ak != ESYS_TR_NONE && k->ak)
		Esys_FlushContext(tpm_esys(t), k->ak);
	k->ek = k->ak = ESYS_TR_NONE;
}

/* The EK certificate from its NV index, read in chunks a TPM's NV buffer holds. */
static int ek_cert(ESYS_CONTEXT *esys, struct attest_buf *b)
{
	TPM2B_NV_PUBLIC *pub = NULL;
	ESYS_TR nv = ESYS_TR_NONE;
	uint8_t *cert = NULL;
	size_t size, done = 0;
	TSS2_RC rc;
	int r = 0;

	rc = Esys_TR_FromTPMPublic(esys, ATTEST_EK_CERT_NV, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, &nv);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "the EK certificate's NV index 0x01c00002");
	rc = Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
				NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_error(rc, "NV_ReadPublic(EK certificate)");
		goto out;
	}
	size = pub->nvPublic.dataSize;
	cert = malloc(size ? size : 1);
	if (!cert) {
		r = -ENOMEM;
		goto out;
	}
	while (done < size) {
		TPM2B_MAX_NV_BUFFER *data = NULL;
		uint16_t chunk = (uint16_t)(size - done > 512 ? 512 : size - done);

		rc = Esys_NV_Read(esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				  ESYS_TR_NONE, chunk, (uint16_t)done, &data);
		if (rc != TSS2_RC_SUCCESS) {
			r = tss_error(rc, "NV_Read(EK certificate)");
			goto out;
		}
		if (data->size != chunk) {
			Esys_Free(data);
			r = -EIO;
			goto out;
		}
		memcpy(cert + done, data->buffer, chunk);
		Esys_Free(data);
		done += chunk;
	}
	attest_buf_item(b, ATTEST_ITEM_EK_CERT, cert, size);
out:
	free(cert);
	Esys_Free(pub);
	Esys_TR_Close(esys, &nv);
	return r;
}

/* Every active bank's PCRs 0-15 into vals (TPM_MAX_DIGEST bytes a value). A PCR_Read
 * returns at most 8 digests, and says which: ask again for the rest. */
static int read_pcrs(struct tpm *t, const struct tpm_bank *banks, size_t n, uint8_t *vals)
{
	ESYS_CONTEXT *esys = tpm_esys(t);

	for (size_t i = 0; i < n; i++) {
		uint32_t want = (UINT32_C(1) << ATTEST_QUOTED_PCRS) - 1;

		for (int round = 0; want && round < ATTEST_QUOTED_PCRS; round++) {
			TPML_PCR_SELECTION sel = {.count = 1}, *got = NULL;
			TPML_DIGEST *d = NULL;
			size_t k = 0;
			TSS2_RC rc;

			sel.pcrSelections[0].hash = banks[i].alg;
			sel.pcrSelections[0].sizeofSelect = 3;
			sel.pcrSelections[0].pcrSelect[0] = (uint8_t)want;
			sel.pcrSelections[0].pcrSelect[1] = (uint8_t)(want >> 8);
			rc = Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					   &sel, NULL, &got, &d);
			if (rc != TSS2_RC_SUCCESS)
				return tss_error(rc, "PCR_Read");
			for (unsigned p = 0; p < ATTEST_QUOTED_PCRS; p++) {
				bool in = got->count == 1 &&
					  (got->pcrSelections[0].pcrSelect[p / 8] >>
					   (p % 8)) &
						  1;

				if (!in || !(want & (UINT32_C(1) << p)))
					continue;
				if (k >= d->count ||
				    d->digests[k].size != banks[i].size) {
					Esys_Free(got);
					Esys_Free(d);
					return -EIO;
				}
				memcpy(vals + (i * ATTEST_QUOTED_PCRS + p) *
						       TPM_MAX_DIGEST,
				       d->digests[k].buffer, banks[i].size);
				want &= ~(UINT32_C(1) << p);
				k++;
			}
			Esys_Free(got);
			Esys_Free(d);
			if (k == 0)
				return -EIO; /* no progress: a TPM that reads nothing */
		}
		if (want)
			return -EIO;
	}
	return 0;
}

static int quote(struct tpm *t, const struct attest_keys *k, const uint8_t *nonce,
		 bool join, const struct tpm_bank *banks, size_t n_banks,
		 struct attest_buf *b)
{
	ESYS_CONTEXT *esys = tpm_esys(t);
	TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_RSASSA,
				  .details.rsassa.hashAlg = TPM2_ALG_SHA256};
	TPM2B_DATA qualifying = {.size = ATTEST_NONCE};
	TPML_PCR_SELECTION sel = {.count = (uint32_t)n_banks};
	TPM2B_ATTEST *quoted = NULL;
	TPMT_SIGNATURE *sig = NULL;
	uint8_t sigbuf[1024];
	size_t off = 0;
	TSS2_RC rc;

	memcpy(qualifying.buffer, nonce, ATTEST_NONCE);
	if (join) {
		memcpy(qualifying.buffer + ATTEST_NONCE, ATTEST_JOIN_TAG, ATTEST_NONCE);
		qualifying.size = 2 * ATTEST_NONCE;
	}
	for (size_t i = 0; i < n_banks; i++) {
		sel.pcrSelections[i].hash = banks[i].alg;
		sel.pcrSelections[i].sizeofSelect = 3;
		sel.pcrSelections[i].pcrSelect[0] = 0xff; /* PCRs 0-7 */
		sel.pcrSelections[i].pcrSelect[1] = 0xff; /* 8-15 */
	}
	rc = Esys_Quote(esys, k->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
			&qualifying, &scheme, &sel, &quoted, &sig);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "Quote");
	rc = Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sigbuf, sizeof(sigbuf), &off);
	if (rc == TSS2_RC_SUCCESS) {
		attest_buf_item(b, ATTEST_ITEM_QUOTE, quoted->attestationData,
				quoted->size);
		attest_buf_item(b, ATTEST_ITEM_SIGNATURE, sigbuf, off);
	}
	Esys_Free(quoted);
	Esys_Free(sig);
	return rc == TSS2_RC_SUCCESS ? 0 : tss_error(rc, "marshal the signature");
}

/* A whole file of at most ATTEST_MAX_LOG bytes as an item (from fd when fd >= 0). An
 * absent file is no item: the verifier says what it misses. */
static int file_item(struct attest_buf *b, enum attest_item type, const char *path,
		     int fd)
{
	_cleanup_close_ int own = -1;
	uint8_t *buf;
	size_t len = 0;
	int r = 0;

	if (fd < 0) {
		own = fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		if (fd < 0)
			return errno == ENOENT ? 0 : -errno;
	}
	buf = malloc(ATTEST_MAX_LOG);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = pread(fd, buf + len, ATTEST_MAX_LOG - len, (off_t)len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == ATTEST_MAX_LOG) {
			r = -EFBIG;
			break;
		}
	}
	if (r == 0)
		attest_buf_item(b, type, buf, len);
	free(buf);
	return r;
}

int attest_evidence(struct tpm *t, const struct attest_keys *k,
		    const struct attest_sources *src, const uint8_t *nonce,
		    struct attest_buf *b, const char **step)
{
	struct tpm_bank all[TPM_MAX_BANKS], banks[ATTEST_MAX_BANKS];
	static uint8_t before[ATTEST_MAX_BANKS * ATTEST_QUOTED_PCRS * TPM_MAX_DIGEST],
		after[sizeof(before)];
	_cleanup_close_ int log_fd = -1;
	size_t n_banks = 0;
	int n, r;

	*step = "list the PCR banks";
	n = tpm_pcr_banks(t, all, ARRAY_SIZE(all));
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		if (all[i].size == 0)
			continue;
		if (n_banks == ATTEST_MAX_BANKS)
			return -E2BIG;
		banks[n_banks++] = all[i];
	}
	attest_buf_begin(b, ATTEST_OK);
	/* cvminit extends and logs under LOCK_EX: under LOCK_SH the log and PCRs 11 and
	 * 15 cannot move between the reads and the quote. */
	*step = "lock cvminit's log";
	log_fd = open(src->cvminit_log, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (log_fd >= 0)
		while (flock(log_fd, LOCK_SH) < 0)
			if (errno != EINTR)
				return -errno;
	/* The firmware's PCRs do not move after boot; one retry covers an extend by
	 * something that does not log (none on a cvminit node). */
	for (int attempt = 0;; attempt++) {
		size_t mark = b->len;

		*step = "read the PCRs";
		r = read_pcrs(t, banks, n_banks, before);
		if (r == 0) {
			*step = "quote";
			r = quote(t, k, nonce, src->join, banks, n_banks, b);
		}
		if (r == 0) {
			*step = "read the PCRs after the quote";
			r = read_pcrs(t, banks, n_banks, after);
		}
		if (r < 0)
			return r;
		if (memcmp(before, after, sizeof(before)) == 0)
			break;
		*step = "PCRs moved during the quote";
		if (attempt == 2)
			return -EAGAIN;
		b->len = mark;
	}
	for (size_t i = 0; i < n_banks; i++) {
		uint8_t item[2 + ATTEST_QUOTED_PCRS * TPM_MAX_DIGEST];
		size_t size = banks[i].size;

		item[0] = (uint8_t)(banks[i].alg >> 8);
		item[1] = (uint8_t)banks[i].alg;
		for (unsigned p = 0; p < ATTEST_QUOTED_PCRS; p++)
			memcpy(item + 2 + p * size,
			       before + (i * ATTEST_QUOTED_PCRS + p) * TPM_MAX_DIGEST,
			       size);
		attest_buf_item(b, ATTEST_ITEM_PCRS, item, 2 + ATTEST_QUOTED_PCRS * size);
	}
	*step = "read cvminit's log";
	if (log_fd >= 0) {
		r = file_item(b, ATTEST_ITEM_CVMINIT_LOG, src->cvminit_log, log_fd);
		(void)flock(log_fd, LOCK_UN);
		if (r < 0)
			return log_errno(r, "agent: read %s", src->cvminit_log);
	}
	attest_buf_item(b, ATTEST_ITEM_AK_PUBLIC, k->ak_public, k->ak_public_len);
	*step = "read the EK certificate";
	r = ek_cert(tpm_esys(t), b);
	if (r < 0)
		return r;
	*step = "read the firmware log";
	r = file_item(b, ATTEST_ITEM_FIRMWARE_LOG, src->firmware_log, -1);
	if (r < 0)
		return log_errno(r, "agent: read %s", src->firmware_log);
	if (src->tsm_root) {
		uint8_t data[64] = {0};

		memcpy(data, nonce, ATTEST_NONCE);
		/* A platform without a report provider (a plain VM, or the module not
		 * loaded) has none: left out, and the verifier says so. */
		r = attest_tsm_report(src->tsm_root, data, sizeof(data), b);
		if (r < 0 && r != -ENOENT)
			log_warn_errno(
				r, "agent: configfs-tsm report: none in the evidence");
	}
	*step = "assemble the response";
	return attest_buf_end(b);
}

int attest_activate(struct tpm *t, const struct attest_keys *k, const uint8_t *blob,
		    size_t blob_len, const uint8_t *secret, size_t secret_len,
		    uint8_t *out, size_t out_cap)
{
	ESYS_CONTEXT *esys = tpm_esys(t);
	TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
	TPM2B_ID_OBJECT cred = {0};
	TPM2B_ENCRYPTED_SECRET enc = {0};
	TPM2B_DIGEST *info = NULL;
	ESYS_TR session = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (blob_len > sizeof(cred.credential) || secret_len > sizeof(enc.secret))
		return -EINVAL;
	cred.size = (uint16_t)blob_len;
	memcpy(cred.credential, blob, blob_len);
	enc.size = (uint16_t)secret_len;
	memcpy(enc.secret, secret, secret_len);
	/* The EK's policy: PolicySecret(TPM_RH_ENDORSEMENT), empty endorsement auth. */
	rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &sym,
				   TPM2_ALG_SHA256, &session);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "StartAuthSession(policy)");
	rc = Esys_PolicySecret(esys, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD,
			       ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL,
			       NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_error(rc, "PolicySecret(endorsement)");
		goto out;
	}
	rc = Esys_ActivateCredential(esys, k->ak, k->ek, ESYS_TR_PASSWORD, session,
				     ESYS_TR_NONE, &cred, &enc, &info);
	if (rc != TSS2_RC_SUCCESS) {
		/* The TPM says the credential is not for this AK and EK: the verifier's
		 * business, not an agent error. */
		log_info("agent: ActivateCredential refused: %s (0x%x)",
			 Tss2_RC_Decode(rc), rc);
		r = -EACCES;
		goto out;
	}
	if (info->size > out_cap) {
		r = -ENOBUFS;
	} else {
		memcpy(out, info->buffer, info->size);
		r = info->size;
	}
	Esys_Free(info);
out:
	Esys_FlushContext(esys, session);
	return r;
}

/* Reads at most max bytes of dir/name into a malloc'ed buffer. */
static int read_attr(int dirfd, const char *name, size_t max, uint8_t **ret, size_t *len)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	uint8_t *buf;
	size_t n = 0;

	if (fd < 0)
		return -errno;
	buf = malloc(max);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t k = read(fd, buf + n, max - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			free(buf);
			return -errno;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == max) {
			free(buf);
			return -EFBIG;
		}
	}
	*ret = buf;
	*len = n;
	return 0;
}

int attest_tsm_report(const char *tsm_root, const uint8_t *report_data, size_t n,
		      struct attest_buf *b)
{
	_cleanup_close_ int root = -1, entry = -1, in = -1;
	uint8_t *report = NULL, *provider = NULL;
	size_t report_len = 0, provider_len = 0;
	ssize_t w;
	int r;

	root = open(tsm_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (mkdirat(root, TSM_ENTRY, 0700) < 0 && errno != EEXIST)
		return -errno;
	entry = openat(root, TSM_ENTRY, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (entry < 0) {
		r = -errno;
		goto out;
	}
	/* No provider (configfs-tsm loaded on a platform without one): no report. */
	if (read_attr(entry, "provider", 64, &provider, &provider_len) < 0) {
		r = -ENOENT;
		goto out;
	}
	/* configfs-tsm takes the report data in one write; reading outblob then asks the
	 * platform (SNP firmware or TDX module) for the report over it. */
	in = openat(entry, "inblob", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (in < 0) {
		r = -errno;
		goto out;
	}
	w = write(in, report_data, n);
	if (w != (ssize_t)n) {
		r = w < 0 ? -errno : -EIO;
		goto out;
	}
	r = read_attr(entry, "outblob", TSM_MAX_REPORT, &report, &report_len);
	if (r < 0)
		goto out;
	while (provider_len && provider[provider_len - 1] == '\n')
		provider_len--;
	attest_buf_item(b, ATTEST_ITEM_TSM_REPORT, report, report_len);
	attest_buf_item(b, ATTEST_ITEM_TSM_PROVIDER, provider, provider_len);
out:
	free(report);
	free(provider);
	/* On configfs rmdir removes the entry; in a fake tree of regular files it fails,
	 * which is harmless. */
	(void)unlinkat(root, TSM_ENTRY, AT_REMOVEDIR);
	return r;
}
