/* Key material in memory of its own: whole pages, locked (never swapped), left out of core
 * dumps, wiped when the variable's scope ends and by secret_wipe_all() on a refusal. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct secret {
	uint8_t *buf; /* NULL until secret_new() */
	size_t size;  /* usable bytes (the mapping is rounded up to pages) */
};

/* Maps, locks and registers size bytes; 0, -ENOMEM, -EAGAIN (mlock), -ENOSPC (too many
 * live secrets), or -errno. */
int secret_new(struct secret *s, size_t size);
/* Wipes, unlocks, unmaps and forgets it; nothing for a secret never made or freed. */
void secret_free(struct secret *s);
/* Wipes every live secret in place: the paths that leave without returning (fail_closed,
 * the crash handler) cannot rely on scopes ending. Async-signal-safe. */
void secret_wipe_all(void);

#define _cleanup_secret_ _cleanup_(secret_free)
