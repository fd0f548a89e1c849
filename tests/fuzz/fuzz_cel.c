/* eventlog_parse(), the CEL-JSON reader (cvm-measure verify and replay read a node's
 * /run/log/cvminit/measure.log with it; seal.c reads it for the drift report), and the
 * round trip against the writer: each record it reads, eventlog_append() writes again and
 * the reader reads back the same. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../measured-boot/eventlog.h"
#include "fuzz.h"

static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	fd = memfd_create("cel", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	return 0;
}

static bool writable(const struct eventlog_record *r)
{
	return r->event && r->n_digests > 0;
}

static bool same(const struct eventlog_record *a, const struct eventlog_record *b)
{
	if (a->pcr != b->pcr || a->rtmr != b->rtmr || a->n_digests != b->n_digests ||
	    a->extended != b->extended || strcmp(a->event, b->event) != 0 ||
	    !a->event_type != !b->event_type ||
	    (a->event_type && strcmp(a->event_type, b->event_type) != 0) ||
	    a->has_data != b->has_data || a->data_len != b->data_len ||
	    (a->data_len && memcmp(a->data, b->data, a->data_len) != 0) ||
	    !a->name != !b->name || (a->name && strcmp(a->name, b->name) != 0))
		return false;
	for (size_t i = 0; i < a->n_digests; i++)
		if (a->digests[i].alg != b->digests[i].alg ||
		    a->digests[i].size != b->digests[i].size ||
		    memcmp(a->digests[i].buf, b->digests[i].buf, a->digests[i].size) != 0)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eventlog log, back;
	size_t bad = 0, n = 0;
	char *buf;
	off_t end;
	int r;

	/* Exactly the bytes, no terminator: the reader gets (buf, len) from a file. */
	buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	r = eventlog_parse(buf, size, &log, &bad);
	FUZZ_ASSERT(r >= 0 || r == -EBADMSG || r == -ENOMEM);
	FUZZ_ASSERT(r < 0 || (size_t)r == log.n);
	FUZZ_ASSERT(r >= 0 || bad <= size);
	free(buf);

	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		abort();
	for (size_t i = 0; i < log.n; i++) {
		struct eventlog_record *rec = &log.records[i];

		/* The writer writes cvminit's records only: the reader also takes those of
		 * other producers (no content.string: replay needs pcr and digests) and
		 * records whose every bank is unknown (no digests: skipped like systemd). */
		if (!writable(rec))
			continue;
		r = eventlog_append(fd, rec);
		if (r < 0)
			fprintf(stderr,
				"the writer refuses record %zu the reader took: %d (pcr %u, "
				"%zu digests, event %s)\n",
				i, r, rec->pcr, rec->n_digests,
				rec->event ? "set" : "absent");
		FUZZ_ASSERT(r == 0);
		FUZZ_ASSERT(rec->recnum == n);
		n++;
	}
	end = lseek(fd, 0, SEEK_END);
	FUZZ_ASSERT(end >= 0);
	buf = malloc((size_t)end + 1);
	if (!buf || pread(fd, buf, (size_t)end, 0) != end)
		abort();
	r = eventlog_parse(buf, (size_t)end, &back, &bad);
	FUZZ_ASSERT(r >= 0 && (size_t)r == n);
	for (size_t i = 0, j = 0; i < log.n; i++) {
		if (!writable(&log.records[i]))
			continue;
		FUZZ_ASSERT(same(&log.records[i], &back.records[j]));
		FUZZ_ASSERT(back.records[j].recnum == j);
		j++;
	}
	free(buf);
	eventlog_free(&back);
	eventlog_free(&log);
	return 0;
}
