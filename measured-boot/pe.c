/* PE/COFF section table reader (Microsoft PE format: DOS stub, COFF file header, optional
 * header, section table) and the Authenticode image hash. Reads little-endian fields by
 * byte so any buffer alignment works. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/util.h"
#include "../lib/digest.h"
#include "pe.h"

#define DOS_HEADER_SIZE	   0x40
#define DOS_LFANEW	   0x3c
#define COFF_HEADER_SIZE   20
#define SECTION_ENTRY_SIZE 40
#define PE32PLUS_MAGIC	   0x20b
/* The PE32+ optional header up to and including NumberOfRvaAndSizes. */
#define PE32PLUS_MIN_SIZE 112
/* Fields of the PE32+ optional header the Authenticode hash needs, by offset. */
#define OPT_SIZE_OF_HEADERS 60
#define OPT_CHECKSUM	    64
#define OPT_N_RVA	    108
#define OPT_DATA_DIRS	    112
#define DATA_DIR_SIZE	    8
#define DIR_SECURITY	    4 /* the Certificate Table: a file offset, not an RVA */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static int bad(size_t *bad_offset, const char **why, uint64_t offset, const char *msg)
{
	*bad_offset = (size_t)offset;
	*why = msg;
	return -EBADMSG;
}

int pe_parse(const uint8_t *buf, size_t len, struct pe_file *pe, size_t *bad_offset,
	     const char **why)
{
	uint64_t pe_off, coff, opt, table, n, opt_size;

	memset(pe, 0, sizeof(*pe));
	pe->data = buf;
	pe->size = len;

	if (len < DOS_HEADER_SIZE)
		return bad(bad_offset, why, len, "file shorter than a DOS header");
	if (buf[0] != 'M' || buf[1] != 'Z')
		return bad(bad_offset, why, 0, "no MZ signature");
	pe_off = le32(buf + DOS_LFANEW);
	if (pe_off + 4 + COFF_HEADER_SIZE > len)
		return bad(bad_offset, why, DOS_LFANEW,
			   "PE header offset points past the end of the file");
	if (memcmp(buf + pe_off, "PE\0\0", 4) != 0)
		return bad(bad_offset, why, pe_off, "no PE signature");

	coff = pe_off + 4;
	pe->machine = le16(buf + coff);
	n = le16(buf + coff + 2);
	opt_size = le16(buf + coff + 16);
	opt = coff + COFF_HEADER_SIZE;
	if (opt_size < PE32PLUS_MIN_SIZE)
		return bad(bad_offset, why, coff + 16,
			   "optional header too small for PE32+");
	if (opt + opt_size > len)
		return bad(bad_offset, why, opt,
			   "optional header runs past the end of the file");
	pe->magic = le16(buf + opt);
	pe->opt_offset = (size_t)opt;
	pe->opt_size = (uint16_t)opt_size;
	if (pe->magic != PE32PLUS_MAGIC)
		return bad(bad_offset, why, opt,
			   "optional header is not PE32+ (magic 0x20b)");
	if (n == 0)
		return bad(bad_offset, why, coff + 2, "no sections");

	table = opt + opt_size;
	if (table + n * SECTION_ENTRY_SIZE > len)
		return bad(bad_offset, why, table,
			   "section table runs past the end of the file");

	pe->sections = calloc((size_t)n, sizeof(*pe->sections));
	if (!pe->sections)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t h = table + i * SECTION_ENTRY_SIZE;
		const uint8_t *e = buf + h;
		struct pe_section *s = &pe->sections[i];

		memcpy(s->raw_name, e, PE_NAME_LEN);
		memcpy(s->name, e, PE_NAME_LEN);
		s->name[PE_NAME_LEN] = '\0';
		s->virtual_size = le32(e + 8);
		s->virtual_address = le32(e + 12);
		s->raw_size = le32(e + 16);
		s->raw_offset = le32(e + 20);
		s->header_offset = (size_t)h;
		pe->n_sections = (size_t)i + 1;

		if ((uint64_t)s->virtual_address + s->virtual_size > UINT32_MAX)
			return bad(bad_offset, why, h + 8,
				   "section extends past the 4 GiB address space of the "
				   "image");
		if (s->raw_size > 0 && (uint64_t)s->raw_offset + s->raw_size > len)
			return bad(bad_offset, why, h + 20,
				   "section raw data runs past the end of the file");
	}
	return 0;
}

void pe_free(struct pe_file *pe)
{
	free(pe->sections);
	pe->sections = NULL;
	pe->n_sections = 0;
}

const struct pe_section *pe_find(const struct pe_file *pe, const char *name)
{
	uint8_t want[PE_NAME_LEN] = {0};
	size_t n = strlen(name);

	if (n > PE_NAME_LEN)
		return NULL;
	memcpy(want, name, n);
	for (size_t i = 0; i < pe->n_sections; i++)
		if (memcmp(pe->sections[i].raw_name, want, PE_NAME_LEN) == 0)
			return &pe->sections[i];
	return NULL;
}

const uint8_t *pe_section_file_data(const struct pe_file *pe, const struct pe_section *s,
				    size_t *len)
{
	*len = s->raw_size < s->virtual_size ? s->raw_size : s->virtual_size;
	if (*len == 0)
		return pe->data;
	return pe->data + s->raw_offset;
}

/* Appends [offset, offset + len) unless it is empty; the caller sized *r. */
static void add_range(struct pe_range *r, size_t *n, uint64_t offset, uint64_t len)
{
	if (len == 0)
		return;
	r[*n] = (struct pe_range){.offset = (size_t)offset, .len = (size_t)len};
	(*n)++;
}

int pe_authenticode_ranges(const struct pe_file *pe, struct pe_range **ret, size_t *n,
			   const char **why)
{
	const uint8_t *b = pe->data;
	const uint64_t opt = pe->opt_offset, checksum = opt + OPT_CHECKSUM;
	uint64_t headers, n_rva, cert_entry = 0, cert_size = 0, hashed;
	_cleanup_free_ size_t *order = NULL;
	struct pe_range *r;

	*why = NULL;
	*ret = NULL;
	*n = 0;
	headers = le32(b + opt + OPT_SIZE_OF_HEADERS);
	n_rva = le32(b + opt + OPT_N_RVA);
	if (headers > pe->size) {
		*why = "SizeOfHeaders is past the end of the file";
		return -EBADMSG;
	}
	if (n_rva > DIR_SECURITY) {
		cert_entry = opt + OPT_DATA_DIRS + DIR_SECURITY * DATA_DIR_SIZE;
		if (cert_entry + DATA_DIR_SIZE > opt + pe->opt_size) {
			*why = "the Certificate Table entry lies past the optional "
			       "header";
			return -EBADMSG;
		}
		if (headers < cert_entry + DATA_DIR_SIZE) {
			*why = "SizeOfHeaders ends inside the data directories";
			return -EBADMSG;
		}
		cert_size = le32(b + cert_entry + 4);
	} else if (headers < checksum + 4) {
		*why = "SizeOfHeaders ends inside the optional header";
		return -EBADMSG;
	}

	/* Headers (up to three ranges), the sections, the rest of the file. */
	r = calloc(pe->n_sections + 4, sizeof(*r));
	order = calloc(pe->n_sections + 1, sizeof(*order));
	if (!r || !order) {
		free(r);
		return -ENOMEM;
	}
	add_range(r, n, 0, checksum);
	if (cert_entry) {
		add_range(r, n, checksum + 4, cert_entry - (checksum + 4));
		add_range(r, n, cert_entry + DATA_DIR_SIZE,
			  headers - (cert_entry + DATA_DIR_SIZE));
	} else {
		add_range(r, n, checksum + 4, headers - (checksum + 4));
	}

	/* A stable insertion sort by PointerToRawData, as the hash is defined over file
	 * order and a table may list sections in any order. */
	for (size_t i = 0; i < pe->n_sections; i++) {
		size_t j = i;

		while (j > 0 && pe->sections[order[j - 1]].raw_offset >
					pe->sections[i].raw_offset) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	hashed = headers;
	for (size_t i = 0; i < pe->n_sections; i++) {
		const struct pe_section *s = &pe->sections[order[i]];

		/* pe_parse() checked raw data with a size lies inside the file. */
		add_range(r, n, s->raw_offset, s->raw_size);
		hashed += s->raw_size;
	}
	if (pe->size > hashed) {
		if (pe->size - hashed < cert_size) {
			free(r);
			*n = 0;
			*why = "the certificate table is larger than the data after the "
			       "sections";
			return -EBADMSG;
		}
		add_range(r, n, hashed, pe->size - hashed - cert_size);
	}
	*ret = r;
	return 0;
}

int pe_authenticode(const struct pe_file *pe, uint16_t alg, uint8_t *out,
		    const char **why)
{
	_cleanup_free_ struct pe_range *ranges = NULL;
	_cleanup_(digest_ctx_free) struct digest_ctx ctx = {0};
	size_t n;
	int r;

	*why = NULL;
	if (digest_size(alg) < 0)
		return -EOPNOTSUPP;
	r = pe_authenticode_ranges(pe, &ranges, &n, why);
	if (r < 0)
		return r;
	r = digest_begin(&ctx, alg);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = digest_update(&ctx, pe->data + ranges[i].offset, ranges[i].len);
	return r < 0 ? r : digest_end(&ctx, out);
}
