/* A bounds-checked PE/COFF reader for unified kernel images: the section table, each
 * section's bytes as the firmware's loader places them in memory, and the Authenticode
 * image hash the firmware measures an EFI application by. */
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
	uint16_t magic;	   /* optional header magic: 0x20b (PE32+) */
	size_t opt_offset; /* where the optional header starts */
	uint16_t opt_size; /* SizeOfOptionalHeader */
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

/* A byte range of the file. */
struct pe_range {
	size_t offset;
	size_t len;
};

/*
 * The ranges of the file the Authenticode image hash covers, in hash order (Microsoft
 * "Windows Authenticode Portable Executable Signature Format", "Calculating the PE Image
 * Hash"; EDK2 measures images into PCR 4 by the same rule):
 *   the headers up to SizeOfHeaders, without the optional header's CheckSum field and
 *   without the Certificate Table entry of the data directories (when
 *   NumberOfRvaAndSizes reaches it);
 *   each section's SizeOfRawData bytes from PointerToRawData, in ascending order of
 *   PointerToRawData (table order among equals), sections with no raw data skipped;
 *   the rest of the file after SizeOfHeaders plus the sections' sizes, less the
 *   certificate table's Size (the signatures, which sit at the end of a signed file).
 * Empty ranges are left out. Sets *ret (malloc'd) and *n; returns 0; -EBADMSG with *why
 * (a static sentence) when the headers do not allow the hash (SizeOfHeaders past the end
 * of the file or inside the fields it must cover, a Certificate Table entry outside the
 * optional header, a certificate table larger than what follows the sections); -ENOMEM.
 */
int pe_authenticode_ranges(const struct pe_file *pe, struct pe_range **ret, size_t *n,
			   const char **why);

/* The Authenticode image hash of pe in bank alg (DIGEST_ALG_*) into out: the digest of
 * pe_authenticode_ranges() in order. Returns the digest size; -EBADMSG with *why as
 * above; -EOPNOTSUPP for an unknown alg; -ENOMEM; -EIO. */
int pe_authenticode(const struct pe_file *pe, uint16_t alg, uint8_t *out,
		    const char **why);
