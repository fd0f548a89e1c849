/* cvm-join: the join service. A node dials in, gets the service's proof of its pinned key,
 * is attested with cvm-measure attest's checks, and only then gets its bootstrap kubeconfig. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mbedtls/base64.h>

#include "../lib/file.h"
#include "../lib/net.h"
#include "../lib/util.h"
#include "../measured-boot/attest-cmd.h"
#include "../measured-boot/join-proto.h"
#include "../measured-boot/join-store.h"
#include "../measured-boot/measurements.h"

static const char help[] =
	"Usage: cvm-join --listen ADDR:PORT --key PEM --measurements FILE --ek-ca PEM...\n"
	"                --server URL --cluster-ca PEM --token FILE [--state DIR]\n"
	"                [--max-joins N] [--stop-after-request]\n"
	"       cvm-join enrol --state DIR --node ID\n"
	"\n"
	"Serves the join protocol (docs/attestation.md): proves --key (the private key whose\n"
	"public part the node's image pins), attests the node exactly as `cvm-measure attest`\n"
	"does against --measurements and --ek-ca, and only then sends the node its bootstrap\n"
	"kubeconfig (API server --server, cluster CA --cluster-ca, bootstrap token from\n"
	"--token), encrypted to the key the node bound into its quote. Every refusal is\n"
	"logged with each mismatch and its reason is sent to the node.\n"
	"\n"
	"  --state DIR            freshness: one file per node (named by its EK's hash) with\n"
	"                         its last generation, boot ID and volume-key record; a join\n"
	"                         is refused as rolled back, swapped, lost or unknown by the\n"
	"                         rules of docs/attestation.md, and stored before the bundle\n"
	"                         is sent. Without it no freshness is checked (any node that\n"
	"                         attests joins, as before --state existed).\n"
	"  --max-joins N          exit after N connections (tests)\n"
	"  --stop-after-request   exit right after the first verified request was stored,\n"
	"                         before answering it (the crash test)\n"
	"\n"
	"enrol: the operator re-enrols a replaced node (a new image, a new state volume):\n"
	"the next join of node ID (what a refusal line names) is accepted with any volume\n"
	"key and generation, and recorded.\n";

static struct {
	uint8_t *key, *cas, *bundle;
	size_t key_len, cas_len, bundle_len;
	struct measurements m;
	const char *state;
	bool stop_after_request;
} cfg;

static void refuse(int fd, const char *peer, const char *reason)
{
	printf("cvm-join: %s: %s\n", peer, reason);
	join_send(fd, JOIN_REFUSED, reason, strlen(reason));
}

/* The freshness rules against --state (join-store.h): 0 to go on with the bundle, or
 * -EACCES after a refusal was logged and sent. Stored before the bundle is sent, so a
 * crash after this leaves the node known at this generation, and its retry in the same
 * boot is accepted. */
static int fresh(int fd, const char *peer, const struct attest_peer *p)
{
	struct join_node stored, seen = {.generation = p->generation};
	char reason[256], line[400];
	enum join_verdict v;
	bool enrol;
	int r;

	if (!p->has_volume_key || !p->has_generation) {
		snprintf(line, sizeof(line),
			 "REFUSED: no freshness records in the node's log (%s); node %s",
			 p->why, p->node_id);
		refuse(fd, peer, line);
		return -EACCES;
	}
	memcpy(seen.boot_id, p->boot_id, sizeof(seen.boot_id));
	memcpy(seen.volume_key, p->volume_key, sizeof(seen.volume_key));
	r = join_store_load(cfg.state, p->node_id, &stored);
	if (r < 0 && r != -ENOENT && r != -EBADMSG) {
		snprintf(line, sizeof(line),
			 "REFUSED: the join service cannot read its record of node %s",
			 p->node_id);
		printf("cvm-join: %s: %s/%s: %s\n", peer, cfg.state, p->node_id,
		       strerror(-r));
		refuse(fd, peer, line);
		return -EACCES;
	}
	enrol = join_enrol_pending(cfg.state, p->node_id);
	v = join_decide(r == 0 ? &stored : NULL, r == -EBADMSG, enrol, &seen, reason,
			sizeof(reason));
	snprintf(line, sizeof(line), "%s; node %s", reason, p->node_id);
	if (!join_verdict_accepts(v)) {
		refuse(fd, peer, line);
		return -EACCES;
	}
	if (v != JOIN_ACCEPT_RETRY) {
		r = join_store_save(cfg.state, p->node_id, &seen);
		if (r < 0) {
			printf("cvm-join: %s: cannot store %s/%s: %s\n", peer, cfg.state,
			       p->node_id, strerror(-r));
			refuse(fd, peer,
			       "REFUSED: the join service cannot store its record");
			return -EACCES;
		}
	}
	/* Cleared only once the join it allowed is stored: a crash in between leaves the
	 * enrolment armed, as the operator asked, never a node unrecorded. */
	if (enrol && join_enrol_clear(cfg.state, p->node_id) < 0)
		printf("cvm-join: %s: cannot remove the enrolment of node %s\n", peer,
		       p->node_id);
	printf("cvm-join: %s: %s (boot ID %s)\n", peer, line, seen.boot_id);
	if (cfg.stop_after_request) {
		printf("cvm-join: stopping after a stored request, before answering it "
		       "(--stop-after-request)\n");
		fflush(stdout);
		_exit(0);
	}
	return 0;
}

static int recv_msg(int fd, enum join_type want, uint8_t *body, struct join_msg *m,
		    const char **why)
{
	uint8_t hdr[JOIN_HDR];
	enum join_type type;
	int n;

	if (read_full(fd, hdr, sizeof(hdr)) != JOIN_HDR)
		return *why = "connection closed before a message", -EIO;
	n = join_header_parse(hdr, &type);
	if (n < 0 || type != want)
		return *why = "not the message expected", -EBADMSG;
	if (read_full(fd, body, (size_t)n) != n)
		return *why = "connection closed inside a message", -EIO;
	return join_body_parse(type, body, (size_t)n, m, why);
}

static void serve(int fd, const char *peer)
{
	static uint8_t body[JOIN_MAX_BODY], out[JOIN_MAX_BODY];
	uint8_t nonce[JOIN_NONCE], hash[32], qn[32], key[32], node_pub[JOIN_PUB];
	uint8_t svc[JOIN_PUB + JOIN_NONCE + JOIN_MAX_SIG];
	struct attest_peer who;
	struct join_eph eph;
	struct join_msg m;
	const char *why = NULL;
	size_t sig_len;
	char reason[160];
	int r;

	r = recv_msg(fd, JOIN_HELLO, body, &m, &why);
	if (r < 0) {
		printf("cvm-join: %s: REFUSED: hello: %s\n", peer, why);
		return;
	}
	memcpy(node_pub, m.node_pub, JOIN_PUB);
	if (join_eph_new(&eph) < 0 || getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
		return;
	join_transcript(m.node_pub, m.challenge, eph.pub, nonce, hash);
	memcpy(svc, eph.pub, JOIN_PUB);
	memcpy(svc + JOIN_PUB, nonce, JOIN_NONCE);
	r = join_sign(cfg.key, cfg.key_len, hash, svc + JOIN_PUB + JOIN_NONCE, &sig_len);
	if (r < 0) {
		printf("cvm-join: %s: cannot sign with --key: %s\n", peer, strerror(-r));
		return;
	}
	if (join_send(fd, JOIN_SERVICE, svc, JOIN_PUB + JOIN_NONCE + sig_len) < 0)
		return;
	join_quote_nonce(nonce, node_pub, qn);
	printf("cvm-join: %s: attesting\n", peer);
	fflush(stdout);
	r = attest_check_peer(fd, qn, &cfg.m, cfg.cas, cfg.cas_len, &who);
	fflush(stdout);
	if (r != 0) {
		snprintf(reason, sizeof(reason),
			 "attestation refused (cvm-measure attest exit status %d)", r);
		printf("cvm-join: %s: REFUSED: %s\n", peer, reason);
		join_send(fd, JOIN_REFUSED, reason, strlen(reason));
		return;
	}
	if (cfg.state && fresh(fd, peer, &who) < 0)
		return;
	r = join_bundle_key(&eph, node_pub, node_pub, eph.pub, key);
	if (r >= 0)
		r = join_seal(key, cfg.bundle, cfg.bundle_len, out);
	memset(key, 0, sizeof(key));
	memset(&eph, 0, sizeof(eph));
	if (r < 0) {
		printf("cvm-join: %s: cannot seal the bundle: %s\n", peer, strerror(-r));
		return;
	}
	if (join_send(fd, JOIN_BUNDLE, out, (size_t)r) < 0)
		printf("cvm-join: %s: the node went away before its bundle\n", peer);
	else
		printf("cvm-join: %s: JOINED: bundle sent (%zu bytes, encrypted to the "
		       "node's quoted key)\n",
		       peer, cfg.bundle_len);
}

static int load(const char *path, uint8_t **p, size_t *n)
{
	int r = read_file_alloc(path, false, 1u << 20, p, n);

	if (r < 0)
		fprintf(stderr, "cvm-join: %s: %s\n", path, strerror(-r));
	return r;
}

/* The bootstrap kubeconfig kubelet reads (--bootstrap-kubeconfig). */
static int make_bundle(const char *server, const char *ca_path, const char *token_path)
{
	_cleanup_free_ uint8_t *ca = NULL, *tok = NULL;
	_cleanup_free_ char *b64 = NULL;
	size_t ca_len, tok_len, b64_len = 0;
	char *text = NULL;
	int n;

	if (load(ca_path, &ca, &ca_len) < 0 || load(token_path, &tok, &tok_len) < 0)
		return -EINVAL;
	while (tok_len && (tok[tok_len - 1] == '\n' || tok[tok_len - 1] == '\r'))
		tok[--tok_len] = '\0';
	for (size_t i = 0; i < tok_len; i++)
		if (tok[i] < 0x21 || tok[i] > 0x7e)
			return fprintf(stderr,
				       "cvm-join: --token: not one printable word\n"),
			       -EINVAL;
	mbedtls_base64_encode(NULL, 0, &b64_len, ca, ca_len);
	b64 = malloc(b64_len + 1);
	if (!b64 || mbedtls_base64_encode((unsigned char *)b64, b64_len + 1, &b64_len, ca,
					  ca_len))
		return -ENOMEM;
	n = asprintf(
		&text,
		"apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n"
		"    server: %s\n    certificate-authority-data: %s\n"
		"users:\n- name: kubelet-bootstrap\n  user:\n    token: %s\n"
		"contexts:\n- name: bootstrap\n  context:\n    cluster: cluster\n"
		"    user: kubelet-bootstrap\ncurrent-context: bootstrap\n",
		server, b64, (char *)tok);
	if (n < 0)
		return -ENOMEM;
	if ((size_t)n > JOIN_MAX_BUNDLE) {
		free(text);
		return fprintf(stderr, "cvm-join: the bundle is over %d bytes\n",
			       JOIN_MAX_BUNDLE),
		       -E2BIG;
	}
	cfg.bundle = (uint8_t *)text;
	cfg.bundle_len = (size_t)n;
	return 0;
}

/* cvm-join enrol --state DIR --node ID */
static int enrol(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state", required_argument, NULL, 'S'},
		{"node", required_argument, NULL, 'N'},
		{},
	};
	const char *dir = NULL, *id = NULL;
	int c, r;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'S')
			dir = optarg;
		else if (c == 'N')
			id = optarg;
		else
			return fputs(help, stderr), 2;
	}
	if (optind < argc || !dir || !id)
		return fputs(help, stderr), 2;
	if (!join_node_id_valid(id)) {
		fprintf(stderr,
			"cvm-join: enrol: --node %s: want the 64 hex digits a refusal names\n",
			id);
		return 2;
	}
	r = join_enrol_arm(dir, id);
	if (r < 0) {
		fprintf(stderr, "cvm-join: enrol: %s/%s.enrol: %s\n", dir, id,
			strerror(-r));
		return 2;
	}
	printf("cvm-join: node %s: enrolment armed: its next join is accepted with any "
	       "volume key and generation, and recorded\n",
	       id);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"key", required_argument, NULL, 'k'},
		{"measurements", required_argument, NULL, 'm'},
		{"ek-ca", required_argument, NULL, 'c'},
		{"server", required_argument, NULL, 's'},
		{"cluster-ca", required_argument, NULL, 'a'},
		{"token", required_argument, NULL, 't'},
		{"max-joins", required_argument, NULL, 'n'},
		{"state", required_argument, NULL, 'S'},
		{"stop-after-request", no_argument, NULL, 'x'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *listen_addr = NULL, *keyp = NULL, *mp = NULL, *server = NULL,
		   *cap = NULL, *tokp = NULL;
	_cleanup_free_ uint8_t *mbuf = NULL;
	unsigned long max_joins = 0, served = 0;
	size_t mlen;
	char err[256];
	int c, lfd;

	if (argc > 1 && streq(argv[1], "enrol"))
		return enrol(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_addr = optarg;
			break;
		case 'k':
			keyp = optarg;
			break;
		case 'm':
			mp = optarg;
			break;
		case 'c': {
			uint8_t *f, *g;
			size_t n;

			if (load(optarg, &f, &n) < 0)
				return 2;
			g = realloc(cfg.cas, cfg.cas_len + n + 2);
			if (!g)
				return 2;
			cfg.cas = g;
			memcpy(cfg.cas + cfg.cas_len, f, n);
			cfg.cas[cfg.cas_len + n] = '\n';
			cfg.cas_len += n + 1;
			cfg.cas[cfg.cas_len] = '\0';
			free(f);
			break;
		}
		case 's':
			server = optarg;
			break;
		case 'a':
			cap = optarg;
			break;
		case 't':
			tokp = optarg;
			break;
		case 'n':
			max_joins = strtoul(optarg, NULL, 10);
			break;
		case 'S':
			cfg.state = optarg;
			break;
		case 'x':
			cfg.stop_after_request = true;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			fputs(help, stderr);
			return 2;
		}
	}
	if (optind < argc || !listen_addr || !keyp || !mp || !cfg.cas || !server ||
	    !cap || !tokp || (cfg.stop_after_request && !cfg.state)) {
		fputs(help, stderr);
		return 2;
	}
	if (cfg.state && access(cfg.state, W_OK) < 0) {
		fprintf(stderr, "cvm-join: --state %s: %s\n", cfg.state, strerror(errno));
		return 2;
	}
	cfg.cas_len++; /* the NUL, as mbedtls wants PEM */
	if (load(keyp, &cfg.key, &cfg.key_len) < 0 || load(mp, &mbuf, &mlen) < 0 ||
	    make_bundle(server, cap, tokp) < 0)
		return 2;
	if (measurements_parse((const char *)mbuf, mlen, &cfg.m, err, sizeof(err)) < 0) {
		fprintf(stderr, "cvm-join: %s: %s\n", mp, err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	lfd = net_listen(listen_addr, false, 16, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "cvm-join: listen on %s\n", err);
		return 2;
	}
	printf("cvm-join: listening on %s\n", listen_addr);
	while (!max_joins || served < max_joins) {
		struct sockaddr_in peer;
		socklen_t pl = sizeof(peer);
		struct timeval tv = {.tv_sec = 60};
		char name[64];
		int fd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		snprintf(name, sizeof(name), "%s:%u", inet_ntoa(peer.sin_addr),
			 ntohs(peer.sin_port));
		serve(fd, name);
		close(fd);
		served++;
	}
	measurements_free(&cfg.m);
	return 0;
}
