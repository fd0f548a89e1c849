/* TPM 2.0 through tpm2-tss ESYS over the kernel's resource manager (/dev/tpmrm0). Errors
 * are decoded with Tss2_RC_Decode so the log names the TPM's own reason. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tcti_device.h>
#ifdef CVM_TPM_SWTPM
#include <tss2/tss2_tcti_swtpm.h>
#endif

#include "../init/log.h"
#include "tpm.h"

struct tpm {
	ESYS_CONTEXT *esys;
	TSS2_TCTI_CONTEXT *tcti;
};

static const struct {
	uint16_t alg;
	const char *name;
	int size;
} algs[] = {
	{ TPM2_ALG_SHA1, "sha1", 20 },
	{ TPM2_ALG_SHA256, "sha256", 32 },
	{ TPM2_ALG_SHA384, "sha384", 48 },
	{ TPM2_ALG_SHA512, "sha512", 64 },
	{ TPM2_ALG_SM3_256, "sm3_256", 32 },
};

const char *tpm_alg_name(uint16_t alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
		if (algs[i].alg == alg)
			return algs[i].name;
	return NULL;
}

int tpm_alg_digest_size(uint16_t alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
		if (algs[i].alg == alg)
			return algs[i].size;
	return -EINVAL;
}

static int tss_error(TSS2_RC rc, const char *what)
{
	log_error("tpm: %s failed: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
	return -EIO;
}

static int tcti_init(const char *tcti, const char *conf, TSS2_TCTI_CONTEXT **ret)
{
	TSS2_RC (*init)(TSS2_TCTI_CONTEXT *, size_t *, const char *) = NULL;
	TSS2_TCTI_CONTEXT *ctx;
	size_t size = 0;
	TSS2_RC rc;

	if (streq(tcti, "device")) {
		struct stat st;
		if (!conf)
			conf = "/dev/tpmrm0";
		if (stat(conf, &st) < 0)
			return -errno;
		init = Tss2_Tcti_Device_Init;
	}
#ifdef CVM_TPM_SWTPM
	else if (streq(tcti, "swtpm"))
		init = Tss2_Tcti_Swtpm_Init;
#endif
	if (!init)
		return -EINVAL;

	rc = init(NULL, &size, conf);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "TCTI size query");
	ctx = calloc(1, size);
	if (!ctx)
		return -ENOMEM;
	rc = init(ctx, &size, conf);
	if (rc != TSS2_RC_SUCCESS) {
		free(ctx);
		return tss_error(rc, conf ? conf : tcti);
	}
	*ret = ctx;
	return 0;
}

int tpm_open(const char *tcti, const char *conf, struct tpm **ret)
{
	struct tpm *t;
	TSS2_RC rc;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	r = tcti_init(tcti, conf, &t->tcti);
	if (r < 0)
		goto out;
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_error(rc, "Esys_Initialize");
		goto out;
	}
	*ret = t;
	return 0;
out:
	tpm_close(t);
	return r;
}

void tpm_close(struct tpm *t)
{
	if (!t)
		return;
	if (t->esys)
		Esys_Finalize(&t->esys);
	if (t->tcti) {
		Tss2_Tcti_Finalize(t->tcti);
		free(t->tcti);
	}
	free(t);
}

struct ESYS_CONTEXT *tpm_esys(struct tpm *t)
{
	return t->esys;
}

int tpm_pcr_banks(struct tpm *t, struct tpm_bank *banks, size_t max)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	TSS2_RC rc;
	int n = 0;

	rc = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				TPM2_CAP_PCRS, 0, 1, &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "GetCapability(PCRS)");

	const TPML_PCR_SELECTION *sel = &cap->data.assignedPCR;
	for (UINT32 i = 0; i < sel->count && (size_t)n < max; i++) {
		const TPMS_PCR_SELECTION *s = &sel->pcrSelections[i];
		bool any = false;

		for (unsigned b = 0; b < s->sizeofSelect; b++)
			any |= s->pcrSelect[b] != 0;
		int size = tpm_alg_digest_size(s->hash);
		if (!any || size < 0)
			continue;
		banks[n++] = (struct tpm_bank){ .alg = s->hash, .size = (uint16_t)size };
	}
	Esys_Free(cap);
	return n;
}

int tpm_pcr_read(struct tpm *t, uint16_t alg, unsigned pcr, uint8_t *digest)
{
	TPML_PCR_SELECTION sel = { .count = 1 };
	TPML_DIGEST *values = NULL;
	TSS2_RC rc;
	int r;

	if (pcr >= 24)
		return -EINVAL;
	sel.pcrSelections[0].hash = alg;
	sel.pcrSelections[0].sizeofSelect = 3;
	sel.pcrSelections[0].pcrSelect[pcr / 8] = (uint8_t)(1u << (pcr % 8));

	rc = Esys_PCR_Read(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL,
			   NULL, &values);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "PCR_Read");
	if (values->count != 1 || values->digests[0].size > TPM_MAX_DIGEST) {
		r = -EIO;
		log_error("tpm: PCR_Read of PCR %u returned %u digests", pcr, values->count);
	} else {
		r = values->digests[0].size;
		memcpy(digest, values->digests[0].buffer, (size_t)r);
	}
	Esys_Free(values);
	return r;
}

int tpm_pcr_extend(struct tpm *t, unsigned pcr, const struct digest *digests, size_t n)
{
	TPML_DIGEST_VALUES values = { .count = (UINT32)n };
	TSS2_RC rc;

	if (pcr >= 24 || n == 0 || n > ARRAY_SIZE(values.digests))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (digests[i].size > sizeof(values.digests[i].digest) ||
		    tpm_alg_digest_size(digests[i].alg) != digests[i].size)
			return -EINVAL;
		values.digests[i].hashAlg = digests[i].alg;
		memcpy(&values.digests[i].digest, digests[i].buf, digests[i].size);
	}
	/* A PCR's auth value is empty unless someone set one: a password session with none. */
	rc = Esys_PCR_Extend(t->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			     ESYS_TR_NONE, &values);
	if (rc != TSS2_RC_SUCCESS) {
		log_error("tpm: PCR_Extend of PCR %u failed: %s (0x%x)", pcr, Tss2_RC_Decode(rc), rc);
		return -EIO;
	}
	return 0;
}
