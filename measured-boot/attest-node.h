/* The node side of remote attestation (cvminit-agent): the AK, the quote, the EK
 * certificate, ActivateCredential, and the evidence response around them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest-proto.h"

struct tpm;

/* The EK (TCG template L-1) and the AK (a restricted RSA 2048 signing key, RSASSA-SHA256,
 * a primary key of the endorsement hierarchy), both loaded for the agent's lifetime. */
struct attest_keys {
	uint32_t ek, ak;	 /* ESYS_TR handles of tpm_esys() */
	uint8_t ak_public[1024]; /* TPMT_PUBLIC, marshalled */
	size_t ak_public_len;
};

/* The RSA EK certificate's NV index (TCG EK Credential Profile). */
#define ATTEST_EK_CERT_NV 0x01c00002u

int attest_keys_create(struct tpm *t, struct attest_keys *k);
void attest_keys_free(struct tpm *t, struct attest_keys *k);

/* Where the agent reads what it returns; all below a root directory ("/" on a node, a
 * fake tree in tests). */
struct attest_sources {
	const char *firmware_log; /* cvminit's copy: /run/log/cvminit/firmware.log */
	const char *cvminit_log;  /* /run/log/cvminit/measure.log */
	const char *tsm_root;	  /* /sys/kernel/config/tsm/report; NULL: none */
	bool join; /* quote nonce | ATTEST_JOIN_TAG (the join step), not the nonce alone */
};

/* Builds the evidence response for nonce into b: the quote over PCRs 0-15 of every active
 * bank with the nonce as qualifying data, its signature, the PCR values, the AK public,
 * the EK certificate, both logs and, where configfs-tsm offers one, the hardware report
 * whose report data is the nonce followed by 32 zero bytes. cvminit's log is read under a
 * shared lock held across the quote, so no record can be extended between them (cvminit
 * extends and logs under the exclusive lock). Returns 0 or -errno (b then holds nothing
 * useful, and step names what failed). A report that configfs-tsm cannot give is left
 * out with a warning. */
int attest_evidence(struct tpm *t, const struct attest_keys *k,
		    const struct attest_sources *src, const uint8_t *nonce,
		    struct attest_buf *b, const char **step);
/* TPM2_ActivateCredential with the AK as the object and the EK as the key: the secret is
 * returned only if the credential was made for this AK's name and this EK. Returns the
 * secret's length or -errno (-EACCES: the TPM refused the credential). */
int attest_activate(struct tpm *t, const struct attest_keys *k, const uint8_t *blob,
		    size_t blob_len, const uint8_t *secret, size_t secret_len,
		    uint8_t *out, size_t out_cap);
/* configfs-tsm: writes inblob, reads outblob and provider of the entry "cvminit-agent"
 * under tsm_root (made if absent, removed after). Hardware reports cannot exist on the
 * build host: this is tested only against a fake tree of regular files. Returns 0,
 * -ENOENT when there is no configfs-tsm, -errno else. */
int attest_tsm_report(const char *tsm_root, const uint8_t *report_data, size_t n,
		      struct attest_buf *b);
