/* The measurement event log: one record per extend, in the TCG Canonical Event Log JSON
 * form that systemd writes to /run/log/systemd/tpm2-measure.log, so its tools can replay
 * ours. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/digest.h"

#define EVENTLOG_MAX_DIGESTS 8
#define EVENTLOG_MAX_PCR     23

/*
 * A record is JSON-SEQ (RFC 7464): 0x1E, one JSON object, "\n". Field names follow TCG
 * CEL-JSON and systemd (src/shared/tpm2-util.c writes them, src/pcrlock/pcrlock.c reads
 * them):
 *
 *   {"recnum":0,"pcr":15,["rtmr":2,]
 *    "digests":[{"hashAlg":"sha256","digest":"<hex>"},…],
 *    "content_type":"systemd",
 *    "content":{"string":"cvminit:cmdline",["eventType":"phase",]
 *               ["data":"<the measured bytes>" | "dataHex":"<hex of them>",]
 *               ["name":"/etc/cvminit/cvminit.conf",]"extended":true}}
 *
 * "digests" are the digests of the measured data (what was extended), one per bank.
 * "data" is that data itself, so a verifier recomputes every digest from the log alone
 * and can show what was measured (the command line a node booted with): a JSON string
 * when the bytes are UTF-8 without NUL, else "dataHex". "name" says where the data came
 * from (the config's path). The digests are not hashes of the logged string, so PCR
 * values stay what they were (docs/attestation.md says why). Records of event type
 * volume-key have no data: their digests are HMACs keyed with a secret.
 * Ours on top of systemd's: "content.extended" says whether the extend reached the TPM or
 * the RTMR; replay skips records where it is false, and a record without it (systemd's)
 * counts as extended. "rtmr" names the TDX register a PCR was mapped to; the record keeps
 * "pcr".
 */
struct eventlog_record {
	uint64_t recnum;
	unsigned pcr;
	int rtmr; /* -1: not a TDX record */
	size_t n_digests;
	struct digest digests[EVENTLOG_MAX_DIGESTS];
	char *event;	  /* content.string */
	char *event_type; /* content.eventType, NULL when absent */
	/* content.data (or dataHex) and content.name. The writer logs data when has_data
	 * (the buffer is the caller's); the reader's copy is malloc'ed. */
	uint8_t *data;
	size_t data_len;
	bool has_data;
	char *name;
	bool extended;
	size_t offset; /* reader: byte offset of the record's 0x1E in the log */
};

struct eventlog {
	struct eventlog_record *records;
	size_t n;
};

/* Opens (creating it and its directories) the log for appending: O_APPEND|O_CLOEXEC, and
 * readable, since the next record number is the count of records already there. Returns
 * the fd. */
int eventlog_open(const char *path);
/* Takes and drops the exclusive flock() that makes extend + append one critical section.
 */
int eventlog_lock(int fd);
void eventlog_unlock(int fd);
/* Appends r with one write() while the lock is held; sets r->recnum. Returns 0 or -errno.
 */
int eventlog_append_locked(int fd, struct eventlog_record *r);
/* Locks, appends, unlocks. */
int eventlog_append(int fd, struct eventlog_record *r);

/* Parses a whole log into log->records; returns the record count. On a malformed or
 * truncated record returns -EBADMSG with *bad_offset at its 0x1E (or where one was
 * expected); the records before it stay in log. Free log with eventlog_free() either way. */
int eventlog_parse(const char *buf, size_t len, struct eventlog *log, size_t *bad_offset);
/* Reads path under a shared flock() and parses it; -errno when it cannot be read. */
int eventlog_read(const char *path, struct eventlog *log, size_t *bad_offset);
void eventlog_free(struct eventlog *log);

/* Whether r's content reproduces its digests: data (or, for a record without data, the
 * event string, which is what systemd hashes for its own records) hashed in each bank equals the
 * logged digest. Returns 0 when every digest is reproduced; 1 when one is not (why names
 * the bank); -ENOKEY for a volume-key record (an HMAC nobody can recompute); -ENODATA
 * when the record has no content to check; -EOPNOTSUPP for a bank we cannot hash. */
int eventlog_check_content(const struct eventlog_record *r, char *why, size_t why_len);

/* The records from index first on that reached PCR pcr itself (extended, not folded into
 * a TDX RTMR) and that match says are wanted: how many, and the first of them in *found
 * (NULL when none). A node's per-boot records (its volume key, its generation) are one
 * each; the callers refuse two. */
unsigned eventlog_pcr_records(const struct eventlog *log, size_t first, unsigned pcr,
			      bool (*match)(const struct eventlog_record *r),
			      const struct eventlog_record **found);

struct json_object;
/* Adds v under key to the JSON object o, taking v (freed on failure); 0 or -ENOMEM (also
 * when v is NULL: a failed allocation). Shared by the log and measurements.json. */
int json_add(struct json_object *o, const char *key, struct json_object *v);
