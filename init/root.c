/* The verified root: roothash= names the root and its hash tree (systemd's convention:
 * the hash's halves are the two PARTUUIDs), verity_open() maps it, then switch_root. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "../lib/hex.h"
#include "../measured-boot/identity.h"
#include "log.h"
#include "partition.h"
#include "power.h"
#include "root.h"
#include "verity.h"

#define RAMFS_MAGIC 0x858458f6
#define TMPFS_MAGIC 0x01021994
#define POLL_MS	    100

/* A refusal: one greppable "root: …" line in the log, then the boxed fail_closed(). */
_noreturn_ _printf_(1, 2) static void refuse(const char *fmt, ...)
{
	char msg[640];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("root: %s", msg);
	fail_closed("%s", msg);
}

int root_parse(const char *cmdline, struct root *r, char *err, size_t errlen)
{
	char value[1024]; /* any value, to name it in the refusal */
	int n;

	n = cmdline_get(cmdline, "roothash", value, sizeof(value));
	if (n == 0 && !cmdline_has_key(cmdline, "roothash"))
		return 0;
	if (n == -EEXIST) {
		snprintf(err, errlen,
			 "roothash= is given more than once: which root to trust is "
			 "ambiguous");
		return n;
	}
	if (n == -E2BIG) {
		snprintf(
			err, errlen,
			"roothash= is longer than %zu characters; expected %d lower-case "
			"hex digits (a sha256 root hash)",
			sizeof(value) - 1, 2 * ROOT_HASH_SIZE);
		return n;
	}
	if (n < 0) {
		snprintf(err, errlen, "roothash=: cannot parse the command line: %s",
			 strerror(-n));
		return n;
	}
	if (n == 0) {
		snprintf(err, errlen,
			 "roothash= is empty: expected %d lower-case hex digits (sha256)",
			 2 * ROOT_HASH_SIZE);
		return -EINVAL;
	}
	if (!hex_is_lower(value, 2 * ROOT_HASH_SIZE)) {
		snprintf(err, errlen,
			 "roothash=%.100s%s is not a root hash: expected %d lower-case "
			 "hex digits (sha256)",
			 value, strlen(value) > 100 ? "…" : "", 2 * ROOT_HASH_SIZE);
		return -EINVAL;
	}

	memcpy(r->hash_hex, value, sizeof(r->hash_hex) - 1);
	r->hash_hex[sizeof(r->hash_hex) - 1] = '\0';
	hex_decode(value, r->hash, ROOT_HASH_SIZE);
	identity_root_uuids(r->hash_hex, r->data_uuid, r->hash_uuid);
	return 1;
}

static bool is_blockdev(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISBLK(st.st_mode);
}

/* Counts the partitions of a type with a PARTUUID; copies the first one's node. */
static int match(const struct part *parts, int n, enum dps_type type, const char *uuid,
		 char dev[static sizeof(parts->dev)])
{
	int found = 0;

	for (int i = 0; i < n; i++) {
		if (parts[i].type != type || !streq(parts[i].uuid, uuid))
			continue;
		if (!found)
			memcpy(dev, parts[i].dev, sizeof(parts[i].dev));
		found++;
	}
	return found;
}

int root_find(const char *cmdline, const struct settings *s, struct root *r)
{
	static struct part parts[PART_MAX];
	char err[256];
	uint64_t start = now_ms(), end = start + (uint64_t)s->device_timeout * 1000;
	int n, data = 0, hash = 0;

	memset(r, 0, sizeof(*r));
	n = root_parse(cmdline, r, err, sizeof(err));
	if (n < 0)
		refuse("bad kernel command line: %s. The UKI's command line must carry "
		       "the root hash of this disk (roothash=<64 hex>), once.",
		       err);
	if (n == 0)
		return 0;
	log_info("root: roothash %s: root partition %s, verity partition %s", r->hash_hex,
		 r->data_uuid, r->hash_uuid);

	/* No udev: the disks and their partition nodes come when the kernel has probed
	 * them, so look again every POLL_MS until both are there or the time is up. */
	for (;;) {
		n = part_scan(parts, ARRAY_SIZE(parts));
		if (n == -E2BIG)
			refuse("%s", PART_TOO_MANY);
		if (n < 0)
			n = 0;
		data = match(parts, n, DPS_ROOT_X86_64, r->data_uuid, r->data_dev);
		hash = match(parts, n, DPS_ROOT_VERITY_X86_64, r->hash_uuid, r->hash_dev);
		/* Two candidates: the host may have attached a second disk to have its
		 * copy picked; never guess. */
		if (data > 1 || hash > 1)
			refuse("%d partitions of type %s with PARTUUID %s: the root is "
			       "ambiguous. Attach only one disk carrying this root.",
			       data > 1 ? data : hash,
			       dps_type_name(data > 1 ? DPS_ROOT_X86_64
						      : DPS_ROOT_VERITY_X86_64),
			       data > 1 ? r->data_uuid : r->hash_uuid);
		if (data == 1 && hash == 1 && is_blockdev(r->data_dev) &&
		    is_blockdev(r->hash_dev))
			break;
		if (now_ms() >= end)
			break;
		struct timespec ts = {0, POLL_MS * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (data != 1 || hash != 1) {
		bool both = data != 1 && hash != 1;
		refuse("no partition of type %s with PARTUUID %s%s%s%s%s after %u s. The "
		       "disk is not the one this UKI (roothash=%s) was built for, or it "
		       "is missing.",
		       dps_type_name(data != 1 ? DPS_ROOT_X86_64
					       : DPS_ROOT_VERITY_X86_64),
		       data != 1 ? r->data_uuid : r->hash_uuid,
		       both ? ", nor of type " : "",
		       both ? dps_type_name(DPS_ROOT_VERITY_X86_64) : "",
		       both ? " with PARTUUID " : "", both ? r->hash_uuid : "",
		       s->device_timeout, r->hash_hex);
	}
	if (!is_blockdev(r->data_dev) || !is_blockdev(r->hash_dev))
		refuse("partitions %s and %s are in the GPT but their device nodes did "
		       "not appear after %u s",
		       r->data_dev, r->hash_dev, s->device_timeout);
	log_info("root: data %s, hash tree %s (found after %llu ms)", r->data_dev,
		 r->hash_dev, (unsigned long long)(now_ms() - start));
	return 1;
}

void root_open(struct root *r, const struct settings *s)
{
	int k;

	k = verity_open(ROOT_DM_NAME, r->data_dev, r->hash_dev, r->hash, ROOT_HASH_SIZE,
			s->verity_error == VERITY_PANIC, s->device_timeout, r->node,
			sizeof(r->node));
	if (k == -EKEYREJECTED)
		refuse("root hash does not match the verity partition %s (roothash=%s): "
		       "the root was changed or the UKI is not for this disk.",
		       r->hash_dev, r->hash_hex);
	if (k < 0)
		refuse("cannot open the verified root (%s with hash tree %s): %s. See "
		       "the verity: lines above.",
		       r->data_dev, r->hash_dev, strerror(-k));

	if (mkdir(ROOT_MOUNT, 0755) < 0 && errno != EEXIST)
		refuse("cannot make %s: %s", ROOT_MOUNT, strerror(errno));
	if (mount(r->node, ROOT_MOUNT, "erofs", MS_RDONLY | MS_NODEV | MS_NOSUID, NULL) <
	    0)
		refuse("cannot mount %s (erofs, read-only) on %s: %s. The kernel lacks "
		       "erofs, or the root partition is not erofs.",
		       r->node, ROOT_MOUNT, strerror(errno));
	log_info("root: %s mounted read-only on %s (erofs)", r->node, ROOT_MOUNT);
}

/* Deletes what lies below dfd on device dev, as switch_root(8) does: the initramfs is
 * RAM that nothing else would free. A directory on another device is a mount point and
 * is left alone. Takes dfd. Returns the number of bytes of files removed. */
static unsigned long long remove_tree(int dfd, dev_t dev)
{
	unsigned long long freed = 0;
	struct dirent *de;
	struct stat st;
	DIR *d;

	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	while ((de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    st.st_dev != dev)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				freed += remove_tree(sub, dev);
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0)
				log_debug("root: rmdir %s: %m", de->d_name);
		} else {
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				freed += (unsigned long long)st.st_size;
			else
				log_debug("root: unlink %s: %m", de->d_name);
		}
	}
	closedir(d);
	return freed;
}

void root_switch(const struct root *r)
{
	static const char *const moved[] = {"/dev", "/proc", "/sys", "/run"};
	unsigned long long freed = 0;
	struct stat old, new;
	struct statfs sfs;
	char target[64];
	int fd;

	if (stat("/", &old) < 0 || stat(ROOT_MOUNT, &new) < 0)
		refuse("switch_root: stat / or %s: %s", ROOT_MOUNT, strerror(errno));
	if (old.st_dev == new.st_dev)
		refuse("switch_root: %s is not a mount point", ROOT_MOUNT);

	/* The API filesystems (with what is mounted below them) go along: the kernel's
	 * devices, the TPM, cgroups and /run's state stay as they are. */
	for (size_t i = 0; i < ARRAY_SIZE(moved); i++) {
		snprintf(target, sizeof(target), "%s%s", ROOT_MOUNT, moved[i]);
		if (mount(moved[i], target, NULL, MS_MOVE, NULL) < 0)
			refuse("switch_root: cannot move %s to %s: %s. The root image "
			       "must have an empty %s directory.",
			       moved[i], target, strerror(errno), moved[i]);
	}

	/* Keep a handle on the initramfs to empty it once it is out of sight. */
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		refuse("switch_root: open /: %s", strerror(errno));
	if (chdir(ROOT_MOUNT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 ||
	    chroot(".") < 0 || chdir("/") < 0)
		refuse("switch_root: cannot make %s the root: %s", ROOT_MOUNT,
		       strerror(errno));

	/* Only ever empty the RAM filesystem the kernel unpacked the initrd into. cvminit
	 * keeps running from its mapped pages; nothing needs /init after this. */
	if (fstatfs(fd, &sfs) == 0 && ((unsigned long)sfs.f_type == RAMFS_MAGIC ||
				       (unsigned long)sfs.f_type == TMPFS_MAGIC))
		freed = remove_tree(fd, old.st_dev);
	else {
		log_warn("root: the old root is not a ramfs/tmpfs: not emptying it");
		close(fd);
	}
	log_info("root: switched to the verified root (erofs on %s, roothash %s); "
		 "initramfs emptied (%llu KiB freed)",
		 r->node, r->hash_hex, freed / 1024);
}
