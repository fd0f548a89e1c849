/* measurements.json: the reference values an image ships with (written by `cvm-measure
 * predict`, read by `cvm-measure attest`); the format is docs/attestation.md's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/digest.h"
#include "eventlog.h"

#define MEAS_PCRS	 24
#define MEAS_MAX_RECORDS 16

/*
 * {"4":  {"expected": "<sha256 hex>", "warnOnly": false},
 *  "11": {"expected": "<sha256 hex>", "warnOnly": false},
 *  "0":  {"expected": "<sha256 hex>", "warnOnly": true}, … the firmware's PCRs
 *  "15": {"warnOnly": false,
 *         "replay": [{"event": "cvminit:cmdline", "data": "…", "sha256": "…",
 *                     "sha384": "…"}, …],
 *         "perNode": ["cvminit:state", "cvminit:volume-key"]
 *         [, "expected": "<sha256 hex>"]}}
 *
 * Keys are PCR numbers; "expected" values are in the sha256 bank (64 hex digits), or all
 * in sha384 (96) when written with --bank sha384. "15" has no "expected" unless a node's
 * per-node records were pinned: its image-wide prefix is "replay", the records the node's
 * log must start with, then only per-node events named in "perNode".
 */
struct meas_record {
	char *event;
	char *name; /* NULL: none */
	uint8_t *data;
	size_t data_len;
	bool has_data;
	size_t n_digests;
	struct digest digests[EVENTLOG_MAX_DIGESTS];
};

struct measurements {
	struct {
		bool present;
		bool warn_only;
		bool has_expected;
		uint8_t expected[DIGEST_MAX];
		size_t expected_len; /* 32: sha256; 48: sha384 (predict --bank sha384) */
	} pcr[MEAS_PCRS];
	size_t n_replay; /* PCR 15's image-wide records */
	struct meas_record replay[MEAS_MAX_RECORDS];
	size_t n_per_node;
	char *per_node[4]; /* event names or prefixes ("cvminit:volume-key") */
};

/* Writes m to path atomically (a temporary file, then rename). Returns 0 or -errno. */
int measurements_write(const char *path, const struct measurements *m);
/* Parses a measurements.json. Returns 0, or -EBADMSG with err saying what is wrong
 * (untrusted input: every field is checked). Free m with measurements_free() either way.
 */
int measurements_parse(const char *buf, size_t len, struct measurements *m, char *err,
		       size_t err_len);
void measurements_free(struct measurements *m);
/* Whether event is one "perNode" allows (equal to an entry, or the entry followed by
 * ':'). */
bool measurements_per_node(const struct measurements *m, const char *event);
