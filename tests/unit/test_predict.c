/* PCR 4 and PCR 11 prediction (the firmware's boot option and image records,
 * systemd-stub's section records, cvminit's phases) on a hand-made UKI, with values from
 * an independent computation, and `cvm-measure verify` end to end on a small log written
 * with eventlog.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/digest.h"
#include "../../lib/hex.h"
#include "../../measured-boot/eventlog.h"
#include "../../measured-boot/pe.h"
#include "../../measured-boot/predict.h"
#include "../../measured-boot/replay.h"
#include "../../measured-boot/measurements.h"
#include "harness.h"

#define CVM_MEASURE "build/cvm-measure"

#include "pe_builder.h"

/*
 * File order is not measurement order. Measured, in the stub's order: .linux kernel_pe
 * (pe_builder.h; the first of two), .osrel "ID=x\n", .cmdline "console=ttyS0"
 * (VirtualSize 13 of 16 raw bytes), .initrd "07070100" + 4 zero bytes (VirtualSize 12 >
 * SizeOfRawData 8). Not measured: .text (not a UKI section), .pcrsig (never), .uname
 * (VirtualSize 0).
 */
static const struct sec uki[] = {
	{".text", 4, 16, "\x90\x90\x90\xc3", 4},
	{".cmdline", 13, 16, "console=ttyS0", 13},
	{".linux", KERNEL_PE_LEN, KERNEL_PE_LEN, (const char *)kernel_pe, KERNEL_PE_LEN},
	{".initrd", 12, 8, "07070100", 8},
	{".pcrsig", 3, 16, "sig", 3},
	{".osrel", 5, 16, "ID=x\n", 5},
	{".uname", 0, 8, "ignored!", 8},
	{".linux", 5, 8, "OTHER", 5},
};

/* Python, hashlib, k the bytes of kernel_pe: p = bytes(n); for d in (b".linux\0", k,
 * b".osrel\0", b"ID=x\n", b".cmdline\0", b"console=ttyS0", b".initrd\0", b"07070100" +
 * bytes(4)): p = H(p + H(d).digest()).digest(); then the same with b"enter-initrd". */
#define BOOT_SHA256                                                                      \
	"0b694b014b2b7b37604d300d1ebac1a1001f2d5fea6698eb"                               \
	"81cf3b2e4a6acdf1"
#define ENTER_SHA256                                                                     \
	"35bca5a63483a91c632a1ed09cc1e1966db4b8971401e935"                               \
	"0055b22aa76b43a5"
#define BOOT_SHA384                                                                      \
	"a5419419cfa16398dfcc79a1b838bcf7d3bb56b01ab3aac4"                               \
	"98213e72d2d06fd5eb20a60309f04f681e3b027352a80e12"
#define ENTER_SHA384                                                                     \
	"8d6ee7bfcb7ed19478c543a4b0a28d4396b83daba800dde8"                               \
	"e73efd5d87a4d4e5ff9bd011bd82d50fb62bdef202104020"

/* The Authenticode hashes of the UKI built from uki[] and of kernel_pe, as osslsigncode
 * computes them (sign with -h BANK, then verify: "Calculated message digest"). */
#define UKI_AUTH_SHA256                                                                  \
	"bd35dfc1eef15d676c5e2df546408e150f3c98df5c6a18e9"                               \
	"0735418c47c7529f"
#define KERNEL_AUTH_SHA256                                                               \
	"95786cde1cbf95ee13b5449e110bace44aac33f2a9ae9fb9"                               \
	"3980a39ac3900687"
#define KERNEL_AUTH_SHA384                                                               \
	"ebfa70aadf0f466690d19e73b24bfd446d0a222d86174d80"                               \
	"0d56ba0dc6b5f23e3163e4fa5e2d7011fb791bc3d74b776d"

/* Python: p = bytes(n); for d in (H(b"Calling EFI Application from Boot Option"),
 * H(bytes(4)), [H(b"Returning from EFI Application from Boot Option"), H(b"Calling …")]
 * per failed boot option, the UKI's hash, the kernel's): p = H(p + d). */
#define PCR4_SHA256                                                                      \
	"6dfc569ad0b75afb95ce3a065180810c1df9d127c3cbaadb"                               \
	"50e479cf5f04828c"
#define PCR4_FAILED2_SHA256                                                              \
	"3f394f9ef46144b97bcd4c49a270308c63dc0d2da7d257c5"                               \
	"dfddb469e5b1bf51"
#define PCR4_SHA384                                                                      \
	"cb096a6b857c9f2af9f4ab47e3e8e027067ff9a68863a5af"                               \
	"108a399065fce1b8b2644fb13e096576bde5ae825bcdefab"
#define PCR4_FAILED2_SHA384                                                              \
	"6ee925378413c56e91ad1b5a89dad77b92434d293da21a0d"                               \
	"9680b19c49be2a184308a051aab93a9225c24ee598746819"

static const uint16_t algs[] = {DIGEST_ALG_SHA256, DIGEST_ALG_SHA384};

static void parse_uki(uint8_t *buf, size_t cap, const struct sec *s, size_t n,
		      struct pe_file *pe)
{
	size_t len = build_pe(buf, cap, s, n), off;
	const char *why;

	if (pe_parse(buf, len, pe, &off, &why) != 0)
		FAIL_AT("pe_parse: %s at %zu", why, off);
}

static void pcr11_hex(const struct eventlog *log, uint16_t alg, char *hex)
{
	struct replay_pcrs p;
	int size = replay_log(log, alg, &p);

	CHECK(size > 0);
	hex_encode(p.v[11], (size_t)size, hex);
}

TEST(predict_stub_order_and_bytes)
{
	uint8_t buf[2048];
	struct pe_file pe;
	struct eventlog log = {0};
	static const char *const events[] = {
		"uki-section-name:.linux",   "uki-section:.linux",
		"uki-section-name:.osrel",   "uki-section:.osrel",
		"uki-section-name:.cmdline", "uki-section:.cmdline",
		"uki-section-name:.initrd",  "uki-section:.initrd",
	};
	uint8_t want[DIGEST_MAX];

	parse_uki(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]), &pe);
	CHECK_INT(predict_stub_records(&pe, algs, 2, &log), 8);
	CHECK_INT(log.n, 8);
	for (size_t i = 0; i < 8; i++) {
		CHECK_STR(log.records[i].event, events[i]);
		CHECK_INT(log.records[i].pcr, 11);
		CHECK_INT(log.records[i].n_digests, 2);
		CHECK(log.records[i].extended);
	}
	/* The name is measured with its NUL. */
	digest_compute(DIGEST_ALG_SHA256, ".linux", 7, want);
	CHECK(memcmp(log.records[0].digests[0].buf, want, 32) == 0);
	/* VirtualSize past the file data: zeros. */
	digest_compute(DIGEST_ALG_SHA384, "07070100\0\0\0\0", 12, want);
	CHECK(memcmp(log.records[7].digests[1].buf, want, 48) == 0);
	eventlog_free(&log);
	pe_free(&pe);
}

TEST(predict_known_values)
{
	uint8_t buf[2048];
	struct pe_file pe;
	struct eventlog log = {0};
	char hex[2 * DIGEST_MAX + 1];

	parse_uki(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]), &pe);
	CHECK_INT(predict_stub_records(&pe, algs, 2, &log), 8);
	pcr11_hex(&log, DIGEST_ALG_SHA256, hex);
	CHECK_STR(hex, BOOT_SHA256);
	pcr11_hex(&log, DIGEST_ALG_SHA384, hex);
	CHECK_STR(hex, BOOT_SHA384);

	CHECK_INT(predict_phase_record("enter-initrd", algs, 2, &log), 0);
	CHECK_STR(log.records[8].event, "enter-initrd");
	CHECK_STR(log.records[8].event_type, "phase");
	pcr11_hex(&log, DIGEST_ALG_SHA256, hex);
	CHECK_STR(hex, ENTER_SHA256);
	pcr11_hex(&log, DIGEST_ALG_SHA384, hex);
	CHECK_STR(hex, ENTER_SHA384);
	eventlog_free(&log);
	pe_free(&pe);
}

TEST(predict_refuses)
{
	uint8_t buf[2048];
	struct pe_file pe;
	struct eventlog log = {0};
	static const struct sec profile[] = {
		{".linux", 6, 8, "KERNEL", 6},
		{".profile", 4, 8, "ID=a", 4},
	};
	static const struct sec no_linux[] = {{".osrel", 5, 8, "ID=x\n", 5}};
	static const struct sec empty_linux[] = {{".linux", 0, 8, "KERNEL", 6}};

	parse_uki(buf, sizeof(buf), profile, 2, &pe);
	CHECK_INT(predict_stub_records(&pe, algs, 2, &log), -EOPNOTSUPP);
	pe_free(&pe);
	parse_uki(buf, sizeof(buf), no_linux, 1, &pe);
	CHECK_INT(predict_stub_records(&pe, algs, 2, &log), -ENOENT);
	pe_free(&pe);
	parse_uki(buf, sizeof(buf), empty_linux, 1, &pe);
	CHECK_INT(predict_stub_records(&pe, algs, 2, &log), -ENOENT);
	pe_free(&pe);
	CHECK_INT(log.n, 0);
	eventlog_free(&log);
}

static void pcr4_hex(const struct eventlog *log, uint16_t alg, char *hex)
{
	struct replay_pcrs p;
	int size = replay_log(log, alg, &p);

	CHECK(size > 0);
	hex_encode(p.v[4], (size_t)size, hex);
}

TEST(predict_pcr4_records_and_values)
{
	static const char *const types[] = {"EV_EFI_ACTION",
					    "EV_SEPARATOR",
					    "EV_EFI_ACTION",
					    "EV_EFI_ACTION",
					    "EV_EFI_ACTION",
					    "EV_EFI_ACTION",
					    "EV_EFI_BOOT_SERVICES_APPLICATION",
					    "EV_EFI_BOOT_SERVICES_APPLICATION"};
	static const char *const events[] = {"boot-option", "separator", "returning",
					     "boot-option", "returning", "boot-option",
					     "uki",	    ".linux"};
	uint8_t buf[2048], want[DIGEST_MAX];
	char hex[2 * DIGEST_MAX + 1];
	struct pe_file pe;
	struct eventlog log = {0};
	const char *why = "unset";

	parse_uki(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]), &pe);
	CHECK_INT(predict_pcr4_records(&pe, 0, algs, 2, &log, &why), 4);
	CHECK(why == NULL);
	CHECK_STR(log.records[0].event_type, "EV_EFI_ACTION");
	CHECK_STR(log.records[1].event_type, "EV_SEPARATOR");
	CHECK_STR(log.records[2].event, "uki");
	CHECK_STR(log.records[3].event, ".linux");
	for (size_t i = 0; i < 4; i++) {
		CHECK_INT(log.records[i].pcr, 4);
		CHECK_INT(log.records[i].n_digests, 2);
	}
	/* The action string without a NUL; the separator is four zero bytes. */
	digest_compute(DIGEST_ALG_SHA256, "Calling EFI Application from Boot Option", 40,
		       want);
	CHECK(memcmp(log.records[0].digests[0].buf, want, 32) == 0);
	digest_compute(DIGEST_ALG_SHA384, "\0\0\0\0", 4, want);
	CHECK(memcmp(log.records[1].digests[1].buf, want, 48) == 0);
	/* The images' Authenticode hashes, as osslsigncode computes them. */
	hex_encode(log.records[2].digests[0].buf, 32, hex);
	CHECK_STR(hex, UKI_AUTH_SHA256);
	hex_encode(log.records[3].digests[0].buf, 32, hex);
	CHECK_STR(hex, KERNEL_AUTH_SHA256);
	hex_encode(log.records[3].digests[1].buf, 48, hex);
	CHECK_STR(hex, KERNEL_AUTH_SHA384);
	pcr4_hex(&log, DIGEST_ALG_SHA256, hex);
	CHECK_STR(hex, PCR4_SHA256);
	pcr4_hex(&log, DIGEST_ALG_SHA384, hex);
	CHECK_STR(hex, PCR4_SHA384);
	eventlog_free(&log);

	/* Two boot options failed first: each adds Returning then Calling, after the
	 * separator, which the firmware measures once. */
	CHECK_INT(predict_pcr4_records(&pe, 2, algs, 2, &log, &why), 8);
	for (size_t i = 0; i < 8; i++) {
		CHECK_STR(log.records[i].event_type, types[i]);
		CHECK_STR(log.records[i].event, events[i]);
	}
	digest_compute(DIGEST_ALG_SHA256,
		       "Returning from EFI Application from Boot Option", 47, want);
	CHECK(memcmp(log.records[2].digests[0].buf, want, 32) == 0);
	pcr4_hex(&log, DIGEST_ALG_SHA256, hex);
	CHECK_STR(hex, PCR4_FAILED2_SHA256);
	pcr4_hex(&log, DIGEST_ALG_SHA384, hex);
	CHECK_STR(hex, PCR4_FAILED2_SHA384);
	eventlog_free(&log);

	CHECK_INT(predict_pcr4_records(&pe, PREDICT_PCR4_MAX_FAILED + 1, algs, 2, &log,
				       &why),
		  -EINVAL);
	CHECK_INT(log.n, 0);
	pe_free(&pe);
}

TEST(predict_pcr4_refuses)
{
	uint8_t buf[2048];
	struct pe_file pe;
	struct eventlog log = {0};
	const char *why;
	size_t len;
	static const struct sec not_pe[] = {{".linux", 6, 8, "KERNEL", 6}};
	static const struct sec no_linux[] = {{".osrel", 5, 8, "ID=x\n", 5}};

	/* The stub starts .linux as a PE image: "KERNEL" is none. */
	parse_uki(buf, sizeof(buf), not_pe, 1, &pe);
	CHECK_INT(predict_pcr4_records(&pe, 0, algs, 2, &log, &why), -ENOEXEC);
	CHECK_CONTAINS(why, "DOS header");
	pe_free(&pe);
	parse_uki(buf, sizeof(buf), no_linux, 1, &pe);
	CHECK_INT(predict_pcr4_records(&pe, 0, algs, 2, &log, &why), -ENOENT);
	pe_free(&pe);
	/* The UKI's own headers do not allow the hash. */
	len = build_pe(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]));
	put32(buf + OPT + OPT_SIZE_OF_HEADERS, (uint32_t)len + 1);
	CHECK(pe_parse(buf, len, &pe, &(size_t){0}, &why) == 0);
	CHECK_INT(predict_pcr4_records(&pe, 0, algs, 2, &log, &why), -EBADMSG);
	CHECK_CONTAINS(why, "SizeOfHeaders");
	pe_free(&pe);
	eventlog_free(&log);
}

/* --- cvm-measure verify, end to end ---------------------------------------------- */

static char dir[] = "/tmp/cvm-predict-XXXXXX";

static void need_tool(void)
{
	if (access(CVM_MEASURE, X_OK) != 0)
		SKIP("%s not built (make build/cvm-measure)", CVM_MEASURE);
	if (!mkdtemp(dir))
		FAIL_AT("mkdtemp: %s", strerror(errno));
}

static void cleanup(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

static void write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f);
	CHECK(fwrite(data, 1, len, f) == len);
	CHECK(fclose(f) == 0);
}

/* Reads dir/name into out (NUL-terminated); returns its length. */
static size_t read_back(const char *name, char *out, size_t cap)
{
	char path[256];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	CHECK(f);
	n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	fclose(f);
	return n;
}

/* Runs cvm-measure with args (paths relative to dir as %s/...); returns the exit status
 * and the combined output in out. */
static int run(char *out, size_t cap, const char *args)
{
	char cmd[1024], cwd[512];
	size_t n = 0, k;
	FILE *p;
	int status;

	CHECK(getcwd(cwd, sizeof(cwd)));
	snprintf(cmd, sizeof(cmd), "cd %s && %s/%s %s 2>&1", dir, cwd, CVM_MEASURE, args);
	p = popen(cmd, "r");
	CHECK(p);
	while (n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0)
		n += k;
	out[n] = '\0';
	status = pclose(p);
	CHECK(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void append(int fd, unsigned pcr, const char *event, const char *data)
{
	struct eventlog_record r = {
		.pcr = pcr, .rtmr = -1, .extended = true, .n_digests = 2};

	r.event = (char *)event;
	/* As cvminit logs it: the measured content beside the digests. */
	r.data = (uint8_t *)data;
	r.data_len = strlen(data);
	r.has_data = true;
	for (size_t i = 0; i < 2; i++) {
		r.digests[i].alg = algs[i];
		r.digests[i].size = (uint16_t)digest_compute(algs[i], data, strlen(data),
							     r.digests[i].buf);
	}
	CHECK_INT(eventlog_append(fd, &r), 0);
}

/* A log of cvminit's: PCR 11 enter-initrd, PCR 15 cmdline and root. Returns the byte
 * offset of its third record. */
static size_t make_log(void)
{
	char path[256];
	struct stat st;
	size_t third;
	int fd;

	snprintf(path, sizeof(path), "%s/measure.log", dir);
	fd = eventlog_open(path);
	CHECK(fd >= 0);
	append(fd, 11, "enter-initrd", "enter-initrd");
	append(fd, 15, "cvminit:cmdline", "console=ttyS0");
	CHECK(fstat(fd, &st) == 0);
	third = (size_t)st.st_size;
	append(fd, 15, "cvminit:root", "verity:abc");
	close(fd);
	return third;
}

static void pcr15_after(int n_records, char *hex)
{
	uint8_t pcr[32] = {0}, d[32];

	if (n_records >= 1) {
		digest_compute(DIGEST_ALG_SHA256, "console=ttyS0", 13, d);
		digest_extend(DIGEST_ALG_SHA256, pcr, d);
	}
	if (n_records >= 2) {
		digest_compute(DIGEST_ALG_SHA256, "verity:abc", 10, d);
		digest_extend(DIGEST_ALG_SHA256, pcr, d);
	}
	hex_encode(pcr, 32, hex);
}

TEST(verify_match_and_mismatch)
{
	char out[8192], hex[65], pcrs[512], want[128];
	size_t third;

	need_tool();
	third = make_log();

	pcr15_after(2, hex);
	snprintf(pcrs, sizeof(pcrs), "# read from the TPM\n15: sha256:%s\n", hex);
	write_file("ok.pcrs", pcrs, strlen(pcrs));
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --pcrs ok.pcrs"), 0);
	CHECK_CONTAINS(out, "PCR 15 sha256: match");

	/* tpm2_pcrread's layout, upper-case with 0x. */
	pcr15_after(2, hex);
	for (char *c = hex; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	snprintf(pcrs, sizeof(pcrs), "  sha256:\n    15: 0x%s\n", hex);
	write_file("pcrread.pcrs", pcrs, strlen(pcrs));
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --pcrs pcrread.pcrs"),
		  0);

	/* The TPM saw only the first PCR 15 record: the root record is the divergence. */
	pcr15_after(1, hex);
	snprintf(pcrs, sizeof(pcrs), "15: sha256:%s\n", hex);
	write_file("bad.pcrs", pcrs, strlen(pcrs));
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --pcrs bad.pcrs"), 1);
	CHECK_CONTAINS(out, "PCR 15 sha256: MISMATCH");
	CHECK_CONTAINS(out, hex);
	snprintf(want, sizeof(want),
		 "record 2 at byte offset %zu of measure.log: "
		 "\"cvminit:root\"",
		 third);
	CHECK_CONTAINS(out, want);
	cleanup();
}

TEST(verify_with_uki)
{
	uint8_t buf[2048];
	size_t len;
	char out[8192], pcrs[512];

	need_tool();
	make_log();
	len = build_pe(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]));
	write_file("uki.efi", buf, len);
	/* After the stub, the log's PCR 11 record is enter-initrd. */
	snprintf(pcrs, sizeof(pcrs), "11: sha256:%s\n11: sha384:%s\n", ENTER_SHA256,
		 ENTER_SHA384);
	write_file("pcr11.pcrs", pcrs, strlen(pcrs));
	CHECK_INT(run(out, sizeof(out),
		      "verify --log measure.log --pcrs pcr11.pcrs --uki uki.efi"),
		  0);
	CHECK_CONTAINS(out, "PCR 11 sha256: match");
	CHECK_CONTAINS(out, "PCR 11 sha384: match");
	/* Without the stub's records PCR 11 cannot match, and the tool says why. */
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --pcrs pcr11.pcrs"), 1);
	CHECK_CONTAINS(out, "pass --uki");

	/* predict on the same UKI gives the same values. Its .initrd is no cpio archive,
	 * so the config comes from --config. */
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --json m.json --config /dev/null"),
		  0);
	CHECK_CONTAINS(out, "PCR 11 sha256 boot " BOOT_SHA256);
	CHECK_CONTAINS(out, "PCR 11 sha384 enter-initrd " ENTER_SHA384);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --json m.json --phase boot --config "
		      "/dev/null"),
		  0);
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --phase nope"), 2);
	CHECK_CONTAINS(out, "--phase nope");
	/* Without --config the .initrd is read, and what is wrong with it is named. */
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi"), 2);
	CHECK_CONTAINS(out, "uki.efi: .initrd (file offset 0x");
	CHECK_CONTAINS(out, "byte offset 0 of the section: truncated: an entry header is "
			    "cut off; pass --config FILE");
	cleanup();
}

/* A crypto-agile firmware log with the sha256 bank only: the Spec ID header, then PCR 4's
 * events as OVMF makes them, the application events with the given digests (hex). */
static size_t pcr4_firmware_log(uint8_t *b, const char *const *apps, size_t n_apps)
{
	static const char calling[] = "Calling EFI Application from Boot Option";
	size_t n = 0;
	uint8_t d[32];

#define U32(v)	    (put32(b + n, (uint32_t)(v)), n += 4)
#define PUT(p, len) (memcpy(b + n, (p), (len)), n += (len))
	U32(0);
	U32(3); /* EV_NO_ACTION */
	memset(b + n, 0, 20);
	n += 20;
	U32(16 + 4 + 4 + 4 + 4 + 1);
	PUT("Spec ID Event03", 16);
	U32(0);		    /* platformClass */
	PUT("\0\2\0\2", 4); /* version 2.0, uintnSize 2 */
	U32(1);
	put16(b + n, DIGEST_ALG_SHA256);
	put16(b + n + 2, 32);
	n += 4;
	PUT("", 1); /* vendorInfoSize */
	for (size_t i = 0; i < 2 + n_apps; i++) {
		U32(4);
		U32(i == 0 ? 0x80000007 : i == 1 ? 0x4 : 0x80000003);
		U32(1);
		put16(b + n, DIGEST_ALG_SHA256);
		n += 2;
		if (i == 0)
			digest_compute(DIGEST_ALG_SHA256, calling, strlen(calling), d);
		else if (i == 1)
			digest_compute(DIGEST_ALG_SHA256, "\0\0\0\0", 4, d);
		else
			CHECK_INT(hex_decode(apps[i - 2], d, 32), 32);
		PUT(d, 32);
		U32(i == 1 ? 4 : 0);
		if (i == 1)
			PUT("\0\0\0\0", 4);
	}
#undef U32
#undef PUT
	return n;
}

/* verify --uki --firmware-log: the firmware's PCR 4 application events must be the UKI's
 * and its kernel's Authenticode hashes, and PCR 4 replays to the predicted value. */
TEST(verify_pcr4_images)
{
	static const char *const good[] = {UKI_AUTH_SHA256, KERNEL_AUTH_SHA256};
	static const char *const wrong[] = {UKI_AUTH_SHA256, ENTER_SHA256};
	static const char *const three[] = {KERNEL_AUTH_SHA256, UKI_AUTH_SHA256,
					    KERNEL_AUTH_SHA256};
	uint8_t buf[2048], fw[1024];
	char out[8192];
	static const char pcrs[] = "4: sha256:" PCR4_SHA256 "\n";
	size_t len;

	need_tool();
	len = build_pe(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]));
	write_file("uki.efi", buf, len);
	write_file("p4.pcrs", pcrs, strlen(pcrs));
	write_file("fw.bin", fw, pcr4_firmware_log(fw, good, 2));
	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log fw.bin --uki uki.efi --pcrs p4.pcrs"),
		  0);
	CHECK_CONTAINS(out, "PCR 4 images: the 2 in fw.bin are uki.efi and its .linux");
	CHECK_CONTAINS(out, "PCR 4 sha256: match");

	write_file("fw.bin", fw, pcr4_firmware_log(fw, wrong, 2));
	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log fw.bin --uki uki.efi --pcrs p4.pcrs"),
		  1);
	CHECK_CONTAINS(out, "PCR 4 images: MISMATCH");
	CHECK_CONTAINS(out, "sha256 " ENTER_SHA256);
	CHECK_CONTAINS(out, "is not the Authenticode hash of uki.efi's .linux:\n"
			    "    sha256 " KERNEL_AUTH_SHA256);

	/* Something started before the UKI (a boot manager): not this UKI's boot. */
	write_file("fw.bin", fw, pcr4_firmware_log(fw, three, 3));
	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log fw.bin --uki uki.efi --pcrs p4.pcrs"),
		  1);
	CHECK_CONTAINS(out, "fw.bin has 3 PCR 4 application events");

	write_file("fw.bin", fw, pcr4_firmware_log(fw, NULL, 0));
	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log fw.bin --uki uki.efi --pcrs p4.pcrs"),
		  1);
	CHECK_CONTAINS(out, "fw.bin has no PCR 4 application events");
	CHECK_CONTAINS(out, "PCR 4 sha256: MISMATCH");
	cleanup();
}

/* hex = H(hex || H(data)) for each data, in bank sha256. */
static void extend_hex(char *hex, const char *const *data, size_t n, const size_t *lens)
{
	uint8_t pcr[32], d[32];

	CHECK_INT(hex_decode(hex, pcr, 32), 32);
	for (size_t i = 0; i < n; i++) {
		CHECK_INT(digest_compute(DIGEST_ALG_SHA256, data[i],
					 lens ? lens[i] : strlen(data[i]), d),
			  32);
		CHECK_INT(digest_extend(DIGEST_ALG_SHA256, pcr, d), 32);
	}
	hex_encode(pcr, 32, hex);
}

TEST(predict_json_shape)
{
	static const char *const phases[] = {"leave-initrd", "ready"};
	/* PCR 15: the .cmdline section's text, no config, no roothash=. */
	static const char *const pcr15[] = {"console=ttyS0", ""};
	uint8_t buf[2048];
	size_t len;
	char out[8192], path[256], want[1024], ready[65] = ENTER_SHA256, p15[65];
	FILE *f;

	need_tool();
	memset(p15, '0', 64);
	p15[64] = '\0';
	extend_hex(ready, phases, 2, NULL);
	extend_hex(p15, pcr15, 2, NULL);
	len = build_pe(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]));
	write_file("uki.efi", buf, len);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --json m.json --config /dev/null"),
		  0);
	CHECK_CONTAINS(out, "PCR 11 sha256 ready ");
	CHECK_CONTAINS(out, ready);
	CHECK_CONTAINS(out, "PCR 15's value left out of m.json");
	/* The sealing value: after cvminit:config (no roothash=, no state). */
	snprintf(want, sizeof(want), "PCR 15 sha256 sealing %s\n", p15);
	CHECK_CONTAINS(out, want);
	snprintf(path, sizeof(path), "%s/m.json", dir);
	f = fopen(path, "r");
	CHECK(f);
	len = fread(out, 1, sizeof(out) - 1, f);
	out[len] = '\0';
	fclose(f);
	/* PCR 11 after ready (the default phase); PCR 15 without a value (the node's
	 * volume-key record is not given) but with its image-wide records. */
	snprintf(want, sizeof(want),
		 "{\n  \"4\": {\n    \"expected\": \"%s\",\n    \"warnOnly\": false\n  "
		 "},\n"
		 "  \"11\": {\n    \"expected\": \"%s\",\n    \"warnOnly\": false\n  "
		 "},\n  \"15\": {\n    \"warnOnly\": false,\n    \"replay\": [\n",
		 PCR4_SHA256, ready);
	CHECK(strncmp(out, want, strlen(want)) == 0);
	{
		struct measurements m;
		char err[128], h[65];

		CHECK_INT(measurements_parse(out, len, &m, err, sizeof(err)), 0);
		CHECK(m.pcr[15].present && !m.pcr[15].has_expected &&
		      !m.pcr[15].warn_only);
		CHECK(!m.pcr[0].present && m.pcr[4].expected_len == 32);
		CHECK_INT(m.n_replay, 2);
		CHECK_STR(m.replay[0].event, "cvminit:cmdline");
		CHECK_INT(m.replay[0].data_len, 13);
		CHECK(memcmp(m.replay[0].data, "console=ttyS0", 13) == 0);
		CHECK_STR(m.replay[1].event, "cvminit:config");
		CHECK_STR(m.replay[1].name, "/etc/cvminit/cvminit.conf");
		CHECK_INT(m.replay[1].data_len, 0);
		CHECK_INT(m.replay[1].n_digests, 2);
		/* The records fold to the sealing value. */
		memset(h, '0', 64);
		h[64] = '\0';
		extend_hex(h, pcr15, 2, NULL);
		CHECK_STR(h, p15);
		CHECK_INT(m.n_per_node, 3);
		CHECK(measurements_per_node(&m, "cvminit:volume-key:3f0c"));
		CHECK(measurements_per_node(&m, "cvminit:generation"));
		CHECK(measurements_per_node(&m, "cvminit:state"));
		CHECK(!measurements_per_node(&m, "cvminit:cmdline"));
		CHECK(!measurements_per_node(&m, "cvminit:stateX"));
		measurements_free(&m);
	}
	cleanup();
}

TEST(predict_pcr4_cli)
{
	static const struct sec not_pe[] = {{".linux", 6, 8, "KERNEL", 6}};
	uint8_t buf[2048];
	size_t len;
	char out[8192];

	need_tool();
	len = build_pe(buf, sizeof(buf), uki, sizeof(uki) / sizeof(uki[0]));
	write_file("uki.efi", buf, len);
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --config /dev/null"), 0);
	CHECK_CONTAINS(out, "authenticode uki sha256 " UKI_AUTH_SHA256 "\n");
	CHECK_CONTAINS(out, "authenticode .linux sha384 " KERNEL_AUTH_SHA384 "\n");
	CHECK_CONTAINS(out, "PCR 4 sha256 .linux " PCR4_SHA256 "\n");
	CHECK_CONTAINS(out, "PCR 4 sha384 .linux " PCR4_SHA384 "\n");
	CHECK_CONTAINS(out, "after 0 boot option(s) that failed");
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --config /dev/null --failed-boot-options 2 "
		      "--bank sha384 --json m.json"),
		  0);
	CHECK_CONTAINS(out, "PCR 4 sha256 returning ");
	CHECK_CONTAINS(out, "PCR 4 sha256 .linux " PCR4_FAILED2_SHA256 "\n");
	read_back("m.json", out, sizeof(out));
	CHECK_CONTAINS(out, "\"4\": {\n    \"expected\": \"" PCR4_FAILED2_SHA384 "\"");
	for (size_t i = 0; i < 3; i++) {
		static const char *const bad[] = {"17", "-1", "x"};
		char args[256];

		snprintf(args, sizeof(args),
			 "predict --uki uki.efi --config /dev/null --failed-boot-options "
			 "%s",
			 bad[i]);
		CHECK_INT(run(out, sizeof(out), args), 2);
		CHECK_CONTAINS(out, "--failed-boot-options");
	}
	/* A .linux the stub could not start: no prediction at all, rather than one
	 * without PCR 4. */
	len = build_pe(buf, sizeof(buf), not_pe, 1);
	write_file("uki.efi", buf, len);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --config /dev/null --cmdline x "
		      "--json m.json"),
		  2);
	CHECK_CONTAINS(out, "PCR 4: .linux is not a PE image");
	cleanup();
}

TEST(verify_input_errors)
{
	char out[8192];
	static const char bad_hex[] = "# ok\n15: sha256:1234\n";
	uint8_t pe_bytes[0x30] = {'M', 'Z'};

	need_tool();
	make_log();
	write_file("short.pcrs", bad_hex, strlen(bad_hex));
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --pcrs short.pcrs"), 2);
	CHECK_CONTAINS(out, "short.pcrs: line 2 (byte offset 5)");

	write_file("ok.pcrs",
		   "15: sha256:"
		   "0000000000000000000000000000000000000000000000000000000000000000\n",
		   76);
	/* A record cut in the middle. */
	write_file("cut.log", "\x1e{\"recnum\":0,\"pcr\":15,\"dig", 27);
	CHECK_INT(run(out, sizeof(out), "verify --log cut.log --pcrs ok.pcrs"), 2);
	CHECK_CONTAINS(out, "cut.log: malformed record at byte offset 0: not a complete "
			    "JSON object");
	write_file("text.log", "hello\n", 6);
	CHECK_INT(run(out, sizeof(out), "verify --log text.log --pcrs ok.pcrs"), 2);
	CHECK_CONTAINS(out, "text.log: malformed record at byte offset 0: no record "
			    "separator (0x1E) there: not a JSON-SEQ CEL log");
	CHECK_INT(run(out, sizeof(out), "verify --log missing.log --pcrs ok.pcrs"), 2);
	CHECK_CONTAINS(out, "missing.log: No such file");

	write_file("trunc.efi", pe_bytes, sizeof(pe_bytes));
	CHECK_INT(run(out, sizeof(out), "predict --uki trunc.efi"), 2);
	CHECK_CONTAINS(out,
		       "trunc.efi: not a valid PE image: file shorter than a DOS header "
		       "(byte offset 48");
	CHECK_INT(run(out, sizeof(out), "verify --pcrs ok.pcrs"), 2);
	CHECK_CONTAINS(out, "--log FILE or --firmware-log FILE is required");
	CHECK_INT(
		run(out, sizeof(out), "verify --log measure.log --pcrs ok.pcrs --pcr 11"),
		2);
	CHECK_CONTAINS(out,
		       "no PCR to compare: ok.pcrs has none of the PCRs --pcr selects");
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log"), 2);
	CHECK_CONTAINS(out, "one of --pcrs FILE and --tpm DEVICE is required");
	CHECK_INT(run(out, sizeof(out), "verify --help"), 0);
	CHECK_CONTAINS(out,
		       "Exit status: 0 every PCR compared matches; 1 some PCR differs");
	CHECK_INT(run(out, sizeof(out), "predict --help"), 0);
	CHECK_CONTAINS(out, "--phase PHASE");
	CHECK_INT(run(out, sizeof(out), "frobnicate"), 2);
	cleanup();
}
