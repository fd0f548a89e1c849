/* TPM 2.0 access with tpm2-tss ESYS: open a TCTI, list the active PCR banks, read PCRs.
 * The measurement backend (extend + event log) is built on these. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

#define TPM_MAX_BANKS  8
#define TPM_MAX_DIGEST 64

struct tpm;

struct tpm_bank {
	uint16_t alg;   /* TPM2_ALG_SHA256, … */
	uint16_t size;  /* digest size in bytes */
};

/* Opens the TPM. tcti is "device" (conf: the device path, /dev/tpmrm0 by default) or,
 * in host test builds only (CVM_TPM_SWTPM), "swtpm" (conf: "host=…,port=…").
 * Returns 0, -ENOENT when there is no such device, -EIO with a logged reason else. */
int tpm_open(const char *tcti, const char *conf, struct tpm **ret);
void tpm_close(struct tpm *t);
/* The ESYS context underneath, for the sealing code (seal.c). Owned by t. */
struct ESYS_CONTEXT *tpm_esys(struct tpm *t);

/* Fills banks with the PCR banks that have any PCR allocated; returns the count. */
int tpm_pcr_banks(struct tpm *t, struct tpm_bank *banks, size_t max);
/* Reads one PCR of one bank into digest (TPM_MAX_DIGEST bytes); returns its size. */
int tpm_pcr_read(struct tpm *t, uint16_t alg, unsigned pcr, uint8_t *digest);

/* Extends one PCR in every bank given: the TPM sets each bank to H(old || digest). All banks
 * go in one TPM2_PCR_Extend, so either all of them change or none. Returns 0, -EINVAL for a
 * PCR ≥ 24 or more banks than a command carries, -EIO with the TPM's reason logged. */
int tpm_pcr_extend(struct tpm *t, unsigned pcr, const struct digest *digests, size_t n);

/* "sha256" for TPM2_ALG_SHA256 …; NULL for algorithms we do not know. */
const char *tpm_alg_name(uint16_t alg);
int tpm_alg_digest_size(uint16_t alg);
