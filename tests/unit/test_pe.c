/* The PE/COFF reader: hand-made images (valid and malformed: every truncation, tables
 * and data past the end, overflowing offsets) and the real UKI when it has been built. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../measured-boot/pe.h"
#include "harness.h"

#define UKI_PATH "build/image/cvminit.efi"

#include "pe_builder.h"

static const struct sec two[] = {
	{".text", 4, 16, "\x90\x90\x90\xc3", 4},
	{".cmdline", 13, 16, "console=ttyS0", 13},
};

TEST(pe_valid_image)
{
	uint8_t buf[1024];
	size_t len = build_pe(buf, sizeof(buf), two, 2), off = 0, n;
	const char *why = NULL;
	struct pe_file pe;
	const struct pe_section *s;
	const uint8_t *d;

	CHECK_INT(pe_parse(buf, len, &pe, &off, &why), 0);
	CHECK_INT(pe.n_sections, 2);
	CHECK_INT(pe.machine, 0x8664);
	CHECK_INT(pe.magic, 0x20b);
	CHECK_STR(pe.sections[0].name, ".text");
	CHECK_STR(pe.sections[1].name, ".cmdline");
	CHECK(memcmp(pe.sections[1].raw_name, ".cmdline", 8) == 0);
	CHECK_INT(pe.sections[1].virtual_size, 13);
	CHECK_INT(pe.sections[1].raw_size, 16);
	CHECK_INT(pe.sections[1].raw_offset, pe.sections[0].raw_offset + 16);
	CHECK_INT(pe.sections[1].header_offset, TABLE + 40);

	s = pe_find(&pe, ".cmdline");
	CHECK(s == &pe.sections[1]);
	CHECK(pe_find(&pe, ".cmd") == NULL);	  /* names compare on all 8 bytes */
	CHECK(pe_find(&pe, ".cmdline2") == NULL); /* longer than a section name */
	d = pe_section_file_data(&pe, s, &n);
	CHECK_INT(n, 13); /* VirtualSize < SizeOfRawData: the padding is not data */
	CHECK(memcmp(d, "console=ttyS0", 13) == 0);
	pe_free(&pe);
}

static void expect_bad(const uint8_t *buf, size_t len, size_t want_off,
		       const char *want_why)
{
	struct pe_file pe;
	size_t off = SIZE_MAX;
	const char *why = NULL;

	CHECK_INT(pe_parse(buf, len, &pe, &off, &why), -EBADMSG);
	CHECK_INT(off, want_off);
	CHECK_CONTAINS(why, want_why);
	pe_free(&pe);
}

TEST(pe_malformed_headers)
{
	uint8_t buf[1024];
	size_t len = build_pe(buf, sizeof(buf), two, 2);

	expect_bad(buf, 0x20, 0x20, "shorter than a DOS header");
	/* Truncated in the COFF header: the PE offset points past the end. */
	expect_bad(buf, COFF + 10, 0x3c, "past the end");

	buf[1] = 'X';
	expect_bad(buf, len, 0, "no MZ");
	buf[1] = 'Z';

	buf[PE_OFF + 2] = 'X';
	expect_bad(buf, len, PE_OFF, "no PE signature");
	buf[PE_OFF + 2] = 0;

	put32(buf + 0x3c, 0xfffffff0); /* would wrap a 32-bit sum */
	expect_bad(buf, len, 0x3c, "past the end");
	put32(buf + 0x3c, PE_OFF);

	put16(buf + OPT, 0x10b);
	expect_bad(buf, len, OPT, "not PE32+");
	put16(buf + OPT, 0x20b);

	put16(buf + COFF + 16, 96);
	expect_bad(buf, len, COFF + 16, "too small");
	put16(buf + COFF + 16, OPT_SIZE);

	put16(buf + COFF + 2, 0);
	expect_bad(buf, len, COFF + 2, "no sections");
	put16(buf + COFF + 2, 2);
}

TEST(pe_section_table_past_eof)
{
	uint8_t buf[1024];
	size_t len = build_pe(buf, sizeof(buf), two, 2);

	/* The file ends inside the second entry. */
	expect_bad(buf, TABLE + 40 + 39, TABLE, "section table");
	/* A count no file of this size can hold. */
	put16(buf + COFF + 2, 0xffff);
	expect_bad(buf, len, TABLE, "section table");
}

TEST(pe_raw_data_past_eof)
{
	uint8_t buf[1024];
	size_t len = build_pe(buf, sizeof(buf), two, 2);

	/* The last section's data is cut by one byte. */
	expect_bad(buf, len - 1, TABLE + 40 + 20, "raw data");
	/* An offset near 4 GiB that would wrap in 32 bits. */
	put32(buf + TABLE + 20, 0xfffffff0);
	expect_bad(buf, len, TABLE + 20, "raw data");
	put32(buf + TABLE + 20, (TABLE + 80 + 15) & ~15);
	/* VirtualAddress + VirtualSize past 4 GiB. */
	put32(buf + TABLE + 12, 0xfffff000);
	put32(buf + TABLE + 8, 0x2000);
	expect_bad(buf, len, TABLE + 8, "4 GiB");
}

TEST(pe_every_truncation)
{
	uint8_t buf[1024];
	size_t len = build_pe(buf, sizeof(buf), two, 2);

	/* Each prefix is a copy of its own size, so ASan sees any read past it. */
	for (size_t n = 0; n <= len; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		struct pe_file pe;
		size_t off = SIZE_MAX;
		const char *why = NULL;
		int r;

		memcpy(copy, buf, n);
		r = pe_parse(copy, n, &pe, &off, &why);
		if (n == len)
			CHECK_INT(r, 0);
		else if (r != -EBADMSG || off > n || !why)
			FAIL_AT("prefix of %zu bytes: r=%d off=%zu", n, r, off);
		pe_free(&pe);
		free(copy);
	}
}

TEST(pe_real_uki)
{
	int fd = open(UKI_PATH, O_RDONLY | O_CLOEXEC);
	static const char *const want[] = {".linux",  ".osrel", ".cmdline",
					   ".initrd", ".uname", ".sbat"};
	struct stat st;
	uint8_t *buf;
	struct pe_file pe;
	size_t off = 0, n;
	const char *why = NULL;
	const uint8_t *d;

	if (fd < 0)
		SKIP("%s not built (make image)", UKI_PATH);
	CHECK(fstat(fd, &st) == 0);
	buf = malloc((size_t)st.st_size);
	CHECK(buf);
	CHECK(read(fd, buf, (size_t)st.st_size) == st.st_size);
	close(fd);

	if (pe_parse(buf, (size_t)st.st_size, &pe, &off, &why) != 0)
		FAIL_AT("%s: %s at %zu", UKI_PATH, why, off);
	CHECK_INT(pe.machine, 0x8664);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct pe_section *s = pe_find(&pe, want[i]);

		if (!s)
			FAIL_AT("%s has no %s section", UKI_PATH, want[i]);
		CHECK(s->virtual_size > 0);
	}
	d = pe_section_file_data(&pe, pe_find(&pe, ".osrel"), &n);
	CHECK(n > 3 && memmem(d, n, "ID=", 3));
	d = pe_section_file_data(&pe, pe_find(&pe, ".cmdline"), &n);
	CHECK(memmem(d, n, "roothash=", 9));
	/* The kernel is a PE image itself. */
	d = pe_section_file_data(&pe, pe_find(&pe, ".linux"), &n);
	CHECK(n > 2 && d[0] == 'M' && d[1] == 'Z');
	pe_free(&pe);
	free(buf);
}
