/* dm-verity with libcryptsetup: the hash partition's superblock, a check of the root hash
 * against the top of the hash tree, and the read-only mapping the root is mounted from.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opens data_dev as /dev/mapper/<name>, verified by the hash tree on hash_dev whose top
 * must hash to roothash; corruption found later restarts the node (panic: panics it, so a
 * kernel with panic=0 stops instead of looping through reboots). Writes the mapped
 * device's node (waiting up to timeout_s for it) to node. Returns 0, -EKEYREJECTED when
 * the hash tree does not match roothash, -EPROTONOSUPPORT for a superblock that is not
 * sha256, another negative errno on other failures (each logged). */
int verity_open(const char *name, const char *data_dev, const char *hash_dev,
		const uint8_t *roothash, size_t hash_len, bool panic, unsigned timeout_s,
		char *node, size_t nodelen);
