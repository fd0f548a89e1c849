/* platform_blob_check(), the reader of what the platform offers as a marshalled
 * TPMT_PUBLIC: the SVSM vTPM manifest from configfs-tsm (platform_read) and the TPM's EK
 * public; then platform_decide() over facts holding that blob. */
#include <errno.h>

#include "../../measured-boot/platform.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct platform_facts *f = calloc(1, sizeof(*f));
	struct platform_decision *d = calloc(1, sizeof(*d));
	uint8_t *buf = malloc(size ? size : 1);
	enum platform_blob b;
	size_t half;

	if (!f || !d || !buf)
		abort();
	memcpy(buf, data, size);
	b = platform_blob_check(buf, size);
	FUZZ_ASSERT(b == PLATFORM_BLOB_OK || b == PLATFORM_BLOB_MALFORMED ||
		    b == PLATFORM_BLOB_ABSENT);
	if (b == PLATFORM_BLOB_OK)
		FUZZ_ASSERT(size <= PLATFORM_BLOB_MAX);

	/* An SVSM node with a TPM: the manifest is the input, the EK the input's first half
	 * or the whole (equal blobs are the matching case). */
	f->n_tpms = 1;
	f->tpm_index = 0;
	f->snp = true;
	f->svsm = true;
	snprintf(f->tsm_provider, sizeof(f->tsm_provider), "sev_guest");
	if (size <= PLATFORM_BLOB_MAX) {
		f->manifest = b;
		f->manifest_len = size;
		memcpy(f->manifest_buf, buf, size);
		half = size & 1 ? size : size / 2;
		f->ek = platform_blob_check(buf, half);
		f->ek_len = half;
		memcpy(f->ek_buf, buf, half);
		f->ek_possessed = size & 2;
	} else {
		f->manifest = PLATFORM_BLOB_MALFORMED;
	}
	(void)platform_needs_ek(f);
	platform_decide(f, false, d);
	FUZZ_ASSERT(memchr(d->found, 0, sizeof(d->found)) &&
		    memchr(d->reason, 0, sizeof(d->reason)));
	platform_decide(f, true, d);
	FUZZ_ASSERT(memchr(d->reason, 0, sizeof(d->reason)));
	free(buf);
	free(d);
	free(f);
	return 0;
}
