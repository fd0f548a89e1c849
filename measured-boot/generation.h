/* The node's generation counter (docs/attestation.md, "Freshness"): its file on the state
 * volume, the rule for the next value, its durable write and its PCR 15 record's content. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The PCR 15 record cvminit measures after /var is mounted, before any service starts.
 * Its content (logged as data, so a verifier recomputes its digests) is
 * "generation=<G> boot_id=<the kernel's boot ID>". Per node, like the volume key. */
#define GENERATION_EVENT    "cvminit:generation"
#define GENERATION_DIR	    "/var/lib/cvminit"
#define GENERATION_FILE	    "generation"
#define GENERATION_BOOT_ID  "/proc/sys/kernel/random/boot_id"
#define GENERATION_MAX	    UINT64_C(999999999999999999) /* 18 digits: no overflow */
#define GENERATION_BOOT_LEN 36				 /* a UUID's text form */
#define GENERATION_CONTENT_MAX                                                           \
	(sizeof("generation= boot_id=") - 1 + 18 + GENERATION_BOOT_LEN + 1)

/* The counter file: one decimal number 1..GENERATION_MAX (0 for "lost", below) without
 * leading zeros, then "\n", nothing else. Returns 0 or -EBADMSG. */
int generation_parse_file(const char *buf, size_t len, uint64_t *g);

/*
 * The generation of this boot, from what reading the file gave (read_r: its length, or
 * -ENOENT when absent, another -errno when unreadable) and whether the volume is fresh
 * (made by this boot or a first boot that did not finish: the LUKS2 token's initialized
 * flag is still false):
 *   file holds G                → G + 1
 *   absent on a fresh volume    → 1
 *   absent on an initialized volume, malformed, unreadable, or at GENERATION_MAX
 *                               → 0: the counter is lost. Never 1: a reset would look
 *                                 like a new node; the join service refuses generation 0
 *                                 until an operator re-enrols the node.
 * why gets a sentence for the 0 cases (empty otherwise). Pure. */
uint64_t generation_next(ssize_t read_r, const char *buf, bool fresh, char *why,
			 size_t why_len);

/* Writes g to dir/GENERATION_FILE durably: a temporary file in dir, fsync, rename over
 * the file, fsync of dir. Returns 0 or -errno. */
int generation_store(const char *dir, uint64_t g);

/* Reads dir's counter, decides with generation_next() and stores the result: what init
 * does after /var is mounted. *g gets the generation to measure. Returns 0, or -errno
 * when the new value could not be stored (the caller must not measure it then). */
int generation_bump(const char *dir, bool fresh, uint64_t *g, char *why, size_t why_len);

/* The record's content for g and boot_id (36 characters); the length or -EINVAL. */
int generation_content(uint64_t g, const char *boot_id, char *out, size_t n);
/* Parses a record's content exactly as generation_content() writes it: 0 or -EBADMSG.
 * boot_id gets GENERATION_BOOT_LEN characters and a NUL. */
int generation_content_parse(const uint8_t *p, size_t n, uint64_t *g,
			     char boot_id[GENERATION_BOOT_LEN + 1]);

struct measurer;
/* The boot's step (generation-measure.c, linked where measure() is: PID 1 and the host
 * test helper, never the host tools): the boot ID from boot_id_path, then
 * generation_bump() in dir, then the cvminit:generation record into PCR 15. *g gets the
 * generation; why a sentence for a lost counter (generation 0) or for an error. Returns 0,
 * or -errno with why (nothing measured when the counter could not be stored). */
int generation_measure(struct measurer *m, const char *dir, bool fresh,
		       const char *boot_id_path, uint64_t *g, char *why, size_t why_len);
