/* TCP for the tools that talk to a node or a join service (cvm-measure attest, the agent's
 * join step): one way to dial HOST:PORT. PID 1 never dials; it does not call this. */
#pragma once

#include <stddef.h>

/* Connects to target ("host:port", "[v6]:port"), send and receive timeouts of timeout_s.
 * Returns the socket (close-on-exec), or -EINVAL (not HOST:PORT), -EHOSTUNREACH (no
 * address answered) or -ENOMEM, with why saying which and for what. */
int net_dial(const char *target, unsigned timeout_s, char *why, size_t why_len);
