/* Event log replay: the same extend rule the TPM applies (digest_extend), run over the
 * records that say they reached a PCR. */
#include <errno.h>
#include <string.h>

#include "replay.h"

static void reset_value(unsigned pcr, size_t size, uint8_t *v)
{
	memset(v, pcr >= 17 && pcr <= 22 ? 0xff : 0x00, size);
}

static const struct digest *record_bank(const struct eventlog_record *r, uint16_t alg)
{
	for (size_t i = 0; i < r->n_digests; i++)
		if (r->digests[i].alg == alg)
			return &r->digests[i];
	return NULL;
}

static bool counts(const struct eventlog_record *r)
{
	return r->extended && r->rtmr < 0;
}

int replay_log(const struct eventlog *log, uint16_t alg, struct replay_pcrs *out)
{
	int size = digest_size(alg);

	if (size < 0)
		return size;
	out->alg = alg;
	out->size = (uint16_t)size;
	for (unsigned p = 0; p < REPLAY_PCRS; p++)
		reset_value(p, (size_t)size, out->v[p]);
	for (size_t i = 0; i < log->n; i++) {
		const struct eventlog_record *r = &log->records[i];
		const struct digest *d;
		int k;

		if (!counts(r))
			continue;
		d = record_bank(r, alg);
		if (!d)
			return -ENODATA;
		k = digest_extend(alg, out->v[r->pcr], d->buf);
		if (k < 0)
			return k;
	}
	return size;
}

int replay_verify(const struct eventlog *log, const struct replay_pcrs *actual,
		  uint32_t mask, struct replay_divergence *ret)
{
	struct replay_divergence first = {.pcr = 0, .record = SIZE_MAX};
	bool diverged = false;
	int size = digest_size(actual->alg);

	if (size < 0)
		return size;
	if (size != actual->size)
		return -EINVAL;
	for (unsigned p = 0; p < REPLAY_PCRS; p++) {
		uint8_t v[DIGEST_MAX];
		size_t blame = SIZE_MAX, first_rec = SIZE_MAX;

		if (!(mask & (UINT32_C(1) << p)))
			continue;
		reset_value(p, (size_t)size, v);
		/* blame: the record after the latest prefix that reproduces the value. */
		bool prefix_matches = memcmp(v, actual->v[p], (size_t)size) == 0;
		bool pending = prefix_matches;
		for (size_t i = 0; i < log->n; i++) {
			const struct eventlog_record *r = &log->records[i];
			const struct digest *d;

			if (!counts(r) || r->pcr != p)
				continue;
			if (first_rec == SIZE_MAX)
				first_rec = i;
			if (pending) {
				blame = i;
				pending = false;
			}
			d = record_bank(r, actual->alg);
			if (!d)
				return -ENODATA;
			digest_extend(actual->alg, v, d->buf);
			prefix_matches = memcmp(v, actual->v[p], (size_t)size) == 0;
			if (prefix_matches) {
				blame = SIZE_MAX;
				pending = true;
			}
		}
		if (prefix_matches)
			continue;
		if (blame == SIZE_MAX && !pending)
			blame = first_rec;
		if (!diverged || blame < first.record) {
			first = (struct replay_divergence){.pcr = p, .record = blame};
			diverged = true;
		}
	}
	if (diverged)
		*ret = first;
	return diverged;
}
