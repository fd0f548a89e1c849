/* The freshness parsers: the node's counter file (generation_parse_file, what PID 1 reads
 * from /var), the cvminit:generation record's content (generation_content_parse, what
 * cvm-join reads from a node's log) and cvm-join's node file (join_store_parse). Each
 * accepted input must be exactly what the matching writer writes for the parsed value. */
#include <errno.h>
#include <stdio.h>

#include "../../measured-boot/generation.h"
#include "../../measured-boot/join-store.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char boot[GENERATION_BOOT_LEN + 1], out[600], *copy;
	struct join_node nd;
	uint64_t g;
	int n;

	/* Exactly size bytes, malloc'd for ASan. */
	copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	if (generation_parse_file(copy, size, &g) == 0) {
		n = snprintf(out, sizeof(out), "%llu\n", (unsigned long long)g);
		FUZZ_ASSERT((size_t)n == size && memcmp(out, copy, size) == 0);
	}
	if (generation_content_parse((const uint8_t *)copy, size, &g, boot) == 0) {
		n = generation_content(g, boot, out, sizeof(out));
		FUZZ_ASSERT(n >= 0 && (size_t)n == size && memcmp(out, copy, size) == 0);
	}
	if (join_store_parse(copy, size, &nd) == 0) {
		n = join_store_format(&nd, out, sizeof(out));
		FUZZ_ASSERT(n >= 0 && (size_t)n == size && memcmp(out, copy, size) == 0);
	}
	free(copy);
	return 0;
}
