/* Hashes by TPM algorithm id (mbedtls), one-shot and streaming, and the PCR extend rule
 * new = H(old || digest): every digest cvminit and cvm-measure compute goes through here. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/md.h>

/* TPM 2.0 algorithm ids (TCG Algorithm Registry), so callers need not include tss2
 * headers. */
#define DIGEST_ALG_SHA1	  0x0004
#define DIGEST_ALG_SHA256 0x000B
#define DIGEST_ALG_SHA384 0x000C
#define DIGEST_ALG_SHA512 0x000D

#define DIGEST_MAX 64

struct digest {
	uint16_t alg;
	uint16_t size;
	uint8_t buf[DIGEST_MAX];
};

/* Digest size of alg in bytes; -EOPNOTSUPP when we cannot compute it. */
int digest_size(uint16_t alg);
/* "sha256" …, the names of the TCG CEL and of systemd's log; NULL when unknown. */
const char *digest_alg_name(uint16_t alg);
/* The algorithm id for a name; -EOPNOTSUPP when unknown. */
int digest_alg_from_name(const char *name);

/* out = H(data); returns the digest size or -EOPNOTSUPP / -EIO. */
int digest_compute(uint16_t alg, const void *data, size_t len, uint8_t *out);
/* out = HMAC-H(key, data) (RFC 2104) with H the bank's hash: how a secret is measured
 * without handing the TPM (or the log) a plain hash of it. Returns the digest size or
 * -EOPNOTSUPP / -EIO. */
int digest_hmac(uint16_t alg, const void *key, size_t key_len, const void *data,
		size_t len, uint8_t *out);
/* pcr = H(pcr || digest), both digest_size(alg) bytes; returns the size or a negative
 * errno. */
int digest_extend(uint16_t alg, uint8_t *pcr, const uint8_t *digest);

/* A digest over data given in pieces (a file, a PE image's Authenticode ranges):
 * digest_begin(), digest_update()…, digest_end(). digest_ctx_free() releases a context
 * that did not reach digest_end() (a second call does nothing: usable with _cleanup_). */
struct digest_ctx {
	uint16_t alg;
	mbedtls_md_context_t md;
};

/* 0, -EOPNOTSUPP for an unknown alg, -EIO / -ENOMEM from mbedtls. */
int digest_begin(struct digest_ctx *c, uint16_t alg);
/* 0 or -EIO. */
int digest_update(struct digest_ctx *c, const void *data, size_t len);
/* Writes the digest, frees the context; returns the digest size or -EIO. */
int digest_end(struct digest_ctx *c, uint8_t *out);
void digest_ctx_free(struct digest_ctx *c);
