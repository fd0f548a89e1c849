/* Reading the firmware's crypto-agile TCG event log for `cvm-measure verify`. The file
 * comes from a machine we do not trust yet: every length is checked before it is used. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/digest.h"
#include "tcglog.h"

#define SPEC_ID_SIGNATURE  "Spec ID Event03" /* 16 bytes with its NUL */
#define LOCALITY_SIGNATURE "StartupLocality" /* 16 bytes with its NUL */
#define MAX_ALGS	   16
#define MAX_EVENT_SIZE	   (64u << 20)
#define SUMMARY_MAX	   96

static const struct {
	uint32_t type;
	const char *name;
} event_types[] = {
	{0x00000000, "EV_PREBOOT_CERT"},
	{0x00000001, "EV_POST_CODE"},
	{0x00000002, "EV_UNUSED"},
	{0x00000003, "EV_NO_ACTION"},
	{0x00000004, "EV_SEPARATOR"},
	{0x00000005, "EV_ACTION"},
	{0x00000006, "EV_EVENT_TAG"},
	{0x00000007, "EV_S_CRTM_CONTENTS"},
	{0x00000008, "EV_S_CRTM_VERSION"},
	{0x00000009, "EV_CPU_MICROCODE"},
	{0x0000000a, "EV_PLATFORM_CONFIG_FLAGS"},
	{0x0000000b, "EV_TABLE_OF_DEVICES"},
	{0x0000000c, "EV_COMPACT_HASH"},
	{0x0000000d, "EV_IPL"},
	{0x0000000e, "EV_IPL_PARTITION_DATA"},
	{0x0000000f, "EV_NONHOST_CODE"},
	{0x00000010, "EV_NONHOST_CONFIG"},
	{0x00000011, "EV_NONHOST_INFO"},
	{0x00000012, "EV_OMIT_BOOT_DEVICE_EVENTS"},
	{0x80000001, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
	{0x80000002, "EV_EFI_VARIABLE_BOOT"},
	{0x80000003, "EV_EFI_BOOT_SERVICES_APPLICATION"},
	{0x80000004, "EV_EFI_BOOT_SERVICES_DRIVER"},
	{0x80000005, "EV_EFI_RUNTIME_SERVICES_DRIVER"},
	{0x80000006, "EV_EFI_GPT_EVENT"},
	{0x80000007, "EV_EFI_ACTION"},
	{0x80000008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"},
	{0x80000009, "EV_EFI_HANDOFF_TABLES"},
	{0x8000000a, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"},
	{0x8000000b, "EV_EFI_HANDOFF_TABLES2"},
	{0x8000000c, "EV_EFI_VARIABLE_BOOT2"},
	{0x80000010, "EV_EFI_HCRTM_EVENT"},
	{0x800000e0, "EV_EFI_VARIABLE_AUTHORITY"},
	{0x800000e1, "EV_EFI_SPDM_FIRMWARE_BLOB"},
	{0x800000e2, "EV_EFI_SPDM_FIRMWARE_CONFIG"},
};

const char *tcglog_event_type_name(uint32_t type)
{
	for (size_t i = 0; i < sizeof(event_types) / sizeof(event_types[0]); i++)
		if (event_types[i].type == type)
			return event_types[i].name;
	return NULL;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static bool printable(uint8_t c)
{
	return c >= 0x20 && c < 0x7f;
}

/* Text of n characters, ASCII or UTF-16LE ASCII, without trailing NULs; false when the
 * data is neither. */
static bool as_text(const uint8_t *p, size_t n, bool utf16, char *out, size_t cap)
{
	size_t step = utf16 ? 2 : 1, o = 0;

	if (n == 0 || (utf16 && n % 2))
		return false;
	while (n >= step && p[n - step] == 0 && (!utf16 || p[n - 1] == 0))
		n -= step;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i += step) {
		if (!printable(p[i]) || (utf16 && p[i + 1] != 0))
			return false;
		if (o + 4 < cap)
			out[o++] = (char)p[i];
		else if (o + 4 == cap) {
			memcpy(out + o, "...", 3);
			o += 3;
		}
	}
	out[o] = '\0';
	return true;
}

/* A one-line description of an event's data for messages. */
static void summarize(uint32_t type, const uint8_t *p, size_t n, char *out, size_t cap)
{
	/* UEFI_VARIABLE_DATA: GUID, name length (chars), data length, UTF-16 name, data.
	 */
	if ((type == 0x80000001 || type == 0x80000002 || type == 0x8000000c ||
	     type == 0x800000e0) &&
	    n >= 32) {
		uint64_t chars = le64(p + 16);

		if (chars > 0 && chars <= (n - 32) / 2 &&
		    as_text(p + 32, (size_t)chars * 2, true, out, cap))
			return;
	}
	if (as_text(p, n, false, out, cap) || as_text(p, n, true, out, cap))
		return;
	snprintf(out, cap, "%zu bytes", n);
}

static bool rest_is_padding(const uint8_t *p, size_t n)
{
	bool zero = true, ff = true;

	for (size_t i = 0; i < n; i++) {
		zero &= p[i] == 0x00;
		ff &= p[i] == 0xff;
	}
	return zero || ff;
}

#define FAIL(off, msg)                                                                   \
	do {                                                                             \
		*bad_offset = (off);                                                     \
		*why = (msg);                                                            \
		r = -EBADMSG;                                                            \
		goto out;                                                                \
	} while (0)

int tcglog_parse(const uint8_t *buf, size_t len, struct eventlog *log, unsigned *locality,
		 size_t *bad_offset, const char **why)
{
	struct {
		uint16_t alg;
		uint16_t size;
	} algs[MAX_ALGS];
	uint32_t n_algs, spec_size;
	size_t pos, spec;
	uint64_t index = 1;
	int r = 0;

	*log = (struct eventlog){0};
	*locality = 0;
	*bad_offset = 0;
	*why = NULL;

	/* The header event: SHA1-format TCG_PCClientPCREvent, EV_NO_ACTION, PCR 0. */
	if (len < 32)
		FAIL(0, "truncated: shorter than the log's header event");
	if (le32(buf + 4) != TCGLOG_EV_NO_ACTION)
		FAIL(4, "the first event is not EV_NO_ACTION: not a TCG event log");
	spec_size = le32(buf + 28);
	spec = 32;
	if (spec_size > len - spec)
		FAIL(28, "truncated: the header event's data is cut off");
	if (spec_size < 16 || memcmp(buf + spec, SPEC_ID_SIGNATURE, 16) != 0)
		FAIL(spec,
		     "no \"Spec ID Event03\" signature: not a crypto-agile (TPM 2.0) "
		     "log; the SHA1-only TCG 1.2 format is not supported");
	if (spec_size < 16 + 4 + 4 + 4)
		FAIL(spec + 16, "truncated: the Spec ID event is too short");
	n_algs = le32(buf + spec + 24);
	if (n_algs == 0 || n_algs > MAX_ALGS)
		FAIL(spec + 24,
		     "the Spec ID event declares no or too many digest algorithms");
	if (spec_size < 28 + 4 * n_algs + 1)
		FAIL(spec + 28,
		     "truncated: the Spec ID event's algorithm table is cut off");
	for (uint32_t i = 0; i < n_algs; i++) {
		const uint8_t *a = buf + spec + 28 + 4 * i;
		int known = digest_size(le16(a));

		algs[i].alg = le16(a);
		algs[i].size = le16(a + 2);
		if (algs[i].size == 0 || algs[i].size > 128 ||
		    (known > 0 && known != algs[i].size))
			FAIL(spec + 28 + 4 * i + 2, "the Spec ID event gives a wrong "
						    "digest size for an algorithm");
	}
	pos = spec + spec_size;

	while (pos < len) {
		struct eventlog_record rec = {.rtmr = -1, .extended = true};
		struct eventlog_record *grown;
		uint32_t pcr, type, count, size;
		size_t start = pos, data;
		char summary[SUMMARY_MAX];
		const char *name;

		if (len - pos < 12 && rest_is_padding(buf + pos, len - pos))
			break;
		if (len - pos < 12)
			FAIL(pos, "truncated: an event header is cut off");
		pcr = le32(buf + pos);
		type = le32(buf + pos + 4);
		count = le32(buf + pos + 8);
		if (pcr == 0xffffffffu || (pcr == 0 && type == 0 && count == 0)) {
			if (rest_is_padding(buf + pos, len - pos))
				break;
		}
		pos += 12;
		if (count > n_algs)
			FAIL(start + 8,
			     "an event has more digests than the log has algorithms");
		for (uint32_t i = 0; i < count; i++) {
			uint16_t alg;
			uint32_t k;

			if (len - pos < 2)
				FAIL(pos, "truncated: an event's digest list is cut off");
			alg = le16(buf + pos);
			for (k = 0; k < n_algs && algs[k].alg != alg; k++)
				;
			if (k == n_algs)
				FAIL(pos,
				     "an event's digest algorithm is not in the Spec ID "
				     "event's table");
			if (len - pos - 2 < algs[k].size)
				FAIL(pos, "truncated: an event's digest is cut off");
			if (digest_size(alg) > 0 &&
			    rec.n_digests < EVENTLOG_MAX_DIGESTS) {
				struct digest *d = &rec.digests[rec.n_digests++];

				d->alg = alg;
				d->size = algs[k].size;
				memcpy(d->buf, buf + pos + 2, algs[k].size);
			}
			pos += 2 + (size_t)algs[k].size;
		}
		if (len - pos < 4)
			FAIL(pos, "truncated: an event's data size is cut off");
		size = le32(buf + pos);
		pos += 4;
		data = pos;
		if (size > MAX_EVENT_SIZE || size > len - pos)
			FAIL(pos - 4, "truncated: an event's data is cut off");
		pos += size;

		if (type == TCGLOG_EV_NO_ACTION) {
			if (pcr == 0 && size == 17 &&
			    memcmp(buf + data, LOCALITY_SIGNATURE, 16) == 0)
				*locality = buf[data + 16];
			index++;
			continue;
		}
		if (pcr > EVENTLOG_MAX_PCR)
			FAIL(start, "an event's PCR index is above 23");

		/* An H-CRTM measured before the firmware started makes PCR 0 start
		 * from 4 (TPM 2.0 Part 1, "H-CRTM"); the event carries its digest. */
		if (type == TCGLOG_EV_EFI_HCRTM_EVENT && pcr == 0)
			*locality = 4;
		rec.pcr = pcr;
		rec.recnum = index++;
		rec.offset = start;
		name = tcglog_event_type_name(type);
		if (name)
			rec.event_type = strdup(name);
		else if (asprintf(&rec.event_type, "0x%08x", type) < 0)
			rec.event_type = NULL;
		summarize(type, buf + data, size, summary, sizeof(summary));
		rec.event = strdup(summary);
		grown = rec.event && rec.event_type
				? realloc(log->records, (log->n + 1) * sizeof(*grown))
				: NULL;
		if (!grown) {
			free(rec.event);
			free(rec.event_type);
			r = -ENOMEM;
			goto out;
		}
		log->records = grown;
		log->records[log->n++] = rec;
	}
	return (int)log->n;
out:
	return r;
}
