/* PCR 11 prediction: the records systemd-stub (257) makes for a UKI's sections and the
 * ones cvminit makes for its boot phases, as event log records that replay_log() folds
 * into PCR values. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "eventlog.h"
#include "pe.h"

#define PREDICT_PCR 11

/* The sections systemd-stub measures into PCR 11, in the order it measures them: the
 * order of its unified-section table (src/fundamental/uki.h), without .pcrsig, which
 * holds signatures of the result and so is not measured. NULL-terminated. */
extern const char *const predict_stub_sections[];

/* The phases cvminit measures into PCR 11 after the stub (DESIGN "What cvminit
 * measures"), in boot order. NULL-terminated. */
extern const char *const predict_phases[];

/* Largest VirtualSize we materialise when it exceeds SizeOfRawData (the zero fill). */
#define PREDICT_MAX_ZERO_FILL (1u << 30)

/*
 * Appends to log what systemd-stub measures for the UKI pe: for each name of
 * predict_stub_sections whose first section-table entry has a non-zero VirtualSize (the
 * stub's "section is set"), two PCR 11 records:
 *   "uki-section-name:<name>"  data: the name's bytes and its NUL ("\.linux\0", 7 bytes)
 *   "uki-section:<name>"       data: the section as loaded, VirtualSize bytes from its
 *                              VirtualAddress: min(VirtualSize, SizeOfRawData) bytes of
 *                              file data from PointerToRawData, then zeros
 * with the digest in each bank of algs. Returns the number of records appended;
 * -EOPNOTSUPP for a multi-profile UKI (a .profile section), whose measured set depends on
 * the profile chosen at boot; -ENOENT when there is no .linux; -EFBIG when the zero fill
 * exceeds PREDICT_MAX_ZERO_FILL; -ENOMEM; a digest error.
 */
int predict_stub_records(const struct pe_file *pe, const uint16_t *algs, size_t n_algs,
			 struct eventlog *log);

/* Appends the PCR 11 record of a boot phase as systemd-pcrphase measures it: the phase
 * string's bytes without a NUL; event type "phase". Returns 0 or a negative errno. */
int predict_phase_record(const char *phase, const uint16_t *algs, size_t n_algs,
			 struct eventlog *log);

/* Appends a PCR record for arbitrary data (the building block of the two above). */
int predict_append(struct eventlog *log, unsigned pcr, const char *event,
		   const char *event_type, const void *data, size_t len,
		   const uint16_t *algs, size_t n_algs);
