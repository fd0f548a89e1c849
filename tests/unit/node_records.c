/* node-records: the host join test's stand-in for what cvminit measures into PCR 15 after
 * the state volume is opened (a node's boot on a swtpm, no VM): the cvminit:volume-key
 * record with measure_hmac() and init/state.c's label, then generation_measure(), the
 * function PID 1 calls. A test helper, never part of the image. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/hex.h"
#include "../../measured-boot/generation.h"
#include "../../measured-boot/measure.h"

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"tcti-conf", required_argument, NULL, 't'},
		{"log", required_argument, NULL, 'l'},
		{"state-dir", required_argument, NULL, 's'},
		{"volume-key", required_argument, NULL, 'k'},
		{"uuid", required_argument, NULL, 'u'},
		{"boot-id-file", required_argument, NULL, 'b'},
		{"fresh", no_argument, NULL, 'f'},
		{},
	};
	const char *conf = NULL, *log = NULL, *dir = NULL, *khex = NULL, *uuid = NULL,
		   *boot = NULL;
	uint8_t key[64];
	char label[96], why[200] = "";
	struct measurer *m = NULL;
	bool fresh = false;
	uint64_t g = 0;
	int c, n, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			conf = optarg;
			break;
		case 'l':
			log = optarg;
			break;
		case 's':
			dir = optarg;
			break;
		case 'k':
			khex = optarg;
			break;
		case 'u':
			uuid = optarg;
			break;
		case 'b':
			boot = optarg;
			break;
		case 'f':
			fresh = true;
			break;
		default:
			return 2;
		}
	}
	if (!conf || !log || !dir || !khex || !uuid || !boot)
		return fprintf(stderr,
			       "node-records: --tcti-conf --log --state-dir "
			       "--volume-key HEX --uuid --boot-id-file [--fresh]\n"),
		       2;
	n = hex_decode(khex, key, sizeof(key));
	if (n <= 0)
		return fprintf(stderr, "node-records: --volume-key: hex\n"), 2;
	r = measurer_open_tpm("swtpm", conf, log, &m);
	if (r < 0)
		return fprintf(stderr, "node-records: swtpm %s: %s\n", conf,
			       strerror(-r)),
		       1;
	snprintf(label, sizeof(label), "cvminit:volume-key:%s", uuid);
	r = measure_hmac(m, 15, label, MEASURE_EVENT_VOLUME_KEY, key, (size_t)n);
	if (r == 0)
		r = generation_measure(m, dir, fresh, boot, &g, why, sizeof(why));
	measurer_close(m);
	if (r < 0)
		return fprintf(stderr, "node-records: %s\n", why[0] ? why : strerror(-r)),
		       1;
	printf("generation %llu%s%s\n", (unsigned long long)g, why[0] ? ": " : "", why);
	return 0;
}
