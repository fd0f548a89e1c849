/* Hex both ways. Decoding takes any case (a hand-typed PCR value); what cvminit
 * measures or compares is always spelt lower-case, which hex_is_lower() checks. */
#include <errno.h>
#include <string.h>

#include "hex.h"

void hex_encode(const void *data, size_t n, char *out)
{
	static const char xd[] = "0123456789abcdef";
	const uint8_t *d = data;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = xd[d[i] >> 4];
		out[2 * i + 1] = xd[d[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *hex, void *out, size_t max)
{
	size_t len = strlen(hex);
	uint8_t *o = out;

	if (len % 2 || len / 2 > max || len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		o[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(len / 2);
}

bool hex_is_lower(const char *s, size_t len)
{
	return strlen(s) == len && strspn(s, "0123456789abcdef") == len;
}
