/* Builds minimal PE32+ images in memory for the PE reader and PCR 11 prediction tests:
 * DOS header, "PE\0\0", COFF header, optional header, section table, raw data. */
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

/* A minimal PE32+ image: DOS header, "PE\0\0", COFF header, a 240-byte optional header,
 * the section table, then each section's raw data in order. Returns its length. */
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
