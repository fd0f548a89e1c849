/* seal_token_parse(), the strict reader of the systemd-tpm2 token in the LUKS2 header
 * (init/luks.c hands it the token's JSON), and the writer round trip: what the parser
 * accepts, seal_token_format() writes back and the parser reads to the same values. */
#include <errno.h>

#include "../../measured-boot/seal.h"
#include "fuzz.h"

#define TOKEN_MAX 12288 /* the JSON area of a 16 KiB header holds the whole token */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *json = fuzz_text(data, size, TOKEN_MAX), *again = NULL, err[300];
	struct sealed *s = calloc(1, sizeof(*s)), *t = calloc(1, sizeof(*t));
	int r;

	if (!s || !t)
		abort();
	r = seal_token_parse(json, s, err, sizeof(err));
	FUZZ_ASSERT(r == 0 || r == -EBADMSG);
	FUZZ_ASSERT(r == 0 || err[0]);
	if (r == 0) {
		FUZZ_ASSERT(s->blob_len <= SEAL_BLOB_MAX);
		FUZZ_ASSERT(seal_token_format(s, &again) == 0);
		r = seal_token_parse(again, t, err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "the parser refuses the writer's token: %s\n",
				err);
		FUZZ_ASSERT(r == 0);
		FUZZ_ASSERT(t->blob_len == s->blob_len);
		FUZZ_ASSERT(memcmp(t->blob, s->blob, s->blob_len) == 0);
		FUZZ_ASSERT(t->pcr_mask == s->pcr_mask);
		FUZZ_ASSERT(memcmp(t->policy, s->policy, sizeof(s->policy)) == 0);
		FUZZ_ASSERT(t->initialized == s->initialized);
		for (int i = 0; i < SEAL_PCR_MAX; i++)
			if (s->pcr_mask & (1u << i))
				FUZZ_ASSERT(memcmp(t->pcr_values[i], s->pcr_values[i],
						   SEAL_DIGEST_SIZE) == 0);
		free(again);
	}
	free(t);
	free(s);
	free(json);
	return 0;
}
