/* Reference values: parsing /etc/cvminit/reference. See reference.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "reference.h"
#include "util.h"

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case is refused: one spelling per value */
}

static int parse_sha256(const char *v, uint8_t out[32])
{
	if (strlen(v) != 64)
		return -EINVAL;
	for (int i = 0; i < 32; i++) {
		int hi = hex_nibble(v[2 * i]), lo = hex_nibble(v[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int line_error(char *err, size_t errlen, int line, const char *what)
{
	snprintf(err, errlen, "%s:%d: %s", REFERENCE_PATH, line, what);
	return -EINVAL;
}

int reference_parse(struct reference *r, const char *text, char *err, size_t errlen)
{
	const char *p = text;
	int line = 0;

	memset(r, 0, sizeof(*r));
	while (*p) {
		char buf[REFERENCE_LINE_MAX + 16];
		const char *nl = strchr(p, '\n'), *v;
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		line++;
		if (len >= sizeof(buf))
			return line_error(err, errlen, line, "line too long");
		memcpy(buf, p, len);
		buf[len] = '\0';
		p += len + (nl ? 1 : 0);

		if (buf[0] == '\0' || buf[0] == '#')
			continue;
		if ((v = startswith(buf, "cmdline "))) {
			if (r->has_cmdline)
				return line_error(err, errlen, line,
						  "cmdline given twice");
			if (strlen(v) >= sizeof(r->cmdline))
				return line_error(err, errlen, line, "cmdline too long");
			strcpy(r->cmdline, v);
			r->has_cmdline = true;
		} else if ((v = startswith(buf, "config "))) {
			if (r->has_config)
				return line_error(err, errlen, line,
						  "config given twice");
			if (streq(v, "none"))
				r->config_absent = true;
			else if (!startswith(v, "sha256:") ||
				 parse_sha256(v + 7, r->config_sha256) < 0)
				return line_error(
					err, errlen, line,
					"config wants sha256:<64 lower-case hex> or none");
			r->has_config = true;
		} else if ((v = startswith(buf, "root "))) {
			if (r->has_root)
				return line_error(err, errlen, line, "root given twice");
			if (!startswith(v, "verity:") || strlen(v) >= sizeof(r->root))
				return line_error(
					err, errlen, line,
					"root wants verity:<roothash>:<uuid>:<uuid>:<fstype>");
			strcpy(r->root, v);
			r->has_root = true;
		} else {
			return line_error(
				err, errlen, line,
				"unknown key (expected cmdline, config or root)");
		}
	}
	return 0;
}

long reference_first_difference(const char *a, const char *b)
{
	long i = 0;

	while (a[i] && a[i] == b[i])
		i++;
	return a[i] == b[i] ? -1 : i;
}
