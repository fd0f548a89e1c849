/* cpio_find(), the newc reader cvm-measure predict takes the measured config out of the
 * UKI's .initrd with (PREDICT_CONFIG_PATH), and a second path to reach other names. */
#include <errno.h>

#include "../../measured-boot/cpio.h"
#include "../../measured-boot/predict.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

static void find(const uint8_t *buf, size_t size, const char *path)
{
	struct cpio_file f;
	const char *why = NULL;
	size_t bad = 0;
	int r;

	r = cpio_find(buf, size, path, &f, &bad, &why);
	FUZZ_ASSERT(r == 0 || r == 1 || r == -EBADMSG || r == -EOPNOTSUPP);
	if (r < 0)
		FUZZ_ASSERT(why && bad <= size);
	if (r == 1) {
		FUZZ_ASSERT(f.data >= buf && f.size <= size &&
			    f.data + f.size <= buf + size);
		FUZZ_ASSERT(f.offset < size && f.archive >= 1);
		if (f.size)
			FUZZ_ASSERT((volatile uint8_t)f.data[f.size - 1] ==
				    f.data[f.size - 1]);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		abort();
	memcpy(buf, data, size);
	find(buf, size, PREDICT_CONFIG_PATH);
	find(buf, size, "/etc/cvminit/reference");
	free(buf);
	return 0;
}
