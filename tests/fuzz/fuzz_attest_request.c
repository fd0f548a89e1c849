/* attest_request_parse(), the agent's parser of untrusted network input (agent/agent.c
 * feeds it the bytes of a connection as they arrive), and the round trip against the
 * writer the verifier uses. */
#include <errno.h>

#include "../../measured-boot/attest-proto.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct attest_request req, again;
	uint8_t out[ATTEST_MAX_REQUEST];
	/* The agent's buffer: at most one request's worth, as agent.c reads it. */
	size_t n = size > ATTEST_MAX_REQUEST ? ATTEST_MAX_REQUEST : size;
	uint8_t *buf = malloc(n ? n : 1);
	int k, w;

	if (!buf)
		abort();
	memcpy(buf, data, n);
	k = attest_request_parse(buf, n, &req);
	FUZZ_ASSERT(k == 0 || k == -EBADMSG || (k >= ATTEST_HDR && (size_t)k <= n));
	/* Prefixes: a request complete at k wants more before it; a refusal at n is one at
	 * every longer input, and wanting more is never turned into acceptance early. */
	if (k > 0) {
		for (size_t i = 0; i < (size_t)k; i++)
			FUZZ_ASSERT(attest_request_parse(buf, i, &again) == 0);
		FUZZ_ASSERT(req.type == ATTEST_REQ_EVIDENCE ||
			    req.type == ATTEST_REQ_ACTIVATE);
		if (req.type == ATTEST_REQ_ACTIVATE) {
			FUZZ_ASSERT(req.blob >= buf &&
				    req.blob + req.blob_len <= buf + k);
			FUZZ_ASSERT(req.secret >= buf &&
				    req.secret + req.secret_len <= buf + k);
		}
		w = attest_request_write(out, &req);
		FUZZ_ASSERT(w == k && memcmp(out, buf, (size_t)k) == 0);
	}
	free(buf);
	return 0;
}
