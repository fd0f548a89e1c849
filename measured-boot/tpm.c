/* TPM 2.0 through tpm2-tss ESYS over the kernel's resource manager (/dev/tpmrm0). Errors
 * are decoded with Tss2_RC_Decode so the log names the TPM's own reason. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tcti_device.h>
#ifdef CVM_TPM_SWTPM
#include <tss2/tss2_tcti_swtpm.h>
#endif

#include "../lib/log.h"
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
	{TPM2_ALG_SHA1, "sha1", 20},	   {TPM2_ALG_SHA256, "sha256", 32},
	{TPM2_ALG_SHA384, "sha384", 48},   {TPM2_ALG_SHA512, "sha512", 64},
	{TPM2_ALG_SM3_256, "sm3_256", 32},
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

int tpm_fds_cloexec(const struct pollfd *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int flags = fcntl(fds[i].fd, F_GETFD);

		if (flags < 0 || fcntl(fds[i].fd, F_SETFD, flags | FD_CLOEXEC) < 0)
			return -errno;
	}
	return 0;
}

/* The device TCTI has one descriptor, /dev/tpmrm0, and reports it as its poll handle. A
 * TCTI without poll handles (the swtpm one of the host tests: sockets) is left as is, but
 * the device must report its descriptor: an fd we cannot see could leak into services. */
static int tcti_cloexec(TSS2_TCTI_CONTEXT *tcti, bool required)
{
	TSS2_TCTI_POLL_HANDLE fds[4];
	size_t n = 0;
	TSS2_RC rc;

	rc = Tss2_Tcti_GetPollHandles(tcti, NULL, &n);
	if (rc == TSS2_RC_SUCCESS && n <= ARRAY_SIZE(fds))
		rc = Tss2_Tcti_GetPollHandles(tcti, fds, &n);
	if (rc != TSS2_RC_SUCCESS || n > ARRAY_SIZE(fds) || (required && n == 0)) {
		if (!required)
			return 0;
		log_error(
			"tpm: cannot get the TCTI's descriptors to close on exec (0x%x)",
			rc);
		return -EIO;
	}
	int r = tpm_fds_cloexec(fds, n);
	return r < 0 ? log_errno(r, "tpm: set FD_CLOEXEC on the TPM descriptor") : 0;
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
	r = tcti_cloexec(t->tcti, streq(tcti, "device"));
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

	/* Every active bank, known or not: the caller refuses one it cannot extend
	 * (measure_banks_check()) rather than never knowing it was there. */
	const TPML_PCR_SELECTION *sel = &cap->data.assignedPCR;
	for (UINT32 i = 0; i < sel->count; i++) {
		const TPMS_PCR_SELECTION *s = &sel->pcrSelections[i];
		bool any = false;

		for (unsigned b = 0; b < s->sizeofSelect; b++)
			any |= s->pcrSelect[b] != 0;
		if (!any)
			continue;
		if ((size_t)n == max) {
			n = log_errno(-E2BIG, "tpm: more than %zu active PCR banks", max);
			break;
		}
		int size = tpm_alg_digest_size(s->hash);
		banks[n++] = (struct tpm_bank){.alg = s->hash,
					       .size = (uint16_t)(size < 0 ? 0 : size)};
	}
	Esys_Free(cap);
	return n;
}

int tpm_pcr_read(struct tpm *t, uint16_t alg, unsigned pcr, uint8_t *digest)
{
	TPML_PCR_SELECTION sel = {.count = 1};
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
		log_error("tpm: PCR_Read of PCR %u returned %u digests", pcr,
			  values->count);
	} else {
		r = values->digests[0].size;
		memcpy(digest, values->digests[0].buffer, (size_t)r);
	}
	Esys_Free(values);
	return r;
}

int tpm_pcr_extend(struct tpm *t, unsigned pcr, const struct digest *digests, size_t n)
{
	TPML_DIGEST_VALUES values = {.count = (UINT32)n};
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
		log_error("tpm: PCR_Extend of PCR %u failed: %s (0x%x)", pcr,
			  Tss2_RC_Decode(rc), rc);
		return -EIO;
	}
	return 0;
}

/* A session salted to the key (ESYS encrypts the salt to the public area the TPM
 * returned), then a TPM2_GetRandom whose response is encrypted and HMACed under that
 * session's key. A TPM that only echoes another TPM's public area cannot decrypt the
 * salt, so ESYS rejects its response HMAC. */
int tpm_key_prove(struct tpm *t, uint32_t key)
{
	const TPMT_SYM_DEF sym = {
		.algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB};
	ESYS_TR session = ESYS_TR_NONE;
	TPM2B_DIGEST *rnd = NULL;
	TSS2_RC rc;
	int r = 0;

	rc = Esys_StartAuthSession(t->esys, key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &sym,
				   TPM2_ALG_SHA256, &session);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "StartAuthSession salted to the EK");
	rc = Esys_TRSess_SetAttributes(t->esys, session, TPMA_SESSION_ENCRYPT,
				       TPMA_SESSION_ENCRYPT |
					       TPMA_SESSION_CONTINUESESSION);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_GetRandom(t->esys, session, ESYS_TR_NONE, ESYS_TR_NONE, 16,
				    &rnd);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_error(rc, "GetRandom in the session salted to the EK");
		/* Not continued: the TPM closed it on success; on failure, flush it. */
		Esys_FlushContext(t->esys, session);
	}
	Esys_Free(rnd);
	return r;
}

void tpm_ek_template(struct TPM2B_PUBLIC *tmpl)
{
	/* TCG EK Credential Profile 2.0, template L-1: the policy is PolicySecret(TPM_RH_
	 * ENDORSEMENT); unique is 256 zero bytes, so every TPM derives one EK per seed. */
	static const uint8_t policy[32] = {
		0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
		0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
		0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
	};
	TPM2B_PUBLIC in = {
		.publicArea =
			{
				.type = TPM2_ALG_RSA,
				.nameAlg = TPM2_ALG_SHA256,
				.objectAttributes =
					TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
					TPMA_OBJECT_SENSITIVEDATAORIGIN |
					TPMA_OBJECT_ADMINWITHPOLICY |
					TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
				.authPolicy = {.size = sizeof(policy)},
				.parameters.rsaDetail =
					{
						.symmetric = {.algorithm = TPM2_ALG_AES,
							      .keyBits.aes = 128,
							      .mode.aes = TPM2_ALG_CFB},
						.scheme = {.scheme = TPM2_ALG_NULL},
						.keyBits = 2048,
						.exponent = 0,
					},
				.unique.rsa = {.size = 256},
			},
	};

	memcpy(in.publicArea.authPolicy.buffer, policy, sizeof(policy));
	*tmpl = in;
}

int tpm_ek_public(struct tpm *t, uint8_t *buf, size_t size, bool *possessed)
{
	TPM2B_PUBLIC in;
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPML_PCR_SELECTION pcrs = {0};
	TPM2B_DATA outside = {0};
	TPM2B_PUBLIC *out = NULL;
	ESYS_TR ek = ESYS_TR_NONE;
	size_t off = 0;
	TSS2_RC rc;
	int r;

	if (possessed)
		*possessed = false;
	tpm_ek_template(&in);
	rc = Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
				ESYS_TR_NONE, ESYS_TR_NONE, &sens, &in, &outside, &pcrs,
				&ek, &out, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_error(rc, "CreatePrimary(EK)");
	if (possessed)
		*possessed = tpm_key_prove(t, ek) == 0;
	Esys_FlushContext(t->esys, ek);
	rc = Tss2_MU_TPMT_PUBLIC_Marshal(&out->publicArea, buf, size, &off);
	Esys_Free(out);
	if (rc == TSS2_MU_RC_INSUFFICIENT_BUFFER)
		return -ENOBUFS;
	r = rc == TSS2_RC_SUCCESS ? (int)off : tss_error(rc, "marshal the EK public");
	return r;
}
