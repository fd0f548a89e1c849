/* cvm-join's per-node store (join-store.h): the decision rules, the node file's format
 * and parser, durable writes, and the operator's enrolment marker. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../lib/file.h"
#include "../lib/hex.h"
#include "../lib/util.h"
#include "join-store.h"

enum join_verdict join_decide(const struct join_node *stored, bool corrupt, bool enrol,
			      const struct join_node *seen, char *reason, size_t n)
{
	unsigned long long g = (unsigned long long)seen->generation;

	if (enrol) {
		snprintf(reason, n, "ENROLLED by the operator (generation %llu)", g);
		return JOIN_ACCEPT_ENROLLED;
	}
	if (corrupt) {
		snprintf(reason, n,
			 "REFUSED: the join service's record of this node is corrupt "
			 "(generation %llu)",
			 g);
		return JOIN_REFUSE_CORRUPT;
	}
	if (!stored) {
		if (seen->generation == 1) {
			snprintf(reason, n, "ENROLLED: a new node at generation 1");
			return JOIN_ACCEPT_NEW;
		}
		snprintf(
			reason, n,
			"REFUSED: unknown node at generation %llu (a new node is enrolled "
			"at generation 1 only)",
			g);
		return JOIN_REFUSE_UNKNOWN;
	}
	if (memcmp(stored->volume_key, seen->volume_key, sizeof(seen->volume_key)) != 0) {
		snprintf(reason, n,
			 "REFUSED: swapped state volume (another volume key than at "
			 "generation %llu)",
			 (unsigned long long)stored->generation);
		return JOIN_REFUSE_SWAPPED;
	}
	if (seen->generation == 0) {
		snprintf(
			reason, n,
			"REFUSED: generation counter lost (generation 0, last seen %llu)",
			(unsigned long long)stored->generation);
		return JOIN_REFUSE_LOST;
	}
	if (seen->generation > stored->generation) {
		snprintf(reason, n, "fresh (generation %llu, last seen %llu)", g,
			 (unsigned long long)stored->generation);
		return JOIN_ACCEPT_NEWER;
	}
	if (seen->generation == stored->generation &&
	    streq(seen->boot_id, stored->boot_id)) {
		snprintf(reason, n,
			 "a retry of the same boot (generation %llu, boot ID %s)", g,
			 seen->boot_id);
		return JOIN_ACCEPT_RETRY;
	}
	snprintf(reason, n, "REFUSED: rolled back (generation %llu, last seen %llu)", g,
		 (unsigned long long)stored->generation);
	return JOIN_REFUSE_ROLLBACK;
}

static const char magic[] = "cvm-join node v1\n";

int join_store_format(const struct join_node *nd, char *out, size_t n)
{
	char hex[65];
	int k;

	hex_encode(nd->volume_key, sizeof(nd->volume_key), hex);
	k = snprintf(out, n, "%sgeneration %llu\nboot_id %s\nvolume_key %s\n", magic,
		     (unsigned long long)nd->generation, nd->boot_id, hex);
	return k < 0 || (size_t)k >= n ? -ENOBUFS : k;
}

int join_store_parse(const char *buf, size_t len, struct join_node *nd)
{
	static const char *const keys[3] = {"generation ", "boot_id ", "volume_key "};
	const char *p = buf, *e = buf + len, *val[3];
	size_t m = strlen(magic), vlen[3];
	char rec[GENERATION_CONTENT_MAX + 8];
	int k;

	/* No NUL anywhere: the values below go through %.*s, which would stop at one (the
	 * fuzz target found "generation 8\0\0\05" taken for 8). */
	if (len < m || memcmp(buf, magic, m) != 0 || memchr(buf, '\0', len))
		return -EBADMSG;
	p += m;
	for (size_t i = 0; i < 3; i++) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		size_t kl = strlen(keys[i]);

		if (!nl || (size_t)(nl - p) < kl || memcmp(p, keys[i], kl) != 0)
			return -EBADMSG;
		val[i] = p + kl;
		vlen[i] = (size_t)(nl - p) - kl;
		p = nl + 1;
	}
	if (p != e || vlen[0] > 18 || vlen[1] != GENERATION_BOOT_LEN || vlen[2] != 64)
		return -EBADMSG;
	/* The generation and boot ID in the record's grammar: one parser for both. */
	k = snprintf(rec, sizeof(rec), "generation=%.*s boot_id=%.*s", (int)vlen[0],
		     val[0], (int)vlen[1], val[1]);
	if (k < 0 || (size_t)k >= sizeof(rec) ||
	    generation_content_parse((const uint8_t *)rec, (size_t)k, &nd->generation,
				     nd->boot_id) < 0)
		return -EBADMSG;
	for (size_t i = 0; i < 64; i++)
		if (!((val[2][i] >= '0' && val[2][i] <= '9') ||
		      (val[2][i] >= 'a' && val[2][i] <= 'f')))
			return -EBADMSG;
	{
		char hex[65];

		memcpy(hex, val[2], 64);
		hex[64] = '\0';
		if (hex_decode(hex, nd->volume_key, sizeof(nd->volume_key)) != 32)
			return -EBADMSG;
	}
	return 0;
}

bool join_node_id_valid(const char *id)
{
	if (strlen(id) != JOIN_NODE_ID_LEN)
		return false;
	for (size_t i = 0; i < JOIN_NODE_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static int path_of(char *out, size_t n, const char *dir, const char *id, const char *ext)
{
	if (!join_node_id_valid(id))
		return -EINVAL;
	return snprintf(out, n, "%s/%s%s", dir, id, ext) >= (int)n ? -ENAMETOOLONG : 0;
}

int join_store_load(const char *dir, const char *id, struct join_node *nd)
{
	char path[4096], buf[512];
	ssize_t n;
	int r = path_of(path, sizeof(path), dir, id, "");

	if (r < 0)
		return r;
	n = read_file_text(path, buf, sizeof(buf));
	if (n == -EFBIG)
		return -EBADMSG;
	if (n < 0)
		return (int)n;
	return join_store_parse(buf, (size_t)n, nd);
}

int join_store_save(const char *dir, const char *id, const struct join_node *nd)
{
	char path[4096], text[512];
	int r = path_of(path, sizeof(path), dir, id, ""), n;

	if (r < 0)
		return r;
	n = join_store_format(nd, text, sizeof(text));
	if (n < 0)
		return n;
	return write_file_replace(path, text, (size_t)n, 0600);
}

int join_enrol_arm(const char *dir, const char *id)
{
	char path[4096];
	int r = path_of(path, sizeof(path), dir, id, ".enrol");

	return r < 0 ? r : write_file_replace(path, "enrol\n", 6, 0600);
}

bool join_enrol_pending(const char *dir, const char *id)
{
	char path[4096];

	return path_of(path, sizeof(path), dir, id, ".enrol") == 0 &&
	       access(path, F_OK) == 0;
}

int join_enrol_clear(const char *dir, const char *id)
{
	char path[4096];
	int r = path_of(path, sizeof(path), dir, id, ".enrol");

	if (r < 0)
		return r;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return fsync_dir(dir);
}
