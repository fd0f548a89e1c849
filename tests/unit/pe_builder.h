/* Builds minimal PE32+ images in memory for the PE reader, Authenticode and PCR 4/11
 * prediction tests: DOS header, "PE\0\0", COFF header, optional header, section table,
 * raw data. */
#pragma once

#include <stdint.h>
#include <string.h>

struct sec {
	const char *name;
	uint32_t vs, rs;
	const char *data; /* data_len bytes, then 0xAA up to rs */
	size_t data_len;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

enum { PE_OFF = 0x40, COFF = 0x44, OPT = 0x58, OPT_SIZE = 240, TABLE = OPT + OPT_SIZE };

/* Optional header fields (PE32+). */
enum {
	OPT_SECTION_ALIGN = 32,
	OPT_FILE_ALIGN = 36,
	OPT_SIZE_OF_IMAGE = 56,
	OPT_SIZE_OF_HEADERS = 60,
	OPT_CHECKSUM = 64,
	OPT_SUBSYSTEM = 68,
	OPT_N_RVA = 108,
	OPT_CERT_DIR = 112 + 4 * 8,
};

/* A minimal PE32+ image: DOS header, "PE\0\0", COFF header, a 240-byte optional header
 * with 16 data directories (all empty), SizeOfHeaders the end of the section table
 * rounded up to 16, then each section's raw data in order. Returns its length. */
static size_t build_pe(uint8_t *buf, size_t cap, const struct sec *s, size_t n)
{
	size_t raw = (TABLE + 40 * n + 15) & ~(size_t)15;

	memset(buf, 0, cap);
	buf[0] = 'M';
	buf[1] = 'Z';
	put32(buf + 0x3c, PE_OFF);
	memcpy(buf + PE_OFF, "PE\0\0", 4);
	put16(buf + COFF, 0x8664);
	put16(buf + COFF + 2, (uint16_t)n);
	put16(buf + COFF + 16, OPT_SIZE);
	put16(buf + OPT, 0x20b);
	put32(buf + OPT + OPT_SECTION_ALIGN, 0x1000);
	put32(buf + OPT + OPT_FILE_ALIGN, 16);
	put32(buf + OPT + OPT_SIZE_OF_IMAGE, (uint32_t)(0x1000 * (n + 1)));
	put32(buf + OPT + OPT_SIZE_OF_HEADERS, (uint32_t)raw);
	put16(buf + OPT + OPT_SUBSYSTEM, 10); /* EFI application */
	put32(buf + OPT + OPT_N_RVA, 16);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = buf + TABLE + 40 * i;

		memcpy(e, s[i].name, strlen(s[i].name));
		put32(e + 8, s[i].vs);
		put32(e + 12, (uint32_t)(0x1000 * (i + 1)));
		put32(e + 16, s[i].rs);
		put32(e + 20, (uint32_t)raw);
		if (raw + s[i].rs > cap)
			FAIL_AT("build_pe: buffer too small");
		memset(buf + raw, 0xaa, s[i].rs);
		memcpy(buf + raw, s[i].data, s[i].data_len);
		raw += s[i].rs;
	}
	return raw;
}

/* A kernel for test UKIs' .linux: a PE32+ image with one .text section, since the stub
 * starts the kernel as a PE image and PCR 4's prediction hashes it as one. Built before
 * the tests run, KERNEL_PE_LEN bytes. */
#define KERNEL_PE_LEN 384
static uint8_t kernel_pe[KERNEL_PE_LEN];

__attribute__((constructor)) static void build_kernel_pe(void)
{
	static const struct sec text[] = {{".text", 4, 16, "\x90\x90\x90\xc3", 4}};

	if (build_pe(kernel_pe, sizeof(kernel_pe), text, 1) != KERNEL_PE_LEN)
		FAIL_AT("build_kernel_pe: not %d bytes", KERNEL_PE_LEN);
}
