/* config_parse(), the reader of /etc/cvminit/cvminit.conf (init/main.c config_load: at
 * most CONFIG_SIZE_MAX bytes, no NUL), with the settings it applies. */
#include <errno.h>

#include "../../init/config.h"
#include "fuzz.h"

#define CONFIG_SIZE_MAX 65536 /* init/main.c reads at most this much */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_text(data, size, CONFIG_SIZE_MAX), err[CONFIG_ERR_MAX];
	struct config *c = calloc(1, sizeof(*c));
	struct settings s;
	int r;

	if (!c)
		abort();
	settings_init(&s);
	r = config_parse(c, &s, text, "cvminit.conf", err, sizeof(err));
	FUZZ_ASSERT(r == 0 || (r < 0 && err[0]));
	if (r == 0) {
		/* What the supervisor relies on: bounded tables, terminated strings, an
		 * "after" that names only other services of the file, argv inside the arena. */
		FUZZ_ASSERT(c->nsvc >= 0 && c->nsvc <= SVC_MAX);
		FUZZ_ASSERT(c->nmodules >= 0 && c->nmodules <= CONFIG_MODULE_MAX);
		FUZZ_ASSERT(c->used <= CONFIG_ARENA);
		for (int i = 0; i < c->nsvc; i++) {
			const struct svc_def *d = &c->svc[i];

			FUZZ_ASSERT(memchr(d->name, 0, sizeof(d->name)));
			FUZZ_ASSERT(config_service(c, d->name) != NULL);
			FUZZ_ASSERT(!(d->after_mask & (1u << i)) &&
				    (d->after_mask >> c->nsvc) == 0);
			FUZZ_ASSERT(d->nargv >= 1 && d->nargv <= SVC_ARGV_MAX);
			FUZZ_ASSERT(d->argv[d->nargv] == NULL);
			FUZZ_ASSERT(d->nenv >= 0 && d->nenv <= SVC_ENV_MAX);
			FUZZ_ASSERT(d->envp[d->nenv] == NULL);
			for (int k = 0; k < d->nargv; k++)
				FUZZ_ASSERT(d->argv[k] >= c->arena &&
					    d->argv[k] < c->arena + CONFIG_ARENA);
			FUZZ_ASSERT(memchr(d->ready_socket, 0, sizeof(d->ready_socket)));
			FUZZ_ASSERT(svc_exhausted_to_string(d->on_exhausted) != NULL);
		}
	}
	free(c);
	free(text);
	return 0;
}
