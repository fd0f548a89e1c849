/* The verifier's parsers of what a node sends (cvm-measure attest): the response framing
 * (attest_response_parse), then the items the way attest-cmd.c checks them: the AK public,
 * the quote and signature, the EK certificate (mbedtls x509). No CA and a fixed nonce: the
 * checks must refuse, never crash or read outside the items. */
#include <errno.h>

#include "../../measured-boot/attest-proto.h"
#include "../../measured-boot/attest-verify.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t nonce[ATTEST_NONCE], ca[] = "not a certificate";
	static struct attest_verified v;
	struct attest_response resp;
	char why[ATTEST_WHY_MAX];
	const char *bad = NULL;
	uint8_t *buf = malloc(size ? size : 1);
	size_t need = 0;
	int k;

	if (!buf)
		abort();
	memcpy(buf, data, size);
	k = attest_response_parse(buf, size, &resp, &need, &bad);
	FUZZ_ASSERT(k == 0 || (k == -EBADMSG && bad));
	if (k == 0 && need == 0) {
		for (unsigned i = 1; i <= ATTEST_ITEM_MAX; i++)
			FUZZ_ASSERT(!resp.item[i].present ||
				    (resp.item[i].p >= buf &&
				     resp.item[i].p + resp.item[i].len <= buf + size));
		if (resp.item[ATTEST_ITEM_AK_PUBLIC].present)
			(void)attest_check_ak(resp.item[ATTEST_ITEM_AK_PUBLIC].p,
					      resp.item[ATTEST_ITEM_AK_PUBLIC].len, &v,
					      why, sizeof(why));
		k = attest_check_quote(&resp, nonce, &v, why, sizeof(why));
		FUZZ_ASSERT(k == -EBADMSG || k == -EPERM);
		if (resp.item[ATTEST_ITEM_EK_CERT].present) {
			k = attest_check_ek_cert(resp.item[ATTEST_ITEM_EK_CERT].p,
						 resp.item[ATTEST_ITEM_EK_CERT].len, ca,
						 sizeof(ca), &v, why, sizeof(why));
			FUZZ_ASSERT(k < 0);
		}
	}
	free(buf);
	return 0;
}
