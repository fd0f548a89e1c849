/* Shared by the libFuzzer targets: the entry point's prototype, a NUL-terminated copy of
 * the input (the text parsers take C strings), quiet logging and a crash on a broken
 * property (libFuzzer keeps the input that aborts). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property the two sides of a target must keep; abort() makes libFuzzer save the input. */
#define FUZZ_ASSERT(cond)                                                                \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__,        \
				__LINE__, #cond);                                        \
			abort();                                                         \
		}                                                                        \
	} while (0)

/* The input as a C string of at most max bytes (what PID 1 reads into a bounded buffer),
 * cut at its first NUL as the reader's strlen() check would refuse the rest. malloc'd to
 * the exact length so ASan sees a read past the terminator. */
static inline char *fuzz_text(const uint8_t *data, size_t size, size_t max)
{
	char *s;

	if (size > max)
		size = max;
	s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The parsers log what they refuse; at fuzzing speed that would be all the fuzzer does. */
static inline void fuzz_quiet(void)
{
	log_set_max_level(-1);
}
