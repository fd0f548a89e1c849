/* Kernel command-line words. One splitter, so that PID 1's reading of a command line and
 * the host tool's prediction of it cannot disagree. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "cmdline.h"

int cmdline_next_word(const char **p, char *word, size_t len)
{
	const char *s = *p;
	bool quoted = false;
	size_t n = 0;

	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (*s == '\0') {
		*p = s;
		return 0;
	}
	for (; *s; s++) {
		if (*s == '"') {
			quoted = !quoted;
			continue;
		}
		if (!quoted && (*s == ' ' || *s == '\t' || *s == '\n'))
			break;
		if (n + 1 >= len)
			return -E2BIG;
		word[n++] = *s;
	}
	if (quoted)
		return -EINVAL;
	word[n] = '\0';
	*p = s;
	return 1;
}

int cmdline_get(const char *cmdline, const char *key, char *out, size_t outlen)
{
	char word[1024];
	const char *p = cmdline;
	size_t klen = strlen(key);
	bool seen = false;
	int found = 0, r;

	while ((r = cmdline_next_word(&p, word, sizeof(word))) > 0) {
		if (strncmp(word, key, klen) != 0 || word[klen] != '=')
			continue;
		const char *v = word + klen + 1;
		size_t vlen = strlen(v);
		if (vlen + 1 > outlen)
			return -E2BIG;
		/* A security-relevant key given twice (the UKI's and one appended by the
		 * host) is ambiguous: refuse rather than pick one. */
		if (seen)
			return -EEXIST;
		memcpy(out, v, vlen + 1);
		found = (int)vlen;
		seen = true;
	}
	return r < 0 ? r : found;
}

bool cmdline_has_key(const char *cmdline, const char *key)
{
	size_t n = strlen(key);

	/* On the raw text, not on parsed words: "key=" after a space or a quote anywhere
	 * counts, even inside another word's quoted value. Erring that way makes a
	 * malformed command line a refusal rather than "no such key". */
	for (const char *p = cmdline; (p = strstr(p, key)); p += n)
		if ((p == cmdline || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' ||
		     p[-1] == '"') &&
		    p[n] == '=')
			return true;
	return false;
}
