/* The join protocol's parsers (measured-boot/join-proto.c): join_header_parse() and
 * join_body_parse() on what a node or cvm-join reads from the network, and join_open() on
 * a bundle sealed to a key the input does not know. */
#include <errno.h>

#include "../../measured-boot/join-proto.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[32] = {1};
	enum join_type type;
	struct join_msg m;
	const char *why = NULL;
	uint8_t hdr[JOIN_HDR], *body, *plain;
	size_t len;
	int n, r;

	if (size < JOIN_HDR)
		return 0;
	n = join_header_parse(data, &type);
	FUZZ_ASSERT(n == -EBADMSG || (n >= 0 && n <= JOIN_MAX_BODY));
	if (n < 0)
		return 0;
	FUZZ_ASSERT(join_header_write(hdr, type, (size_t)n) == JOIN_HDR);
	FUZZ_ASSERT(memcmp(hdr, data, JOIN_HDR) == 0);
	/* The body as the readers hold it: exactly its length, malloc'd for ASan. */
	len = size - JOIN_HDR < (size_t)n ? size - JOIN_HDR : (size_t)n;
	body = malloc(len ? len : 1);
	plain = malloc(len ? len : 1);
	if (!body || !plain)
		abort();
	memcpy(body, data + JOIN_HDR, len);
	r = join_body_parse(type, body, len, &m, &why);
	FUZZ_ASSERT(r == 0 || (r == -EBADMSG && why));
	if (r == 0 && type == JOIN_HELLO)
		FUZZ_ASSERT(m.node_pub == body && m.challenge + JOIN_NONCE == body + len);
	if (r == 0 && type == JOIN_SERVICE)
		FUZZ_ASSERT(m.sig + m.sig_len == body + len && m.sig_len <= JOIN_MAX_SIG);
	if (r == 0 && type == JOIN_BUNDLE)
		FUZZ_ASSERT(join_open(key, body, len, plain) == -EBADMSG);
	free(plain);
	free(body);
	return 0;
}
