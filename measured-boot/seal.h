/* Sealing the state volume key to the TPM (PolicyPCR over the sha256 bank, under the
 * standard ECC SRK), its LUKS2 token in systemd-cryptenroll's "systemd-tpm2" shape, and
 * the drift report when the TPM refuses to unseal. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tpm;

#define SEAL_PCR_MAX	 24
#define SEAL_DIGEST_SIZE 32  /* sha256: the only bank sealed to */
#define SEAL_KEY_MAX	 128 /* TPM2B_SENSITIVE_DATA's buffer (MAX_SYM_DATA) */
#define SEAL_BLOB_MAX	 2048
#define SEAL_TOKEN_TYPE	 "systemd-tpm2"

/* What the token records: enough to unseal, and to explain a refusal. */
struct sealed {
	uint8_t blob[SEAL_BLOB_MAX]; /* TPM2B_PRIVATE then TPM2B_PUBLIC, marshalled */
	size_t blob_len;
	uint32_t pcr_mask; /* bit n = PCR n */
	uint8_t policy[SEAL_DIGEST_SIZE];
	uint8_t pcr_values[SEAL_PCR_MAX][SEAL_DIGEST_SIZE]; /* at sealing time */
	bool initialized; /* cvminit's flag: the filesystem on the volume is complete */
};

/* Seals key (≤ SEAL_KEY_MAX bytes) to the PCRs in pcr_mask of the sha256 bank as they
 * stand now. Parameter encryption: the key travels to the TPM inside a session salted
 * with the SRK. Returns 0, -EINVAL, or -EIO with the TPM's reason logged. */
int seal_key(struct tpm *t, uint32_t pcr_mask, const uint8_t *key, size_t len,
	     struct sealed *out);

/* Unseals into key (SEAL_KEY_MAX bytes; the caller's locked memory); returns its length.
 * The response is encrypted by the salted policy session. -EKEYREJECTED when the TPM
 * refuses the policy (a PCR differs from sealing time), -ENOKEY when the sealed object
 * does not load under this TPM's SRK (another TPM, or a cleared one), -EBADMSG for a
 * blob that is not one seal_key() makes, -EIO else. */
int unseal_key(struct tpm *t, const struct sealed *s, uint8_t *key);

/* The token JSON (a malloc'ed string) for keyslot "0". */
int seal_token_format(const struct sealed *s, char **ret);
/* Parses a token strictly: exactly the fields seal_token_format() writes, each of its
 * type and range, the blob's public part one seal_key() makes with the recorded policy.
 * Returns 0, or -EBADMSG with a sentence in err. */
int seal_token_parse(const char *json, struct sealed *s, char *err, size_t errlen);

/* Reads the sealed PCRs now and compares them with the values recorded at sealing time.
 * Writes into msg one clause per differing PCR ("PCR 15 expected <hex> got <hex>",
 * hex_chars of each digest, 64 for all) and logs each, with the records the event log at
 * log_path (may be NULL) holds for that PCR. Returns the number of PCRs that differ, or
 * -errno when they cannot be read. */
int seal_drift(struct tpm *t, const struct sealed *s, const char *log_path, int hex_chars,
	       char *msg, size_t len);

/* The pcr_mask's PCRs as "7,11,15". */
const char *seal_pcr_list(uint32_t mask, char *buf, size_t len);
