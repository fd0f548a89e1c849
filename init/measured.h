/* PID 1's measured boot (init/measured.c): the measurement backend, what is measured
 * during boot, and the comparison of each value with the initrd's reference values. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "settings.h"

struct measurer;

/* Finds the backend the platform rule trusts (the TPM, TDX RTMRs or none), reports the
 * PCRs as the firmware left them and measures "enter-initrd". Refuses two TPMs, or one
 * shown not to be the SVSM's. */
void measured_setup(void);
/* After the config: refuses a boot without a backend unless measure=optional, and a
 * config whose tpm= changed between the peek and the measured read. */
void measured_require(const struct settings *s);
/* The backend; NULL when there is none (measure=optional). */
struct measurer *measured_backend(void);

/* Extends pcr with data and logs the record; during boot a failed extend is a refusal.
 * _named: with the name of what was measured (the config's path) in its log record. */
void boot_measure_named(unsigned pcr, const char *event, const char *name,
			const void *data, size_t len);
void boot_measure(unsigned pcr, const char *event, const void *data, size_t len);
/* PCR 11's boot phases: "enter-initrd", "leave-initrd", "ready". */
void boot_measure_phase(const char *phase);
/* Logs PCR 11 and 15 (sha256, sha384): what a verifier compares with the prediction. */
void measured_report_pcrs(const char *when);

/* Loads the initrd's reference values (absent: measured but not compared locally). */
void ref_load(void);
/* Each compares a measured value with its reference and refuses the boot on a drift. */
void ref_check_cmdline(const char *cmdline);
void ref_check_config(const char *text, size_t len, bool absent);
/* ident: the cvminit:root data, NULL when the command line names no root. */
void ref_check_root(const char *ident);
