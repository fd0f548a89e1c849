/* Settings and the kernel command line parser. Pure code: no I/O, so the unit tests run
 * it directly and every rejection path has a test. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "settings.h"
#include "util.h"

#define VALUE_MAX 256

static const char *const power_names[] = {
	[POWER_OFF] = "poweroff",
	[POWER_REBOOT] = "reboot",
	[POWER_HALT] = "halt",
};

const char *power_action_to_string(enum power_action a)
{
	return power_names[a];
}

void settings_init(struct settings *s)
{
	*s = (struct settings){
		.on_failure = POWER_OFF,
		.log_level = LOG_INFO,
		.shutdown_timeout = 10,
		.device_timeout = 10,
		.measure_required = true,
		.state_pcrs = STATE_PCRS_DEFAULT,
		.state_integrity = STATE_INTEGRITY_HMAC_SHA256,
		.verity_error = VERITY_RESTART,
	};
}

static int parse_power(const char *v, void *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(power_names); i++)
		if (streq(v, power_names[i])) {
			*(enum power_action *)out = (enum power_action)i;
			return 0;
		}
	return -EINVAL;
}

static int parse_level(const char *v, void *out)
{
	int l = log_level_from_string(v);
	if (l < 0)
		return l;
	*(int *)out = l;
	return 0;
}

/* Whole decimal seconds, 1..300: a node that waits longer is better off failing. */
static int parse_seconds(const char *v, void *out)
{
	char *end;
	unsigned long n;

	if (v[0] < '0' || v[0] > '9')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < 1 || n > 300)
		return -EINVAL;
	*(unsigned *)out = (unsigned)n;
	return 0;
}

static int parse_measure(const char *v, void *out)
{
	if (!streq(v, "required") && !streq(v, "optional"))
		return -EINVAL;
	*(bool *)out = streq(v, "required");
	return 0;
}

/* verify: trust a TPM only as the platform rule vouches for it; platform: this cloud's
 * vTPM is trusted on TDX and SEV-SNP too. */
static int parse_tpm(const char *v, void *out)
{
	if (!streq(v, "verify") && !streq(v, "platform"))
		return -EINVAL;
	*(bool *)out = streq(v, "platform");
	return 0;
}

/* A comma-separated list of PCRs 0..23, each once, at least one. */
static int parse_pcrs(const char *v, void *out)
{
	unsigned mask = 0;
	const char *p = v;

	for (;;) {
		char *end;
		unsigned long n;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		n = strtoul(p, &end, 10);
		if (n > 23 || (mask & (1u << n)) || end - p > 2)
			return -EINVAL;
		mask |= 1u << n;
		if (*end == '\0')
			break;
		if (*end != ',')
			return -EINVAL;
		p = end + 1;
	}
	*(unsigned *)out = mask;
	return 0;
}

/* The PCRs the state key is sealed to must name the booted binaries and what cvminit
 * measured: 4 (the UKI and its kernel, as the firmware started them), 11 (the UKI's
 * sections and cvminit's phases: no unseal after leave-initrd) and 15 (the command line,
 * config and root). Without 4, any kernel can extend 11 and 15 to the sealed values. */
static int parse_state_pcrs(const char *v, void *out)
{
	unsigned mask;
	int r = parse_pcrs(v, &mask);

	if (r < 0)
		return r;
	if ((mask & STATE_PCRS_REQUIRED) != STATE_PCRS_REQUIRED)
		return -EINVAL;
	*(unsigned *)out = mask;
	return 0;
}

static int parse_integrity(const char *v, void *out)
{
	if (streq(v, "none"))
		*(enum state_integrity *)out = STATE_INTEGRITY_NONE;
	else if (streq(v, "hmac-sha256"))
		*(enum state_integrity *)out = STATE_INTEGRITY_HMAC_SHA256;
	else
		return -EINVAL;
	return 0;
}

static int parse_verity_error(const char *v, void *out)
{
	if (streq(v, "restart"))
		*(enum verity_error *)out = VERITY_RESTART;
	else if (streq(v, "panic"))
		*(enum verity_error *)out = VERITY_PANIC;
	else
		return -EINVAL;
	return 0;
}

struct setting_def {
	const char *key;
	size_t offset;
	int (*parse)(const char *value, void *out);
	const char *allowed;
	bool config_only; /* only the config file (measured into PCR 15) may set it */
};

static const struct setting_def setting_table[] = {
	{"on_failure", offsetof(struct settings, on_failure), parse_power,
	 "poweroff, reboot or halt", false},
	{"log_level", offsetof(struct settings, log_level), parse_level,
	 "emerg, alert, crit, err, warning, notice, info, debug or 0-7", false},
	{"shutdown_timeout", offsetof(struct settings, shutdown_timeout), parse_seconds,
	 "whole seconds from 1 to 300", false},
	{"device_timeout", offsetof(struct settings, device_timeout), parse_seconds,
	 "whole seconds from 1 to 300", false},
	{"measure", offsetof(struct settings, measure_required), parse_measure,
	 "required or optional", true},
	{"tpm", offsetof(struct settings, tpm_platform), parse_tpm, "verify or platform",
	 true},
	{"state_pcrs", offsetof(struct settings, state_pcrs), parse_state_pcrs,
	 "a comma-separated list of PCRs 0-23 that contains 4, 11 and 15 (the booted UKI, "
	 "cvminit's phases, its measured command line, config and root), e.g. 4,7,11,15",
	 true},
	{"state_integrity", offsetof(struct settings, state_integrity), parse_integrity,
	 "none or hmac-sha256", false},
	{"verity_error", offsetof(struct settings, verity_error), parse_verity_error,
	 "restart or panic", false},
};

static int setting_apply(struct settings *s, const char *key, const char *value,
			 bool from_cmdline, char *err, size_t errlen)
{
	for (size_t i = 0; i < ARRAY_SIZE(setting_table); i++) {
		const struct setting_def *d = &setting_table[i];

		if (!streq(key, d->key))
			continue;
		if (from_cmdline && d->config_only) {
			snprintf(
				err, errlen,
				CMDLINE_PREFIX
				"%s cannot be given on the kernel command line: set it "
				"in /etc/cvminit/cvminit.conf of the initrd (measured into PCR 15)",
				key);
			return -EPERM;
		}
		if (s->seen & (1ULL << i)) {
			snprintf(err, errlen, CMDLINE_PREFIX "%s is given twice", key);
			return -EEXIST;
		}
		if (value[0] == '\0') {
			snprintf(err, errlen,
				 CMDLINE_PREFIX "%s has an empty value (expected %s)",
				 key, d->allowed);
			return -EINVAL;
		}
		if (d->parse(value, (char *)s + d->offset) < 0) {
			snprintf(err, errlen,
				 CMDLINE_PREFIX "%s=%.64s: invalid value (expected %s)",
				 key, value, d->allowed);
			return -EINVAL;
		}
		s->seen |= 1ULL << i;
		return 0;
	}
	snprintf(err, errlen, "unknown setting " CMDLINE_PREFIX "%.64s", key);
	return -EINVAL;
}

int settings_set(struct settings *s, const char *key, const char *value, char *err,
		 size_t errlen)
{
	return setting_apply(s, key, value, false, err, errlen);
}

int settings_set_cmdline(struct settings *s, const char *key, const char *value,
			 char *err, size_t errlen)
{
	return setting_apply(s, key, value, true, err, errlen);
}

static int word_error(int r, const char *cmdline, const char *p, char *err, size_t errlen)
{
	int at = (int)(p - cmdline);
	if (r == -E2BIG)
		snprintf(err, errlen,
			 "kernel command line: word at offset %d is longer than %d bytes",
			 at, VALUE_MAX);
	else
		snprintf(err, errlen,
			 "kernel command line: unterminated quote after offset %d", at);
	return r;
}

int cmdline_parse(struct settings *s, const char *cmdline, char *err, size_t errlen)
{
	char word[VALUE_MAX + sizeof(CMDLINE_PREFIX) + 64];
	const char *p = cmdline;
	int applied = 0, r;

	for (;;) {
		const char *start = p;
		r = cmdline_next_word(&p, word, sizeof(word));
		if (r < 0)
			return word_error(r, cmdline, start, err, errlen);
		if (r == 0)
			return applied;

		const char *key = startswith(word, CMDLINE_PREFIX);
		if (!key)
			continue;
		char *eq = strchr(word, '=');
		if (!eq) {
			snprintf(err, errlen, "%.96s needs a value (%.96s=<value>)", word,
				 word);
			return -EINVAL;
		}
		*eq = '\0';
		if (strlen(eq + 1) > VALUE_MAX) {
			snprintf(err, errlen, "%.96s: value longer than %d bytes", word,
				 VALUE_MAX);
			return -E2BIG;
		}
		r = settings_set_cmdline(s, key, eq + 1, err, errlen);
		if (r < 0)
			return r;
		applied++;
	}
}

void settings_next_source(struct settings *s)
{
	s->seen = 0;
}

void settings_cmdline_wins(struct settings *s, const char *cmdline)
{
	char err[SETTINGS_ERR_MAX];

	settings_next_source(s);
	(void)cmdline_parse(s, cmdline, err, sizeof(err));
}
