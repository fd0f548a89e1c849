/* Reference values: what the image was built to boot with, carried by the measured initrd
 * (/etc/cvminit/reference, written by image/uki-refs.py at image build). cvminit compares
 * each value with the one it is about to act on, after measuring it, and refuses on a
 * difference. Pure code: parsing and comparing, no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REFERENCE_PATH	   "/etc/cvminit/reference"
#define REFERENCE_SIZE_MAX 8192
#define REFERENCE_ERR_MAX  256
#define REFERENCE_LINE_MAX 4096

struct reference {
	bool has_cmdline, has_config, has_root;
	char cmdline
		[REFERENCE_LINE_MAX]; /* exactly as /proc/cmdline, without the newline */
	uint8_t config_sha256[32];    /* of /etc/cvminit/cvminit.conf ("none": absent) */
	bool config_absent;
	char root[256]; /* verity:<roothash>:<data uuid>:<hash uuid>:<fs> */
};

/*
 * The file, one value per line, each key at most once; blank lines and lines starting
 * with '#' are ignored (the image build pads the file to a fixed size with newlines):
 *   cmdline <the command line, the rest of the line>
 *   config sha256:<64 hex> | config none
 *   root verity:<roothash>:<data partuuid>:<hash partuuid>:<fstype>
 * Returns 0, or -EINVAL with a sentence in err naming the line.
 */
int reference_parse(struct reference *r, const char *text, char *err, size_t errlen);

/* Where two strings first differ (for messages): the byte offset, or -1 when equal. */
long reference_first_difference(const char *a, const char *b);
