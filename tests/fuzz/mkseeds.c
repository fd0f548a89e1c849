/* Writes the seeds of tests/fuzz/corpus/ that come from our own writers (run by
 * tests/fuzz/mkseeds.sh, which adds the ones cryptsetup, cpio and a boot make): the LUKS2
 * token seal_token_format() writes, small PE images as the unit tests build them, and
 * marshalled TPMT_PUBLIC blobs of the shapes an SVSM vTPM manifest and an EK take. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>

#include "../../measured-boot/seal.h"

#define FAIL_AT(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))
#include "../unit/pe_builder.h"

static const char *out_dir;

static void put_file(const char *name, const void *data, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		FAIL_AT("cannot write %s", path);
}

/* The token the LUKS2 unit tests use: a blob of the shape seal_key() makes (a 4-byte
 * TPM2B_PRIVATE, then the keyedhash TPM2B_PUBLIC bound to the policy). */
static void token(const char *name, bool initialized, uint32_t mask)
{
	struct sealed s = {.pcr_mask = mask, .initialized = initialized};
	uint8_t *p = s.blob;
	char *json;

	for (int i = 0; i < 32; i++)
		s.policy[i] = (uint8_t)(0xa0 + i);
	for (int i = 0; i < 24; i++)
		memset(s.pcr_values[i], i, 32);
	*p++ = 0, *p++ = 4;
	memset(p, 0x55, 4), p += 4;
	*p++ = 0, *p++ = 2 + 2 + 4 + 2 + 32 + 2 + 2 + 32;
	*p++ = 0, *p++ = 0x08, *p++ = 0, *p++ = 0x0b;
	*p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0x12;
	*p++ = 0, *p++ = 32;
	memcpy(p, s.policy, 32), p += 32;
	*p++ = 0, *p++ = 0x10;
	*p++ = 0, *p++ = 32;
	memset(p, 0x77, 32), p += 32;
	s.blob_len = (size_t)(p - s.blob);
	if (seal_token_format(&s, &json) != 0)
		FAIL_AT("seal_token_format failed");
	put_file(name, json, strlen(json));
	free(json);
}

static void pes(void)
{
	static const char osrel[] = "ID=debian\nVERSION_ID=12\n";
	static const char cmdline[] = "console=ttyS0 roothash=00";
	static uint8_t buf[8192];
	const struct sec uki[] = {
		{".osrel", sizeof(osrel) - 1, 32, osrel, sizeof(osrel) - 1},
		{".cmdline", sizeof(cmdline) - 1, 32, cmdline, sizeof(cmdline) - 1},
		{".initrd", 16, 16, "0707010000000000", 16},
		{".linux", KERNEL_PE_LEN, KERNEL_PE_LEN, (const char *)kernel_pe,
		 KERNEL_PE_LEN},
	};
	size_t n;

	put_file("pe/kernel", kernel_pe, KERNEL_PE_LEN);
	n = build_pe(buf, sizeof(buf) - 64, uki, 4);
	put_file("pe/uki", buf, n);
	/* A signed file's shape: a certificate table (Security directory entry) over 64
	 * bytes appended after the sections. */
	put32(buf + OPT + OPT_CERT_DIR, (uint32_t)n);
	put32(buf + OPT + OPT_CERT_DIR + 4, 64);
	memset(buf + n, 0x30, 64);
	put_file("pe/uki-signed", buf, n + 64);
}

static void blob(const char *name, const TPMT_PUBLIC *pub)
{
	uint8_t buf[1024];
	size_t off = 0;

	if (Tss2_MU_TPMT_PUBLIC_Marshal(pub, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
		FAIL_AT("cannot marshal %s", name);
	put_file(name, buf, off);
}

static void blobs(void)
{
	TPMT_PUBLIC rsa = {
		.type = TPM2_ALG_RSA,
		.nameAlg = TPM2_ALG_SHA256,
		.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
				    TPMA_OBJECT_SENSITIVEDATAORIGIN |
				    TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED |
				    TPMA_OBJECT_DECRYPT,
		.authPolicy = {.size = 32},
		.parameters.rsaDetail = {.symmetric = {.algorithm = TPM2_ALG_AES,
						       .keyBits.aes = 128,
						       .mode.aes = TPM2_ALG_CFB},
					 .scheme = {.scheme = TPM2_ALG_NULL},
					 .keyBits = 2048},
		.unique.rsa = {.size = 256},
	};
	TPMT_PUBLIC ecc = rsa;

	memset(rsa.authPolicy.buffer, 0x83, 32);
	memset(rsa.unique.rsa.buffer, 0xc5, 256);
	blob("platform/ek-rsa2048.bin", &rsa);
	ecc.type = TPM2_ALG_ECC;
	ecc.parameters.eccDetail = (TPMS_ECC_PARMS){
		.symmetric = rsa.parameters.rsaDetail.symmetric,
		.scheme = {.scheme = TPM2_ALG_NULL},
		.curveID = TPM2_ECC_NIST_P256,
		.kdf = {.scheme = TPM2_ALG_NULL},
	};
	ecc.unique.ecc.x.size = ecc.unique.ecc.y.size = 32;
	memset(ecc.unique.ecc.x.buffer, 0x11, 32);
	memset(ecc.unique.ecc.y.buffer, 0x22, 32);
	blob("platform/ek-ecc256.bin", &ecc);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		FAIL_AT("usage: mkseeds <corpus dir>");
	out_dir = argv[1];
	token("token/sealed.json", false, (1u << 7) | (1u << 11) | (1u << 15));
	token("token/initialized.json", true, (1u << 11) | (1u << 15));
	pes();
	blobs();
	return 0;
}
