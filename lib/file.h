/* File helpers for PID 1 and the host tool: whole reads and writes that retry EINTR and
 * short transfers, small /proc and /sys values, and a device-mapper node by its name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* read() until size bytes or EOF; returns the byte count or -errno. */
ssize_t read_full(int fd, void *buf, size_t size);
/* write() all n bytes; 0 or -errno. */
int write_full(int fd, const void *buf, size_t n);
/* pread()/pwrite() exactly len bytes at off; 0, -EIO at a short end, or -errno. */
int pread_full(int fd, void *buf, size_t len, off_t off);
int pwrite_full(int fd, const void *buf, size_t len, off_t off);

/* A small text file (a /proc or /sys value, a config; the last component not a symlink)
 * into buf, NUL-terminated. Returns its length, -EFBIG when it does not fit in size - 1
 * bytes, or -errno (-ENOENT when absent). */
ssize_t read_file_text(const char *path, char *buf, size_t size);
/* Up to size bytes of a file (a sysfs or configfs attribute is one value); the length or
 * -errno. */
ssize_t read_file_bytes(const char *path, void *buf, size_t size);
/* Writes value to a /proc, /sys or configfs file in one write(): 0 or -errno (-EIO when
 * the kernel took only part of it). */
int write_file_text(const char *path, const char *value);
/* Replaces path by len bytes of data so that a crash leaves the old file or the new one,
 * never part of one: written to "<dir>/.<name>.tmp" (mode; a symlink there is refused),
 * fsynced, renamed over path, and the directory fsynced (the rename is durable only once
 * the directory is). 0 or -errno; the temporary file never stays behind. */
int write_file_replace(const char *path, const void *data, size_t len, mode_t mode);
/* fsync() of a directory, for a rename or unlink in it to be durable: 0 or -errno. */
int fsync_dir(const char *dir);
/* A whole file until EOF into a new buffer, NUL-terminated past *len: a regular file, or
 * anything but a directory when any_file (-EINVAL otherwise). -EFBIG past max bytes. */
int read_file_alloc(const char *path, bool any_file, size_t max, uint8_t **ret,
		    size_t *len);

/* The node of the active device-mapper device name: /dev/mapper/<name> (libdevmapper) or,
 * without udev, /dev/dm-N found by the name sysfs shows. 0, -ENOENT, or -errno. */
int dm_find_node(const char *name, char *node, size_t len);
