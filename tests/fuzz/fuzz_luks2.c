/* luks2_inspect(), the LUKS2 header check PID 1 runs on the state partition's first 32 KiB
 * (init/state.c), then luks2_materialize() and luks2_identity() on what it accepts. */
#include <errno.h>

#include "../../init/luks.h"
#include "fuzz.h"

#define OFF_CSUM 448 /* LUKS2 on-disk format: the checksum field of each binary header */

/* The checksums hide everything behind them from a fuzzer. An input one byte longer than
 * the area says in its last byte which copies get a correct checksum (bit 0 primary,
 * bit 1 secondary) before the check runs; the seeds are real headers plus that byte. */
static void fix_checksum(uint8_t *copy)
{
	uint8_t sum[32];

	luks2_checksum(copy, sum);
	memcpy(copy + OFF_CSUM, sum, sizeof(sum));
	memset(copy + OFF_CSUM + sizeof(sum), 0, 64 - sizeof(sum));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *area = calloc(1, LUKS2_AREA_SIZE), *out, *again_area;
	struct luks2_hdr h, again;
	char err[300], id[256];
	int r;

	if (!area)
		abort();
	memcpy(area, data, size < LUKS2_AREA_SIZE ? size : LUKS2_AREA_SIZE);
	if (size > LUKS2_AREA_SIZE) {
		if (data[LUKS2_AREA_SIZE] & 1)
			fix_checksum(area);
		if (data[LUKS2_AREA_SIZE] & 2)
			fix_checksum(area + LUKS2_HDR_SIZE);
	}
	r = luks2_inspect(area, LUKS2_AREA_SIZE, &h, err, sizeof(err));
	FUZZ_ASSERT(r == 0 || r == 1 || r == -EBADMSG || r == -EPROTONOSUPPORT);
	FUZZ_ASSERT(r >= 0 || err[0]);
	if (r == 1) {
		FUZZ_ASSERT(luks2_identity(&h, id, sizeof(id)) > 0);
		/* What libcryptsetup is given must pass the same check with the same result. */
		out = malloc(LUKS2_AREA_SIZE);
		if (!out)
			abort();
		luks2_materialize(area, &h, out);
		again_area = out;
		r = luks2_inspect(again_area, LUKS2_AREA_SIZE, &again, err, sizeof(err));
		FUZZ_ASSERT(r == 1);
		FUZZ_ASSERT(strcmp(again.uuid, h.uuid) == 0);
		FUZZ_ASSERT(strcmp(again.cipher, h.cipher) == 0);
		FUZZ_ASSERT(again.key_bits == h.key_bits);
		FUZZ_ASSERT(again.volume_key_size == h.volume_key_size);
		FUZZ_ASSERT(again.sector_size == h.sector_size);
		FUZZ_ASSERT(strcmp(again.integrity, h.integrity) == 0);
		FUZZ_ASSERT(again.data_offset == h.data_offset);
		FUZZ_ASSERT(again.token.pcr_mask == h.token.pcr_mask);
		FUZZ_ASSERT(again.token.blob_len == h.token.blob_len);
		FUZZ_ASSERT(memcmp(again.token.blob, h.token.blob, h.token.blob_len) ==
			    0);
		free(out);
	}
	free(area);
	return 0;
}
