/* The kernel command line as PID 1 reads it (/proc/cmdline, 4 KiB, no NUL): the cvminit.*
 * keys (cmdline_parse), single values (cmdline_get, as init/root.c and cvm-measure's
 * predict use it) and roothash= (root_parse). */
#include <errno.h>

#include "../../init/root.h"
#include "../../init/settings.h"
#include "fuzz.h"

#define CMDLINE_MAX 4095 /* init/main.c reads /proc/cmdline into 4096 bytes */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = {"roothash", "cvminit.on_failure",
					   "console",  "cvminit.log_level",
					   "root",     ""};
	char *cmdline = fuzz_text(data, size, CMDLINE_MAX), err[SETTINGS_ERR_MAX],
	     val[300];
	struct settings s;
	struct root rt;
	int r;

	settings_init(&s);
	r = cmdline_parse(&s, cmdline, err, sizeof(err));
	FUZZ_ASSERT(r >= 0 || err[0]);
	/* A second pass, as config_load() applies the command line again over the file. */
	s.seen = 0;
	cmdline_parse(&s, cmdline, err, sizeof(err));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		val[0] = '\0'; /* left alone when the key is absent */
		r = cmdline_get(cmdline, keys[i], val, sizeof(val));
		FUZZ_ASSERT(r < 0 || (size_t)r < sizeof(val));
		if (r >= 0)
			FUZZ_ASSERT(strlen(val) == (size_t)r);
		/* A small buffer: the value must be cut or refused, never overrun. */
		r = cmdline_get(cmdline, keys[i], val, 8);
		FUZZ_ASSERT(r < 8);
	}
	memset(&rt, 0, sizeof(rt));
	r = root_parse(cmdline, &rt, err, sizeof(err));
	FUZZ_ASSERT(r == 0 || r == 1 || r == -EINVAL || r == -EEXIST || r == -E2BIG);
	if (r == 1)
		FUZZ_ASSERT(strlen(rt.hash_hex) == 2 * ROOT_HASH_SIZE &&
			    rt.data_uuid[0] && rt.hash_uuid[0]);
	free(cmdline);
	return 0;
}
