/* measurements_parse(), the reader of the measurements.json a verifier is given (cvm-measure
 * attest), and the round trip against the writer `cvm-measure predict` uses: what parses,
 * written again, parses to the same values. */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "../../measured-boot/measurements.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

static bool same(const struct measurements *a, const struct measurements *b)
{
	if (a->n_replay != b->n_replay || a->n_per_node != b->n_per_node)
		return false;
	for (unsigned p = 0; p < MEAS_PCRS; p++)
		if (a->pcr[p].present != b->pcr[p].present ||
		    a->pcr[p].warn_only != b->pcr[p].warn_only ||
		    a->pcr[p].has_expected != b->pcr[p].has_expected ||
		    a->pcr[p].expected_len != b->pcr[p].expected_len ||
		    memcmp(a->pcr[p].expected, b->pcr[p].expected,
			   a->pcr[p].expected_len))
			return false;
	for (size_t i = 0; i < a->n_replay; i++) {
		const struct meas_record *x = &a->replay[i], *y = &b->replay[i];

		if (strcmp(x->event, y->event) || !x->name != !y->name ||
		    (x->name && strcmp(x->name, y->name)) || x->has_data != y->has_data ||
		    x->data_len != y->data_len || x->n_digests != y->n_digests ||
		    (x->data_len && memcmp(x->data, y->data, x->data_len)))
			return false;
	}
	for (size_t i = 0; i < a->n_per_node; i++)
		if (strcmp(a->per_node[i], b->per_node[i]))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct measurements m, back;
	char err[256], path[64], *text;
	int k;

	k = measurements_parse((const char *)data, size, &m, err, sizeof(err));
	FUZZ_ASSERT(k == 0 || k == -EBADMSG || k == -ENOMEM);
	if (k == 0) {
		uint8_t *buf;
		FILE *f;
		long n;

		snprintf(path, sizeof(path), "/tmp/fuzz-measurements.%d.json",
			 (int)getpid());
		FUZZ_ASSERT(measurements_write(path, &m) == 0);
		f = fopen(path, "r");
		FUZZ_ASSERT(f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
		rewind(f);
		buf = malloc((size_t)n + 1);
		FUZZ_ASSERT(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
		fclose(f);
		unlink(path);
		text = (char *)buf;
		k = measurements_parse(text, (size_t)n, &back, err, sizeof(err));
		if (k != 0)
			fprintf(stderr, "written back, it does not parse: %s\n", err);
		FUZZ_ASSERT(k == 0 && same(&m, &back));
		measurements_free(&back);
		free(buf);
	}
	measurements_free(&m);
	return 0;
}
