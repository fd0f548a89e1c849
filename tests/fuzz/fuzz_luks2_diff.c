/* Differential: every header luks2_inspect() accepts, materialized as PID 1 hands it to
 * libcryptsetup (init/state.c), must load with crypt_load() and show the parameters our
 * check read: cipher, volume key size, sector size, data offset, UUID. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libcryptsetup.h>

#include "../../init/luks.h"
#include "fuzz.h"

#define OFF_CSUM 448 /* as in fuzz_luks2.c */

static int fd = -1;
static char path[64];

static void fix_checksum(uint8_t *copy)
{
	uint8_t sum[32];

	luks2_checksum(copy, sum);
	memcpy(copy + OFF_CSUM, sum, sizeof(sum));
	memset(copy + OFF_CSUM + sizeof(sum), 0, 64 - sizeof(sum));
}

/* Quiet unless FUZZ_VERBOSE is set (when reproducing a disagreement). */
static void quiet_cryptsetup(int level, const char *msg, void *data)
{
	(void)level, (void)data;
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "libcryptsetup: %s", msg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	crypt_set_log_callback(NULL, quiet_cryptsetup, NULL);
	if (getenv("FUZZ_VERBOSE"))
		crypt_set_debug_level(CRYPT_DEBUG_ALL);
	crypt_metadata_locking(NULL, 0); /* as PID 1: no /run/cryptsetup */
	/* A memory file stands for PID 1's header copy in /run (a tmpfs there too). */
	fd = memfd_create("luks2-copy", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *area = calloc(1, LUKS2_AREA_SIZE), *copy = malloc(LUKS2_AREA_SIZE);
	struct crypt_device *cd = NULL;
	struct luks2_hdr h;
	char err[300];
	int r;

	if (!area || !copy)
		abort();
	memcpy(area, data, size < LUKS2_AREA_SIZE ? size : LUKS2_AREA_SIZE);
	if (size > LUKS2_AREA_SIZE) {
		if (data[LUKS2_AREA_SIZE] & 1)
			fix_checksum(area);
		if (data[LUKS2_AREA_SIZE] & 2)
			fix_checksum(area + LUKS2_HDR_SIZE);
	}
	if (luks2_inspect(area, LUKS2_AREA_SIZE, &h, err, sizeof(err)) != 1)
		goto out;
	luks2_materialize(area, &h, copy);
	/* As init/state.c header_file(): sparse up to the data offset, where libcryptsetup
	 * expects the keyslots area to end. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)LUKS2_DATA_OFFSET) < 0 ||
	    pwrite(fd, copy, LUKS2_AREA_SIZE, 0) != LUKS2_AREA_SIZE)
		abort();
	r = crypt_init(&cd, path);
	FUZZ_ASSERT(r == 0);
	r = crypt_load(cd, CRYPT_LUKS2, NULL);
	if (r < 0)
		fprintf(stderr, "crypt_load refused what luks2_inspect accepted: %d\n",
			r);
	FUZZ_ASSERT(r == 0);
	FUZZ_ASSERT(strcmp(crypt_get_type(cd), CRYPT_LUKS2) == 0);
	FUZZ_ASSERT(strcmp(crypt_get_cipher(cd), "aes") == 0);
	FUZZ_ASSERT(strcmp(crypt_get_cipher_mode(cd), "xts-plain64") == 0);
	FUZZ_ASSERT(strcmp(h.cipher, LUKS2_CIPHER) == 0);
	FUZZ_ASSERT(crypt_get_volume_key_size(cd) == (int)h.volume_key_size);
	FUZZ_ASSERT(crypt_get_sector_size(cd) == (int)h.sector_size);
	FUZZ_ASSERT(crypt_get_data_offset(cd) * 512 == h.data_offset);
	FUZZ_ASSERT(crypt_get_uuid(cd) && strcmp(crypt_get_uuid(cd), h.uuid) == 0);
	crypt_free(cd);
out:
	free(copy);
	free(area);
	return 0;
}
