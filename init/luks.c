/* LUKS2 header validation on a copy read once (CVE-2025-59054: a host that swaps the
 * header between check and use). Everything not on the allow-list of what cvminit itself
 * makes is refused: one keyslot, one digest, one segment, one systemd-tpm2 token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>

#include "../measured-boot/identity.h"
#include "luks.h"
#include "util.h"

/* The binary header (big-endian), LUKS2 on-disk format specification 2.1. */
#define OFF_VERSION  6
#define OFF_HDR_SIZE 8
#define OFF_SEQID    16
#define OFF_CSUM_ALG 72
#define OFF_SALT     104 /* per copy: the copies differ here */
#define OFF_UUID     168
#define OFF_HDR_OFF  256
#define OFF_CSUM     448
#define CSUM_LEN     64
#define MAGIC_LEN    6
#define JSON_SIZE    (LUKS2_HDR_SIZE - LUKS2_BIN_SIZE)
/* PBKDF2 iterations we accept in the digest and keyslot: ours are 1000 (the minimum);
 * a bound stops a header from making the boot spin for hours. */
#define ITER_MIN 1000
#define ITER_MAX 10000000

static const uint8_t magic_primary[MAGIC_LEN] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
static const uint8_t magic_secondary[MAGIC_LEN] = {'S', 'K', 'U', 'L', 0xba, 0xbe};

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void luks2_checksum(const uint8_t *copy, uint8_t out[32])
{
	static const uint8_t zeros[CSUM_LEN];
	mbedtls_sha256_context ctx;

	mbedtls_sha256_init(&ctx);
	mbedtls_sha256_starts_ret(&ctx, 0);
	mbedtls_sha256_update_ret(&ctx, copy, OFF_CSUM);
	mbedtls_sha256_update_ret(&ctx, zeros, CSUM_LEN);
	mbedtls_sha256_update_ret(&ctx, copy + OFF_CSUM + CSUM_LEN,
				  LUKS2_HDR_SIZE - OFF_CSUM - CSUM_LEN);
	mbedtls_sha256_finish_ret(&ctx, out);
	mbedtls_sha256_free(&ctx);
}

static bool nul_in(const uint8_t *p, size_t n)
{
	return memchr(p, 0, n) != NULL;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* One copy's binary header: 1 valid, 0 its magic is absent, -errno with err. */
static int check_binary(const uint8_t *c, int secondary, char *err, size_t errlen)
{
	const char *which = secondary ? "secondary" : "primary";
	uint8_t sum[32];
	uint64_t size;
	size_t json_len;

	if (memcmp(c, secondary ? magic_secondary : magic_primary, MAGIC_LEN) != 0)
		return 0;
	if (c[OFF_VERSION] != 0 || c[OFF_VERSION + 1] != 2) {
		snprintf(err, errlen,
			 "the %s header is LUKS version %u; only LUKS2 is accepted",
			 which, c[OFF_VERSION] << 8 | c[OFF_VERSION + 1]);
		return -EPROTONOSUPPORT;
	}
	size = be64(c + OFF_HDR_SIZE);
	if (size != LUKS2_HDR_SIZE) {
		snprintf(err, errlen,
			 "the %s LUKS2 header has metadata size %llu; cvminit makes and "
			 "accepts only %d",
			 which, (unsigned long long)size, LUKS2_HDR_SIZE);
		return -EPROTONOSUPPORT;
	}
	if (be64(c + OFF_HDR_OFF) != (secondary ? LUKS2_HDR_SIZE : 0)) {
		snprintf(err, errlen, "the %s LUKS2 header says it lives at offset %llu",
			 which, (unsigned long long)be64(c + OFF_HDR_OFF));
		return -EBADMSG;
	}
	if (!nul_in(c + OFF_CSUM_ALG, 32) ||
	    strcmp((const char *)c + OFF_CSUM_ALG, "sha256")) {
		snprintf(err, errlen, "the %s LUKS2 header's checksum is not sha256",
			 which);
		return -EBADMSG;
	}
	luks2_checksum(c, sum);
	if (memcmp(sum, c + OFF_CSUM, sizeof(sum)) != 0 ||
	    memchr(c + OFF_CSUM + sizeof(sum), 1, CSUM_LEN - sizeof(sum))) {
		snprintf(err, errlen,
			 "the %s LUKS2 header's checksum does not match its contents",
			 which);
		return -EBADMSG;
	}
	if (!nul_in(c + LUKS2_BIN_SIZE, JSON_SIZE) || !nul_in(c + OFF_UUID, 40)) {
		snprintf(err, errlen,
			 "the %s LUKS2 header's JSON or UUID is not terminated", which);
		return -EBADMSG;
	}
	/* libcryptsetup refuses a JSON area with anything but zeros after the text (found
	 * by tests/fuzz/fuzz_luks2_diff): accepting one here would pass a header the
	 * activation then cannot load. */
	json_len = strlen((const char *)c + LUKS2_BIN_SIZE);
	if (!all_zero(c + LUKS2_BIN_SIZE + json_len, JSON_SIZE - json_len)) {
		snprintf(err, errlen,
			 "the %s LUKS2 header's JSON area has bytes after its JSON text",
			 which);
		return -EBADMSG;
	}
	return 1;
}

/* --- JSON ------------------------------------------------------------------------ */

#define BAD(...)                                                                         \
	do {                                                                             \
		snprintf(err, errlen, __VA_ARGS__);                                      \
		return -EBADMSG;                                                         \
	} while (0)

static json_object *get(json_object *o, const char *k, json_type t)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, t))
		return NULL;
	return v;
}

static bool str_is(json_object *o, const char *k, const char *want)
{
	json_object *v = get(o, k, json_type_string);
	return v && streq(json_object_get_string(v), want);
}

static bool int_in(json_object *o, const char *k, int64_t lo, int64_t hi, int64_t *ret)
{
	json_object *v = get(o, k, json_type_int);
	int64_t x;

	if (!v)
		return false;
	x = json_object_get_int64(v);
	if (ret)
		*ret = x;
	return x >= lo && x <= hi;
}

/* A decimal string (LUKS2 writes offsets and sizes so), within [lo, hi]. */
static bool u64_str(json_object *o, const char *k, uint64_t lo, uint64_t hi,
		    uint64_t *ret)
{
	json_object *v = get(o, k, json_type_string);
	const char *s;
	char *end;
	unsigned long long x;

	if (!v)
		return false;
	s = json_object_get_string(v);
	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19 ||
	    (s[0] == '0' && s[1]))
		return false;
	x = strtoull(s, &end, 10);
	if (ret)
		*ret = x;
	return x >= lo && x <= hi;
}

/* Exactly the keys in allowed (NULL-terminated), each at most once by construction. */
static int only_keys(json_object *o, const char *const *allowed, const char *what,
		     char *err, size_t errlen)
{
	json_object_object_foreach(o, key, val)
	{
		bool ok = false;
		(void)val;
		for (const char *const *a = allowed; *a; a++)
			ok |= streq(key, *a);
		if (!ok)
			BAD("%s has \"%.40s\", which cvminit never writes", what, key);
	}
	return 0;
}

/* A section ("keyslots", …) holding exactly one object, named "0". */
static json_object *only_zero(json_object *top, const char *section, char *err,
			      size_t errlen)
{
	json_object *s = get(top, section, json_type_object), *v;

	if (!s) {
		snprintf(err, errlen, "the LUKS2 JSON has no \"%s\" object", section);
		return NULL;
	}
	if (json_object_object_length(s) != 1 || !(v = get(s, "0", json_type_object))) {
		snprintf(err, errlen,
			 "the LUKS2 header has %d %s where cvminit makes exactly one "
			 "(\"0\"): someone added or changed one",
			 json_object_object_length(s), section);
		return NULL;
	}
	return v;
}

static bool b64_len(json_object *o, const char *k, size_t want)
{
	json_object *v = get(o, k, json_type_string);
	unsigned char buf[128];
	size_t olen;

	if (!v)
		return false;
	return mbedtls_base64_decode(buf, sizeof(buf), &olen,
				     (const unsigned char *)json_object_get_string(v),
				     strlen(json_object_get_string(v))) == 0 &&
	       olen == want;
}

/* ["0"]: the only keyslot or segment a digest or token may name. */
static bool refs_zero(json_object *o, const char *k)
{
	json_object *a = get(o, k, json_type_array), *e;

	if (!a || json_object_array_length(a) != 1)
		return false;
	e = json_object_array_get_idx(a, 0);
	return json_object_is_type(e, json_type_string) &&
	       streq(json_object_get_string(e), "0");
}

static int check_segment(json_object *top, struct luks2_hdr *h, char *err, size_t errlen)
{
	static const char *const keys[] = {"type",	"offset",     "size",
					   "iv_tweak",	"encryption", "sector_size",
					   "integrity", NULL};
	static const char *const ikeys[] = {"type", "journal_encryption",
					    "journal_integrity", NULL};
	json_object *s = only_zero(top, "segments", err, errlen), *integ, *v;
	int r;

	if (!s)
		return -EBADMSG;
	r = only_keys(s, keys, "segment 0", err, errlen);
	if (r < 0)
		return r;
	if (!str_is(s, "type", "crypt"))
		BAD("segment 0 is not of type \"crypt\"");
	v = get(s, "encryption", json_type_string);
	if (!v || !streq(json_object_get_string(v), LUKS2_CIPHER))
		BAD("segment 0 uses cipher \"%.40s\"; the only one allowed is %s (never "
		    "cipher_null)",
		    v ? json_object_get_string(v) : "(none)", LUKS2_CIPHER);
	snprintf(h->cipher, sizeof(h->cipher), "%s", LUKS2_CIPHER);
	if (!u64_str(s, "offset", LUKS2_DATA_OFFSET, LUKS2_DATA_OFFSET, &h->data_offset))
		BAD("segment 0 does not start at %llu (the data offset cvminit makes)",
		    LUKS2_DATA_OFFSET);
	if (!str_is(s, "size", "dynamic"))
		BAD("segment 0's size is not \"dynamic\" (the whole partition)");
	if (!str_is(s, "iv_tweak", "0"))
		BAD("segment 0's iv_tweak is not \"0\"");
	if (!int_in(s, "sector_size", LUKS2_SECTOR, LUKS2_SECTOR, NULL))
		BAD("segment 0's sector size is not %d", LUKS2_SECTOR);
	h->sector_size = LUKS2_SECTOR;
	h->integrity[0] = '\0';
	if (json_object_object_get_ex(s, "integrity", &integ)) {
		if (!json_object_is_type(integ, json_type_object) ||
		    only_keys(integ, ikeys, "segment 0's integrity", err, errlen) < 0 ||
		    !str_is(integ, "type", "hmac(sha256)") ||
		    !str_is(integ, "journal_encryption", "none") ||
		    !str_is(integ, "journal_integrity", "none"))
			BAD("segment 0's integrity is not hmac(sha256) without journal "
			    "encryption or integrity");
		snprintf(h->integrity, sizeof(h->integrity), "hmac(sha256)");
	}
	h->key_bits = LUKS2_KEY_BYTES * 8;
	h->volume_key_size = LUKS2_KEY_BYTES + (h->integrity[0] ? LUKS2_HMAC_BYTES : 0);
	return 0;
}

static int check_keyslot(json_object *top, const struct luks2_hdr *h,
			 uint64_t keyslots_size, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "key_size", "af", "area", "kdf", NULL};
	static const char *const afk[] = {"type", "stripes", "hash", NULL};
	static const char *const areak[] = {"type",	  "offset",   "size",
					    "encryption", "key_size", NULL};
	static const char *const kdfk[] = {"type", "hash", "iterations", "salt", NULL};
	json_object *k = only_zero(top, "keyslots", err, errlen), *af, *area, *kdf;
	uint64_t off, size;

	if (!k)
		return -EBADMSG;
	if (only_keys(k, keys, "keyslot 0", err, errlen) < 0)
		return -EBADMSG;
	if (!str_is(k, "type", "luks2") ||
	    !int_in(k, "key_size", h->volume_key_size, h->volume_key_size, NULL))
		BAD("keyslot 0 is not a luks2 keyslot for a %u-byte volume key",
		    h->volume_key_size);
	af = get(k, "af", json_type_object);
	if (!af || only_keys(af, afk, "keyslot 0's af", err, errlen) < 0 ||
	    !str_is(af, "type", "luks1") || !int_in(af, "stripes", 4000, 4000, NULL) ||
	    !str_is(af, "hash", "sha256"))
		BAD("keyslot 0's anti-forensic splitter is not luks1, 4000 stripes, "
		    "sha256");
	area = get(k, "area", json_type_object);
	if (!area || only_keys(area, areak, "keyslot 0's area", err, errlen) < 0 ||
	    !str_is(area, "type", "raw") || !str_is(area, "encryption", LUKS2_CIPHER) ||
	    !int_in(area, "key_size", LUKS2_KEY_BYTES, LUKS2_KEY_BYTES, NULL) ||
	    !u64_str(area, "offset", LUKS2_AREA_SIZE, LUKS2_DATA_OFFSET, &off) ||
	    !u64_str(area, "size", 1, LUKS2_DATA_OFFSET, &size) ||
	    off + size > LUKS2_AREA_SIZE + keyslots_size)
		BAD("keyslot 0's area is not a raw %s area inside the keyslots area",
		    LUKS2_CIPHER);
	kdf = get(k, "kdf", json_type_object);
	if (!kdf || only_keys(kdf, kdfk, "keyslot 0's kdf", err, errlen) < 0 ||
	    !str_is(kdf, "type", "pbkdf2") || !str_is(kdf, "hash", "sha256") ||
	    !int_in(kdf, "iterations", ITER_MIN, ITER_MAX, NULL) ||
	    !b64_len(kdf, "salt", 32))
		BAD("keyslot 0's kdf is not pbkdf2-sha256 with %d-%d iterations and a "
		    "32-byte salt",
		    ITER_MIN, ITER_MAX);
	return 0;
}

static int check_digest(json_object *top, char *err, size_t errlen)
{
	static const char *const keys[] = {"type",	 "keyslots", "segments", "hash",
					   "iterations", "salt",     "digest",	 NULL};
	json_object *d = only_zero(top, "digests", err, errlen);

	if (!d)
		return -EBADMSG;
	if (only_keys(d, keys, "digest 0", err, errlen) < 0)
		return -EBADMSG;
	if (!str_is(d, "type", "pbkdf2") || !str_is(d, "hash", "sha256") ||
	    !int_in(d, "iterations", ITER_MIN, ITER_MAX, NULL) ||
	    !b64_len(d, "salt", 32) || !b64_len(d, "digest", 32))
		BAD("digest 0 is not a pbkdf2-sha256 digest (%d-%d iterations, 32-byte "
		    "salt and digest)",
		    ITER_MIN, ITER_MAX);
	if (!refs_zero(d, "keyslots") || !refs_zero(d, "segments"))
		BAD("digest 0 does not bind exactly keyslot 0 to segment 0");
	return 0;
}

static int check_json(const char *json, struct luks2_hdr *h, char *err, size_t errlen)
{
	static const char *const top_keys[] = {"keyslots", "tokens", "segments",
					       "digests",  "config", NULL};
	static const char *const cfg_keys[] = {"json_size", "keyslots_size", NULL};
	enum json_tokener_error jerr;
	struct json_tokener *jtok;
	json_object *top, *cfg, *tok;
	uint64_t keyslots_size;
	char terr[200];
	int r;

	/* One object and nothing after it: libcryptsetup refuses any byte between the end
	 * of the object and the end of the area (check_binary() saw zeros after the text). */
	jtok = json_tokener_new();
	if (!jtok)
		return -ENOMEM;
	top = json_tokener_parse_ex(jtok, json, (int)strlen(json));
	jerr = json_tokener_get_error(jtok);
	if (top && json_tokener_get_parse_end(jtok) != strlen(json)) {
		json_tokener_free(jtok);
		json_object_put(top);
		snprintf(err, errlen,
			 "the LUKS2 JSON area has bytes after the JSON object");
		return -EBADMSG;
	}
	json_tokener_free(jtok);
	if (!top || !json_object_is_type(top, json_type_object)) {
		snprintf(err, errlen, "the LUKS2 JSON area does not parse: %s",
			 json_tokener_error_desc(jerr));
		json_object_put(top);
		return -EBADMSG;
	}
	r = only_keys(top, top_keys, "the LUKS2 JSON", err, errlen);
	if (r < 0)
		goto out;
	cfg = get(top, "config", json_type_object);
	if (!cfg) {
		snprintf(err, errlen, "the LUKS2 JSON has no \"config\" object");
		r = -EBADMSG;
		goto out;
	}
	r = only_keys(cfg, cfg_keys,
		      "the LUKS2 config (no flags or requirements allowed)", err, errlen);
	if (r < 0)
		goto out;
	if (!u64_str(cfg, "json_size", JSON_SIZE, JSON_SIZE, NULL) ||
	    !u64_str(cfg, "keyslots_size", 1, LUKS2_DATA_OFFSET - LUKS2_AREA_SIZE,
		     &keyslots_size) ||
	    keyslots_size % 4096) {
		/* The 4096 alignment is the LUKS2 format's (libcryptsetup refuses another
		 * size; found by tests/fuzz/fuzz_luks2_diff). */
		snprintf(err, errlen,
			 "the LUKS2 config is not json_size %d with a keyslots area of "
			 "4096-byte blocks before the data",
			 JSON_SIZE);
		r = -EBADMSG;
		goto out;
	}
	if ((r = check_segment(top, h, err, errlen)) < 0 ||
	    (r = check_keyslot(top, h, keyslots_size, err, errlen)) < 0 ||
	    (r = check_digest(top, err, errlen)) < 0)
		goto out;
	r = -EBADMSG;
	tok = only_zero(top, "tokens", err, errlen);
	if (!tok)
		goto out;
	if (seal_token_parse(json_object_to_json_string_ext(tok, JSON_C_TO_STRING_PLAIN),
			     &h->token, terr, sizeof(terr)) < 0) {
		snprintf(err, errlen, "token 0 is not cvminit's: %s", terr);
		goto out;
	}
	r = 0;
out:
	json_object_put(top);
	return r;
}

/* --- the two copies -------------------------------------------------------------- */

static int check_copy(const uint8_t *c, int secondary, struct luks2_hdr *h, char *err,
		      size_t errlen)
{
	int r = check_binary(c, secondary, err, errlen);

	if (r <= 0)
		return r;
	memset(h, 0, sizeof(*h));
	h->copy = secondary;
	h->seqid = be64(c + OFF_SEQID);
	snprintf(h->uuid, sizeof(h->uuid), "%s", (const char *)c + OFF_UUID);
	if (strlen(h->uuid) != 36 || strspn(h->uuid, "0123456789abcdef-") != 36) {
		snprintf(err, errlen, "the LUKS2 UUID \"%.40s\" is not a lower-case UUID",
			 h->uuid);
		return -EBADMSG;
	}
	r = check_json((const char *)c + LUKS2_BIN_SIZE, h, err, errlen);
	return r < 0 ? r : 1;
}

int luks2_inspect(const uint8_t *area, size_t len, struct luks2_hdr *h, char *err,
		  size_t errlen)
{
	struct luks2_hdr p, s;
	char perr[300] = "", serr[300] = "";
	int rp, rs;

	err[0] = '\0';
	if (len < LUKS2_AREA_SIZE) {
		snprintf(err, errlen, "short read of the LUKS2 header area");
		return -EIO;
	}
	if (memcmp(area, "LUKS\xba\xbe\x00\x01", 8) == 0) {
		snprintf(err, errlen,
			 "the partition holds a LUKS1 header; only LUKS2 is accepted");
		return -EPROTONOSUPPORT;
	}
	rp = check_copy(area, 0, &p, perr, sizeof(perr));
	rs = check_copy(area + LUKS2_HDR_SIZE, 1, &s, serr, sizeof(serr));

	if (rp == 0 && rs == 0)
		return 0;
	if (rp == 1 && rs == 1) {
		/* Equal sequence numbers must be the same header (label, UUID, subsystem
		 * and JSON; each copy has its own salt); otherwise the newer one is the
		 * one an interrupted update wrote first. */
		if (p.seqid == s.seqid &&
		    (memcmp(area + OFF_SEQID, area + LUKS2_HDR_SIZE + OFF_SEQID,
			    OFF_SALT - OFF_SEQID) != 0 ||
		     memcmp(area + OFF_UUID, area + LUKS2_HDR_SIZE + OFF_UUID,
			    OFF_HDR_OFF - OFF_UUID) != 0 ||
		     memcmp(area + LUKS2_BIN_SIZE, area + LUKS2_HDR_SIZE + LUKS2_BIN_SIZE,
			    JSON_SIZE) != 0)) {
			snprintf(err, errlen,
				 "the two LUKS2 header copies have the same sequence "
				 "number %llu but differ",
				 (unsigned long long)p.seqid);
			return -EBADMSG;
		}
		*h = s.seqid > p.seqid ? s : p;
		return 1;
	}
	if (rp == 1) {
		/* A secondary cut short by a power loss is rewritten from the primary. */
		*h = p;
		return 1;
	}
	if (rs == 1) {
		*h = s;
		h->primary_missing = rp == 0;
		return 1;
	}
	snprintf(err, errlen, "%s%s%s", rp < 0 ? perr : "", rp < 0 && rs < 0 ? "; " : "",
		 rs < 0 ? serr : "");
	if (rp == -EPROTONOSUPPORT || rs == -EPROTONOSUPPORT)
		return -EPROTONOSUPPORT;
	return -EBADMSG;
}

void luks2_materialize(const uint8_t *area, const struct luks2_hdr *h, uint8_t *out)
{
	const uint8_t *src = area + (h->copy ? LUKS2_HDR_SIZE : 0);
	uint8_t sum[32];

	for (int i = 0; i < 2; i++) {
		uint8_t *c = out + i * LUKS2_HDR_SIZE;
		memcpy(c, src, LUKS2_HDR_SIZE);
		memcpy(c, i ? magic_secondary : magic_primary, MAGIC_LEN);
		put_be64(c + OFF_HDR_OFF, i ? LUKS2_HDR_SIZE : 0);
		memset(c + OFF_CSUM, 0, CSUM_LEN);
		luks2_checksum(c, sum);
		memcpy(c + OFF_CSUM, sum, sizeof(sum));
	}
}

int luks2_identity(const struct luks2_hdr *h, char *buf, size_t len)
{
	int n = identity_state(h->uuid, h->cipher, h->key_bits, h->sector_size,
			       h->integrity, buf, len);

	return n == -ENOBUFS ? -ENAMETOOLONG : n;
}
