/* TPM 2.0 access with tpm2-tss ESYS: open a TCTI, list the active PCR banks, read PCRs.
 * The measurement backend (extend + event log) is built on these. */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/digest.h"

#define TPM_MAX_BANKS  8
#define TPM_MAX_DIGEST 64

struct tpm;

struct tpm_bank {
	uint16_t alg;  /* TPM2_ALG_SHA256, … */
	uint16_t size; /* digest size in bytes */
};

/* Opens the TPM. tcti is "device" (conf: the device path, /dev/tpmrm0 by default) or,
 * in host test builds only (CVM_TPM_SWTPM), "swtpm" (conf: "host=…,port=…").
 * Returns 0, -ENOENT when there is no such device, -EIO with a logged reason else. */
int tpm_open(const char *tcti, const char *conf, struct tpm **ret);
void tpm_close(struct tpm *t);
/* The ESYS context underneath, for the sealing code (seal.c). Owned by t. */
struct ESYS_CONTEXT *tpm_esys(struct tpm *t);

/* Fills banks with the PCR banks that have any PCR allocated, known or not (size 0 for an
 * algorithm cvminit does not know); returns the count, -E2BIG when more than max. */
int tpm_pcr_banks(struct tpm *t, struct tpm_bank *banks, size_t max);
/* Reads one PCR of one bank into digest (TPM_MAX_DIGEST bytes); returns its size. */
int tpm_pcr_read(struct tpm *t, uint16_t alg, unsigned pcr, uint8_t *digest);

/* Extends one PCR in every bank given: the TPM sets each bank to H(old || digest). All banks
 * go in one TPM2_PCR_Extend, so either all of them change or none. Returns 0, -EINVAL for a
 * PCR ≥ 24 or more banks than a command carries, -EIO with the TPM's reason logged. */
int tpm_pcr_extend(struct tpm *t, unsigned pcr, const struct digest *digests, size_t n);

/* The TPM's endorsement key public area under the TCG default EK template (EK Credential
 * Profile, template L-1: RSA 2048), marshalled as a TPMT_PUBLIC, as an SVSM's vTPM
 * manifest carries it. Creates the key (CreatePrimary in the endorsement hierarchy) and
 * flushes it. possessed (may be NULL) says whether the TPM proved it holds the private
 * part (a session salted to the EK): a public area alone could be echoed by another TPM.
 * Returns the length, -ENOBUFS when size is too small, -EIO else. */
int tpm_ek_public(struct tpm *t, uint8_t *buf, size_t size, bool *possessed);
/* The template of that EK (TCG EK Credential Profile L-1, RSA 2048). */
struct TPM2B_PUBLIC;
void tpm_ek_template(struct TPM2B_PUBLIC *tmpl);
/* Whether the TPM holds the private part of a loaded decrypt key (an ESYS_TR of
 * tpm_esys(t)): 0, or -EIO with the TPM's or ESYS's reason logged. */
int tpm_key_prove(struct tpm *t, uint32_t key);

/* Sets FD_CLOEXEC on every descriptor of fds (a TCTI's poll handles): tpm2-tss opens
 * /dev/tpmrm0 without O_CLOEXEC and no service may inherit PID 1's TPM. Returns 0 or the
 * first -errno. */
int tpm_fds_cloexec(const struct pollfd *fds, size_t n);

/* "sha256" for TPM2_ALG_SHA256 …; NULL for algorithms we do not know. */
const char *tpm_alg_name(uint16_t alg);
int tpm_alg_digest_size(uint16_t alg);
