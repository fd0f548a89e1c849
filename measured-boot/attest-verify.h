/* The verifier side of remote attestation (`cvm-measure attest`): EK certificate chain,
 * MakeCredential for the AK binding, quote and signature checks (mbedtls, tss2-mu). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest-proto.h"

#define ATTEST_WHY_MAX 256

/* What the evidence's cryptography established, for the caller to replay logs against. */
struct attest_verified {
	uint8_t ek_n[512]; /* the EK certificate's RSA modulus */
	size_t ek_n_len;
	uint8_t ek_e[8];
	size_t ek_e_len;
	uint8_t ak_name[34]; /* nameAlg (sha256) || sha256(TPMT_PUBLIC) */
	char ek_subject[256], ek_issuer[256];
	bool join; /* set by the caller: expect nonce | ATTEST_JOIN_TAG as qualifying data */
	size_t n_banks;
	struct {
		uint16_t alg;
		size_t size;
		uint8_t v[ATTEST_QUOTED_PCRS][64];
	} banks[ATTEST_MAX_BANKS];
};

/* Parses the EK certificate (DER) and checks its chain to one of the CAs (cas: a
 * concatenation of PEM or DER certificates, parsed with mbedtls_x509_crt_parse; any of
 * them may be an intermediate). Fills ek_n/ek_e and the names. Returns 0, -EBADMSG when
 * the certificate does not parse, -EPERM when its chain does not verify, -EINVAL for a
 * key that is not RSA 2048; why says which. */
int attest_check_ek_cert(const uint8_t *der, size_t len, const uint8_t *cas,
			 size_t cas_len, struct attest_verified *v, char *why,
			 size_t why_len);

/* Parses the AK public (a marshalled TPMT_PUBLIC, nothing after it): a restricted RSA
 * 2048 signing key, fixedTPM and fixedParent, made in the TPM, RSASSA-SHA256 or no
 * scheme, nameAlg sha256. Sets v->ak_name. Returns 0 or -EBADMSG with why. */
int attest_check_ak(const uint8_t *pub, size_t len, struct attest_verified *v, char *why,
		    size_t why_len);

/* Checks the quote: a TPMS_ATTEST of type quote made by the TPM (TPM_GENERATED_VALUE),
 * qualifying data equal to nonce, selecting PCRs 0-15 in each bank of resp's PCRS items
 * and no other, whose PCR digest is sha256 of those values in selection order; signed
 * (RSASSA-SHA256) by the AK of ak_pub. Fills v->banks. Returns 0, -EBADMSG for a
 * malformed item, -EPERM when a check fails; why says which. */
int attest_check_quote(const struct attest_response *resp, const uint8_t *nonce,
		       struct attest_verified *v, char *why, size_t why_len);

/* TPM2_MakeCredential in software (TPM 2.0 Part 1, 24 "Credential Protection"): seals
 * secret to the AK name for the TPM holding the EK (RSA-OAEP SHA-256, label "IDENTITY",
 * then KDFa "STORAGE" AES-128-CFB and KDFa "INTEGRITY" HMAC-SHA256, as the EK template
 * L-1's symmetric and nameAlg say). blob gets the TPM2B_ID_OBJECT's contents, enc the
 * TPM2B_ENCRYPTED_SECRET's. seed: 32 random bytes (the caller's, so tests are
 * reproducible). Returns 0 or -errno. */
int attest_make_credential(const struct attest_verified *v, const uint8_t *secret,
			   size_t secret_len, const uint8_t *seed, uint8_t *blob,
			   size_t *blob_len, uint8_t *enc, size_t *enc_len);
