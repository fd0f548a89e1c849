/* The digest and PCR-extend math against published and independently computed vectors. */
#include <errno.h>

#include "../../lib/digest.h"
#include "../../lib/hex.h"
#include "harness.h"

static const char *hex_of(const uint8_t *d, int n)
{
	static char out[2 * DIGEST_MAX + 1];

	hex_encode(d, (size_t)n, out);
	return out;
}

TEST(digest_fips180_abc)
{
	/* FIPS 180-2 appendix examples: the message "abc". */
	static const struct {
		uint16_t alg;
		const char *want;
	} v[] = {
		{DIGEST_ALG_SHA1, "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{DIGEST_ALG_SHA256,
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{DIGEST_ALG_SHA384,
		 "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
		 "8086072ba1e7cc2358baeca134c825a7"},
		{DIGEST_ALG_SHA512,
		 "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
		 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
	};
	uint8_t d[DIGEST_MAX];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		int n = digest_compute(v[i].alg, "abc", 3, d);
		CHECK_INT(n, digest_size(v[i].alg));
		CHECK_INT(n * 2, strlen(v[i].want));
		CHECK_STR(hex_of(d, n), v[i].want);
	}
}

TEST(digest_extend_vectors)
{
	/* Computed with Python's hashlib: p1 = H(zeros(n) || H("abc")), p2 = H(p1 ||
	 * H("")). */
	static const struct {
		uint16_t alg;
		const char *p1, *p2;
	} v[] = {
		{DIGEST_ALG_SHA1, "ccd5bd41458de644ac34a2478b58ff819bef5acf",
		 "e341c8bf722eea72feda9cdd3acc6ebf852d52fb"},
		{DIGEST_ALG_SHA256,
		 "589f9ffed4c477966bfb8d41f37895b08c69047df8f911d6f3b57fbe08faee8d",
		 "ef6a5fdbba9e14e07fa74d23b7ae639d146ce41635cf3fe44315988c4cbd0caf"},
		{DIGEST_ALG_SHA384,
		 "93732e3733514a841c982cfa75ea76ab55fe011acb9cd980ef4523913c65be1b0998e04"
		 "d77f8c174f81a82151619ca40",
		 "a4d392030aec0188324dac645cac0391f996c9a913563092cd9d7c55c3d86c0f109053c"
		 "37d2974da85660814bf359bed"},
		{DIGEST_ALG_SHA512,
		 "6b9e946755055542adba95a1588a7eaed86323b3bed97d602ee06839d734048e"
		 "02c63f37892d3adde0d25b5a9d89162e8804ab9ec0ac4a263545c4faecfdf53b",
		 "70532b8f57b0d70200956d122a702a1dacf1852b324488ed82b7957b6b551ed0"
		 "83368c0615b455c45ab48f8003a7a9a08b16409f40d293666644bf30786d8c85"},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t pcr[DIGEST_MAX] = {0}, d[DIGEST_MAX];
		int n = digest_size(v[i].alg);

		CHECK_INT(digest_compute(v[i].alg, "abc", 3, d), n);
		CHECK_INT(digest_extend(v[i].alg, pcr, d), n);
		CHECK_STR(hex_of(pcr, n), v[i].p1);
		CHECK_INT(digest_compute(v[i].alg, "", 0, d), n);
		CHECK_INT(digest_extend(v[i].alg, pcr, d), n);
		CHECK_STR(hex_of(pcr, n), v[i].p2);
	}
}

TEST(digest_names_and_unknown_algs)
{
	uint8_t d[DIGEST_MAX];

	CHECK_STR(digest_alg_name(DIGEST_ALG_SHA384), "sha384");
	CHECK_INT(digest_alg_from_name("sha256"), DIGEST_ALG_SHA256);
	CHECK_INT(digest_alg_from_name("sm3_256"), -EOPNOTSUPP);
	CHECK(digest_alg_name(0x0012) == NULL);
	CHECK_INT(digest_size(0x0012), -EOPNOTSUPP);
	CHECK_INT(digest_compute(0x0012, "x", 1, d), -EOPNOTSUPP);
	CHECK_INT(digest_extend(0x0012, d, d), -EOPNOTSUPP);
}

TEST(digest_hex_round_trip)
{
	uint8_t d[4], e[4] = {0x00, 0xab, 0xCD, 0xff};
	char out[9];

	CHECK_INT(hex_decode("00abCDff", d, sizeof(d)), 4);
	CHECK(memcmp(d, e, 4) == 0);
	hex_encode(d, 4, out);
	CHECK_STR(out, "00abcdff");
	CHECK_INT(hex_decode("00abc", d, sizeof(d)), -EINVAL);	    /* odd length */
	CHECK_INT(hex_decode("0011223344", d, sizeof(d)), -EINVAL); /* too long */
	CHECK_INT(hex_decode("zz", d, sizeof(d)), -EINVAL);
	CHECK_INT(hex_decode("", d, sizeof(d)), -EINVAL);
}

TEST(digest_hmac_rfc_vectors)
{
	/* RFC 4231 test cases 2 and 6 (a key longer than the block: hashed first), and
	 * RFC 2202 test case 2 for HMAC-SHA1. */
	static const char msg6[] =
		"Test Using Larger Than Block-Size Key - Hash Key First";
	static const struct {
		uint16_t alg;
		const char *jefe, *long_key;
	} v[] = {
		{DIGEST_ALG_SHA1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
		 "90d0dace1c1bdc957339307803160335bde6df2b"},
		{DIGEST_ALG_SHA256,
		 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{DIGEST_ALG_SHA384,
		 "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
		 "8e2240ca5e69e2c78b3239ecfab21649",
		 "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
		 "0c2ef6ab4030fe8296248df163f44952"},
		{DIGEST_ALG_SHA512,
		 "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
		 "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
		 "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
		 "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
	};
	uint8_t key[131], d[DIGEST_MAX], e[DIGEST_MAX];

	memset(key, 0xaa, sizeof(key));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		int n = digest_hmac(v[i].alg, "Jefe", 4, "what do ya want for nothing?",
				    28, d);
		CHECK_INT(n, digest_size(v[i].alg));
		CHECK_STR(hex_of(d, n), v[i].jefe);
		n = digest_hmac(v[i].alg, key, sizeof(key), msg6, sizeof(msg6) - 1, d);
		CHECK_STR(hex_of(d, n), v[i].long_key);
		/* Not the plain digest of the message: the key changes the value. */
		CHECK_INT(digest_compute(v[i].alg, msg6, sizeof(msg6) - 1, e), n);
		CHECK(memcmp(d, e, (size_t)n) != 0);
	}
	CHECK_INT(digest_hmac(0x0012, "k", 1, "x", 1, d), -EOPNOTSUPP);
}
