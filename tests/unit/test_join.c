/* The join protocol's parsers and crypto (measured-boot/join-proto.c): every malformed
 * message refused with its reason, the bundle sealed to one key pair only, the service
 * key's signature checked against the pinned key only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../measured-boot/join-proto.h"
#include "harness.h"

TEST(join_header_round_trip_and_refusals)
{
	uint8_t h[JOIN_HDR];
	enum join_type t;

	CHECK_INT(join_header_write(h, JOIN_BUNDLE, 300), JOIN_HDR);
	CHECK_INT(join_header_parse(h, &t), 300);
	CHECK_INT(t, JOIN_BUNDLE);
	CHECK_INT(join_header_write(h, JOIN_BUNDLE, JOIN_MAX_BODY + 1), -E2BIG);
	join_header_write(h, JOIN_HELLO, 97);
	h[0] = 'X';
	CHECK_INT(join_header_parse(h, &t), -EBADMSG); /* magic */
	join_header_write(h, JOIN_HELLO, 97);
	h[4] = 2;
	CHECK_INT(join_header_parse(h, &t), -EBADMSG); /* version */
	join_header_write(h, JOIN_HELLO, 97);
	h[5] = 0;
	CHECK_INT(join_header_parse(h, &t), -EBADMSG); /* type 0 */
	h[5] = JOIN_REFUSED + 1;
	CHECK_INT(join_header_parse(h, &t), -EBADMSG);
}

TEST(join_body_refusals)
{
	uint8_t b[JOIN_PUB + JOIN_NONCE + JOIN_MAX_SIG + 1] = {0x04};
	struct join_msg m;
	const char *why = NULL;

	CHECK_INT(join_body_parse(JOIN_HELLO, b, JOIN_PUB + JOIN_NONCE, &m, &why), 0);
	CHECK(m.node_pub == b && m.challenge == b + JOIN_PUB);
	CHECK_INT(join_body_parse(JOIN_HELLO, b, JOIN_PUB + JOIN_NONCE - 1, &m, &why),
		  -EBADMSG);
	CHECK_CONTAINS(why, "hello");
	b[0] = 0x02;
	CHECK_INT(join_body_parse(JOIN_HELLO, b, JOIN_PUB + JOIN_NONCE, &m, &why),
		  -EBADMSG);
	CHECK_CONTAINS(why, "uncompressed");
	b[0] = 0x04;
	CHECK_INT(join_body_parse(JOIN_SERVICE, b, JOIN_PUB + JOIN_NONCE + 70, &m, &why),
		  0);
	CHECK_INT((int)m.sig_len, 70);
	CHECK_INT(join_body_parse(JOIN_SERVICE, b,
				  JOIN_PUB + JOIN_NONCE + JOIN_MAX_SIG + 1, &m, &why),
		  -EBADMSG);
	CHECK_INT(join_body_parse(JOIN_SERVICE, b, JOIN_PUB + JOIN_NONCE, &m, &why),
		  -EBADMSG);
	CHECK_INT(join_body_parse(JOIN_BUNDLE, b, JOIN_IV + JOIN_TAG, &m, &why),
		  -EBADMSG);
	CHECK_INT(join_body_parse(JOIN_REFUSED, (const uint8_t *)"no", 2, &m, &why), 0);
	CHECK_INT(join_body_parse(JOIN_REFUSED, (const uint8_t *)"a\nb", 3, &m, &why),
		  -EBADMSG);
	CHECK_CONTAINS(why, "printable");
	CHECK_INT(join_body_parse(JOIN_REFUSED, b, 0, &m, &why), -EBADMSG);
}

TEST(join_bundle_sealed_to_the_quoted_key)
{
	static const char text[] = "apiVersion: v1\nkind: Config\n";
	uint8_t k1[32], k2[32], k3[32], sealed[sizeof(text) + JOIN_IV + JOIN_TAG];
	uint8_t plain[sizeof(text)];
	struct join_eph node, svc, other;

	CHECK_INT(join_eph_new(&node), 0);
	CHECK_INT(join_eph_new(&svc), 0);
	CHECK_INT(join_eph_new(&other), 0);
	CHECK_INT(join_bundle_key(&svc, node.pub, node.pub, svc.pub, k1), 0);
	CHECK_INT(join_bundle_key(&node, svc.pub, node.pub, svc.pub, k2), 0);
	CHECK(memcmp(k1, k2, 32) == 0);
	CHECK_INT(join_seal(k1, (const uint8_t *)text, sizeof(text), sealed),
		  (int)sizeof(sealed));
	CHECK_INT(join_open(k2, sealed, sizeof(sealed), plain), (int)sizeof(text));
	CHECK(memcmp(plain, text, sizeof(text)) == 0);
	/* Another node key (a node that did not quote this one) cannot open it. */
	CHECK_INT(join_bundle_key(&other, svc.pub, node.pub, svc.pub, k3), 0);
	CHECK_INT(join_open(k3, sealed, sizeof(sealed), plain), -EBADMSG);
	/* One bit changed anywhere: refused. */
	sealed[JOIN_IV + 3] ^= 1;
	CHECK_INT(join_open(k2, sealed, sizeof(sealed), plain), -EBADMSG);
	/* A point not on the curve. */
	other.pub[40] ^= 1;
	CHECK_INT(join_bundle_key(&node, other.pub, node.pub, other.pub, k3), -EBADMSG);
}

/* P-256 keys made for this test by `openssl genpkey -algorithm EC`. */
static int make_key(const char *dir, const char *name, char *priv, char *pub, size_t n)
{
	char cmd[1024];

	snprintf(priv, n, "%s/%s.pem", dir, name);
	snprintf(pub, n, "%s/%s.pub.pem", dir, name);
	snprintf(cmd, sizeof(cmd),
		 "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s "
		 "2>/dev/null && openssl pkey -in %s -pubout -out %s 2>/dev/null",
		 priv, priv, pub);
	return system(cmd);
}

static size_t slurp(const char *path, uint8_t *buf, size_t n)
{
	FILE *f = fopen(path, "rb");
	size_t k = f ? fread(buf, 1, n, f) : 0;

	if (f)
		fclose(f);
	return k;
}

TEST(join_service_key_proof)
{
	char dir[] = "/tmp/test_join.XXXXXX", a[256], ap[256], b[256], bp[256];
	uint8_t key[4096], pin[4096], other[4096], hash[32], sig[JOIN_MAX_SIG];
	uint8_t node_pub[JOIN_PUB] = {4}, ch[32] = {1}, svc_pub[JOIN_PUB] = {4};
	uint8_t nonce[32] = {2};
	size_t kl, pl, ol, sl;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(make_key(dir, "a", a, ap, sizeof(a)), 0);
	CHECK_INT(make_key(dir, "b", b, bp, sizeof(b)), 0);
	kl = slurp(a, key, sizeof(key));
	pl = slurp(ap, pin, sizeof(pin));
	ol = slurp(bp, other, sizeof(other));
	CHECK(kl > 0 && pl > 0 && ol > 0);
	join_transcript(node_pub, ch, svc_pub, nonce, hash);
	CHECK_INT(join_sign(key, kl, hash, sig, &sl), 0);
	CHECK_INT(join_verify(pin, pl, hash, sig, sl), 0);
	CHECK_INT(join_verify(other, ol, hash, sig, sl), -EPERM); /* another service */
	ch[0] ^= 1; /* another challenge: a replayed proof */
	join_transcript(node_pub, ch, svc_pub, nonce, hash);
	CHECK_INT(join_verify(pin, pl, hash, sig, sl), -EPERM);
	CHECK_INT(join_verify((const uint8_t *)"junk", 4, hash, sig, sl), -EINVAL);
	snprintf((char *)key, sizeof(key), "rm -rf %s", dir);
	CHECK_INT(system((char *)key), 0);
}

TEST(join_quote_nonce_binds_the_key)
{
	uint8_t nonce[32] = {7}, a[JOIN_PUB] = {4}, b[JOIN_PUB] = {4}, qa[32], qb[32];

	b[1] = 1;
	join_quote_nonce(nonce, a, qa);
	join_quote_nonce(nonce, b, qb);
	CHECK(memcmp(qa, qb, 32) != 0);
	CHECK(memcmp(qa, nonce, 32) != 0);
}
