/* LUKS2 header validation on a copy: headers made by the host's cryptsetup on plain files
 * (no device-mapper needed), then changed the ways a host could change them. */
#include <errno.h>
#include <fcntl.h>

#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <libcryptsetup.h>

#include "../../init/luks.h"
#include "../../init/util.h"
#include "harness.h"

#define PART_SIZE "20M"

static char dir[64];

static void sh(const char *fmt, ...) _printf_(1, 2);
static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		FAIL_AT("command failed: %s", cmd);
}

static void need_cryptsetup(void)
{
	if (access("/usr/sbin/cryptsetup", X_OK) != 0 &&
	    access("/sbin/cryptsetup", X_OK) != 0)
		SKIP("cryptsetup is not installed (apt-get install cryptsetup-bin)");
	snprintf(dir, sizeof(dir), "/tmp/cvminit-luks.%d", (int)getpid());
	mkdir(dir, 0700);
}

static void cleanup(void)
{
	if (dir[0])
		sh("rm -rf %s", dir);
}

/* A token cvminit would write, with a blob of the right shape (not from a TPM: the
 * validator checks the form, the TPM checks the rest at unseal). */
static char *token_json(bool initialized)
{
	struct sealed s = {.pcr_mask = (1u << 7) | (1u << 11) | (1u << 15),
			   .initialized = initialized};
	uint8_t *p = s.blob;
	char *json;

	for (int i = 0; i < 32; i++)
		s.policy[i] = (uint8_t)(0xa0 + i);
	for (int i = 0; i < 24; i++)
		memset(s.pcr_values[i], i, 32);
	/* TPM2B_PRIVATE of 4 bytes, then the TPM2B_PUBLIC of a keyedhash object. */
	*p++ = 0, *p++ = 4;
	memset(p, 0x55, 4), p += 4;
	*p++ = 0, *p++ = 2 + 2 + 4 + 2 + 32 + 2 + 2 + 32;
	*p++ = 0, *p++ = 0x08, *p++ = 0, *p++ = 0x0b;
	*p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0x12;
	*p++ = 0, *p++ = 32;
	memcpy(p, s.policy, 32), p += 32;
	*p++ = 0, *p++ = 0x10;
	*p++ = 0, *p++ = 32;
	memset(p, 0x77, 32), p += 32;
	s.blob_len = (size_t)(p - s.blob);
	CHECK_INT(seal_token_format(&s, &json), 0);
	return json;
}

static const char *path(const char *name)
{
	static char buf[4][128];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static void write_text(const char *name, const char *text)
{
	FILE *f = fopen(path(name), "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
}

/* A header as cvminit makes it: LUKS2, aes-xts-plain64 512-bit, 4096-byte sectors, one
 * pbkdf2 keyslot (1000 iterations) whose passphrase is the key, then our token. */
static void make_disk(const char *name)
{
	char *tok = token_json(false);

	sh("head -c 64 /dev/urandom > %s", path("key"));
	sh("truncate -s " PART_SIZE " %s", path(name));
	sh("cryptsetup luksFormat -q --type luks2 --cipher aes-xts-plain64 --key-size "
	   "512 --sector-size 4096 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash "
	   "sha256 --key-file %s %s",
	   path("key"), path(name));
	write_text("token.json", tok);
	sh("cryptsetup token import --token-id 0 --json-file %s %s", path("token.json"),
	   path(name));
	free(tok);
}

static uint8_t *read_area(const char *name)
{
	uint8_t *a = calloc(1, LUKS2_AREA_SIZE);
	int fd = open(path(name), O_RDONLY);

	CHECK(fd >= 0);
	CHECK_INT(pread(fd, a, LUKS2_AREA_SIZE, 0), LUKS2_AREA_SIZE);
	close(fd);
	return a;
}

static void write_area(const char *name, const uint8_t *a)
{
	int fd = open(path(name), O_WRONLY);

	CHECK(fd >= 0);
	CHECK_INT(pwrite(fd, a, LUKS2_AREA_SIZE, 0), LUKS2_AREA_SIZE);
	close(fd);
}

/* Rewrites the JSON of both copies (from, to: a substring and its replacement) and
 * recomputes their checksums: a host that edits the header and fixes it up. */
static void edit_json(uint8_t *a, const char *from, const char *to)
{
	for (int c = 0; c < 2; c++) {
		uint8_t *copy = a + c * LUKS2_HDR_SIZE;
		char *json = (char *)copy + LUKS2_BIN_SIZE, *p = strstr(json, from);
		char buf[LUKS2_HDR_SIZE];
		uint8_t sum[32];

		if (!p)
			FAIL_AT("\"%s\" not in the header JSON: %s", from, json);
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(p - json), json, to,
			 p + strlen(from));
		memset(json, 0, LUKS2_HDR_SIZE - LUKS2_BIN_SIZE);
		memcpy(json, buf, strlen(buf));
		memset(copy + 448, 0, 64);
		luks2_checksum(copy, sum);
		memcpy(copy + 448, sum, 32);
	}
}

static int inspect(const uint8_t *a, struct luks2_hdr *h, char *err)
{
	int r = luks2_inspect(a, LUKS2_AREA_SIZE, h, err, 300);

	if (r < 0)
		fprintf(stderr, "  (refused: %s)\n", err);
	return r;
}

static void expect_refused(const uint8_t *a, int want, const char *needle)
{
	struct luks2_hdr h;
	char err[300];

	CHECK_INT(inspect(a, &h, err), want);
	CHECK_CONTAINS(err, needle);
}

TEST(luks_accepts_cvminit_header)
{
	struct luks2_hdr h;
	char err[300], id[160], uuid[64];
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	a = read_area("disk");
	CHECK_INT(inspect(a, &h, err), 1);
	CHECK_STR(h.cipher, "aes-xts-plain64");
	CHECK_INT(h.key_bits, 512);
	CHECK_INT(h.volume_key_size, 64);
	CHECK_INT(h.sector_size, 4096);
	CHECK_STR(h.integrity, "");
	CHECK_INT(h.data_offset, 16 << 20);
	CHECK(!h.primary_missing);
	CHECK(!h.token.initialized);
	CHECK_INT(h.token.pcr_mask, (1u << 7) | (1u << 11) | (1u << 15));
	snprintf(id, sizeof(id), "cryptsetup luksUUID %s", path("disk"));
	CHECK_INT(run_capture(id, uuid, sizeof(uuid)), 0);
	CHECK_STR(h.uuid, uuid);
	CHECK(luks2_identity(&h, id, sizeof(id)) > 0);
	char want[160];
	snprintf(want, sizeof(want), "luks2:%s:aes-xts-plain64:512:4096:none", uuid);
	CHECK_STR(id, want);
	free(a);
}

TEST(luks_blank_and_foreign)
{
	uint8_t *a = calloc(1, LUKS2_AREA_SIZE);
	struct luks2_hdr h;
	char err[300];

	CHECK_INT(inspect(a, &h, err), 0);
	memcpy(a, "LUKS\xba\xbe\x00\x01", 8);
	expect_refused(a, -EPROTONOSUPPORT, "LUKS1");
	CHECK_INT(luks2_inspect(a, 100, &h, err, sizeof(err)), -EIO);
	free(a);
}

TEST(luks_luks1_refused)
{
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	sh("head -c 32 /dev/urandom > %s", path("key"));
	sh("truncate -s " PART_SIZE " %s", path("l1"));
	sh("cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 "
	   "--key-file %s %s",
	   path("key"), path("l1"));
	a = read_area("l1");
	expect_refused(a, -EPROTONOSUPPORT, "only LUKS2 is accepted");
	free(a);
}

TEST(luks_cipher_null_refused)
{
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	a = read_area("disk");
	/* The segment switched to cipher_null, digest and keyslot left as they were: with
	 * the checksum fixed up, only the allow-list stops it. */
	edit_json(a, "\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
		  "\"encryption\":\"cipher_null-ecb\",\"sector_size\"");
	expect_refused(a, -EBADMSG, "uses cipher \"cipher_null-ecb\"");
	free(a);

	a = read_area("disk");
	edit_json(a, "\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
		  "\"encryption\":\"aes-cbc-essiv:sha256\",\"sector_size\"");
	expect_refused(a, -EBADMSG, "the only one allowed is aes-xts-plain64");
	free(a);
}

TEST(luks_extra_keyslot_refused)
{
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	sh("echo -n host-passphrase > %s", path("pw"));
	sh("cryptsetup luksAddKey -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
	   "--key-file %s %s %s",
	   path("key"), path("disk"), path("pw"));
	a = read_area("disk");
	expect_refused(a, -EBADMSG, "has 2 keyslots where cvminit makes exactly one");
	free(a);
}

TEST(luks_extra_or_missing_token_refused)
{
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	write_text("t2.json", "{\"type\":\"host-token\",\"keyslots\":[\"0\"]}");
	sh("cryptsetup token import --token-id 1 --json-file %s %s", path("t2.json"),
	   path("disk"));
	a = read_area("disk");
	expect_refused(a, -EBADMSG, "has 2 tokens");
	free(a);

	sh("cryptsetup token remove --token-id 1 %s", path("disk"));
	sh("cryptsetup token remove --token-id 0 %s", path("disk"));
	a = read_area("disk");
	expect_refused(a, -EBADMSG, "has 0 tokens");
	free(a);
}

TEST(luks_malformed_token_refused)
{
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	a = read_area("disk");
	edit_json(a, "\"tpm2-pin\":false", "\"tpm2-pin\":true");
	expect_refused(a, -EBADMSG, "token 0 is not cvminit's: tpm2-pin");
	free(a);

	a = read_area("disk");
	edit_json(a, "\"tpm2-pcr-bank\":\"sha256\"", "\"tpm2-pcr-bank\":\"sha1\"");
	expect_refused(a, -EBADMSG, "tpm2-pcr-bank");
	free(a);

	a = read_area("disk");
	edit_json(a, "\"tpm2-blob\":\"", "\"tpm2-blob\":\"!!");
	expect_refused(a, -EBADMSG, "tpm2-blob");
	free(a);

	/* The token names a keyslot that does not exist. */
	a = read_area("disk");
	edit_json(a, "\"keyslots\":[\"0\"],\"tpm2-blob\"",
		  "\"keyslots\":[\"3\"],\"tpm2-blob\"");
	expect_refused(a, -EBADMSG, "keyslots");
	free(a);
}

TEST(luks_other_changes_refused)
{
	static const struct {
		const char *from, *to, *needle;
	} cases[] = {
		{"\"sector_size\":4096", "\"sector_size\":512",
		 "sector size is not 4096"},
		{"\"offset\":\"16777216\"", "\"offset\":\"4096\"", "does not start at"},
		{"\"size\":\"dynamic\"", "\"size\":\"4096\"", "size is not \"dynamic\""},
		{"\"iterations\":1000,\"salt\"", "\"iterations\":2000000000,\"salt\"",
		 "iterations"},
		{"\"type\":\"pbkdf2\",\"hash\":\"sha256\"",
		 "\"type\":\"argon2id\",\"hash\":\"sha256\"", "kdf is not pbkdf2"},
		{"\"keyslots_size\":\"16744448\"",
		 "\"keyslots_size\":\"16744448\",\"flags\":[\"allow-discards\"]",
		 "\"flags\", which cvminit never writes"},
		{"\"keyslots_size\":\"16744448\"",
		 "\"keyslots_size\":\"16744448\",\"requirements\":"
		 "{\"mandatory\":[\"online-reencrypt\"]}",
		 "\"requirements\", which cvminit never writes"},
		{"\"sector_size\":4096",
		 "\"sector_size\":4096,\"integrity\":{\"type\":\"none\"}",
		 "integrity is not hmac(sha256)"},
		{"\"segments\":[\"0\"]", "\"segments\":[]", "digest 0 does not bind"},
		{"\"config\":{", "\"extra\":{},\"config\":{",
		 "\"extra\", which cvminit never"},
	};
	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint8_t *a = read_area("disk");
		edit_json(a, cases[i].from, cases[i].to);
		expect_refused(a, -EBADMSG, cases[i].needle);
		free(a);
	}
}

/* What libcryptsetup refuses at crypt_load() the check must refuse too, or the host makes
 * PID 1 validate a header it then cannot load. tests/fuzz/fuzz_luks2_diff found each; its
 * inputs are tests/fuzz/corpus/luks2_diff/regress-*. Both copies edited, checksums fixed. */
static void expect_both_refuse(uint8_t *a, const char *needle)
{
	struct crypt_device *cd = NULL;

	expect_refused(a, -EBADMSG, needle);
	write_area("disk", a);
	CHECK_INT(crypt_init(&cd, path("disk")), 0);
	CHECK(crypt_load(cd, CRYPT_LUKS2, NULL) < 0);
	crypt_free(cd);
}

TEST(luks_what_libcryptsetup_refuses_refused)
{
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");

	/* A byte in the JSON area after the text's terminating NUL. */
	a = read_area("disk");
	for (int c = 0; c < 2; c++) {
		uint8_t *copy = a + c * LUKS2_HDR_SIZE, sum[32];
		size_t n = strlen((char *)copy + LUKS2_BIN_SIZE);

		copy[LUKS2_BIN_SIZE + n + 100] = 0x02;
		memset(copy + 448, 0, 64);
		luks2_checksum(copy, sum);
		memcpy(copy + 448, sum, 32);
	}
	expect_both_refuse(a, "bytes after its JSON text");
	free(a);

	/* Text after the JSON object, before the NUL (json-c stops at the object's end). */
	make_disk("disk");
	a = read_area("disk");
	edit_json(a, "\"keyslots_size\":\"16744448\"}}",
		  "\"keyslots_size\":\"16744448\"}}t");
	expect_both_refuse(a, "bytes after the JSON object");
	free(a);

	/* A keyslots area that is not whole 4096-byte blocks. */
	make_disk("disk");
	a = read_area("disk");
	edit_json(a, "\"keyslots_size\":\"16744448\"", "\"keyslots_size\":\"16744447\"");
	expect_both_refuse(a, "4096-byte blocks");
	free(a);
}

/* The header LUKS2 makes with hmac(sha256) integrity (cryptsetup cannot make one without
 * device-mapper, so the JSON is edited to its shape): 96-byte volume key. */
TEST(luks_integrity_header)
{
	struct luks2_hdr h;
	char err[300], id[160];
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	a = read_area("disk");
	edit_json(a, "\"sector_size\":4096",
		  "\"sector_size\":4096,\"integrity\":{\"type\":\"hmac(sha256)\","
		  "\"journal_encryption\":\"none\",\"journal_integrity\":\"none\"}");
	edit_json(a, "\"type\":\"luks2\",\"key_size\":64",
		  "\"type\":\"luks2\",\"key_size\":96");
	CHECK_INT(inspect(a, &h, err), 1);
	CHECK_STR(h.integrity, "hmac(sha256)");
	CHECK_INT(h.volume_key_size, 96);
	CHECK_INT(h.key_bits, 512);
	CHECK(luks2_identity(&h, id, sizeof(id)) > 0);
	CHECK(strstr(id, ":aes-xts-plain64:512:4096:hmac(sha256)") != NULL);
	free(a);
}

TEST(luks_copies_and_checksums)
{
	struct luks2_hdr h;
	char err[300];
	uint8_t *a;

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");

	/* A byte of the primary's JSON changed without fixing the checksum: the
	 * secondary is used (as libcryptsetup would). */
	a = read_area("disk");
	a[LUKS2_BIN_SIZE + 10] ^= 1;
	CHECK_INT(inspect(a, &h, err), 1);
	CHECK_INT(h.copy, 1);
	CHECK(!h.primary_missing);
	/* Both broken: refused. */
	a[LUKS2_HDR_SIZE + LUKS2_BIN_SIZE + 10] ^= 1;
	expect_refused(a, -EBADMSG, "checksum does not match");
	free(a);

	/* No primary at all (a first boot cut between its two header writes). */
	a = read_area("disk");
	memset(a, 0, LUKS2_BIN_SIZE);
	CHECK_INT(inspect(a, &h, err), 1);
	CHECK(h.primary_missing);
	CHECK_INT(h.copy, 1);
	free(a);

	/* Same sequence number, different contents: a forged pair. */
	a = read_area("disk");
	uint8_t *sec = a + LUKS2_HDR_SIZE;
	char *json = (char *)sec + LUKS2_BIN_SIZE,
	     *p = strstr(json, "\"iterations\":1000");
	CHECK(p != NULL);
	memcpy(p, "\"iterations\":1001", 17);
	uint8_t sum[32];
	memset(sec + 448, 0, 64);
	luks2_checksum(sec, sum);
	memcpy(sec + 448, sum, 32);
	expect_refused(a, -EBADMSG, "same sequence number");
	free(a);

	/* Another metadata size. */
	sh("truncate -s " PART_SIZE " %s", path("big"));
	sh("cryptsetup luksFormat -q --type luks2 --luks2-metadata-size 32k --cipher "
	   "aes-xts-plain64 --key-size 512 --sector-size 4096 --pbkdf pbkdf2 "
	   "--pbkdf-force-iterations 1000 --key-file %s %s",
	   path("key"), path("big"));
	a = read_area("big");
	expect_refused(a, -EPROTONOSUPPORT, "metadata size 32768");
	free(a);
}

/* The materialized copy is what libcryptsetup gets: the host's cryptsetup reads it as a
 * detached header and the key opens its keyslot. */
TEST(luks_materialized_copy_opens)
{
	struct luks2_hdr h;
	char err[300];
	uint8_t *a, *out = calloc(1, LUKS2_AREA_SIZE);

	need_cryptsetup();
	atexit(cleanup);
	make_disk("disk");
	a = read_area("disk");
	memset(a, 0,
	       LUKS2_BIN_SIZE); /* from the secondary: offsets and magic rewritten */
	CHECK_INT(inspect(a, &h, err), 1);
	luks2_materialize(a, &h, out);
	/* The keyslot area comes from the disk, the metadata from the copy. */
	sh("cp %s %s", path("disk"), path("hdr"));
	write_area("hdr", out);
	sh("cryptsetup luksDump %s | grep -q 'systemd-tpm2'", path("hdr"));
	sh("cryptsetup luksOpen --test-passphrase --key-file %s %s", path("key"),
	   path("hdr"));
	CHECK_INT(inspect(out, &h, err), 1);
	CHECK_INT(h.copy, 0);
	free(a);
	free(out);
}

/* libcryptsetup, called as state.c's first boot calls it (detached header file, data
 * offset 16 MiB, 512 KiB keyslots area, pbkdf2 at 1000 iterations, the key as its own
 * passphrase, our token),
 * makes a header the validator accepts: the allow-list matches what we make. */
TEST(luks_libcryptsetup_format_passes)
{
	struct crypt_pbkdf_type pbkdf = {.type = CRYPT_KDF_PBKDF2,
					 .hash = "sha256",
					 .iterations = 1000,
					 .flags = CRYPT_PBKDF_NO_BENCHMARK};
	struct crypt_params_luks2 params = {
		.pbkdf = &pbkdf, .sector_size = 4096, .label = "cvminit-state"};
	struct crypt_device *cd = NULL;
	struct luks2_hdr h;
	uint8_t k[64], *a;
	char err[300], *tok = token_json(false);

	need_cryptsetup();
	atexit(cleanup);
	sh("truncate -s " PART_SIZE " %s", path("part"));
	sh("truncate -s 16M %s", path("hdr"));
	for (size_t i = 0; i < sizeof(k); i++)
		k[i] = (uint8_t)(i * 7 + 1);
	CHECK_INT(crypt_init_data_device(&cd, path("hdr"), path("part")), 0);
	CHECK_INT(crypt_set_data_offset(cd, (16u << 20) / 512), 0);
	CHECK_INT(crypt_set_metadata_size(cd, LUKS2_HDR_SIZE, 512u << 10), 0);
	CHECK_INT(crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, (char *)k, 64,
			       &params),
		  0);
	CHECK_INT(crypt_keyslot_add_by_volume_key(cd, 0, (char *)k, 64, (char *)k, 64),
		  0);
	CHECK_INT(crypt_token_json_set(cd, 0, tok), 0);
	crypt_free(cd);
	a = read_area("hdr");
	CHECK_INT(inspect(a, &h, err), 1);
	CHECK_INT(h.data_offset, 16u << 20);
	free(a);
	/* The header file's first 16 MiB laid over the partition: a normal LUKS2 device
	 * that the key opens. */
	sh("dd if=%s of=%s conv=notrunc status=none", path("hdr"), path("part"));
	sh("printf '' > %s", path("k"));
	FILE *f = fopen(path("k"), "wb");
	fwrite(k, 1, 64, f);
	fclose(f);
	sh("cryptsetup luksOpen --test-passphrase --key-file %s %s", path("k"),
	   path("part"));
	free(tok);
}
