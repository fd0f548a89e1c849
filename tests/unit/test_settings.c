/* The kernel command line parser and settings: defaults, every key, every rejection. */
#include <errno.h>

#include "../../init/settings.h"
#include "../../init/util.h"
#include "../../measured-boot/seal.h"
#include "harness.h"

static struct settings s;
static char err[SETTINGS_ERR_MAX];

static int parse(const char *cmdline)
{
	settings_init(&s);
	err[0] = '\0';
	return cmdline_parse(&s, cmdline, err, sizeof(err));
}

TEST(defaults_without_keys)
{
	CHECK_INT(parse("console=ttyS0,115200 panic=-1 quiet"), 0);
	CHECK_INT(s.on_failure, POWER_OFF);
	CHECK_INT(s.log_level, 6);
	CHECK_INT(s.shutdown_timeout, 10);
	CHECK_INT(s.device_timeout, 10);
}

TEST(empty_cmdline)
{
	CHECK_INT(parse(""), 0);
	CHECK_INT(parse("   \n"), 0);
}

TEST(all_keys_applied)
{
	CHECK_INT(parse("root=x cvminit.on_failure=reboot cvminit.log_level=debug "
			"cvminit.shutdown_timeout=30 cvminit.device_timeout=5\n"),
		  4);
	CHECK_INT(s.on_failure, POWER_REBOOT);
	CHECK_INT(s.log_level, 7);
	CHECK_INT(s.shutdown_timeout, 30);
	CHECK_INT(s.device_timeout, 5);
}

TEST(log_level_numeric_and_names)
{
	CHECK_INT(parse("cvminit.log_level=3"), 1);
	CHECK_INT(s.log_level, 3);
	CHECK_INT(parse("cvminit.log_level=warning"), 1);
	CHECK_INT(s.log_level, 4);
	CHECK_INT(parse("cvminit.log_level=8"), -EINVAL);
	CHECK_INT(parse("cvminit.log_level=37"), -EINVAL);
}

TEST(halt_action)
{
	CHECK_INT(parse("cvminit.on_failure=halt"), 1);
	CHECK_INT(s.on_failure, POWER_HALT);
	CHECK_STR(power_action_to_string(s.on_failure), "halt");
}

TEST(invalid_value_names_key_value_and_allowed)
{
	CHECK_INT(parse("console=ttyS0 cvminit.on_failure=explode"), -EINVAL);
	CHECK_CONTAINS(err, "cvminit.on_failure=explode");
	CHECK_CONTAINS(err, "invalid value");
	CHECK_CONTAINS(err, "poweroff, reboot or halt");
	CHECK_INT(s.on_failure, POWER_OFF); /* left as it was */
}

TEST(unknown_key)
{
	CHECK_INT(parse("cvminit.bogus=1"), -EINVAL);
	CHECK_CONTAINS(err, "unknown setting cvminit.bogus");
}

TEST(empty_value)
{
	CHECK_INT(parse("cvminit.log_level="), -EINVAL);
	CHECK_CONTAINS(err, "cvminit.log_level has an empty value");
}

TEST(missing_equals)
{
	CHECK_INT(parse("cvminit.on_failure"), -EINVAL);
	CHECK_CONTAINS(err, "needs a value");
}

TEST(duplicate_key_refused)
{
	CHECK_INT(parse("cvminit.on_failure=reboot cvminit.on_failure=poweroff"),
		  -EEXIST);
	CHECK_CONTAINS(err, "given twice");
}

TEST(seconds_bounds)
{
	CHECK_INT(parse("cvminit.shutdown_timeout=0"), -EINVAL);
	CHECK_INT(parse("cvminit.shutdown_timeout=301"), -EINVAL);
	CHECK_INT(parse("cvminit.shutdown_timeout=300"), 1);
	CHECK_INT(parse("cvminit.shutdown_timeout=-1"), -EINVAL);
	CHECK_INT(parse("cvminit.shutdown_timeout=+5"), -EINVAL);
	CHECK_INT(parse("cvminit.shutdown_timeout=5s"), -EINVAL);
	CHECK_INT(parse("cvminit.shutdown_timeout=99999999999999999999999"), -EINVAL);
}

TEST(quotes_follow_kernel_rules)
{
	/* The kernel strips the quotes: key="value" and "key=value" are both key=value. */
	CHECK_INT(parse("foo=\"a b c\" cvminit.on_failure=\"reboot\""), 1);
	CHECK_INT(s.on_failure, POWER_REBOOT);
	CHECK_INT(parse("\"cvminit.on_failure=halt\""), 1);
	CHECK_INT(s.on_failure, POWER_HALT);
	/* A quoted space is part of the value, so this is not a valid action. */
	CHECK_INT(parse("cvminit.on_failure=\"reboot now\""), -EINVAL);
}

TEST(unterminated_quote)
{
	CHECK_INT(parse("console=ttyS0 foo=\"bar cvminit.on_failure=reboot"), -EINVAL);
	CHECK_CONTAINS(err, "unterminated quote");
	CHECK_INT(s.on_failure, POWER_OFF);
}

TEST(overlong_word)
{
	char line[2048];

	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "cvminit.log_level=", 18);
	CHECK_INT(parse(line), -E2BIG);
	CHECK_CONTAINS(err, "longer than");
}

TEST(tabs_and_newlines_separate)
{
	CHECK_INT(parse("a=1\tcvminit.on_failure=reboot\ncvminit.log_level=err\n"), 2);
	CHECK_INT(s.log_level, 3);
}

TEST(prefix_must_match_exactly)
{
	/* "cvminitx.foo" and "xcvminit.foo" are not ours: the kernel may use them. */
	CHECK_INT(parse("cvminitx.foo=1 xcvminit.on_failure=bad"), 0);
}

TEST(cmdline_get_plain_parameter)
{
	char v[128];

	CHECK_INT(cmdline_get("quiet roothash=abcd console=ttyS0", "roothash", v,
			      sizeof(v)),
		  4);
	CHECK_STR(v, "abcd");
	CHECK_INT(cmdline_get("quiet console=ttyS0", "roothash", v, sizeof(v)), 0);
	/* "roothashx=" and a bare "roothash" are different words. */
	CHECK_INT(cmdline_get("roothashx=1 roothash", "roothash", v, sizeof(v)), 0);
	CHECK_INT(cmdline_get("roothash=\"ab cd\"", "roothash", v, sizeof(v)), 5);
	CHECK_STR(v, "ab cd");
}

TEST(cmdline_get_refuses_duplicates_and_overflow)
{
	char v[8];

	CHECK_INT(cmdline_get("roothash=aa roothash=bb", "roothash", v, sizeof(v)),
		  -EEXIST);
	CHECK_INT(cmdline_get("roothash=0123456789", "roothash", v, sizeof(v)), -E2BIG);
	CHECK_INT(cmdline_get("roothash=\"aa", "roothash", v, sizeof(v)), -EINVAL);
}

TEST(measure_is_config_only)
{
	char buf[64];

	CHECK_INT(parse("cvminit.measure=optional"), -EPERM);
	CHECK(strstr(err, "cvminit.conf") != NULL);
	settings_init(&s);
	CHECK(s.measure_required);
	CHECK_INT(settings_set(&s, "measure", "optional", err, sizeof(err)), 0);
	CHECK(!s.measure_required);
	CHECK_INT(settings_set(&s, "measure", "required", err, sizeof(err)), -EEXIST);
	settings_init(&s);
	CHECK_INT(settings_set(&s, "measure", "maybe", err, sizeof(err)), -EINVAL);
	CHECK_STR(seal_pcr_list(s.state_pcrs, buf, sizeof(buf)), "4,7,11,15");
}

TEST(state_and_verity_keys)
{
	CHECK_INT(parse("cvminit.state_integrity=hmac-sha256 cvminit.verity_error=panic"),
		  2);
	CHECK_INT(s.state_integrity, STATE_INTEGRITY_HMAC_SHA256);
	CHECK_INT(s.verity_error, VERITY_PANIC);
	CHECK_INT(parse("cvminit.state_integrity=aead"), -EINVAL);
	CHECK_INT(parse("cvminit.verity_error=ignore"), -EINVAL);
}

/* The state PCRs come from the measured config only, and always name the booted UKI (4),
 * cvminit's phases (11) and its measured inputs (15): the issue-11 finding that a key
 * sealed to 7, 11, 15 opens under any kernel that replays 11 and 15. */
TEST(state_pcrs_config_only_and_must_name_the_boot)
{
	char buf[64];

	CHECK_INT(parse("cvminit.state_pcrs=4,7,11,15"), -EPERM);
	CHECK(strstr(err, "cvminit.conf") != NULL);
	settings_init(&s);
	CHECK_INT(settings_set(&s, "state_pcrs", "0,4,7,11,15,23", err, sizeof(err)), 0);
	CHECK_STR(seal_pcr_list(s.state_pcrs, buf, sizeof(buf)), "0,4,7,11,15,23");
	settings_init(&s);
	CHECK_INT(settings_set(&s, "state_pcrs", "4,11,15", err, sizeof(err)), 0);
	CHECK_STR(seal_pcr_list(s.state_pcrs, buf, sizeof(buf)), "4,11,15");
	static const char *const bad[] = {"7,11,15",  "4,7,11",	   "4,7,15",
					  "11,15",    "4,4,11,15", "4,11,15,24",
					  "4,11,15,", ",4,11,15",  "004,11,15"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		settings_init(&s);
		CHECK_INT(settings_set(&s, "state_pcrs", bad[i], err, sizeof(err)),
			  -EINVAL);
		CHECK(strstr(err, "contains 4, 11 and 15") != NULL);
		CHECK_STR(seal_pcr_list(s.state_pcrs, buf, sizeof(buf)), "4,7,11,15");
	}
}

/* Authenticated encryption is the default; plain XTS stays an option. */
TEST(state_integrity_default_and_none)
{
	CHECK_INT(parse(""), 0);
	CHECK_INT(s.state_integrity, STATE_INTEGRITY_HMAC_SHA256);
	CHECK_INT(parse("cvminit.state_integrity=none"), 1);
	CHECK_INT(s.state_integrity, STATE_INTEGRITY_NONE);
	CHECK_INT(parse("cvminit.state_integrity=hmac-sha256"), 1);
	CHECK_INT(s.state_integrity, STATE_INTEGRITY_HMAC_SHA256);
}
