/* The TPM access layer against a real swtpm, cross-checked with tpm2-tools. */
#include <errno.h>

#include "../../measured-boot/tpm.h"
#include "harness.h"
#include "swtpm.h"

static void hex(const uint8_t *d, int n, char *out)
{
	for (int i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

TEST(tpm_banks_of_swtpm)
{
	struct tpm_bank banks[TPM_MAX_BANKS];
	struct tpm *t;
	char names[128] = "";

	CHECK_INT(tpm_open("swtpm", swtpm_start(), &t), 0);
	int n = tpm_pcr_banks(t, banks, TPM_MAX_BANKS);
	CHECK(n >= 1);
	for (int i = 0; i < n; i++) {
		strcat(names, tpm_alg_name(banks[i].alg));
		strcat(names, " ");
		CHECK_INT(banks[i].size, tpm_alg_digest_size(banks[i].alg));
	}
	/* A fresh swtpm allocates these banks. */
	CHECK_STR(names, "sha1 sha256 sha384 sha512 ");
	tpm_close(t);
}

TEST(tpm_pcr_read_matches_tpm2_tools)
{
	char cmd[512], want[160], got[2 * TPM_MAX_DIGEST + 1];
	uint8_t d[TPM_MAX_DIGEST];
	const char *conf = swtpm_start();
	struct tpm *t;

	/* Extend PCR 16 with tpm2-tools so the value is not the all-zero default, then
	 * read it with our code and with tpm2_pcrread. */
	snprintf(cmd, sizeof(cmd),
		 "tpm2_pcrextend -T swtpm:%s 16:sha256=" /* 32 bytes of 0x11 */
		 "1111111111111111111111111111111111111111111111111111111111111111",
		 conf);
	CHECK_INT(system(cmd), 0);
	snprintf(
		cmd, sizeof(cmd),
		"tpm2_pcrread -T swtpm:%s sha256:16 | sed -n 's/.*16 *: *0x//p' | tr A-F a-f",
		conf);
	CHECK_INT(run_capture(cmd, want, sizeof(want)), 0);
	CHECK_INT(strlen(want), 64);

	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	CHECK_INT(tpm_pcr_read(t, 0x000B, 16, d), 32);
	hex(d, 32, got);
	CHECK_STR(got, want);
	/* sha256(32 zero bytes || 32 bytes of 0x11), computed with Python's hashlib. */
	CHECK_STR(got,
		  "8878b15a7d6a3a4f464e8f9f42591dbc0cf4bedea0ec309003d2b2ee53655ef8");
	tpm_close(t);
}

TEST(tpm_pcr_read_fresh_is_zero)
{
	uint8_t d[TPM_MAX_DIGEST], zero[TPM_MAX_DIGEST] = {0};
	struct tpm *t;

	CHECK_INT(tpm_open("swtpm", swtpm_start(), &t), 0);
	CHECK_INT(tpm_pcr_read(t, 0x000C /* sha384 */, 15, d), 48);
	CHECK(memcmp(d, zero, 48) == 0);
	CHECK_INT(tpm_pcr_read(t, 0x000B, 24, d), -EINVAL);
	tpm_close(t);
}

TEST(tpm_open_missing_device)
{
	struct tpm *t = NULL;

	CHECK_INT(tpm_open("device", "/nonexistent/tpmrm0", &t), -ENOENT);
	CHECK(t == NULL);
	CHECK_INT(tpm_open("bogus", NULL, &t), -EINVAL);
}

TEST(tpm_open_unreachable_swtpm)
{
	struct tpm *t = NULL;

	/* Nothing listens on port 1 of loopback. */
	CHECK_INT(tpm_open("swtpm", "host=127.0.0.1,port=1", &t), -EIO);
}
