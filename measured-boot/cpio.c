/* newc cpio reading for `cvm-measure predict`: the config file cvminit measures comes out
 * of the UKI's .initrd, so the reader follows the kernel's unpacker (init/initramfs.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "cpio.h"

#define HEADER_LEN   110 /* "070701" and 13 fields of 8 hex digits */
#define NAME_MAX_LEN 4096
#define TRAILER	     "TRAILER!!!"

enum {
	F_INO,
	F_MODE,
	F_UID,
	F_GID,
	F_NLINK,
	F_MTIME,
	F_FILESIZE,
	F_MAJ,
	F_MIN,
	F_RMAJ,
	F_RMIN,
	F_NAMESIZE,
	F_CHKSUM,
	N_FIELDS,
};

static size_t align4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

/* Archive formats the kernel can decompress: we cannot, and say which one it is. */
static const struct {
	const char *magic;
	size_t len;
	const char *why;
} compressed[] = {
	{"\x1f\x8b", 2, "a gzip-compressed archive: only uncompressed newc cpio is read"},
	{"\x28\xb5\x2f\xfd", 4,
	 "a zstd-compressed archive: only uncompressed newc cpio is read"},
	{"\xfd"
	 "7zXZ",
	 5, "an xz-compressed archive: only uncompressed newc cpio is read"},
	{"\x02\x21\x4c\x18", 4,
	 "an lz4-compressed archive: only uncompressed newc cpio is read"},
	{"BZh", 3, "a bzip2-compressed archive: only uncompressed newc cpio is read"},
	{"\x5d\x00\x00", 3,
	 "an lzma-compressed archive: only uncompressed newc cpio is read"},
	{"\x89LZO", 4, "an lzo-compressed archive: only uncompressed newc cpio is read"},
};

static const char *compressed_kind(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < sizeof(compressed) / sizeof(compressed[0]); i++)
		if (n >= compressed[i].len &&
		    memcmp(p, compressed[i].magic, compressed[i].len) == 0)
			return compressed[i].why;
	return NULL;
}

static int parse_hex8(const uint8_t *p, uint32_t *out)
{
	uint32_t v = 0;

	for (int i = 0; i < 8; i++) {
		uint8_t c = p[i];
		int d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -EINVAL;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

/* The path relative to the rootfs root: no empty or "." components. -EINVAL for "..",
 * which a sane initrd never has and whose result we would have to model. */
static int normalize(const char *in, char *out, size_t cap)
{
	size_t o = 0;

	while (*in) {
		const char *end = strchr(in, '/');
		size_t n = end ? (size_t)(end - in) : strlen(in);

		if (n == 2 && in[0] == '.' && in[1] == '.')
			return -EINVAL;
		if (n > 0 && !(n == 1 && in[0] == '.')) {
			if (o + (o > 0) + n + 1 > cap)
				return -ENAMETOOLONG;
			if (o > 0)
				out[o++] = '/';
			memcpy(out + o, in, n);
			o += n;
		}
		in += n;
		if (*in == '/')
			in++;
	}
	out[o] = '\0';
	return 0;
}

#define FAIL(code, off, msg)                                                             \
	do {                                                                             \
		*bad_offset = (off);                                                     \
		*why = (msg);                                                            \
		return (code);                                                           \
	} while (0)

int cpio_find(const uint8_t *buf, size_t len, const char *path, struct cpio_file *ret,
	      size_t *bad_offset, const char **why)
{
	char want[NAME_MAX_LEN], name[NAME_MAX_LEN];
	struct cpio_file found = {0};
	uint32_t found_nlink = 0;
	bool have = false, in_archive = false;
	unsigned archive = 0;
	size_t pos = 0;

	*bad_offset = 0;
	*why = NULL;
	if (normalize(path, want, sizeof(want)) < 0 || !want[0])
		FAIL(-EINVAL, 0, "the path to look for is not a plain absolute path");

	while (pos < len) {
		uint32_t f[N_FIELDS];
		size_t name_off, data_off, next;
		const char *kind;

		/* Between archives the kernel skips NUL padding byte by byte. */
		if (!in_archive && buf[pos] == 0) {
			pos++;
			continue;
		}
		if (!in_archive && (kind = compressed_kind(buf + pos, len - pos)))
			FAIL(-EOPNOTSUPP, pos, kind);
		if (len - pos < 6 || (memcmp(buf + pos, "070701", 6) != 0 &&
				      memcmp(buf + pos, "070702", 6) != 0))
			FAIL(-EBADMSG, pos,
			     len - pos < 6 ? "truncated: an entry header is cut off"
					   : "not a newc cpio header (magic 070701)");
		if (len - pos < HEADER_LEN)
			FAIL(-EBADMSG, pos, "truncated: an entry header is cut off");
		for (int i = 0; i < N_FIELDS; i++)
			if (parse_hex8(buf + pos + 6 + 8 * i, &f[i]) < 0)
				FAIL(-EBADMSG, pos + 6 + 8 * (size_t)i,
				     "a header field is not 8 hex digits");
		if (!in_archive) {
			archive++;
			in_archive = true;
		}

		name_off = pos + HEADER_LEN;
		if (f[F_NAMESIZE] == 0 || f[F_NAMESIZE] > NAME_MAX_LEN)
			FAIL(-EBADMSG, pos + 6 + 8 * F_NAMESIZE,
			     "name size is 0 or larger than PATH_MAX");
		if (len - name_off < f[F_NAMESIZE])
			FAIL(-EBADMSG, name_off, "truncated: an entry name is cut off");
		if (buf[name_off + f[F_NAMESIZE] - 1] != '\0' ||
		    memchr(buf + name_off, '\0', f[F_NAMESIZE] - 1))
			FAIL(-EBADMSG, name_off, "the entry name is not NUL-terminated");
		memcpy(name, buf + name_off, f[F_NAMESIZE]);

		data_off = align4(name_off + f[F_NAMESIZE]);
		if (data_off > len || len - data_off < f[F_FILESIZE])
			FAIL(-EBADMSG, data_off > len ? len : data_off,
			     "truncated: an entry's data is cut off");
		next = align4(data_off + f[F_FILESIZE]);

		if (strcmp(name, TRAILER) == 0) {
			in_archive = false;
		} else {
			char norm[NAME_MAX_LEN];

			if (normalize(name, norm, sizeof(norm)) == 0 &&
			    strcmp(norm, want) == 0) {
				found = (struct cpio_file){
					.data = buf + data_off,
					.size = f[F_FILESIZE],
					.mode = f[F_MODE],
					.offset = pos,
					.archive = archive,
				};
				found_nlink = f[F_NLINK];
				have = true;
			}
		}
		/* The last entry's padding may be missing at the very end. */
		pos = next < len ? next : len;
	}
	if (in_archive)
		FAIL(-EBADMSG, len,
		     "truncated: the archive ends without its TRAILER!!! entry");
	if (!have)
		return 0;
	if (!S_ISREG(found.mode))
		FAIL(-EOPNOTSUPP, found.offset,
		     "the last entry for the path is not a regular file");
	if (found_nlink > 1)
		FAIL(-EOPNOTSUPP, found.offset,
		     "the entry is hard-linked (nlink > 1): its data may sit on another "
		     "link");
	*ret = found;
	return 1;
}
