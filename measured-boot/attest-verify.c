/* The verifier's checks of a node's evidence: EK certificate chain (mbedtls x509), AK
 * public, quote and signature (tss2-mu unmarshalling, mbedtls RSA), MakeCredential. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/aes.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include <tss2/tss2_mu.h>
#include <tss2/tss2_tpm2_types.h>

#include "attest-verify.h"
#include "../lib/digest.h"

/* Says why in why and returns err. */
static int fail(char *why, size_t why_len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return err;
}

int attest_check_ek_cert(const uint8_t *der, size_t len, const uint8_t *cas,
			 size_t cas_len, struct attest_verified *v, char *why,
			 size_t why_len)
{
	mbedtls_x509_crt crt, ca;
	mbedtls_rsa_context *rsa;
	uint32_t flags = 0;
	int r, ret = 0;

	mbedtls_x509_crt_init(&crt);
	mbedtls_x509_crt_init(&ca);
	r = mbedtls_x509_crt_parse_der(&crt, der, len);
	if (r != 0) {
		ret = fail(
			why, why_len, -EBADMSG,
			"the EK certificate is not a DER X.509 certificate mbedtls parses "
			"(-0x%04x)",
			(unsigned)-r);
		goto out;
	}
	mbedtls_x509_dn_gets(v->ek_subject, sizeof(v->ek_subject), &crt.subject);
	mbedtls_x509_dn_gets(v->ek_issuer, sizeof(v->ek_issuer), &crt.issuer);
	r = mbedtls_x509_crt_parse(&ca, cas, cas_len);
	if (r < 0 || !ca.version) {
		ret = fail(
			why, why_len, -EPERM,
			"no CA certificate to check the EK certificate against (-0x%04x)",
			(unsigned)-r);
		goto out;
	}
	/* The CA list is the trust anchor set: an intermediate given there is trusted as
	 * given (pass the root alone to demand the whole chain from the node). */
	r = mbedtls_x509_crt_verify(&crt, &ca, NULL, NULL, &flags, NULL, NULL);
	if (r != 0) {
		char info[160];

		mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
		for (char *p = info; *p; p++)
			if (*p == '\n')
				*p = ';';
		ret = fail(
			why, why_len, -EPERM,
			"the EK certificate (issuer %s) does not chain to a CA given with "
			"--ek-ca: %s",
			v->ek_issuer, info);
		goto out;
	}
	if (mbedtls_pk_get_type(&crt.pk) != MBEDTLS_PK_RSA) {
		ret = fail(
			why, why_len, -EINVAL,
			"the EK certificate's key is not RSA (template L-1 is RSA 2048)");
		goto out;
	}
	rsa = mbedtls_pk_rsa(crt.pk);
	v->ek_n_len = mbedtls_rsa_get_len(rsa);
	v->ek_e_len = sizeof(v->ek_e);
	if (v->ek_n_len != 256 ||
	    mbedtls_rsa_export_raw(rsa, v->ek_n, v->ek_n_len, NULL, 0, NULL, 0, NULL, 0,
				   v->ek_e, v->ek_e_len) != 0) {
		ret = fail(why, why_len, -EINVAL,
			   "the EK certificate's key is not RSA 2048");
	}
out:
	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crt_free(&ca);
	return ret;
}

int attest_check_ak(const uint8_t *pub, size_t len, struct attest_verified *v, char *why,
		    size_t why_len)
{
	const TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
				 TPMA_OBJECT_SENSITIVEDATAORIGIN |
				 TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
	TPMT_PUBLIC p;
	size_t off = 0;

	memset(&p, 0, sizeof(p));
	if (Tss2_MU_TPMT_PUBLIC_Unmarshal(pub, len, &off, &p) != TSS2_RC_SUCCESS ||
	    off != len)
		return fail(why, why_len, -EBADMSG,
			    "the AK public is not one marshalled TPMT_PUBLIC");
	if (p.type != TPM2_ALG_RSA || p.nameAlg != TPM2_ALG_SHA256 ||
	    p.parameters.rsaDetail.keyBits != 2048 || p.unique.rsa.size != 256)
		return fail(why, why_len, -EBADMSG,
			    "the AK is not an RSA 2048 key with nameAlg sha256");
	if ((p.objectAttributes & need) != need ||
	    (p.objectAttributes & TPMA_OBJECT_DECRYPT))
		return fail(
			why, why_len, -EBADMSG,
			"the AK's attributes 0x%08x are not those of a restricted "
			"signing key made and kept in the TPM (fixedTPM, fixedParent, "
			"sensitiveDataOrigin, restricted, sign, not decrypt)",
			p.objectAttributes);
	if (p.parameters.rsaDetail.symmetric.algorithm != TPM2_ALG_NULL ||
	    (p.parameters.rsaDetail.scheme.scheme != TPM2_ALG_NULL &&
	     (p.parameters.rsaDetail.scheme.scheme != TPM2_ALG_RSASSA ||
	      p.parameters.rsaDetail.scheme.details.rsassa.hashAlg != TPM2_ALG_SHA256)))
		return fail(why, why_len, -EBADMSG,
			    "the AK's scheme is not RSASSA-SHA256");
	v->ak_name[0] = TPM2_ALG_SHA256 >> 8;
	v->ak_name[1] = TPM2_ALG_SHA256 & 0xff;
	mbedtls_sha256_ret(pub, len, v->ak_name + 2, 0);
	return 0;
}

static bool has_bank(const struct attest_response *resp, uint16_t alg, size_t *idx)
{
	for (size_t i = 0; i < resp->n_banks; i++)
		if (resp->banks[i].alg == alg) {
			*idx = i;
			return true;
		}
	return false;
}

/* The AK's modulus, from the AK public the caller checked. */
static int ak_rsa(const struct attest_span *ak, mbedtls_rsa_context *rsa)
{
	static const uint8_t e65537[] = {0x01, 0x00, 0x01};
	TPMT_PUBLIC p;
	size_t off = 0;
	uint8_t e[4];
	size_t e_len = sizeof(e65537);

	memset(&p, 0, sizeof(p));
	if (Tss2_MU_TPMT_PUBLIC_Unmarshal(ak->p, ak->len, &off, &p) != TSS2_RC_SUCCESS)
		return -EBADMSG;
	memcpy(e, e65537, sizeof(e65537));
	if (p.parameters.rsaDetail.exponent) {
		uint32_t x = p.parameters.rsaDetail.exponent;

		e[0] = (uint8_t)(x >> 24), e[1] = (uint8_t)(x >> 16);
		e[2] = (uint8_t)(x >> 8), e[3] = (uint8_t)x;
		e_len = 4;
	}
	if (mbedtls_rsa_import_raw(rsa, p.unique.rsa.buffer, p.unique.rsa.size, NULL, 0,
				   NULL, 0, NULL, 0, e, e_len) != 0 ||
	    mbedtls_rsa_complete(rsa) != 0)
		return -EBADMSG;
	return 0;
}

int attest_check_quote(const struct attest_response *resp, const uint8_t *nonce,
		       struct attest_verified *v, char *why, size_t why_len)
{
	const struct attest_span *q = &resp->item[ATTEST_ITEM_QUOTE],
				 *s = &resp->item[ATTEST_ITEM_SIGNATURE],
				 *ak = &resp->item[ATTEST_ITEM_AK_PUBLIC];
	mbedtls_sha256_context sha;
	mbedtls_rsa_context rsa;
	TPMS_ATTEST a;
	TPMT_SIGNATURE sig;
	uint8_t hash[32], digest[32];
	size_t off = 0;
	int r;

	if (!q->present || !s->present || !ak->present)
		return fail(
			why, why_len, -EBADMSG,
			"the evidence lacks the quote, its signature or the AK public");
	memset(&a, 0, sizeof(a));
	if (Tss2_MU_TPMS_ATTEST_Unmarshal(q->p, q->len, &off, &a) != TSS2_RC_SUCCESS ||
	    off != q->len)
		return fail(why, why_len, -EBADMSG,
			    "the quote is not one marshalled TPMS_ATTEST");
	off = 0;
	memset(&sig, 0, sizeof(sig));
	if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(s->p, s->len, &off, &sig) !=
		    TSS2_RC_SUCCESS ||
	    off != s->len)
		return fail(why, why_len, -EBADMSG,
			    "the signature is not one marshalled TPMT_SIGNATURE");

	/* The signature first: nothing in the quote means anything before it. */
	if (sig.sigAlg != TPM2_ALG_RSASSA || sig.signature.rsassa.hash != TPM2_ALG_SHA256)
		return fail(why, why_len, -EPERM,
			    "the quote's signature is not RSASSA-SHA256");
	mbedtls_sha256_ret(q->p, q->len, hash, 0);
	mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V15, 0);
	r = ak_rsa(ak, &rsa);
	if (r == 0 && sig.signature.rsassa.sig.size != mbedtls_rsa_get_len(&rsa))
		r = -EPERM;
	if (r == 0 && mbedtls_rsa_pkcs1_verify(&rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC,
					       MBEDTLS_MD_SHA256, 32, hash,
					       sig.signature.rsassa.sig.buffer) != 0)
		r = -EPERM;
	mbedtls_rsa_free(&rsa);
	if (r < 0)
		return fail(why, why_len, -EPERM,
			    "the quote's signature does not verify with the AK public");

	if (a.magic != TPM2_GENERATED_VALUE || a.type != TPM2_ST_ATTEST_QUOTE)
		return fail(
			why, why_len, -EPERM,
			"the signed structure is not a quote the TPM made (magic 0x%08x, "
			"type 0x%04x)",
			a.magic, a.type);
	if (a.extraData.size != (v->join ? 2 : 1) * ATTEST_NONCE ||
	    memcmp(a.extraData.buffer, nonce, ATTEST_NONCE) ||
	    (v->join &&
	     memcmp(a.extraData.buffer + ATTEST_NONCE, ATTEST_JOIN_TAG, ATTEST_NONCE)))
		return fail(
			why, why_len, -EPERM,
			"the quote's qualifying data is not this verifier's nonce: the "
			"evidence was made for another request (a replay)");

	/* The PCR values: each quoted bank once, PCRs 0-15 exactly, values from the
	 * evidence hashed in selection order must give the quoted digest. */
	mbedtls_sha256_init(&sha);
	mbedtls_sha256_starts_ret(&sha, 0);
	v->n_banks = 0;
	for (uint32_t i = 0; i < a.attested.quote.pcrSelect.count; i++) {
		const TPMS_PCR_SELECTION *sel =
			&a.attested.quote.pcrSelect.pcrSelections[i];
		size_t b;

		if (sel->sizeofSelect < 2 || sel->pcrSelect[0] != 0xff ||
		    sel->pcrSelect[1] != 0xff ||
		    (sel->sizeofSelect > 2 && sel->pcrSelect[2]) ||
		    (sel->sizeofSelect > 3 && sel->pcrSelect[3]))
			return fail(why, why_len, -EPERM,
				    "the quote does not select exactly PCRs 0-15 in bank "
				    "0x%04x",
				    sel->hash);
		if (!has_bank(resp, sel->hash, &b))
			return fail(
				why, why_len, -EPERM,
				"the quote covers bank 0x%04x, whose values are not in the "
				"evidence",
				sel->hash);
		for (size_t j = 0; j < v->n_banks; j++)
			if (v->banks[j].alg == sel->hash)
				return fail(why, why_len, -EPERM,
					    "the quote selects bank 0x%04x twice",
					    sel->hash);
		if (v->n_banks == ATTEST_MAX_BANKS)
			return fail(why, why_len, -EPERM,
				    "the quote selects too many banks");
		v->banks[v->n_banks].alg = sel->hash;
		v->banks[v->n_banks].size = resp->banks[b].size;
		for (unsigned p = 0; p < ATTEST_QUOTED_PCRS; p++) {
			memcpy(v->banks[v->n_banks].v[p],
			       resp->banks[b].values + p * resp->banks[b].size,
			       resp->banks[b].size);
			mbedtls_sha256_update_ret(
				&sha, resp->banks[b].values + p * resp->banks[b].size,
				resp->banks[b].size);
		}
		v->n_banks++;
	}
	mbedtls_sha256_finish_ret(&sha, digest);
	mbedtls_sha256_free(&sha);
	if (v->n_banks != resp->n_banks)
		return fail(
			why, why_len, -EPERM,
			"the evidence has PCR values of a bank the quote does not cover");
	if (v->n_banks == 0)
		return fail(why, why_len, -EPERM, "the quote covers no PCR bank");
	if (a.attested.quote.pcrDigest.size != 32 ||
	    memcmp(a.attested.quote.pcrDigest.buffer, digest, 32) != 0)
		return fail(
			why, why_len, -EPERM,
			"the PCR values in the evidence are not the ones the quote signs");
	return 0;
}

/* --- MakeCredential ----------------------------------------------------------- */

static int rng(void *ctx, unsigned char *out, size_t n)
{
	(void)ctx;
	while (n) {
		ssize_t k = getrandom(out, n, 0);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		out += k;
		n -= (size_t)k;
	}
	return 0;
}

/* KDFa with HMAC-SHA256 (TPM 2.0 Part 1, 11.4.10.2): counter, label with its NUL,
 * contextU, contextV, the output length in bits. */
static int kdfa(const uint8_t *key, size_t key_len, const char *label, const uint8_t *u,
		size_t u_len, size_t bits, uint8_t *out)
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	size_t bytes = bits / 8, done = 0;

	for (uint32_t i = 1; done < bytes; i++) {
		uint8_t ctr[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16),
				  (uint8_t)(i >> 8), (uint8_t)i};
		uint8_t len[4] = {(uint8_t)(bits >> 24), (uint8_t)(bits >> 16),
				  (uint8_t)(bits >> 8), (uint8_t)bits};
		uint8_t block[32];
		mbedtls_md_context_t c;
		int r;

		mbedtls_md_init(&c);
		r = mbedtls_md_setup(&c, md, 1);
		r = r ?: mbedtls_md_hmac_starts(&c, key, key_len);
		r = r ?: mbedtls_md_hmac_update(&c, ctr, 4);
		r = r
			    ?: mbedtls_md_hmac_update(&c, (const uint8_t *)label,
						      strlen(label) + 1);
		r = r ?: mbedtls_md_hmac_update(&c, u, u_len);
		r = r ?: mbedtls_md_hmac_update(&c, len, 4);
		r = r ?: mbedtls_md_hmac_finish(&c, block);
		mbedtls_md_free(&c);
		if (r)
			return -EIO;
		memcpy(out + done, block, bytes - done < 32 ? bytes - done : 32);
		done += bytes - done < 32 ? bytes - done : 32;
	}
	return 0;
}

int attest_make_credential(const struct attest_verified *v, const uint8_t *secret,
			   size_t secret_len, const uint8_t *seed, uint8_t *blob,
			   size_t *blob_len, uint8_t *enc, size_t *enc_len)
{
	const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
	uint8_t sym[16], hmac_key[32], plain[2 + 64], iv[16] = {0}, *enc_identity;
	size_t iv_off = 0, name_len = sizeof(v->ak_name);
	mbedtls_rsa_context rsa;
	mbedtls_aes_context aes;
	mbedtls_md_context_t c;
	int r;

	if (secret_len == 0 || secret_len > 64 || v->ek_n_len != 256)
		return -EINVAL;
	/* The seed, encrypted to the EK: only that TPM can recover it. */
	mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
	r = mbedtls_rsa_import_raw(&rsa, v->ek_n, v->ek_n_len, NULL, 0, NULL, 0, NULL, 0,
				   v->ek_e, v->ek_e_len);
	r = r ?: mbedtls_rsa_complete(&rsa);
	r = r
		    ?: mbedtls_rsa_rsaes_oaep_encrypt(&rsa, rng, NULL, MBEDTLS_RSA_PUBLIC,
						      (const uint8_t *)"IDENTITY", 9, 32,
						      seed, enc);
	mbedtls_rsa_free(&rsa);
	if (r)
		return -EIO;
	*enc_len = 256;

	/* The credential (a TPM2B_DIGEST), encrypted under a key bound to the AK's name.
	 */
	if (kdfa(seed, 32, "STORAGE", v->ak_name, name_len, 128, sym) < 0 ||
	    kdfa(seed, 32, "INTEGRITY", NULL, 0, 256, hmac_key) < 0)
		return -EIO;
	plain[0] = (uint8_t)(secret_len >> 8);
	plain[1] = (uint8_t)secret_len;
	memcpy(plain + 2, secret, secret_len);
	enc_identity = blob + 2 + 32;
	mbedtls_aes_init(&aes);
	r = mbedtls_aes_setkey_enc(&aes, sym, 128);
	r = r
		    ?: mbedtls_aes_crypt_cfb128(&aes, MBEDTLS_AES_ENCRYPT, 2 + secret_len,
						&iv_off, iv, plain, enc_identity);
	mbedtls_aes_free(&aes);
	if (r)
		return -EIO;
	/* outerHMAC over encIdentity || name: the TPM checks it before decrypting. */
	blob[0] = 0;
	blob[1] = 32;
	mbedtls_md_init(&c);
	r = mbedtls_md_setup(&c, md, 1);
	r = r ?: mbedtls_md_hmac_starts(&c, hmac_key, sizeof(hmac_key));
	r = r ?: mbedtls_md_hmac_update(&c, enc_identity, 2 + secret_len);
	r = r ?: mbedtls_md_hmac_update(&c, v->ak_name, name_len);
	r = r ?: mbedtls_md_hmac_finish(&c, blob + 2);
	mbedtls_md_free(&c);
	if (r)
		return -EIO;
	*blob_len = 2 + 32 + 2 + secret_len;
	return 0;
}
