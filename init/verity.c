/* dm-verity: the superblock read by libcryptsetup, the root hash checked against the top
 * of the hash tree in userspace, then the kernel mapping with restart_on_corruption. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <libcryptsetup.h>

#include "../lib/digest.h"
#include "../lib/file.h"
#include "../lib/hex.h"
#include "log.h"
#include "verity.h"

#define VERITY_SUPERBLOCK_SIZE 512
#define VERITY_BLOCK_MAX       65536

/* The kernel only checks the root hash when a block is read, and with
 * restart_on_corruption a mismatch there restarts the node without a word. The root hash
 * is the hash of the tree's top block (salt first for format 1, last for format 0), so
 * one block read here turns a wrong root hash into a clear refusal before activation. */
static int check_top_block(const struct crypt_params_verity *vp, const char *data_dev,
			   const char *hash_dev, const uint8_t *roothash, size_t hash_len)
{
	_cleanup_(digest_ctx_free) struct digest_ctx ctx = {0};
	_cleanup_free_ uint8_t *block = NULL;
	_cleanup_close_ int fd = -1;
	const char *dev;
	uint8_t digest[32];
	char got[65], want[65];
	uint32_t size;
	uint64_t off;
	ssize_t n;
	int r;

	if (!streq(vp->hash_name, "sha256") || hash_len != sizeof(digest)) {
		log_error("verity: %s uses hash %s, only sha256 root hashes are accepted",
			  hash_dev, vp->hash_name);
		return -EPROTONOSUPPORT;
	}
	if (vp->hash_type > 1) {
		log_error("verity: %s has hash format %u (known: 0, 1)", hash_dev,
			  vp->hash_type);
		return -EPROTONOSUPPORT;
	}

	if (vp->data_size <= 1) {
		/* A one-block device has no tree: the root hash is that block's hash. */
		dev = data_dev;
		size = vp->data_block_size;
		off = 0;
	} else {
		/* The top level comes first, in the block after the superblock. */
		dev = hash_dev;
		size = vp->hash_block_size;
		off = vp->hash_area_offset;
		if (!(vp->flags & CRYPT_VERITY_NO_HEADER))
			off += VERITY_SUPERBLOCK_SIZE;
		off = (off + size - 1) / size * size;
	}
	if (size == 0 || size > VERITY_BLOCK_MAX) {
		log_error("verity: %s: block size %u out of range", hash_dev, size);
		return -EINVAL;
	}

	block = malloc(size);
	if (!block)
		return -ENOMEM;
	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return log_errno(-errno, "verity: open %s", dev);
	n = pread(fd, block, size, (off_t)off);
	if (n < 0)
		return log_errno(-errno, "verity: read %s at %llu", dev,
				 (unsigned long long)off);
	if ((size_t)n != size) {
		log_error("verity: %s ends before its top hash block (offset %llu)", dev,
			  (unsigned long long)off);
		return -EIO;
	}

	r = digest_begin(&ctx, DIGEST_ALG_SHA256);
	if (r == 0 && vp->hash_type == 1)
		r = digest_update(&ctx, vp->salt, vp->salt_size);
	if (r == 0)
		r = digest_update(&ctx, block, size);
	if (r == 0 && vp->hash_type == 0)
		r = digest_update(&ctx, vp->salt, vp->salt_size);
	if (r == 0)
		r = digest_end(&ctx, digest);
	if (r < 0)
		return log_errno(r, "verity: hash the top hash block of %s", hash_dev);

	if (memcmp(digest, roothash, sizeof(digest)) != 0) {
		hex_encode(digest, sizeof(digest), got);
		hex_encode(roothash, sizeof(digest), want);
		log_error("verity: top hash block of %s hashes to %s, roothash= is %s",
			  hash_dev, got, want);
		return -EKEYREJECTED;
	}
	return 0;
}

int verity_open(const char *name, const char *data_dev, const char *hash_dev,
		const uint8_t *roothash, size_t hash_len, bool panic, unsigned timeout_s,
		char *node, size_t nodelen)
{
	struct crypt_params_verity params = {.flags = 0, .hash_area_offset = 0};
	struct crypt_params_verity vp;
	struct crypt_device *cd = NULL;
	uint64_t end;
	int r;

	r = crypt_init_data_device(&cd, hash_dev, data_dev);
	if (r < 0)
		return log_errno(r, "verity: open %s (hash tree) with %s (data)",
				 hash_dev, data_dev);
	r = crypt_load(cd, CRYPT_VERITY, &params);
	if (r < 0) {
		log_errno(r, "verity: no valid verity superblock on %s", hash_dev);
		goto out;
	}
	r = crypt_get_verity_info(cd, &vp);
	if (r < 0) {
		log_errno(r, "verity: read the parameters of %s", hash_dev);
		goto out;
	}
	log_info(
		"verity: %s: %s, format %u, %llu data blocks of %u bytes, hash blocks of "
		"%u bytes, salt %u bytes",
		hash_dev, vp.hash_name, vp.hash_type, (unsigned long long)vp.data_size,
		vp.data_block_size, vp.hash_block_size, vp.salt_size);
	r = check_top_block(&vp, data_dev, hash_dev, roothash, hash_len);
	if (r < 0)
		goto out;

	r = crypt_activate_by_volume_key(
		cd, name, (const char *)roothash, hash_len,
		CRYPT_ACTIVATE_READONLY | (panic ? CRYPT_ACTIVATE_PANIC_ON_CORRUPTION
						 : CRYPT_ACTIVATE_RESTART_ON_CORRUPTION));
	if (r < 0) {
		log_errno(r, "verity: activate %s", name);
		goto out;
	}

	end = now_ms() + (uint64_t)timeout_s * 1000;
	while ((r = dm_find_node(name, node, nodelen)) < 0 && now_ms() < end) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (r < 0)
		log_error("verity: %s is active but no device node appeared in "
			  "/dev/mapper or as /dev/dm-N within %u s",
			  name, timeout_s);
out:
	crypt_free(cd);
	return r;
}
