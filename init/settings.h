/* cvminit's settings: defaults, the cvminit.* keys of the kernel command line, and the
 * one function that validates a key=value pair for every source (cmdline, config). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "../lib/cmdline.h" /* cmdline_get(), for the callers of cmdline_parse() */

enum power_action {
	POWER_OFF,
	POWER_REBOOT,
	POWER_HALT,
};

/* What dm-verity does when a root block does not match its hash. */
enum verity_error {
	VERITY_RESTART, /* restart_on_corruption: the node reboots */
	VERITY_PANIC,	/* panic_on_corruption: the kernel panics (stops with panic=0) */
};

/* The state partition's dm-integrity layer (LUKS2 authenticated encryption). */
enum state_integrity {
	STATE_INTEGRITY_NONE,
	STATE_INTEGRITY_HMAC_SHA256,
};

struct settings {
	enum power_action on_failure; /* what fail_closed() does */
	int log_level;		      /* syslog level, records above it are dropped */
	unsigned shutdown_timeout; /* seconds between SIGTERM and SIGKILL at shutdown */
	unsigned device_timeout;   /* seconds to wait for a device (TPM, disks) */
	bool measure_required;	   /* no TPM and no TDX RTMR: refuse to boot (default) */
	bool tpm_platform;   /* tpm=platform: the cloud's vTPM is declared trusted */
	unsigned state_pcrs; /* bit per PCR the state key is sealed to (4, 7, 11, 15) */
	enum state_integrity
		state_integrity; /* chosen at first boot; later boots read it */
	enum verity_error verity_error;
	unsigned long long seen; /* bit per key: given once already */
};

/* The state key's PCRs: the default, and those every set must contain (config only). */
#define STATE_PCRS_REQUIRED ((1u << 4) | (1u << 11) | (1u << 15))
#define STATE_PCRS_DEFAULT  (STATE_PCRS_REQUIRED | (1u << 7))

#define CMDLINE_PREFIX	 "cvminit."
#define SETTINGS_ERR_MAX 256

void settings_init(struct settings *s);

/* Applies key (without the "cvminit." prefix) = value. On error returns -EINVAL (or
 * -E2BIG, -EEXIST) and writes a sentence naming the key, the value and what is allowed. */
int settings_set(struct settings *s, const char *key, const char *value, char *err,
		 size_t errlen);
/* The same, for keys of the command line: keys that only the measured config file may set
 * (measure=, state_pcrs=) are refused with -EPERM. */
int settings_set_cmdline(struct settings *s, const char *key, const char *value,
			 char *err, size_t errlen);

/* Parses a kernel command line (/proc/cmdline, with the kernel's quoting rules), applying
 * every cvminit.* word; other words are left to the kernel. Returns the number of
 * cvminit.* keys applied, or a negative errno with err set. */
int cmdline_parse(struct settings *s, const char *cmdline, char *err, size_t errlen);

/* Before the next source of settings (the config after the command line): each key may be
 * given once in each source. */
void settings_next_source(struct settings *s);
/* After a config file's keys: applies the command line's again, each once, so that the
 * command line wins over the file. The command line was checked before (cmdline_parse()
 * refused the boot if it did not parse), so this cannot fail. */
void settings_cmdline_wins(struct settings *s, const char *cmdline);

const char *power_action_to_string(enum power_action a);
