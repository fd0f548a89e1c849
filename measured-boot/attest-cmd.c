/* `cvm-measure attest`: asks a node's agent for evidence over a fresh nonce (or reads
 * saved evidence), checks it, replays its logs and compares it with measurements.json. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../lib/hex.h"
#include "../lib/net.h"
#include "../lib/util.h"
#include "attest-cmd.h"
#include "attest-proto.h"
#include "attest-verify.h"
#include "../lib/digest.h"
#include "eventlog.h"
#include "measurements.h"
#include "replay.h"
#include "tcglog.h"

enum {
	ATTEST_EXIT_OK = 0,
	ATTEST_EXIT_MISMATCH = 1,
	ATTEST_EXIT_USAGE = 2,
	ATTEST_EXIT_REFUSED = 3,
	ATTEST_EXIT_UNREACHABLE = 4,
};

static const char help[] =
	"Usage: cvm-measure attest HOST:PORT --measurements FILE --ek-ca PEM [--ek-ca PEM]...\n"
	"                          [--json] [--save-evidence FILE] [--timeout SECONDS]\n"
	"       cvm-measure attest --evidence FILE [--nonce HEX] --measurements FILE\n"
	"                          --ek-ca PEM... [--json]\n"
	"\n"
	"Asks cvminit-agent on HOST:PORT for evidence over a fresh random nonce and checks,\n"
	"in order: the EK certificate's chain to a CA given with --ek-ca; the AK public (a\n"
	"restricted signing key made in the TPM); the quote's signature by the AK, its nonce,\n"
	"and the PCR values it signs; the AK's binding to that EK (MakeCredential here,\n"
	"ActivateCredential on the node); that the firmware's log and cvminit's replay to the\n"
	"quoted PCRs and that every cvminit record's content is what its digests are the\n"
	"hash of. Then it compares the quoted PCRs with measurements.json and prints every\n"
	"difference: PCR, expected, got, and the log records that explain it.\n"
	"\n"
	"  --measurements FILE   the image's measurements.json (docs/attestation.md)\n"
	"  --ek-ca PEM           CA certificates the EK certificate must chain to (PEM; the\n"
	"                        option repeats, a file may hold several)\n"
	"  --json                print one JSON object instead of text\n"
	"  --save-evidence FILE  write the nonce and the agent's response to FILE\n"
	"  --evidence FILE       check saved evidence instead of asking a node; the AK\n"
	"                        binding cannot be checked without the TPM (said so)\n"
	"  --nonce HEX           with --evidence: the nonce to expect instead of the saved one\n"
	"  --timeout SECONDS     for the connection and each response (default 30)\n"
	"\n"
	"Exit status: 0 attested: the evidence is genuine and matches every enforced value;\n"
	"1 the evidence is genuine but an enforced value differs; 2 usage error or an\n"
	"unreadable input; 3 the evidence is refused (EK chain, AK, signature, nonce, AK\n"
	"binding, logs that do not replay to the quote or whose content is not what was\n"
	"hashed); 4 the agent cannot be reached or answered outside the protocol.\n";

struct out {
	bool json;
	json_object *findings;
};

/* One finding: a line of text, or an entry of the JSON's "findings". kind: ok, refused,
 * mismatch, warning, pin, note, info. */
static void say(struct out *o, const char *kind, int pcr, const char *fmt, ...)
	_printf_(4, 5);
static void say(struct out *o, const char *kind, int pcr, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	if (!o->json) {
		puts(msg);
		return;
	}
	json_object *f = json_object_new_object();
	if (!f)
		return;
	json_object_object_add(f, "kind", json_object_new_string(kind));
	if (pcr >= 0)
		json_object_object_add(f, "pcr", json_object_new_int(pcr));
	json_object_object_add(f, "message", json_object_new_string(msg));
	json_object_array_add(o->findings, f);
}

static int slurp(const char *path, uint8_t **ret, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t k;

		if (n + 1 >= cap) {
			uint8_t *g;

			cap = cap ? cap * 2 : 65536;
			if (cap > ATTEST_MAX_RESPONSE * 2) {
				free(buf);
				return -EFBIG;
			}
			g = realloc(buf, cap);
			if (!g) {
				free(buf);
				return -ENOMEM;
			}
			buf = g;
		}
		k = read(fd, buf + n, cap - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = -errno;
			free(buf);
			return e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	buf[n] = '\0';
	*ret = buf;
	*len = n;
	return 0;
}

/* --- the network round trips ------------------------------------------------------ */

/* Sends a request and reads its whole response into *buf. */
static int round_trip(int fd, const struct attest_request *req, uint8_t **buf,
		      size_t *len, char *why, size_t why_len)
{
	uint8_t out[ATTEST_MAX_REQUEST];
	struct attest_response resp;
	size_t cap = 65536, got = 0, need = ATTEST_RESP_HDR;
	const char *bad = NULL;
	int n = attest_request_write(out, req);
	uint8_t *b;

	if (n < 0)
		return n;
	if (send(fd, out, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(why, why_len, "send: %s", strerror(errno));
		return -EIO;
	}
	b = malloc(cap);
	if (!b)
		return -ENOMEM;
	for (;;) {
		ssize_t k;
		int r;

		if (got >= need) {
			r = attest_response_parse(b, got, &resp, &need, &bad);
			if (r < 0) {
				snprintf(why, why_len, "malformed response: %s", bad);
				free(b);
				return -EBADMSG;
			}
			if (need == 0)
				break;
		}
		if (need > cap) {
			uint8_t *g = realloc(b, need);
			if (!g) {
				free(b);
				return -ENOMEM;
			}
			b = g;
			cap = need;
		}
		k = recv(fd, b + got, need - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(why, why_len, "%s after %zu bytes of the response",
				 k == 0 ? "connection closed" : strerror(errno), got);
			free(b);
			return -EIO;
		}
		got += (size_t)k;
	}
	*buf = b;
	*len = got;
	return 0;
}

/* --- logs -------------------------------------------------------------------------- */

struct logs {
	struct eventlog all; /* the firmware's events, then cvminit's records */
	size_t n_fw;
	unsigned locality;
};

static void describe(const struct logs *l, size_t idx, char *buf, size_t n)
{
	const struct eventlog_record *r = &l->all.records[idx];

	if (idx < l->n_fw)
		snprintf(buf, n, "firmware log event %llu (byte offset %zu): %s \"%s\"",
			 (unsigned long long)r->recnum, r->offset,
			 r->event_type ? r->event_type : "?", r->event ? r->event : "");
	else
		snprintf(buf, n, "cvminit log record %llu (byte offset %zu): \"%s\"",
			 (unsigned long long)r->recnum, r->offset,
			 r->event ? r->event : "");
}

/* The content of a cvminit record as one printable line: control bytes as \xNN. */
static char *printable(const uint8_t *p, size_t n)
{
	char *s = malloc(4 * n + 1), *w = s;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
			w += sprintf(w, "\\x%02x", p[i]);
		else
			*w++ = (char)p[i];
	}
	*w = '\0';
	return s;
}

static int load_logs(struct out *o, const struct attest_response *resp, struct logs *l)
{
	const struct attest_span *fw = &resp->item[ATTEST_ITEM_FIRMWARE_LOG],
				 *cel = &resp->item[ATTEST_ITEM_CVMINIT_LOG];
	struct eventlog c = {0};
	size_t bad = 0;
	const char *why = NULL;
	int r;

	if (fw->present) {
		r = tcglog_parse(fw->p, fw->len, &l->all, &l->locality, &bad, &why);
		if (r < 0) {
			say(o, "refused", -1,
			    "firmware log: malformed at byte offset %zu: %s", bad,
			    why ? why : strerror(-r));
			return -EBADMSG;
		}
		l->n_fw = l->all.n;
	} else {
		say(o, "note", -1,
		    "the evidence has no firmware log: PCRs 0-7 cannot be "
		    "explained");
	}
	if (cel->present) {
		r = eventlog_parse((const char *)cel->p, cel->len, &c, &bad);
		if (r < 0) {
			eventlog_free(&c);
			say(o, "refused", -1,
			    "cvminit log: malformed record at byte offset %zu", bad);
			return -EBADMSG;
		}
		if (c.n) {
			struct eventlog_record *g =
				realloc(l->all.records, (l->all.n + c.n) * sizeof(*g));
			if (!g) {
				eventlog_free(&c);
				return -ENOMEM;
			}
			memcpy(g + l->all.n, c.records, c.n * sizeof(*g));
			l->all.records = g;
			l->all.n += c.n;
			free(c.records);
		}
	} else {
		say(o, "note", -1, "the evidence has no cvminit log");
	}
	return 0;
}

/* The logs replay to the quoted PCRs in every bank they have digests for, and every
 * cvminit record's content reproduces its digests. Returns whether they do. */
static bool check_logs(struct out *o, const struct logs *l,
		       const struct attest_verified *v)
{
	bool ok = true;
	uint32_t touched = UINT32_C(1) << 11 | UINT32_C(1) << 15;

	for (size_t i = 0; i < l->all.n; i++)
		if (l->all.records[i].extended && l->all.records[i].rtmr < 0 &&
		    l->all.records[i].pcr < ATTEST_QUOTED_PCRS)
			touched |= UINT32_C(1) << l->all.records[i].pcr;
	for (size_t b = 0; b < v->n_banks; b++) {
		struct replay_pcrs start, quoted;
		const char *bank = digest_alg_name(v->banks[b].alg) ?: "?";
		struct replay_divergence d;
		int r;

		if (replay_reset(&start, v->banks[b].alg, l->locality) < 0) {
			say(o, "note", -1,
			    "bank 0x%04x: not replayed (an algorithm we cannot "
			    "hash)",
			    v->banks[b].alg);
			continue;
		}
		quoted = start;
		for (unsigned p = 0; p < ATTEST_QUOTED_PCRS; p++)
			memcpy(quoted.v[p], v->banks[b].v[p], v->banks[b].size);
		for (unsigned p = 0; p < ATTEST_QUOTED_PCRS; p++) {
			char what[512];

			if (!(touched & (UINT32_C(1) << p)))
				continue;
			r = replay_verify_from(&l->all, &start, &quoted, UINT32_C(1) << p,
					       &d);
			if (r == -ENODATA) {
				say(o, "note", -1,
				    "%s: a log record has no %s digest; that bank is not "
				    "replayed",
				    bank, bank);
				break;
			}
			if (r < 0)
				return say(o, "refused", -1, "replay %s: %s", bank,
					   strerror(-r)),
				       false;
			if (r == 0)
				continue;
			ok = false;
			if (d.n_records == 0) {
				say(o, "refused", (int)p,
				    "PCR %u %s: the quoted value has no event in the logs: it "
				    "was extended without a record",
				    p, bank);
				continue;
			}
			describe(l, d.record, what, sizeof(what));
			say(o, "refused", (int)p,
			    "PCR %u %s: the logs do not replay to the quoted value; %s: %s",
			    p, bank,
			    d.prefix_matched
				    ? "first record not reflected"
				    : "no prefix of its records reproduces it, its "
				      "first record",
			    what);
		}
	}
	for (size_t i = l->n_fw; i < l->all.n; i++) {
		const struct eventlog_record *r = &l->all.records[i];
		char why[160], what[512];
		int k = eventlog_check_content(r, why, sizeof(why));

		if (k == 0 || k == -ENOKEY)
			continue;
		ok = false;
		describe(l, i, what, sizeof(what));
		say(o, "refused", (int)r->pcr,
		    "%s: its content is not what was measured: %s", what, why);
	}
	return ok;
}

/* --- measurements.json ------------------------------------------------------------ */

static const struct digest *bank_of(const struct digest *d, size_t n, uint16_t alg)
{
	for (size_t i = 0; i < n; i++)
		if (d[i].alg == alg)
			return &d[i];
	return NULL;
}

/* The log records that explain PCR p's value, one finding each. */
static void explain(struct out *o, const struct logs *l, unsigned p, uint16_t alg)
{
	unsigned shown = 0;

	for (size_t i = 0; i < l->all.n; i++) {
		const struct eventlog_record *r = &l->all.records[i];
		const struct digest *d = bank_of(r->digests, r->n_digests, alg);
		char what[512], hex[2 * DIGEST_MAX + 1] = "";
		_cleanup_free_ char *text = NULL;

		if (r->pcr != p || !r->extended || r->rtmr >= 0)
			continue;
		describe(l, i, what, sizeof(what));
		if (d)
			hex_encode(d->buf, d->size, hex);
		if (i >= l->n_fw && r->has_data)
			text = printable(r->data, r->data_len > 512 ? 512 : r->data_len);
		say(o, "info", (int)p, "    %s %s%s%s%s", what, hex,
		    text ? " content \"" : "", text ? text : "",
		    text ? (r->data_len > 512 ? "…\"" : "\"") : "");
		shown++;
	}
	if (!shown)
		say(o, "info", (int)p, "    (no log record for PCR %u)", p);
}

/* PCR 15's records in the node's log against the image's: the image-wide prefix must be
 * the same records, then only per-node ones (reported as values to pin). */
static bool check_pcr15(struct out *o, const struct logs *l, const struct measurements *m,
			uint16_t alg)
{
	size_t k = 0;
	bool ok = true;

	for (size_t i = l->n_fw; i < l->all.n; i++) {
		const struct eventlog_record *r = &l->all.records[i];
		const struct digest *got = bank_of(r->digests, r->n_digests, alg);
		char hex[2 * DIGEST_MAX + 1];

		if (r->pcr != 15 || !r->extended || r->rtmr >= 0)
			continue;
		if (k < m->n_replay) {
			const struct meas_record *want = &m->replay[k++];
			const struct digest *w =
				bank_of(want->digests, want->n_digests, alg);
			_cleanup_free_ char *t_want = NULL, *t_got = NULL;

			if (r->event && streq(r->event, want->event) && w && got &&
			    memcmp(w->buf, got->buf, got->size) == 0)
				continue;
			ok = false;
			t_want = want->has_data ? printable(want->data, want->data_len)
						: NULL;
			t_got = r->has_data ? printable(r->data, r->data_len) : NULL;
			say(o, "mismatch", 15,
			    "PCR 15 record %zu: expected \"%s\" with content \"%s\"; the node "
			    "measured \"%s\" with content \"%s\"",
			    k - 1, want->event, t_want ? t_want : "(not given)",
			    r->event ? r->event : "", t_got ? t_got : "(not logged)");
			continue;
		}
		if (r->event && measurements_per_node(m, r->event)) {
			if (got) {
				hex_encode(got->buf, got->size, hex);
				say(o, "pin", 15,
				    "PCR 15 per-node record \"%s\": %s %s (pin it "
				    "for this node)",
				    r->event, digest_alg_name(alg), hex);
			}
			continue;
		}
		ok = false;
		say(o, "mismatch", 15,
		    "PCR 15: record \"%s\" is neither one of the image's records nor a "
		    "per-node one measurements.json allows",
		    r->event ? r->event : "");
	}
	if (k < m->n_replay) {
		ok = false;
		say(o, "mismatch", 15,
		    "PCR 15: the node's log lacks the image's record \"%s\"",
		    m->replay[k].event);
	}
	return ok;
}

static int compare(struct out *o, const struct logs *l, const struct measurements *m,
		   const struct attest_verified *v, bool *enforced_ok)
{
	size_t len = 32, b;
	uint16_t alg;

	for (unsigned p = 0; p < MEAS_PCRS; p++)
		if (m->pcr[p].has_expected)
			len = m->pcr[p].expected_len;
	alg = len == 48 ? DIGEST_ALG_SHA384 : DIGEST_ALG_SHA256;
	for (b = 0; b < v->n_banks; b++)
		if (v->banks[b].alg == alg)
			break;
	if (b == v->n_banks) {
		say(o, "refused", -1,
		    "the quote does not cover the %s bank measurements.json "
		    "is in",
		    digest_alg_name(alg));
		return -ENODATA;
	}
	*enforced_ok = true;
	for (unsigned p = 0; p < MEAS_PCRS; p++) {
		char want[2 * DIGEST_MAX + 1], got[2 * DIGEST_MAX + 1];

		if (!m->pcr[p].present)
			continue;
		if (p >= ATTEST_QUOTED_PCRS) {
			say(o, "note", (int)p, "PCR %u: not quoted (PCRs 0-15 are)", p);
			continue;
		}
		hex_encode(v->banks[b].v[p], len, got);
		if (p == 15 && !check_pcr15(o, l, m, alg))
			*enforced_ok = false;
		if (!m->pcr[p].has_expected) {
			if (p == 15)
				say(o, "ok", 15,
				    "PCR 15 %s: %s (its image-wide records checked; "
				    "no value to compare: per node)",
				    digest_alg_name(alg), got);
			continue;
		}
		hex_encode(m->pcr[p].expected, len, want);
		if (memcmp(m->pcr[p].expected, v->banks[b].v[p], len) == 0) {
			say(o, "ok", (int)p, "PCR %u %s: match%s", p,
			    digest_alg_name(alg),
			    m->pcr[p].warn_only ? " (warnOnly)" : "");
			continue;
		}
		if (!m->pcr[p].warn_only)
			*enforced_ok = false;
		say(o, m->pcr[p].warn_only ? "warning" : "mismatch", (int)p,
		    "PCR %u %s: %s\n  expected: %s\n  got:      %s\n  the log records that "
		    "explain it:",
		    p, digest_alg_name(alg),
		    m->pcr[p].warn_only ? "WARNING (warnOnly)" : "MISMATCH", want, got);
		explain(o, l, p, alg);
	}
	return 0;
}

/* --- the command ------------------------------------------------------------------ */

static int refuse(struct out *o, const char *check, const char *why)
{
	say(o, "refused", -1, "%s: REFUSED: %s", check, why);
	return ATTEST_EXIT_REFUSED;
}

static bool is_volume_key(const struct eventlog_record *r)
{
	return r->event && r->event_type && streq(r->event_type, "volume-key") &&
	       startswith(r->event, "cvminit:volume-key:");
}

static bool is_generation(const struct eventlog_record *r)
{
	return r->event && streq(r->event, GENERATION_EVENT);
}

void attest_peer_records(const struct eventlog *log, size_t first,
			 struct attest_peer *peer)
{
	const struct eventlog_record *vk, *gen;
	const struct digest *d;
	unsigned n_vk, n_gen;

	/* Only what reached PCR 15 of this TPM counts (replayed to the quote). */
	n_vk = eventlog_pcr_records(log, first, 15, is_volume_key, &vk);
	n_gen = eventlog_pcr_records(log, first, 15, is_generation, &gen);
	peer->why[0] = '\0';
	d = vk ? bank_of(vk->digests, vk->n_digests, DIGEST_ALG_SHA256) : NULL;
	peer->has_volume_key = d && d->size == 32;
	if (peer->has_volume_key)
		memcpy(peer->volume_key, d->buf, 32);
	peer->has_generation =
		gen && gen->has_data &&
		generation_content_parse(gen->data, gen->data_len, &peer->generation,
					 peer->boot_id) == 0;
	if (n_vk != 1 || !peer->has_volume_key) {
		peer->has_volume_key = false;
		snprintf(
			peer->why, sizeof(peer->why),
			"%u cvminit:volume-key records with a sha256 digest in PCR 15 (one "
			"expected)",
			n_vk);
	} else if (n_gen != 1 || !peer->has_generation) {
		peer->has_generation = false;
		snprintf(
			peer->why, sizeof(peer->why),
			n_gen == 1
				? "its cvminit:generation record's content is malformed"
				: "%u cvminit:generation records in PCR 15 (one expected)",
			n_gen);
	}
}

static int run(struct out *o, const char *target, const char *evidence,
	       const char *nonce_hex, const char *save, unsigned timeout_s,
	       const struct measurements *m, const uint8_t *cas, size_t cas_len,
	       int peer_fd, const uint8_t *peer_nonce, struct attest_peer *peer)
{
	_cleanup_free_ uint8_t *ev = NULL, *act = NULL;
	_cleanup_close_ int fd = -1;
	struct attest_response resp, aresp;
	static struct attest_verified v;
	struct logs l = {0};
	uint8_t nonce[ATTEST_NONCE];
	const uint8_t *body;
	size_t ev_len = 0, body_len, need, act_len;
	char why[ATTEST_WHY_MAX];
	const char *bad = NULL;
	bool enforced_ok = false, logs_ok;
	int r, ret;

	if (evidence) {
		r = slurp(evidence, &ev, &ev_len);
		if (r < 0 || ev_len < ATTEST_NONCE) {
			fprintf(stderr, "cvm-measure: %s: %s\n", evidence,
				r < 0 ? strerror(-r) : "too short for saved evidence");
			return ATTEST_EXIT_USAGE;
		}
		memcpy(nonce, ev, ATTEST_NONCE);
		if (nonce_hex &&
		    hex_decode(nonce_hex, nonce, ATTEST_NONCE) != ATTEST_NONCE) {
			fprintf(stderr, "cvm-measure: --nonce: want 64 hex digits\n");
			return ATTEST_EXIT_USAGE;
		}
		body = ev + ATTEST_NONCE;
		body_len = ev_len - ATTEST_NONCE;
	} else {
		struct attest_request req = {.type = ATTEST_REQ_EVIDENCE};

		if (peer_fd >= 0) {
			/* cvm-join: the node dialled in, the nonce binds its key. */
			memcpy(nonce, peer_nonce, sizeof(nonce));
			fd = dup(peer_fd);
		} else if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce)) {
			return ATTEST_EXIT_USAGE;
		} else {
			fd = net_dial(target, timeout_s, why, sizeof(why));
		}
		if (fd < 0)
			return say(o, "refused", -1, "agent: cannot connect: %s", why),
			       ATTEST_EXIT_UNREACHABLE;
		memcpy(req.nonce, nonce, sizeof(nonce));
		r = round_trip(fd, &req, &act, &act_len, why, sizeof(why));
		if (r < 0)
			return say(o, "refused", -1, "agent: %s", why),
			       ATTEST_EXIT_UNREACHABLE;
		ev_len = ATTEST_NONCE + act_len;
		ev = malloc(ev_len);
		if (!ev)
			return ATTEST_EXIT_USAGE;
		memcpy(ev, nonce, ATTEST_NONCE);
		memcpy(ev + ATTEST_NONCE, act, act_len);
		free(act);
		act = NULL;
		body = ev + ATTEST_NONCE;
		body_len = act_len;
		if (save) {
			_cleanup_close_ int sfd = open(
				save, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (sfd < 0 || write(sfd, ev, ev_len) != (ssize_t)ev_len) {
				fprintf(stderr, "cvm-measure: %s: %s\n", save,
					strerror(errno));
				return ATTEST_EXIT_USAGE;
			}
		}
	}
	{
		char hex[2 * ATTEST_NONCE + 1];

		hex_encode(nonce, ATTEST_NONCE, hex);
		say(o, "info", -1, "nonce %s", hex);
	}
	r = attest_response_parse(body, body_len, &resp, &need, &bad);
	if (r < 0 || need)
		return say(o, "refused", -1, "evidence: malformed: %s",
			   bad ? bad : "truncated"),
		       evidence ? ATTEST_EXIT_REFUSED : ATTEST_EXIT_UNREACHABLE;
	if (resp.status != ATTEST_OK) {
		const struct attest_span *e = &resp.item[ATTEST_ITEM_ERROR];

		say(o, "refused", -1, "agent: it answered status %d (%s)%s%.*s",
		    resp.status,
		    resp.status == ATTEST_TPM_FAILED ? "its TPM failed" : "refused",
		    e->present ? ": " : "",
		    e->present ? (int)(e->len > 200 ? 200 : e->len) : 0,
		    e->present ? (const char *)e->p : "");
		return ATTEST_EXIT_UNREACHABLE;
	}

	/* 1. The EK certificate. */
	if (!resp.item[ATTEST_ITEM_EK_CERT].present)
		return refuse(o, "EK certificate", "the evidence has none");
	r = attest_check_ek_cert(resp.item[ATTEST_ITEM_EK_CERT].p,
				 resp.item[ATTEST_ITEM_EK_CERT].len, cas, cas_len, &v,
				 why, sizeof(why));
	if (r < 0)
		return refuse(o, "EK certificate", why);
	say(o, "ok", -1,
	    "EK certificate: ok (subject \"%s\", issuer \"%s\", chains to --ek-ca)",
	    v.ek_subject, v.ek_issuer);
	/* 2. The AK. */
	r = attest_check_ak(resp.item[ATTEST_ITEM_AK_PUBLIC].p,
			    resp.item[ATTEST_ITEM_AK_PUBLIC].len, &v, why, sizeof(why));
	if (!resp.item[ATTEST_ITEM_AK_PUBLIC].present || r < 0)
		return refuse(o, "AK",
			      resp.item[ATTEST_ITEM_AK_PUBLIC].present
				      ? why
				      : "the evidence has no AK public");
	say(o, "ok", -1, "AK: ok (restricted RSA 2048 signing key, fixedTPM)");
	/* 3. The quote. */
	v.join = peer_fd >= 0;
	r = attest_check_quote(&resp, nonce, &v, why, sizeof(why));
	if (r < 0)
		return refuse(o, "quote", why);
	say(o, "ok", -1,
	    "quote: ok (signed by the AK, this nonce, PCRs 0-15 in %zu banks)",
	    v.n_banks);
	/* 4. The AK lives in the TPM of that EK. */
	if (evidence) {
		say(o, "note", -1,
		    "AK binding: not checked: saved evidence (it needs the "
		    "node's TPM)");
	} else {
		struct attest_request req = {.type = ATTEST_REQ_ACTIVATE};
		uint8_t secret[32], seed[32], blob[128], enc[256];
		size_t blob_len, enc_len;

		if (getrandom(secret, 32, 0) != 32 || getrandom(seed, 32, 0) != 32)
			return ATTEST_EXIT_USAGE;
		r = attest_make_credential(&v, secret, 32, seed, blob, &blob_len, enc,
					   &enc_len);
		if (r < 0)
			return refuse(o, "AK binding", "MakeCredential failed");
		req.blob = blob;
		req.blob_len = blob_len;
		req.secret = enc;
		req.secret_len = enc_len;
		r = round_trip(fd, &req, &act, &act_len, why, sizeof(why));
		if (r < 0)
			return say(o, "refused", -1, "agent: %s", why),
			       ATTEST_EXIT_UNREACHABLE;
		r = attest_response_parse(act, act_len, &aresp, &need, &bad);
		if (r < 0 || need || aresp.status != ATTEST_OK ||
		    !aresp.item[ATTEST_ITEM_SECRET].present ||
		    aresp.item[ATTEST_ITEM_SECRET].len != 32 ||
		    memcmp(aresp.item[ATTEST_ITEM_SECRET].p, secret, 32) != 0)
			return refuse(
				o, "AK binding",
				"the node could not recover the credential made for this "
				"AK and the certified EK: the AK is not in the TPM the EK "
				"certificate names");
		say(o, "ok", -1,
		    "AK binding: ok (ActivateCredential recovered the secret)");
	}
	/* 5. The logs. */
	r = load_logs(o, &resp, &l);
	if (r < 0) {
		eventlog_free(&l.all);
		return r == -EBADMSG ? ATTEST_EXIT_REFUSED : ATTEST_EXIT_USAGE;
	}
	logs_ok = check_logs(o, &l, &v);
	if (!logs_ok) {
		eventlog_free(&l.all);
		return refuse(o, "logs", "they do not explain the quoted PCRs (above)");
	}
	say(o, "ok", -1,
	    "logs: ok (%zu firmware events and %zu cvminit records replay to the "
	    "quote; every cvminit record's content is what was hashed)",
	    l.n_fw, l.all.n - l.n_fw);
	if (resp.item[ATTEST_ITEM_TSM_REPORT].present)
		say(o, "note", -1,
		    "hardware report: %zu bytes from configfs-tsm (%.*s), report "
		    "data = the nonce; not verified here: pass it to the "
		    "platform's verifier",
		    resp.item[ATTEST_ITEM_TSM_REPORT].len,
		    (int)resp.item[ATTEST_ITEM_TSM_PROVIDER].len,
		    resp.item[ATTEST_ITEM_TSM_PROVIDER].present
			    ? (const char *)resp.item[ATTEST_ITEM_TSM_PROVIDER].p
			    : "");
	if (peer) {
		digest_compute(DIGEST_ALG_SHA256, v.ek_n, v.ek_n_len, peer->ek_hash);
		hex_encode(peer->ek_hash, 32, peer->node_id);
		attest_peer_records(&l.all, l.n_fw, peer);
	}
	/* 6. The measurements. */
	r = compare(o, &l, m, &v, &enforced_ok);
	eventlog_free(&l.all);
	if (r < 0)
		return ATTEST_EXIT_REFUSED;
	ret = enforced_ok ? ATTEST_EXIT_OK : ATTEST_EXIT_MISMATCH;
	say(o, enforced_ok ? "ok" : "mismatch", -1, "%s",
	    enforced_ok
		    ? "ATTESTED: the node booted what measurements.json describes"
		    : "MISMATCH: the node did not boot what measurements.json describes");
	return ret;
}

int attest_check_peer(int fd, const uint8_t *nonce, const struct measurements *m,
		      const uint8_t *cas, size_t cas_len, struct attest_peer *peer)
{
	struct out o = {0};

	return run(&o, NULL, NULL, NULL, NULL, 30, m, cas, cas_len, fd, nonce, peer);
}

int cmd_attest(int argc, char **argv)
{
	static const struct option opts[] = {
		{"measurements", required_argument, NULL, 'm'},
		{"ek-ca", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"save-evidence", required_argument, NULL, 's'},
		{"evidence", required_argument, NULL, 'e'},
		{"nonce", required_argument, NULL, 'n'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *mpath = NULL, *save = NULL, *evidence = NULL, *nonce = NULL,
		   *target = NULL;
	_cleanup_free_ uint8_t *cas = NULL, *mbuf = NULL;
	size_t cas_len = 0, mlen;
	unsigned timeout_s = 30;
	struct measurements m;
	struct out o = {0};
	char err[256];
	int c, r, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mpath = optarg;
			break;
		case 'c': {
			_cleanup_free_ uint8_t *f = NULL;
			size_t n;
			uint8_t *g;

			r = slurp(optarg, &f, &n);
			if (r < 0) {
				fprintf(stderr, "cvm-measure: --ek-ca %s: %s\n", optarg,
					strerror(-r));
				return ATTEST_EXIT_USAGE;
			}
			/* PEM files back to back, one NUL at the end (mbedtls wants it).
			 */
			g = realloc(cas, cas_len + n + 2);
			if (!g)
				return ATTEST_EXIT_USAGE;
			cas = g;
			memcpy(cas + cas_len, f, n);
			cas[cas_len + n] = '\n';
			cas_len += n + 1;
			cas[cas_len] = '\0';
			break;
		}
		case 'j':
			o.json = true;
			break;
		case 's':
			save = optarg;
			break;
		case 'e':
			evidence = optarg;
			break;
		case 'n':
			nonce = optarg;
			break;
		case 't':
			timeout_s = (unsigned)strtoul(optarg, NULL, 10);
			if (!timeout_s || timeout_s > 3600) {
				fprintf(stderr,
					"cvm-measure: --timeout: want 1-3600 seconds\n");
				return ATTEST_EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			fprintf(stderr, "cvm-measure attest: bad option (see --help)\n");
			return ATTEST_EXIT_USAGE;
		}
	}
	if (optind < argc)
		target = argv[optind++];
	if (optind < argc || !target == !evidence || !mpath || !cas ||
	    (nonce && !evidence) || (save && evidence)) {
		fprintf(stderr, "cvm-measure attest: want HOST:PORT or --evidence FILE, "
				"--measurements FILE and --ek-ca PEM (see --help)\n");
		return ATTEST_EXIT_USAGE;
	}
	r = slurp(mpath, &mbuf, &mlen);
	if (r < 0) {
		fprintf(stderr, "cvm-measure: %s: %s\n", mpath, strerror(-r));
		return ATTEST_EXIT_USAGE;
	}
	if (measurements_parse((const char *)mbuf, mlen, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "cvm-measure: %s: %s\n", mpath, err);
		measurements_free(&m);
		return ATTEST_EXIT_USAGE;
	}
	cas_len++; /* the NUL */
	if (o.json)
		o.findings = json_object_new_array();
	ret = run(&o, target, evidence, nonce, save, timeout_s, &m, cas, cas_len, -1,
		  NULL, NULL);
	measurements_free(&m);
	if (o.json) {
		static const char *const verdicts[] = {"attested", "mismatch", "usage",
						       "refused", "unreachable"};
		json_object *top = json_object_new_object();

		json_object_object_add(top, "verdict",
				       json_object_new_string(verdicts[ret]));
		json_object_object_add(top, "exit", json_object_new_int(ret));
		json_object_object_add(top, "findings", o.findings);
		puts(json_object_to_json_string_ext(
			top, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(top);
	}
	return ret;
}
