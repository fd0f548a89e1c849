/* The state key sealed to the TPM: an ECC P-256 SRK from the TCG template, a keyedhash
 * object under it whose only authorization is PolicyPCR, salted sessions both ways, and
 * the "systemd-tpm2"-shaped LUKS2 token that carries the sealed blob. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_sys.h>

#include "../lib/hex.h"
#include "../lib/log.h"
#include "eventlog.h"
#include "seal.h"
#include "tpm.h"

/* The sealed object: bound to this TPM and its parent, no password (userWithAuth clear),
 * so PolicyPCR is the only way to use it. */
#define SEALED_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT)

static const TPMT_SYM_DEF session_aes = {
	.algorithm = TPM2_ALG_AES,
	.keyBits.aes = 128,
	.mode.aes = TPM2_ALG_CFB,
};

/* ESYS keeps copies of a session-encrypted parameter that its API does not wipe: the
 * decrypted response parameter is written back into the SAPI context's buffer, where it
 * stays until a later response overwrites it, and both directions go through a plaintext
 * array on ESYS's stack. These two wipe them once a command that carried the key is done.
 * The response buffer is the SAPI context's own (Tss2_Sys_GetRpBuffer hands it out const
 * only because callers are not meant to write it). */
static void wipe_sapi_response(ESYS_CONTEXT *esys)
{
	TSS2_SYS_CONTEXT *sys = NULL;
	const uint8_t *rp = NULL;
	size_t n = 0;

	if (Esys_GetSysContext(esys, &sys) != TSS2_RC_SUCCESS || !sys)
		return;
	if (Tss2_Sys_GetRpBuffer(sys, &n, &rp) == TSS2_RC_SUCCESS && rp && n)
		explicit_bzero((uint8_t *)rp, n);
}

/* Called from the frame that called ESYS: this frame lies over the ones ESYS used. */
__attribute__((noinline)) static void wipe_stack_below(void)
{
	uint8_t junk[32 * 1024];

	explicit_bzero(junk, sizeof(junk));
	__asm__ volatile("" : : "r"(junk) : "memory");
}

static int tss_fail(TSS2_RC rc, const char *what)
{
	log_error("seal: %s failed: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
	return -EIO;
}

/* A TPM response code of the format-1 kind (parameter, handle or session errors carry
 * their number in the upper bits), compared without that number. */
static bool tpm_rc_is(TSS2_RC rc, TSS2_RC want)
{
	if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
		return false;
	rc &= 0xffff;
	if (rc & TPM2_RC_FMT1)
		return (rc & 0xbf) == (want & 0xbf);
	return rc == want;
}

/* The TCG "ECC NIST P256 storage key" template (TPM 2.0 Provisioning Guidance 7.5.1,
 * EK profile template L-2) as systemd (tpm2_get_srk_template) and tpm2-tools
 * (createprimary -G ecc256:aes128cfb) fill it: a restricted decryption key with an empty
 * unique field, so the same TPM always derives the same key in the owner hierarchy. */
static int srk_create(ESYS_CONTEXT *esys, ESYS_TR *srk)
{
	TPM2B_PUBLIC tmpl = {
		.publicArea =
			{
				.type = TPM2_ALG_ECC,
				.nameAlg = TPM2_ALG_SHA256,
				.objectAttributes =
					TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
					TPMA_OBJECT_SENSITIVEDATAORIGIN |
					TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA |
					TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
				.parameters.eccDetail =
					{
						.symmetric = {.algorithm = TPM2_ALG_AES,
							      .keyBits.aes = 128,
							      .mode.aes = TPM2_ALG_CFB},
						.scheme.scheme = TPM2_ALG_NULL,
						.curveID = TPM2_ECC_NIST_P256,
						.kdf.scheme = TPM2_ALG_NULL,
					},
			},
	};
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION none = {0};
	TSS2_RC rc;

	rc = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				ESYS_TR_NONE, &sens, &tmpl, &outside, &none, srk, NULL,
				NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(rc, "CreatePrimary (SRK, ECC P-256, owner hierarchy)");
	return 0;
}

static void pcr_selection(uint32_t mask, TPML_PCR_SELECTION *sel)
{
	memset(sel, 0, sizeof(*sel));
	sel->count = 1;
	sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel->pcrSelections[0].sizeofSelect = 3;
	for (unsigned i = 0; i < SEAL_PCR_MAX; i++)
		if (mask & (1u << i))
			sel->pcrSelections[0].pcrSelect[i / 8] |=
				(uint8_t)(1u << (i % 8));
}

/* Reads the masked PCRs of the sha256 bank into values[pcr]. */
static int pcrs_read(struct tpm *t, uint32_t mask, uint8_t values[][SEAL_DIGEST_SIZE])
{
	uint8_t d[TPM_MAX_DIGEST];

	for (unsigned i = 0; i < SEAL_PCR_MAX; i++) {
		if (!(mask & (1u << i)))
			continue;
		int n = tpm_pcr_read(t, TPM2_ALG_SHA256, i, d);
		if (n < 0)
			return n;
		if (n != SEAL_DIGEST_SIZE)
			return -EIO;
		memcpy(values[i], d, SEAL_DIGEST_SIZE);
	}
	return 0;
}

/* The policy digest of one PolicyPCR over these values, computed by the TPM in a trial
 * session (so our digest is the TPM's own idea of it). */
static int policy_digest(ESYS_CONTEXT *esys, uint32_t mask,
			 uint8_t values[][SEAL_DIGEST_SIZE],
			 uint8_t out[SEAL_DIGEST_SIZE])
{
	const TPMT_SYM_DEF none = {.algorithm = TPM2_ALG_NULL};
	mbedtls_sha256_context ctx;
	TPML_PCR_SELECTION sel;
	TPM2B_DIGEST pcr_digest = {.size = SEAL_DIGEST_SIZE};
	TPM2B_DIGEST *digest = NULL;
	ESYS_TR trial = ESYS_TR_NONE;
	TSS2_RC rc;
	int r = 0;

	/* PolicyPCR's pcrDigest: the hash of the selected values in index order. */
	mbedtls_sha256_init(&ctx);
	mbedtls_sha256_starts_ret(&ctx, 0);
	for (unsigned i = 0; i < SEAL_PCR_MAX; i++)
		if (mask & (1u << i))
			mbedtls_sha256_update_ret(&ctx, values[i], SEAL_DIGEST_SIZE);
	mbedtls_sha256_finish_ret(&ctx, pcr_digest.buffer);
	mbedtls_sha256_free(&ctx);

	pcr_selection(mask, &sel);
	rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_TRIAL, &none,
				   TPM2_ALG_SHA256, &trial);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(rc, "StartAuthSession (trial)");
	rc = Esys_PolicyPCR(esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
			    &pcr_digest, &sel);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(rc, "PolicyPCR (trial)");
		goto out;
	}
	rc = Esys_PolicyGetDigest(esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				  &digest);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(rc, "PolicyGetDigest");
		goto out;
	}
	if (digest->size != SEAL_DIGEST_SIZE)
		r = -EIO;
	else
		memcpy(out, digest->buffer, SEAL_DIGEST_SIZE);
	Esys_Free(digest);
out:
	Esys_FlushContext(esys, trial);
	return r;
}

/* A session salted with the SRK: its key is derived from a secret only the TPM can
 * decrypt, so the parameters it encrypts are safe from anyone on the TPM's bus. */
static int salted_session(ESYS_CONTEXT *esys, ESYS_TR srk, TPM2_SE type,
			  TPMA_SESSION attrs, ESYS_TR *ret)
{
	TSS2_RC rc;

	rc = Esys_StartAuthSession(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, NULL, type, &session_aes,
				   TPM2_ALG_SHA256, ret);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(rc, "StartAuthSession (salted with the SRK)");
	rc = Esys_TRSess_SetAttributes(esys, *ret, attrs, 0xff);
	if (rc != TSS2_RC_SUCCESS) {
		Esys_FlushContext(esys, *ret);
		return tss_fail(rc, "TRSess_SetAttributes");
	}
	return 0;
}

/* --- the blob: TPM2B_PRIVATE then TPM2B_PUBLIC in TPM wire format (big-endian), as
 * systemd's tpm2-blob. Only the keyedhash objects seal_key() makes are accepted. */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static int blob_marshal(const TPM2B_PRIVATE *priv, const TPM2B_PUBLIC *pub,
			struct sealed *s)
{
	const TPMT_PUBLIC *a = &pub->publicArea;
	uint8_t *p = s->blob;
	size_t pub_len =
		2 + 2 + 4 + 2 + a->authPolicy.size + 2 + 2 + a->unique.keyedHash.size;

	if (a->type != TPM2_ALG_KEYEDHASH ||
	    a->parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_NULL ||
	    2 + (size_t)priv->size + 2 + pub_len > sizeof(s->blob))
		return -EINVAL;
	put16(p, priv->size);
	memcpy(p + 2, priv->buffer, priv->size);
	p += 2 + priv->size;
	put16(p, (uint16_t)pub_len);
	p += 2;
	put16(p, a->type);
	put16(p + 2, a->nameAlg);
	p[4] = (uint8_t)(a->objectAttributes >> 24);
	p[5] = (uint8_t)(a->objectAttributes >> 16);
	p[6] = (uint8_t)(a->objectAttributes >> 8);
	p[7] = (uint8_t)a->objectAttributes;
	put16(p + 8, a->authPolicy.size);
	memcpy(p + 10, a->authPolicy.buffer, a->authPolicy.size);
	p += 10 + a->authPolicy.size;
	put16(p, TPM2_ALG_NULL);
	put16(p + 2, a->unique.keyedHash.size);
	memcpy(p + 4, a->unique.keyedHash.buffer, a->unique.keyedHash.size);
	p += 4 + a->unique.keyedHash.size;
	s->blob_len = (size_t)(p - s->blob);
	return 0;
}

static int blob_unmarshal(const struct sealed *s, TPM2B_PRIVATE *priv, TPM2B_PUBLIC *pub,
			  char *err, size_t errlen)
{
	const uint8_t *p = s->blob, *end = s->blob + s->blob_len;
	TPMT_PUBLIC *a = &pub->publicArea;
	size_t n;

	memset(priv, 0, sizeof(*priv));
	memset(pub, 0, sizeof(*pub));
	if (end - p < 2 || (n = get16(p)) > sizeof(priv->buffer) ||
	    (size_t)(end - p) < 2 + n)
		goto bad;
	priv->size = (uint16_t)n;
	memcpy(priv->buffer, p + 2, n);
	p += 2 + n;
	if (end - p < 2 || (size_t)(end - p) != 2 + (size_t)get16(p))
		goto bad;
	pub->size = get16(p);
	p += 2;
	if (end - p < 10)
		goto bad;
	a->type = get16(p);
	a->nameAlg = get16(p + 2);
	a->objectAttributes =
		(uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
	n = get16(p + 8);
	p += 10;
	if (n != SEAL_DIGEST_SIZE || (size_t)(end - p) < n + 4)
		goto bad;
	a->authPolicy.size = (uint16_t)n;
	memcpy(a->authPolicy.buffer, p, n);
	p += n;
	a->parameters.keyedHashDetail.scheme.scheme = get16(p);
	n = get16(p + 2);
	p += 4;
	if (n > sizeof(a->unique.keyedHash.buffer) || (size_t)(end - p) != n)
		goto bad;
	a->unique.keyedHash.size = (uint16_t)n;
	memcpy(a->unique.keyedHash.buffer, p, n);

	if (a->type != TPM2_ALG_KEYEDHASH || a->nameAlg != TPM2_ALG_SHA256 ||
	    a->objectAttributes != SEALED_ATTRS ||
	    a->parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_NULL) {
		snprintf(err, errlen,
			 "the sealed object is not a policy-only sha256 keyedhash object "
			 "(type 0x%x, name alg 0x%x, attributes 0x%x)",
			 a->type, a->nameAlg, a->objectAttributes);
		return -EBADMSG;
	}
	if (memcmp(a->authPolicy.buffer, s->policy, SEAL_DIGEST_SIZE) != 0) {
		snprintf(err, errlen,
			 "the sealed object's policy is not tpm2-policy-hash");
		return -EBADMSG;
	}
	return 0;
bad:
	snprintf(err, errlen,
		 "tpm2-blob is not a marshalled TPM2B_PRIVATE + TPM2B_PUBLIC (%zu bytes)",
		 s->blob_len);
	return -EBADMSG;
}

int seal_key(struct tpm *t, uint32_t pcr_mask, const uint8_t *key, size_t len,
	     struct sealed *out)
{
	ESYS_CONTEXT *esys = tpm_esys(t);
	ESYS_TR srk = ESYS_TR_NONE, sess = ESYS_TR_NONE;
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPM2B_PUBLIC tmpl = {0};
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION none = {0};
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *pub = NULL;
	TSS2_RC rc;
	int r;

	if (len == 0 || len > sizeof(sens.sensitive.data.buffer) || len > SEAL_KEY_MAX ||
	    pcr_mask == 0 || pcr_mask >= (1u << SEAL_PCR_MAX))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->pcr_mask = pcr_mask;

	r = pcrs_read(t, pcr_mask, out->pcr_values);
	if (r < 0)
		return log_errno(r, "seal: read the PCRs to seal to");
	r = policy_digest(esys, pcr_mask, out->pcr_values, out->policy);
	if (r < 0)
		return r;
	r = srk_create(esys, &srk);
	if (r < 0)
		return r;
	/* The key is the Create command's first parameter: DECRYPT has the TPM decrypt
	 * it, so it never crosses the bus in clear. */
	r = salted_session(esys, srk, TPM2_SE_HMAC, TPMA_SESSION_DECRYPT, &sess);
	if (r < 0)
		goto out;

	tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
	tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl.publicArea.objectAttributes = SEALED_ATTRS;
	tmpl.publicArea.authPolicy.size = SEAL_DIGEST_SIZE;
	memcpy(tmpl.publicArea.authPolicy.buffer, out->policy, SEAL_DIGEST_SIZE);
	tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
	sens.sensitive.data.size = (uint16_t)len;
	memcpy(sens.sensitive.data.buffer, key, len);

	rc = Esys_Create(esys, srk, sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
			 &outside, &none, &priv, &pub, NULL, NULL, NULL);
	explicit_bzero(&sens, sizeof(sens));
	wipe_stack_below();
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(rc, "Create (sealed key object)");
		goto out;
	}
	/* Without continueSession the TPM closed the session after Create. */
	sess = ESYS_TR_NONE;
	r = blob_marshal(priv, pub, out);
	if (r < 0)
		log_error("seal: the TPM returned a sealed object that does not marshal "
			  "into %zu bytes",
			  sizeof(out->blob));
out:
	Esys_Free(priv);
	Esys_Free(pub);
	if (sess != ESYS_TR_NONE)
		Esys_FlushContext(esys, sess);
	Esys_FlushContext(esys, srk);
	return r;
}

int unseal_key(struct tpm *t, const struct sealed *s, uint8_t *key)
{
	ESYS_CONTEXT *esys = tpm_esys(t);
	ESYS_TR srk = ESYS_TR_NONE, obj = ESYS_TR_NONE, sess = ESYS_TR_NONE;
	TPM2B_DIGEST empty = {0};
	TPML_PCR_SELECTION sel;
	TPM2B_SENSITIVE_DATA *data = NULL;
	TPM2B_PRIVATE priv;
	TPM2B_PUBLIC pub;
	char err[160];
	TSS2_RC rc;
	int r;

	r = blob_unmarshal(s, &priv, &pub, err, sizeof(err));
	if (r < 0) {
		log_error("seal: %s", err);
		return r;
	}
	r = srk_create(esys, &srk);
	if (r < 0)
		return r;
	rc = Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv,
		       &pub, &obj);
	if (rc != TSS2_RC_SUCCESS) {
		log_error("seal: the sealed key does not load under this TPM's SRK: %s "
			  "(0x%x)",
			  Tss2_RC_Decode(rc), rc);
		r = -ENOKEY;
		goto out;
	}
	/* ENCRYPT: the TPM encrypts Unseal's response, the key, with the session key. */
	r = salted_session(esys, srk, TPM2_SE_POLICY, TPMA_SESSION_ENCRYPT, &sess);
	if (r < 0)
		goto out;
	/* An empty pcrDigest: the TPM takes the PCRs' values as they are now. */
	pcr_selection(s->pcr_mask, &sel);
	rc = Esys_PolicyPCR(esys, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty,
			    &sel);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(rc, "PolicyPCR");
		goto out;
	}
	rc = Esys_Unseal(esys, obj, sess, ESYS_TR_NONE, ESYS_TR_NONE, &data);
	if (rc == TSS2_RC_SUCCESS)
		wipe_sapi_response(esys);
	wipe_stack_below();
	if (tpm_rc_is(rc, TPM2_RC_POLICY_FAIL)) {
		log_error(
			"seal: the TPM refused to unseal: the PCR policy does not match "
			"(%s)",
			Tss2_RC_Decode(rc));
		r = -EKEYREJECTED;
		goto out;
	}
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(rc, "Unseal");
		goto out;
	}
	/* The policy session is spent by Unseal. */
	sess = ESYS_TR_NONE;
	if (data->size == 0 || data->size > SEAL_KEY_MAX) {
		r = -EBADMSG;
	} else {
		memcpy(key, data->buffer, data->size);
		r = data->size;
	}
	explicit_bzero(data, sizeof(*data));
	Esys_Free(data);
out:
	if (sess != ESYS_TR_NONE)
		Esys_FlushContext(esys, sess);
	if (obj != ESYS_TR_NONE)
		Esys_FlushContext(esys, obj);
	Esys_FlushContext(esys, srk);
	return r;
}

/* --- the token ------------------------------------------------------------------ */

/* The token spells its digests in lower-case hex of their exact size, nothing else. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
	return hex_is_lower(s, 2 * n) && hex_decode(s, out, n) == (int)n ? 0 : -EINVAL;
}

const char *seal_pcr_list(uint32_t mask, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < 32 && o < len; i++)
		if (mask & (1u << i))
			o += (size_t)snprintf(buf + o, len - o, "%s%u", o ? "," : "", i);
	return buf;
}

int seal_token_format(const struct sealed *s, char **ret)
{
	unsigned char b64[SEAL_BLOB_MAX * 4 / 3 + 8];
	char h[2 * SEAL_DIGEST_SIZE + 1], idx[4];
	json_object *tok, *slots, *pcrs, *values;
	size_t olen;
	int r = 0;

	if (mbedtls_base64_encode(b64, sizeof(b64), &olen, s->blob, s->blob_len) != 0)
		return -EINVAL;
	tok = json_object_new_object();
	slots = json_object_new_array();
	pcrs = json_object_new_array();
	values = json_object_new_object();
	if (!tok || !slots || !pcrs || !values) {
		json_object_put(slots);
		json_object_put(pcrs);
		json_object_put(values);
		r = -ENOMEM;
		goto out;
	}
	json_object_array_add(slots, json_object_new_string("0"));
	for (unsigned i = 0; i < SEAL_PCR_MAX; i++) {
		if (!(s->pcr_mask & (1u << i)))
			continue;
		json_object_array_add(pcrs, json_object_new_int((int)i));
		snprintf(idx, sizeof(idx), "%u", i);
		hex_encode(s->pcr_values[i], SEAL_DIGEST_SIZE, h);
		json_object_object_add(values, idx, json_object_new_string(h));
	}
	json_object_object_add(tok, "type", json_object_new_string(SEAL_TOKEN_TYPE));
	json_object_object_add(tok, "keyslots", slots);
	json_object_object_add(tok, "tpm2-blob", json_object_new_string((char *)b64));
	json_object_object_add(tok, "tpm2-pcrs", pcrs);
	json_object_object_add(tok, "tpm2-pcr-bank", json_object_new_string("sha256"));
	json_object_object_add(tok, "tpm2-primary-alg", json_object_new_string("ecc"));
	hex_encode(s->policy, SEAL_DIGEST_SIZE, h);
	json_object_object_add(tok, "tpm2-policy-hash", json_object_new_string(h));
	json_object_object_add(tok, "tpm2-pin", json_object_new_boolean(0));
	json_object_object_add(tok, "cvminit-pcr-values", values);
	json_object_object_add(tok, "cvminit-initialized",
			       json_object_new_boolean(s->initialized));
	*ret = strdup(json_object_to_json_string_ext(tok, JSON_C_TO_STRING_PLAIN));
	if (!*ret)
		r = -ENOMEM;
out:
	json_object_put(tok);
	return r;
}

static const char *const token_fields[] = {
	"type",
	"keyslots",
	"tpm2-blob",
	"tpm2-pcrs",
	"tpm2-pcr-bank",
	"tpm2-primary-alg",
	"tpm2-policy-hash",
	"tpm2-pin",
	"cvminit-pcr-values",
	"cvminit-initialized",
};

static json_object *field(json_object *o, const char *name, json_type type)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

#define BAD(...)                                                                         \
	do {                                                                             \
		snprintf(err, errlen, __VA_ARGS__);                                      \
		r = -EBADMSG;                                                            \
		goto out;                                                                \
	} while (0)

int seal_token_parse(const char *json, struct sealed *s, char *err, size_t errlen)
{
	enum json_tokener_error jerr;
	json_object *tok, *v, *values;
	TPM2B_PRIVATE priv;
	TPM2B_PUBLIC pub;
	size_t olen, n;
	int r = 0;

	memset(s, 0, sizeof(*s));
	tok = json_tokener_parse_verbose(json, &jerr);
	if (!tok || !json_object_is_type(tok, json_type_object)) {
		snprintf(err, errlen, "the token is not a JSON object (%s)",
			 json_tokener_error_desc(jerr));
		json_object_put(tok);
		return -EBADMSG;
	}
	json_object_object_foreach(tok, key, val)
	{
		bool known = false;
		(void)val;
		for (size_t i = 0; i < ARRAY_SIZE(token_fields); i++)
			known |= streq(key, token_fields[i]);
		if (!known)
			BAD("the token has a field cvminit does not write: \"%.40s\"",
			    key);
	}
	if (!(v = field(tok, "type", json_type_string)) ||
	    !streq(json_object_get_string(v), SEAL_TOKEN_TYPE))
		BAD("the token's type is not \"%s\"", SEAL_TOKEN_TYPE);
	if (!(v = field(tok, "keyslots", json_type_array)) ||
	    json_object_array_length(v) != 1 ||
	    !json_object_is_type(json_object_array_get_idx(v, 0), json_type_string) ||
	    !streq(json_object_get_string(json_object_array_get_idx(v, 0)), "0"))
		BAD("the token's keyslots are not [\"0\"]");
	if (!(v = field(tok, "tpm2-pcr-bank", json_type_string)) ||
	    !streq(json_object_get_string(v), "sha256"))
		BAD("tpm2-pcr-bank is not \"sha256\"");
	if (!(v = field(tok, "tpm2-primary-alg", json_type_string)) ||
	    !streq(json_object_get_string(v), "ecc"))
		BAD("tpm2-primary-alg is not \"ecc\"");
	if (!(v = field(tok, "tpm2-pin", json_type_boolean)) ||
	    json_object_get_boolean(v))
		BAD("tpm2-pin is not false (cvminit seals without a PIN)");
	if (!(v = field(tok, "cvminit-initialized", json_type_boolean)))
		BAD("cvminit-initialized is missing or not a boolean");
	s->initialized = json_object_get_boolean(v);
	if (!(v = field(tok, "tpm2-policy-hash", json_type_string)) ||
	    unhex(json_object_get_string(v), s->policy, SEAL_DIGEST_SIZE) < 0)
		BAD("tpm2-policy-hash is not %d lower-case hex digits",
		    2 * SEAL_DIGEST_SIZE);

	if (!(v = field(tok, "tpm2-pcrs", json_type_array)) ||
	    (n = json_object_array_length(v)) == 0 || n > SEAL_PCR_MAX)
		BAD("tpm2-pcrs is not a non-empty array of PCR numbers");
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);
		int64_t p = json_object_is_type(e, json_type_int)
				    ? json_object_get_int64(e)
				    : -1;
		/* Ascending and unique, as written. */
		if (p < 0 || p >= SEAL_PCR_MAX || (s->pcr_mask >> p) != 0)
			BAD("tpm2-pcrs is not an ascending list of PCRs 0-23");
		s->pcr_mask |= 1u << p;
	}
	if (!(values = field(tok, "cvminit-pcr-values", json_type_object)) ||
	    (size_t)json_object_object_length(values) != n)
		BAD("cvminit-pcr-values does not hold one value per PCR of tpm2-pcrs");
	for (unsigned i = 0; i < SEAL_PCR_MAX; i++) {
		char idx[4];
		if (!(s->pcr_mask & (1u << i)))
			continue;
		snprintf(idx, sizeof(idx), "%u", i);
		if (!(v = field(values, idx, json_type_string)) ||
		    unhex(json_object_get_string(v), s->pcr_values[i], SEAL_DIGEST_SIZE) <
			    0)
			BAD("cvminit-pcr-values has no sha256 value for PCR %u", i);
	}

	if (!(v = field(tok, "tpm2-blob", json_type_string)) ||
	    mbedtls_base64_decode(s->blob, sizeof(s->blob), &olen,
				  (const unsigned char *)json_object_get_string(v),
				  strlen(json_object_get_string(v))) != 0 ||
	    olen == 0)
		BAD("tpm2-blob is not base64 of at most %d bytes", SEAL_BLOB_MAX);
	s->blob_len = olen;
	r = blob_unmarshal(s, &priv, &pub, err, errlen);
out:
	json_object_put(tok);
	return r;
}

/* --- drift ------------------------------------------------------------------------ */

int seal_drift(struct tpm *t, const struct sealed *s, const char *log_path, int hex_chars,
	       char *msg, size_t len)
{
	uint8_t now[SEAL_PCR_MAX][SEAL_DIGEST_SIZE];
	char want[2 * SEAL_DIGEST_SIZE + 1], got[2 * SEAL_DIGEST_SIZE + 1];
	struct eventlog log = {0};
	size_t o = 0, bad_off;
	int r, drifted = 0, have_log;

	if (hex_chars <= 0 || hex_chars > 2 * SEAL_DIGEST_SIZE)
		hex_chars = 2 * SEAL_DIGEST_SIZE;
	msg[0] = '\0';
	r = pcrs_read(t, s->pcr_mask, now);
	if (r < 0)
		return r;
	have_log = log_path ? eventlog_read(log_path, &log, &bad_off) : -ENOENT;

	for (unsigned i = 0; i < SEAL_PCR_MAX; i++) {
		char events[256] = "";
		size_t eo = 0;

		if (!(s->pcr_mask & (1u << i)) ||
		    memcmp(now[i], s->pcr_values[i], SEAL_DIGEST_SIZE) == 0)
			continue;
		drifted++;
		hex_encode(s->pcr_values[i], SEAL_DIGEST_SIZE, want);
		hex_encode(now[i], SEAL_DIGEST_SIZE, got);
		for (size_t k = 0; k < log.n && eo < sizeof(events); k++) {
			const struct eventlog_record *e = &log.records[k];
			if (e->pcr != i || !e->extended)
				continue;
			eo += (size_t)snprintf(events + eo, sizeof(events) - eo, "%s%s",
					       eo ? ", " : "", e->event ? e->event : "?");
		}
		if (!eo)
			snprintf(events, sizeof(events), "%s",
				 have_log < 0
					 ? "(no event log)"
					 : "(none by cvminit: firmware or boot loader)");
		log_error("seal: PCR %u (sha256) expected %s got %s; events: %s", i, want,
			  got, events);
		if (o < len)
			o += (size_t)snprintf(
				msg + o, len - o,
				"%sPCR %u expected %.*s got %.*s (events: %s)",
				o ? "; " : "", i, hex_chars, want, hex_chars, got,
				events);
	}
	eventlog_free(&log);
	return drifted;
}
