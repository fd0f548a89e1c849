/* The one hex encoder and decoder: digests in logs, reference values, event logs, PCR
 * values on the command line. */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void hex_encode(const void *data, size_t n, char *out);
/* Parses hex (any case) of 1 to max bytes; returns the byte count or -EINVAL. */
int hex_decode(const char *hex, void *out, size_t max);
/* True when s is exactly len lower-case hex digits (how a measured value is spelt). */
bool hex_is_lower(const char *s, size_t len);
