/* The join protocol between a node (cvminit-agent --join) and cvm-join: message framing,
 * the service's proof of its pinned key, the quote nonce binding and the bundle's sealing. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * One connection, opened by the node, all integers big-endian (docs/attestation.md):
 *   node -> service  JOIN_HELLO: node's ephemeral P-256 public key (65) | challenge (32)
 *   service -> node  JOIN_SERVICE: service's ephemeral P-256 key (65) | nonce (32) |
 *                    ECDSA signature (DER) by the pinned service key over
 *                    join_transcript(hello, service key, nonce)
 *   service -> node  attest requests ("CVMQ", attest-proto.h) with the quote nonce
 *                    sha256(nonce | node key), answered by the node as the agent does
 *   service -> node  JOIN_BUNDLE: iv (12) | AES-256-GCM ciphertext | tag (16), the key
 *                    from ECDH of the two ephemeral keys; or JOIN_REFUSED: a reason (text)
 * Every message: "CVMJ" | version (1) | type (1) | body length (2) | body.
 */
#define JOIN_MAGIC	"CVMJ"
#define JOIN_VERSION	1
#define JOIN_HDR	8
#define JOIN_MAX_BODY	65535
#define JOIN_PUB	65 /* uncompressed P-256 point */
#define JOIN_NONCE	32
#define JOIN_IV		12
#define JOIN_TAG	16
#define JOIN_MAX_SIG	80
#define JOIN_MAX_BUNDLE (JOIN_MAX_BODY - JOIN_IV - JOIN_TAG)
#define JOIN_PORT	7742

enum join_type {
	JOIN_HELLO = 1,
	JOIN_SERVICE = 2,
	JOIN_BUNDLE = 3,
	JOIN_REFUSED = 4,
};

struct join_msg {
	enum join_type type;
	const uint8_t *body; /* into the parsed buffer */
	size_t len;
	/* HELLO */
	const uint8_t *node_pub, *challenge;
	/* SERVICE */
	const uint8_t *svc_pub, *nonce, *sig;
	size_t sig_len;
};

/* Parses the header of one message (JOIN_HDR bytes): returns its body length, or -EBADMSG
 * (not "CVMJ", another version, an unknown type). */
int join_header_parse(const uint8_t *hdr, enum join_type *type);
/* Parses a complete message's body for its type: fixed sizes for HELLO, SERVICE's
 * signature length within bounds, a BUNDLE at least iv and tag long, a REFUSED reason of
 * printable ASCII. Returns 0 or -EBADMSG with why. */
int join_body_parse(enum join_type type, const uint8_t *body, size_t len,
		    struct join_msg *m, const char **why);
/* Writes a header for a body of len bytes; returns JOIN_HDR or -E2BIG. */
int join_header_write(uint8_t *hdr, enum join_type type, size_t len);
/* Writes one message (header, then body) to fd; returns 0 or -errno. */
int join_send(int fd, enum join_type type, const void *body, size_t len);

/* sha256("cvm-join v1 service" | node_pub | challenge | svc_pub | nonce): what the
 * service signs with its pinned key. */
void join_transcript(const uint8_t *node_pub, const uint8_t *challenge,
		     const uint8_t *svc_pub, const uint8_t *nonce, uint8_t out[32]);
/* sha256(nonce | node_pub): the quote's qualifying data, so the quote names the key the
 * bundle is encrypted to. */
void join_quote_nonce(const uint8_t *nonce, const uint8_t *node_pub, uint8_t out[32]);

/* An ephemeral P-256 key pair. */
struct join_eph {
	uint8_t priv[32];
	uint8_t pub[JOIN_PUB];
};
int join_eph_new(struct join_eph *k);
/* The bundle key: sha256("cvm-join v1 bundle" | ECDH(mine, theirs) | node_pub | svc_pub).
 * Returns 0, or -EBADMSG for a point not on the curve. */
int join_bundle_key(const struct join_eph *mine, const uint8_t *theirs,
		    const uint8_t *node_pub, const uint8_t *svc_pub, uint8_t key[32]);
/* AES-256-GCM with a random iv; out gets iv | ciphertext | tag (len + 28 bytes). */
int join_seal(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out);
/* The reverse; out gets len - 28 bytes. Returns their count or -EBADMSG (tag). */
int join_open(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t *out);

/* ECDSA P-256 over a 32-byte hash with the service key (PEM or DER private key). */
int join_sign(const uint8_t *keyfile, size_t keylen, const uint8_t hash[32], uint8_t *sig,
	      size_t *sig_len);
/* Verifies with the pinned public key (PEM or DER). Returns 0, -EPERM, -EINVAL (key). */
int join_verify(const uint8_t *pubfile, size_t publen, const uint8_t hash[32],
		const uint8_t *sig, size_t sig_len);
