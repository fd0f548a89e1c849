/* /etc/cvminit/reference: every key, padding, and each rejection. */
#include <errno.h>

#include "../../init/reference.h"
#include "harness.h"

static struct reference r;
static char err[REFERENCE_ERR_MAX];

static int parse(const char *text)
{
	err[0] = '\0';
	return reference_parse(&r, text, err, sizeof(err));
}

TEST(all_keys_and_padding)
{
	CHECK_INT(
		parse("# cvminit reference values\n"
		      "cmdline console=ttyS0,115200 roothash=ab  x\n"
		      "config sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
		      "root verity:ab:1-2:3-4:erofs\n\n\n\n\n"),
		0);
	CHECK(r.has_cmdline && r.has_config && r.has_root);
	CHECK_STR(r.cmdline, "console=ttyS0,115200 roothash=ab  x");
	CHECK_INT(r.config_sha256[0], 0x00);
	CHECK_INT(r.config_sha256[31], 0xff);
	CHECK(!r.config_absent);
	CHECK_STR(r.root, "verity:ab:1-2:3-4:erofs");
}

TEST(empty_and_partial)
{
	CHECK_INT(parse(""), 0);
	CHECK(!r.has_cmdline && !r.has_config && !r.has_root);
	CHECK_INT(parse("config none"), 0);
	CHECK(r.has_config && r.config_absent);
	CHECK_INT(parse("cmdline \n"), 0); /* an empty command line is a value too */
	CHECK(r.has_cmdline);
	CHECK_STR(r.cmdline, "");
}

TEST(rejections_name_the_line)
{
	CHECK_INT(parse("\ncmdline a\ncmdline b\n"), -EINVAL);
	CHECK_CONTAINS(err, "/etc/cvminit/reference:3: cmdline given twice");
	CHECK_INT(parse("config sha256:00"), -EINVAL);
	CHECK_CONTAINS(err, ":1: config wants");
	CHECK_INT(
		parse("config sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff"),
		-EINVAL);
	CHECK_INT(parse("root plain:/dev/sda"), -EINVAL);
	CHECK_CONTAINS(err, "root wants verity:");
	CHECK_INT(parse("roothash abc"), -EINVAL);
	CHECK_CONTAINS(err, "unknown key");
	CHECK_INT(parse("cmdline"), -EINVAL); /* no space: not the key "cmdline " */
}

TEST(first_difference)
{
	CHECK_INT(reference_first_difference("abc", "abc"), -1);
	CHECK_INT(reference_first_difference("abc", "abd"), 2);
	CHECK_INT(reference_first_difference("ab", "abc"), 2);
	CHECK_INT(reference_first_difference("", "x"), 0);
}
