/* cvm-measure's PCR 15 side and its verification inputs: newc cpio extraction, the PCR 15
 * fold against a computation by hand from the rules, measurements.json, the firmware's
 * binary TCG log, the LUKS2 state identity, and `verify --tpm` against a real swtpm. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libcryptsetup.h>

#include "../../init/luks.h"
#include "../../init/reference.h"
#include "../../init/util.h"
#include "../../measured-boot/cpio.h"
#include "../../lib/digest.h"
#include "../../lib/hex.h"
#include "../../measured-boot/eventlog.h"
#include "../../measured-boot/generation.h"
#include "../../measured-boot/measure.h"
#include "../../measured-boot/pe.h"
#include "../../measured-boot/predict.h"
#include "../../measured-boot/replay.h"
#include "../../measured-boot/tcglog.h"
#include "../../measured-boot/tpm.h"
#include "harness.h"
#include "pe_builder.h"
#include "swtpm.h"

#define CVM_MEASURE "build/cvm-measure"
#define CONF	    "/etc/cvminit/cvminit.conf"
#define HEX_LEN	    (2 * DIGEST_MAX + 1)

/* --- a newc writer, from the format (cpio(5), "New ASCII Format") ---------------- */

struct cpio_buf {
	uint8_t b[16384];
	size_t n;
};

static void put_bytes(struct cpio_buf *c, const void *p, size_t n)
{
	CHECK(c->n + n <= sizeof(c->b));
	memcpy(c->b + c->n, p, n);
	c->n += n;
}

static void pad4(struct cpio_buf *c)
{
	while (c->n % 4)
		put_bytes(c, "", 1);
}

/* One entry: 110-byte header, name with NUL padded to 4, data padded to 4. The header
 * and name start at a 4-byte boundary (the archive starts at one). */
static void entry(struct cpio_buf *c, const char *name, uint32_t mode, uint32_t nlink,
		  const void *data, size_t size)
{
	char h[111];
	static uint32_t ino = 1;

	snprintf(h, sizeof(h),
		 "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino++,
		 mode, 0u, 0u, nlink, 0u, (unsigned)size, 0u, 0u, 0u, 0u,
		 (unsigned)strlen(name) + 1, 0u);
	put_bytes(c, h, 110);
	put_bytes(c, name, strlen(name) + 1);
	pad4(c);
	put_bytes(c, data, size);
	pad4(c);
}

static void file(struct cpio_buf *c, const char *name, const char *text)
{
	entry(c, name, 0100644, 1, text, strlen(text));
}

static void trailer(struct cpio_buf *c)
{
	entry(c, "TRAILER!!!", 0, 1, "", 0);
}

/* An initrd like image/mkinitrd.py makes: directories, /init, the config. */
static void initrd(struct cpio_buf *c, const char *config)
{
	entry(c, "etc", 040755, 2, "", 0);
	entry(c, "etc/cvminit", 040755, 2, "", 0);
	if (config)
		file(c, "etc/cvminit/cvminit.conf", config);
	file(c, "init",
	     "\x7f"
	     "ELF...");
	trailer(c);
}

static int find(const struct cpio_buf *c, size_t len, struct cpio_file *f, size_t *off,
		const char **why)
{
	return cpio_find(c->b, len, CONF, f, off, why);
}

TEST(cpio_finds_the_config)
{
	struct cpio_buf c = {0};
	struct cpio_file f;
	size_t off;
	const char *why;

	initrd(&c, "service containerd\n");
	CHECK_INT(find(&c, c.n, &f, &off, &why), 1);
	CHECK_INT(f.size, 19);
	CHECK(memcmp(f.data, "service containerd\n", 19) == 0);
	CHECK_INT(f.archive, 1);
	/* After "etc" (110 + 4 bytes of name, padded to 116) and "etc/cvminit" (124). */
	CHECK_INT(f.offset, 240);
	CHECK_INT(f.mode, 0100644);

	/* The same file named "./etc//cvminit/./cvminit.conf" or with a leading "/". */
	memset(&c, 0, sizeof(c));
	file(&c, "./etc//cvminit/./cvminit.conf", "a");
	file(&c, "/etc/cvminit/other", "b");
	trailer(&c);
	CHECK_INT(find(&c, c.n, &f, &off, &why), 1);
	CHECK_INT(f.size, 1);
	CHECK(f.data[0] == 'a');

	/* An empty config file is a file (zero bytes measured, as with none). */
	memset(&c, 0, sizeof(c));
	initrd(&c, "");
	CHECK_INT(find(&c, c.n, &f, &off, &why), 1);
	CHECK_INT(f.size, 0);
}

TEST(cpio_missing_file)
{
	struct cpio_buf c = {0};
	struct cpio_file f;
	size_t off;
	const char *why;

	initrd(&c, NULL);
	CHECK_INT(find(&c, c.n, &f, &off, &why), 0);
	/* A name that only starts like the path is another file. */
	memset(&c, 0, sizeof(c));
	file(&c, "etc/cvminit/cvminit.conf.bak", "x");
	file(&c, "etc/cvminit/cvminit.con", "x");
	trailer(&c);
	CHECK_INT(find(&c, c.n, &f, &off, &why), 0);
	/* No archive at all (an empty section) has no file either. */
	CHECK_INT(find(&c, 0, &f, &off, &why), 0);
}

TEST(cpio_two_archives_last_wins)
{
	struct cpio_buf c = {0};
	struct cpio_file f;
	size_t off, second;
	const char *why;

	initrd(&c, "first\n");
	/* The kernel skips NUL padding between archives (here 512 bytes of it). */
	for (int i = 0; i < 512; i++)
		put_bytes(&c, "", 1);
	second = c.n;
	file(&c, "etc/cvminit/cvminit.conf", "second!\n");
	trailer(&c);
	CHECK_INT(find(&c, c.n, &f, &off, &why), 1);
	CHECK_INT(f.archive, 2);
	CHECK_INT(f.offset, second);
	CHECK_INT(f.size, 8);
	CHECK(memcmp(f.data, "second!\n", 8) == 0);

	/* A later archive without the file leaves the earlier one's. */
	memset(&c, 0, sizeof(c));
	initrd(&c, "first\n");
	initrd(&c, NULL);
	CHECK_INT(find(&c, c.n, &f, &off, &why), 1);
	CHECK_INT(f.archive, 1);
	CHECK(memcmp(f.data, "first\n", 6) == 0);

	/* Within one archive too, the last entry of a name wins. */
	memset(&c, 0, sizeof(c));
	file(&c, "etc/cvminit/cvminit.conf", "one");
	file(&c, "etc/cvminit/cvminit.conf", "two!");
	trailer(&c);
	CHECK_INT(find(&c, c.n, &f, &off, &why), 1);
	CHECK_INT(f.size, 4);
}

TEST(cpio_truncated_and_malformed)
{
	struct cpio_buf c = {0};
	struct cpio_file f;
	size_t off, conf_at;
	const char *why;

	initrd(&c, "service containerd\n");
	conf_at = 240; /* its header; name at +110 (25 bytes), data at +136 */

	/* Cut inside a header, inside a name, inside the data, before the trailer. */
	CHECK_INT(find(&c, conf_at + 50, &f, &off, &why), -EBADMSG);
	CHECK_INT(off, conf_at);
	CHECK_STR(why, "truncated: an entry header is cut off");
	CHECK_INT(find(&c, conf_at + 115, &f, &off, &why), -EBADMSG);
	CHECK_INT(off, conf_at + 110);
	CHECK_STR(why, "truncated: an entry name is cut off");
	CHECK_INT(find(&c, conf_at + 140, &f, &off, &why), -EBADMSG);
	CHECK_INT(off, conf_at + 136);
	CHECK_STR(why, "truncated: an entry's data is cut off");
	CHECK_INT(find(&c, c.n - 124, &f, &off, &why), -EBADMSG);
	CHECK_STR(why, "truncated: the archive ends without its TRAILER!!! entry");
	CHECK_INT(off, c.n - 124);

	/* A header field that is not hex: the namesize field of the config's entry. */
	c.b[conf_at + 6 + 8 * 11] = 'x';
	CHECK_INT(find(&c, c.n, &f, &off, &why), -EBADMSG);
	CHECK_INT(off, conf_at + 6 + 8 * 11);
	CHECK_STR(why, "a header field is not 8 hex digits");
	c.b[conf_at + 6 + 8 * 11] = '0';

	/* Another format (odc "070707"). */
	memcpy(c.b, "070707", 6);
	CHECK_INT(find(&c, c.n, &f, &off, &why), -EBADMSG);
	CHECK_INT(off, 0);
	CHECK_STR(why, "not a newc cpio header (magic 070701)");

	/* Compressed: the kernel could unpack it, we cannot read it. */
	memcpy(c.b, "\x28\xb5\x2f\xfd", 4);
	CHECK_INT(find(&c, c.n, &f, &off, &why), -EOPNOTSUPP);
	CHECK_CONTAINS(why, "zstd-compressed");

	/* The path is a directory, or a hard link. */
	memset(&c, 0, sizeof(c));
	entry(&c, "etc/cvminit/cvminit.conf", 040755, 2, "", 0);
	trailer(&c);
	CHECK_INT(find(&c, c.n, &f, &off, &why), -EOPNOTSUPP);
	CHECK_STR(why, "the last entry for the path is not a regular file");
	memset(&c, 0, sizeof(c));
	entry(&c, "etc/cvminit/cvminit.conf", 0100644, 2, "x", 1);
	trailer(&c);
	CHECK_INT(find(&c, c.n, &f, &off, &why), -EOPNOTSUPP);
	CHECK_CONTAINS(why, "hard-linked");
	/* ".." in a name: refused rather than modelled. */
	CHECK_INT(cpio_find(c.b, c.n, "/etc/../etc/x", &f, &off, &why), -EINVAL);
}

/* --- PCR 15 ------------------------------------------------------------------------- */

#define ROOTHASH "e03fc42b6a6efea1382ef9f25dd9878be1a438050d4a57f538d4680dc9b087b9"
/* systemd's convention, written out by hand: the first and the last 128 bits. */
#define ROOT_DATA                                                                        \
	"verity:" ROOTHASH ":e03fc42b-6a6e-fea1-382e-f9f25dd9878b:"                      \
	"e1a43805-0d4a-57f5-38d4-680dc9b087b9:erofs"
#define STATE "luks2:3f0c1e2a-0000-4000-8000-000000000001:aes-xts-plain64:512:4096:none"

TEST(predict_root_data_format)
{
	char out[PREDICT_ROOT_MAX];
	const char *why;

	CHECK_INT(predict_root_data("roothash=" ROOTHASH " console=ttyS0", out,
				    sizeof(out), &why),
		  1);
	CHECK_STR(out, ROOT_DATA);
	CHECK_INT(predict_root_data("console=ttyS0", out, sizeof(out), &why), 0);
	CHECK_INT(predict_root_data("a roothash= b", out, sizeof(out), &why), -EINVAL);
	CHECK_INT(predict_root_data(
			  "roothash=E03FC42B6A6EFEA1382EF9F25DD9878BE1A438050D4A57"
			  "F538D4680DC9B087B9",
			  out, sizeof(out), &why),
		  -EINVAL);
	CHECK_CONTAINS(why, "64 lower-case hex digits");
	CHECK_INT(predict_root_data("roothash=e03fc42b", out, sizeof(out), &why),
		  -EINVAL);
	CHECK_INT(predict_root_data("roothash=" ROOTHASH " roothash=" ROOTHASH, out,
				    sizeof(out), &why),
		  -EEXIST);
	CHECK_CONTAINS(why, "more than once");
	/* Another key ending in roothash is not roothash=. */
	CHECK_INT(predict_root_data("xroothash=" ROOTHASH, out, sizeof(out), &why), 0);
}

TEST(predict_cmdline_as_the_stub_passes_it)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
		{"roothash=ab console=ttyS0\0\0\0", 29, "roothash=ab console=ttyS0"},
		{"  a=1\tb=2\n\n", 11, "a=1 b=2"},
		{"a\r\nb \x7f", 6, "a  b"},
		{"a\0b", 3, "a"},
		{" \n", 2, ""},
		{"x=\xc3\xa4", 4, "x=\xc3\xa4"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = predict_mangle_cmdline((const uint8_t *)cases[i].in,
						   cases[i].len);

		CHECK_STR(got, cases[i].want);
		free(got);
	}
}

/* H(H(H(start || H(d0)) || H(d1)) …) in bank alg, computed here from the extend rule. */
static void fold(uint16_t alg, const void *const *data, const size_t *lens, size_t n,
		 uint8_t *pcr)
{
	int size = digest_size(alg);
	uint8_t both[2 * DIGEST_MAX], d[DIGEST_MAX];

	memset(pcr, 0, (size_t)size);
	for (size_t i = 0; i < n; i++) {
		CHECK_INT(digest_compute(alg, data[i], lens[i], d), size);
		memcpy(both, pcr, (size_t)size);
		memcpy(both + size, d, (size_t)size);
		CHECK_INT(digest_compute(alg, both, 2 * (size_t)size, pcr), size);
	}
}

TEST(predict_pcr15_fold)
{
	static const uint16_t algs[] = {DIGEST_ALG_SHA256, DIGEST_ALG_SHA384};
	static const char cmdline[] = "roothash=" ROOTHASH " console=ttyS0,115200";
	static const uint8_t config[] = "service containerd\n\0binary";
	const void *data[] = {cmdline, config, ROOT_DATA, STATE};
	const size_t lens[] = {sizeof(cmdline) - 1, sizeof(config) - 1, strlen(ROOT_DATA),
			       strlen(STATE)};
	struct predict_pcr15 in = {
		.cmdline = cmdline,
		.config = config,
		.config_len = sizeof(config) - 1,
		.root = ROOT_DATA,
		.state = STATE,
	};
	struct eventlog log = {0};
	struct replay_pcrs p;
	uint8_t want[DIGEST_MAX];

	CHECK_INT(predict_pcr15_records(&in, algs, 2, &log), 4);
	for (size_t i = 0; i < 4; i++) {
		CHECK_INT(log.records[i].pcr, 15);
		CHECK_STR(log.records[i].event, predict_pcr15_events[i]);
		CHECK(log.records[i].event_type == NULL);
	}
	for (size_t b = 0; b < 2; b++) {
		int size = digest_size(algs[b]);

		/* After each record, as the table prints it. */
		for (size_t k = 1; k <= 4; k++) {
			struct eventlog prefix = {log.records, k};

			CHECK_INT(replay_log(&prefix, algs[b], &p), size);
			fold(algs[b], data, lens, k, want);
			CHECK(memcmp(p.v[15], want, (size_t)size) == 0);
		}
	}
	eventlog_free(&log);

	/* No config (zero bytes), no roothash=, no state: two records. */
	in = (struct predict_pcr15){.cmdline = "console=ttyS0"};
	CHECK_INT(predict_pcr15_records(&in, algs, 2, &log), 2);
	CHECK_INT(replay_log(&log, DIGEST_ALG_SHA256, &p), 32);
	{
		const void *d2[] = {"console=ttyS0", ""};
		const size_t l2[] = {13, 0};

		fold(DIGEST_ALG_SHA256, d2, l2, 2, want);
		CHECK(memcmp(p.v[15], want, 32) == 0);
	}
	eventlog_free(&log);
}

/* --- cvm-measure end to end ------------------------------------------------------- */

static char dir[] = "/tmp/cvm-measure-XXXXXX";

static void need_tool(void)
{
	if (access(CVM_MEASURE, X_OK) != 0)
		SKIP("%s not built (make build/cvm-measure)", CVM_MEASURE);
	if (!mkdtemp(dir))
		FAIL_AT("mkdtemp: %s", strerror(errno));
}

static void cleanup(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

static void write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f);
	CHECK(fwrite(data, 1, len, f) == len);
	CHECK(fclose(f) == 0);
}

static size_t read_back(const char *name, char *out, size_t cap)
{
	char path[256];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	CHECK(f);
	n = fread(out, 1, cap - 1, f);
	out[n] = '\0';
	fclose(f);
	return n;
}

/* Runs cvm-measure in dir; returns its exit status, stdout and stderr in out. */
static int run(char *out, size_t cap, const char *fmt, ...) _printf_(3, 4);
static int run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[4096], cwd[512], args[1536];
	size_t n = 0, k;
	va_list ap;
	FILE *p;
	int status;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	CHECK(getcwd(cwd, sizeof(cwd)));
	snprintf(cmd, sizeof(cmd), "cd %s && %s/%s %s 2>&1", dir, cwd, CVM_MEASURE, args);
	p = popen(cmd, "r");
	CHECK(p);
	while (n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0)
		n += k;
	out[n] = '\0';
	status = pclose(p);
	CHECK(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void hex_of_fold(uint16_t alg, const void *const *data, const size_t *lens,
			size_t n, char *hex)
{
	uint8_t v[DIGEST_MAX];

	fold(alg, data, lens, n, v);
	hex_encode(v, (size_t)digest_size(alg), hex);
}

/* The node's volume-key record: what init/state.c logs, written here from its rule. */
#define VK_LABEL "cvminit:volume-key:3f0c1e2a-0000-4000-8000-000000000001"
static const uint8_t vk_key[64] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void write_node_log(const char *name, const char *label, size_t copies)
{
	static const uint16_t algs[] = {DIGEST_ALG_SHA1, DIGEST_ALG_SHA256,
					DIGEST_ALG_SHA384, DIGEST_ALG_SHA512};
	struct eventlog_record r = {.pcr = 15,
				    .rtmr = -1,
				    .event = (char *)"cvminit:state",
				    .extended = true,
				    .n_digests = 4};
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = eventlog_open(path);
	CHECK(fd >= 0);
	for (size_t i = 0; i < 4; i++) {
		r.digests[i].alg = algs[i];
		r.digests[i].size = (uint16_t)digest_compute(
			algs[i], STATE, strlen(STATE), r.digests[i].buf);
	}
	CHECK_INT(eventlog_append(fd, &r), 0);
	r.event = (char *)label;
	r.event_type = (char *)"volume-key";
	for (size_t i = 0; i < 4; i++)
		CHECK_INT(digest_hmac(algs[i], vk_key, sizeof(vk_key), label,
				      strlen(label), r.digests[i].buf),
			  r.digests[i].size);
	for (size_t c = 0; c < copies; c++)
		CHECK_INT(eventlog_append(fd, &r), 0);
	close(fd);
}

/* The fold of the first n data, then the volume-key HMAC. */
static void hex_of_fold_vk(uint16_t alg, const void *const *data, const size_t *lens,
			   size_t n, char *hex)
{
	uint8_t v[DIGEST_MAX], h[DIGEST_MAX];

	fold(alg, data, lens, n, v);
	CHECK_INT(digest_hmac(alg, vk_key, sizeof(vk_key), VK_LABEL, strlen(VK_LABEL), h),
		  digest_size(alg));
	CHECK_INT(digest_extend(alg, v, h), digest_size(alg));
	hex_encode(v, (size_t)digest_size(alg), hex);
}

/* A UKI whose .initrd is a real newc archive with a config, its .cmdline with roothash=
 * (and the NUL and newline ukify-style builds leave). */
static struct cpio_buf uki_initrd;
static size_t make_uki(const char *config)
{
	static uint8_t buf[32768];
	static const char cmdline[] = "roothash=" ROOTHASH " console=ttyS0,115200\n";
	size_t len;

	memset(&uki_initrd, 0, sizeof(uki_initrd));
	initrd(&uki_initrd, config);
	const struct sec s[] = {
		{".osrel", 5, 16, "ID=x\n", 5},
		{".cmdline", sizeof(cmdline), 512, cmdline, sizeof(cmdline)},
		{".linux", KERNEL_PE_LEN, KERNEL_PE_LEN, (const char *)kernel_pe,
		 KERNEL_PE_LEN},
		{".initrd", (uint32_t)uki_initrd.n, (uint32_t)(uki_initrd.n + 15) & ~15u,
		 (const char *)uki_initrd.b, uki_initrd.n},
	};
	len = build_pe(buf, sizeof(buf), s, ARRAY_SIZE(s));
	write_file("uki.efi", buf, len);
	return len;
}

TEST(predict_pcr15_from_the_uki_and_json)
{
	static const char conf[] = "service containerd\n";
	static const char cmdline[] = "roothash=" ROOTHASH " console=ttyS0,115200";
	const void *data[] = {cmdline, conf, ROOT_DATA, STATE};
	const size_t lens[] = {sizeof(cmdline) - 1, sizeof(conf) - 1, strlen(ROOT_DATA),
			       strlen(STATE)};
	char out[16384], json[2048], want[2048], h256[4][HEX_LEN], h384[HEX_LEN];

	need_tool();
	make_uki(conf);
	hex_of_fold(DIGEST_ALG_SHA256, data, lens, 1, h256[0]);
	hex_of_fold(DIGEST_ALG_SHA256, data, lens, 3, h256[1]);
	hex_of_fold(DIGEST_ALG_SHA256, data, lens, 4, h256[2]);
	hex_of_fold_vk(DIGEST_ALG_SHA256, data, lens, 4, h256[3]);

	/* Without the state: no PCR 15 in the JSON, a note; the sealing value (after
	 * cvminit:root) printed. */
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --json m.json"), 0);
	CHECK_CONTAINS(out, "cmdline \"roothash=" ROOTHASH " console=ttyS0,115200\"");
	CHECK_CONTAINS(out, "config 19 bytes: /etc/cvminit/cvminit.conf in the UKI's "
			    ".initrd (archive 1");
	CHECK_CONTAINS(out, "root " ROOT_DATA "\n");
	snprintf(want, sizeof(want), "PCR 15 sha256 cvminit:cmdline %s\n", h256[0]);
	CHECK_CONTAINS(out, want);
	snprintf(want, sizeof(want), "PCR 15 sha256 cvminit:root %s\n", h256[1]);
	CHECK_CONTAINS(out, want);
	snprintf(want, sizeof(want), "PCR 15 sha256 sealing %s\n", h256[1]);
	CHECK_CONTAINS(out, want);
	CHECK_CONTAINS(out, "cvm-measure: note: PCR 15's value left out of m.json");
	CHECK_CONTAINS(out, "volume-key: not predicted");
	CHECK_CONTAINS(out, "PCR 11 sha256 shutdown ");
	read_back("m.json", json, sizeof(json));
	/* PCR 15 without a value: only the image-wide records. */
	CHECK(strstr(json, "\"15\": {\n    \"warnOnly\": false,\n    \"replay\""));
	CHECK(!strstr(json, "true"));
	CHECK(strstr(json, "\"11\": {"));

	/* With the state alone: its row, still no PCR 15 in the JSON (per node). */
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --json m.json --state %s",
		      STATE),
		  0);
	snprintf(want, sizeof(want), "PCR 15 sha256 cvminit:state %s\n", h256[2]);
	CHECK_CONTAINS(out, want);
	snprintf(want, sizeof(want), "PCR 15 sha256 sealing %s\n", h256[1]);
	CHECK_CONTAINS(out, want);
	CHECK_CONTAINS(out, "PCR 15's value left out of m.json");
	read_back("m.json", json, sizeof(json));
	/* The state is per node: not among the image-wide records, named in perNode. */
	CHECK(strstr(json, "\"15\": {\n    \"warnOnly\": false,\n    \"replay\""));
	CHECK(strstr(json, "\"event\": \"cvminit:root\""));
	CHECK(!strstr(json, "\"event\": \"cvminit:state\""));
	CHECK(strstr(json, "\"perNode\": [\n      \"cvminit:state\""));

	/* With the node's record: PCR 15 after it, the digests as logged, no note. */
	write_node_log("node.log", VK_LABEL, 1);
	CHECK_INT(
		run(out, sizeof(out),
		    "predict --uki uki.efi --json m.json --state %s --node-log node.log",
		    STATE),
		0);
	CHECK_CONTAINS(out, "volume-key " VK_LABEL " (pinned: the digests logged in "
			    "node.log)");
	snprintf(want, sizeof(want), "PCR 15 sha256 " VK_LABEL " %s\n", h256[3]);
	CHECK_CONTAINS(out, want);
	snprintf(want, sizeof(want), "PCR 15 sha256 sealing %s\n", h256[1]);
	CHECK_CONTAINS(out, want);
	CHECK(!strstr(out, "left out"));
	read_back("m.json", json, sizeof(json));
	CHECK(!strstr(json, "true"));
	CHECK_CONTAINS(json, h256[3]);
	/* Constellation's shape: string keys, expected and warnOnly, nothing else. */
	CHECK(startswith(json, "{\n  \"4\": {\n    \"expected\": \""));
	CHECK_CONTAINS(json, "\",\n    \"warnOnly\": false\n  },\n  \"11\": {\n    "
			     "\"expected\": \"");
	CHECK_CONTAINS(json, "\",\n    \"warnOnly\": false\n  },\n  \"15\": {\n    "
			     "\"expected\": \"");

	/* sha384 for TDX comparisons: 96 hex digits. */
	hex_of_fold_vk(DIGEST_ALG_SHA384, data, lens, 4, h384);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --json m.json --state %s --bank sha384 "
		      "--banks sha256 --node-log node.log",
		      STATE),
		  0);
	read_back("m.json", json, sizeof(json));
	snprintf(want, sizeof(want), "\"15\": {\n    \"expected\": \"%s\"", h384);
	CHECK_CONTAINS(json, want);

	/* --cmdline and --config override the UKI's. */
	CHECK_INT(
		run(out, sizeof(out),
		    "predict --uki uki.efi --cmdline 'console=ttyS0' --config /dev/null"),
		0);
	CHECK_CONTAINS(out, "root: no roothash= on the command line");
	{
		const void *d2[] = {"console=ttyS0", ""};
		const size_t l2[] = {13, 0};

		hex_of_fold(DIGEST_ALG_SHA256, d2, l2, 2, h256[0]);
		snprintf(want, sizeof(want), "PCR 15 sha256 cvminit:config %s\n",
			 h256[0]);
		CHECK_CONTAINS(out, want);
		CHECK(!strstr(out, "PCR 15 sha256 cvminit:root"));
	}
	cleanup();
}

TEST(predict_uki_without_config_and_bad_inputs)
{
	static const char cmdline[] = "roothash=" ROOTHASH " console=ttyS0,115200";
	const void *data[] = {cmdline, ""};
	const size_t lens[] = {sizeof(cmdline) - 1, 0};
	char out[16384], want[256], h[HEX_LEN];

	need_tool();
	make_uki(NULL);
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi"), 0);
	CHECK_CONTAINS(out, "config 0 bytes: no /etc/cvminit/cvminit.conf in the UKI's "
			    ".initrd");
	hex_of_fold(DIGEST_ALG_SHA256, data, lens, 2, h);
	snprintf(want, sizeof(want), "PCR 15 sha256 cvminit:config %s\n", h);
	CHECK_CONTAINS(out, want);

	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --state luks2:x"), 2);
	CHECK_CONTAINS(out, "--state luks2:x: is not luks2:<uuid>:");
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --state a --state-from b"),
		  2);
	CHECK_CONTAINS(out, "exclude each other");
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --bank sha1"), 2);
	CHECK_CONTAINS(out, "--bank sha1: want sha256 or sha384");
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --config missing.conf"),
		  2);
	CHECK_CONTAINS(out, "--config missing.conf: No such file or directory");
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --cmdline 'roothash=12'"),
		  2);
	CHECK_CONTAINS(out, "--cmdline: roothash= is not 64 lower-case hex digits");
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --state-from uki.efi"), 2);
	CHECK_CONTAINS(out, "--state-from uki.efi: no valid LUKS2 header");

	/* The node's record: only after a state, one, naming the state's UUID. */
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --node-log node.log"), 2);
	CHECK_CONTAINS(out, "--node-log needs --state or --state-from");
	write_node_log("none.log", VK_LABEL, 0);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --state %s --node-log none.log", STATE),
		  2);
	CHECK_CONTAINS(out, "--node-log none.log: the log has no extended PCR 15 record");
	write_node_log("two.log", VK_LABEL, 2);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --state %s --node-log two.log", STATE),
		  2);
	CHECK_CONTAINS(out, "more than one extended volume-key record");
	write_node_log("other.log",
		       "cvminit:volume-key:3f0c1e2a-0000-4000-8000-000000000002", 1);
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --state %s --node-log other.log", STATE),
		  2);
	CHECK_CONTAINS(out, "names another LUKS2 UUID than the state");
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --state %s --node-log missing.log", STATE),
		  2);
	CHECK_CONTAINS(out, "--node-log missing.log: No such file or directory");
	cleanup();
}

/* --- the LUKS2 state identity ----------------------------------------------------- */

TEST(predict_state_from_a_luks2_image)
{
	static const char uuid[] = "3f0c1e2a-0000-4000-8000-000000000001";
	struct crypt_params_luks2 params = {.sector_size = 4096};
	struct crypt_pbkdf_type pbkdf = {.type = CRYPT_KDF_PBKDF2,
					 .hash = "sha256",
					 .iterations = 1000,
					 .flags = CRYPT_PBKDF_NO_BENCHMARK};
	struct crypt_device *cd;
	char path[256], state[PREDICT_STATE_MAX], out[8192];
	uint8_t key[64] = {1, 2, 3};
	const char *why;
	int fd;

	need_tool();
	snprintf(path, sizeof(path), "%s/state.img", dir);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, 32 << 20) == 0); /* sparse */
	close(fd);
	CHECK_INT(crypt_init(&cd, path), 0);
	CHECK_INT(crypt_set_pbkdf_type(cd, &pbkdf), 0);
	/* No data is encrypted: format and keyslot work on a plain file, without dm. */
	CHECK_INT(crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", uuid, (char *)key,
			       64, &params),
		  0);
	CHECK(crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, (char *)key, 64, "k",
					      1) >= 0);
	crypt_free(cd);

	CHECK_INT(predict_state_from_luks(path, state, sizeof(state), &why), 0);
	CHECK_STR(state, "luks2:3f0c1e2a-0000-4000-8000-000000000001:aes-xts-plain64:512:"
			 "4096:none");
	CHECK_INT(predict_state_check(state, &why), 0);

	CHECK_INT(run(out, sizeof(out), "predict --uki x --state-from state.img"), 2);
	make_uki(NULL);
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --state-from state.img"),
		  0);
	CHECK_CONTAINS(out, "state luks2:3f0c1e2a-0000-4000-8000-000000000001:aes-xts-"
			    "plain64:512:4096:none (the LUKS2 header of state.img)");
	CHECK_CONTAINS(out, "PCR 15 sha256 cvminit:state ");

	/* Not LUKS2 at all. */
	snprintf(path, sizeof(path), "%s/uki.efi", dir);
	CHECK_INT(predict_state_from_luks(path, state, sizeof(state), &why), -EINVAL);
	CHECK_CONTAINS(why, "no valid LUKS2 header");
	cleanup();
}

/* A cvminit token of the right form (as tests/unit/test_luks.c makes one: the
 * validator checks the shape, a TPM would check the rest). */
static char *token_json(void)
{
	struct sealed s = {.pcr_mask = (1u << 7) | (1u << 11) | (1u << 15)};
	uint8_t *p = s.blob;
	char *json;

	for (int i = 0; i < 32; i++)
		s.policy[i] = (uint8_t)(0xa0 + i);
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

/* Replaces from with to in the JSON of both header copies and fixes their checksums. */
static void edit_header(uint8_t *a, const char *from, const char *to)
{
	for (int c = 0; c < 2; c++) {
		uint8_t *copy = a + c * LUKS2_HDR_SIZE, sum[32];
		char *json = (char *)copy + LUKS2_BIN_SIZE, *at = strstr(json, from);
		static char buf[LUKS2_HDR_SIZE];

		CHECK(at);
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - json), json, to,
			 at + strlen(from));
		memset(json, 0, LUKS2_HDR_SIZE - LUKS2_BIN_SIZE);
		memcpy(json, buf, strlen(buf));
		memset(copy + 448, 0, 64);
		luks2_checksum(copy, sum);
		memcpy(copy + 448, sum, 32);
	}
}

/* What cvm-measure reads with libcryptsetup is byte for byte what cvminit measures
 * (init/luks.c luks2_identity() on its own validated copy), with and without
 * dm-integrity. */
TEST(predict_state_equals_cvminit_identity)
{
	struct luks2_hdr h;
	char cmd[2048], path[256], tok[256], mine[PREDICT_STATE_MAX], theirs[160],
		err[300];
	const char *why;
	uint8_t *a = calloc(1, LUKS2_AREA_SIZE);
	char *json = token_json();
	FILE *f;
	int fd;

	if (access("/usr/sbin/cryptsetup", X_OK) != 0)
		SKIP("cryptsetup is not installed (apt-get install cryptsetup-bin)");
	need_tool();
	snprintf(path, sizeof(path), "%s/state.img", dir);
	snprintf(tok, sizeof(tok), "%s/token.json", dir);
	f = fopen(tok, "w");
	CHECK(f && fputs(json, f) >= 0 && fclose(f) == 0);
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 20M %s && head -c 64 /dev/urandom > %s/key && "
		 "cryptsetup luksFormat -q --type luks2 --cipher aes-xts-plain64 "
		 "--key-size "
		 "512 --sector-size 4096 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
		 "--hash sha256 --key-file %s/key %s && "
		 "cryptsetup token import --token-id 0 --json-file %s %s",
		 path, dir, dir, path, tok, path);
	CHECK(system(cmd) == 0);

	fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	CHECK_INT(pread(fd, a, LUKS2_AREA_SIZE, 0), LUKS2_AREA_SIZE);
	CHECK_INT(luks2_inspect(a, LUKS2_AREA_SIZE, &h, err, sizeof(err)), 1);
	CHECK(luks2_identity(&h, theirs, sizeof(theirs)) > 0);
	CHECK_INT(predict_state_from_luks(path, mine, sizeof(mine), &why), 0);
	CHECK_STR(mine, theirs);
	CHECK_CONTAINS(mine, ":aes-xts-plain64:512:4096:none");

	/* The same header with hmac(sha256) integrity: a 96-byte volume key, of which
	 * the cipher's 512 bits are named. */
	edit_header(a, "\"sector_size\":4096",
		    "\"sector_size\":4096,\"integrity\":{\"type\":\"hmac(sha256)\","
		    "\"journal_encryption\":\"none\",\"journal_integrity\":\"none\"}");
	edit_header(a, "\"type\":\"luks2\",\"key_size\":64",
		    "\"type\":\"luks2\",\"key_size\":96");
	CHECK_INT(pwrite(fd, a, LUKS2_AREA_SIZE, 0), LUKS2_AREA_SIZE);
	close(fd);
	CHECK_INT(luks2_inspect(a, LUKS2_AREA_SIZE, &h, err, sizeof(err)), 1);
	CHECK(luks2_identity(&h, theirs, sizeof(theirs)) > 0);
	if (predict_state_from_luks(path, mine, sizeof(mine), &why) < 0)
		FAIL_AT("predict_state_from_luks: %s", why);
	CHECK_STR(mine, theirs);
	CHECK_CONTAINS(mine, ":aes-xts-plain64:512:4096:hmac(sha256)");
	free(json);
	free(a);
	cleanup();
}

/* --- the firmware's binary TCG log ------------------------------------------------ */

struct bin {
	uint8_t b[8192];
	size_t n;
};

static void b_put(struct bin *l, const void *p, size_t n)
{
	CHECK(l->n + n <= sizeof(l->b));
	memcpy(l->b + l->n, p, n);
	l->n += n;
}

static void b_u16(struct bin *l, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	b_put(l, x, 2);
}

static void b_u32(struct bin *l, uint32_t v)
{
	b_u16(l, (uint16_t)v);
	b_u16(l, (uint16_t)(v >> 16));
}

/* The header: a SHA1-format EV_NO_ACTION event holding "Spec ID Event03" with sha1,
 * sha256 and SM3 (0x0012, which we cannot compute and skip). */
static void spec_header(struct bin *l)
{
	uint8_t zero[20] = {0};

	b_u32(l, 0);
	b_u32(l, TCGLOG_EV_NO_ACTION);
	b_put(l, zero, 20);
	b_u32(l, 16 + 4 + 4 + 4 + 3 * 4 + 1);
	b_put(l, "Spec ID Event03", 16);
	b_u32(l, 0);		 /* platformClass */
	b_put(l, "\0\2\0\2", 4); /* version 2.0 errata 0, uintnSize 2 (64 bit) */
	b_u32(l, 3);
	b_u16(l, DIGEST_ALG_SHA1);
	b_u16(l, 20);
	b_u16(l, DIGEST_ALG_SHA256);
	b_u16(l, 32);
	b_u16(l, 0x0012);
	b_u16(l, 32);
	b_put(l, "", 1); /* vendorInfoSize */
}

/* A TCG_PCR_EVENT2 whose digests are those of data (sha1, sha256, and 32 bytes of 0x5a
 * for SM3), unless digest_data overrides what is hashed. */
static void event2(struct bin *l, uint32_t pcr, uint32_t type, const void *data,
		   size_t len, const void *digest_data, size_t digest_len)
{
	uint8_t d[DIGEST_MAX], sm3[32];

	if (!digest_data) {
		digest_data = data;
		digest_len = len;
	}
	memset(sm3, 0x5a, sizeof(sm3));
	b_u32(l, pcr);
	b_u32(l, type);
	b_u32(l, 3);
	b_u16(l, DIGEST_ALG_SHA1);
	digest_compute(DIGEST_ALG_SHA1, digest_data, digest_len, d);
	b_put(l, d, 20);
	b_u16(l, 0x0012);
	b_put(l, sm3, 32);
	b_u16(l, DIGEST_ALG_SHA256);
	digest_compute(DIGEST_ALG_SHA256, digest_data, digest_len, d);
	b_put(l, d, 32);
	b_u32(l, (uint32_t)len);
	b_put(l, data, len);
}

/* "name" as UTF-16LE with its NUL, into out; returns the byte count. */
static size_t utf16(const char *s, uint8_t *out)
{
	size_t n = 0;

	for (; *s; s++) {
		out[n++] = (uint8_t)*s;
		out[n++] = 0;
	}
	out[n++] = 0;
	out[n++] = 0;
	return n;
}

/* A firmware log: StartupLocality 3, a CRTM version (PCR 0), SecureBoot (PCR 7), a
 * separator (PCR 4), then unused log area. Returns the byte offset of the separator. */
static size_t firmware_log(struct bin *l)
{
	uint8_t locality[17] = "StartupLocality", version[64], var[64] = {0},
		sep[4] = {0};
	size_t n, at;

	spec_header(l);
	locality[16] = 3;
	event2(l, 0, TCGLOG_EV_NO_ACTION, locality, 17, NULL, 0);
	n = utf16("edk2 stable", version);
	event2(l, 0, 0x00000008, version, n, NULL, 0);
	/* UEFI_VARIABLE_DATA: GUID, 10 characters, 1 byte of data, "SecureBoot", 1. */
	var[16] = 10;
	var[24] = 1;
	n = 32 + utf16("SecureBoot", var + 32) - 2;
	var[n++] = 1;
	event2(l, 7, 0x80000001, var, n, NULL, 0);
	at = l->n;
	event2(l, 4, 0x00000004, sep, 4, NULL, 0);
	memset(l->b + l->n, 0xff, 64);
	l->n += 64;
	return at;
}

TEST(tcglog_parses_a_crypto_agile_log)
{
	struct bin l = {0};
	struct eventlog log;
	struct replay_pcrs p;
	unsigned locality;
	size_t off, sep_at;
	const char *why;
	uint8_t want[32], d[32];

	sep_at = firmware_log(&l);
	CHECK_INT(tcglog_parse(l.b, l.n, &log, &locality, &off, &why), 3);
	CHECK_INT(locality, 3);
	CHECK_INT(log.records[0].pcr, 0);
	CHECK_STR(log.records[0].event_type, "EV_S_CRTM_VERSION");
	CHECK_STR(log.records[0].event, "edk2 stable");
	CHECK_INT(log.records[0].recnum, 2);	/* 0: the header, 1: StartupLocality */
	CHECK_INT(log.records[0].n_digests, 2); /* SM3 skipped */
	CHECK_STR(log.records[1].event_type, "EV_EFI_VARIABLE_DRIVER_CONFIG");
	CHECK_STR(log.records[1].event, "SecureBoot");
	CHECK_STR(log.records[2].event_type, "EV_SEPARATOR");
	CHECK_STR(log.records[2].event, "4 bytes");
	CHECK_INT(log.records[2].offset, sep_at);

	/* PCR 0 starts at 00…03 (locality 3): H(00…03 || H(version)). */
	CHECK_INT(replay_reset(&p, DIGEST_ALG_SHA256, locality), 32);
	CHECK_INT(replay_apply(&log, &p), 32);
	{
		uint8_t version[64];
		size_t n = utf16("edk2 stable", version);
		uint8_t both[64] = {0};

		both[31] = 3;
		digest_compute(DIGEST_ALG_SHA256, version, n, d);
		memcpy(both + 32, d, 32);
		digest_compute(DIGEST_ALG_SHA256, both, 64, want);
		CHECK(memcmp(p.v[0], want, 32) == 0);
	}
	eventlog_free(&log);
}

/* tpm2-tools' tpm2_eventlog, an independent reader, folds the same log to the same
 * PCRs. (Without StartupLocality: Debian 12's tpm2-tools 5.4 extends that EV_NO_ACTION
 * event into PCR 0, which the PC Client spec says never happens; fixed upstream in
 * tpm2-tools PR 3242.) */
TEST(tcglog_agrees_with_tpm2_eventlog)
{
	struct bin l = {0};
	struct eventlog log;
	struct replay_pcrs p;
	unsigned locality;
	size_t off, n_checked = 0;
	const char *why;
	char path[300], cmd[400], line[256], bank[16] = "";
	FILE *f;

	if (access("/usr/bin/tpm2_eventlog", X_OK) != 0)
		SKIP("tpm2_eventlog is not installed (apt-get install tpm2-tools)");
	need_tool();
	firmware_log(&l);
	/* Drop the unused log area (tpm2_eventlog reads 0xff… as one more event; the
	 * kernel's binary_bios_measurements has none) and the StartupLocality event:
	 * after the header, 12 bytes, three digests, the size and 17 bytes of data. */
	l.n -= 64;
	{
		size_t at = 32 + 41, len = 12 + (2 + 20) + (2 + 32) + (2 + 32) + 4 + 17;

		memmove(l.b + at, l.b + at + len, l.n - at - len);
		l.n -= len;
	}
	write_file("bios.bin", l.b, l.n);
	CHECK_INT(tcglog_parse(l.b, l.n, &log, &locality, &off, &why), 3);
	CHECK_INT(locality, 0);

	snprintf(path, sizeof(path), "%s/bios.bin", dir);
	snprintf(cmd, sizeof(cmd), "tpm2_eventlog %s 2>/dev/null", path);
	f = popen(cmd, "r");
	CHECK(f);
	/* "pcrs:", then "  sha256:", then "    0  : 0x<hex>" lines. */
	while (fgets(line, sizeof(line), f)) {
		unsigned pcr;
		char hex[HEX_LEN], want[HEX_LEN];
		int alg;

		char word[16];

		/* A bank line, "  sha256:" (or "  sm3_256:", which we skip). */
		if (line[2] >= 'a' && line[2] <= 'z' &&
		    sscanf(line, "  %15[a-z0-9_]:", word) == 1) {
			snprintf(bank, sizeof(bank), "%s", word);
			continue;
		}
		if (sscanf(line, "    %u : 0x%128s", &pcr, hex) != 2)
			continue;
		alg = digest_alg_from_name(bank);
		if (alg < 0)
			continue;
		CHECK(pcr < 24);
		CHECK_INT(replay_log(&log, (uint16_t)alg, &p),
			  digest_size((uint16_t)alg));
		hex_encode(p.v[pcr], p.size, want);
		for (char *c = hex; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
		CHECK_STR(hex, want);
		n_checked++;
	}
	pclose(f);
	CHECK_INT(n_checked, 2 * 3); /* PCRs 0, 4, 7 in sha1 and sha256 */
	eventlog_free(&log);
	cleanup();
}

TEST(tcglog_malformed)
{
	struct bin l = {0};
	struct eventlog log;
	unsigned locality;
	size_t off, sep_at;
	const char *why;

	sep_at = firmware_log(&l);
	/* Cut inside the separator's digests, and inside its data. */
	CHECK_INT(tcglog_parse(l.b, sep_at + 20, &log, &locality, &off, &why), -EBADMSG);
	CHECK_INT(off, sep_at + 12); /* the sha1 TPMT_HA */
	CHECK_STR(why, "truncated: an event's digest is cut off");
	eventlog_free(&log);
	CHECK_INT(tcglog_parse(l.b, l.n - 64 - 2, &log, &locality, &off, &why), -EBADMSG);
	CHECK_STR(why, "truncated: an event's data is cut off");
	eventlog_free(&log);
	/* An algorithm the header did not declare. */
	l.b[sep_at + 12] = 0x0d; /* sha1 → sha512 */
	CHECK_INT(tcglog_parse(l.b, l.n, &log, &locality, &off, &why), -EBADMSG);
	CHECK_INT(off, sep_at + 12);
	CHECK_CONTAINS(why, "not in the Spec ID event's table");
	eventlog_free(&log);
	/* A TCG 1.2 (SHA1-only) log. */
	memcpy(l.b + 32, "Spec ID Event02", 16);
	CHECK_INT(tcglog_parse(l.b, l.n, &log, &locality, &off, &why), -EBADMSG);
	CHECK_INT(off, 32);
	CHECK_CONTAINS(why, "not a crypto-agile");
	eventlog_free(&log);
	CHECK_INT(tcglog_parse(l.b, 10, &log, &locality, &off, &why), -EBADMSG);
	CHECK_CONTAINS(why, "shorter than the log's header");
	eventlog_free(&log);
}

/* cvminit's log next to the firmware's: the stub's PCR 11 events in the firmware log
 * (as EV_IPL), cvminit's phases and PCR 15 records in its own. */
TEST(verify_firmware_log_with_cvminit_log)
{
	static const uint16_t algs[] = {DIGEST_ALG_SHA1, DIGEST_ALG_SHA256};
	struct bin l = {0};
	struct eventlog stub = {0}, fw, all = {0};
	struct pe_file pe;
	struct replay_pcrs p;
	uint8_t uki[32768];
	unsigned locality;
	size_t len, off, tamper_at = 0;
	const char *why;
	char out[16384], pcrs[2048], hex0[HEX_LEN], hex11[HEX_LEN], hex15[HEX_LEN],
		path[300];
	int fd;

	need_tool();
	len = make_uki("service containerd\n");
	CHECK(read_back("uki.efi", (char *)uki, sizeof(uki)) == len);
	CHECK_INT(pe_parse(uki, len, &pe, &off, &why), 0);
	CHECK_INT(predict_stub_records(&pe, algs, 2, &stub), 8);

	/* The firmware log: its own events, then the stub's as EV_IPL with their
	 * description as UTF-16 (the digests are those of the measured data). */
	firmware_log(&l);
	l.n -= 64;
	for (size_t i = 0; i < stub.n; i++) {
		uint8_t desc[128];
		size_t n = utf16(stub.records[i].event, desc);
		const struct pe_section *s;
		const uint8_t *data;
		size_t dlen;
		const char *name = strchr(stub.records[i].event, ':') + 1;

		s = pe_find(&pe, name);
		CHECK(s);
		data = pe_section_file_data(&pe, s, &dlen);
		if (i == 5)
			tamper_at = l.n;
		if (i % 2 == 0)
			event2(&l, 11, TCGLOG_EV_IPL, desc, n, name, strlen(name) + 1);
		else
			event2(&l, 11, TCGLOG_EV_IPL, desc, n, data, s->virtual_size);
	}
	write_file("bios.bin", l.b, l.n);

	/* cvminit's log. */
	snprintf(path, sizeof(path), "%s/measure.log", dir);
	fd = eventlog_open(path);
	CHECK(fd >= 0);
	{
		struct eventlog mine = {0};
		struct predict_pcr15 in = {.cmdline = "console=ttyS0"};

		CHECK_INT(predict_phase_record("enter-initrd", algs, 2, &mine), 0);
		CHECK_INT(predict_pcr15_records(&in, algs, 2, &mine), 2);
		for (size_t i = 0; i < mine.n; i++)
			CHECK_INT(eventlog_append(fd, &mine.records[i]), 0);
		eventlog_free(&mine);
	}
	close(fd);

	/* What the TPM holds: the replay of both, done here through the library. */
	CHECK(tcglog_parse(l.b, l.n, &fw, &locality, &off, &why) > 0);
	CHECK_INT(eventlog_read(path, &all, &off), 3);
	CHECK_INT(replay_reset(&p, DIGEST_ALG_SHA256, locality), 32);
	CHECK_INT(replay_apply(&fw, &p), 32);
	CHECK_INT(replay_apply(&all, &p), 32);
	hex_encode(p.v[0], 32, hex0);
	hex_encode(p.v[11], 32, hex11);
	hex_encode(p.v[15], 32, hex15);
	snprintf(pcrs, sizeof(pcrs), "0: sha256:%s\n11: sha256:%s\n15: sha256:%s\n", hex0,
		 hex11, hex15);
	write_file("ok.pcrs", pcrs, strlen(pcrs));

	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log bios.bin --log measure.log --pcrs ok.pcrs "
		      "--uki uki.efi"),
		  0);
	CHECK_CONTAINS(out,
		       "PCR 11 systemd-stub events: the 8 in bios.bin are uki.efi's");
	CHECK_CONTAINS(out, "PCR 0 sha256: match");
	CHECK_CONTAINS(out, "PCR 11 sha256: match");
	CHECK_CONTAINS(out, "PCR 15 sha256: match");

	/* Without cvminit's log PCR 11 has only the stub's events and PCR 15 none: both
	 * differ, and the tool says which way. */
	CHECK_INT(run(out, sizeof(out), "verify --firmware-log bios.bin --pcrs ok.pcrs"),
		  1);
	CHECK_CONTAINS(out, "PCR 0 sha256: match");
	CHECK_CONTAINS(out, "PCR 11 sha256: MISMATCH");
	CHECK_CONTAINS(out, "no prefix of PCR 11's 8 events reproduces the value");
	CHECK_CONTAINS(out, "its first event: event 5 at byte offset ");
	CHECK_CONTAINS(out, "of bios.bin: EV_IPL \"uki-section-name:.linux\"");
	CHECK_CONTAINS(out, "no event explains it: PCR 15 has no events in the logs");

	/* The firmware log says the stub measured another .cmdline: named. */
	l.b[tamper_at + 12 + 2] ^= 1; /* its sha1 digest */
	write_file("bad.bin", l.b, l.n);
	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log bad.bin --log measure.log --pcrs ok.pcrs "
		      "--uki uki.efi"),
		  1);
	CHECK_CONTAINS(out, "PCR 11 systemd-stub events: MISMATCH");
	CHECK_CONTAINS(out, "\"uki-section:.cmdline\"");
	CHECK_CONTAINS(out, "is not uki.efi's uki-section:.cmdline");

	/* A truncated firmware log is an input error naming the offset. */
	write_file("cut.bin", l.b, 100);
	CHECK_INT(run(out, sizeof(out), "verify --firmware-log cut.bin --pcrs ok.pcrs"),
		  2);
	CHECK_CONTAINS(out, "cut.bin: byte offset ");

	/* The firmware's PCRs in measurements.json: warnOnly, the values of this log. */
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --firmware-log bios.bin --json fw.json"),
		  0);
	{
		char json[8192], want[256];

		read_back("fw.json", json, sizeof(json));
		snprintf(
			want, sizeof(want),
			"\"0\": {\n    \"expected\": \"%s\",\n    \"warnOnly\": true\n  }",
			hex0);
		CHECK_CONTAINS(json, want);
		CHECK(strstr(json, "\"4\": {\n    \"expected\": ") != NULL);
		CHECK(!strstr(json, "\"11\": {\n    \"expected\": \"0000"));
	}
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --firmware-log cut.bin --json fw.json"),
		  2);

	/* The log's content is what its digests are the hash of: the command line text
	 * changed (digests kept, so every PCR still matches) is a mismatch naming it. */
	{
		char logbuf[8192], *at;
		size_t n = read_back("measure.log", logbuf, sizeof(logbuf) - 1);

		logbuf[n] = '\0';
		at = strstr(logbuf, "\"data\":\"console=ttyS0\"");
		CHECK(at != NULL);
		at[strlen("\"data\":\"console=ttyS")] = '1';
		write_file("tampered.log", logbuf, n);
	}
	CHECK_INT(run(out, sizeof(out),
		      "verify --firmware-log bios.bin --log tampered.log --pcrs ok.pcrs "
		      "--uki uki.efi"),
		  1);
	CHECK_CONTAINS(out, "PCR 15 sha256: match");
	CHECK_CONTAINS(out, "content: record 1 at byte offset ");
	CHECK_CONTAINS(out,
		       "of tampered.log: PCR 15 \"cvminit:cmdline\": MISMATCH: its sha1 "
		       "digest is not the digest of its content (13 bytes)");
	eventlog_free(&stub);
	eventlog_free(&fw);
	eventlog_free(&all);
	pe_free(&pe);
	cleanup();
}

/* --- verify --tpm against a real swtpm ---------------------------------------------- */

TEST(verify_tpm_against_swtpm)
{
	const char *conf = swtpm_start();
	struct measurer *m;
	struct tpm *t;
	struct digest extra[2];
	char path[300], out[16384];

	need_tool();
	snprintf(path, sizeof(path), "%s/measure.log", dir);
	/* What cvminit does at boot, through the same measure() over swtpm. */
	CHECK_INT(measurer_open_tpm("swtpm", conf, path, &m), 0);
	CHECK_INT(measure(m, 11, "enter-initrd", "enter-initrd", 12), 0);
	CHECK_INT(measure(m, 15, "cvminit:cmdline", "console=ttyS0", 13), 0);
	CHECK_INT(measure(m, 15, "cvminit:config", "", 0), 0);
	CHECK_INT(measure(m, 15, "cvminit:root", ROOT_DATA, strlen(ROOT_DATA)), 0);
	measurer_close(m);

	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --tpm swtpm:%s", conf),
		  0);
	CHECK_CONTAINS(out, "PCR 15 sha256: match");
	CHECK_CONTAINS(out, "PCR 11 sha256: match");
	CHECK_CONTAINS(out, "PCR 15 sha384: match");

	/* One extend nobody logged. */
	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	extra[0] = (struct digest){.alg = DIGEST_ALG_SHA256, .size = 32};
	extra[1] = (struct digest){.alg = DIGEST_ALG_SHA1, .size = 20};
	CHECK_INT(tpm_pcr_extend(t, 15, extra, 2), 0);
	tpm_close(t);
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --tpm swtpm:%s", conf),
		  1);
	CHECK_CONTAINS(out, "PCR 15 sha256: MISMATCH");
	CHECK_CONTAINS(out, "  expected (replay): ");
	CHECK_CONTAINS(out, "  got (TPM):         ");
	/* Some prefix of PCR 11's events reproduces its value, none of PCR 15's. */
	CHECK_CONTAINS(out, "no prefix of PCR 15's 3 events reproduces the value");
	CHECK_CONTAINS(out, "first event: record 1 at byte offset ");
	CHECK_CONTAINS(out, "PCR 11 sha256: match");
	/* --pcr limits the comparison. */
	CHECK_INT(run(out, sizeof(out),
		      "verify --log measure.log --tpm swtpm:%s --pcr 11", conf),
		  0);
	CHECK(!strstr(out, "PCR 15"));

	/* The same values as tpm2_pcrread prints them, through --pcrs. */
	if (access("/usr/bin/tpm2_pcrread", X_OK) == 0) {
		char cmd[600];

		snprintf(cmd, sizeof(cmd),
			 "tpm2_pcrread -T swtpm:%s sha256:0,11,15+sha384:11,15 > "
			 "%s/pcrread.txt",
			 conf, dir);
		CHECK(system(cmd) == 0);
		CHECK_INT(run(out, sizeof(out),
			      "verify --log measure.log --pcrs pcrread.txt"),
			  1);
		CHECK_CONTAINS(out, "PCR 0 sha256: match");
		CHECK_CONTAINS(out, "PCR 11 sha256: match");
		CHECK_CONTAINS(out, "PCR 15 sha256: MISMATCH");
		CHECK_CONTAINS(out, "  got (pcrs file):   ");
		CHECK_CONTAINS(out, "PCR 15 sha384: match");
	}

	/* No TPM there. */
	CHECK_INT(run(out, sizeof(out), "verify --log measure.log --tpm %s/no-tpm", dir),
		  2);
	CHECK_CONTAINS(out, "no-tpm: No such file or directory");
	CHECK_INT(run(out, sizeof(out),
		      "verify --log measure.log --tpm swtpm:%s --pcr 24", conf),
		  2);
	CHECK_CONTAINS(out, "--pcr 24: want comma-separated PCR numbers 0-23");
	cleanup();
}

/* A boot simulated on swtpm: the stub's records as the firmware extends them, then what
 * cvminit measures through measure(), with its data written out here from the rules. The
 * TPM then holds what measurements.json says, and verify --uki --tpm agrees. */
TEST(predict_json_equals_a_simulated_boot)
{
	static const char conf_text[] = "service containerd\n";
	const char *conf = swtpm_start();
	static const uint16_t banks[] = {DIGEST_ALG_SHA1, DIGEST_ALG_SHA256,
					 DIGEST_ALG_SHA384, DIGEST_ALG_SHA512};
	struct eventlog stub = {0};
	struct measurer *m;
	struct pe_file pe;
	struct tpm *t;
	uint8_t uki[32768], v[TPM_MAX_DIGEST];
	char out[16384], json[2048], path[300], want[300], hex[HEX_LEN];
	const char *why;
	size_t len, off;

	need_tool();
	len = make_uki(conf_text);
	CHECK(read_back("uki.efi", (char *)uki, sizeof(uki)) == len);
	CHECK_INT(pe_parse(uki, len, &pe, &off, &why), 0);
	CHECK_INT(predict_stub_records(&pe, banks, 4, &stub), 8);
	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	for (size_t i = 0; i < stub.n; i++)
		CHECK_INT(tpm_pcr_extend(t, 11, stub.records[i].digests, 4), 0);
	tpm_close(t);
	eventlog_free(&stub);
	pe_free(&pe);

	snprintf(path, sizeof(path), "%s/measure.log", dir);
	CHECK_INT(measurer_open_tpm("swtpm", conf, path, &m), 0);
	CHECK_INT(measure(m, 11, "enter-initrd", "enter-initrd", 12), 0);
	CHECK_INT(measure(m, 15, "cvminit:cmdline",
			  "roothash=" ROOTHASH " console=ttyS0,115200",
			  strlen("roothash=" ROOTHASH " console=ttyS0,115200")),
		  0);
	CHECK_INT(measure(m, 15, "cvminit:config", conf_text, strlen(conf_text)), 0);
	CHECK_INT(measure(m, 15, "cvminit:root", ROOT_DATA, strlen(ROOT_DATA)), 0);
	CHECK_INT(measure(m, 15, "cvminit:state", STATE, strlen(STATE)), 0);
	CHECK_INT(measure_hmac(m, 15, VK_LABEL, "volume-key", vk_key, sizeof(vk_key)), 0);
	CHECK_INT(measure(m, 11, "leave-initrd", "leave-initrd", 12), 0);
	{
		/* After switch_root, /var mounted: the generation, by PID 1's function. */
		char bid[300], gwhy[200];
		uint64_t g = 0;
		FILE *f;

		snprintf(bid, sizeof(bid), "%s/boot_id", dir);
		f = fopen(bid, "w");
		CHECK(f != NULL);
		fputs("6c1b5d7e-2f0a-4c8e-9d3b-1a2b3c4d5e6f\n", f);
		fclose(f);
		CHECK_INT(generation_measure(m, dir, true, bid, &g, gwhy, sizeof(gwhy)),
			  0);
		CHECK_INT((int)g, 1);
	}
	CHECK_INT(measure(m, 11, "ready", "ready", 5), 0);
	measurer_close(m);

	/* Without the node's log PCR 15's value is left out: the TPM's is not the
	 * state's. */
	CHECK_INT(run(out, sizeof(out), "predict --uki uki.efi --state %s --json m.json",
		      STATE),
		  0);
	read_back("m.json", json, sizeof(json));
	CHECK(strstr(json, "\"15\": {\n    \"warnOnly\": false,\n    \"replay\""));
	CHECK_INT(run(out, sizeof(out),
		      "predict --uki uki.efi --state %s --json m.json --node-log "
		      "measure.log",
		      STATE),
		  0);
	/* The generation pinned after the volume key: PCR 15 below is the TPM's. */
	CHECK_CONTAINS(
		out, "generation generation=1 boot_id=6c1b5d7e-2f0a-4c8e-9d3b-"
		     "1a2b3c4d5e6f (pinned: the record logged in measure.log; per boot)");
	read_back("m.json", json, sizeof(json));
	CHECK_CONTAINS(json, "\"cvminit:generation\"");
	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	CHECK_INT(tpm_pcr_read(t, DIGEST_ALG_SHA256, 11, v), 32);
	hex_encode(v, 32, hex);
	snprintf(want, sizeof(want), "\"11\": {\n    \"expected\": \"%s\"", hex);
	CHECK_CONTAINS(json, want);
	CHECK_INT(tpm_pcr_read(t, DIGEST_ALG_SHA256, 15, v), 32);
	hex_encode(v, 32, hex);
	snprintf(want, sizeof(want), "\"15\": {\n    \"expected\": \"%s\"", hex);
	CHECK_CONTAINS(json, want);
	tpm_close(t);

	CHECK_INT(run(out, sizeof(out),
		      "verify --log measure.log --uki uki.efi --tpm swtpm:%s", conf),
		  0);
	CHECK_CONTAINS(out, "PCR 11 sha256: match");
	CHECK_CONTAINS(out, "PCR 11 sha512: match");
	CHECK_CONTAINS(out, "PCR 15 sha384: match");
	/* verify says it took the HMAC record as logged, and what to pin. */
	CHECK_CONTAINS(out, "\"" VK_LABEL "\" (event type volume-key) is an HMAC keyed "
			    "with the node's volume key: it cannot be recomputed and is "
			    "replayed as logged");
	{
		uint8_t h[DIGEST_MAX];

		CHECK_INT(digest_hmac(DIGEST_ALG_SHA256, vk_key, sizeof(vk_key), VK_LABEL,
				      strlen(VK_LABEL), h),
			  32);
		hex_encode(h, 32, hex);
		snprintf(want, sizeof(want), "  sha256 %s\n", hex);
		CHECK_CONTAINS(out, want);
	}
	cleanup();
}

/* Every prefix and many one-byte corruptions of a valid archive and a valid firmware log
 * parse or fail cleanly (ASan watches every read; each copy is exactly its length). */
TEST(readers_survive_truncation_and_corruption)
{
	struct cpio_buf c = {0};
	struct bin l = {0};
	unsigned seed = 12345, locality;
	size_t off;
	const char *why;

	initrd(&c, "service containerd\n");
	file(&c, "etc/cvminit/cvminit.conf", "again");
	trailer(&c);
	firmware_log(&l);
	for (int pass = 0; pass < 2; pass++) {
		const uint8_t *src = pass ? l.b : c.b;
		size_t n = pass ? l.n : c.n;

		for (size_t cut = 0; cut <= n; cut++) {
			uint8_t *copy = malloc(cut ? cut : 1);
			struct cpio_file f;
			struct eventlog log;
			int r;

			memcpy(copy, src, cut);
			r = pass ? tcglog_parse(copy, cut, &log, &locality, &off, &why)
				 : cpio_find(copy, cut, CONF, &f, &off, &why);
			CHECK(r >= 0 || r == -EBADMSG || r == -EOPNOTSUPP);
			CHECK(r >= 0 || off <= cut);
			if (pass)
				eventlog_free(&log);
			free(copy);
		}
		for (int i = 0; i < 3000; i++) {
			uint8_t *copy = malloc(n);
			struct cpio_file f;
			struct eventlog log;
			int r;

			memcpy(copy, src, n);
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % n] = (uint8_t)(seed >> 24);
			r = pass ? tcglog_parse(copy, n, &log, &locality, &off, &why)
				 : cpio_find(copy, n, CONF, &f, &off, &why);
			CHECK(r >= 0 || r == -EBADMSG || r == -EOPNOTSUPP ||
			      r == -EINVAL);
			if (r == 1 && !pass)
				CHECK(f.data >= copy && f.data + f.size <= copy + n);
			if (pass)
				eventlog_free(&log);
			free(copy);
		}
	}
}

/* The pinned record: only an extended PCR 15 volume-key record counts (not one whose
 * extend failed, not a TDX one), its digests in the banks asked for, in that order. */
TEST(predict_volume_key_record_rules)
{
	static const uint16_t both[] = {DIGEST_ALG_SHA384, DIGEST_ALG_SHA256};
	struct eventlog_record recs[3] = {0};
	struct eventlog node = {recs, 3}, out = {0};
	const char *why;

	for (size_t i = 0; i < 3; i++) {
		recs[i] = (struct eventlog_record){.pcr = 15,
						   .rtmr = -1,
						   .event = (char *)VK_LABEL,
						   .event_type = (char *)"volume-key",
						   .extended = true,
						   .n_digests = 1};
		recs[i].digests[0].alg = DIGEST_ALG_SHA256;
		recs[i].digests[0].size = 32;
		memset(recs[i].digests[0].buf, 0x10 + (int)i, 32);
	}
	recs[0].extended = false; /* its extend failed: nothing reached PCR 15 */
	recs[1].rtmr = 2;	  /* TDX: folded into RTMR 2, not PCR 15 */
	CHECK_INT(predict_volume_key_record(&node, STATE, both + 1, 1, &out, &why), 0);
	CHECK_INT(out.n, 1);
	CHECK_STR(out.records[0].event, VK_LABEL);
	CHECK_STR(out.records[0].event_type, "volume-key");
	CHECK_INT(out.records[0].pcr, 15);
	CHECK(out.records[0].extended);
	CHECK_INT(out.records[0].digests[0].buf[0], 0x12);
	/* A bank the record lacks. */
	CHECK_INT(predict_volume_key_record(&node, STATE, both, 2, &out, &why), -ENODATA);
	CHECK(why != NULL);
	CHECK_INT(out.n, 1);
	/* Another PCR or event type does not count. */
	recs[2].pcr = 14;
	CHECK_INT(predict_volume_key_record(&node, STATE, both + 1, 1, &out, &why),
		  -ENOENT);
	recs[2].pcr = 15;
	recs[2].event_type = (char *)"phase";
	CHECK_INT(predict_volume_key_record(&node, STATE, both + 1, 1, &out, &why),
		  -ENOENT);
	/* A label that only starts with the UUID is another volume. */
	recs[2].event_type = (char *)"volume-key";
	recs[2].event = (char *)VK_LABEL "0";
	CHECK_INT(predict_volume_key_record(&node, STATE, both + 1, 1, &out, &why),
		  -EXDEV);
	CHECK_INT(predict_volume_key_record(&node, "x", both + 1, 1, &out, &why),
		  -EINVAL);
	eventlog_free(&out);
}

/* The reference slot of a built UKI: the text in the initrd's /etc/cvminit/reference. */
static void read_slot(const char *uki, char *out, size_t cap, char *cmdline,
		      size_t cmdcap)
{
	static const char slot_path[] = "/etc/cvminit/reference";
	uint8_t *buf = NULL;
	struct pe_file pe = {0};
	struct cpio_file f;
	const struct pe_section *s;
	const uint8_t *initrd;
	const char *why;
	char *cl = NULL;
	size_t len, off;
	FILE *fp = fopen(uki, "rb");
	struct stat st;

	CHECK(fp && fstat(fileno(fp), &st) == 0);
	buf = malloc((size_t)st.st_size);
	CHECK(buf && fread(buf, 1, (size_t)st.st_size, fp) == (size_t)st.st_size);
	fclose(fp);
	CHECK_INT(pe_parse(buf, (size_t)st.st_size, &pe, &off, &why), 0);
	s = pe_find(&pe, ".initrd");
	CHECK(s);
	initrd = pe_section_file_data(&pe, s, &len);
	CHECK_INT(cpio_find(initrd, len, slot_path, &f, &off, &why), 1);
	CHECK(f.size < cap);
	memcpy(out, f.data, f.size);
	out[f.size] = '\0';
	CHECK_INT(predict_uki_cmdline(&pe, &cl), 0);
	snprintf(cmdline, cmdcap, "%s", cl);
	free(cl);
	pe_free(&pe);
	free(buf);
}

/* The image build (image/uki-refs.py today), cvm-measure refs and cvminit's own parser
 * agree on the reference values of the same built UKI; refs --write fills a copy's slot
 * with what it prints. */
TEST(refs_agree_with_the_image_build)
{
	static const char *const ukis[] = {"build/image-test/cvminit.efi",
					   "build/image/cvminit.efi"};
	static char built[REFERENCE_SIZE_MAX + 1], mine[REFERENCE_SIZE_MAX + 1],
		written[REFERENCE_SIZE_MAX + 1], cmdline[4096];
	static struct reference a, b, c;
	char err[REFERENCE_ERR_MAX], cwd[512], root[PREDICT_ROOT_MAX];
	const char *uki = NULL, *why;
	size_t n;

	for (size_t i = 0; i < ARRAY_SIZE(ukis) && !uki; i++)
		if (access(ukis[i], R_OK) == 0)
			uki = ukis[i];
	if (!uki)
		SKIP("neither build/image/cvminit.efi nor build/image-test/cvminit.efi is built "
		     "(make image)");
	need_tool();
	CHECK(getcwd(cwd, sizeof(cwd)));
	read_slot(uki, built, sizeof(built), cmdline, sizeof(cmdline));
	CHECK_INT(run(mine, sizeof(mine), "refs --uki %s/%s", cwd, uki), 0);
	CHECK_INT(reference_parse(&a, built, err, sizeof(err)), 0);
	CHECK_INT(reference_parse(&b, mine, err, sizeof(err)), 0);
	CHECK(a.has_cmdline && a.has_config && b.has_cmdline && b.has_config);
	CHECK_STR(b.cmdline, a.cmdline);
	CHECK_STR(b.cmdline, cmdline); /* what predict measures as cvminit:cmdline */
	CHECK_INT(b.config_absent, a.config_absent);
	CHECK(memcmp(b.config_sha256, a.config_sha256, 32) == 0);
	CHECK_INT(b.has_root, a.has_root);
	CHECK_STR(b.root, a.root);
	/* … and what predict measures as cvminit:root. */
	if (a.has_root) {
		CHECK_INT(predict_root_data(cmdline, root, sizeof(root), &why), 1);
		CHECK_STR(root, a.root);
	}

	/* --write on a copy: the slot then holds exactly the printed text, padded. */
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "cp %s %s/uki.efi", uki, dir);
	CHECK(system(cmd) == 0);
	CHECK_INT(run(written, sizeof(written), "refs --uki uki.efi --write"), 0);
	CHECK_STR(written, mine);
	snprintf(cmd, sizeof(cmd), "%s/uki.efi", dir);
	read_slot(cmd, written, sizeof(written), cmdline, sizeof(cmdline));
	n = strlen(mine);
	CHECK(strncmp(written, mine, n) == 0);
	CHECK(strspn(written + n, "\n") == strlen(written + n));
	CHECK_INT(reference_parse(&c, written, err, sizeof(err)), 0);
	CHECK_STR(c.root, a.root);
	cleanup();
}
