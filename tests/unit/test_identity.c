/* The measured identities (measured-boot/identity.c): their exact spelling, and the
 * reference file text as cvminit's own parser reads it back. */
#include <errno.h>
#include <string.h>

#include "../../init/luks.h"
#include "../../init/reference.h"
#include "../../lib/digest.h"
#include "../../lib/hex.h"
#include "../../measured-boot/identity.h"
#include "../../measured-boot/predict.h"
#include "harness.h"

#define H "0123456789abcdef00112233445566778899aabbccddeeff0f1e2d3c4b5a6978"

TEST(identity_root_spelling)
{
	char out[IDENTITY_ROOT_MAX], d[37], h[37];

	CHECK_INT(identity_root(H, out, sizeof(out)), (int)strlen(out));
	CHECK_STR(out, "verity:" H ":01234567-89ab-cdef-0011-223344556677:"
		       "8899aabb-ccdd-eeff-0f1e-2d3c4b5a6978:erofs");
	identity_root_uuids(H, d, h);
	CHECK_STR(d, "01234567-89ab-cdef-0011-223344556677");
	CHECK_STR(h, "8899aabb-ccdd-eeff-0f1e-2d3c4b5a6978");
	CHECK_INT(identity_root("0123", out, sizeof(out)), -EINVAL);
	CHECK_INT(
		identity_root(
			"0123456789ABCDEF00112233445566778899aabbccddeeff0f1e2d3c4b5a6978",
			out, sizeof(out)),
		-EINVAL);
	CHECK_INT(identity_root(H, out, 40), -ENOBUFS);
}

TEST(identity_root_is_what_predict_measures)
{
	char a[IDENTITY_ROOT_MAX], b[PREDICT_ROOT_MAX];
	const char *why;

	CHECK(identity_root(H, a, sizeof(a)) > 0);
	CHECK_INT(predict_root_data("quiet roothash=" H " ro", b, sizeof(b), &why), 1);
	CHECK_STR(b, a);
	CHECK_INT(predict_root_data("quiet", b, sizeof(b), &why), 0);
	CHECK(predict_root_data("roothash=", b, sizeof(b), &why) < 0);
	CHECK(predict_root_data("roothash=" H " roothash=" H, b, sizeof(b), &why) < 0);
}

TEST(identity_state_spelling_and_luks)
{
	struct luks2_hdr h = {.key_bits = 512, .sector_size = 4096};
	char a[IDENTITY_STATE_MAX], b[IDENTITY_STATE_MAX];

	strcpy(h.uuid, "3f0c1e2a-0000-4000-8000-000000000001");
	strcpy(h.cipher, "aes-xts-plain64");
	CHECK(identity_state(h.uuid, h.cipher, 512, 4096, "", a, sizeof(a)) > 0);
	CHECK_STR(
		a,
		"luks2:3f0c1e2a-0000-4000-8000-000000000001:aes-xts-plain64:512:4096:none");
	/* What PID 1 measures as cvminit:state is the same function's answer. */
	CHECK(luks2_identity(&h, b, sizeof(b)) > 0);
	CHECK_STR(b, a);
	strcpy(h.integrity, "hmac(sha256)");
	CHECK(luks2_identity(&h, b, sizeof(b)) > 0);
	CHECK_CONTAINS(b, ":4096:hmac(sha256)");
	CHECK_INT(identity_state(h.uuid, h.cipher, 512, 4096, "", a, 20), -ENOBUFS);
}

TEST(identity_reference_reads_back_in_cvminit)
{
	static const char conf[] = "service a\nexec /x\n";
	static struct reference ref;
	char text[REFERENCE_SIZE_MAX], err[REFERENCE_ERR_MAX], root[IDENTITY_ROOT_MAX];
	uint8_t sum[32];

	CHECK(identity_reference("console=ttyS0 roothash=" H, (const uint8_t *)conf,
				 sizeof(conf) - 1, text, sizeof(text)) > 0);
	CHECK_INT(reference_parse(&ref, text, err, sizeof(err)), 0);
	CHECK(ref.has_cmdline && ref.has_config && ref.has_root && !ref.config_absent);
	CHECK_STR(ref.cmdline, "console=ttyS0 roothash=" H);
	CHECK(identity_root(H, root, sizeof(root)) > 0);
	CHECK_STR(ref.root, root);
	CHECK_INT(digest_compute(DIGEST_ALG_SHA256, conf, sizeof(conf) - 1, sum), 32);
	CHECK(memcmp(ref.config_sha256, sum, 32) == 0);

	/* No config, no roothash=: "config none" and no root line. */
	memset(&ref, 0, sizeof(ref));
	CHECK(identity_reference("quiet", NULL, 0, text, sizeof(text)) > 0);
	CHECK_INT(reference_parse(&ref, text, err, sizeof(err)), 0);
	CHECK(ref.config_absent && !ref.has_root);

	/* What cvminit would refuse is refused here too. */
	CHECK_INT(identity_reference("roothash=abc", NULL, 0, text, sizeof(text)),
		  -EINVAL);
	CHECK_INT(identity_reference("a\nb", NULL, 0, text, sizeof(text)), -EINVAL);
	CHECK_INT(identity_reference("quiet", NULL, 0, text, 20), -ENOBUFS);
}
