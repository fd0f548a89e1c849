/* measure() on a real swtpm, cross-checked with tpm2_pcrread against the replay of our
 * own log; the TDX backend on a fake sysfs tree; the PCR→RTMR table; backend selection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../init/util.h"
#include "../../lib/digest.h"
#include "../../lib/hex.h"
#include "../../measured-boot/eventlog.h"
#include "../../measured-boot/measure.h"
#include "../../measured-boot/replay.h"
#include "harness.h"
#include "swtpm.h"

static char dir[64], logpath[128];

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

static void tmp_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/cvminit-measure.XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	atexit(cleanup);
	snprintf(logpath, sizeof(logpath), "%s/run/log/cvminit/measure.log", dir);
}

static void read_log(struct eventlog *log, size_t want)
{
	size_t bad = 0;

	CHECK_INT(eventlog_read(logpath, log, &bad), want);
	CHECK_INT(bad, 0);
}

/* PCR pcr of bank ("sha256", …) as tpm2_pcrread prints it, in lower-case hex. */
static void pcrread(const char *conf, const char *bank, unsigned pcr, char *out,
		    size_t len)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "tpm2_pcrread -T swtpm:%s %s:%u | sed -n 's/.* %u *: *0x//p' | tr A-F "
		 "a-f",
		 conf, bank, pcr, pcr);
	CHECK_INT(run_capture(cmd, out, len), 0);
}

static const char cmdline[] = "console=ttyS0 root=PARTUUID=1234 ro";
static const char config[] = "service containerd /usr/bin/containerd\n";

TEST(measure_tpm_matches_replay_and_tpm2_tools)
{
	const char *conf = swtpm_start();
	struct measurer *m;
	struct eventlog log;
	struct replay_pcrs want;
	char got[2 * DIGEST_MAX + 1], hex[2 * DIGEST_MAX + 1];

	tmp_dir();
	CHECK_INT(measurer_open_tpm("swtpm", conf, logpath, &m), 0);
	CHECK_INT(measurer_backend(m), MEASURER_TPM);
	CHECK_INT(measure(m, 11, "enter-initrd", "enter-initrd", 12), 0);
	CHECK_INT(measure(m, 15, "cvminit:cmdline", cmdline, sizeof(cmdline) - 1), 0);
	CHECK_INT(measure(m, 15, "cvminit:config", config, sizeof(config) - 1), 0);
	measurer_close(m);

	read_log(&log, 3);
	/* One digest per active bank of a fresh swtpm, each the digest of the data. */
	CHECK_INT(log.records[1].n_digests, 4);
	CHECK_INT(log.records[1].pcr, 15);
	CHECK(log.records[1].extended);
	CHECK_STR(log.records[1].event, "cvminit:cmdline");
	CHECK(log.records[1].event_type == NULL);
	CHECK_STR(log.records[0].event_type, "phase");
	for (size_t i = 0; i < log.records[1].n_digests; i++) {
		const struct digest *d = &log.records[1].digests[i];
		uint8_t x[DIGEST_MAX];
		CHECK_INT(digest_compute(d->alg, cmdline, sizeof(cmdline) - 1, x),
			  d->size);
		CHECK(memcmp(x, d->buf, d->size) == 0);
	}

	static const struct {
		uint16_t alg;
		const char *name;
	} banks[] = {{DIGEST_ALG_SHA1, "sha1"},
		     {DIGEST_ALG_SHA256, "sha256"},
		     {DIGEST_ALG_SHA384, "sha384"},
		     {DIGEST_ALG_SHA512, "sha512"}};
	for (size_t b = 0; b < ARRAY_SIZE(banks); b++) {
		int n = replay_log(&log, banks[b].alg, &want);
		CHECK_INT(n, digest_size(banks[b].alg));
		for (unsigned pcr = 11; pcr <= 15; pcr += 4) {
			pcrread(conf, banks[b].name, pcr, got, sizeof(got));
			hex_encode(want.v[pcr], (size_t)n, hex);
			CHECK_STR(got, hex);
		}
	}
	eventlog_free(&log);
}

TEST(measure_tpm_failed_extend_is_logged)
{
	const char *conf = swtpm_start();
	struct measurer *m;
	struct eventlog log;

	/* The TCTI writes to a socket whose peer is gone. */
	signal(SIGPIPE, SIG_IGN);
	tmp_dir();
	CHECK_INT(measurer_open_tpm("swtpm", conf, logpath, &m), 0);
	CHECK_INT(measure(m, 15, "cvminit:cmdline", cmdline, sizeof(cmdline) - 1), 0);
	swtpm_stop();
	CHECK(measure(m, 15, "cvminit:config", config, sizeof(config) - 1) < 0);
	measurer_close(m);

	read_log(&log, 2);
	CHECK(log.records[0].extended);
	CHECK(!log.records[1].extended);
	CHECK_INT(log.records[1].recnum, 1);
	CHECK_STR(log.records[1].event, "cvminit:config");
	eventlog_free(&log);
}

/* A fake <root>/sys/class/misc/tdx_guest/measurements with empty rtmr0..3:sha384 files.
 */
static void fake_tdx_tree(char *root, size_t len)
{
	char path[256];

	snprintf(root, len, "%s/root", dir);
	snprintf(path, sizeof(path), "mkdir -p %s/sys/class/misc/tdx_guest/measurements",
		 root);
	CHECK_INT(system(path), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path),
			 "%s/sys/class/misc/tdx_guest/measurements/rtmr%d:sha384", root,
			 i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0);
		close(fd);
	}
}

/* The bytes written to a fake RTMR attribute. */
static size_t rtmr_content(const char *root, int rtmr, uint8_t *buf, size_t len)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path),
		 "%s/sys/class/misc/tdx_guest/measurements/rtmr%d:sha384", root, rtmr);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	n = read(fd, buf, len);
	close(fd);
	CHECK(n >= 0);
	return (size_t)n;
}

TEST(measure_tdx_on_fake_tree)
{
	char root[128];
	uint8_t buf[128], want[DIGEST_MAX];
	struct measurer *m;
	struct eventlog log;

	tmp_dir();
	fake_tdx_tree(root, sizeof(root));
	/* No <root>/dev/tpmrm0: selection falls through to TDX. */
	CHECK_INT(measurer_open(root, logpath, &m), 0);
	CHECK_INT(measurer_backend(m), MEASURER_TDX);

	CHECK_INT(measure(m, 15, "cvminit:cmdline", cmdline, sizeof(cmdline) - 1), 0);
	CHECK_INT(digest_compute(DIGEST_ALG_SHA384, cmdline, sizeof(cmdline) - 1, want),
		  48);
	/* One 48-byte write of sha384(data) into RTMR 2; the others untouched. */
	CHECK_INT(rtmr_content(root, 2, buf, sizeof(buf)), 48);
	CHECK(memcmp(buf, want, 48) == 0);
	CHECK_INT(rtmr_content(root, 0, buf, sizeof(buf)), 0);
	CHECK_INT(rtmr_content(root, 1, buf, sizeof(buf)), 0);

	CHECK_INT(measure(m, 7, "x7", "7", 1), 0);
	CHECK_INT(rtmr_content(root, 0, buf, sizeof(buf)), 48);
	CHECK_INT(measure(m, 4, "x4", "4", 1), 0);
	CHECK_INT(rtmr_content(root, 1, buf, sizeof(buf)), 48);
	CHECK_INT(digest_compute(DIGEST_ALG_SHA384, "4", 1, want), 48);
	CHECK(memcmp(buf, want, 48) == 0);

	/* Refused PCRs extend nothing and log nothing. */
	CHECK_INT(measure(m, 0, "x0", "0", 1), -EOPNOTSUPP);
	CHECK_INT(measure(m, 16, "x16", "16", 2), -EOPNOTSUPP);
	CHECK_INT(measure(m, 23, "x23", "23", 2), -EOPNOTSUPP);
	CHECK_INT(measure(m, 24, "x24", "24", 2), -EINVAL);

	/* A missing attribute: the extend fails and the record says so. */
	char path[256];
	snprintf(path, sizeof(path),
		 "%s/sys/class/misc/tdx_guest/measurements/rtmr2:sha384", root);
	CHECK_INT(unlink(path), 0);
	CHECK_INT(measure(m, 9, "x9", "9", 1), -ENOENT);
	measurer_close(m);

	read_log(&log, 4);
	CHECK_INT(log.records[0].pcr, 15);
	CHECK_INT(log.records[0].rtmr, 2);
	CHECK_INT(log.records[0].n_digests, 1);
	CHECK_INT(log.records[0].digests[0].alg, DIGEST_ALG_SHA384);
	CHECK_INT(digest_compute(DIGEST_ALG_SHA384, cmdline, sizeof(cmdline) - 1, want),
		  48);
	CHECK(memcmp(log.records[0].digests[0].buf, want, 48) == 0);
	CHECK(log.records[0].extended);
	CHECK_INT(log.records[1].rtmr, 0);
	CHECK_INT(log.records[2].rtmr, 1);
	CHECK_INT(log.records[3].pcr, 9);
	CHECK(!log.records[3].extended);
	eventlog_free(&log);
}

TEST(measure_tdx_rtmr_mapping)
{
	static const int want[25] = {
		[0] = -EOPNOTSUPP,
		[1] = 0,
		[2] = 1,
		[3] = 1,
		[4] = 1,
		[5] = 1,
		[6] = 1,
		[7] = 0,
		[8] = 2,
		[9] = 2,
		[10] = 2,
		[11] = 2,
		[12] = 2,
		[13] = 2,
		[14] = 2,
		[15] = 2,
		[16] = -EOPNOTSUPP,
		[17] = -EOPNOTSUPP,
		[18] = -EOPNOTSUPP,
		[19] = -EOPNOTSUPP,
		[20] = -EOPNOTSUPP,
		[21] = -EOPNOTSUPP,
		[22] = -EOPNOTSUPP,
		[23] = -EOPNOTSUPP,
		[24] = -EINVAL,
	};

	for (unsigned pcr = 0; pcr < 25; pcr++)
		CHECK_INT(tdx_pcr_to_rtmr(pcr), want[pcr]);
	CHECK_INT(tdx_pcr_to_rtmr(1000), -EINVAL);
}

TEST(measure_open_selection)
{
	char root[128], path[512];
	struct measurer *m = NULL;
	int r;

	tmp_dir();
	snprintf(root, sizeof(root), "%s/empty", dir);
	CHECK_INT(mkdir(root, 0755), 0);
	/* Neither backend: -ENODEV, and no log is created. */
	CHECK_INT(measurer_open(root, logpath, &m), -ENODEV);
	CHECK(m == NULL);
	CHECK(access(logpath, F_OK) != 0);

	/* A plain VM's TPM (tpm0 in /sys/class/tpm) whose /dev/tpmrm0 is not a TPM: an
	 * error, not a fall-through to nothing. */
	snprintf(path, sizeof(path),
		 "mkdir -p %s/dev %s/sys/class/tpm/tpm0 && touch %s/dev/tpmrm0", root,
		 root, root);
	CHECK_INT(system(path), 0);
	r = measurer_open(root, logpath, &m);
	CHECK(r < 0 && r != -ENODEV);
	CHECK(m == NULL);

	/* The same TPM in a TDX guest with RTMRs: the platform rule measures into the RTMRs
	 * and leaves the TPM alone (the host can attach one; platform_decide()). */
	fake_tdx_tree(root, sizeof(root));
	snprintf(path, sizeof(path),
		 "mkdir -p %s/dev %s/sys/class/tpm/tpm0 && touch %s/dev/tpmrm0", root,
		 root, root);
	CHECK_INT(system(path), 0);
	CHECK_INT(measurer_open(root, logpath, &m), 0);
	CHECK_INT(measurer_backend(m), MEASURER_TDX);
	CHECK(measurer_tpm(m) == NULL);
	measurer_close(m);
}

/* Whether the log file holds needle (raw bytes or their hex). */
static bool log_contains(const uint8_t *needle, size_t n)
{
	static char buf[1 << 16];
	char hex[2 * 64 + 1];
	ssize_t k;
	int fd = open(logpath, O_RDONLY);

	CHECK(fd >= 0 && n <= 64);
	k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	CHECK(k > 0);
	buf[k] = '\0';
	hex_encode(needle, n, hex);
	for (size_t i = 0; i + n <= (size_t)k; i++)
		if (memcmp(buf + i, needle, n) == 0)
			return true;
	return strstr(buf, hex) != NULL;
}

static const char vk_label[] = "cvminit:volume-key:0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

TEST(measure_hmac_tpm_matches_replay_and_tpm2_tools)
{
	const char *conf = swtpm_start();
	static const char *names[] = {"sha1", "sha256", "sha384", "sha512"};
	uint8_t key[64], other[64];
	struct measurer *m;
	struct eventlog log;
	struct replay_pcrs want;
	char got[2 * DIGEST_MAX + 1], hex[2 * DIGEST_MAX + 1];

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(0x5a ^ i * 7);
	memcpy(other, key, sizeof(other));
	other[63] ^= 1;
	tmp_dir();
	CHECK_INT(measurer_open_tpm("swtpm", conf, logpath, &m), 0);
	CHECK_INT(measure(m, 15, "cvminit:state", "luks2:x", 7), 0);
	CHECK_INT(
		measure_hmac(m, 15, vk_label, MEASURE_EVENT_VOLUME_KEY, key, sizeof(key)),
		0);
	CHECK_INT(measure_hmac(m, 15, vk_label, NULL, key, sizeof(key)), -EINVAL);
	CHECK_INT(measure_hmac(m, 15, vk_label, MEASURE_EVENT_VOLUME_KEY, key, 0),
		  -EINVAL);
	measurer_close(m);

	read_log(&log, 2);
	const struct eventlog_record *r = &log.records[1];
	CHECK_STR(r->event, vk_label);
	CHECK_STR(r->event_type, "volume-key");
	CHECK(r->extended);
	CHECK_INT(r->n_digests, 4);
	for (size_t i = 0; i < r->n_digests; i++) {
		const struct digest *d = &r->digests[i];
		uint8_t x[DIGEST_MAX];

		/* HMAC(bank, key, label): one bit of key changes it; the label's
		 * plain digest is not it. */
		CHECK_INT(digest_hmac(d->alg, key, sizeof(key), vk_label,
				      sizeof(vk_label) - 1, x),
			  d->size);
		CHECK(memcmp(x, d->buf, d->size) == 0);
		CHECK_INT(digest_hmac(d->alg, other, sizeof(other), vk_label,
				      sizeof(vk_label) - 1, x),
			  d->size);
		CHECK(memcmp(x, d->buf, d->size) != 0);
		CHECK_INT(digest_compute(d->alg, vk_label, sizeof(vk_label) - 1, x),
			  d->size);
		CHECK(memcmp(x, d->buf, d->size) != 0);
	}
	/* The TPM holds what the log replays to. */
	for (size_t b = 0; b < r->n_digests; b++) {
		uint16_t alg = (uint16_t)digest_alg_from_name(names[b]);
		int n = replay_log(&log, alg, &want);

		CHECK_INT(n, digest_size(alg));
		pcrread(conf, names[b], 15, got, sizeof(got));
		hex_encode(want.v[15], (size_t)n, hex);
		CHECK_STR(got, hex);
	}
	/* The key is in neither form in the log. */
	CHECK(!log_contains(key, sizeof(key)));
	CHECK(log_contains((const uint8_t *)"volume-key", 10)); /* the check can hit */
	eventlog_free(&log);
}

TEST(measure_hmac_tdx_on_fake_tree)
{
	char root[128];
	uint8_t buf[128], want[DIGEST_MAX], key[96];
	struct measurer *m;
	struct eventlog log;

	memset(key, 0xc3, sizeof(key));
	tmp_dir();
	fake_tdx_tree(root, sizeof(root));
	CHECK_INT(measurer_open(root, logpath, &m), 0);
	CHECK_INT(
		measure_hmac(m, 15, vk_label, MEASURE_EVENT_VOLUME_KEY, key, sizeof(key)),
		0);
	CHECK_INT(
		measure_hmac(m, 16, vk_label, MEASURE_EVENT_VOLUME_KEY, key, sizeof(key)),
		-EOPNOTSUPP);
	measurer_close(m);
	/* RTMR 2 got the sha384 HMAC, in one 48-byte write. */
	CHECK_INT(digest_hmac(DIGEST_ALG_SHA384, key, sizeof(key), vk_label,
			      sizeof(vk_label) - 1, want),
		  48);
	CHECK_INT(rtmr_content(root, 2, buf, sizeof(buf)), 48);
	CHECK(memcmp(buf, want, 48) == 0);
	read_log(&log, 1);
	CHECK_INT(log.records[0].rtmr, 2);
	CHECK_INT(log.records[0].n_digests, 1);
	CHECK(memcmp(log.records[0].digests[0].buf, want, 48) == 0);
	CHECK_STR(log.records[0].event_type, "volume-key");
	eventlog_free(&log);
}
