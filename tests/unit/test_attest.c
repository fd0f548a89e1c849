/* Remote attestation on the host: the protocol parsers on malformed input, the
 * measurements.json reader, and the node side (attest-node.c) with the verifier side
 * (attest-verify.c) against a real swtpm manufactured with an EK certificate: quote,
 * nonce, PCR values, signature, MakeCredential/ActivateCredential, configfs-tsm (a fake
 * tree: no SNP or TDX hardware here). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>

#include "../../measured-boot/attest-node.h"
#include "../../measured-boot/attest-proto.h"
#include "../../measured-boot/attest-verify.h"
#include "../../measured-boot/measurements.h"
#include "../../measured-boot/tpm.h"
#include "../../lib/util.h"
#include "harness.h"
#include "swtpm.h"

/* --- requests ------------------------------------------------------------------ */

TEST(request_round_trip_and_prefixes)
{
	struct attest_request req = {.type = ATTEST_REQ_EVIDENCE}, got;
	static const uint8_t blob[] = {1, 2, 3}, sec[] = {4, 5};
	uint8_t buf[ATTEST_MAX_REQUEST];
	int n;

	memset(req.nonce, 0xab, sizeof(req.nonce));
	n = attest_request_write(buf, &req);
	CHECK_INT(n, 40);
	/* Every proper prefix wants more; the whole is one request. */
	for (int i = 0; i < n; i++)
		CHECK_INT(attest_request_parse(buf, (size_t)i, &got), 0);
	CHECK_INT(attest_request_parse(buf, (size_t)n, &got), n);
	CHECK_INT(got.type, ATTEST_REQ_EVIDENCE);
	CHECK(memcmp(got.nonce, req.nonce, 32) == 0);

	req = (struct attest_request){.type = ATTEST_REQ_ACTIVATE,
				      .blob = blob,
				      .blob_len = 3,
				      .secret = sec,
				      .secret_len = 2};
	n = attest_request_write(buf, &req);
	CHECK_INT(n, 8 + 2 + 3 + 2 + 2);
	CHECK_INT(attest_request_parse(buf, (size_t)n, &got), n);
	CHECK_INT(got.blob_len, 3);
	CHECK_INT(got.secret_len, 2);
	CHECK(memcmp(got.blob, blob, 3) == 0 && memcmp(got.secret, sec, 2) == 0);
}

TEST(request_malformed)
{
	static const struct {
		const char *what;
		uint8_t b[16];
		size_t n;
	} bad[] = {
		{"another protocol's first byte", {'G'}, 1},
		{"HTTP", {'G', 'E', 'T', ' '}, 4},
		{"version 2", {'C', 'V', 'M', 'Q', 2}, 5},
		{"type 0", {'C', 'V', 'M', 'Q', 1, 0}, 6},
		{"type 3", {'C', 'V', 'M', 'Q', 1, 3}, 6},
		{"evidence with 31 bytes", {'C', 'V', 'M', 'Q', 1, 1, 0, 31}, 8},
		{"evidence with 33 bytes", {'C', 'V', 'M', 'Q', 1, 1, 0, 33}, 8},
		{"body over the limit", {'C', 'V', 'M', 'Q', 1, 2, 0x04, 0x01}, 8},
		{"body 65535", {'C', 'V', 'M', 'Q', 1, 2, 0xff, 0xff}, 8},
		{"activate too short", {'C', 'V', 'M', 'Q', 1, 2, 0, 3}, 8},
		{"activate blob past the body",
		 {'C', 'V', 'M', 'Q', 1, 2, 0, 6, 0, 9, 1, 2, 0, 0},
		 14},
		{"activate empty blob",
		 {'C', 'V', 'M', 'Q', 1, 2, 0, 5, 0, 0, 0, 1, 7},
		 13},
		{"activate secret short of the body",
		 {'C', 'V', 'M', 'Q', 1, 2, 0, 7, 0, 1, 9, 0, 1, 7, 7},
		 15},
	};
	struct attest_request r;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int k = attest_request_parse(bad[i].b, bad[i].n, &r);

		if (k != -EBADMSG)
			FAIL_AT("%s: parse gave %d, not -EBADMSG", bad[i].what, k);
	}
}

/* --- responses ----------------------------------------------------------------- */

static size_t response(uint8_t *out, size_t cap)
{
	struct attest_buf b = {0};
	uint8_t pcrs[2 + 16 * 32] = {0x00, 0x0b};
	size_t n;

	attest_buf_begin(&b, ATTEST_OK);
	attest_buf_item(&b, ATTEST_ITEM_QUOTE, "quote", 5);
	attest_buf_item(&b, ATTEST_ITEM_PCRS, pcrs, sizeof(pcrs));
	attest_buf_item(&b, ATTEST_ITEM_CVMINIT_LOG, "", 0);
	CHECK_INT(attest_buf_end(&b), 0);
	CHECK(b.len <= cap);
	memcpy(out, b.p, b.len);
	n = b.len;
	attest_buf_free(&b);
	return n;
}

TEST(response_parse_and_malformed)
{
	uint8_t buf[2048], bad[2048];
	struct attest_response r;
	const char *why;
	size_t n = response(buf, sizeof(buf)), need;

	CHECK_INT(attest_response_parse(buf, n, &r, &need, &why), 0);
	CHECK_INT(need, 0);
	CHECK(r.item[ATTEST_ITEM_QUOTE].present && r.item[ATTEST_ITEM_QUOTE].len == 5);
	CHECK(r.item[ATTEST_ITEM_CVMINIT_LOG].present &&
	      r.item[ATTEST_ITEM_CVMINIT_LOG].len == 0);
	CHECK(!r.item[ATTEST_ITEM_EK_CERT].present);
	CHECK_INT(r.n_banks, 1);
	CHECK_INT(r.banks[0].size, 32);
	/* Truncated: more is needed, never a read past the end. */
	for (size_t i = 0; i < n; i++) {
		CHECK_INT(attest_response_parse(buf, i, &r, &need, &why), 0);
		CHECK(need > i);
	}
#define BAD(mutate, reason)                                                              \
	do {                                                                             \
		size_t m = n;                                                            \
		memcpy(bad, buf, n);                                                     \
		mutate;                                                                  \
		CHECK_INT(attest_response_parse(bad, m, &r, &need, &why), -EBADMSG);     \
		CHECK_CONTAINS(why, reason);                                             \
	} while (0)
	BAD(bad[0] = 'X', "magic");
	BAD(bad[4] = 2, "version");
	BAD((bad[6] = 0x7f, m = n), "longer than the protocol");
	BAD(m = n + 1, "bytes after");
	/* The first item's length past the response. */
	BAD((bad[10 + 2] = 0x7f), "item longer than the response");
	/* Unknown type. */
	BAD((bad[10 + 1] = 99), "unknown item type");
	BAD((bad[10] = 0, bad[10 + 1] = 0), "unknown item type");
	/* The quote twice: the log item's type changed to the quote's. */
	BAD((bad[n - 6 + 1] = ATTEST_ITEM_QUOTE), "an item twice");
	/* The PCRS item's bank: unknown, then sha1 (wrong size for 32-byte values). */
	BAD((bad[10 + 6 + 5 + 6 + 1] = 0x77), "PCRS item of an unknown bank");
	BAD((bad[10 + 6 + 5 + 6 + 1] = 0x04),
	    "PCRS item of an unknown bank or the wrong size");
#undef BAD
}

/* --- measurements.json ------------------------------------------------------------ */

TEST(measurements_malformed)
{
	static const struct {
		const char *json, *why;
	} bad[] = {
		{"[]", "not a JSON object"},
		{"{\"x\": {}}", "not a PCR number"},
		{"{\"04\": {\"expected\": \""
		 "00"
		 "\"}}",
		 "not a PCR number"},
		{"{\"24\": {}}", "not a PCR number"},
		{"{\"-1\": {}}", "not a PCR number"},
		{"{\"4\": 1}", "not an object"},
		{"{\"4\": {}}", "no expected value"},
		{"{\"4\": {\"expected\": \"abc\"}}", "not 64 or 96 hex digits"},
		{"{\"4\": {\"expected\": 5}}", "not 64 or 96 hex digits"},
		{"{\"4\": {\"expected\": \""
		 "zz00000000000000000000000000000000000000000000000000"
		 "000000000000"
		 "\"}}",
		 "not 64 or 96 hex digits"},
		{"{\"4\": {\"expected\": \""
		 "0000000000000000000000000000000000000000000000000000"
		 "000000000000"
		 "\", \"warnOnly\": 1}}",
		 "warnOnly is not a boolean"},
		{"{\"4\": {\"expected\": \""
		 "0000000000000000000000000000000000000000000000000000"
		 "000000000000"
		 "\", \"extra\": 1}}",
		 "unknown key"},
		{"{\"15\": {\"warnOnly\": false}}", "neither expected nor replay"},
		{"{\"15\": {\"replay\": {}}}", "replay is not an array"},
		{"{\"15\": {\"replay\": [1]}}", "not an object"},
		{"{\"15\": {\"replay\": [{\"sha256\": \"00\"}]}}",
		 "not hex of its bank's size"},
		{"{\"15\": {\"replay\": [{\"event\": \"e\"}]}}", "has no digest"},
		{"{\"15\": {\"replay\": [{\"event\": \"e\", \"md5\": \"00\"}]}}",
		 "unknown key"},
		{"{\"15\": {\"replay\": [{\"event\": 3}]}}", "not a string"},
		{"{\"11\": {\"expected\": \""
		 "0000000000000000000000000000000000000000000000000000"
		 "000000000000"
		 "\"}, \"4\": {\"expected\": \""
		 "00000000000000000000000000000000"
		 "0000000000000000000000000000000000000000000000000000000000000000"
		 "\"}}",
		 "mixed"},
		{"{} x", "trailing bytes"},
		{"{", "not JSON"},
	};
	struct measurements m;
	char err[256];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = measurements_parse(bad[i].json, strlen(bad[i].json), &m, err,
					   sizeof(err));

		if (r != -EBADMSG || !strstr(err, bad[i].why))
			FAIL_AT("%s: got %d \"%s\", want \"%s\"", bad[i].json, r, err,
				bad[i].why);
		measurements_free(&m);
	}
	/* NUL inside is refused before JSON sees it. */
	CHECK_INT(measurements_parse("{}\0{}", 5, &m, err, sizeof(err)), -EBADMSG);
	measurements_free(&m);
}

/* --- node and verifier against a swtpm with an EK certificate ---------------------- */

static char dir[64];

static void write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(write(fd, data, len) == (ssize_t)len);
	close(fd);
}

static uint8_t *read_all(const char *name, size_t *len)
{
	static uint8_t buf[65536];
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	CHECK(n >= 0);
	close(fd);
	buf[n] = 0;
	*len = (size_t)n;
	return buf;
}

TEST_LIMIT(node_and_verifier_against_swtpm, 120)
{
	char ca[128], path[1024], why[ATTEST_WHY_MAX];
	uint8_t nonce[32], other[32], secret[32], seed[32], blob[128], enc[256], out[64];
	uint8_t *cas, *cas2;
	size_t cas_len, blob_len, enc_len, need;
	struct attest_sources src;
	struct attest_keys keys;
	struct attest_buf b = {0};
	struct attest_response resp;
	static struct attest_verified v, v2;
	struct tpm *t;
	const char *conf, *bad;
	int n;

	snprintf(dir, sizeof(dir), "/tmp/cvminit-attest.%d", (int)getpid());
	mkdir(dir, 0700);
	snprintf(ca, sizeof(ca), "%s/ca", dir);
	swtpm_ek_ca = ca;
	conf = swtpm_start();
	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	CHECK_INT(attest_keys_create(t, &keys), 0);

	/* A fake configfs-tsm tree: regular files stand in for the attributes. */
	snprintf(path, sizeof(path),
		 "mkdir -p %s/tsm/cvminit-agent && printf 'fake report' > "
		 "%s/tsm/cvminit-agent/outblob && echo sev_guest > "
		 "%s/tsm/cvminit-agent/provider",
		 dir, dir, dir);
	CHECK_INT(system(path), 0);
	write_file("firmware.log", "fw", 2);
	write_file("measure.log", "", 0);
	char fw[256], cel[256], tsm[256];
	snprintf(fw, sizeof(fw), "%s/firmware.log", dir);
	snprintf(cel, sizeof(cel), "%s/measure.log", dir);
	snprintf(tsm, sizeof(tsm), "%s/tsm", dir);
	src = (struct attest_sources){
		.firmware_log = fw, .cvminit_log = cel, .tsm_root = tsm};
	for (size_t i = 0; i < 32; i++)
		nonce[i] = (uint8_t)i, other[i] = (uint8_t)(i + 1);
	const char *step = NULL;
	CHECK_INT(attest_evidence(t, &keys, &src, nonce, &b, &step), 0);
	CHECK_INT(attest_response_parse(b.p, b.len, &resp, &need, &bad), 0);
	CHECK_INT(need, 0);
	CHECK_INT(resp.status, ATTEST_OK);
	CHECK_INT(resp.n_banks, 4);
	CHECK(resp.item[ATTEST_ITEM_EK_CERT].present);
	CHECK_INT(resp.item[ATTEST_ITEM_FIRMWARE_LOG].len, 2);
	CHECK_INT(resp.item[ATTEST_ITEM_TSM_REPORT].len, 11);
	CHECK(memcmp(resp.item[ATTEST_ITEM_TSM_PROVIDER].p, "sev_guest", 9) == 0);
	CHECK_INT(resp.item[ATTEST_ITEM_TSM_PROVIDER].len, 9);
	/* The report data the agent wrote: the nonce, then zeros. */
	{
		size_t len;
		uint8_t *in = read_all("tsm/cvminit-agent/inblob", &len), want[64] = {0};

		memcpy(want, nonce, 32);
		CHECK_INT(len, 64);
		CHECK(memcmp(in, want, 64) == 0);
	}

	/* The verifier: the CA (issuer and root), the AK, the quote. */
	{
		char cmd[512];
		size_t l1;
		static uint8_t both[16384];

		snprintf(cmd, sizeof(cmd),
			 "cat %s/issuercert.pem %s/swtpm-localca-rootca-cert.pem "
			 "> %s/cas.pem",
			 ca, ca, dir);
		CHECK_INT(system(cmd), 0);
		cas = read_all("cas.pem", &l1);
		memcpy(both, cas, l1 + 1);
		cas = both;
		cas_len = l1 + 1;
	}
	CHECK_INT(attest_check_ek_cert(resp.item[ATTEST_ITEM_EK_CERT].p,
				       resp.item[ATTEST_ITEM_EK_CERT].len, cas, cas_len,
				       &v, why, sizeof(why)),
		  0);
	CHECK_STR(v.ek_issuer, "CN=swtpm-localca");
	CHECK_INT(v.ek_n_len, 256);
	CHECK_INT(attest_check_ak(resp.item[ATTEST_ITEM_AK_PUBLIC].p,
				  resp.item[ATTEST_ITEM_AK_PUBLIC].len, &v, why,
				  sizeof(why)),
		  0);
	CHECK_INT(attest_check_quote(&resp, nonce, &v, why, sizeof(why)), 0);
	CHECK_INT(v.n_banks, 4);
	/* The PCR values are the TPM's. */
	{
		uint8_t pcr[64];

		for (size_t i = 0; i < v.n_banks; i++)
			if (v.banks[i].alg == 0x000b) {
				CHECK_INT(tpm_pcr_read(t, 0x000b, 7, pcr), 32);
				CHECK(memcmp(pcr, v.banks[i].v[7], 32) == 0);
			}
	}
	/* Another nonce, a changed PCR value, a changed signature, a changed quote. */
	CHECK_INT(attest_check_quote(&resp, other, &v, why, sizeof(why)), -EPERM);
	CHECK_CONTAINS(why, "not this verifier's nonce");
	((uint8_t *)resp.banks[1].values)[5] ^= 1;
	CHECK_INT(attest_check_quote(&resp, nonce, &v, why, sizeof(why)), -EPERM);
	CHECK_CONTAINS(why, "not the ones the quote signs");
	((uint8_t *)resp.banks[1].values)[5] ^= 1;
	((uint8_t *)resp.item[ATTEST_ITEM_SIGNATURE].p)[20] ^= 1;
	CHECK_INT(attest_check_quote(&resp, nonce, &v, why, sizeof(why)), -EPERM);
	CHECK_CONTAINS(why, "does not verify with the AK public");
	((uint8_t *)resp.item[ATTEST_ITEM_SIGNATURE].p)[20] ^= 1;
	((uint8_t *)resp.item[ATTEST_ITEM_QUOTE]
		 .p)[resp.item[ATTEST_ITEM_QUOTE].len - 1] ^= 1;
	CHECK_INT(attest_check_quote(&resp, nonce, &v, why, sizeof(why)), -EPERM);
	((uint8_t *)resp.item[ATTEST_ITEM_QUOTE]
		 .p)[resp.item[ATTEST_ITEM_QUOTE].len - 1] ^= 1;
	CHECK_INT(attest_check_quote(&resp, nonce, &v, why, sizeof(why)), 0);
	/* Malformed items. */
	{
		struct attest_response r2 = resp;

		r2.item[ATTEST_ITEM_QUOTE].len--;
		CHECK_INT(attest_check_quote(&r2, nonce, &v, why, sizeof(why)), -EBADMSG);
		r2 = resp;
		r2.item[ATTEST_ITEM_SIGNATURE].len = 3;
		CHECK_INT(attest_check_quote(&r2, nonce, &v, why, sizeof(why)), -EBADMSG);
		r2 = resp;
		r2.n_banks = 3;
		CHECK_INT(attest_check_quote(&r2, nonce, &v, why, sizeof(why)), -EPERM);
		CHECK_INT(attest_check_ak(resp.item[ATTEST_ITEM_AK_PUBLIC].p,
					  resp.item[ATTEST_ITEM_AK_PUBLIC].len - 1, &v2,
					  why, sizeof(why)),
			  -EBADMSG);
		CHECK_INT(attest_check_ek_cert(resp.item[ATTEST_ITEM_EK_CERT].p, 100, cas,
					       cas_len, &v2, why, sizeof(why)),
			  -EBADMSG);
	}
	/* The EK certificate under the root alone (the intermediate not given) or no CA.
	 */
	{
		size_t l;
		static uint8_t root[8192];

		cas2 = read_all("ca/swtpm-localca-rootca-cert.pem", &l);
		memcpy(root, cas2, l + 1);
		CHECK_INT(attest_check_ek_cert(resp.item[ATTEST_ITEM_EK_CERT].p,
					       resp.item[ATTEST_ITEM_EK_CERT].len, root,
					       l + 1, &v2, why, sizeof(why)),
			  -EPERM);
		CHECK_CONTAINS(why, "does not chain to a CA given with --ek-ca");
	}

	/* The AK binding: the TPM recovers a credential made for its AK and EK ... */
	memset(secret, 0x5a, sizeof(secret));
	memset(seed, 0x33, sizeof(seed));
	CHECK_INT(attest_make_credential(&v, secret, 32, seed, blob, &blob_len, enc,
					 &enc_len),
		  0);
	n = attest_activate(t, &keys, blob, blob_len, enc, enc_len, out, sizeof(out));
	CHECK_INT(n, 32);
	CHECK(memcmp(out, secret, 32) == 0);
	/* ... not one made for another key's name ... */
	v2 = v;
	v2.ak_name[5] ^= 1;
	CHECK_INT(attest_make_credential(&v2, secret, 32, seed, blob, &blob_len, enc,
					 &enc_len),
		  0);
	CHECK_INT(
		attest_activate(t, &keys, blob, blob_len, enc, enc_len, out, sizeof(out)),
		-EACCES);
	/* ... nor one sealed to another EK (last: libtpms 0.9 then enters its failure
	 * mode, TPM_RC_FAILURE for every later command, after the integrity check fails).
	 */
	v2 = v;
	v2.ek_n[100] ^= 1;
	CHECK_INT(attest_make_credential(&v2, secret, 32, seed, blob, &blob_len, enc,
					 &enc_len),
		  0);
	CHECK_INT(
		attest_activate(t, &keys, blob, blob_len, enc, enc_len, out, sizeof(out)),
		-EACCES);

	attest_buf_free(&b);
	attest_keys_free(t, &keys);
	tpm_close(t);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	(void)!system(path);
}
