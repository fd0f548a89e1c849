/* Whole reads and writes, small kernel values, and the device-mapper node lookup that the
 * state volume and the root both wait on. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "util.h"

ssize_t read_full(int fd, void *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, (uint8_t *)buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* pread() or pwrite() until len bytes are done; an end of file is a short device. */
static int pio_full(int fd, uint8_t *p, size_t len, off_t off, bool out)
{
	while (len > 0) {
		ssize_t n = out ? pwrite(fd, p, len, off) : pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int pread_full(int fd, void *buf, size_t len, off_t off)
{
	return pio_full(fd, buf, len, off, false);
}

int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	/* pwrite() only reads the buffer. */
	return pio_full(fd, (uint8_t *)buf, len, off, true);
}

ssize_t read_file_text(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
	ssize_t n;

	if (size == 0)
		return -EINVAL;
	buf[0] = '\0';
	if (fd < 0)
		return -errno;
	/* One byte more than fits says the file is too long. */
	n = read_full(fd, buf, size);
	if (n < 0)
		return n;
	if ((size_t)n >= size) {
		buf[size - 1] = '\0';
		return -EFBIG;
	}
	buf[n] = '\0';
	return n;
}

ssize_t read_file_bytes(const char *path, void *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	return read_full(fd, buf, size);
}

int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int write_file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
	const char *slash = strrchr(path, '/');
	char dir[4096], tmp[4096 + 8];
	size_t dlen = slash ? (size_t)(slash - path) : 0;
	int fd, r;

	if (!slash || !slash[1] || dlen >= sizeof(dir))
		return -EINVAL;
	memcpy(dir, path, dlen);
	dir[dlen] = '\0';
	if (!dlen)
		strcpy(dir, "/");
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, slash + 1) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	r = write_full(fd, data, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	return fsync_dir(dir);
}

int write_file_text(const char *path, const char *value)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	size_t len = strlen(value);
	ssize_t n;

	if (fd < 0)
		return -errno;
	/* A kernel attribute takes its value in one write; a second would be a new value. */
	n = write(fd, value, len);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int read_file_alloc(const char *path, bool any_file, size_t max, uint8_t **ret,
		    size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	_cleanup_free_ uint8_t *buf = NULL;
	size_t got = 0, cap = 0;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode) && !any_file)
		return -EINVAL;
	for (;;) {
		ssize_t k;

		if (got + 1 >= cap) {
			size_t want = cap ? cap * 2 : (size_t)st.st_size + 4096;
			uint8_t *grown;

			if (want > max)
				want = max + 1;
			if (got + 1 >= want)
				return -EFBIG;
			grown = realloc(buf, want);
			if (!grown)
				return -ENOMEM;
			buf = grown;
			cap = want;
		}
		k = read(fd, buf + got, cap - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	buf[got] = '\0';
	*len = got;
	*ret = buf;
	buf = NULL;
	return 0;
}

int dm_find_node(const char *name, char *node, size_t len)
{
	char path[300], buf[128];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	snprintf(path, sizeof(path), "/dev/mapper/%s", name);
	if (stat(path, &sb) == 0 && S_ISBLK(sb.st_mode)) {
		snprintf(node, len, "%s", path);
		return 0;
	}
	d = opendir("/sys/block");
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		ssize_t n;

		if (!startswith(de->d_name, "dm-"))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dm/name", de->d_name);
		n = read_file_text(path, buf, sizeof(buf));
		if (n <= 0)
			continue;
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(path, sizeof(path), "/dev/%s", de->d_name);
		if (streq(buf, name) && stat(path, &sb) == 0 && S_ISBLK(sb.st_mode)) {
			snprintf(node, len, "%s", path);
			closedir(d);
			return 0;
		}
	}
	closedir(d);
	return -ENOENT;
}
