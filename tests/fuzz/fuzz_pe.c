/* pe_parse() and the Authenticode image hash (cvm-measure predict reads the UKI and the
 * kernel inside it with them), with pe_find() and the section data of what parses. */
#include <errno.h>

#include "../../lib/digest.h"
#include "../../measured-boot/pe.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {".linux", ".initrd", ".cmdline",
					    ".osrel", ".uname",	 ".sbat",
					    ".text",  "",	 ".toolongname"};
	uint8_t *buf = malloc(size ? size : 1), out[DIGEST_MAX];
	struct pe_file pe = {0};
	struct pe_range *ranges = NULL;
	const char *why = NULL;
	size_t bad = 0, n = 0;
	int r;

	if (!buf)
		abort();
	memcpy(buf, data, size);
	r = pe_parse(buf, size, &pe, &bad, &why);
	FUZZ_ASSERT(r == 0 || r == -EBADMSG || r == -ENOMEM);
	if (r == -EBADMSG)
		FUZZ_ASSERT(why && bad <= size);
	if (r == 0) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			const struct pe_section *s = pe_find(&pe, names[i]);
			size_t len = 0;
			const uint8_t *p;

			if (!s)
				continue;
			p = pe_section_file_data(&pe, s, &len);
			FUZZ_ASSERT(len == 0 || (p >= buf && p + len <= buf + size));
			if (len)
				FUZZ_ASSERT((volatile uint8_t)p[len - 1] == p[len - 1]);
		}
		r = pe_authenticode_ranges(&pe, &ranges, &n, &why);
		FUZZ_ASSERT(r == 0 || (r == -EBADMSG && why) || r == -ENOMEM);
		if (r == 0) {
			for (size_t i = 0; i < n; i++) {
				FUZZ_ASSERT(ranges[i].len > 0);
				FUZZ_ASSERT(ranges[i].offset <= size &&
					    ranges[i].len <= size - ranges[i].offset);
			}
			r = pe_authenticode(&pe, DIGEST_ALG_SHA256, out, &why);
			FUZZ_ASSERT(r == 32);
		}
		free(ranges);
	}
	pe_free(&pe);
	free(buf);
	return 0;
}
