/* `cvm-measure attest` (attest-cmd.c): the verifier's command, called from cvm-measure's
 * main(). */
#pragma once

/* Returns the exit status (0 attested, 1 mismatch, 2 usage, 3 refused, 4 unreachable). */
int cmd_attest(int argc, char **argv);

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "generation.h"

struct measurements;

/* What the join service learns of a node from its verified evidence only: the EK
 * certificate that chains to --ek-ca (its AK bound to it), and the records of cvminit's
 * log that replay to the quoted PCR 15 with contents that are what was hashed. */
struct attest_peer {
	uint8_t ek_hash[32]; /* sha256 of the EK's RSA modulus: the node's identity */
	char node_id[65];    /* its hex */
	bool has_volume_key; /* exactly one extended cvminit:volume-key:<uuid> record */
	uint8_t volume_key
		[32];	     /* its sha256 digest (the HMAC keyed with the volume key) */
	bool has_generation; /* exactly one extended cvminit:generation record */
	uint64_t generation;
	char boot_id[GENERATION_BOOT_LEN + 1];
	char why[160]; /* when a record is missing, repeated or malformed */
};

/* The same checks on a connection a node opened (cvm-join): evidence over nonce asked on
 * fd, then the AK binding, the logs and measurements.json, each finding printed on
 * stdout. Returns the exit status cmd_attest would (0 only when attested); on 0, peer is
 * filled from the verified evidence (peer may be NULL). */
int attest_check_peer(int fd, const uint8_t *nonce, const struct measurements *m,
		      const uint8_t *cas, size_t cas_len, struct attest_peer *peer);

/* Fills peer's records from a verified log (records from index first on are cvminit's):
 * exported for the unit tests. */
struct eventlog;
void attest_peer_records(const struct eventlog *log, size_t first,
			 struct attest_peer *peer);
