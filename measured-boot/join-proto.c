/* The join protocol (join-proto.h): framing and parsers shared by cvm-join and the node,
 * the ephemeral ECDH keys, the bundle's AES-256-GCM and the service key's signature. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/ecdh.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "../lib/file.h"
#include "join-proto.h"

int join_header_parse(const uint8_t *hdr, enum join_type *type)
{
	if (memcmp(hdr, JOIN_MAGIC, 4) != 0 || hdr[4] != JOIN_VERSION)
		return -EBADMSG;
	if (hdr[5] < JOIN_HELLO || hdr[5] > JOIN_REFUSED)
		return -EBADMSG;
	*type = hdr[5];
	return (int)((size_t)hdr[6] << 8 | hdr[7]);
}

int join_header_write(uint8_t *hdr, enum join_type type, size_t len)
{
	if (len > JOIN_MAX_BODY)
		return -E2BIG;
	memcpy(hdr, JOIN_MAGIC, 4);
	hdr[4] = JOIN_VERSION;
	hdr[5] = (uint8_t)type;
	hdr[6] = (uint8_t)(len >> 8);
	hdr[7] = (uint8_t)len;
	return JOIN_HDR;
}

int join_body_parse(enum join_type type, const uint8_t *body, size_t len,
		    struct join_msg *m, const char **why)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->body = body;
	m->len = len;
	switch (type) {
	case JOIN_HELLO:
		if (len != JOIN_PUB + JOIN_NONCE)
			return *why = "hello: not a key and a challenge", -EBADMSG;
		if (body[0] != 0x04)
			return *why = "hello: not an uncompressed point", -EBADMSG;
		m->node_pub = body;
		m->challenge = body + JOIN_PUB;
		return 0;
	case JOIN_SERVICE:
		if (len < JOIN_PUB + JOIN_NONCE + 8 ||
		    len > JOIN_PUB + JOIN_NONCE + JOIN_MAX_SIG)
			return *why = "service: wrong length", -EBADMSG;
		if (body[0] != 0x04)
			return *why = "service: not an uncompressed point", -EBADMSG;
		m->svc_pub = body;
		m->nonce = body + JOIN_PUB;
		m->sig = body + JOIN_PUB + JOIN_NONCE;
		m->sig_len = len - JOIN_PUB - JOIN_NONCE;
		return 0;
	case JOIN_BUNDLE:
		if (len < JOIN_IV + JOIN_TAG + 1)
			return *why = "bundle: shorter than its iv and tag", -EBADMSG;
		return 0;
	case JOIN_REFUSED:
		if (len == 0 || len > 512)
			return *why = "refused: reason empty or over 512 bytes", -EBADMSG;
		for (size_t i = 0; i < len; i++)
			if (body[i] < 0x20 || body[i] > 0x7e)
				return *why = "refused: reason not printable ASCII",
				       -EBADMSG;
		return 0;
	}
	return *why = "unknown type", -EBADMSG;
}

static void sha256_parts(uint8_t out[32], const void *a, size_t an, const void *b,
			 size_t bn, const void *c, size_t cn, const void *d, size_t dn,
			 const void *e, size_t en)
{
	mbedtls_sha256_context s;

	mbedtls_sha256_init(&s);
	mbedtls_sha256_starts_ret(&s, 0);
	mbedtls_sha256_update_ret(&s, a, an);
	mbedtls_sha256_update_ret(&s, b, bn);
	if (c)
		mbedtls_sha256_update_ret(&s, c, cn);
	if (d)
		mbedtls_sha256_update_ret(&s, d, dn);
	if (e)
		mbedtls_sha256_update_ret(&s, e, en);
	mbedtls_sha256_finish_ret(&s, out);
	mbedtls_sha256_free(&s);
}

void join_transcript(const uint8_t *node_pub, const uint8_t *challenge,
		     const uint8_t *svc_pub, const uint8_t *nonce, uint8_t out[32])
{
	static const char label[] = "cvm-join v1 service";

	sha256_parts(out, label, sizeof(label) - 1, node_pub, JOIN_PUB, challenge,
		     JOIN_NONCE, svc_pub, JOIN_PUB, nonce, JOIN_NONCE);
}

void join_quote_nonce(const uint8_t *nonce, const uint8_t *node_pub, uint8_t out[32])
{
	sha256_parts(out, nonce, JOIN_NONCE, node_pub, JOIN_PUB, NULL, 0, NULL, 0, NULL,
		     0);
}

static int rng(void *ctx, unsigned char *p, size_t n)
{
	(void)ctx;
	while (n) {
		ssize_t k = getrandom(p, n, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int join_eph_new(struct join_eph *k)
{
	mbedtls_ecp_group g;
	mbedtls_mpi d;
	mbedtls_ecp_point q;
	size_t olen = 0;
	int r;

	mbedtls_ecp_group_init(&g);
	mbedtls_mpi_init(&d);
	mbedtls_ecp_point_init(&q);
	r = mbedtls_ecp_group_load(&g, MBEDTLS_ECP_DP_SECP256R1);
	if (!r)
		r = mbedtls_ecp_gen_keypair(&g, &d, &q, rng, NULL);
	if (!r)
		r = mbedtls_mpi_write_binary(&d, k->priv, sizeof(k->priv));
	if (!r)
		r = mbedtls_ecp_point_write_binary(&g, &q, MBEDTLS_ECP_PF_UNCOMPRESSED,
						   &olen, k->pub, sizeof(k->pub));
	if (!r && olen != JOIN_PUB)
		r = -1;
	mbedtls_ecp_point_free(&q);
	mbedtls_mpi_free(&d);
	mbedtls_ecp_group_free(&g);
	return r ? -EIO : 0;
}

int join_bundle_key(const struct join_eph *mine, const uint8_t *theirs,
		    const uint8_t *node_pub, const uint8_t *svc_pub, uint8_t key[32])
{
	static const char label[] = "cvm-join v1 bundle";
	mbedtls_ecp_group g;
	mbedtls_mpi d, z;
	mbedtls_ecp_point q;
	uint8_t zb[32];
	int r, ret = -EBADMSG;

	mbedtls_ecp_group_init(&g);
	mbedtls_mpi_init(&d);
	mbedtls_mpi_init(&z);
	mbedtls_ecp_point_init(&q);
	r = mbedtls_ecp_group_load(&g, MBEDTLS_ECP_DP_SECP256R1);
	if (!r)
		r = mbedtls_mpi_read_binary(&d, mine->priv, sizeof(mine->priv));
	if (!r)
		r = mbedtls_ecp_point_read_binary(&g, &q, theirs, JOIN_PUB);
	if (!r)
		r = mbedtls_ecp_check_pubkey(&g, &q);
	if (!r)
		r = mbedtls_ecdh_compute_shared(&g, &z, &q, &d, rng, NULL);
	if (!r)
		r = mbedtls_mpi_write_binary(&z, zb, sizeof(zb));
	if (!r) {
		sha256_parts(key, label, sizeof(label) - 1, zb, sizeof(zb), node_pub,
			     JOIN_PUB, svc_pub, JOIN_PUB, NULL, 0);
		ret = 0;
	}
	memset(zb, 0, sizeof(zb));
	mbedtls_ecp_point_free(&q);
	mbedtls_mpi_free(&z);
	mbedtls_mpi_free(&d);
	mbedtls_ecp_group_free(&g);
	return ret;
}

int join_seal(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out)
{
	mbedtls_gcm_context g;
	int r;

	if (len > JOIN_MAX_BUNDLE)
		return -E2BIG;
	if (rng(NULL, out, JOIN_IV) < 0)
		return -EIO;
	mbedtls_gcm_init(&g);
	r = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256);
	if (!r)
		r = mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, len, out, JOIN_IV,
					      NULL, 0, in, out + JOIN_IV, JOIN_TAG,
					      out + JOIN_IV + len);
	mbedtls_gcm_free(&g);
	return r ? -EIO : (int)(len + JOIN_IV + JOIN_TAG);
}

int join_open(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out)
{
	mbedtls_gcm_context g;
	size_t n;
	int r;

	if (len < JOIN_IV + JOIN_TAG)
		return -EBADMSG;
	n = len - JOIN_IV - JOIN_TAG;
	mbedtls_gcm_init(&g);
	r = mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 256);
	if (!r)
		r = mbedtls_gcm_auth_decrypt(&g, n, in, JOIN_IV, NULL, 0,
					     in + JOIN_IV + n, JOIN_TAG, in + JOIN_IV,
					     out);
	mbedtls_gcm_free(&g);
	return r ? -EBADMSG : (int)n;
}

/* mbedtls wants PEM NUL-terminated and counted with its NUL. */
static uint8_t *with_nul(const uint8_t *p, size_t n)
{
	uint8_t *b = malloc(n + 1);

	if (b) {
		memcpy(b, p, n);
		b[n] = '\0';
	}
	return b;
}

static bool is_p256(mbedtls_pk_context *pk)
{
	return mbedtls_pk_can_do(pk, MBEDTLS_PK_ECKEY) &&
	       mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

int join_sign(const uint8_t *keyfile, size_t keylen, const uint8_t hash[32], uint8_t *sig,
	      size_t *sig_len)
{
	uint8_t buf[MBEDTLS_PK_SIGNATURE_MAX_SIZE], *k = with_nul(keyfile, keylen);
	mbedtls_pk_context pk;
	size_t n = 0;
	int r;

	if (!k)
		return -ENOMEM;
	mbedtls_pk_init(&pk);
	r = mbedtls_pk_parse_key(&pk, k, keylen + 1, NULL, 0);
	if (r)
		r = mbedtls_pk_parse_key(&pk, k, keylen, NULL, 0);
	free(k);
	if (r || !is_p256(&pk)) {
		mbedtls_pk_free(&pk);
		return -EINVAL;
	}
	r = mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, hash, 32, buf, &n, rng, NULL);
	mbedtls_pk_free(&pk);
	if (r || n > JOIN_MAX_SIG)
		return -EIO;
	memcpy(sig, buf, n);
	*sig_len = n;
	return 0;
}

int join_verify(const uint8_t *pubfile, size_t publen, const uint8_t hash[32],
		const uint8_t *sig, size_t sig_len)
{
	uint8_t *k = with_nul(pubfile, publen);
	mbedtls_pk_context pk;
	int r;

	if (!k)
		return -ENOMEM;
	mbedtls_pk_init(&pk);
	r = mbedtls_pk_parse_public_key(&pk, k, publen + 1);
	if (r)
		r = mbedtls_pk_parse_public_key(&pk, k, publen);
	free(k);
	if (r || !is_p256(&pk)) {
		mbedtls_pk_free(&pk);
		return -EINVAL;
	}
	r = mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, hash, 32, sig, sig_len);
	mbedtls_pk_free(&pk);
	return r ? -EPERM : 0;
}

int join_send(int fd, enum join_type type, const void *body, size_t len)
{
	uint8_t hdr[JOIN_HDR];
	int r = join_header_write(hdr, type, len);

	if (r < 0)
		return r;
	r = write_full(fd, hdr, sizeof(hdr));
	return r < 0 ? r : write_full(fd, body, len);
}
