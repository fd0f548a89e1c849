/* One-shot and streaming digests and the PCR extend rule on top of mbedtls' generic message-digest API,
 * which the release links statically from the sysroot and the unit tests from Debian. */
#include <errno.h>
#include <string.h>

#include <mbedtls/md.h>

#include "digest.h"
#include "util.h"

static const struct {
	uint16_t alg;
	const char *name;
	mbedtls_md_type_t md;
} algs[] = {
	{DIGEST_ALG_SHA1, "sha1", MBEDTLS_MD_SHA1},
	{DIGEST_ALG_SHA256, "sha256", MBEDTLS_MD_SHA256},
	{DIGEST_ALG_SHA384, "sha384", MBEDTLS_MD_SHA384},
	{DIGEST_ALG_SHA512, "sha512", MBEDTLS_MD_SHA512},
};

static const mbedtls_md_info_t *md_info(uint16_t alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
		if (algs[i].alg == alg)
			return mbedtls_md_info_from_type(algs[i].md);
	return NULL;
}

int digest_size(uint16_t alg)
{
	const mbedtls_md_info_t *info = md_info(alg);

	return info ? (int)mbedtls_md_get_size(info) : -EOPNOTSUPP;
}

const char *digest_alg_name(uint16_t alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
		if (algs[i].alg == alg)
			return algs[i].name;
	return NULL;
}

int digest_alg_from_name(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
		if (streq(algs[i].name, name))
			return algs[i].alg;
	return -EOPNOTSUPP;
}

int digest_compute(uint16_t alg, const void *data, size_t len, uint8_t *out)
{
	const mbedtls_md_info_t *info = md_info(alg);

	if (!info)
		return -EOPNOTSUPP;
	if (mbedtls_md(info, data, len, out) != 0)
		return -EIO;
	return mbedtls_md_get_size(info);
}

int digest_hmac(uint16_t alg, const void *key, size_t key_len, const void *data,
		size_t len, uint8_t *out)
{
	const mbedtls_md_info_t *info = md_info(alg);

	if (!info)
		return -EOPNOTSUPP;
	/* mbedtls pads or hashes the key itself (RFC 2104); its context, which held the
	 * padded key, is zeroed by mbedtls_md_free() inside the one-shot call. */
	if (mbedtls_md_hmac(info, key, key_len, data, len, out) != 0)
		return -EIO;
	return mbedtls_md_get_size(info);
}

int digest_extend(uint16_t alg, uint8_t *pcr, const uint8_t *digest)
{
	const mbedtls_md_info_t *info = md_info(alg);
	uint8_t both[2 * DIGEST_MAX];
	size_t n;

	if (!info)
		return -EOPNOTSUPP;
	/* Both halves are public values, so one buffer and the one-shot call will do. */
	n = mbedtls_md_get_size(info);
	memcpy(both, pcr, n);
	memcpy(both + n, digest, n);
	if (mbedtls_md(info, both, 2 * n, pcr) != 0)
		return -EIO;
	return (int)n;
}

int digest_begin(struct digest_ctx *c, uint16_t alg)
{
	const mbedtls_md_info_t *info = md_info(alg);
	int r;

	c->alg = alg;
	mbedtls_md_init(&c->md);
	if (!info)
		return -EOPNOTSUPP;
	r = mbedtls_md_setup(&c->md, info, 0);
	if (r == 0)
		r = mbedtls_md_starts(&c->md);
	if (r != 0) {
		mbedtls_md_free(&c->md);
		return r == MBEDTLS_ERR_MD_ALLOC_FAILED ? -ENOMEM : -EIO;
	}
	return 0;
}

int digest_update(struct digest_ctx *c, const void *data, size_t len)
{
	return mbedtls_md_update(&c->md, data, len) == 0 ? 0 : -EIO;
}

int digest_end(struct digest_ctx *c, uint8_t *out)
{
	int r = mbedtls_md_finish(&c->md, out) == 0 ? digest_size(c->alg) : -EIO;

	mbedtls_md_free(&c->md);
	return r;
}

void digest_ctx_free(struct digest_ctx *c)
{
	/* mbedtls_md_free() zeroes the context, so a second call finds nothing to free. */
	mbedtls_md_free(&c->md);
}
