/* The state partition: a LUKS2 volume made on first boot, its key sealed to the TPM,
 * opened in the initrd from a header copy validated once, /var on it after switch_root;
 * and the writable paths containerd and kubelet need on an otherwise read-only root. */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <blkid/blkid.h>
#include <libcryptsetup.h>

#include "../lib/digest.h"
#include "../lib/file.h"
#include "../lib/hex.h"
#include "../lib/secret.h"
#include "../measured-boot/generation.h"
#include "../measured-boot/measure.h"
#include "../measured-boot/seal.h"
#include "log.h"
#include "luks.h"
#include "modules.h"
#include "partition.h"
#include "power.h"
#include "state.h"
#include "state_plan.h"

/*
 * The state machine of the state partition. Every step of a first boot either happens in
 * RAM or is one of the numbered disk writes, so a power cut anywhere leaves one of these
 * states, and the next boot does what the last column says:
 *
 *   on the disk (what state_open() reads once)        next boot
 *   ------------------------------------------------  -----------------------------------
 *   A  no LUKS2 magic, no other signature (blank)      first boot: make everything
 *   B  keyslot area written, no header copy (W1)       = A (blank to blkid and to us)
 *   C  secondary header only (W2; primary never        first boot again: the token says
 *      written), token initialized=false               initialized=false, so no data
 *   D  both copies, token initialized=false (W3/W4)    unseal, activate; state_mount():
 *                                                      ext4 there (a cut after mkfs):
 *                                                      mount it, set the flag; none: mkfs
 *   E  both copies, initialized=true (W5/W6)           unseal, activate, mount. Never
 * mkfs: no ext4 then means lost data, refuse anything else: another signature, LUKS1, a
 * header cvminit does not make, copies that disagree, an initialized secondary without a
 * primary → refuse (never format it).
 *
 * First boot (A, B, C), in the initrd:
 *   1. key ← getrandom (64 bytes; 96 with hmac-sha256 integrity), in locked memory;
 *   2. seal it to the TPM (PolicyPCR over settings.state_pcrs, values as they are now);
 *   3. format LUKS2 on a detached header file in /run (tmpfs, ours alone), data device
 * the partition at 16 MiB; one pbkdf2 keyslot (passphrase = the key), the token
 *      (initialized=false); with integrity, activate and zero the ends of the volume
 *      that libblkid probes (dm-integrity fails reads of sectors never written; nothing
 *      else reads before it writes: prime_probed_ends). Nothing on the disk names this
 *      volume yet (a cut here is A).
 *   4. commit: W1 keyslot area, sync; W2 secondary header, sync; W3 primary JSON area,
 *      sync; W4 primary binary header (with the magic, one 4 KiB block), sync.
 *   5. activate from the header file, measure the identity and the key (an HMAC) into
 *      PCR 15, wipe the key.
 * After switch_root (state_mount): mkfs.ext4 when the volume holds nothing and the token
 * says initialized=false; mount; then W5/W6: the token's flag set on the header file by
 * libcryptsetup and committed (secondary, sync, primary JSON, sync, primary binary,
 * sync). A header update cut between the copies leaves one valid copy of either seqid:
 * the newer valid copy wins (state D or E), as libcryptsetup's own recovery would choose.
 *
 * Which row the disk is in, and so what to do, is decided by state_plan_open() and
 * state_plan_mount() (state_plan.c, a unit test per row); this file only reads and acts.
 */

#define STATE_DM_NAME  "state"
#define RUN_DIR	       "/run/cvminit" /* made by header_file(); /run moves with switch_root */
#define HDR_COPY       RUN_DIR "/state.luks2"
#define MACHINE_ID_RUN RUN_DIR "/machine-id"
#define WIPE_BLOCK     (1u << 20)
/* The keyslots area: room for one keyslot of a 96-byte key (4000 anti-forensic stripes,
 * 375 KiB). cryptsetup's default (16 MiB less the metadata) costs libcryptsetup 16 MiB of
 * random fill per first boot (10 s under emulation) for keyslots never made. */
#define KEYSLOTS_SIZE (512u << 10)
/* The smallest partition worth formatting: the metadata and keyslots take 16 MiB. */
#define STATE_MIN_SIZE (LUKS2_DATA_OFFSET + (16ull << 20))

static struct {
	struct part part;
	struct luks2_hdr hdr; /* the validated (or just made) header */
	char node[300];	      /* /dev/mapper/state or /dev/dm-N */
	bool open;
} st;

/* The volume key: the buffer of state_open()'s scoped secret, NULL outside it. */
static uint8_t *key;
#define KEY_MAX 4096
/* state_open()'s measurer, for the generation measured by state_mount(). */
static struct measurer *st_measurer;

/* A refusal: one greppable "state: …" line, then the boxed fail_closed(). */
_noreturn_ _printf_(1, 2) static void refuse(const char *fmt, ...)
{
	char msg[640];
	va_list ap;

	secret_wipe_all();
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("state: %s", msg);
	fail_closed("%s", msg);
}

/* Which filesystem the partition holds: 1 and its type in type, 0 when blank, or a
 * negative errno (-EBUSY for an ambiguous probe: two signatures, never guess). */
static int probe_fs(const char *dev, char *type, size_t len)
{
	const char *v = NULL;
	blkid_probe pr;
	int r;

	pr = blkid_new_probe_from_filename(dev);
	if (!pr)
		return -errno ? -errno : -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
	blkid_probe_enable_partitions(pr,
				      1); /* a partition table inside counts as data */
	r = blkid_do_safeprobe(pr);
	if (r == 0 && blkid_probe_lookup_value(pr, "TYPE", &v, NULL) == 0)
		snprintf(type, len, "%s", v);
	else if (r == 0 && blkid_probe_lookup_value(pr, "PTTYPE", &v, NULL) == 0)
		snprintf(type, len, "partition table %s", v);
	blkid_free_probe(pr);
	if (r == -2)
		return -EBUSY;
	if (r < 0)
		return -EIO;
	return r == 0 ? 1 : 0;
}

static int run_wait(char *const argv[])
{
	char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The one partition of type "var" on any disk, waiting for it as root_find() does. */
static void find_state(struct part *out, unsigned timeout_s)
{
	struct part parts[PART_MAX];
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;
	int found;

	for (;;) {
		int n = part_scan(parts, ARRAY_SIZE(parts));
		if (n == -E2BIG)
			refuse("%s", PART_TOO_MANY);
		found = 0;
		for (int i = 0; i < n; i++) {
			if (parts[i].type != DPS_VAR)
				continue;
			if (found++)
				refuse("two state partitions (type var %s): %s and %s; a "
				       "node has exactly one. Detach the extra disk.",
				       parts[i].type_uuid, out->dev, parts[i].dev);
			*out = parts[i];
		}
		if (found || now_ms() >= end)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (!found)
		refuse("no state partition (type var "
		       "4d21b016-b534-45c2-a9fb-5c16e091fd2d) on any disk after %u s: "
		       "the image or the state disk is missing",
		       timeout_s);
}

static void wait_node(unsigned timeout_s)
{
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;

	while (dm_find_node(STATE_DM_NAME, st.node, sizeof(st.node)) < 0) {
		if (now_ms() >= end)
			refuse("the state volume is active but no device node appeared "
			       "in /dev/mapper or as /dev/dm-N within %u s",
			       timeout_s);
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* Copies [off, off+len) of the header file to the partition, then flushes the disk. */
static int commit_range(int from, int to, off_t off, size_t len)
{
	/* Mapped for the copy and unmapped after it, not a static buffer: a first boot
	 * does not leave PID 1 1 MiB larger for the node's lifetime, and PID 1's .bss stays
	 * smaller than one transparent huge page (init/main.c says why that matters). */
	const size_t size = 1u << 20;
	uint8_t *buf = mmap(NULL, size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r = 0;

	if (buf == MAP_FAILED)
		return -errno;
	while (len > 0 && r == 0) {
		size_t n = len < size ? len : size;

		r = pread_full(from, buf, n, off);
		if (r == 0)
			r = pwrite_full(to, buf, n, off);
		off += (off_t)n;
		len -= n;
	}
	munmap(buf, size);
	if (r < 0)
		return r;
	return fdatasync(to) < 0 ? -errno : 0;
}

/* Writes the header file's metadata to the partition in the order the state machine
 * needs: [keyslot area,] secondary copy, primary JSON, primary binary header — each
 * flushed before the next, so the primary's magic is the last thing to reach the disk. */
static int commit(bool with_keyslots)
{
	_cleanup_close_ int from = -1, to = -1;
	int r;

	from = open(HDR_COPY, O_RDONLY | O_CLOEXEC);
	if (from < 0)
		return log_errno(-errno, "state: open %s", HDR_COPY);
	to = open(st.part.dev, O_WRONLY | O_CLOEXEC);
	if (to < 0)
		return log_errno(-errno, "state: open %s for writing", st.part.dev);
	if (with_keyslots &&
	    (r = commit_range(from, to, LUKS2_AREA_SIZE, KEYSLOTS_SIZE)) < 0)
		return log_errno(r, "state: write the keyslot area of %s", st.part.dev);
	if ((r = commit_range(from, to, LUKS2_HDR_SIZE, LUKS2_HDR_SIZE)) < 0 ||
	    (r = commit_range(from, to, LUKS2_BIN_SIZE,
			      LUKS2_HDR_SIZE - LUKS2_BIN_SIZE)) < 0 ||
	    (r = commit_range(from, to, 0, LUKS2_BIN_SIZE)) < 0)
		return log_errno(r, "state: write the LUKS2 header of %s", st.part.dev);
	return 0;
}

/* Re-reads and validates what libcryptsetup wrote to the header file: what a later boot
 * will check is what this boot uses. */
static void check_own_header(void)
{
	static uint8_t area[LUKS2_AREA_SIZE];
	_cleanup_close_ int fd = -1;
	char err[300];
	int r;

	fd = open(HDR_COPY, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread_full(fd, area, sizeof(area), 0) < 0)
		refuse("cannot read back the header file %s: %s", HDR_COPY,
		       strerror(errno));
	r = luks2_inspect(area, sizeof(area), &st.hdr, err, sizeof(err));
	if (r != 1)
		refuse("the LUKS2 header libcryptsetup made for %s does not pass "
		       "cvminit's own checks: %s",
		       st.part.dev, r == 0 ? "no header" : err);
}

static int header_file(const uint8_t *metadata)
{
	_cleanup_close_ int fd = -1;

	mkdir(RUN_DIR, 0755);
	fd = open(HDR_COPY, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return log_errno(-errno, "state: create %s", HDR_COPY);
	/* Sparse up to the data offset: libcryptsetup expects the keyslots area there. */
	if (ftruncate(fd, (off_t)LUKS2_DATA_OFFSET) < 0)
		return log_errno(-errno, "state: size %s", HDR_COPY);
	if (metadata && pwrite_full(fd, metadata, LUKS2_AREA_SIZE, 0) < 0)
		return log_errno(-errno, "state: write %s", HDR_COPY);
	return 0;
}

static void measure_identity(struct measurer *m)
{
	char ident[160];
	int r;

	luks2_identity(&st.hdr, ident, sizeof(ident));
	r = measure(m, 15, "cvminit:state", ident, strlen(ident));
	if (r < 0)
		refuse("cannot measure the state volume's identity (%s) into PCR 15: %s",
		       ident, strerror(-r));
	log_info("state: measured %s into PCR 15", ident);
}

/* The identity is the header's word; this binds PCR 15 to the key that opened the volume,
 * so a header of another key (sealed with the token's policy by anyone who could reach
 * the TPM) gives another PCR 15. HMAC keyed with the key over a label, as systemd does
 * for cryptsetup: volumes: the key reaches neither the TPM nor the log. */
static void measure_volume_key(struct measurer *m)
{
	char label[96];
	int r;

	snprintf(label, sizeof(label), "cvminit:volume-key:%s", st.hdr.uuid);
	r = measure_hmac(m, 15, label, MEASURE_EVENT_VOLUME_KEY, key,
			 st.hdr.volume_key_size);
	if (r < 0)
		refuse("cannot measure the state volume's key (%s) into PCR 15: %s",
		       label, strerror(-r));
}

/* The generation counter (measured-boot/generation.h): incremented and stored durably
 * before it is measured, measured before any service starts, so the join service sees a
 * value this state volume already holds (docs/attestation.md, "Freshness"). fresh: the
 * token still says initialized=false, so no earlier boot finished with this volume and an
 * absent counter is a new one; on an initialized volume it is lost, measured as 0. */
static void measure_generation(bool fresh)
{
	char why[200] = "";
	uint64_t g;
	int r;

	mkdir("/var/lib", 0755);
	if (mkdir(GENERATION_DIR, 0755) < 0 && errno != EEXIST)
		refuse("cannot make %s for the generation counter: %s", GENERATION_DIR,
		       strerror(errno));
	r = generation_measure(st_measurer, GENERATION_DIR, fresh, GENERATION_BOOT_ID, &g,
			       why, sizeof(why));
	if (r < 0)
		refuse("%s", why);
	if (g == 0)
		log_warn("state: %s (%s/%s): measured as generation 0 (lost); the join "
			 "service refuses it until an operator re-enrols this node",
			 why, GENERATION_DIR, GENERATION_FILE);
	log_info("state: generation %llu measured into PCR 15", (unsigned long long)g);
}

/*
 * With hmac(sha256) integrity every 4 KiB sector carries a tag that dm-integrity stores
 * when the sector is written; a sector never written has none and its read fails (EIO).
 * cvminit does not write the whole volume (that cost grows with the disk: 18.7 s for
 * 256 MiB under emulation); instead nothing reads a sector before it was written:
 *  - libblkid (cvminit's "is the volume empty?" in state_mount(), mkfs.ext4's own check)
 *    reads signatures in the first 4 MiB (LUKS2 secondary header offsets up to 4 MiB,
 *    VMFS at 1 and 2 MiB) and the last 1.5 MiB (RAID metadata, ZFS labels, backup GPT):
 *    those ends are zeroed here, with margin for the kernel's readahead;
 *  - mkfs.ext4 (state_mount()) writes every block it or the kernel reads later: no
 *    discard, inode tables left to the kernel's lazy init (which writes zeroes; ext4
 *    reads only the inode blocks in use, below bg_itable_unused), a journal of fixed
 *    size that mkfs zeroes (jbd2 scans it after a crash), bitmaps of BLOCK_UNINIT and
 *    INODE_UNINIT groups built in memory by the kernel; only the blocks of its backup
 *    superblocks are read first (prime_backup_superblocks());
 *  - file data: the page cache reads a block only once it is allocated and written (a
 *    4 KiB block is a page), unwritten extents read as zeroes without I/O.
 * dm-integrity keeps its journal: a sector and its tag are written atomically, so a
 * power cut never leaves a torn block that fails every later read (jbd2's own journal
 * blocks included, which recovery reads).
 */
#define PROBE_HEAD	  (8ull << 20)
#define INTEGRITY_JOURNAL (8ull << 20)
#define PROBE_TAIL	  (2ull << 20)

static int prime_probed_ends(struct crypt_device *cd)
{
	_cleanup_close_ int fd = -1;
	uint64_t size = 0;
	int r;

	fd = open(st.node, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0)
		return log_errno(-errno, "state: size of %s", st.node);
	if (size <= PROBE_HEAD + PROBE_TAIL)
		r = crypt_wipe(cd, st.node, CRYPT_WIPE_ZERO, 0, size, WIPE_BLOCK, 0, NULL,
			       NULL);
	else {
		r = crypt_wipe(cd, st.node, CRYPT_WIPE_ZERO, 0, PROBE_HEAD, WIPE_BLOCK, 0,
			       NULL, NULL);
		if (r == 0)
			r = crypt_wipe(cd, st.node, CRYPT_WIPE_ZERO, size - PROBE_TAIL,
				       PROBE_TAIL, WIPE_BLOCK, 0, NULL, NULL);
	}
	if (r < 0)
		return r;
	log_info("state: zeroed the first %llu and last %llu MiB of %s (%llu MiB): what "
		 "probes read before anything is written",
		 (unsigned long long)(PROBE_HEAD >> 20),
		 (unsigned long long)(PROBE_TAIL >> 20), st.node,
		 (unsigned long long)(size >> 20));
	return 0;
}

static void first_boot(struct tpm *tpm, const struct settings *s)
{
	const bool integ = s->state_integrity == STATE_INTEGRITY_HMAC_SHA256;
	const size_t n = LUKS2_KEY_BYTES + (integ ? LUKS2_HMAC_BYTES : 0);
	struct crypt_pbkdf_type pbkdf = {
		.type = CRYPT_KDF_PBKDF2,
		.hash = "sha256",
		.iterations =
			1000, /* the minimum: the passphrase is a full-entropy key */
		.flags = CRYPT_PBKDF_NO_BENCHMARK,
	};
	/* dm-integrity's journal, written whole when the volume is formatted and kept in
	 * RAM: a fixed size (the kernel's default is 1/128 of the disk up to 64 MiB, a
	 * first-boot cost that grows with the disk). */
	static const struct crypt_params_integrity iparams = {
		.journal_size = INTEGRITY_JOURNAL,
	};
	struct crypt_params_luks2 params = {
		.pbkdf = &pbkdf,
		.integrity = integ ? "hmac(sha256)" : NULL,
		.integrity_params = integ ? &iparams : NULL,
		.sector_size = LUKS2_SECTOR,
		.label = "cvminit-state",
	};
	struct crypt_device *cd = NULL;
	_cleanup_free_ char *token = NULL;
	static struct sealed sealed;
	char pcrs[64];
	uint64_t t0 = now_ms(), t_seal, t_fmt, t_wipe, t_commit, seal_ms;
	int r;

	if (getrandom(key, n, 0) != (ssize_t)n)
		refuse("getrandom for the state key failed: %s", strerror(errno));
	r = seal_key(tpm, s->state_pcrs, key, n, &sealed);
	if (r < 0)
		refuse("cannot seal the state key to the TPM (PCRs %s, sha256): %s. See "
		       "the seal: lines above; nothing was written to %s.",
		       seal_pcr_list(s->state_pcrs, pcrs, sizeof(pcrs)), strerror(-r),
		       st.part.dev);
	seal_ms = now_ms() - t0;
	modules_wait(); /* as in later_boot(): the format needs them */
	t_seal = now_ms();
	r = seal_token_format(&sealed, &token);
	if (r < 0)
		refuse("cannot make the LUKS2 token: %s", strerror(-r));

	if (header_file(NULL) < 0)
		refuse("cannot make the header file %s in /run", HDR_COPY);
	r = crypt_init_data_device(&cd, HDR_COPY, st.part.dev);
	if (r < 0)
		refuse("libcryptsetup: cannot open %s with data device %s: %s", HDR_COPY,
		       st.part.dev, strerror(-r));
	crypt_set_data_offset(cd, LUKS2_DATA_OFFSET / 512);
	crypt_set_metadata_size(cd, LUKS2_HDR_SIZE, KEYSLOTS_SIZE);
	r = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", NULL, (const char *)key,
			 n, &params);
	if (r < 0)
		refuse("cannot format LUKS2 (aes-xts-plain64, %zu-byte key, %d-byte "
		       "sectors%s) for %s: %s. Are dm_crypt%s and the crypto modules "
		       "loaded?",
		       n, LUKS2_SECTOR, integ ? ", hmac(sha256)" : "", st.part.dev,
		       strerror(-r), integ ? ", dm_integrity" : "");
	r = crypt_keyslot_add_by_volume_key(cd, 0, (const char *)key, n,
					    (const char *)key, n);
	if (r < 0)
		refuse("cannot add the keyslot for %s: %s", st.part.dev, strerror(-r));
	r = crypt_token_json_set(cd, 0, token);
	if (r < 0)
		refuse("cannot store the systemd-tpm2 token for %s: %s", st.part.dev,
		       strerror(-r));
	t_fmt = now_ms();
	r = crypt_activate_by_volume_key(cd, STATE_DM_NAME, (const char *)key, n, 0);
	if (r < 0)
		refuse("cannot activate the new state volume on %s: %s", st.part.dev,
		       strerror(-r));
	st.open = true;
	wait_node(s->device_timeout);
	/* dm-integrity fails the read of a sector whose tag was never written. Only the
	 * probes read before anything writes: zero where they look, before the header is
	 * committed, so a cut here leaves a blank partition (prime_probed_ends). */
	if (integ && (r = prime_probed_ends(cd)) < 0)
		refuse("cannot write the probed ends of the new integrity-protected "
		       "volume %s: %s",
		       st.node, strerror(-r));
	t_wipe = now_ms();
	crypt_free(cd);

	check_own_header();
	r = commit(true);
	if (r < 0)
		refuse("cannot write the new LUKS2 header to %s: %s. The partition is "
		       "left without a primary header; the next boot starts over.",
		       st.part.dev, strerror(-r));
	t_commit = now_ms();
	log_notice(
		"state: first boot: %s is now LUKS2 %s (%s), key sealed to PCRs %s; seal "
		"%llu ms, format %llu ms, %s%llu ms, commit %llu ms",
		st.part.dev, st.hdr.uuid,
		integ ? "with hmac(sha256) integrity" : "no integrity",
		seal_pcr_list(s->state_pcrs, pcrs, sizeof(pcrs)),
		(unsigned long long)seal_ms, (unsigned long long)(t_fmt - t_seal),
		integ ? "activate+ends " : "activate ",
		(unsigned long long)(t_wipe - t_fmt),
		(unsigned long long)(t_commit - t_wipe));
}

/* The TPM refused: name what moved since sealing, unlock nothing, keep the data. */
_noreturn_ static void refuse_drift(struct tpm *tpm)
{
	char msg[400], pcrs[64];
	int n;

	n = seal_drift(tpm, &st.hdr.token, MEASURE_LOG_PATH, 16, msg, sizeof(msg));
	if (n > 0)
		refuse("the TPM refuses to unseal the state key of %s: the boot differs "
		       "from the one it was sealed in: %s. Nothing was unlocked and the "
		       "data is intact; boot the image the node was set up with.",
		       st.part.dev, msg);
	if (n < 0)
		refuse("the TPM refuses to unseal the state key of %s and its PCRs "
		       "cannot be read: %s. Nothing was unlocked.",
		       st.part.dev, strerror(-n));
	refuse("the TPM refuses to unseal the state key of %s although PCRs %s are as "
	       "recorded at sealing: the token does not belong to this header or TPM. "
	       "Nothing was unlocked.",
	       st.part.dev, seal_pcr_list(st.hdr.token.pcr_mask, pcrs, sizeof(pcrs)));
}

static void later_boot(struct tpm *tpm, const uint8_t *area, const struct settings *s)
{
	static uint8_t copy[LUKS2_AREA_SIZE];
	struct crypt_device *cd = NULL;
	char pcrs[64], pcrs2[64];
	uint64_t t0 = now_ms(), t_unseal, unseal_ms;
	int n, r;

	if (st.hdr.token.pcr_mask != s->state_pcrs)
		log_warn("state: %s is sealed to PCRs %s; the config's state_pcrs (%s) "
			 "apply only to a new volume",
			 st.part.dev,
			 seal_pcr_list(st.hdr.token.pcr_mask, pcrs, sizeof(pcrs)),
			 seal_pcr_list(s->state_pcrs, pcrs2, sizeof(pcrs2)));
	n = unseal_key(tpm, &st.hdr.token, key);
	if (n == -EKEYREJECTED)
		refuse_drift(tpm);
	if (n == -ENOKEY)
		refuse("the state key of %s was sealed by another TPM (or this one was "
		       "cleared): this node cannot open it. Nothing was unlocked. Give "
		       "the node a blank state partition to start over.",
		       st.part.dev);
	if (n < 0)
		refuse("cannot unseal the state key of %s: %s. See the seal: lines "
		       "above.",
		       st.part.dev, strerror(-n));
	if ((size_t)n != st.hdr.volume_key_size)
		refuse("the key unsealed for %s has %d bytes; the header wants %u",
		       st.part.dev, n, st.hdr.volume_key_size);
	unseal_ms = now_ms() - t0;
	/* dm-crypt, dm-integrity and the ciphers, loading in the background while the TPM
	 * worked: the first step that needs them is next (its wait is logged apart). */
	modules_wait();
	t_unseal = now_ms();

	/* libcryptsetup gets the validated bytes, never the disk's: a header the host
	 * swaps after the check is not the one activated. */
	luks2_materialize(area, &st.hdr, copy);
	if (header_file(copy) < 0)
		refuse("cannot write the validated header copy %s", HDR_COPY);
	r = crypt_init_data_device(&cd, HDR_COPY, st.part.dev);
	if (r == 0)
		r = crypt_load(cd, CRYPT_LUKS2, NULL);
	if (r < 0)
		refuse("libcryptsetup does not load the validated header of %s: %s",
		       st.part.dev, strerror(-r));
	if (!streq(crypt_get_cipher(cd), "aes") ||
	    !streq(crypt_get_cipher_mode(cd), "xts-plain64") ||
	    crypt_get_volume_key_size(cd) != (int)st.hdr.volume_key_size ||
	    crypt_get_data_offset(cd) != LUKS2_DATA_OFFSET / 512 ||
	    crypt_get_sector_size(cd) != LUKS2_SECTOR || !crypt_get_uuid(cd) ||
	    !streq(crypt_get_uuid(cd), st.hdr.uuid))
		refuse("libcryptsetup reads the header copy of %s differently from "
		       "cvminit (cipher %s-%s, key %d bytes)",
		       st.part.dev, crypt_get_cipher(cd), crypt_get_cipher_mode(cd),
		       crypt_get_volume_key_size(cd));
	/* The key stays for measure_volume_key(); state_open() wipes it after. */
	r = crypt_activate_by_volume_key(cd, STATE_DM_NAME, (const char *)key, (size_t)n,
					 0);
	crypt_free(cd);
	if (r == -EPERM)
		refuse("the key the TPM unsealed does not match the LUKS2 digest of %s: "
		       "the header is not the one sealed with this key. Nothing was "
		       "unlocked.",
		       st.part.dev);
	if (r < 0)
		refuse("cannot activate the state volume on %s: %s. Are dm_crypt%s and "
		       "the crypto modules loaded?",
		       st.part.dev, strerror(-r),
		       st.hdr.integrity[0] ? ", dm_integrity" : "");
	st.open = true;
	wait_node(s->device_timeout);
	log_notice(
		"state: %s: LUKS2 %s unsealed (PCRs %s) in %llu ms, activated as %s in "
		"%llu ms%s",
		st.part.dev, st.hdr.uuid,
		seal_pcr_list(st.hdr.token.pcr_mask, pcrs, sizeof(pcrs)),
		(unsigned long long)unseal_ms, st.node,
		(unsigned long long)(now_ms() - t_unseal),
		st.hdr.token.initialized ? ""
					 : " (setup not finished: state_mount does)");
}

void state_open(struct measurer *m, const struct settings *s)
{
	static uint8_t area[LUKS2_AREA_SIZE];
	_cleanup_close_ int fd = -1;
	struct tpm *tpm = m ? measurer_tpm(m) : NULL;
	char err[300], type[64] = "", text[640];
	struct state_seen seen = {.luks_err = err, .fs_type = type};
	_cleanup_secret_ struct secret vk = {0};
	uint64_t size = 0;
	int r;

	if (!tpm)
		refuse("the state partition's key is sealed to a TPM and this node has "
		       "%s. Give the confidential VM a vTPM (measure=optional does not "
		       "cover the state).",
		       !m ? "no TPM"
		       : measurer_backend(m) == MEASURER_TDX
			       ? "no TPM (its measurements go to TDX RTMRs)"
			       : "no TPM the platform rule trusts for sealing (see the platform: "
				 "line above and docs/measured-boot.md)");
	r = secret_new(&vk, KEY_MAX);
	if (r < 0)
		refuse("cannot lock the key buffer in memory: %s", strerror(-r));
	key = vk.buf;
	crypt_metadata_locking(NULL, 0); /* PID 1 alone; /run/cryptsetup is not needed */

	find_state(&st.part, s->device_timeout);
	seen.dev = st.part.dev;
	seen.partuuid = st.part.uuid;
	/* The header is read once, here; everything after uses this copy. */
	fd = open(st.part.dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread_full(fd, area, sizeof(area), 0) < 0)
		refuse("cannot read the state partition %s: %s", st.part.dev,
		       strerror(errno));
	if (ioctl(fd, BLKGETSIZE64, &size) < 0 || size < STATE_MIN_SIZE)
		refuse("the state partition %s has %llu bytes; it needs at least %llu",
		       st.part.dev, (unsigned long long)size,
		       (unsigned long long)STATE_MIN_SIZE);
	seen.luks = luks2_inspect(area, sizeof(area), &st.hdr, err, sizeof(err));
	seen.primary_missing = st.hdr.primary_missing;
	seen.initialized = st.hdr.token.initialized;
	/* Only a partition without LUKS2 is probed: on a volume blkid sees crypto_LUKS. */
	if (seen.luks == 0)
		seen.fs = probe_fs(st.part.dev, type, sizeof(type));
	switch (state_plan_open(&seen, text, sizeof(text))) {
	case STATE_REFUSE:
		refuse("%s", text);
	case STATE_FIRST_BOOT:
	case STATE_REDO:
		log_notice("state: %s", text);
		first_boot(tpm, s);
		break;
	case STATE_OPEN:
		log_info("state: %s: LUKS2 %s, %s %u-bit, %u-byte sectors, integrity %s, "
			 "header copy %s (seqid %llu) validated",
			 st.part.dev, st.hdr.uuid, st.hdr.cipher, st.hdr.key_bits,
			 st.hdr.sector_size,
			 st.hdr.integrity[0] ? st.hdr.integrity : "none",
			 st.hdr.copy ? "secondary" : "primary",
			 (unsigned long long)st.hdr.seqid);
		later_boot(tpm, area, s);
		break;
	}
	measure_identity(m);
	measure_volume_key(m);
	st_measurer = m;
	key = NULL; /* vk is wiped and unmapped as its scope ends */
}

/* mkfs.ext4's geometry (its arguments below): 4 KiB blocks, 32768 per group. */
#define EXT4_BLOCK	  4096u
#define EXT4_GROUP_BLOCKS 32768u

static int zero_group_start(int fd, uint64_t group)
{
	static const uint8_t zero[EXT4_BLOCK] __attribute__((aligned(4096)));

	return pwrite_full(fd, zero, sizeof(zero),
			   (off_t)(group * EXT4_GROUP_BLOCKS * EXT4_BLOCK));
}

/* mkfs.ext4 writes each backup superblock as 1 KiB at the start of a 4 KiB block, and the
 * page cache reads the rest of that block before it writes: with integrity, a read of a
 * sector never written. Zero those blocks first. sparse_super puts the backups in group 1
 * and in the groups that are powers of 3, 5 and 7: their number grows with the logarithm
 * of the disk's size (4 on 1 GiB, 18 on 1 TiB). Returns the count or -errno. */
static int prime_backup_superblocks(void)
{
	_cleanup_close_ int fd = -1;
	uint64_t size = 0, groups;
	int n = 0, r = 0;

	fd = open(st.node, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0)
		return -errno;
	groups = (size / EXT4_BLOCK + EXT4_GROUP_BLOCKS - 1) / EXT4_GROUP_BLOCKS;
	if (groups > 1 && (r = zero_group_start(fd, 1)) == 0)
		n++;
	for (uint64_t base = 3; base <= 7 && r == 0; base += 2)
		for (uint64_t g = base; g < groups && r == 0; g *= base)
			if ((r = zero_group_start(fd, g)) == 0)
				n++;
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	return r < 0 ? r : n;
}

/* Sets the token's initialized flag on the header file and commits it to the disk. */
static void set_initialized(void)
{
	struct crypt_device *cd = NULL;
	_cleanup_free_ char *token = NULL;
	int r;

	st.hdr.token.initialized = true;
	r = seal_token_format(&st.hdr.token, &token);
	if (r == 0)
		r = crypt_init_data_device(&cd, HDR_COPY, st.part.dev);
	if (r == 0)
		r = crypt_load(cd, CRYPT_LUKS2, NULL);
	if (r == 0)
		r = crypt_token_json_set(cd, 0, token);
	crypt_free(cd);
	if (r >= 0)
		r = commit(false);
	if (r < 0)
		refuse("cannot record in the LUKS2 token of %s that its filesystem is "
		       "complete: %s",
		       st.part.dev, strerror(-r));
	log_info("state: %s marked initialized in its LUKS2 token", st.part.dev);
}

int state_mount(void)
{
	/* Blocks of 4 KiB (the volume's sectors), 32768 per group (EXT4_*); no discard;
	 * inode tables zeroed later by the kernel; a 16 MiB journal zeroed now, whatever
	 * the disk's size: with integrity, nothing ext4 reads is left unwritten, at a
	 * first-boot cost that does not grow with the disk (prime_probed_ends). */
	char *mkfs[] = {"/usr/sbin/mkfs.ext4",
			"-q",
			"-L",
			"state",
			"-b",
			"4096",
			"-g",
			"32768",
			"-J",
			"size=16",
			"-E",
			"nodiscard,lazy_itable_init=1,lazy_journal_init=0",
			NULL,
			NULL};
	char type[64] = "", text[640];
	struct state_volume vol = {.node = st.node,
				   .dev = st.part.dev,
				   .fs_type = type,
				   .initialized = st.hdr.token.initialized};
	uint64_t t0 = now_ms();
	int made = 0, r;

	if (!st.open)
		refuse("the state volume was not opened in the initrd");
	vol.fs = probe_fs(st.node, type, sizeof(type));
	switch (state_plan_mount(&vol, text, sizeof(text))) {
	case MOUNT_REFUSE:
		refuse("%s", text);
	case MOUNT_MKFS:
		log_notice("state: %s", text);
		mkfs[ARRAY_SIZE(mkfs) - 2] = st.node;
		if (st.hdr.integrity[0]) {
			r = prime_backup_superblocks();
			if (r < 0)
				refuse("cannot zero the backup superblock blocks of %s: %s",
				       st.node, strerror(-r));
			log_info(
				"state: zeroed %d block(s) where mkfs.ext4 writes backup "
				"superblocks (%s has integrity)",
				r, st.node);
		}
		r = run_wait(mkfs);
		if (r != 0)
			refuse("mkfs.ext4 on the state volume %s failed (status %d)",
			       st.node, r);
		made = 1;
		break;
	case MOUNT_KEEP:
		log_notice("state: %s", text);
		break;
	case MOUNT_AS_IS:
		break;
	}
	mkdir(STATE_MOUNT, 0755);
	if (mount(st.node, STATE_MOUNT, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME,
		  "errors=remount-ro") < 0)
		refuse("cannot mount the state volume %s (ext4, on %s) on %s: %s",
		       st.node, st.part.dev, STATE_MOUNT, strerror(errno));
	/* Before the volume is marked initialized: a cut in between leaves a volume still
	 * fresh whose counter is either absent (1 again) or stored (incremented). */
	measure_generation(!st.hdr.token.initialized);
	/* Only a filesystem that mounts is recorded as the volume's: a cut (or an error)
	 * before this leaves initialized=false, and the next boot looks again. */
	if (!st.hdr.token.initialized)
		set_initialized();
	log_info("state: %s (partuuid %s, LUKS2 as %s) mounted on %s%s in %llu ms",
		 st.part.dev, st.part.uuid, st.node, STATE_MOUNT,
		 made ? " (new filesystem)" : "", (unsigned long long)(now_ms() - t0));
	return made;
}

static void mkdir_p(const char *path, mode_t mode)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *s = buf + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			mkdir(buf, 0755);
			*s = '/';
		}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		log_warn_errno(-errno, "state: mkdir %s", buf);
}

/* An overlay over a read-only directory of the root, its changes kept in /var. */
static int overlay_writable(const char *dir, const char *name)
{
	char upper[128], work[128], opts[512];

	snprintf(upper, sizeof(upper), "/var/lib/cvminit/overlay/%s/upper", name);
	snprintf(work, sizeof(work), "/var/lib/cvminit/overlay/%s/work", name);
	mkdir_p(upper, 0755);
	mkdir_p(work, 0700);
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", dir, upper,
		 work);
	if (mount("overlay", dir, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
		return log_errno(-errno, "state: overlay on %s", dir);
	log_info("state: %s is writable (changes kept in %s)", dir, upper);
	return 0;
}

/* The node's machine ID, in systemd's form (32 lowercase hex digits, a version-4 UUID):
 * derived from the state volume's LUKS2 UUID, so it is stable for the life of the node's
 * state and new when the state is made anew, with nothing to write or to lose in a crash.
 * SHA-256 over a label and the UUID, so the ID does not reveal the header's UUID. */
int state_machine_id(const char *luks_uuid, char out[33])
{
	static const char label[] = "cvminit machine-id:";
	uint8_t d[32], in[sizeof(label) + 40];
	size_t n = strlen(luks_uuid);

	if (n == 0 || n > 40)
		return -EINVAL;
	memcpy(in, label, sizeof(label) - 1);
	memcpy(in + sizeof(label) - 1, luks_uuid, n);
	if (digest_compute(DIGEST_ALG_SHA256, in, sizeof(label) - 1 + n, d) < 0)
		return -EIO;
	d[6] = (d[6] & 0x0f) | 0x40; /* version 4 */
	d[8] = (d[8] & 0x3f) | 0x80; /* RFC 4122 variant */
	hex_encode(d, 16, out);
	return 0;
}

/* /etc/machine-id in the image says "uninitialized": a file in /run with the ID is bound
 * over it (read-only), for kubelet and containerd. A failure is logged, not fatal: the
 * services run without it. */
static void machine_id_bind(void)
{
	_cleanup_close_ int fd = -1;
	char id[33], line[34];

	if (state_machine_id(st.hdr.uuid, id) < 0) {
		log_warn("state: no machine ID: the LUKS2 UUID \"%s\" is unusable",
			 st.hdr.uuid);
		return;
	}
	snprintf(line, sizeof(line), "%s\n", id);
	fd = open(MACHINE_ID_RUN, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0444);
	if (fd < 0 || write(fd, line, 33) != 33) {
		log_warn_errno(-errno, "state: write %s", MACHINE_ID_RUN);
		return;
	}
	if (mount(MACHINE_ID_RUN, "/etc/machine-id", NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, "/etc/machine-id", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) <
		    0) {
		log_warn_errno(-errno,
			       "state: bind %s over /etc/machine-id (does the root "
			       "have that file?)",
			       MACHINE_ID_RUN);
		return;
	}
	log_info("state: machine ID %s (from LUKS2 %s), on /etc/machine-id", id,
		 st.hdr.uuid);
}

void state_writable_paths(void)
{
	static const char *const var_dirs[] = {
		"/var/log", "/var/lib/containerd", "/var/lib/kubelet", "/var/lib/cni",
		"/var/tmp",
	};

	for (size_t i = 0; i < ARRAY_SIZE(var_dirs); i++)
		mkdir_p(var_dirs[i], 0755);
	chmod("/var/tmp", 01777);
	/* kubelet writes its kubeconfig and PKI under /etc/kubernetes, CNI plugins their
	 * config under /etc/cni; the root keeps its own files underneath. */
	if (overlay_writable("/etc/kubernetes", "etc-kubernetes") < 0 ||
	    overlay_writable("/etc/cni", "etc-cni") < 0)
		fail_closed("cannot make /etc/kubernetes and /etc/cni writable: kubelet "
			    "would fail; is the overlay module in the initrd?");
	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		log_warn_errno(-errno, "state: tmpfs on /tmp");
	machine_id_bind();
}

void state_close(void)
{
	int r;

	if (!st.open)
		return;
	r = crypt_deactivate(NULL, STATE_DM_NAME);
	if (r < 0) {
		log_warn_errno(r, "shutdown: close the state volume %s", st.node);
		return;
	}
	st.open = false;
	log_info("shutdown: closed the state volume %s", st.node);
}
