/* The node's side of the join protocol (cvminit-agent --join): proves its boot to cvm-join
 * and writes the bootstrap kubeconfig it gets back. */
#pragma once

struct tpm;
struct attest_keys;
struct attest_sources;

/* Joins through the service at target (HOST:PORT) whose public key is in the PEM file
 * pinned, writing the bundle to out (mode 0600, renamed into place). Retries a service
 * that cannot be reached or breaks off with backoff (1 s doubling to 30 s), tries times
 * (0: forever). Returns 0 joined, -EACCES refused by the service, -EPERM the service did
 * not prove the pinned key (never retried: an impersonator), -errno else. */
int agent_join(struct tpm *t, const struct attest_keys *k,
	       const struct attest_sources *src, const char *target, const char *pinned,
	       const char *out, unsigned tries);
/* Where refusals are also written, one line each (the node's /dev/console); NULL: none. */
void agent_join_console(const char *path);
