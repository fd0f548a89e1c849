/* Secrets in locked, undumpable pages, and the list of live ones that a refusal wipes
 * before the node powers off (a cleanup attribute never runs on a _noreturn_ path). */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "secret.h"

#define SECRETS_MAX 4

static struct secret *live[SECRETS_MAX];

static size_t mapped_size(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (size + page - 1) / page * page;
}

int secret_new(struct secret *s, size_t size)
{
	size_t len = mapped_size(size ? size : 1);
	void *p;
	int r;

	*s = (struct secret){0};
	for (r = 0; r < SECRETS_MAX && live[r]; r++)
		;
	if (r == SECRETS_MAX)
		return -ENOSPC;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (mlock(p, len) < 0) {
		int e = -errno;

		munmap(p, len);
		return e;
	}
	/* Not in a core dump (PID 1 has none, a host tool might), not in a fork's copy. */
	(void)madvise(p, len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
	(void)madvise(p, len, MADV_WIPEONFORK);
#endif
	s->buf = p;
	s->size = size;
	live[r] = s;
	return 0;
}

void secret_free(struct secret *s)
{
	size_t len;

	if (!s->buf)
		return;
	len = mapped_size(s->size ? s->size : 1);
	explicit_wipe(s->buf, len);
	for (int i = 0; i < SECRETS_MAX; i++)
		if (live[i] == s)
			live[i] = NULL;
	munlock(s->buf, len);
	munmap(s->buf, len);
	*s = (struct secret){0};
}

void secret_wipe_all(void)
{
	for (int i = 0; i < SECRETS_MAX; i++)
		if (live[i] && live[i]->buf)
			explicit_wipe(live[i]->buf, live[i]->size);
}
