/* `cvm-measure attest` (attest-cmd.c): the verifier's command, called from cvm-measure's
 * main(). */
#pragma once

/* Returns the exit status (0 attested, 1 mismatch, 2 usage, 3 refused, 4 unreachable). */
int cmd_attest(int argc, char **argv);

#include <stddef.h>
#include <stdint.h>

struct measurements;

/* The same checks on a connection a node opened (cvm-join): evidence over nonce asked on
 * fd, then the AK binding, the logs and measurements.json, each finding printed on
 * stdout. Returns the exit status cmd_attest would (0 only when attested). */
int attest_check_peer(int fd, const uint8_t *nonce, const struct measurements *m,
		      const uint8_t *cas, size_t cas_len);
