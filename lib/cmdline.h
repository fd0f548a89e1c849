/* The kernel command line's words, split the way the kernel splits them: shared by PID 1
 * (settings, roothash=) and by cvm-measure's prediction of what PID 1 will read. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Splits the next word off *p the way the kernel's next_arg() does: spaces separate,
 * double quotes group and are removed. Writes it into word (NUL-terminated). Returns 1
 * for a word, 0 at the end, -EINVAL for an unterminated quote, -E2BIG when too long. */
int cmdline_next_word(const char **p, char *word, size_t len);

/* Finds the value of a plain kernel parameter (e.g. "roothash") in a command line. Copies
 * it into out and returns its length, 0 when absent, -EEXIST when given twice, another
 * negative errno when malformed or too long for out. */
int cmdline_get(const char *cmdline, const char *key, char *out, size_t outlen);

/* True when "key=" stands at the start of a word (after a space or a quote) anywhere in
 * the command line: cmdline_get() returns 0 both for an absent key and for "key=" with
 * nothing after it, which must not pass for "absent". */
bool cmdline_has_key(const char *cmdline, const char *key);
