/* The generation step of a boot (generation.h): read the boot ID, increment and store the
 * counter, measure it into PCR 15. PID 1 calls it after /var is mounted; the host join
 * test calls the same function through tests/unit/node_records.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../lib/file.h"
#include "generation.h"
#include "measure.h"

int generation_measure(struct measurer *m, const char *dir, bool fresh,
		       const char *boot_id_path, uint64_t *g, char *why, size_t why_len)
{
	char boot_id[64], content[GENERATION_CONTENT_MAX];
	ssize_t n;
	int r;

	n = read_file_text(boot_id_path, boot_id, sizeof(boot_id));
	if (n > 0 && boot_id[n - 1] == '\n')
		boot_id[--n] = '\0';
	if (n < 0) {
		snprintf(why, why_len, "cannot read the kernel's boot ID (%s): %s",
			 boot_id_path, strerror((int)-n));
		return (int)n;
	}
	if (strlen(boot_id) != GENERATION_BOOT_LEN) {
		snprintf(why, why_len, "the boot ID \"%s\" (%s) is not a UUID", boot_id,
			 boot_id_path);
		return -EINVAL;
	}
	r = generation_bump(dir, fresh, g, why, why_len);
	if (r < 0) {
		snprintf(why, why_len, "cannot store the generation counter in %s: %s",
			 dir, strerror(-r));
		return r;
	}
	r = generation_content(*g, boot_id, content, sizeof(content));
	if (r < 0) {
		snprintf(why, why_len, "the boot ID \"%s\" is not a UUID", boot_id);
		return r;
	}
	r = m ? measure(m, 15, GENERATION_EVENT, content, (size_t)r) : -ENODEV;
	if (r < 0) {
		snprintf(why, why_len,
			 "cannot measure the generation (%s) into PCR 15: %s", content,
			 strerror(-r));
		return r;
	}
	return 0;
}
