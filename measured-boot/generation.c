/* The generation counter (generation.h): the file's parser, the next-value rule, the
 * durable write (tmp, fsync, rename, directory fsync) and the PCR 15 record's content. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/file.h"
#include "generation.h"

/* Decimal digits without a leading zero (a lone "0" allowed); 0 or -EBADMSG. */
static int parse_u64(const char *p, size_t n, uint64_t *v)
{
	uint64_t x = 0;

	if (n == 0 || n > 18 || (n > 1 && p[0] == '0'))
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EBADMSG;
		x = x * 10 + (uint64_t)(p[i] - '0');
	}
	*v = x;
	return 0;
}

int generation_parse_file(const char *buf, size_t len, uint64_t *g)
{
	if (len < 2 || buf[len - 1] != '\n')
		return -EBADMSG;
	return parse_u64(buf, len - 1, g);
}

uint64_t generation_next(ssize_t read_r, const char *buf, bool fresh, char *why,
			 size_t why_len)
{
	uint64_t g;

	if (why_len)
		why[0] = '\0';
	if (read_r == -ENOENT) {
		if (fresh)
			return 1;
		snprintf(
			why, why_len,
			"the counter file is missing on a state volume made by an earlier "
			"boot");
		return 0;
	}
	if (read_r < 0) {
		snprintf(why, why_len, "the counter file cannot be read: %s",
			 strerror((int)-read_r));
		return 0;
	}
	if (generation_parse_file(buf, (size_t)read_r, &g) < 0) {
		snprintf(why, why_len, "the counter file is malformed (%zd bytes)",
			 read_r);
		return 0;
	}
	if (g >= GENERATION_MAX) {
		snprintf(why, why_len, "the counter is at its maximum");
		return 0;
	}
	return g + 1;
}

int generation_store(const char *dir, uint64_t g)
{
	char path[256], text[32];
	int n;

	if (snprintf(path, sizeof(path), "%s/%s", dir, GENERATION_FILE) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	n = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)g);
	return write_file_replace(path, text, (size_t)n, 0600);
}

int generation_bump(const char *dir, bool fresh, uint64_t *g, char *why, size_t why_len)
{
	char path[256], buf[64];
	ssize_t n;

	if (snprintf(path, sizeof(path), "%s/%s", dir, GENERATION_FILE) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	n = read_file_text(path, buf, sizeof(buf));
	if (n == -EFBIG)
		n = (ssize_t)sizeof(buf); /* too long: malformed, not unreadable */
	*g = generation_next(n, buf, fresh, why, why_len);
	return generation_store(dir, *g);
}

int generation_content(uint64_t g, const char *boot_id, char *out, size_t n)
{
	int k;

	if (strlen(boot_id) != GENERATION_BOOT_LEN || g > GENERATION_MAX)
		return -EINVAL;
	k = snprintf(out, n, "generation=%llu boot_id=%s", (unsigned long long)g,
		     boot_id);
	return k < 0 || (size_t)k >= n ? -EINVAL : k;
}

int generation_content_parse(const uint8_t *p, size_t n, uint64_t *g,
			     char boot_id[GENERATION_BOOT_LEN + 1])
{
	static const char pre[] = "generation=", mid[] = " boot_id=";
	const char *s = (const char *)p, *sp;
	size_t digits;

	if (n < sizeof(pre) - 1 || memcmp(s, pre, sizeof(pre) - 1) != 0)
		return -EBADMSG;
	s += sizeof(pre) - 1;
	n -= sizeof(pre) - 1;
	sp = memchr(s, ' ', n);
	if (!sp)
		return -EBADMSG;
	digits = (size_t)(sp - s);
	if (parse_u64(s, digits, g) < 0)
		return -EBADMSG;
	s += digits;
	n -= digits;
	if (n != sizeof(mid) - 1 + GENERATION_BOOT_LEN ||
	    memcmp(s, mid, sizeof(mid) - 1) != 0)
		return -EBADMSG;
	s += sizeof(mid) - 1;
	for (size_t i = 0; i < GENERATION_BOOT_LEN; i++) {
		char c = s[i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -EBADMSG;
	}
	memcpy(boot_id, s, GENERATION_BOOT_LEN);
	boot_id[GENERATION_BOOT_LEN] = '\0';
	return 0;
}
