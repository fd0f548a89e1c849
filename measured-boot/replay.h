/* Replaying an event log into the PCR values it predicts, and finding the first record a
 * set of PCR values read from a TPM does not reflect (the basis of `cvm-measure verify`).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/digest.h"
#include "eventlog.h"

#define REPLAY_PCRS 24

struct replay_pcrs {
	uint16_t alg;
	uint16_t size;
	uint8_t v[REPLAY_PCRS][DIGEST_MAX];
};

/* Sets p to the TPM's reset values in bank alg: 0xff… for PCRs 17–22, zeros else, and
 * PCR 0 ending in the locality the TPM was started from (the firmware log's
 * StartupLocality event; 0 without one). Returns the digest size or -EOPNOTSUPP. */
int replay_reset(struct replay_pcrs *p, uint16_t alg, unsigned pcr0_locality);
/* Extends p, in its bank, with the records of log that reached a PCR: records with
 * "extended": false and TDX (RTMR) records are skipped. Returns the digest size,
 * -ENODATA when a record lacks the bank. */
int replay_apply(const struct eventlog *log, struct replay_pcrs *p);
/* replay_reset (locality 0) then replay_apply: PCRs 0–23 in bank alg after the log.
 * Returns the digest size, -EOPNOTSUPP for an unknown alg, -ENODATA when a record lacks
 * the bank. */
int replay_log(const struct eventlog *log, uint16_t alg, struct replay_pcrs *out);

struct replay_divergence {
	unsigned pcr;
	/* Index in log->records of the first record the PCR does not reflect: the one
	 * after the longest prefix of its records that reproduces the value, or its first
	 * record when no prefix does. SIZE_MAX when the PCR has no record to blame
	 * (someone extended it without logging). */
	size_t record;
	/* Whether some prefix of the PCR's records (maybe the empty one) reproduces the
	 * value: then record is the one after it. Else record is the PCR's first record,
	 * and either one of them is not what was extended or the PCR was also extended
	 * without a record. */
	bool prefix_matched;
	size_t n_records; /* the PCR's records in the log */
};

/* Compares the PCRs in mask (bit n = PCR n) of actual with the replay of log in actual's
 * bank. Returns 0 when all match; 1 with *ret set to the divergence that comes first in
 * the log (one with no record to blame comes last); or a negative errno as replay_log. */
int replay_verify(const struct eventlog *log, const struct replay_pcrs *actual,
		  uint32_t mask, struct replay_divergence *ret);
/* The same, starting from start (replay_reset with a locality) instead of the reset
 * values; start must be in actual's bank. */
int replay_verify_from(const struct eventlog *log, const struct replay_pcrs *start,
		       const struct replay_pcrs *actual, uint32_t mask,
		       struct replay_divergence *ret);
