/* cvm-join's per-node store (--state DIR): one file per node named by its EK hash, the
 * rules that accept or refuse a join by generation, boot ID and volume key, enrolment. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "generation.h"

#define JOIN_NODE_ID_LEN 64 /* hex of sha256(EK modulus) */

/* What the store keeps of a node, and what a verified join request shows. */
struct join_node {
	uint64_t generation;
	char boot_id[GENERATION_BOOT_LEN + 1];
	uint8_t volume_key[32]; /* sha256 digest of the cvminit:volume-key record */
};

enum join_verdict {
	JOIN_ACCEPT_NEWER,    /* generation > stored: store it */
	JOIN_ACCEPT_RETRY,    /* == stored, same boot ID: a retry of that boot */
	JOIN_ACCEPT_NEW,      /* unknown node at generation 1: enrolled */
	JOIN_ACCEPT_ENROLLED, /* the operator's enrolment: any key and generation */
	JOIN_REFUSE_ROLLBACK,
	JOIN_REFUSE_SWAPPED,
	JOIN_REFUSE_LOST,    /* generation 0: the node's counter was lost */
	JOIN_REFUSE_UNKNOWN, /* unknown node above generation 1 */
	JOIN_REFUSE_CORRUPT, /* the store's file for it does not parse */
};

static inline bool join_verdict_accepts(enum join_verdict v)
{
	return v <= JOIN_ACCEPT_ENROLLED;
}

/*
 * The rules (docs/attestation.md, "Freshness"); stored NULL: no file for the node;
 * corrupt: its file does not parse; enrol: the operator armed `cvm-join enrol` for it.
 *   enrol                                  → ENROLLED (whatever else holds)
 *   corrupt                                → REFUSE_CORRUPT (never reset)
 *   unknown: generation 1 → NEW; otherwise → REFUSE_UNKNOWN
 *   another volume key                     → REFUSE_SWAPPED
 *   generation 0                           → REFUSE_LOST
 *   generation > stored                    → NEWER
 *   == stored and the same boot ID         → RETRY
 *   otherwise                              → REFUSE_ROLLBACK
 * reason gets the line sent to the node and logged ("REFUSED: rolled back (generation
 * G, last seen S)", …) for a refusal, or what was accepted. Pure. */
enum join_verdict join_decide(const struct join_node *stored, bool corrupt, bool enrol,
			      const struct join_node *seen, char *reason, size_t n);

/* The node file's text (join_store_format) and its parser: "cvm-join node v1\n"
 * "generation G\nboot_id UUID\nvolume_key HEX64\n", nothing else. 0 or -EBADMSG. */
int join_store_format(const struct join_node *nd, char *out, size_t n);
int join_store_parse(const char *buf, size_t len, struct join_node *nd);

/* Whether id is 64 lowercase hex digits (a node file's name). */
bool join_node_id_valid(const char *id);
/* Reads dir/<id>: 0, -ENOENT (unknown node), -EBADMSG (corrupt), or -errno. */
int join_store_load(const char *dir, const char *id, struct join_node *nd);
/* Writes dir/<id> durably (tmp, fsync, rename, directory fsync): 0 or -errno. */
int join_store_save(const char *dir, const char *id, const struct join_node *nd);
/* The operator's enrolment: dir/<id>.enrol, made durably by arm, tested by pending,
 * removed (and the removal made durable) by clear once the join it allows is stored. */
int join_enrol_arm(const char *dir, const char *id);
bool join_enrol_pending(const char *dir, const char *id);
int join_enrol_clear(const char *dir, const char *id);
