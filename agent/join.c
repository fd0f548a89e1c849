/* cvminit-agent --join: the node's side of the join protocol (measured-boot/join-proto.h).
 * One blocking connection at a time; the TPM work is the agent's own (attest-node.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../lib/file.h"
#include "../lib/log.h"
#include "../lib/net.h"
#include "../lib/util.h"
#include "../measured-boot/attest-node.h"
#include "../measured-boot/attest-proto.h"
#include "../measured-boot/join-proto.h"
#include "join.h"

static const char *console_path;

void agent_join_console(const char *path)
{
	console_path = path;
}

/* The verdicts an operator must see on the node's console: cvminit passes service output
 * to the kernel log at debug level only. Never with a secret in it. */
static void console(const char *line)
{
	int fd;

	if (!console_path)
		return;
	fd = open(console_path, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return;
	(void)!write(fd, line, strlen(line));
	close(fd);
}

/* One attempt. -EAGAIN: worth retrying. */
static int join_once(struct tpm *t, const struct attest_keys *k,
		     const struct attest_sources *src, const char *target,
		     const uint8_t *pin, size_t pin_len, const char *out)
{
	static uint8_t body[JOIN_MAX_BODY], plain[JOIN_MAX_BODY];
	uint8_t hello[JOIN_PUB + JOIN_NONCE], hash[32], qn[32], key[32],
		svc_pub[JOIN_PUB];
	uint8_t hdr[JOIN_HDR];
	struct join_eph eph;
	struct join_msg m;
	const char *why = "";
	char dial_why[256];
	enum join_type type;
	_cleanup_close_ int fd = -1;
	int n, r;

	fd = net_dial(target, 60, dial_why, sizeof(dial_why));
	if (fd < 0)
		return log_warn("join: cannot connect: %s", dial_why), -EAGAIN;
	if (join_eph_new(&eph) < 0)
		return -EIO;
	memcpy(hello, eph.pub, JOIN_PUB);
	if (getrandom(hello + JOIN_PUB, JOIN_NONCE, 0) != JOIN_NONCE)
		return -EIO;
	if (join_send(fd, JOIN_HELLO, hello, sizeof(hello)) < 0)
		return -EAGAIN;
	/* The service's key proof comes first; nothing is quoted for a service without it. */
	if (read_full(fd, hdr, JOIN_HDR) != JOIN_HDR)
		return log_warn("join: %s: closed before its key proof", target), -EAGAIN;
	n = join_header_parse(hdr, &type);
	if (n < 0 || type != JOIN_SERVICE || read_full(fd, body, (size_t)n) != n ||
	    join_body_parse(type, body, (size_t)n, &m, &why) < 0)
		return console("cvminit-agent: join: REFUSED the join service: it did not "
			       "prove the pinned key; kubelet is not started\n"),
		       log_error(
			       "join: %s: REFUSED: the service did not prove the pinned key "
			       "(malformed answer)",
			       target),
		       -EPERM;
	join_transcript(eph.pub, hello + JOIN_PUB, m.svc_pub, m.nonce, hash);
	r = join_verify(pin, pin_len, hash, m.sig, m.sig_len);
	if (r < 0)
		return console("cvminit-agent: join: REFUSED the join service: it did not "
			       "prove the pinned key; kubelet is not started\n"),
		       log_error(
			       "join: %s: REFUSED: the service did not prove the pinned key "
			       "(%s)",
			       target,
			       r == -EINVAL ? "the pinned key does not parse"
					    : "bad signature"),
		       -EPERM;
	memcpy(svc_pub, m.svc_pub, JOIN_PUB);
	join_quote_nonce(m.nonce, eph.pub, qn);
	/* Attest requests until the verdict: only for the nonce that binds our key. */
	for (unsigned served = 0;;) {
		struct attest_request req;
		struct attest_buf b = {0};
		uint8_t secret[128];

		if (read_full(fd, hdr, JOIN_HDR) != JOIN_HDR)
			return log_warn("join: %s: closed during attestation", target),
			       -EAGAIN;
		if (memcmp(hdr, JOIN_MAGIC, 4) == 0)
			break;
		n = (int)((size_t)hdr[6] << 8 | hdr[7]);
		if (memcmp(hdr, ATTEST_MAGIC_REQ, 4) != 0 || n > ATTEST_MAX_BODY ||
		    served >= ATTEST_MAX_REQUESTS)
			return log_error("join: %s: not the join protocol", target),
			       -EAGAIN;
		memcpy(body, hdr, JOIN_HDR);
		if (read_full(fd, body + JOIN_HDR, (size_t)n) != n ||
		    attest_request_parse(body, JOIN_HDR + (size_t)n, &req) <= 0)
			return log_error("join: %s: malformed attest request", target),
			       -EAGAIN;
		served++;
		if (req.type == ATTEST_REQ_EVIDENCE) {
			const char *step = "";

			if (memcmp(req.nonce, qn, sizeof(qn)) != 0)
				return log_error(
					       "join: %s: evidence asked for a nonce that "
					       "does not bind our key",
					       target),
				       -EAGAIN;
			r = attest_evidence(t, k, src, req.nonce, &b, &step);
			if (r < 0)
				return log_errno(r, "join: evidence: %s", step), -EAGAIN;
		} else {
			r = attest_activate(t, k, req.blob, req.blob_len, req.secret,
					    req.secret_len, secret, sizeof(secret));
			attest_buf_begin(&b, r < 0 ? ATTEST_TPM_FAILED : ATTEST_OK);
			if (r >= 0)
				attest_buf_item(&b, ATTEST_ITEM_SECRET, secret,
						(size_t)r);
			if (attest_buf_end(&b) < 0)
				return attest_buf_free(&b), -ENOMEM;
		}
		r = write_full(fd, b.p, b.len);
		attest_buf_free(&b);
		if (r < 0)
			return -EAGAIN;
	}
	n = join_header_parse(hdr, &type);
	if (n < 0 || (type != JOIN_BUNDLE && type != JOIN_REFUSED) ||
	    read_full(fd, body, (size_t)n) != n ||
	    join_body_parse(type, body, (size_t)n, &m, &why) < 0)
		return log_error("join: %s: malformed verdict", target), -EAGAIN;
	if (type == JOIN_REFUSED) {
		/* The reason is the service's (printable ASCII, no secret: the parser and
		 * cvm-join see to both): the operator reads why on the console. */
		char line[700];

		snprintf(
			line, sizeof(line),
			"cvminit-agent: join: REFUSED by the join service: %.*s; kubelet is "
			"not started\n",
			n, body);
		console(line);
		return log_error("join: REFUSED by the join service: %.*s", n, body),
		       -EACCES;
	}
	r = join_bundle_key(&eph, svc_pub, eph.pub, svc_pub, key);
	if (r >= 0)
		r = join_open(key, body, (size_t)n, plain);
	memset(key, 0, sizeof(key));
	memset(&eph, 0, sizeof(eph));
	if (r < 0)
		return log_error("join: %s: the bundle does not decrypt", target),
		       -EAGAIN;
	n = r;
	r = write_file_replace(out, plain, (size_t)n, 0600);
	memset(plain, 0, (size_t)n);
	if (r < 0)
		return log_errno(r, "join: write %s", out);
	log_info("join: JOINED: bootstrap configuration written to %s", out);
	return 0;
}

int agent_join(struct tpm *t, const struct attest_keys *k,
	       const struct attest_sources *src, const char *target, const char *pinned,
	       const char *out, unsigned tries)
{
	_cleanup_free_ uint8_t *pin = NULL;
	size_t pin_len;
	unsigned delay = 1;
	int r;

	r = read_file_alloc(pinned, false, 65536, &pin, &pin_len);
	if (r < 0)
		return log_errno(r, "join: the pinned service key %s", pinned);
	for (unsigned i = 1;; i++) {
		r = join_once(t, k, src, target, pin, pin_len, out);
		if (r != -EAGAIN)
			return r;
		if (tries && i >= tries)
			return log_error("join: %s: gave up after %u attempts", target,
					 i),
			       -ETIMEDOUT;
		sleep(delay);
		delay = delay >= 16 ? 30 : delay * 2;
	}
}
