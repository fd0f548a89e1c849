/* Sealing the state key against a real swtpm: seal, unseal, refusal after a PCR moves
 * with the drifted PCR named, the token's strict parser; cross-checked with tpm2-tools
 * (the same SRK template, blob format and PolicyPCR unseal our blob). */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <sys/random.h>

#include "../../measured-boot/eventlog.h"
#include "../../measured-boot/seal.h"
#include "../../measured-boot/tpm.h"
#include "harness.h"
#include "sapi_scan.h"
#include "swtpm.h"

#define PCRS ((1u << 7) | (1u << 11) | (1u << 15))

static void extend(const char *conf, unsigned pcr, const char *hex64)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "tpm2_pcrextend -T swtpm:%s %u:sha256=%s", conf, pcr,
		 hex64);
	CHECK_INT(system(cmd), 0);
}

static const char *conf_with_pcrs(void)
{
	const char *conf = swtpm_start();

	/* Not the reset values, so the policy binds something. */
	extend(conf, 7,
	       "0707070707070707070707070707070707070707070707070707070707070707");
	extend(conf, 11,
	       "1111111111111111111111111111111111111111111111111111111111111111");
	extend(conf, 15,
	       "1515151515151515151515151515151515151515151515151515151515151515");
	return conf;
}

static void random_key(uint8_t *k, size_t n)
{
	CHECK_INT(getrandom(k, n, 0), (long long)n);
}

TEST(seal_unseal_round_trip)
{
	uint8_t key[64], out[SEAL_KEY_MAX];
	struct sealed s, p;
	char err[256], *json = NULL;
	struct tpm *t;

	CHECK_INT(tpm_open("swtpm", conf_with_pcrs(), &t), 0);
	random_key(key, sizeof(key));
	CHECK_INT(seal_key(t, PCRS, key, sizeof(key), &s), 0);
	CHECK_INT(s.pcr_mask, PCRS);
	CHECK(s.blob_len > 64);
	CHECK_INT(unseal_key(t, &s, out), 64);
	CHECK(memcmp(key, out, 64) == 0);
	CHECK(!sapi_buffer_holds(t, key, sizeof(key)));

	/* Through the token: what a later boot reads from the header. */
	s.initialized = true;
	CHECK_INT(seal_token_format(&s, &json), 0);
	CHECK_CONTAINS(json, "\"type\":\"systemd-tpm2\"");
	CHECK_CONTAINS(json, "\"keyslots\":[\"0\"]");
	CHECK_CONTAINS(json, "\"tpm2-pcrs\":[7,11,15]");
	CHECK_CONTAINS(json, "\"tpm2-pcr-bank\":\"sha256\"");
	CHECK_CONTAINS(json, "\"tpm2-primary-alg\":\"ecc\"");
	CHECK_CONTAINS(json, "\"tpm2-pin\":false");
	CHECK_CONTAINS(json, "\"cvminit-initialized\":true");
	CHECK_INT(seal_token_parse(json, &p, err, sizeof(err)), 0);
	CHECK(p.initialized);
	CHECK_INT(p.pcr_mask, PCRS);
	CHECK(memcmp(p.policy, s.policy, 32) == 0);
	CHECK(memcmp(p.pcr_values, s.pcr_values, sizeof(p.pcr_values)) == 0);
	memset(out, 0, sizeof(out));
	CHECK_INT(unseal_key(t, &p, out), 64);
	CHECK(memcmp(key, out, 64) == 0);
	free(json);

	/* A volume key with an hmac-sha256 integrity key appended is 96 bytes. */
	uint8_t big[96];
	random_key(big, sizeof(big));
	CHECK_INT(seal_key(t, PCRS, big, sizeof(big), &s), 0);
	CHECK_INT(unseal_key(t, &s, out), 96);
	CHECK(memcmp(big, out, 96) == 0);
	CHECK_INT(seal_key(t, PCRS, big, SEAL_KEY_MAX + 1, &s), -EINVAL);
	CHECK_INT(seal_key(t, 0, big, 32, &s), -EINVAL);
	tpm_close(t);
}

TEST(seal_drift_refused_and_named)
{
	const char *conf = conf_with_pcrs();
	char logpath[96], msg[1024];
	struct eventlog_record rec = {.pcr = 15,
				      .rtmr = -1,
				      .n_digests = 1,
				      .event = "cvminit:root",
				      .extended = true};
	uint8_t key[64], out[SEAL_KEY_MAX];
	struct sealed s;
	struct tpm *t;
	int fd;

	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	random_key(key, sizeof(key));
	CHECK_INT(seal_key(t, PCRS, key, sizeof(key), &s), 0);
	CHECK_INT(seal_drift(t, &s, NULL, 0, msg, sizeof(msg)), 0);
	CHECK_STR(msg, "");

	/* PCR 15 moves (by tpm2-tools, as anything outside cvminit would); the event log
	 * holds one PCR 15 record. */
	extend(conf, 15,
	       "abababababababababababababababababababababababababababababababab");
	snprintf(logpath, sizeof(logpath), "%s/measure.log", swtpm_dir);
	fd = eventlog_open(logpath);
	CHECK(fd >= 0);
	rec.digests[0].alg = 0x000B;
	rec.digests[0].size = 32;
	CHECK_INT(eventlog_append(fd, &rec), 0);
	close(fd);

	memset(out, 0, sizeof(out));
	CHECK_INT(unseal_key(t, &s, out), -EKEYREJECTED);
	for (size_t i = 0; i < sizeof(out); i++)
		CHECK_INT(out[i], 0);
	CHECK_INT(seal_drift(t, &s, logpath, 0, msg, sizeof(msg)), 1);
	char want[80];
	for (int i = 0; i < 32; i++)
		sprintf(want + 2 * i, "%02x", s.pcr_values[15][i]);
	CHECK_CONTAINS(msg, "PCR 15 expected ");
	CHECK_CONTAINS(msg, want);
	CHECK_CONTAINS(msg, "(events: cvminit:root)");
	CHECK(!strstr(msg, "PCR 7 ") && !strstr(msg, "PCR 11 "));

	/* Abbreviated digests for the boxed message. */
	CHECK_INT(seal_drift(t, &s, NULL, 16, msg, sizeof(msg)), 1);
	CHECK_CONTAINS(msg, "(events: (no event log))");
	CHECK(strlen(msg) < 120);

	/* Two PCRs. */
	extend(conf, 7,
	       "abababababababababababababababababababababababababababababababab");
	CHECK_INT(seal_drift(t, &s, logpath, 0, msg, sizeof(msg)), 2);
	CHECK_CONTAINS(msg, "PCR 7 expected ");
	CHECK_CONTAINS(msg, "(events: (none by cvminit: firmware or boot loader))");
	tpm_close(t);
}

/* Another TPM (a fresh swtpm has another SRK): the blob does not load. */
TEST(seal_other_tpm_refused)
{
	uint8_t key[64], out[SEAL_KEY_MAX];
	struct sealed s;
	struct tpm *t;

	CHECK_INT(tpm_open("swtpm", conf_with_pcrs(), &t), 0);
	random_key(key, sizeof(key));
	CHECK_INT(seal_key(t, PCRS, key, sizeof(key), &s), 0);
	tpm_close(t);
	swtpm_stop();
	CHECK_INT(tpm_open("swtpm", conf_with_pcrs(), &t), 0);
	CHECK_INT(unseal_key(t, &s, out), -ENOKEY);
	tpm_close(t);
}

static void write_file(const char *path, const void *d, size_t n)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	CHECK_INT(fwrite(d, 1, n, f), (long long)n);
	fclose(f);
}

/* tpm2-tools, given only the blob and the TCG ECC SRK template, loads and unseals our
 * object with a PolicyPCR session, and computes the same policy digest. */
TEST(seal_cross_check_tpm2_tools)
{
	const char *conf = conf_with_pcrs();
	char cmd[2048], line[256], d[128], hexkey[129], want_policy[65];
	uint8_t key[64], zeros[64] = {0};
	struct sealed s;
	struct tpm *t;
	size_t privlen;

	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	random_key(key, sizeof(key));
	CHECK_INT(seal_key(t, PCRS, key, sizeof(key), &s), 0);
	tpm_close(t);

	snprintf(d, sizeof(d), "%s", swtpm_dir);
	privlen = 2 + (size_t)(s.blob[0] << 8 | s.blob[1]);
	snprintf(cmd, sizeof(cmd), "%s/priv", d);
	write_file(cmd, s.blob, privlen);
	snprintf(cmd, sizeof(cmd), "%s/pub", d);
	write_file(cmd, s.blob + privlen, s.blob_len - privlen);
	snprintf(cmd, sizeof(cmd), "%s/unique", d);
	write_file(cmd, zeros, sizeof(zeros));

	snprintf(
		cmd, sizeof(cmd),
		"set -e; export TPM2TOOLS_TCTI=swtpm:%s; cd %s; tpm2_createprimary -Q -C "
		"o -g sha256 -G ecc256:null:aes128cfb -a "
		"'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|"
		"restricted|decrypt' "
		"-c srk.ctx; tpm2_flushcontext -t; "
		/* swtpm without a resource manager: transient objects stay loaded */
		"tpm2_load -Q -C srk.ctx -u pub -r priv -c obj.ctx; tpm2_flushcontext "
		"-t; tpm2_unseal -c obj.ctx -p pcr:sha256:7,11,15 | od -An -tx1 -v | tr "
		"-d ' \\n'",
		conf, d);
	CHECK_INT(run_capture(cmd, line, sizeof(line)), 0);
	for (int i = 0; i < 64; i++)
		sprintf(hexkey + 2 * i, "%02x", key[i]);
	CHECK_STR(line, hexkey);

	snprintf(cmd, sizeof(cmd),
		 "set -e; export TPM2TOOLS_TCTI=swtpm:%s; cd %s; tpm2_createpolicy -Q "
		 "--policy-pcr -l sha256:7,11,15 -L policy.bin; od -An -tx1 -v "
		 "policy.bin | tr -d ' \\n'",
		 conf, d);
	CHECK_INT(run_capture(cmd, line, sizeof(line)), 0);
	for (int i = 0; i < 32; i++)
		sprintf(want_policy + 2 * i, "%02x", s.policy[i]);
	CHECK_STR(line, want_policy);
}

static void expect_bad(const char *json, const char *needle)
{
	struct sealed s;
	char err[256] = "";

	if (seal_token_parse(json, &s, err, sizeof(err)) != -EBADMSG)
		FAIL_AT("accepted: %s", json);
	CHECK_CONTAINS(err, needle);
}

/* Replaces the first occurrence of from in src with to. */
static char *subst(const char *src, const char *from, const char *to)
{
	const char *p = strstr(src, from);
	char *out;

	CHECK(p != NULL);
	out = malloc(strlen(src) - strlen(from) + strlen(to) + 1);
	sprintf(out, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
	return out;
}

TEST(seal_token_parse_strict)
{
	uint8_t key[64];
	struct sealed s, p;
	char err[256], *json, *bad;
	struct tpm *t;

	CHECK_INT(tpm_open("swtpm", conf_with_pcrs(), &t), 0);
	random_key(key, sizeof(key));
	CHECK_INT(seal_key(t, PCRS, key, sizeof(key), &s), 0);
	tpm_close(t);
	CHECK_INT(seal_token_format(&s, &json), 0);
	CHECK_INT(seal_token_parse(json, &p, err, sizeof(err)), 0);
	CHECK(!p.initialized);

	expect_bad("[]", "not a JSON object");
	expect_bad("{\"type\":", "not a JSON object");
	bad = subst(json, "\"tpm2-pin\":false", "\"tpm2-pin\":true");
	expect_bad(bad, "tpm2-pin");
	free(bad);
	bad = subst(json, "\"type\":\"systemd-tpm2\"", "\"type\":\"luks2-keyring\"");
	expect_bad(bad, "type");
	free(bad);
	bad = subst(json, "\"keyslots\":[\"0\"]", "\"keyslots\":[\"0\",\"1\"]");
	expect_bad(bad, "keyslots");
	free(bad);
	bad = subst(json, "\"tpm2-pcrs\":[7,11,15]", "\"tpm2-pcrs\":[11,7,15]");
	expect_bad(bad, "tpm2-pcrs");
	free(bad);
	bad = subst(json, "\"tpm2-pcrs\":[7,11,15]", "\"tpm2-pcrs\":[7,11]");
	expect_bad(bad, "cvminit-pcr-values");
	free(bad);
	bad = subst(json, "\"tpm2-pcr-bank\":\"sha256\"", "\"tpm2-pcr-bank\":\"sha1\"");
	expect_bad(bad, "tpm2-pcr-bank");
	free(bad);
	bad = subst(json, "\"tpm2-pin\":false", "\"tpm2-pin\":false,\"x\":1");
	expect_bad(bad, "a field cvminit does not write: \"x\"");
	free(bad);
	bad = subst(json, "\"cvminit-initialized\":false", "\"cvminit-initialized\":0");
	expect_bad(bad, "cvminit-initialized");
	free(bad);
	bad = subst(json, "\"tpm2-blob\":\"", "\"tpm2-blob\":\"AAAA");
	expect_bad(bad, "tpm2-blob");
	free(bad);
	/* A policy hash that is not the sealed object's. */
	char h[65];
	for (int i = 0; i < 32; i++)
		sprintf(h + 2 * i, "%02x", s.policy[i]);
	char from[100], to[100];
	snprintf(from, sizeof(from), "\"tpm2-policy-hash\":\"%s\"", h);
	h[0] = h[0] == '0' ? '1' : '0';
	snprintf(to, sizeof(to), "\"tpm2-policy-hash\":\"%s\"", h);
	bad = subst(json, from, to);
	expect_bad(bad, "policy is not tpm2-policy-hash");
	free(bad);
	free(json);
}
