/* The Authenticode image hash (pe_authenticode): the bytes it covers, range by range and
 * by flipping bytes, and its value against osslsigncode's on hand-made images and the
 * UKI. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/digest.h"
#include "../../lib/hex.h"
#include "../../measured-boot/pe.h"
#include "harness.h"

/* The product image's UKI, or the test image's (the same stub and kernel). */
#define UKI_PATH      "build/image/cvminit.efi"
#define TEST_UKI_PATH "build/image-test/cvminit.efi"
/* A throwaway self-signed key and certificate made for these tests: osslsigncode (the one
 * in bookworm, 2.5) prints the image hash it computes only when it verifies a signature,
 * so the tests sign with it. Nothing trusts this certificate. */
#define TEST_KEY "tests/fixtures/authenticode-test.key"
#define TEST_CRT "tests/fixtures/authenticode-test.crt"

#include "pe_builder.h"

static const struct sec three[] = {
	{".text", 20, 32, "\x55\x48\x89\xe5\x90\x90\x90\x90\x5d\xc3", 10},
	{".data", 8, 16, "DATADATA", 8},
	{".sbat", 30, 48, "sbat,1,SBAT Version,sbat,1,x\n", 30},
};

static void parse(const uint8_t *buf, size_t len, struct pe_file *pe)
{
	size_t off;
	const char *why;

	if (pe_parse(buf, len, pe, &off, &why) != 0)
		FAIL_AT("pe_parse: %s at %zu", why, off);
}

/* Swaps section table entries i and j: the table no longer lists sections in file order.
 */
static void swap_entries(uint8_t *buf, size_t i, size_t j)
{
	uint8_t t[40];

	memcpy(t, buf + TABLE + 40 * i, 40);
	memcpy(buf + TABLE + 40 * i, buf + TABLE + 40 * j, 40);
	memcpy(buf + TABLE + 40 * j, t, 40);
}

/* Three sections listed .sbat, .data, .text (file order: .text .data .sbat), 24 bytes of
 * data after them, then a 16-byte "certificate table" the directory entry points at. */
static size_t layout(uint8_t *buf, size_t cap, size_t *sections_end)
{
	size_t len = build_pe(buf, cap, three, 3);

	swap_entries(buf, 0, 2);
	*sections_end = len;
	memset(buf + len, 0x5a, 24);
	len += 24;
	memset(buf + len, 0xce, 16);
	put32(buf + OPT + OPT_CERT_DIR, (uint32_t)len);
	put32(buf + OPT + OPT_CERT_DIR + 4, 16);
	return len + 16;
}

static void hash_of(const uint8_t *buf, size_t len, uint16_t alg, uint8_t *out)
{
	struct pe_file pe;
	const char *why;
	int r;

	parse(buf, len, &pe);
	r = pe_authenticode(&pe, alg, out, &why);
	if (r != digest_size(alg))
		FAIL_AT("pe_authenticode: %d (%s)", r, why ? why : "-");
	pe_free(&pe);
}

TEST(authenticode_ranges)
{
	uint8_t buf[2048];
	size_t end, len = layout(buf, sizeof(buf), &end), n;
	const size_t hdrs = (TABLE + 3 * 40 + 15) & ~(size_t)15;
	struct pe_range *r;
	struct pe_file pe;
	const char *why;

	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode_ranges(&pe, &r, &n, &why), 0);
	CHECK_INT(n, 7);
	/* The headers without CheckSum and without the Certificate Table entry. */
	CHECK_INT(r[0].offset, 0);
	CHECK_INT(r[0].len, OPT + OPT_CHECKSUM);
	CHECK_INT(r[1].offset, OPT + OPT_CHECKSUM + 4);
	CHECK_INT(r[1].len, OPT_CERT_DIR - OPT_CHECKSUM - 4);
	CHECK_INT(r[2].offset, OPT + OPT_CERT_DIR + 8);
	CHECK_INT(r[2].len, hdrs - (OPT + OPT_CERT_DIR + 8));
	/* The sections in file order (.text .data .sbat), SizeOfRawData each. */
	CHECK_INT(r[3].offset, hdrs);
	CHECK_INT(r[3].len, 32);
	CHECK_INT(r[4].offset, hdrs + 32);
	CHECK_INT(r[4].len, 16);
	CHECK_INT(r[5].offset, hdrs + 48);
	CHECK_INT(r[5].len, 48);
	/* Then the rest of the file less the certificate table. */
	CHECK_INT(r[6].offset, end);
	CHECK_INT(r[6].len, 24);
	CHECK_INT(r[6].offset + r[6].len, len - 16);
	free(r);
	pe_free(&pe);

	/* Fewer than 5 data directories: no Certificate Table entry to leave out, and no
	 * certificate table, so everything after the headers' CheckSum is hashed. */
	put32(buf + OPT + OPT_N_RVA, 4);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode_ranges(&pe, &r, &n, &why), 0);
	CHECK_INT(n, 6);
	CHECK_INT(r[1].offset, OPT + OPT_CHECKSUM + 4);
	CHECK_INT(r[1].len, hdrs - (OPT + OPT_CHECKSUM + 4));
	CHECK_INT(r[5].offset, end);
	CHECK_INT(r[5].len, 40);
	free(r);
	pe_free(&pe);
}

/* The same thing without trusting the range list: bytes outside the hash do not change
 * it, each byte inside does. */
TEST(authenticode_covers_what_it_should)
{
	uint8_t buf[2048], base[DIGEST_MAX], h[DIGEST_MAX];
	size_t end, len = layout(buf, sizeof(buf), &end), cert = len - 16;
	/* CheckSum, the certificate table's offset (its size moves the end of the last
	 * range), the table itself. */
	const size_t excluded[] = {OPT + OPT_CHECKSUM,
				   OPT + OPT_CHECKSUM + 3,
				   OPT + OPT_CERT_DIR,
				   OPT + OPT_CERT_DIR + 3,
				   cert,
				   len - 1};

	hash_of(buf, len, DIGEST_ALG_SHA256, base);
	for (size_t i = 0; i < sizeof(excluded) / sizeof(excluded[0]); i++) {
		buf[excluded[i]] ^= 1;
		hash_of(buf, len, DIGEST_ALG_SHA256, h);
		if (memcmp(h, base, 32) != 0)
			FAIL_AT("flipping byte %zu changed the hash", excluded[i]);
		buf[excluded[i]] ^= 1;
	}
	/* Every other byte before the certificate table counts. Left out: the signatures
	 * pe_parse() checks (MZ, PE, the PE32+ magic) and the fields that move the ranges
	 * themselves (e_lfanew, NumberOfSections, SizeOfOptionalHeader, SizeOfHeaders,
	 * NumberOfRvaAndSizes, the sections' SizeOfRawData and PointerToRawData), which
	 * authenticode_ranges covers; and CheckSum and the Certificate Table entry. */
	for (size_t i = 0; i < cert; i++) {
		bool skip =
			i < 2 || (i >= 0x3c && i < 0x40) || (i >= PE_OFF && i < COFF) ||
			(i >= COFF + 2 && i < COFF + 4) ||
			(i >= COFF + 16 && i < COFF + 18) || (i >= OPT && i < OPT + 2) ||
			(i >= OPT + OPT_SIZE_OF_HEADERS && i < OPT + OPT_CHECKSUM + 4) ||
			(i >= OPT + OPT_N_RVA && i < OPT + OPT_N_RVA + 4) ||
			(i >= OPT + OPT_CERT_DIR && i < OPT + OPT_CERT_DIR + 8) ||
			(i >= TABLE && i < TABLE + 3 * 40 && (i - TABLE) % 40 >= 16 &&
			 (i - TABLE) % 40 < 24);

		if (skip)
			continue;
		buf[i] ^= 0x80;
		hash_of(buf, len, DIGEST_ALG_SHA256, h);
		if (memcmp(h, base, 32) == 0)
			FAIL_AT("flipping byte %zu did not change the hash", i);
		buf[i] ^= 0x80;
	}
}

TEST(authenticode_refuses)
{
	uint8_t buf[2048], out[DIGEST_MAX];
	size_t end, len = layout(buf, sizeof(buf), &end), n = 99;
	struct pe_range dummy, *r = &dummy;
	struct pe_file pe;
	const char *why;

	/* SizeOfHeaders past the end of the file. */
	put32(buf + OPT + OPT_SIZE_OF_HEADERS, (uint32_t)len + 1);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode_ranges(&pe, &r, &n, &why), -EBADMSG);
	CHECK(r == NULL && n == 0);
	CHECK_CONTAINS(why, "SizeOfHeaders is past the end");
	CHECK_INT(pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why), -EBADMSG);
	pe_free(&pe);

	/* SizeOfHeaders ends before the Certificate Table entry. */
	put32(buf + OPT + OPT_SIZE_OF_HEADERS, OPT + OPT_CERT_DIR + 4);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why), -EBADMSG);
	CHECK_CONTAINS(why, "inside the data directories");
	pe_free(&pe);
	/* … or, without one, before the end of CheckSum. */
	put32(buf + OPT + OPT_N_RVA, 4);
	put32(buf + OPT + OPT_SIZE_OF_HEADERS, OPT + OPT_CHECKSUM + 2);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why), -EBADMSG);
	CHECK_CONTAINS(why, "inside the optional header");
	pe_free(&pe);

	/* A certificate table larger than what follows the sections. */
	len = layout(buf, sizeof(buf), &end);
	put32(buf + OPT + OPT_CERT_DIR + 4, 41);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why), -EBADMSG);
	CHECK_CONTAINS(why, "certificate table is larger");
	pe_free(&pe);
	/* Exactly all of it is fine: nothing is left to hash after the sections. */
	put32(buf + OPT + OPT_CERT_DIR + 4, 40);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why), 32);
	pe_free(&pe);

	/* The Certificate Table entry lies past a short optional header (144 bytes:
	 * NumberOfRvaAndSizes says 16 but only four directories fit); the section table
	 * follows it. */
	len = layout(buf, sizeof(buf), &end);
	put16(buf + COFF + 16, 144);
	memmove(buf + OPT + 144, buf + TABLE, 3 * 40);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why), -EBADMSG);
	CHECK_CONTAINS(why, "past the optional header");
	pe_free(&pe);

	len = layout(buf, sizeof(buf), &end);
	parse(buf, len, &pe);
	CHECK_INT(pe_authenticode(&pe, 0x0012 /* SM3 */, out, &why), -EOPNOTSUPP);
	pe_free(&pe);
}

/* Every prefix of the image, and every header field set to extremes, either hashes or is
 * refused; ASan watches each read (each copy is exactly its length). */
TEST(authenticode_survives_truncation_and_bad_fields)
{
	uint8_t buf[2048], out[DIGEST_MAX];
	size_t end, len = layout(buf, sizeof(buf), &end), off;
	static const uint32_t values[] = {0, 1, 0x7fffffff, 0xffffffff};
	const size_t fields[] = {OPT + OPT_SIZE_OF_HEADERS, OPT + OPT_N_RVA,
				 OPT + OPT_CERT_DIR, OPT + OPT_CERT_DIR + 4};
	const char *why;
	struct pe_file pe;

	for (size_t n = 0; n <= len; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		int r;

		CHECK(copy);
		memcpy(copy, buf, n);
		if (pe_parse(copy, n, &pe, &off, &why) == 0) {
			r = pe_authenticode(&pe, DIGEST_ALG_SHA384, out, &why);
			CHECK(r == 48 || r == -EBADMSG);
		}
		pe_free(&pe);
		free(copy);
	}
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
		for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
			uint8_t *copy = malloc(len);
			int r;

			CHECK(copy);
			memcpy(copy, buf, len);
			put32(copy + fields[f], values[v]);
			CHECK_INT(pe_parse(copy, len, &pe, &off, &why), 0);
			r = pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why);
			CHECK(r == 32 || r == -EBADMSG);
			pe_free(&pe);
			free(copy);
		}
}

/* --- against osslsigncode -------------------------------------------------------- */

static char dir[] = "/tmp/cvm-authenticode-XXXXXX";

static void need_osslsigncode(void)
{
	if (system("command -v osslsigncode >/dev/null") != 0)
		SKIP("osslsigncode is not installed (apt-get install osslsigncode)");
	if (!mkdtemp(dir))
		FAIL_AT("mkdtemp: %s", strerror(errno));
}

static void cleanup(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

static uint8_t *read_all(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf;

	if (fd < 0)
		return NULL;
	CHECK(fstat(fd, &st) == 0);
	buf = malloc((size_t)st.st_size + 1);
	CHECK(buf);
	CHECK(read(fd, buf, (size_t)st.st_size) == st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void write_all(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "w");

	CHECK(f);
	CHECK(fwrite(buf, 1, len, f) == len);
	CHECK(fclose(f) == 0);
}

/* osslsigncode signs path in bank (it hashes the image as Authenticode defines), then
 * verifies the copy and prints the hash it calculates: that is want. The signed copy
 * must hash the same with ours (its certificate table is left out). */
static void check_against_osslsigncode(const char *path, const char *bank)
{
	char cmd[2048], line[512], signed_path[300], want[2 * DIGEST_MAX + 1],
		got[2 * DIGEST_MAX + 1];
	uint16_t alg = (uint16_t)digest_alg_from_name(bank);
	uint8_t *buf, d[DIGEST_MAX];
	size_t len;
	char *p;
	int k = digest_size(alg);

	snprintf(signed_path, sizeof(signed_path), "%s/signed.efi", dir);
	snprintf(cmd, sizeof(cmd),
		 "rm -f %s && osslsigncode sign -h %s -certs %s -key %s -in %s -out %s "
		 ">/dev/null && "
		 "osslsigncode verify -in %s 2>&1 | grep -m1 'Calculated message digest'",
		 signed_path, bank, TEST_CRT, TEST_KEY, path, signed_path, signed_path);
	if (run_capture(cmd, line, sizeof(line)) != 0)
		FAIL_AT("%s: no digest from osslsigncode (%s)", path, cmd);
	p = strchr(line, ':');
	CHECK(p);
	for (p++; *p == ' '; p++)
		;
	CHECK((int)strspn(p, "0123456789ABCDEFabcdef") == 2 * k);
	for (int i = 0; i < 2 * k; i++)
		want[i] = (char)(p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 'a' : p[i]);
	want[2 * k] = '\0';

	buf = read_all(path, &len);
	CHECK(buf);
	/* osslsigncode pads the file to 8 bytes before it hashes: keep that out of it. */
	CHECK(len % 8 == 0);
	hash_of(buf, len, alg, d);
	hex_encode(d, (size_t)k, got);
	if (strcmp(got, want) != 0)
		FAIL_AT("%s %s: ours %s, osslsigncode %s", path, bank, got, want);
	free(buf);

	buf = read_all(signed_path, &len);
	CHECK(buf);
	hash_of(buf, len, alg, d);
	hex_encode(d, (size_t)k, got);
	if (strcmp(got, want) != 0)
		FAIL_AT("%s signed, %s: ours %s, osslsigncode %s", path, bank, got, want);
	free(buf);
}

TEST(authenticode_matches_osslsigncode)
{
	static const char *const banks[] = {"sha256", "sha384"};
	uint8_t buf[2048];
	size_t end, len;
	char path[300];

	need_osslsigncode();
	snprintf(path, sizeof(path), "%s/image.efi", dir);
	/* Sections in table order, nothing after them. */
	len = build_pe(buf, sizeof(buf), three, 3);
	write_all(path, buf, len);
	for (size_t b = 0; b < 2; b++)
		check_against_osslsigncode(path, banks[b]);
	/* Listed out of file order, with data after them (no certificate table: the
	 * signer adds its own). */
	len = layout(buf, sizeof(buf), &end) - 16;
	put32(buf + OPT + OPT_CERT_DIR, 0);
	put32(buf + OPT + OPT_CERT_DIR + 4, 0);
	write_all(path, buf, len);
	for (size_t b = 0; b < 2; b++)
		check_against_osslsigncode(path, banks[b]);
	cleanup();
}

/* The image's UKI and the kernel in its .linux as the stub hands it to LoadImage (the
 * section's VirtualSize bytes; Debian's kernel carries its own signature). */
TEST(authenticode_real_uki_matches_osslsigncode)
{
	static const char *const banks[] = {"sha256", "sha384"};
	uint8_t *buf;
	size_t len, n;
	struct pe_file pe;
	const struct pe_section *s;
	const uint8_t *d;
	const char *uki = UKI_PATH;
	char path[300];

	if (access(uki, R_OK) != 0)
		uki = TEST_UKI_PATH;
	if (access(uki, R_OK) != 0)
		SKIP("neither %s nor %s is built (make image)", UKI_PATH, TEST_UKI_PATH);
	need_osslsigncode();
	for (size_t b = 0; b < 2; b++)
		check_against_osslsigncode(uki, banks[b]);

	buf = read_all(uki, &len);
	CHECK(buf);
	parse(buf, len, &pe);
	s = pe_find(&pe, ".linux");
	CHECK(s);
	d = pe_section_file_data(&pe, s, &n);
	CHECK_INT(n, s->virtual_size);
	snprintf(path, sizeof(path), "%s/linux.efi", dir);
	write_all(path, d, n);
	for (size_t b = 0; b < 2; b++)
		check_against_osslsigncode(path, banks[b]);
	pe_free(&pe);
	free(buf);
	cleanup();
}
