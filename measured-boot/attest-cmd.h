/* `cvm-measure attest` (attest-cmd.c): the verifier's command, called from cvm-measure's
 * main(). */
#pragma once

/* Returns the exit status (0 attested, 1 mismatch, 2 usage, 3 refused, 4 unreachable). */
int cmd_attest(int argc, char **argv);
