/* Event log replay: the same extend rule the TPM applies (digest_extend), run over the
 * records that say they reached a PCR. */
#include <errno.h>
#include <string.h>

#include "replay.h"

int replay_reset(struct replay_pcrs *p, uint16_t alg, unsigned pcr0_locality)
{
	int size = digest_size(alg);

	if (size < 0)
		return size;
	p->alg = alg;
	p->size = (uint16_t)size;
	for (unsigned i = 0; i < REPLAY_PCRS; i++)
		memset(p->v[i], i >= 17 && i <= 22 ? 0xff : 0x00, (size_t)size);
	p->v[0][size - 1] = (uint8_t)pcr0_locality;
	return size;
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

int replay_apply(const struct eventlog *log, struct replay_pcrs *p)
{
	for (size_t i = 0; i < log->n; i++) {
		const struct eventlog_record *r = &log->records[i];
		const struct digest *d;
		int k;

		if (!counts(r))
			continue;
		d = record_bank(r, p->alg);
		if (!d)
			return -ENODATA;
		k = digest_extend(p->alg, p->v[r->pcr], d->buf);
		if (k < 0)
			return k;
	}
	return p->size;
}

int replay_log(const struct eventlog *log, uint16_t alg, struct replay_pcrs *out)
{
	int size = replay_reset(out, alg, 0);

	return size < 0 ? size : replay_apply(log, out);
}

int replay_verify(const struct eventlog *log, const struct replay_pcrs *actual,
		  uint32_t mask, struct replay_divergence *ret)
{
	struct replay_pcrs start;
	int size = replay_reset(&start, actual->alg, 0);

	return size < 0 ? size : replay_verify_from(log, &start, actual, mask, ret);
}

int replay_verify_from(const struct eventlog *log, const struct replay_pcrs *start,
		       const struct replay_pcrs *actual, uint32_t mask,
		       struct replay_divergence *ret)
{
	struct replay_divergence first = {.pcr = 0, .record = SIZE_MAX};
	bool diverged = false;
	int size = digest_size(actual->alg);

	if (size < 0)
		return size;
	if (size != actual->size || start->alg != actual->alg)
		return -EINVAL;
	for (unsigned p = 0; p < REPLAY_PCRS; p++) {
		uint8_t v[DIGEST_MAX];
		size_t blame = SIZE_MAX, first_rec = SIZE_MAX, n_records = 0;

		if (!(mask & (UINT32_C(1) << p)))
			continue;
		memcpy(v, start->v[p], (size_t)size);
		/* blame: the record after the latest prefix that reproduces the value. */
		bool prefix_matches = memcmp(v, actual->v[p], (size_t)size) == 0;
		bool pending = prefix_matches, ever = prefix_matches;
		for (size_t i = 0; i < log->n; i++) {
			const struct eventlog_record *r = &log->records[i];
			const struct digest *d;

			if (!counts(r) || r->pcr != p)
				continue;
			if (first_rec == SIZE_MAX)
				first_rec = i;
			n_records++;
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
				ever = true;
			}
		}
		if (prefix_matches)
			continue;
		if (blame == SIZE_MAX && !pending)
			blame = first_rec;
		if (!diverged || blame < first.record) {
			first = (struct replay_divergence){.pcr = p,
							   .record = blame,
							   .prefix_matched = ever,
							   .n_records = n_records};
			diverged = true;
		}
	}
	if (diverged)
		*ret = first;
	return diverged;
}
