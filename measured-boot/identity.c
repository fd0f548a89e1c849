/* One implementation per measured identity, shared by PID 1 (init/root.c, init/luks.c,
 * init/measured.c), cvm-measure predict and cvm-measure refs (the image build). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../lib/cmdline.h"
#include "../lib/digest.h"
#include "../lib/hex.h"
#include "identity.h"

static void format_uuid(const char *h, char out[37])
{
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

void identity_root_uuids(const char *hash_hex, char data_uuid[37], char hash_uuid[37])
{
	format_uuid(hash_hex, data_uuid);
	format_uuid(hash_hex + 32, hash_uuid);
}

int identity_root(const char *hash_hex, char *out, size_t len)
{
	char data_uuid[37], hash_uuid[37];
	int n;

	if (!hex_is_lower(hash_hex, 64))
		return -EINVAL;
	identity_root_uuids(hash_hex, data_uuid, hash_uuid);
	n = snprintf(out, len, "verity:%s:%s:%s:erofs", hash_hex, data_uuid, hash_uuid);
	return n < 0 || (size_t)n >= len ? -ENOBUFS : n;
}

int identity_state(const char *uuid, const char *cipher_mode, unsigned key_bits,
		   unsigned sector_size, const char *integrity, char *out, size_t len)
{
	int n = snprintf(out, len, "luks2:%s:%s:%u:%u:%s", uuid, cipher_mode, key_bits,
			 sector_size, integrity && integrity[0] ? integrity : "none");

	return n < 0 || (size_t)n >= len ? -ENOBUFS : n;
}

int identity_reference(const char *cmdline, const uint8_t *config, size_t config_len,
		       char *out, size_t len)
{
	char hash[1024], root[IDENTITY_ROOT_MAX] = "", sum_hex[65];
	uint8_t sum[32];
	int n, r;

	/* One line holds the command line: a newline in it would end the value early. */
	if (strchr(cmdline, '\n'))
		return -EINVAL;
	r = cmdline_get(cmdline, "roothash", hash, sizeof(hash));
	if (r < 0)
		return -EINVAL;
	if (r > 0 && identity_root(hash, root, sizeof(root)) < 0)
		return -EINVAL;
	if (config) {
		if (digest_compute(DIGEST_ALG_SHA256, config, config_len, sum) != 32)
			return -EIO;
		hex_encode(sum, sizeof(sum), sum_hex);
	}
	n = snprintf(out, len,
		     "# cvminit reference values: written at image build\n"
		     "cmdline %s\n"
		     "config %s%s\n"
		     "%s%s%s",
		     cmdline, config ? "sha256:" : "none", config ? sum_hex : "",
		     root[0] ? "root " : "", root, root[0] ? "\n" : "");
	return n < 0 || (size_t)n >= len ? -ENOBUFS : n;
}
