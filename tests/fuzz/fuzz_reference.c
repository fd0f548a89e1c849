/* reference_parse(), the reader of the initrd's /etc/cvminit/reference (init/main.c
 * reference_load: at most REFERENCE_SIZE_MAX bytes). */
#include <errno.h>

#include "../../init/reference.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size, REFERENCE_SIZE_MAX), err[REFERENCE_ERR_MAX];
	struct reference *r = calloc(1, sizeof(*r));
	int k;

	if (!r)
		abort();
	k = reference_parse(r, text, err, sizeof(err));
	FUZZ_ASSERT(k == 0 || (k == -EINVAL && err[0]));
	if (k == 0) {
		FUZZ_ASSERT(memchr(r->cmdline, 0, sizeof(r->cmdline)));
		FUZZ_ASSERT(memchr(r->root, 0, sizeof(r->root)));
		FUZZ_ASSERT(!r->config_absent || r->has_config);
		if (r->has_cmdline)
			FUZZ_ASSERT(reference_first_difference(r->cmdline, r->cmdline) ==
				    -1);
	}
	free(r);
	free(text);
	return 0;
}
