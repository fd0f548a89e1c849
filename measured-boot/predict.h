/* PCR prediction: the records OVMF makes for the UKI it starts and the kernel the stub
 * loads (PCR 4), the ones systemd-stub (257) makes for a UKI's sections and cvminit for
 * its boot phases (PCR 11) and for what it acts on (PCR 15), as event log records that
 * replay_log() folds into PCR values. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "eventlog.h"
#include "pe.h"

#define PREDICT_PCR4  4
#define PREDICT_PCR   11
#define PREDICT_PCR15 15

/* The EV_EFI_ACTION event data EDK2's TCG2 driver measures into PCR 4 when the boot
 * manager first starts a boot option (TCG PC Client PFP, "EFI Application" actions). */
#define PREDICT_PCR4_ACTION "Calling EFI Application from Boot Option"
/* … and, at each further attempt, before that string again: the previous boot option
 * failed to load or its application returned. */
#define PREDICT_PCR4_RETURN "Returning from EFI Application from Boot Option"
/* The most failed boot options predict_pcr4_records() takes. */
#define PREDICT_PCR4_MAX_FAILED 16

/* The config file cvminit reads from its initrd and measures as cvminit:config. */
#define PREDICT_CONFIG_PATH "/etc/cvminit/cvminit.conf"
/* Longest cvminit:root and cvminit:state data, with the NUL. */
#define PREDICT_ROOT_MAX  192
#define PREDICT_STATE_MAX 256

/* The sections systemd-stub measures into PCR 11, in the order it measures them: the
 * order of its unified-section table (src/fundamental/uki.h), without .pcrsig, which
 * holds signatures of the result and so is not measured. NULL-terminated. */
extern const char *const predict_stub_sections[];

/* The phases cvminit measures into PCR 11 after the stub (DESIGN "What cvminit
 * measures"), in boot order: enter-initrd leave-initrd ready shutdown. NULL-terminated.
 */
extern const char *const predict_phases[];

/* cvminit's PCR 15 events, in the order it measures them. NULL-terminated. */
extern const char *const predict_pcr15_events[];

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

/* The kernel command line systemd-stub hands the kernel from a UKI's .cmdline, which is
 * what /proc/cmdline shows without its newline: the section's bytes up to the first NUL
 * (VirtualSize, zero-filled), with systemd's mangle_stub_cmdline() applied: leading and
 * trailing whitespace and control characters dropped, inner control characters turned
 * into spaces. Sets *ret (malloc'd). -ENOENT when the UKI has no .cmdline (VirtualSize 0
 * counts as absent); -ENOMEM. */
int predict_uki_cmdline(const struct pe_file *pe, char **ret);
/* mangle_stub_cmdline() on len bytes (stopping at a NUL); malloc'd, NULL on ENOMEM. */
char *predict_mangle_cmdline(const uint8_t *data, size_t len);

/* The data of cvminit:root for a command line, byte-identical to cvminit's (init/root.c
 * root_parse()): "verity:<roothash>:<data partuuid>:<hash partuuid>:erofs", the PARTUUIDs
 * being the hash's first and last 128 bits as lower-case 8-4-4-4-12 UUIDs. Returns 1 with
 * out filled (len ≥ PREDICT_ROOT_MAX); 0 when the command line has no roothash=; -EINVAL
 * (empty, not 64 lower-case hex digits, unparsable command line) or -EEXIST (given twice)
 * with *why a static sentence: cvminit refuses to boot with such a command line. */
int predict_root_data(const char *cmdline, char *out, size_t len, const char **why);

/* The data of cvminit:state from a LUKS2 header read with libcryptsetup (a partition
 * image or a block device), as init/luks.h luks2_identity() makes it: "luks2:<uuid>:
 * <cipher>-<mode>:<key bits>:<sector size>:<integrity>", integrity "none" or
 * libcryptsetup's name ("hmac(sha256)"), key bits those of the cipher key (the volume key
 * less the integrity key). Returns 0; a negative errno with *why a static sentence (not
 * LUKS2, no keyslot to tell the key size, unreadable). */
int predict_state_from_luks(const char *path, char *out, size_t len, const char **why);
/* Checks a --state string has that shape; 0 or -EINVAL with *why. */
int predict_state_check(const char *state, const char **why);

/* What cvminit measures into PCR 15 (DESIGN "What cvminit measures"). */
struct predict_pcr15 {
	const char *cmdline;   /* /proc/cmdline without its newline */
	const uint8_t *config; /* the config file's bytes; config_len 0 when absent */
	size_t config_len;
	const char *root;  /* cvminit:root data; NULL: no roothash=, no record */
	const char *state; /* cvminit:state data; NULL: not predicted (per node) */
};

/* Appends PCR 15's records in cvminit's order: cvminit:cmdline, cvminit:config,
 * cvminit:root (when root), cvminit:state (when state); no event type. Returns the number
 * of records appended or a negative errno. */
int predict_pcr15_records(const struct predict_pcr15 *in, const uint16_t *algs,
			  size_t n_algs, struct eventlog *log);

/*
 * Appends PCR 4's records for a boot from the UKI pe as an OVMF boot option (no Secure
 * Boot, no shim, no boot manager in between), after failed boot options that failed to
 * load or returned without starting another measured application, in the order EDK2's
 * TCG2 driver and boot manager make them:
 *   "boot-option"  EV_EFI_ACTION: the digest of PREDICT_PCR4_ACTION (no NUL)
 *   "separator"    EV_SEPARATOR: of 4 zero bytes (the end of the pre-OS measurements)
 * then for each failed boot option
 *   "returning"    EV_EFI_ACTION: the digest of PREDICT_PCR4_RETURN
 *   "boot-option"  EV_EFI_ACTION: PREDICT_PCR4_ACTION again
 * then
 *   "uki"          EV_EFI_BOOT_SERVICES_APPLICATION: the UKI's Authenticode image hash
 *   ".linux"       EV_EFI_BOOT_SERVICES_APPLICATION: the Authenticode image hash of the
 *                  kernel the stub hands LoadImage, the .linux section as loaded
 *                  (VirtualSize bytes, zero-filled past SizeOfRawData)
 * with the digest in each bank of algs (event the label, event_type the TCG name).
 * Returns the number of records appended (4 + 2 * failed); -EINVAL when failed exceeds
 * PREDICT_PCR4_MAX_FAILED; -ENOENT when there is no .linux; with *why
 * (a static sentence) -EBADMSG when the UKI's headers do not allow its Authenticode hash
 * and -ENOEXEC when .linux is not a PE image they allow it for (the stub of systemd 257
 * starts the kernel only as a PE image); -EFBIG when the zero fill exceeds
 * PREDICT_MAX_ZERO_FILL; -ENOMEM; a digest error.
 */
int predict_pcr4_records(const struct pe_file *pe, unsigned failed, const uint16_t *algs,
			 size_t n_algs, struct eventlog *log, const char **why);

/* cvminit's last PCR 15 record: HMAC(bank's hash, the volume key, label) with the label
 * "cvminit:volume-key:<LUKS2 uuid>" and event type "volume-key" (init/state.c). It is per
 * node and cannot be computed without the key, so a verifier takes it from the node's
 * event log the first time it sees the node and pins it. */
#define PREDICT_VOLUME_KEY_EVENT "cvminit:volume-key:"
#define PREDICT_VOLUME_KEY_TYPE	 "volume-key"

/* Appends to log a copy of node's one extended PCR 15 volume-key record, its digests
 * reduced to the banks algs (in that order). state is the cvminit:state data: the
 * record's label must name its UUID. Returns 0, or with *why a static sentence: -ENOENT
 * (no such record), -EEXIST (more than one), -EXDEV (it names another volume), -ENODATA
 * (a bank of algs is missing from it); -ENOMEM. */
int predict_volume_key_record(const struct eventlog *node, const char *state,
			      const uint16_t *algs, size_t n_algs, struct eventlog *log,
			      const char **why);

/* The same for the node's one extended PCR 15 cvminit:generation record (generation.h),
 * measured after the volume key once /var is mounted: per boot, so pinned from the log of
 * the boot whose PCR 15 is predicted. Returns 0, -ENOENT (none: a node image from before
 * the counter), -EEXIST, -ENODATA, -ENOMEM as above. */
int predict_generation_record(const struct eventlog *node, const uint16_t *algs,
			      size_t n_algs, struct eventlog *log, const char **why);
