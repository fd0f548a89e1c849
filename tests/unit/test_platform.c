/* The platform rule branch by branch, its reader on fake sysfs/configfs trees, the EK
 * public from a real swtpm, the PCR bank check and the TPM descriptor's CLOEXEC. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tcti_device.h>

#include "../../init/settings.h"
#include "../../init/util.h"
#include "../../measured-boot/measure.h"
#include "../../measured-boot/platform.h"
#include "../../measured-boot/tpm.h"
#include "harness.h"
#include "swtpm.h"

/*
 * TDX, SEV-SNP and an SVSM cannot exist on the machines these tests run on, and QEMU
 * cannot fake a guest's view of them: the reader is tested on fake trees laid out like
 * the real sysfs/configfs-tsm interfaces (plain files and directories). The EK public is
 * real: swtpm's, read through tpm2-tss and cross-checked with tpm2_createek.
 */
static char root[64];

static void cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	(void)!system(cmd);
}

static void fake_root(void)
{
	snprintf(root, sizeof(root), "/tmp/cvminit-platform.XXXXXX");
	CHECK(mkdtemp(root) != NULL);
	atexit(cleanup);
}

/* Writes a file (and its directories) under the fake root. */
static void put(const char *rel, const void *data, size_t len)
{
	char path[512], cmd[600];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	CHECK_INT(system(cmd), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK_INT(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void put_str(const char *rel, const char *s)
{
	put(rel, s, strlen(s));
}

static void mkdir_p(const char *rel)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "mkdir -p %s/%s", root, rel);
	CHECK_INT(system(cmd), 0);
}

static void slurp(const char *rel, char *out, size_t len)
{
	char path[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	n = read(fd, out, len - 1);
	CHECK(n >= 0);
	out[n] = '\0';
	close(fd);
}

#define CPUINFO_HEAD "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme "
#define REPORT	     "sys/kernel/config/tsm/report/cvminit-platform/"

static void fake_tpm(void)
{
	mkdir_p("sys/class/tpm/tpm0");
	put_str("dev/tpmrm0", "");
}

static void fake_tdx(bool rtmrs)
{
	put_str("proc/cpuinfo", CPUINFO_HEAD "tdx_guest x2apic\npower management:\n");
	mkdir_p("sys/class/misc/tdx_guest");
	if (rtmrs)
		for (int i = 0; i < 4; i++) {
			char rel[96];

			snprintf(rel, sizeof(rel),
				 "sys/class/misc/tdx_guest/measurements/rtmr%d:sha384",
				 i);
			put_str(rel, "");
		}
}

/* An SNP guest (the sev-guest platform device) with configfs-tsm; with an SVSM, its
 * report entry offers service_provider and returns manifest as manifestblob. */
static void fake_snp(bool svsm, const void *manifest, size_t len)
{
	put_str("proc/cpuinfo", CPUINFO_HEAD "sev sev_es sev_snp\n");
	mkdir_p("sys/devices/platform/sev-guest");
	put_str(REPORT "provider", "sev_guest\n");
	if (svsm) {
		put_str(REPORT "service_provider", "");
		put_str(REPORT "service_guid", "");
		put_str(REPORT "service_manifest_version", "");
		put(REPORT "manifestblob", manifest, len);
	}
}

/* The EK public of a fresh swtpm through our code, checked against tpm2_createek's. */
static size_t swtpm_ek(uint8_t *buf, size_t size)
{
	const char *conf = swtpm_start();
	char cmd[512], out[16];
	uint8_t want[PLATFORM_BLOB_MAX + 2];
	bool possessed = false;
	struct tpm *t;
	int n, fd;
	ssize_t m;

	CHECK_INT(tpm_open("swtpm", conf, &t), 0);
	n = tpm_ek_public(t, buf, size, &possessed);
	tpm_close(t);
	CHECK(n > 0);
	/* swtpm holds its EK: the session salted to it works. */
	CHECK(possessed);
	CHECK_INT(platform_blob_check(buf, (size_t)n), PLATFORM_BLOB_OK);

	snprintf(cmd, sizeof(cmd),
		 "tpm2_createek -T swtpm:%s -c %s/ek.ctx -G rsa -u %s/ek.pub >/dev/null "
		 "&& "
		 "echo ok",
		 conf, root, root);
	CHECK_INT(run_capture(cmd, out, sizeof(out)), 0);
	snprintf(cmd, sizeof(cmd), "%s/ek.pub", root);
	fd = open(cmd, O_RDONLY);
	CHECK(fd >= 0);
	m = read(fd, want, sizeof(want));
	close(fd);
	/* tpm2_createek writes a TPM2B_PUBLIC: a 2-byte size, then the TPMT_PUBLIC. */
	CHECK_INT(m, n + 2);
	CHECK_INT((want[0] << 8) | want[1], n);
	CHECK(memcmp(want + 2, buf, (size_t)n) == 0);
	return (size_t)n;
}

static void decide_tree(bool tpm_platform, struct platform_facts *f,
			struct platform_decision *d)
{
	platform_read(root, f);
	platform_decide(f, tpm_platform, d);
}

TEST(platform_two_tpms_refused)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	fake_tpm();
	mkdir_p("sys/class/tpm/tpm1");
	decide_tree(true, &f, &d);
	CHECK_INT(f.n_tpms, 2);
	CHECK_INT(d.refuse, true);
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_INT(d.may_seal, false);
	CHECK_CONTAINS(d.reason, "2 TPMs");
	CHECK_CONTAINS(d.found, "TPMs 2");
}

TEST(platform_tdx_with_tpm_uses_rtmrs)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	fake_tdx(true);
	fake_tpm();
	decide_tree(false, &f, &d);
	CHECK(f.tdx && f.rtmr && !f.snp);
	CHECK_INT(f.n_tpms, 1);
	CHECK_INT(d.refuse, false);
	CHECK_INT(d.backend, MEASURER_TDX);
	CHECK_INT(d.may_seal, false);
	CHECK_CONTAINS(d.reason, "not into the TPM present");

	/* Declared trusted by the config: the TPM measures and seals. */
	platform_decide(&f, true, &d);
	CHECK_INT(d.backend, MEASURER_TPM);
	CHECK_INT(d.may_seal, true);
	CHECK_CONTAINS(d.reason, "tpm=platform");
}

TEST(platform_tdx_tpm_without_rtmr_sysfs)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	fake_tdx(false); /* Debian's 6.12 kernel: a TDX guest without the RTMR sysfs */
	fake_tpm();
	decide_tree(false, &f, &d);
	CHECK(f.tdx && !f.rtmr);
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_INT(d.may_seal, false);
	CHECK_INT(d.refuse, false); /* measure= decides, as for no TPM at all */
	CHECK_CONTAINS(d.reason, "no one vouches for");
	CHECK_CONTAINS(d.reason, "set tpm=platform");
}

TEST(platform_tdx_rtmrs_no_tpm)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	fake_tdx(true);
	decide_tree(false, &f, &d);
	CHECK_INT(f.n_tpms, 0);
	CHECK_INT(d.backend, MEASURER_TDX);
	CHECK_INT(d.may_seal, false);
	CHECK_CONTAINS(d.reason, "measuring into the RTMRs;");

	/* tpm=platform with no TPM to trust changes nothing. */
	platform_decide(&f, true, &d);
	CHECK_INT(d.backend, MEASURER_TDX);
}

TEST(platform_snp_manifest_differs_from_ek)
{
	struct platform_facts f;
	struct platform_decision d;
	uint8_t ek[PLATFORM_BLOB_MAX], other[PLATFORM_BLOB_MAX];
	size_t n;

	fake_root();
	n = swtpm_ek(ek, sizeof(ek));
	/* Another TPM's EK: same template, another modulus (its last byte here). */
	memcpy(other, ek, n);
	other[n - 1] ^= 0x01;
	fake_snp(true, other, n);
	fake_tpm();
	platform_read(root, &f);
	CHECK(f.snp && !f.tdx && f.svsm);
	CHECK_INT(f.manifest, PLATFORM_BLOB_OK);
	CHECK(platform_needs_ek(&f));
	memcpy(f.ek_buf, ek, n);
	f.ek_len = n;
	f.ek = PLATFORM_BLOB_OK;
	f.ek_possessed = true;
	platform_decide(&f, false, &d);
	CHECK_INT(d.refuse, true);
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_CONTAINS(d.reason, "differs from the SVSM vTPM's manifest");
	/* A config declaration does not override evidence of a substituted TPM. */
	platform_decide(&f, true, &d);
	CHECK_INT(d.refuse, true);

	/* An EK that could not be read is no match either. */
	f.ek = PLATFORM_BLOB_ABSENT;
	f.ek_len = 0;
	platform_decide(&f, false, &d);
	CHECK_INT(d.refuse, true);
	CHECK_CONTAINS(d.reason, "unreadable");
}

TEST(platform_snp_svsm_vtpm_bound)
{
	struct platform_facts f;
	struct platform_decision d;
	uint8_t ek[PLATFORM_BLOB_MAX];
	char got[128];
	size_t n;

	fake_root();
	n = swtpm_ek(ek, sizeof(ek));
	fake_snp(true, ek, n);
	fake_tpm();
	platform_read(root, &f);
	CHECK_STR(f.tsm_provider, "sev_guest");
	CHECK_INT(f.manifest_len, n);
	/* The reader asked the SVSM for the vTPM service's manifest, version 0. */
	slurp(REPORT "service_provider", got, sizeof(got));
	CHECK_STR(got, "svsm");
	slurp(REPORT "service_guid", got, sizeof(got));
	CHECK_STR(got, PLATFORM_SVSM_VTPM_GUID);
	slurp(REPORT "service_manifest_version", got, sizeof(got));
	CHECK_STR(got, "0");

	memcpy(f.ek_buf, ek, n);
	f.ek_len = n;
	f.ek = PLATFORM_BLOB_OK;
	f.ek_possessed = true;
	platform_decide(&f, false, &d);
	CHECK_INT(d.refuse, false);
	CHECK_INT(d.backend, MEASURER_TPM);
	CHECK_INT(d.may_seal, true);
	CHECK_CONTAINS(d.reason, "is the SVSM vTPM");

	/* The same public area from a TPM that cannot use the EK: refused. */
	f.ek_possessed = false;
	platform_decide(&f, true, &d);
	CHECK_INT(d.refuse, true);
	CHECK_CONTAINS(d.reason, "cannot prove it holds the EK");
}

TEST(platform_snp_cloud_vtpm_declared)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	fake_snp(false, NULL, 0);
	fake_tpm();
	decide_tree(false, &f, &d);
	CHECK(f.snp && !f.svsm);
	CHECK_INT(f.manifest, PLATFORM_BLOB_ABSENT);
	CHECK(!platform_needs_ek(&f));
	/* Undeclared: a TPM no SVSM vouches for is not used. */
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_INT(d.refuse, false);
	CHECK_CONTAINS(d.reason, "no SVSM");
	/* Declared with set tpm=platform (Azure, GCP): trusted. */
	platform_decide(&f, true, &d);
	CHECK_INT(d.backend, MEASURER_TPM);
	CHECK_INT(d.may_seal, true);
	CHECK_CONTAINS(d.reason, "declares the platform's vTPM trusted");
}

TEST(platform_snp_svsm_vtpm_without_driver)
{
	struct platform_facts f;
	struct platform_decision d;
	uint8_t ek[PLATFORM_BLOB_MAX];
	size_t n;

	fake_root();
	n = swtpm_ek(ek, sizeof(ek));
	fake_snp(true, ek, n); /* no /sys/class/tpm: no CONFIG_TCG_SVSM */
	decide_tree(false, &f, &d);
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_CONTAINS(d.reason, "CONFIG_TCG_SVSM");
}

TEST(platform_plain_vm)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	put_str("proc/cpuinfo", CPUINFO_HEAD "hypervisor\n");
	fake_tpm();
	decide_tree(false, &f, &d);
	CHECK(!f.tdx && !f.snp);
	CHECK_INT(f.tpm_index, 0);
	CHECK_INT(d.backend, MEASURER_TPM);
	CHECK_INT(d.may_seal, true);
	CHECK_CONTAINS(d.reason, "plain VM");
}

TEST(platform_nothing_at_all)
{
	struct platform_facts f;
	struct platform_decision d;

	fake_root();
	decide_tree(false, &f, &d);
	CHECK_INT(f.n_tpms, 0);
	CHECK_INT(f.tpm_index, -1);
	CHECK(!f.tdx && !f.snp && !f.rtmr && !f.svsm);
	CHECK_STR(f.tsm_provider, "");
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_INT(d.refuse, false);
	CHECK_CONTAINS(d.reason, "no TPM");
}

TEST(platform_tdx_and_snp_refused)
{
	struct platform_facts f = {.tdx = true, .snp = true, .tpm_index = -1};
	struct platform_decision d;

	platform_decide(&f, false, &d);
	CHECK_INT(d.refuse, true);
	CHECK_CONTAINS(d.reason, "inconsistent");
}

TEST(platform_reader_malformed_manifest)
{
	struct platform_facts f;
	struct platform_decision d;
	uint8_t ek[PLATFORM_BLOB_MAX], big[PLATFORM_BLOB_MAX + 100];
	size_t n;

	fake_root();
	n = swtpm_ek(ek, sizeof(ek));
	fake_tpm();

	/* Truncated: the TPMT_PUBLIC stops inside the modulus. */
	fake_snp(true, ek, n - 10);
	decide_tree(false, &f, &d);
	CHECK_INT(f.manifest, PLATFORM_BLOB_MALFORMED);
	CHECK(!platform_needs_ek(&f));
	CHECK_INT(d.refuse, true);
	CHECK_CONTAINS(d.reason, "is not one TPMT_PUBLIC");

	/* Trailing bytes after a whole TPMT_PUBLIC. */
	memcpy(big, ek, n);
	memset(big + n, 0, 4);
	fake_snp(true, big, n + 4);
	decide_tree(false, &f, &d);
	CHECK_INT(f.manifest, PLATFORM_BLOB_MALFORMED);

	/* Larger than any TPMT_PUBLIC. */
	memset(big, 0x41, sizeof(big));
	fake_snp(true, big, sizeof(big));
	decide_tree(false, &f, &d);
	CHECK_INT(f.manifest, PLATFORM_BLOB_MALFORMED);
	CHECK_INT(d.refuse, true);

	/* Empty: the SVSM offers no vTPM manifest; the TPM stays unvouched. */
	fake_snp(true, "", 0);
	decide_tree(false, &f, &d);
	CHECK_INT(f.manifest, PLATFORM_BLOB_ABSENT);
	CHECK_INT(d.refuse, false);
	CHECK_INT(d.backend, MEASURER_NONE);
	CHECK_CONTAINS(d.reason, "the SVSM offers no vTPM manifest");

	CHECK_INT(platform_blob_check((const uint8_t *)"\x00\x01", 2),
		  PLATFORM_BLOB_MALFORMED);
	CHECK_INT(platform_blob_check(ek, 0), PLATFORM_BLOB_ABSENT);
}

TEST(platform_reader_report_entry_removed)
{
	struct platform_facts f;
	struct stat st;
	char path[256];

	/* A configfs-tsm without an SVSM: the reader makes its report entry, reads the
	 * provider and removes the entry again. */
	fake_root();
	mkdir_p("sys/kernel/config/tsm/report");
	platform_read(root, &f);
	CHECK(!f.svsm);
	CHECK_INT(f.manifest, PLATFORM_BLOB_ABSENT);
	snprintf(path, sizeof(path), "%s/" REPORT, root);
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	/* cpuinfo flags are whole words: "tdx_guestx" is not "tdx_guest". */
	put_str("proc/cpuinfo", CPUINFO_HEAD "tdx_guestx sev_snp_x\n");
	platform_read(root, &f);
	CHECK(!f.tdx && !f.snp);
}

TEST(measure_banks_unknown_refused)
{
	struct tpm_bank ok[] = {{0x0004, 20}, {0x000B, 32}, {0x000C, 48}, {0x000D, 64}};
	struct tpm_bank sm3[] = {{0x000B, 32}, {0x0012, 32}};
	struct tpm_bank unknown[] = {{0x000B, 32}, {0x1234, 0}};
	struct tpm_bank wrong_size[] = {{0x000B, 20}};
	char err[512];

	CHECK_INT(measure_banks_check(ok, ARRAY_SIZE(ok), err, sizeof(err)), 0);
	CHECK_INT(measure_banks_check(sm3, ARRAY_SIZE(sm3), err, sizeof(err)),
		  -EOPNOTSUPP);
	CHECK_CONTAINS(err, "0x0012 (sm3_256)");
	CHECK_INT(measure_banks_check(unknown, ARRAY_SIZE(unknown), err, sizeof(err)),
		  -EOPNOTSUPP);
	CHECK_CONTAINS(err, "0x1234 (unknown algorithm)");
	CHECK_INT(measure_banks_check(wrong_size, 1, err, sizeof(err)), -EOPNOTSUPP);
	CHECK_CONTAINS(err, "0x000b");
	CHECK_INT(measure_banks_check(ok, 0, err, sizeof(err)), -ENODEV);
}

/* Whether a child that execs a shell still has descriptor fd. */
static bool inherited(int fd)
{
	char cmd[64];
	pid_t pid;
	int status;

	snprintf(cmd, sizeof(cmd), "test -e /proc/self/fd/%d", fd);
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 127);
	return WEXITSTATUS(status) == 0;
}

TEST(tpm_fds_cloexec_not_inherited)
{
	struct pollfd fds[2];
	int p[2];

	/* As tpm2-tss's device TCTI opens /dev/tpmrm0: without O_CLOEXEC. */
	CHECK_INT(pipe(p), 0);
	fds[0].fd = p[0];
	fds[1].fd = p[1];
	CHECK(inherited(p[0]) && inherited(p[1])); /* the test can fail */
	CHECK_INT(tpm_fds_cloexec(fds, 2), 0);
	CHECK(fcntl(p[0], F_GETFD) & FD_CLOEXEC);
	CHECK(!inherited(p[0]) && !inherited(p[1]));

	fds[0].fd = 1000;
	CHECK_INT(tpm_fds_cloexec(fds, 1), -EBADF);
}

/* The descriptor this process has open on path, -1 when none. */
static int fd_of(const char *path)
{
	char link[512], target[512];
	struct dirent *e;
	int found = -1;
	DIR *d = opendir("/proc/self/fd");

	CHECK(d != NULL);
	while ((e = readdir(d))) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, path) == 0)
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

TEST(tpm_open_device_fd_cloexec)
{
	TSS2_TCTI_CONTEXT *raw;
	char path[128];
	struct tpm *t;
	size_t size = 0;
	int fd;

	/* A FIFO stands in for /dev/tpmrm0 (no TPM device here): the device TCTI opens it
	 * as it opens the TPM, and Esys_Initialize sends nothing. */
	fake_root();
	snprintf(path, sizeof(path), "%s/tpmrm0", root);
	CHECK_INT(mkfifo(path, 0600), 0);

	/* tpm2-tss alone leaves the descriptor inheritable: what tpm_open() must fix. */
	CHECK_INT(Tss2_Tcti_Device_Init(NULL, &size, path), 0);
	raw = calloc(1, size);
	CHECK_INT(Tss2_Tcti_Device_Init(raw, &size, path), 0);
	fd = fd_of(path);
	CHECK(fd >= 0 && inherited(fd));
	Tss2_Tcti_Finalize(raw);
	free(raw);
	CHECK_INT(fd_of(path), -1);

	CHECK_INT(tpm_open("device", path, &t), 0);
	fd = fd_of(path);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	CHECK(!inherited(fd));
	tpm_close(t);
}

TEST(tpm_open_swtpm_without_poll_handles)
{
	uint8_t ek[PLATFORM_BLOB_MAX];
	struct tpm *t;

	/* The swtpm TCTI (sockets) has no poll handles: that is no reason to fail; only
	 * the device TCTI must report its descriptor. */
	CHECK_INT(tpm_open("swtpm", swtpm_start(), &t), 0);
	CHECK_INT(tpm_ek_public(t, ek, 16, NULL), -ENOBUFS);
	tpm_close(t);
}

TEST(platform_tpm_key_config_only)
{
	struct settings s;
	char err[SETTINGS_ERR_MAX];

	settings_init(&s);
	CHECK_INT(s.tpm_platform, false);
	CHECK_INT(settings_set(&s, "tpm", "platform", err, sizeof(err)), 0);
	CHECK_INT(s.tpm_platform, true);
	settings_init(&s);
	CHECK_INT(settings_set(&s, "tpm", "verify", err, sizeof(err)), 0);
	CHECK_INT(s.tpm_platform, false);
	CHECK_INT(settings_set(&s, "tpm", "yes", err, sizeof(err)), -EEXIST);
	settings_init(&s);
	CHECK_INT(settings_set(&s, "tpm", "yes", err, sizeof(err)), -EINVAL);
	CHECK_CONTAINS(err, "verify or platform");
	/* The host writes the command line: it may not declare its TPM trusted. */
	settings_init(&s);
	CHECK_INT(cmdline_parse(&s, "quiet cvminit.tpm=platform", err, sizeof(err)),
		  -EPERM);
	CHECK_INT(s.tpm_platform, false);
	CHECK_CONTAINS(err, "cvminit.tpm cannot be given on the kernel command line");
}

TEST(tpm_key_prove_needs_the_private_part)
{
	uint8_t ek[PLATFORM_BLOB_MAX];
	TPM2B_PUBLIC pub = {0};
	ESYS_TR handle = ESYS_TR_NONE;
	bool possessed = false;
	size_t off = 0;
	struct tpm *t;
	int n;

	CHECK_INT(tpm_open("swtpm", swtpm_start(), &t), 0);
	n = tpm_ek_public(t, ek, sizeof(ek), &possessed);
	CHECK(n > 0 && possessed);
	/* The EK's public area alone, loaded as an external key: what a TPM that echoes
	 * another TPM's EK has. The salted session cannot be made with it. */
	CHECK_INT(Tss2_MU_TPMT_PUBLIC_Unmarshal(ek, (size_t)n, &off, &pub.publicArea), 0);
	CHECK_INT(Esys_LoadExternal(tpm_esys(t), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				    NULL, &pub, ESYS_TR_RH_NULL, &handle),
		  0);
	CHECK(tpm_key_prove(t, handle) < 0);
	Esys_FlushContext(tpm_esys(t), handle);
	tpm_close(t);
}
