/* A bounds-checked PE/COFF reader for unified kernel images: the section table and each
 * section's bytes as the firmware's loader places them in memory. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define PE_NAME_LEN 8

struct pe_section {
	uint8_t raw_name[PE_NAME_LEN]; /* as in the file: NUL-padded, not terminated */
	char name[PE_NAME_LEN + 1];    /* the same, NUL-terminated */
	uint32_t virtual_size;
	uint32_t virtual_address;
	uint32_t raw_size;    /* SizeOfRawData */
	uint32_t raw_offset;  /* PointerToRawData */
	size_t header_offset; /* where this entry of the section table is in the file */
};

struct pe_file {
	const uint8_t *data; /* not owned */
	size_t size;
	uint16_t machine;
	uint16_t magic; /* optional header magic: 0x20b (PE32+) */
	size_t n_sections;
	struct pe_section *sections;
};

/* Parses DOS header → "PE\0\0" → COFF header → PE32+ optional header → section table.
 * Every field is checked against len before it is read, and every section's raw data
 * must lie inside the file. Returns 0; -EBADMSG for a malformed file, with *bad_offset at
 * the offending field and *why saying what is wrong (a static string); -ENOMEM. Free
 * with pe_free() in any case; pe->data points into buf, which must outlive pe. */
int pe_parse(const uint8_t *buf, size_t len, struct pe_file *pe, size_t *bad_offset,
	     const char **why);
void pe_free(struct pe_file *pe);

/* The first section whose 8-byte name equals name NUL-padded (as a loader compares them);
 * NULL when there is none or name is longer than 8 bytes. */
const struct pe_section *pe_find(const struct pe_file *pe, const char *name);

/* The bytes of s that come from the file: min(VirtualSize, SizeOfRawData) from
 * PointerToRawData (pe_parse checked they are inside the file). In memory the loader
 * zero-fills the rest of VirtualSize. */
const uint8_t *pe_section_file_data(const struct pe_file *pe, const struct pe_section *s,
				    size_t *len);
