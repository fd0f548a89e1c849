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
#include "../measured-boot/measurements.h"

static const char help[] =
	"Usage: cvm-join --listen ADDR:PORT --key PEM --measurements FILE --ek-ca PEM...\n"
	"                --server URL --cluster-ca PEM --token FILE [--max-joins N]\n"
	"\n"
	"Serves the join protocol (docs/attestation.md): proves --key (the private key whose\n"
	"public part the node's image pins), attests the node exactly as `cvm-measure attest`\n"
	"does against --measurements and --ek-ca, and only then sends the node its bootstrap\n"
	"kubeconfig (API server --server, cluster CA --cluster-ca, bootstrap token from\n"
	"--token), encrypted to the key the node bound into its quote. Every refusal is\n"
	"logged with each mismatch. --max-joins: exit after N connections (tests).\n";

static struct {
	uint8_t *key, *cas, *bundle;
	size_t key_len, cas_len, bundle_len;
	struct measurements m;
} cfg;

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
	r = attest_check_peer(fd, qn, &cfg.m, cfg.cas, cfg.cas_len);
	fflush(stdout);
	if (r != 0) {
		snprintf(reason, sizeof(reason),
			 "attestation refused (cvm-measure attest exit status %d)", r);
		printf("cvm-join: %s: REFUSED: %s\n", peer, reason);
		join_send(fd, JOIN_REFUSED, reason, strlen(reason));
		return;
	}
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
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			fputs(help, stderr);
			return 2;
		}
	}
	if (optind < argc || !listen_addr || !keyp || !mp || !cfg.cas || !server ||
	    !cap || !tokp) {
		fputs(help, stderr);
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
