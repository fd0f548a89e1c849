/* TCP for the tools that talk to a node or a join service (cvm-measure attest, the agent's
 * join step, cvm-join): one way to dial HOST:PORT and one to listen. PID 1 calls neither. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Connects to target ("host:port", "[v6]:port"), send and receive timeouts of timeout_s.
 * Returns the socket (close-on-exec), or -EINVAL (not HOST:PORT), -EHOSTUNREACH (no
 * address answered) or -ENOMEM, with why saying which and for what. */
int net_dial(const char *target, unsigned timeout_s, char *why, size_t why_len);

/* Listens on addr: "HOST:PORT" or "[v6]:PORT" (a numeric address), or ":PORT" for every
 * address (IPv6 dual stack when the kernel has it, else IPv4). SO_REUSEADDR, close-on-exec,
 * non-blocking when nonblock. Returns the socket, or -EINVAL (not that form, port 0) or
 * the socket call's -errno, with why saying which. */
int net_listen(const char *addr, bool nonblock, int backlog, char *why, size_t why_len);
