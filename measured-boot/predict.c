/* What systemd-stub 257 and cvminit extend into PCR 11, computed from the UKI file. The
 * stub's rules (src/boot/efi/stub.c measure_sections(), src/boot/efi/pe.c) are in
 * predict.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../init/util.h"
#include "digest.h"
#include "predict.h"

/* systemd src/fundamental/uki.h: .linux .osrel .cmdline .initrd .ucode .splash .dtb
 * .uname .sbat .pcrsig .pcrpkey .profile ("PLEASE DO NOT REORDER"), .pcrsig not measured.
 */
const char *const predict_stub_sections[] = {
	".linux", ".osrel", ".cmdline", ".initrd",  ".ucode",	".splash",
	".dtb",	  ".uname", ".sbat",	".pcrpkey", ".profile", NULL,
};

const char *const predict_phases[] = {"enter-initrd", "leave-initrd", "ready", NULL};

int predict_append(struct eventlog *log, unsigned pcr, const char *event,
		   const char *event_type, const void *data, size_t len,
		   const uint16_t *algs, size_t n_algs)
{
	struct eventlog_record r = {.pcr = pcr, .rtmr = -1, .extended = true};
	struct eventlog_record *grown;

	if (pcr > EVENTLOG_MAX_PCR || n_algs > EVENTLOG_MAX_DIGESTS)
		return -EINVAL;
	for (size_t i = 0; i < n_algs; i++) {
		int k = digest_compute(algs[i], data, len, r.digests[i].buf);

		if (k < 0)
			return k;
		r.digests[i].alg = algs[i];
		r.digests[i].size = (uint16_t)k;
	}
	r.n_digests = n_algs;
	r.recnum = log->n;
	r.event = strdup(event);
	r.event_type = event_type ? strdup(event_type) : NULL;
	if (!r.event || (event_type && !r.event_type))
		goto oom;
	grown = realloc(log->records, (log->n + 1) * sizeof(*grown));
	if (!grown)
		goto oom;
	log->records = grown;
	log->records[log->n++] = r;
	return 0;
oom:
	free(r.event);
	free(r.event_type);
	return -ENOMEM;
}

static int append_section(struct eventlog *log, const struct pe_file *pe,
			  const struct pe_section *s, const char *name,
			  const uint16_t *algs, size_t n_algs)
{
	char event[64];
	_cleanup_free_ uint8_t *filled = NULL;
	const uint8_t *data;
	size_t len;
	int r;

	snprintf(event, sizeof(event), "uki-section-name:%s", name);
	r = predict_append(log, PREDICT_PCR, event, NULL, name, strlen(name) + 1, algs,
			   n_algs);
	if (r < 0)
		return r;

	/* The stub hashes VirtualSize bytes at ImageBase + VirtualAddress; past the file
	 * data the loader zero-filled them. */
	data = pe_section_file_data(pe, s, &len);
	if (s->virtual_size > len) {
		if (s->virtual_size > PREDICT_MAX_ZERO_FILL)
			return -EFBIG;
		filled = calloc(1, s->virtual_size);
		if (!filled)
			return -ENOMEM;
		memcpy(filled, data, len);
		data = filled;
		len = s->virtual_size;
	}
	snprintf(event, sizeof(event), "uki-section:%s", name);
	return predict_append(log, PREDICT_PCR, event, NULL, data, len, algs, n_algs);
}

int predict_stub_records(const struct pe_file *pe, const uint16_t *algs, size_t n_algs,
			 struct eventlog *log)
{
	const struct pe_section *linux_section = pe_find(pe, ".linux");
	int n = 0;

	if (pe_find(pe, ".profile"))
		return -EOPNOTSUPP;
	if (!linux_section || linux_section->virtual_size == 0)
		return -ENOENT;
	for (size_t i = 0; predict_stub_sections[i]; i++) {
		const struct pe_section *s = pe_find(pe, predict_stub_sections[i]);
		int r;

		/* The first entry of a name wins; with VirtualSize 0 the stub treats the
		 * section as absent. */
		if (!s || s->virtual_size == 0)
			continue;
		r = append_section(log, pe, s, predict_stub_sections[i], algs, n_algs);
		if (r < 0)
			return r;
		n += 2;
	}
	return n;
}

int predict_phase_record(const char *phase, const uint16_t *algs, size_t n_algs,
			 struct eventlog *log)
{
	return predict_append(log, PREDICT_PCR, phase, "phase", phase, strlen(phase),
			      algs, n_algs);
}
