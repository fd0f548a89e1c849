/* tcglog_parse(), the reader of the firmware's binary TCG event log (cvm-measure verify
 * --firmware-log: /sys/kernel/security/tpm0/binary_bios_measurements as a node shows it). */
#include <errno.h>

#include "../../measured-boot/tcglog.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	struct eventlog log;
	const char *why = NULL;
	size_t bad = 0;
	unsigned locality = 99;
	int r;

	if (!buf)
		abort();
	memcpy(buf, data, size);
	r = tcglog_parse(buf, size, &log, &locality, &bad, &why);
	FUZZ_ASSERT(r >= 0 || r == -EBADMSG || r == -ENOMEM);
	if (r == -EBADMSG)
		FUZZ_ASSERT(why && bad <= size);
	if (r >= 0) {
		FUZZ_ASSERT((size_t)r == log.n);
		/* A StartupLocality event's byte as it is (the spec says 0 or 3; another
		 * value only makes replay disagree with the TPM), or 4 after an H-CRTM. */
		FUZZ_ASSERT(locality <= 0xff);
		for (size_t i = 0; i < log.n; i++) {
			const struct eventlog_record *rec = &log.records[i];

			FUZZ_ASSERT(rec->event && rec->event_type);
			FUZZ_ASSERT(rec->offset < size);
			FUZZ_ASSERT(rec->n_digests <= EVENTLOG_MAX_DIGESTS);
			(void)strlen(rec->event);
		}
	}
	eventlog_free(&log);
	free(buf);
	return 0;
}
