/* cvminit-agent: the node's attestation endpoint, a service cvminit supervises (never PID
 * 1 itself: this is the program that reads network input). One poll loop, a fixed pool.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/net.h"
#include "join.h"
#include "../measured-boot/attest-node.h"
#include "../measured-boot/attest-proto.h"
#include "../measured-boot/tpm.h"

/*
 * Bounded by construction: at most MAX_CONN connections (a new one evicts the oldest when
 * the pool is full, so idle connections cannot lock out a verifier), each with a request
 * buffer of ATTEST_MAX_REQUEST bytes, at most ATTEST_MAX_REQUESTS requests and a deadline
 * of timeout_ms from accept. TPM work is done one request at a time, in the loop.
 */
#define MAX_CONN 8

struct conn {
	int fd;
	int64_t deadline; /* ms, CLOCK_MONOTONIC */
	int64_t accepted;
	uint8_t in[ATTEST_MAX_REQUEST];
	size_t in_len;
	unsigned served;
	struct attest_buf out;
	size_t out_pos;
	bool close_after; /* after the response is out */
};

static struct conn conns[MAX_CONN];
static unsigned timeout_ms = 10000;
static struct tpm *tpm;
static struct attest_keys keys;
static struct attest_sources sources = {
	.firmware_log = "/run/log/cvminit/firmware.log",
	.cvminit_log = "/run/log/cvminit/measure.log",
	.tsm_root = "/sys/kernel/config/tsm/report",
};
static struct {
	unsigned long accepted, evicted, bad, timed_out, evidence, activate;
} stats;

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	attest_buf_free(&c->out);
	c->fd = -1;
	c->in_len = 0;
	c->served = 0;
	c->out_pos = 0;
	c->close_after = false;
}

static void reply_status(struct conn *c, enum attest_status status)
{
	attest_buf_begin(&c->out, status);
	if (attest_buf_end(&c->out) < 0)
		conn_close(c);
	else
		c->out_pos = 0;
}

/* Runs one complete request; the response goes to c->out. */
static void serve(struct conn *c, const struct attest_request *req)
{
	uint8_t secret[128];
	int r;

	c->served++;
	if (req->type == ATTEST_REQ_EVIDENCE) {
		stats.evidence++;
		const char *step = "";

		r = attest_evidence(tpm, &keys, &sources, req->nonce, &c->out, &step);
		if (r < 0) {
			char msg[160];

			snprintf(msg, sizeof(msg), "evidence: %s: %s", step,
				 strerror(-r));
			log_error("agent: %s", msg);
			attest_buf_begin(&c->out, ATTEST_TPM_FAILED);
			attest_buf_item(&c->out, ATTEST_ITEM_ERROR, msg, strlen(msg));
			if (attest_buf_end(&c->out) < 0) {
				conn_close(c);
				return;
			}
		}
	} else {
		stats.activate++;
		r = attest_activate(tpm, &keys, req->blob, req->blob_len, req->secret,
				    req->secret_len, secret, sizeof(secret));
		attest_buf_begin(&c->out, r < 0 ? ATTEST_TPM_FAILED : ATTEST_OK);
		if (r >= 0)
			attest_buf_item(&c->out, ATTEST_ITEM_SECRET, secret, (size_t)r);
		if (attest_buf_end(&c->out) < 0) {
			conn_close(c);
			return;
		}
	}
	c->out_pos = 0;
	/* The TPM work took its time; the peer gets the whole timeout for the reply. */
	c->deadline = (int64_t)now_ms() + timeout_ms;
	if (c->served >= ATTEST_MAX_REQUESTS)
		c->close_after = true;
}

static void on_readable(struct conn *c)
{
	struct attest_request req;
	ssize_t n;
	int k;

	n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	k = attest_request_parse(c->in, c->in_len, &req);
	if (k == 0)
		return;
	if (k < 0) {
		/* One status byte says why, then the connection is dropped. */
		stats.bad++;
		reply_status(c, ATTEST_BAD_REQUEST);
		c->close_after = true;
		c->in_len = 0;
		return;
	}
	serve(c, &req);
	/* A pipelined request behind this one is not read: one at a time. */
	memmove(c->in, c->in + k, c->in_len - (size_t)k);
	c->in_len -= (size_t)k;
}

static void on_writable(struct conn *c)
{
	ssize_t n =
		send(c->fd, c->out.p + c->out_pos, c->out.len - c->out_pos, MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->out_pos += (size_t)n;
	if (c->out_pos < c->out.len)
		return;
	attest_buf_free(&c->out);
	c->out_pos = 0;
	if (c->close_after)
		conn_close(c);
}

static void on_accept(int lfd)
{
	struct conn *slot = NULL, *oldest = NULL;
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	stats.accepted++;
	for (size_t i = 0; i < MAX_CONN; i++) {
		if (conns[i].fd < 0) {
			slot = &conns[i];
			break;
		}
		if (!oldest || conns[i].accepted < oldest->accepted)
			oldest = &conns[i];
	}
	if (!slot) {
		stats.evicted++;
		conn_close(oldest);
		slot = oldest;
	}
	slot->fd = fd;
	slot->accepted = (int64_t)now_ms();
	slot->deadline = slot->accepted + timeout_ms;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* Joined: a unix socket that accepts from now on, for cvminit's `ready socket`, so a
 * service `after join` (kubelet) starts only now. Kept until SIGTERM. */
static int ready_forever(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return 1;
	strcpy(a.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fd, 8) < 0) {
		log_errno(-errno, "join: ready socket %s", path);
		return 1;
	}
	while (!stop) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

		if (c >= 0)
			close(c);
	}
	unlink(path);
	return 0;
}

static const char help[] =
	"Usage: cvminit-agent [--port N] [--tcti device|swtpm] [--tcti-conf CONF]\n"
	"                     [--firmware-log FILE] [--log FILE] [--tsm DIR|none]\n"
	"                     [--timeout MS]\n"
	"       cvminit-agent --join HOST:PORT --join-key PEM --join-out FILE\n"
	"                     [--join-tries N] [--join-ready SOCKET] [--console FILE]\n"
	"                     [--tcti …]\n"
	"Answers attestation requests (docs/attestation.md) on TCP port N (default 7741).\n"
	"With --join: joins through the join service at HOST:PORT, which must prove the\n"
	"public key in --join-key, writes the bootstrap kubeconfig it sends to --join-out and\n"
	"exits 0 (with --join-ready: listens on that unix socket until SIGTERM instead, for\n"
	"cvminit's `ready socket`); 3 when the service refused the node or did not prove\n"
	"its key (said on --console too).\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"tcti", required_argument, NULL, 't'},
		{"tcti-conf", required_argument, NULL, 'c'},
		{"firmware-log", required_argument, NULL, 'f'},
		{"log", required_argument, NULL, 'l'},
		{"tsm", required_argument, NULL, 's'},
		{"timeout", required_argument, NULL, 'T'},
		{"join", required_argument, NULL, 'J'},
		{"join-key", required_argument, NULL, 'K'},
		{"join-out", required_argument, NULL, 'O'},
		{"join-tries", required_argument, NULL, 'N'},
		{"join-ready", required_argument, NULL, 'R'},
		{"console", required_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *tcti = "device", *tcti_conf = NULL;
	const char *join = NULL, *join_key = NULL, *join_out = NULL, *join_ready = NULL;
	unsigned join_tries = 0;
	unsigned port = ATTEST_PORT;
	struct sigaction sa = {.sa_handler = on_signal};
	int lfd, r, c;

	log_set_max_level(LOG_INFO);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			port = (unsigned)strtoul(optarg, NULL, 10);
			if (port == 0 || port > 65535) {
				fprintf(stderr, "cvminit-agent: bad --port %s\n", optarg);
				return 2;
			}
			break;
		case 't':
			tcti = optarg;
			break;
		case 'c':
			tcti_conf = optarg;
			break;
		case 'f':
			sources.firmware_log = optarg;
			break;
		case 'l':
			sources.cvminit_log = optarg;
			break;
		case 's':
			sources.tsm_root = streq(optarg, "none") ? NULL : optarg;
			break;
		case 'T':
			timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
			if (timeout_ms == 0 || timeout_ms > 600000) {
				fprintf(stderr, "cvminit-agent: bad --timeout %s\n",
					optarg);
				return 2;
			}
			break;
		case 'J':
			join = optarg;
			break;
		case 'K':
			join_key = optarg;
			break;
		case 'O':
			join_out = optarg;
			break;
		case 'N':
			join_tries = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'R':
			join_ready = optarg;
			break;
		case 'C':
			agent_join_console(optarg);
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			fputs(help, stderr);
			return 2;
		}
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < MAX_CONN; i++)
		conns[i].fd = -1;

	r = tpm_open(tcti, tcti_conf, &tpm);
	if (r < 0) {
		log_errno(r, "agent: open the TPM");
		return 1;
	}
	r = attest_keys_create(tpm, &keys);
	if (r < 0) {
		log_errno(r, "agent: create the EK and AK");
		return 1;
	}
	if (join) {
		if (!join_key || !join_out) {
			fputs(help, stderr);
			return 2;
		}
		sources.join = true; /* quotes no verifier can ask the agent for */
		r = agent_join(tpm, &keys, &sources, join, join_key, join_out,
			       join_tries);
		attest_keys_free(tpm, &keys);
		tpm_close(tpm);
		if (r < 0)
			return r == -EACCES || r == -EPERM ? 3 : 1;
		return join_ready ? ready_forever(join_ready) : 0;
	}
	{
		char addr[16], why[128];

		snprintf(addr, sizeof(addr), ":%u", port);
		lfd = net_listen(addr, true, 64, why, sizeof(why));
		if (lfd < 0) {
			log_errno(lfd, "agent: listen on port %u (%s)", port, why);
			return 1;
		}
	}
	log_info("agent: listening on port %u", port);

	while (!stop) {
		struct pollfd pfd[MAX_CONN + 1];
		struct conn *who[MAX_CONN + 1];
		int64_t t = (int64_t)now_ms(), wait = -1;
		size_t n = 0;

		pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
		who[n++] = NULL;
		for (size_t i = 0; i < MAX_CONN; i++) {
			struct conn *k = &conns[i];

			if (k->fd < 0)
				continue;
			if (t >= k->deadline) {
				stats.timed_out++;
				conn_close(k);
				continue;
			}
			if (wait < 0 || k->deadline - t < wait)
				wait = k->deadline - t;
			pfd[n] = (struct pollfd){.fd = k->fd,
						 .events = k->out.len ? POLLOUT : POLLIN};
			who[n++] = k;
		}
		r = poll(pfd, n, (int)wait);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			log_errno(-errno, "agent: poll");
			break;
		}
		for (size_t i = 1; i < n; i++) {
			if (!pfd[i].revents || who[i]->fd != pfd[i].fd)
				continue;
			if (pfd[i].revents & POLLOUT)
				on_writable(who[i]);
			else if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				on_readable(who[i]);
		}
		if (pfd[0].revents & POLLIN)
			on_accept(lfd);
	}
	log_info("agent: stopping: %lu connections, %lu evicted, %lu timed out, %lu bad "
		 "requests, %lu evidence, %lu activations",
		 stats.accepted, stats.evicted, stats.timed_out, stats.bad,
		 stats.evidence, stats.activate);
	for (size_t i = 0; i < MAX_CONN; i++)
		conn_close(&conns[i]);
	attest_keys_free(tpm, &keys);
	tpm_close(tpm);
	return 0;
}
