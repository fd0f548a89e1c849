/* A reader for the UKI's .initrd: one or more concatenated uncompressed newc cpio
 * archives, searched for one file the way the kernel's initramfs unpacker leaves it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct cpio_file {
	const uint8_t *data; /* points into the archive buffer */
	size_t size;
	uint32_t mode;	  /* st_mode of the entry: type and permissions */
	size_t offset;	  /* byte offset of the entry's header in the buffer */
	unsigned archive; /* 1 for the first archive of the buffer, 2 for the next … */
};

/*
 * Finds path ("/etc/cvminit/cvminit.conf") in buf. Entry names are compared after
 * dropping empty, "." and leading "/" components, as the kernel resolves them against
 * the root of the rootfs; ".." is refused. NUL bytes between archives are skipped like
 * the kernel does. When a name repeats, the last entry wins (the kernel truncates and
 * rewrites the file). Every header field is checked against len before it is used.
 *
 * Returns 1 with *ret filled when the last entry for path is a regular file; 0 when
 * there is no entry for it; -EBADMSG for a malformed or truncated archive, with
 * *bad_offset at the offending byte and *why a static sentence; -EOPNOTSUPP, with the
 * same, for what we cannot predict: a compressed archive, a path whose last entry is not
 * a regular file, a hard-linked entry.
 */
int cpio_find(const uint8_t *buf, size_t len, const char *path, struct cpio_file *ret,
	      size_t *bad_offset, const char **why);
