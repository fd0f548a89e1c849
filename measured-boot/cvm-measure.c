/* cvm-measure: the host tool that predicts PCRs 4, 11 and 15 of a cvminit node booted
 * from a UKI (measurements.json) and verifies a boot's event logs against PCR values.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/file.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "cpio.h"
#include "../lib/digest.h"
#include "../lib/hex.h"
#include "attest-cmd.h"
#include "eventlog.h"
#include "identity.h"
#include "measurements.h"
#include "pe.h"
#include "generation.h"
#include "predict.h"
#include "replay.h"
#include "tcglog.h"
#include "tpm.h"

enum {
	EXIT_MATCH = 0,
	EXIT_MISMATCH = 1,
	EXIT_USAGE = 2,
};

#define MAX_BANKS 4
#define HEX_MAX	  (2 * DIGEST_MAX + 1)
#define INPUT_MAX (1u << 30)

static const char *const main_help =
	"Usage: cvm-measure COMMAND [OPTIONS]\n"
	"\n"
	"Reference values for cvminit nodes.\n"
	"\n"
	"Commands:\n"
	"  predict --uki FILE   PCR 4, 11 and 15 of a node booted from the UKI, after\n"
	"                       each step; --json writes measurements.json\n"
	"  verify               replay event logs (cvminit's, the firmware's) and "
	"compare\n"
	"                       them with PCR values from a file or a TPM\n"
	"  refs --uki FILE      the reference values cvminit compares at boot (the\n"
	"                       initrd's /etc/cvminit/reference); --write fills them in\n"
	"  help [COMMAND]       this text, or a command's\n"
	"\n"
	"'cvm-measure COMMAND --help' describes a command's options and exit codes;\n"
	"docs/cvm-measure.md has the details.\n";

static const char *const refs_help =
	"Usage: cvm-measure refs --uki FILE [--write]\n"
	"\n"
	"Prints the reference values of a UKI: its command line as the stub passes it,\n"
	"the sha256 of the initrd's /etc/cvminit/cvminit.conf (or none) and the root\n"
	"identity of its roothash=, formed by the functions cvminit measures them with.\n"
	"--write also writes them into the initrd's /etc/cvminit/reference slot in\n"
	"place (padded with newlines; nothing else in the UKI moves).\n"
	"\n"
	"Exit status: 0 done, 2 bad input (not a UKI, no slot, values too long).\n";

static const char *const predict_help =
	"Usage: cvm-measure predict --uki FILE [--json FILE [--bank BANK]] [--phase "
	"PHASE]\n"
	"                           [--banks LIST] [--cmdline STRING] [--config FILE]\n"
	"                           [--state STRING | --state-from FILE] [--node-log "
	"FILE]\n"
	"\n"
	"Predicts PCR 4, 11 and 15 of a node booted from a unified kernel image by\n"
	"systemd-stub 257, with cvminit as the init of the UKI's initrd.\n"
	"\n"
	"PCR 4: OVMF (EDK2) extends, as it starts boot options,\n"
	"  boot-option  EV_EFI_ACTION \"" PREDICT_PCR4_ACTION "\"\n"
	"  separator    EV_SEPARATOR (4 zero bytes)\n"
	"then for each boot option that failed before the UKI's (--failed-boot-options)\n"
	"  returning    EV_EFI_ACTION \"" PREDICT_PCR4_RETURN "\"\n"
	"  boot-option  EV_EFI_ACTION \"" PREDICT_PCR4_ACTION "\"\n"
	"then\n"
	"  uki          EV_EFI_BOOT_SERVICES_APPLICATION: the UKI's Authenticode hash\n"
	"  .linux       EV_EFI_BOOT_SERVICES_APPLICATION: the Authenticode hash of the\n"
	"               .linux section as loaded, which the stub starts with LoadImage\n"
	"The UKI cannot tell how many boot options the firmware tries first (an empty\n"
	"DVD drive, a network boot option), nor whether Secure Boot, shim or a boot\n"
	"manager sits in front of it: those change PCR 4 (docs/cvm-measure.md).\n"
	"\n"
	"PCR 11: the stub extends, in this order, for each of .linux .osrel .cmdline\n"
	".initrd .ucode .splash .dtb .uname .sbat .pcrpkey that the UKI has (the first\n"
	"section of a name; VirtualSize 0 counts as absent; .pcrsig is never measured):\n"
	"the section name with its trailing NUL, then the section's VirtualSize bytes "
	"as\n"
	"loaded (file data from PointerToRawData, zero-filled past SizeOfRawData). "
	"cvminit\n"
	"then extends the phases enter-initrd, leave-initrd, ready, shutdown (the "
	"string's\n"
	"bytes without NUL, as systemd-pcrphase does). UKIs with .profile sections are\n"
	"refused.\n"
	"\n"
	"PCR 15: cvminit extends, in this order, the digest of\n"
	"  cvminit:cmdline  the kernel command line as /proc/cmdline shows it, without "
	"its\n"
	"                   newline: the .cmdline section up to its first NUL as the "
	"stub\n"
	"                   passes it on (leading and trailing whitespace and control\n"
	"                   characters dropped, inner control characters made spaces)\n"
	"  cvminit:config   the bytes of /etc/cvminit/cvminit.conf in the UKI's .initrd\n"
	"                   (uncompressed newc cpio archives; the last entry of a path\n"
	"                   wins); no bytes when there is none\n"
	"  cvminit:root     verity:<roothash>:<data partuuid>:<hash partuuid>:erofs, "
	"only\n"
	"                   when the command line has roothash=\n"
	"  cvminit:state    luks2:<uuid>:<cipher>-<mode>:<key bits>:<sector size>:\n"
	"                   <integrity>; per node, so only with --state or --state-from\n"
	"  cvminit:volume-key:<uuid>\n"
	"                   event type volume-key: HMAC(bank's hash, the volume key, "
	"that\n"
	"                   label); it cannot be computed without the key, so it is "
	"taken\n"
	"                   as logged from the node's event log (--node-log): pinned on\n"
	"                   first sight\n"
	"The state key is sealed (first boot) before cvminit:state: the line 'PCR 15 "
	"<bank>\n"
	"sealing <hex>' is the value it is sealed against, the same on every node.\n"
	"\n"
	"Output: the measured sections and PCR 15's inputs, then one line per PCR, bank\n"
	"and step, the value after that step:\n"
	"  PCR 4 <bank> <event> <hex>     event: boot-option separator [returning\n"
	"                                 boot-option]... uki .linux\n"
	"  PCR 11 <bank> <phase> <hex>    phase: boot (after the stub), enter-initrd,\n"
	"                                 leave-initrd, ready, shutdown\n"
	"  PCR 15 <bank> <event> <hex>    event: cvminit:cmdline … cvminit:state,\n"
	"                                 cvminit:volume-key:<uuid> (with --node-log)\n"
	"  PCR 15 <bank> sealing <hex>    the value the state key is sealed against\n"
	"\n"
	"Options:\n"
	"  --uki FILE         the UKI (PE32+)\n"
	"  --json FILE        write measurements.json, Constellation's shape:\n"
	"                       {\"4\": {\"expected\": \"<hex>\", \"warnOnly\": "
	"false},\n"
	"                        \"11\": {\"expected\": \"<hex>\", \"warnOnly\": "
	"false},\n"
	"                        \"15\": {\"expected\": \"<hex>\", \"warnOnly\": "
	"false}}\n"
	"                     PCR 4 after .linux. PCR 11 after --phase. PCR 15 after the\n"
	"                     node's volume-key record, only when the state and\n"
	"                     --node-log are given: PCR 15 at ready is per node;\n"
	"                     without them \"15\" is left out (a note on stderr)\n"
	"  --bank BANK        the JSON's bank: sha256 (TPM PCRs; default) or sha384 "
	"(the\n"
	"                     PCRs' sha384 values, for TDX comparisons; RTMR 2 itself "
	"folds\n"
	"                     PCRs 8-15 together and is not predicted)\n"
	"  --phase PHASE      PCR 11's step in the JSON: boot, enter-initrd, "
	"leave-initrd,\n"
	"                     ready (default) or shutdown\n"
	"  --banks LIST       the table's banks, comma-separated: sha1 sha256 sha384\n"
	"                     sha512 (default sha256,sha384; --bank is added)\n"
	"  --cmdline STRING   the kernel command line, instead of the UKI's .cmdline\n"
	"  --config FILE      the config file, instead of the .initrd's (/dev/null: "
	"none)\n"
	"  --state STRING     the node's cvminit:state data\n"
	"  --state-from FILE  read it from the LUKS2 header of a state partition (an "
	"image\n"
	"                     or a device; libcryptsetup, no device-mapper needed)\n"
	"  --failed-boot-options N\n"
	"                     boot options OVMF tries before the UKI's that fail to "
	"load\n"
	"                     or return (default 0; QEMU's q35 machine without "
	"-nodefaults\n"
	"                     has an empty DVD drive first in the boot order: 1)\n"
	"  --node-log FILE    the node's event log (/run/log/cvminit/measure.log): its\n"
	"                     cvminit:volume-key record is taken as logged (it must "
	"name\n"
	"                     the state's UUID); needs --state or --state-from\n"
	"  -h, --help         this text\n"
	"\n"
	"Exit status: 0 done; 2 usage error or an unreadable or malformed input (a UKI\n"
	"whose PCR 4 cannot be computed included: no measurements.json without it).\n";

static const char *const verify_help =
	"Usage: cvm-measure verify [--log FILE] [--firmware-log FILE] [--uki FILE]\n"
	"                          (--pcrs FILE | --tpm DEVICE) [--pcr LIST]\n"
	"\n"
	"Replays event logs and compares the result with PCR values. For each PCR that\n"
	"differs it prints the value the replay expects, the value found, and the first\n"
	"event the PCR does not reflect: the event after the longest prefix of its "
	"events\n"
	"that reproduces the value (or its first event when no prefix does).\n"
	"\n"
	"Logs (at least one):\n"
	"  --log FILE           cvminit's CEL-JSON log (/run/log/cvminit/measure.log) "
	"or\n"
	"                       systemd's tpm2-measure.log; records with \"extended\": "
	"false\n"
	"                       and TDX (RTMR) records are not replayed. Records of "
	"event\n"
	"                       type volume-key (an HMAC keyed with the node's volume "
	"key)\n"
	"                       cannot be recomputed: they are replayed as logged and\n"
	"                       listed in a note with their digests, to pin on first "
	"sight\n"
	"  --firmware-log FILE  the firmware's binary TCG event log in the crypto-agile\n"
	"                       format "
	"(/sys/kernel/security/tpm0/binary_bios_measurements),\n"
	"                       replayed from the PCRs' reset values (PCR 0 from its\n"
	"                       StartupLocality event); EV_NO_ACTION events are "
	"skipped.\n"
	"                       Its PCR 11 events are systemd-stub's; --log's PCR 11 and "
	"15\n"
	"                       records continue from there\n"
	"  --uki FILE           the UKI that booted. With --firmware-log, the log's PCR "
	"11\n"
	"                       events must be the stub's records for it, else the first "
	"that\n"
	"                       is not is reported as a mismatch. Without "
	"--firmware-log, the\n"
	"                       stub's records are replayed before --log's, so PCR 11 "
	"can be\n"
	"                       verified. With --firmware-log, its PCR 4 application "
	"events\n"
	"                       must be two, the UKI's and its .linux's Authenticode "
	"hashes\n"
	"\n"
	"PCR values (one of):\n"
	"  --pcrs FILE   a text file, one value per line, '#' starts a comment, blank "
	"lines\n"
	"                are ignored:\n"
	"                  <pcr>: <bank>:<hex>          e.g. 11: sha256:9f86d0…\n"
	"                or, as tpm2_pcrread prints them, a bank line then its PCRs:\n"
	"                  sha256:\n"
	"                    11: 0x9F86D0…\n"
	"                every PCR listed is compared in the bank it is listed for\n"
	"  --tpm DEVICE  read them from a TPM with tpm2-tss: DEVICE is a TPM character\n"
	"                device (/dev/tpmrm0) or swtpm:host=H,port=P (a swtpm, for "
	"tests).\n"
	"                Compared: the PCRs the logs extend, and 11 and 15 with --log, "
	"in\n"
	"                every active bank the logs have digests for\n"
	"  --pcr LIST    compare only these PCRs (comma-separated numbers, e.g. 11,15)\n"
	"  -h, --help    this text\n"
	"\n"
	"Banks: sha1 sha256 sha384 sha512.\n"
	"\n"
	"Exit status: 0 every PCR compared matches; 1 some PCR differs, a record of --log\n"
	"whose content is not what its digests are the hash of (or the firmware\n"
	"log's PCR 11 events or PCR 4 images are not the --uki's); 2 usage error, an\n"
	"unreadable or malformed input (the message names the file and the byte\n"
	"offset), or a TPM that cannot be read.\n";

static int usage_error(const char *help_cmd, const char *fmt, ...) _printf_(2, 3);
static int usage_error(const char *help_cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("cvm-measure: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'cvm-measure %s--help'.\n", help_cmd);
	return EXIT_USAGE;
}

static int input_error(const char *fmt, ...) _printf_(1, 2);
static int input_error(const char *fmt, ...)
{
	va_list ap;

	fputs("cvm-measure: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

/* A whole input file (a regular file, or /dev/null and the like when any_file); -errno. */
static int read_file(const char *path, bool any_file, uint8_t **ret, size_t *len)
{
	return read_file_alloc(path, any_file, INPUT_MAX, ret, len);
}

static const char *file_strerror(int r)
{
	return r == -EINVAL ? "not a regular file" : strerror(-r);
}

/* Loads and parses a UKI; prints the error and returns EXIT_USAGE, or 0. */
static int load_uki(const char *path, uint8_t **buf, struct pe_file *pe)
{
	size_t len, off;
	const char *why;
	int r;

	r = read_file(path, false, buf, &len);
	if (r < 0)
		return input_error("%s: %s", path, file_strerror(r));
	r = pe_parse(*buf, len, pe, &off, &why);
	if (r == -EBADMSG)
		return input_error(
			"%s: not a valid PE image: %s (byte offset %zu, 0x%zx)", path,
			why, off, off);
	if (r < 0)
		return input_error("%s: %s", path, strerror(-r));
	return 0;
}

/* Appends the stub's records; prints the error and returns EXIT_USAGE, or 0. */
static int stub_records(const char *path, const struct pe_file *pe, const uint16_t *algs,
			size_t n_algs, struct eventlog *log)
{
	int r = predict_stub_records(pe, algs, n_algs, log);

	if (r == -EOPNOTSUPP)
		return input_error(
			"%s: a multi-profile UKI (.profile sections): what the stub "
			"measures depends on the profile chosen at boot; not supported",
			path);
	if (r == -ENOENT)
		return input_error("%s: no .linux section: not a UKI", path);
	if (r == -EFBIG)
		return input_error(
			"%s: a section's VirtualSize exceeds its file data by more "
			"than we zero-fill",
			path);
	if (r < 0)
		return input_error("%s: %s", path, strerror(-r));
	return 0;
}

static int parse_banks(const char *list, uint16_t *algs, size_t *n)
{
	_cleanup_free_ char *copy = strdup(list);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	*n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int alg = digest_alg_from_name(t);

		if (alg < 0 || digest_size((uint16_t)alg) < 0)
			return -EINVAL;
		for (size_t i = 0; i < *n; i++)
			if (algs[i] == alg)
				return -EINVAL;
		if (*n == MAX_BANKS)
			return -EINVAL;
		algs[(*n)++] = (uint16_t)alg;
	}
	return *n > 0 ? 0 : -EINVAL;
}

/* "11,15" → bits 11 and 15; -EINVAL. */
static int parse_pcr_list(const char *list, uint32_t *mask)
{
	const char *p = list;

	*mask = 0;
	while (*p) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(p, &end, 10);
		if (end == p || errno || v >= REPLAY_PCRS || (*end && *end != ','))
			return -EINVAL;
		*mask |= UINT32_C(1) << v;
		p = *end ? end + 1 : end;
		if (*end && !*p)
			return -EINVAL;
	}
	return *mask ? 0 : -EINVAL;
}

/* The value of one PCR after the log, in hex; prints errors. */
static int fold_hex(const struct eventlog *log, uint16_t alg, unsigned pcr, char *hex)
{
	struct replay_pcrs p;
	int size = replay_log(log, alg, &p);

	if (size < 0)
		return input_error("replay %s: %s", digest_alg_name(alg),
				   strerror(-size));
	hex_encode(p.v[pcr], (size_t)size, hex);
	return 0;
}

/* measurements.json (measurements.h): PCR 4 and 11 enforced; PCR 15 enforced through its
 * image-wide records (the first n_image of log15), with its value when the node's records
 * were pinned (pcr15); the firmware's PCRs from fw (NULL: none) as warnOnly. */
static int write_json(const char *path, const char *pcr4, const char *pcr11,
		      const char *pcr15, const struct eventlog *log15, size_t n_image,
		      const struct replay_pcrs *fw, uint32_t fw_mask)
{
	struct measurements m = {0};
	int r = 0;

	const char *hex[3] = {pcr4, pcr11, pcr15};
	const unsigned pcrs[3] = {4, 11, 15};

	m.pcr[15].present = true;
	for (size_t i = 0; i < 3; i++) {
		int n;

		if (!hex[i])
			continue;
		n = hex_decode(hex[i], m.pcr[pcrs[i]].expected, DIGEST_MAX);
		if (n < 0)
			return -EINVAL;
		m.pcr[pcrs[i]].present = m.pcr[pcrs[i]].has_expected = true;
		m.pcr[pcrs[i]].expected_len = (size_t)n;
	}
	for (unsigned p = 0; fw && p < 8; p++) {
		if (p == 4 || !(fw_mask & (UINT32_C(1) << p)))
			continue;
		m.pcr[p].present = m.pcr[p].has_expected = m.pcr[p].warn_only = true;
		memcpy(m.pcr[p].expected, fw->v[p], 32);
		m.pcr[p].expected_len = 32;
	}
	if (n_image > MEAS_MAX_RECORDS)
		return -E2BIG;
	/* Borrowed from log15, not copied: not freed here. */
	for (size_t i = 0; i < n_image; i++) {
		const struct eventlog_record *e = &log15->records[i];
		struct meas_record *o = &m.replay[i];

		o->event = e->event;
		o->name = e->name;
		o->data = e->data;
		o->data_len = e->data_len;
		o->has_data = e->has_data;
		o->n_digests = e->n_digests;
		memcpy(o->digests, e->digests, sizeof(o->digests));
	}
	m.n_replay = n_image;
	m.per_node[0] = (char *)"cvminit:state";
	m.per_node[1] = (char *)PREDICT_VOLUME_KEY_EVENT;
	m.per_node[2] = (char *)GENERATION_EVENT;
	m.n_per_node = 3;
	if (m.per_node[1][strlen(m.per_node[1]) - 1] == ':') {
		/* "cvminit:volume-key:" names a prefix; the list holds the bare name. */
		static char bare[64];

		snprintf(bare, sizeof(bare), "%.*s", (int)strlen(m.per_node[1]) - 1,
			 m.per_node[1]);
		m.per_node[1] = bare;
	}
	r = measurements_write(path, &m);
	return r;
}

/* Printable form of a string for the table: "…" quoted, control bytes as \xNN. */
static void print_quoted(const char *s, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* PCR 15's inputs, owned. */
struct pcr15_inputs {
	char *cmdline;
	uint8_t *config_buf; /* when read from --config */
	struct predict_pcr15 in;
	char root[PREDICT_ROOT_MAX];
	char state[PREDICT_STATE_MAX];
};

/* Gathers what cvminit will measure into PCR 15 and prints it; prints errors. */
static int pcr15_gather(const char *uki, const struct pe_file *pe, const char *cmdline,
			const char *config, const char *state, const char *state_from,
			struct pcr15_inputs *p)
{
	const char *why;
	int r;

	if (cmdline) {
		p->cmdline = strdup(cmdline);
		if (!p->cmdline)
			return input_error("%s", strerror(ENOMEM));
		printf("cmdline ");
		print_quoted(p->cmdline, strlen(p->cmdline));
		printf(" (--cmdline)\n");
	} else {
		r = predict_uki_cmdline(pe, &p->cmdline);
		if (r == -ENOENT)
			return input_error("%s: no .cmdline section: the kernel command "
					   "line would come "
					   "from the boot loader; pass --cmdline STRING",
					   uki);
		if (r < 0)
			return input_error("%s: .cmdline: %s", uki, strerror(-r));
		printf("cmdline ");
		print_quoted(p->cmdline, strlen(p->cmdline));
		printf(" (the UKI's .cmdline as the stub passes it)\n");
	}
	p->in.cmdline = p->cmdline;

	if (config) {
		size_t len;

		r = read_file(config, true, &p->config_buf, &len);
		if (r < 0)
			return input_error("--config %s: %s", config, file_strerror(r));
		p->in.config = p->config_buf;
		p->in.config_len = len;
		printf("config %zu bytes (--config %s)\n", len, config);
	} else {
		const struct pe_section *s = pe_find(pe, ".initrd");
		struct cpio_file f;
		const uint8_t *data;
		size_t len, off;

		if (!s || s->virtual_size == 0)
			return input_error(
				"%s: no .initrd section: the initrd would come from the "
				"boot "
				"loader; pass --config FILE (/dev/null for none)",
				uki);
		data = pe_section_file_data(pe, s, &len);
		r = cpio_find(data, len, PREDICT_CONFIG_PATH, &f, &off, &why);
		if (r < 0)
			return input_error(
				"%s: .initrd (file offset 0x%x): byte offset %zu of the "
				"section: %s; pass --config FILE",
				uki, s->raw_offset, off, why ? why : strerror(-r));
		if (r == 0) {
			printf("config 0 bytes: no %s in the UKI's .initrd\n",
			       PREDICT_CONFIG_PATH);
		} else {
			p->in.config = f.data;
			p->in.config_len = f.size;
			printf("config %zu bytes: %s in the UKI's .initrd (archive %u, "
			       "byte "
			       "offset %zu of the section)\n",
			       f.size, PREDICT_CONFIG_PATH, f.archive, f.offset);
		}
	}

	r = predict_root_data(p->cmdline, p->root, sizeof(p->root), &why);
	if (r < 0)
		return input_error("%s: %s", cmdline ? "--cmdline" : uki,
				   why ? why : strerror(-r));
	if (r > 0) {
		p->in.root = p->root;
		printf("root %s\n", p->root);
	} else {
		printf("root: no roothash= on the command line, no cvminit:root "
		       "record\n");
	}

	if (state) {
		if (predict_state_check(state, &why) < 0)
			return usage_error("predict ", "--state %s: %s", state, why);
		snprintf(p->state, sizeof(p->state), "%s", state);
		p->in.state = p->state;
		printf("state %s (--state)\n", p->state);
	} else if (state_from) {
		r = predict_state_from_luks(state_from, p->state, sizeof(p->state), &why);
		if (r < 0)
			return input_error("--state-from %s: %s (%s)", state_from,
					   why ? why : "unreadable", strerror(-r));
		p->in.state = p->state;
		printf("state %s (the LUKS2 header of %s)\n", p->state, state_from);
	} else {
		printf("state: not predicted: it is per node (--state or "
		       "--state-from)\n");
	}
	return 0;
}

/* Appends PCR 4's records and prints them with the Authenticode hashes; prints errors. */
static int pcr4_records(const char *uki, const struct pe_file *pe, unsigned failed,
			const uint16_t *algs, size_t n_algs, struct eventlog *log)
{
	const char *why = NULL;
	int r = predict_pcr4_records(pe, failed, algs, n_algs, log, &why);

	if (r == -EBADMSG)
		return input_error(
			"%s: PCR 4: the UKI's Authenticode image hash cannot be "
			"computed: %s",
			uki, why);
	if (r == -ENOEXEC)
		return input_error(
			"%s: PCR 4: .linux is not a PE image the firmware could "
			"hash (%s); systemd-stub 257 starts the kernel only as one",
			uki, why);
	if (r < 0)
		return input_error("%s: PCR 4: %s", uki, strerror(-r));
	for (size_t i = 0; i < log->n; i++) {
		const struct eventlog_record *e = &log->records[i];

		if (!streq(e->event_type, "EV_EFI_BOOT_SERVICES_APPLICATION"))
			continue;
		for (size_t b = 0; b < e->n_digests; b++) {
			char hex[HEX_MAX];

			hex_encode(e->digests[b].buf, e->digests[b].size, hex);
			printf("authenticode %s %s %s\n", e->event,
			       digest_alg_name(e->digests[b].alg), hex);
		}
	}
	printf("PCR 4 assumes: OVMF starts the UKI after %u boot option(s) that failed "
	       "(--failed-boot-options), without Secure Boot, shim or a boot manager in "
	       "front of it\n",
	       failed);
	return 0;
}

/* Appends the node's volume-key record from node_log (when given), then its generation
 * record when it has one, and prints them; returns how many were appended (1 or 2), 0 not
 * asked for, -1 on an error (printed). */
static int pcr15_volume_key(const char *node_log, const char *state, const uint16_t *algs,
			    size_t n_algs, struct eventlog *log15)
{
	struct eventlog node = {0};
	size_t bad = 0;
	const char *why;
	int r;

	if (!node_log) {
		printf("volume-key: not predicted: PCR 15 at ready ends with the node's "
		       "cvminit:volume-key record, an HMAC keyed with its volume key "
		       "(--node-log takes it from the node's event log)\n");
		return 0;
	}
	r = eventlog_read(node_log, &node, &bad);
	if (r == -EBADMSG) {
		input_error("--node-log %s: malformed record at byte offset %zu",
			    node_log, bad);
	} else if (r < 0) {
		input_error("--node-log %s: %s", node_log, strerror(-r));
	} else {
		r = predict_volume_key_record(&node, state, algs, n_algs, log15, &why);
		if (r < 0)
			input_error("--node-log %s: %s", node_log,
				    why ? why : strerror(-r));
		else
			printf("volume-key %s (pinned: the digests logged in %s)\n",
			       log15->records[log15->n - 1].event, node_log);
	}
	if (r >= 0) {
		/* Then this boot's generation, when the node measures one. */
		r = predict_generation_record(&node, algs, n_algs, log15, &why);
		if (r == -ENOENT) {
			r = 1;
		} else if (r < 0) {
			input_error("--node-log %s: %s", node_log,
				    why ? why : strerror(-r));
		} else {
			printf("generation %.*s (pinned: the record logged in %s; per boot)\n",
			       (int)log15->records[log15->n - 1].data_len,
			       (const char *)log15->records[log15->n - 1].data, node_log);
			r = 2;
		}
	}
	eventlog_free(&node);
	return r < 0 ? -1 : r;
}

static bool phase_known(const char *phase)
{
	if (streq(phase, "boot"))
		return true;
	for (size_t i = 0; predict_phases[i]; i++)
		if (streq(phase, predict_phases[i]))
			return true;
	return false;
}

/* The firmware's PCRs (0-7) in sha256 after a reference boot's firmware log: OVMF's
 * values for measurements.json, warnOnly. */
static int firmware_values(const char *path, struct replay_pcrs *p, uint32_t *mask)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct eventlog fw = {0};
	unsigned locality = 0;
	size_t len, bad = 0;
	const char *why = NULL;
	int r;

	r = read_file(path, true, &buf, &len);
	if (r < 0)
		return input_error("%s: %s", path, file_strerror(r));
	r = tcglog_parse(buf, len, &fw, &locality, &bad, &why);
	if (r == -EBADMSG) {
		eventlog_free(&fw);
		return input_error("%s: byte offset %zu: %s", path, bad, why);
	}
	if (r < 0) {
		eventlog_free(&fw);
		return input_error("%s: %s", path, strerror(-r));
	}
	replay_reset(p, DIGEST_ALG_SHA256, locality);
	r = replay_apply(&fw, p);
	*mask = 0;
	for (size_t i = 0; i < fw.n; i++)
		if (fw.records[i].extended && fw.records[i].pcr < 8)
			*mask |= UINT32_C(1) << fw.records[i].pcr;
	eventlog_free(&fw);
	if (r < 0)
		return input_error("%s: replay sha256: %s", path, strerror(-r));
	return 0;
}

static int cmd_predict(int argc, char **argv)
{
	static const struct option opts[] = {
		{"uki", required_argument, NULL, 'u'},
		{"banks", required_argument, NULL, 'b'},
		{"bank", required_argument, NULL, 'B'},
		{"json", required_argument, NULL, 'j'},
		{"phase", required_argument, NULL, 'p'},
		{"cmdline", required_argument, NULL, 'c'},
		{"config", required_argument, NULL, 'C'},
		{"state", required_argument, NULL, 's'},
		{"state-from", required_argument, NULL, 'S'},
		{"failed-boot-options", required_argument, NULL, 'F'},
		{"node-log", required_argument, NULL, 'N'},
		{"firmware-log", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *fw_path = NULL;
	struct replay_pcrs fwp;
	uint32_t fw_mask = 0;
	unsigned failed = 0;
	const char *uki = NULL, *json = NULL, *phase = "ready", *cmdline = NULL,
		   *config = NULL, *state = NULL, *state_from = NULL, *node_log = NULL;
	uint16_t algs[MAX_BANKS] = {DIGEST_ALG_SHA256, DIGEST_ALG_SHA384};
	uint16_t json_alg = DIGEST_ALG_SHA256;
	size_t n_algs = 2, n15 = 0, n_seal = 0;
	bool have_vk = false;
	_cleanup_free_ uint8_t *buf = NULL;
	struct pe_file pe = {0};
	struct eventlog log = {0}, log15 = {0}, log4 = {0};
	struct pcr15_inputs in15 = {0};
	char json4[HEX_MAX] = "", json11[HEX_MAX] = "", json15[HEX_MAX] = "";
	bool have_json_bank = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			uki = optarg;
			break;
		case 'b':
			if (parse_banks(optarg, algs, &n_algs) < 0)
				return usage_error("predict ",
						   "--banks %s: want a comma-separated "
						   "list of sha1 sha256 sha384 sha512",
						   optarg);
			break;
		case 'B':
			if (!streq(optarg, "sha256") && !streq(optarg, "sha384"))
				return usage_error("predict ",
						   "--bank %s: want sha256 or sha384",
						   optarg);
			json_alg = (uint16_t)digest_alg_from_name(optarg);
			break;
		case 'j':
			json = optarg;
			break;
		case 'p':
			phase = optarg;
			break;
		case 'c':
			cmdline = optarg;
			break;
		case 'C':
			config = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'S':
			state_from = optarg;
			break;
		case 'F': {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || errno || optarg[0] == '-' ||
			    v > PREDICT_PCR4_MAX_FAILED)
				return usage_error(
					"predict ",
					"--failed-boot-options %s: want 0 to %d", optarg,
					PREDICT_PCR4_MAX_FAILED);
			failed = (unsigned)v;
			break;
		}
		case 'N':
			node_log = optarg;
			break;
		case 'f':
			fw_path = optarg;
			break;
		case 'h':
			fputs(predict_help, stdout);
			return EXIT_MATCH;
		default:
			return usage_error("predict ", "bad option");
		}
	}
	if (optind < argc)
		return usage_error("predict ", "unexpected argument '%s'", argv[optind]);
	if (!uki)
		return usage_error("predict ", "--uki FILE is required");
	if (!phase_known(phase))
		return usage_error("predict ",
				   "--phase %s: not one of boot enter-initrd "
				   "leave-initrd ready shutdown",
				   phase);
	if (state && state_from)
		return usage_error("predict ",
				   "--state and --state-from exclude each other");
	if (node_log && !state && !state_from)
		return usage_error("predict ",
				   "--node-log needs --state or --state-from: the "
				   "volume-key record follows cvminit:state");
	for (size_t i = 0; i < n_algs; i++)
		have_json_bank |= algs[i] == json_alg;
	if (!have_json_bank) {
		if (n_algs == MAX_BANKS)
			return usage_error("predict ", "--banks: too many banks");
		algs[n_algs++] = json_alg;
	}

	ret = load_uki(uki, &buf, &pe);
	if (ret)
		goto out;
	ret = stub_records(uki, &pe, algs, n_algs, &log);
	if (ret)
		goto out;

	printf("uki %s\n", uki);
	for (size_t i = 0; predict_stub_sections[i]; i++) {
		const struct pe_section *s = pe_find(&pe, predict_stub_sections[i]);

		if (!s || s->virtual_size == 0)
			continue;
		printf("measured %-8s %10u bytes (VirtualSize; file offset 0x%x, "
		       "SizeOfRawData %u)\n",
		       s->name, s->virtual_size, s->raw_offset, s->raw_size);
	}
	for (size_t i = 0; i < pe.n_sections; i++) {
		bool listed = false;
		for (size_t j = 0; predict_stub_sections[j]; j++)
			listed |= &pe.sections[i] ==
					  pe_find(&pe, predict_stub_sections[j]) &&
				  pe.sections[i].virtual_size > 0;
		if (!listed)
			printf("not measured %s\n", pe.sections[i].name);
	}

	ret = pcr4_records(uki, &pe, failed, algs, n_algs, &log4);
	if (ret)
		goto out;
	ret = pcr15_gather(uki, &pe, cmdline, config, state, state_from, &in15);
	if (ret)
		goto out;
	ret = predict_pcr15_records(&in15.in, algs, n_algs, &log15);
	if (ret < 0) {
		ret = input_error("PCR 15: %s", strerror(-ret));
		goto out;
	}
	n15 = (size_t)ret;
	/* The records before cvminit:state: PCR 15 when the state key is sealed. */
	n_seal = n15 - (in15.in.state ? 1 : 0);
	ret = pcr15_volume_key(node_log, in15.in.state, algs, n_algs, &log15);
	if (ret < 0) {
		ret = EXIT_USAGE;
		goto out;
	}
	have_vk = ret > 0;
	n15 += (size_t)ret;

	/* PCR 4: after each of the firmware's records. */
	for (size_t k = 1; k <= log4.n; k++) {
		struct eventlog prefix = {log4.records, k};

		for (size_t b = 0; b < n_algs; b++) {
			char hex[HEX_MAX];

			ret = fold_hex(&prefix, algs[b], PREDICT_PCR4, hex);
			if (ret)
				goto out;
			printf("PCR %d %s %s %s\n", PREDICT_PCR4,
			       digest_alg_name(algs[b]), log4.records[k - 1].event, hex);
			if (algs[b] == json_alg && k == log4.n)
				memcpy(json4, hex, sizeof(hex));
		}
	}
	/* PCR 11: after the stub ("boot"), then after each phase. */
	for (size_t step = 0;; step++) {
		const char *label = step == 0 ? "boot" : predict_phases[step - 1];

		if (!label)
			break;
		if (step > 0) {
			int r = predict_phase_record(label, algs, n_algs, &log);
			if (r < 0) {
				ret = input_error("phase %s: %s", label, strerror(-r));
				goto out;
			}
		}
		for (size_t b = 0; b < n_algs; b++) {
			char hex[HEX_MAX];

			ret = fold_hex(&log, algs[b], PREDICT_PCR, hex);
			if (ret)
				goto out;
			printf("PCR %d %s %s %s\n", PREDICT_PCR, digest_alg_name(algs[b]),
			       label, hex);
			if (algs[b] == json_alg && streq(label, phase))
				memcpy(json11, hex, sizeof(hex));
		}
	}
	/* PCR 15: after each of cvminit's records. */
	for (size_t k = 1; k <= n15; k++) {
		struct eventlog prefix = {log15.records, k};
		const char *event = log15.records[k - 1].event;

		for (size_t b = 0; b < n_algs; b++) {
			char hex[HEX_MAX];

			ret = fold_hex(&prefix, algs[b], PREDICT_PCR15, hex);
			if (ret)
				goto out;
			printf("PCR %d %s %s %s\n", PREDICT_PCR15,
			       digest_alg_name(algs[b]), event, hex);
			if (algs[b] == json_alg && k == n15 && have_vk)
				memcpy(json15, hex, sizeof(hex));
		}
	}
	for (size_t b = 0; b < n_algs; b++) {
		struct eventlog prefix = {log15.records, n_seal};
		char hex[HEX_MAX];

		ret = fold_hex(&prefix, algs[b], PREDICT_PCR15, hex);
		if (ret)
			goto out;
		printf("PCR %d %s sealing %s\n", PREDICT_PCR15, digest_alg_name(algs[b]),
		       hex);
	}

	if (json && fw_path && json_alg != DIGEST_ALG_SHA256) {
		ret = usage_error("predict ",
				  "--firmware-log: the JSON's bank must be sha256");
		goto out;
	}
	if (json && fw_path) {
		ret = firmware_values(fw_path, &fwp, &fw_mask);
		if (ret)
			goto out;
	}
	if (json) {
		int r = write_json(json, json4, json11, have_vk ? json15 : NULL, &log15,
				   n_seal, fw_path ? &fwp : NULL, fw_mask);
		if (r < 0) {
			ret = input_error("%s: %s", json, strerror(-r));
			goto out;
		}
		if (have_vk)
			printf("wrote %s: PCR 4 %s after .linux; PCR 11 %s after %s; PCR 15 %s "
			       "after %s (pinned from %s)\n",
			       json, digest_alg_name(json_alg), digest_alg_name(json_alg),
			       phase, digest_alg_name(json_alg),
			       log15.records[n15 - 1].event, node_log);
		else
			printf("wrote %s: PCR 4 %s after .linux; PCR 11 %s after %s; PCR 15's "
			       "image-wide records\n",
			       json, digest_alg_name(json_alg), digest_alg_name(json_alg),
			       phase);
		if (!have_vk)
			fprintf(stderr,
				"cvm-measure: note: PCR 15's value left out of %s (only its "
				"image-wide records, \"replay\", and the per-node events that "
				"may follow them, \"perNode\"): at ready it "
				"ends with the node's %scvminit:volume-key record (an "
				"HMAC keyed with its volume key) and its cvminit:generation, "
				"which only the node's event log gives: pass --state or --state-from and "
				"--node-log to pin it. The value the state key is sealed "
				"against is the 'PCR 15 %s sealing' line\n",
				json, in15.in.state ? "" : "cvminit:state and ",
				digest_alg_name(json_alg));
	}
	ret = EXIT_MATCH;
out:
	eventlog_free(&log);
	eventlog_free(&log15);
	eventlog_free(&log4);
	free(in15.cmdline);
	free(in15.config_buf);
	pe_free(&pe);
	return ret;
}

/* --- verify ---------------------------------------------------------------------- */

struct bank_values {
	struct replay_pcrs pcrs;
	uint32_t mask;
};

/* Parses the PCRs file (format in verify_help); prints errors itself. */
static int parse_pcrs(const char *path, struct bank_values *banks, size_t *n_banks)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t len, line_no = 0;
	int current = -1, r;
	char *line, *next;

	r = read_file(path, false, &buf, &len);
	if (r < 0)
		return input_error("%s: %s", path, file_strerror(r));
	if (memchr(buf, '\0', len))
		return input_error("%s: byte offset %zu: NUL byte in a text file", path,
				   (size_t)((uint8_t *)memchr(buf, '\0', len) - buf));
	*n_banks = 0;
	for (line = (char *)buf; line && *line; line = next) {
		size_t offset = (size_t)((uint8_t *)line - buf);
		char *p, *colon, *value, *end;
		unsigned long pcr;
		int alg, size;
		struct bank_values *bank = NULL;

		line_no++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if ((p = strchr(line, '#')))
			*p = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		end = line + strlen(line);
		while (end > line &&
		       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
			*--end = '\0';
		if (!*line)
			continue;

#define BAD(...)                                                                         \
	input_error("%s: line %zu (byte offset %zu): %s", path, line_no, offset,         \
		    __VA_ARGS__)

		colon = strchr(line, ':');
		if (!colon)
			return BAD("want '<pcr>: <bank>:<hex>' or '<bank>:'");
		*colon = '\0';
		/* tpm2_pcrread aligns single-digit PCRs: "0 : 0x…". */
		for (end = colon; end > line && (end[-1] == ' ' || end[-1] == '\t');)
			*--end = '\0';
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;

		alg = digest_alg_from_name(line);
		if (alg >= 0 && !*value) { /* "sha256:" — a tpm2_pcrread bank header */
			current = alg;
			continue;
		}
		errno = 0;
		pcr = strtoul(line, &p, 10);
		if (p == line || *p || errno || pcr >= REPLAY_PCRS)
			return BAD("want a PCR number 0-23 before ':'");

		colon = strchr(value, ':');
		if (colon) {
			*colon = '\0';
			alg = digest_alg_from_name(value);
			if (alg < 0)
				return BAD(
					"unknown bank (want sha1 sha256 sha384 sha512)");
			value = colon + 1;
		} else if (current >= 0) {
			alg = current;
		} else {
			return BAD("no bank: write '<pcr>: <bank>:<hex>'");
		}
		if (value[0] == '0' && (value[1] == 'x' || value[1] == 'X'))
			value += 2;
		size = digest_size((uint16_t)alg);
		if (size < 0)
			return BAD("bank not supported");

		for (size_t i = 0; i < *n_banks; i++)
			if (banks[i].pcrs.alg == alg)
				bank = &banks[i];
		if (!bank) {
			if (*n_banks == MAX_BANKS)
				return BAD("too many banks");
			bank = &banks[(*n_banks)++];
			memset(bank, 0, sizeof(*bank));
			bank->pcrs.alg = (uint16_t)alg;
			bank->pcrs.size = (uint16_t)size;
		}
		if (strlen(value) != 2 * (size_t)size ||
		    hex_decode(value, bank->pcrs.v[pcr], (size_t)size) != size)
			return BAD("the value is not a hex digest of the bank's size");
		if (bank->mask & (UINT32_C(1) << pcr))
			return BAD("this PCR is given twice for the bank");
		bank->mask |= UINT32_C(1) << pcr;
#undef BAD
	}
	if (*n_banks == 0)
		return input_error("%s: no PCR values", path);
	return 0;
}

static bool counts(const struct eventlog_record *r)
{
	return r->extended && r->rtmr < 0;
}

static bool log_has_bank(const struct eventlog *log, uint16_t alg)
{
	for (size_t i = 0; i < log->n; i++) {
		bool have = false;

		if (!counts(&log->records[i]))
			continue;
		for (size_t k = 0; k < log->records[i].n_digests; k++)
			have |= log->records[i].digests[k].alg == alg;
		if (!have)
			return false;
	}
	return true;
}

/* Reads the PCRs in mask, in every active bank the log can be replayed in; prints
 * errors and notes. */
static int read_tpm(const char *spec, const struct eventlog *log, uint32_t mask,
		    struct bank_values *banks, size_t *n_banks)
{
	struct tpm_bank tb[TPM_MAX_BANKS];
	const char *tcti = "device", *conf = spec;
	struct tpm *t = NULL;
	int r, n;

	if (startswith(spec, "swtpm:")) {
		tcti = "swtpm";
		conf = spec + strlen("swtpm:");
	}
	r = tpm_open(tcti, conf, &t);
	if (r < 0)
		return input_error("--tpm %s: %s", spec,
				   r == -EINVAL ? "not a TPM device path or swtpm:CONF"
						: strerror(-r));
	n = tpm_pcr_banks(t, tb, ARRAY_SIZE(tb));
	if (n < 0) {
		tpm_close(t);
		return input_error("--tpm %s: cannot list the PCR banks", spec);
	}
	*n_banks = 0;
	for (int i = 0; i < n; i++) {
		const char *name = digest_alg_name(tb[i].alg);
		struct bank_values *b;

		if (!name || digest_size(tb[i].alg) != tb[i].size) {
			printf("bank 0x%04x (%s): not compared: cvm-measure cannot "
			       "compute it\n",
			       tb[i].alg, tpm_alg_name(tb[i].alg) ?: "?");
			continue;
		}
		if (!log_has_bank(log, tb[i].alg)) {
			printf("bank %s: not compared: the logs have no %s digests\n",
			       name, name);
			continue;
		}
		if (*n_banks == MAX_BANKS)
			break;
		b = &banks[(*n_banks)++];
		memset(b, 0, sizeof(*b));
		b->pcrs.alg = tb[i].alg;
		b->pcrs.size = tb[i].size;
		b->mask = mask;
		for (unsigned p = 0; p < REPLAY_PCRS; p++) {
			if (!(mask & (UINT32_C(1) << p)))
				continue;
			r = tpm_pcr_read(t, tb[i].alg, p, b->pcrs.v[p]);
			if (r != tb[i].size) {
				tpm_close(t);
				return input_error("--tpm %s: cannot read PCR %u %s",
						   spec, p, name);
			}
		}
	}
	tpm_close(t);
	if (*n_banks == 0)
		return input_error(
			"--tpm %s: no active PCR bank the logs can be replayed in", spec);
	return 0;
}

/* Where the records of the combined log came from. */
struct sources {
	const char *fw_path, *uki_path, *log_path;
	size_t n_fw, n_stub; /* [0, n_fw) firmware, then the stub's, then --log's */
};

static void describe_record(const struct eventlog *log, size_t idx,
			    const struct sources *s)
{
	const struct eventlog_record *r = &log->records[idx];

	if (idx < s->n_fw)
		printf("event %llu at byte offset %zu of %s: %s \"%s\"\n",
		       (unsigned long long)r->recnum, r->offset, s->fw_path,
		       r->event_type ? r->event_type : "?", r->event ? r->event : "");
	else if (idx < s->n_fw + s->n_stub)
		printf("systemd-stub measurement %zu of %s: %s\n", idx - s->n_fw,
		       s->uki_path, r->event);
	else
		printf("record %llu at byte offset %zu of %s: \"%s\"\n",
		       (unsigned long long)r->recnum, r->offset, s->log_path,
		       r->event ? r->event : "");
}

static void describe_divergence(const struct eventlog *log,
				const struct replay_divergence *d,
				const struct sources *s)
{
	if (d->n_records == 0) {
		printf("  no event explains it: PCR %u has no events in the logs; it was "
		       "extended without a record\n",
		       d->pcr);
		return;
	}
	if (d->prefix_matched) {
		printf("  first diverging: ");
		describe_record(log, d->record, s);
		return;
	}
	printf("  no prefix of PCR %u's %zu events reproduces the value: one of them is "
	       "not what was extended, or the PCR was also extended without a record; "
	       "its first event: ",
	       d->pcr, d->n_records);
	describe_record(log, d->record, s);
}

/* Compares the firmware log's PCR 11 events with the stub's predicted records, in
 * order and in every bank both have. Returns true when they agree; prints the first
 * difference. */
static bool stub_events_match(const struct eventlog *fw, const struct eventlog *stub,
			      const char *fw_path, const char *uki_path)
{
	size_t i = 0, k = 0, n_fw11 = 0;

	for (size_t j = 0; j < fw->n; j++)
		n_fw11 += fw->records[j].pcr == PREDICT_PCR && counts(&fw->records[j]);
	for (;; i++, k++) {
		const struct eventlog_record *a, *b;

		while (i < fw->n &&
		       (fw->records[i].pcr != PREDICT_PCR || !counts(&fw->records[i])))
			i++;
		if (i == fw->n && k == stub->n)
			break;
		if (i == fw->n) {
			printf("PCR 11 systemd-stub events: MISMATCH\n"
			       "  %s has %zu PCR 11 events; %s predicts %zu, the next "
			       "being "
			       "%s\n",
			       fw_path, n_fw11, uki_path, stub->n,
			       stub->records[k].event);
			return false;
		}
		a = &fw->records[i];
		if (k == stub->n) {
			printf("PCR 11 systemd-stub events: MISMATCH\n"
			       "  %s has more PCR 11 events than %s predicts (%zu): "
			       "event "
			       "%llu at byte offset %zu: %s \"%s\"\n",
			       fw_path, uki_path, stub->n, (unsigned long long)a->recnum,
			       a->offset, a->event_type, a->event);
			return false;
		}
		b = &stub->records[k];
		for (size_t x = 0; x < a->n_digests; x++)
			for (size_t y = 0; y < b->n_digests; y++) {
				char ha[HEX_MAX], hb[HEX_MAX];

				if (a->digests[x].alg != b->digests[y].alg ||
				    memcmp(a->digests[x].buf, b->digests[y].buf,
					   a->digests[x].size) == 0)
					continue;
				hex_encode(a->digests[x].buf, a->digests[x].size, ha);
				hex_encode(b->digests[y].buf, b->digests[y].size, hb);
				printf("PCR 11 systemd-stub events: MISMATCH\n"
				       "  event %llu at byte offset %zu of %s: %s "
				       "\"%s\"\n"
				       "    %s %s\n"
				       "  is not %s's %s:\n"
				       "    %s %s\n",
				       (unsigned long long)a->recnum, a->offset, fw_path,
				       a->event_type, a->event,
				       digest_alg_name(a->digests[x].alg), ha, uki_path,
				       b->event, digest_alg_name(b->digests[y].alg), hb);
				return false;
			}
	}
	printf("PCR 11 systemd-stub events: the %zu in %s are %s's\n", n_fw11, fw_path,
	       uki_path);
	return true;
}

static bool is_image_event(const struct eventlog_record *r)
{
	return r->pcr == PREDICT_PCR4 && counts(r) && r->event_type &&
	       streq(r->event_type, "EV_EFI_BOOT_SERVICES_APPLICATION");
}

/* Compares the firmware log's PCR 4 application events with the UKI's and its kernel's
 * Authenticode hashes, in every bank both have: whatever the platform measured before
 * them, they say which binaries it started. Returns true when they agree or the log has
 * none (said in a note); prints the first difference. */
static bool images_match(const struct eventlog *fw, const struct pe_file *pe,
			 const char *fw_path, const char *uki_path)
{
	static const uint16_t banks[] = {DIGEST_ALG_SHA1, DIGEST_ALG_SHA256,
					 DIGEST_ALG_SHA384, DIGEST_ALG_SHA512};
	struct eventlog p4 = {0};
	const char *why = NULL;
	size_t n = 0, k = 0;
	bool ok = true;
	int r;

	for (size_t i = 0; i < fw->n; i++)
		n += is_image_event(&fw->records[i]);
	if (n == 0) {
		printf("note: %s has no PCR 4 application events; the UKI's image hashes "
		       "are not compared\n",
		       fw_path);
		return true;
	}
	r = predict_pcr4_records(pe, 0, banks, ARRAY_SIZE(banks), &p4, &why);
	if (r < 0) {
		printf("PCR 4 images: MISMATCH\n  %s: its PCR 4 cannot be predicted: "
		       "%s\n",
		       uki_path, why ? why : strerror(-r));
		eventlog_free(&p4);
		return false;
	}
	if (n != 2) {
		printf("PCR 4 images: MISMATCH\n  %s has %zu PCR 4 application events; "
		       "a UKI started by the firmware makes 2, the UKI and its .linux (a "
		       "boot manager or shim in front of it makes more)\n",
		       fw_path, n);
		eventlog_free(&p4);
		return false;
	}
	for (size_t i = 0; i < fw->n && ok; i++) {
		const struct eventlog_record *a = &fw->records[i], *b;

		if (!is_image_event(a))
			continue;
		while (!is_image_event(&p4.records[k]))
			k++;
		b = &p4.records[k++];
		for (size_t x = 0; x < a->n_digests && ok; x++)
			for (size_t y = 0; y < b->n_digests; y++) {
				char ha[HEX_MAX], hb[HEX_MAX];

				if (a->digests[x].alg != b->digests[y].alg ||
				    memcmp(a->digests[x].buf, b->digests[y].buf,
					   a->digests[x].size) == 0)
					continue;
				hex_encode(a->digests[x].buf, a->digests[x].size, ha);
				hex_encode(b->digests[y].buf, b->digests[y].size, hb);
				printf("PCR 4 images: MISMATCH\n"
				       "  event %llu at byte offset %zu of %s: %s\n"
				       "    %s %s\n"
				       "  is not the Authenticode hash of %s's %s:\n"
				       "    %s %s\n",
				       (unsigned long long)a->recnum, a->offset, fw_path,
				       a->event_type, digest_alg_name(a->digests[x].alg),
				       ha, uki_path, b->event,
				       digest_alg_name(b->digests[y].alg), hb);
				ok = false;
				break;
			}
	}
	if (ok)
		printf("PCR 4 images: the 2 in %s are %s and its .linux\n", fw_path,
		       uki_path);
	eventlog_free(&p4);
	return ok;
}

/* Moves src's records to the end of dst. */
static int eventlog_move(struct eventlog *dst, struct eventlog *src)
{
	struct eventlog_record *grown;

	if (src->n == 0)
		return 0;
	grown = realloc(dst->records, (dst->n + src->n) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	memcpy(grown + dst->n, src->records, src->n * sizeof(*grown));
	dst->records = grown;
	dst->n += src->n;
	free(src->records);
	*src = (struct eventlog){0};
	return 0;
}

/* The byte at offset of a file, or -1: to say why a log record is malformed. */
static int log_byte_at(const char *path, size_t offset)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	uint8_t c;

	if (fd < 0 || pread(fd, &c, 1, (off_t)offset) != 1)
		return -1;
	return c;
}

/* Records whose digests are HMACs keyed with a secret (cvminit:volume-key, systemd's
 * cryptsetup:): nothing here can recompute them, so they are replayed as logged and said
 * so, with the value a verifier pins the first time it sees the node. */
static void note_volume_keys(const struct eventlog *all, const struct sources *s)
{
	for (size_t i = s->n_fw + s->n_stub; i < all->n; i++) {
		const struct eventlog_record *r = &all->records[i];

		if (!r->event_type || !streq(r->event_type, PREDICT_VOLUME_KEY_TYPE))
			continue;
		printf("note: record %llu at byte offset %zu of %s: PCR %u \"%s\" (event "
		       "type volume-key) is an HMAC keyed with the node's volume key: it "
		       "cannot be recomputed and is replayed as logged; pin it on first "
		       "sight:\n",
		       (unsigned long long)r->recnum, r->offset, s->log_path, r->pcr,
		       r->event ? r->event : "");
		for (size_t d = 0; d < r->n_digests; d++) {
			char hex[HEX_MAX];

			hex_encode(r->digests[d].buf, r->digests[d].size, hex);
			printf("  %s %s\n", digest_alg_name(r->digests[d].alg) ?: "?",
			       hex);
		}
	}
}

/* Every record of cvminit's log must carry the content its digests are the hash of:
 * a record whose content and digest disagree was changed (or lies about what was
 * measured). Returns whether all agree. */
static bool check_contents(const struct eventlog *all, size_t first, const char *path)
{
	bool ok = true;

	for (size_t i = first; i < all->n; i++) {
		const struct eventlog_record *r = &all->records[i];
		char why[160];
		int k = eventlog_check_content(r, why, sizeof(why));

		if (k == 0 || k == -ENOKEY)
			continue;
		ok = false;
		printf("content: record %llu at byte offset %zu of %s: PCR %u \"%s\": "
		       "MISMATCH: %s\n",
		       (unsigned long long)r->recnum, r->offset, path, r->pcr,
		       r->event ? r->event : "", why);
	}
	return ok;
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{"log", required_argument, NULL, 'l'},
		{"firmware-log", required_argument, NULL, 'f'},
		{"pcrs", required_argument, NULL, 'p'},
		{"tpm", required_argument, NULL, 't'},
		{"pcr", required_argument, NULL, 'P'},
		{"uki", required_argument, NULL, 'u'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *pcrs_path = NULL, *tpm = NULL;
	struct sources src = {0};
	struct bank_values banks[MAX_BANKS];
	uint16_t stub_algs[MAX_BANKS] = {DIGEST_ALG_SHA1, DIGEST_ALG_SHA256,
					 DIGEST_ALG_SHA384, DIGEST_ALG_SHA512};
	size_t n_banks = 0, bad_offset = 0;
	struct eventlog cel = {0}, fw = {0}, stub = {0}, all = {0};
	_cleanup_free_ uint8_t *uki_buf = NULL, *fw_buf = NULL;
	struct pe_file pe = {0};
	uint32_t only = 0, touched = 0;
	unsigned locality = 0;
	bool mismatch = false, fw_has_pcr11 = false;
	int c, r, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			src.log_path = optarg;
			break;
		case 'f':
			src.fw_path = optarg;
			break;
		case 'p':
			pcrs_path = optarg;
			break;
		case 't':
			tpm = optarg;
			break;
		case 'P':
			if (parse_pcr_list(optarg, &only) < 0)
				return usage_error("verify ",
						   "--pcr %s: want comma-separated PCR "
						   "numbers 0-23",
						   optarg);
			break;
		case 'u':
			src.uki_path = optarg;
			break;
		case 'h':
			fputs(verify_help, stdout);
			return EXIT_MATCH;
		default:
			return usage_error("verify ", "bad option");
		}
	}
	if (optind < argc)
		return usage_error("verify ", "unexpected argument '%s'", argv[optind]);
	if (!src.log_path && !src.fw_path)
		return usage_error("verify ",
				   "--log FILE or --firmware-log FILE is required");
	if (!pcrs_path == !tpm)
		return usage_error("verify ",
				   "one of --pcrs FILE and --tpm DEVICE is required");

	if (src.fw_path) {
		const char *why;
		size_t len;

		r = read_file(src.fw_path, true, &fw_buf, &len);
		if (r < 0)
			return input_error("%s: %s", src.fw_path, file_strerror(r));
		r = tcglog_parse(fw_buf, len, &fw, &locality, &bad_offset, &why);
		if (r == -EBADMSG) {
			ret = input_error("%s: byte offset %zu: %s", src.fw_path,
					  bad_offset, why);
			goto out;
		}
		if (r < 0) {
			ret = input_error("%s: %s", src.fw_path, strerror(-r));
			goto out;
		}
		for (size_t i = 0; i < fw.n; i++)
			fw_has_pcr11 |= fw.records[i].pcr == PREDICT_PCR;
	}
	if (src.log_path) {
		r = eventlog_read(src.log_path, &cel, &bad_offset);
		if (r == -EBADMSG) {
			ret = input_error(
				"%s: malformed record at byte offset %zu: %s",
				src.log_path, bad_offset,
				log_byte_at(src.log_path, bad_offset) == 0x1e
					? "not a complete JSON object with pcr and "
					  "digests"
					: "no record separator (0x1E) there: not a "
					  "JSON-SEQ CEL log");
			goto out;
		}
		if (r < 0) {
			ret = input_error("%s: %s", src.log_path, strerror(-r));
			goto out;
		}
	}
	if (src.uki_path) {
		ret = load_uki(src.uki_path, &uki_buf, &pe);
		if (ret)
			goto out;
		ret = stub_records(src.uki_path, &pe, stub_algs, ARRAY_SIZE(stub_algs),
				   &stub);
		if (ret)
			goto out;
	}

	/* One log: the firmware's, the stub's records unless the firmware log has them,
	 * then cvminit's. Different PCRs fold independently; within PCR 11 this is boot
	 * order. */
	if (src.uki_path && fw_has_pcr11) {
		if (!stub_events_match(&fw, &stub, src.fw_path, src.uki_path))
			mismatch = true;
		eventlog_free(&stub);
	} else if (src.uki_path && src.fw_path) {
		printf("note: %s has no PCR 11 events; replaying %s's stub records\n",
		       src.fw_path, src.uki_path);
	}
	if (src.uki_path && src.fw_path &&
	    !images_match(&fw, &pe, src.fw_path, src.uki_path))
		mismatch = true;
	src.n_fw = fw.n;
	src.n_stub = stub.n;
	if (eventlog_move(&all, &fw) < 0 || eventlog_move(&all, &stub) < 0 ||
	    eventlog_move(&all, &cel) < 0) {
		ret = input_error("%s", strerror(ENOMEM));
		goto out;
	}
	for (size_t i = 0; i < all.n; i++)
		if (counts(&all.records[i]))
			touched |= UINT32_C(1) << all.records[i].pcr;
	note_volume_keys(&all, &src);
	if (src.log_path && !check_contents(&all, src.n_fw + src.n_stub, src.log_path))
		mismatch = true;

	if (pcrs_path) {
		ret = parse_pcrs(pcrs_path, banks, &n_banks);
		if (ret)
			goto out;
		if (only)
			for (size_t b = 0; b < n_banks; b++)
				banks[b].mask &= only;
	} else {
		uint32_t mask = touched;

		if (src.log_path)
			mask |= UINT32_C(1) << PREDICT_PCR | UINT32_C(1) << PREDICT_PCR15;
		if (src.uki_path)
			mask |= UINT32_C(1) << PREDICT_PCR;
		if (only)
			mask = only;
		ret = read_tpm(tpm, &all, mask, banks, &n_banks);
		if (ret)
			goto out;
	}

	{
		uint32_t any = 0;

		for (size_t b = 0; b < n_banks; b++)
			any |= banks[b].mask;
		if (!any) {
			ret = input_error("no PCR to compare: %s has none of the PCRs "
					  "--pcr selects",
					  pcrs_path ? pcrs_path : tpm);
			goto out;
		}
	}
	for (size_t b = 0; b < n_banks; b++) {
		const char *bank = digest_alg_name(banks[b].pcrs.alg);
		struct replay_pcrs start, replayed;
		int size;

		replay_reset(&start, banks[b].pcrs.alg, locality);
		replayed = start;
		size = replay_apply(&all, &replayed);
		if (size == -ENODATA) {
			ret = input_error("a record of the logs has no %s digest: cannot "
					  "replay that bank",
					  bank);
			goto out;
		}
		if (size < 0) {
			ret = input_error("replay %s: %s", bank, strerror(-size));
			goto out;
		}
		for (unsigned p = 0; p < REPLAY_PCRS; p++) {
			struct replay_divergence d;
			char want[HEX_MAX], got[HEX_MAX];

			if (!(banks[b].mask & (UINT32_C(1) << p)))
				continue;
			r = replay_verify_from(&all, &start, &banks[b].pcrs,
					       UINT32_C(1) << p, &d);
			if (r < 0) {
				ret = input_error("verify PCR %u %s: %s", p, bank,
						  strerror(-r));
				goto out;
			}
			if (r == 0) {
				printf("PCR %u %s: match\n", p, bank);
				continue;
			}
			mismatch = true;
			hex_encode(replayed.v[p], (size_t)size, want);
			hex_encode(banks[b].pcrs.v[p], (size_t)size, got);
			printf("PCR %u %s: MISMATCH\n", p, bank);
			printf("  %-18s %s\n", "expected (replay):", want);
			printf("  %-18s %s\n",
			       tpm ? "got (TPM):" : "got (pcrs file):", got);
			describe_divergence(&all, &d, &src);
			if (p == PREDICT_PCR && !src.uki_path && !fw_has_pcr11)
				printf("  (PCR 11 holds systemd-stub's measurements, "
				       "which "
				       "are not in the log: pass --uki or "
				       "--firmware-log)\n");
		}
	}
	ret = mismatch ? EXIT_MISMATCH : EXIT_MATCH;
out:
	eventlog_free(&cel);
	eventlog_free(&fw);
	eventlog_free(&stub);
	eventlog_free(&all);
	pe_free(&pe);
	return ret;
}

/* The first line of an unfilled reference slot (image/mkosi.finalize makes it), and of a
 * filled one (identity_reference()). */
#define SLOT_MARKER	    "unfilled-cvminit-reference-slot"
#define SLOT_FILLED	    "# cvminit reference values"
#define REFERENCE_SLOT_PATH "/etc/cvminit/reference"

static int cmd_refs(int argc, char **argv)
{
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ char *cmdline = NULL;
	const char *uki = NULL, *why = NULL;
	const struct pe_section *s;
	struct cpio_file conf, slot;
	struct pe_file pe = {0};
	const uint8_t *initrd;
	bool write = false;
	char text[8192];
	size_t len, off;
	int r, n, has_conf;

	for (int i = 1; i < argc; i++) {
		if (streq(argv[i], "--uki") && i + 1 < argc)
			uki = argv[++i];
		else if (streq(argv[i], "--write"))
			write = true;
		else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
			fputs(refs_help, stdout);
			return EXIT_MATCH;
		} else
			return usage_error("refs ", "unknown option '%s'", argv[i]);
	}
	if (!uki)
		return usage_error("refs ", "--uki FILE is required");
	r = load_uki(uki, &buf, &pe);
	if (r)
		goto out;
	r = predict_uki_cmdline(&pe, &cmdline);
	if (r < 0) {
		r = input_error("%s: .cmdline: %s", uki,
				r == -ENOENT ? "no such section" : strerror(-r));
		goto out;
	}
	s = pe_find(&pe, ".initrd");
	if (!s || s->virtual_size == 0) {
		r = input_error("%s: no .initrd section", uki);
		goto out;
	}
	initrd = pe_section_file_data(&pe, s, &len);
	has_conf = cpio_find(initrd, len, PREDICT_CONFIG_PATH, &conf, &off, &why);
	r = has_conf < 0 ? has_conf
			 : cpio_find(initrd, len, REFERENCE_SLOT_PATH, &slot, &off, &why);
	if (r < 0) {
		r = input_error("%s: .initrd: byte offset %zu of the section: %s", uki,
				off, why ? why : strerror(-r));
		goto out;
	}
	n = identity_reference(cmdline, has_conf ? conf.data : NULL,
			       has_conf ? conf.size : 0, text, sizeof(text));
	if (n < 0) {
		r = input_error("%s: %s", uki,
				n == -EINVAL ? "its roothash= is one cvminit refuses"
					     : "the reference values are too long");
		goto out;
	}
	fputs(text, stdout);
	if (!write) {
		r = EXIT_MATCH;
		goto out;
	}
	if (r == 0 || (slot.size < sizeof(SLOT_FILLED) - 1) ||
	    (memcmp(slot.data, SLOT_MARKER, sizeof(SLOT_MARKER) - 1) != 0 &&
	     memcmp(slot.data, SLOT_FILLED, sizeof(SLOT_FILLED) - 1) != 0)) {
		r = input_error(
			"%s: the initrd has no %s slot (image/mkosi.finalize makes it)",
			uki, REFERENCE_SLOT_PATH);
		goto out;
	}
	if ((size_t)n > slot.size) {
		r = input_error(
			"%s: the reference values (%d bytes) do not fit the %zu-byte slot",
			uki, n, slot.size);
		goto out;
	}
	{
		_cleanup_close_ int fd = open(uki, O_WRONLY | O_CLOEXEC);
		_cleanup_free_ char *fill = malloc(slot.size);

		if (!fill) {
			r = input_error("%s", strerror(ENOMEM));
			goto out;
		}
		memcpy(fill, text, (size_t)n);
		memset(fill + n, '\n', slot.size - (size_t)n);
		/* The slot's bytes sit verbatim in the file: a newc cpio stores file data
		 * uncompressed, without a checksum. */
		r = fd < 0 ? -errno
			   : pwrite_full(fd, fill, slot.size, (off_t)(slot.data - buf));
		if (r < 0) {
			r = input_error("%s: write the reference slot: %s", uki,
					strerror(-r));
			goto out;
		}
	}
	r = EXIT_MATCH;
out:
	pe_free(&pe);
	return r;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	/* The libraries (tpm.c) log through the sink the program sets: here stderr, errors
	 * only. */
	log_set_sink(log_sink_stderr);
	log_set_max_level(LOG_ERR);
	if (!cmd)
		return usage_error("", "no command");
	if (streq(cmd, "-h") || streq(cmd, "--help") || streq(cmd, "help")) {
		const char *what = argc > 2 ? argv[2] : "";

		fputs(streq(what, "predict")  ? predict_help
		      : streq(what, "verify") ? verify_help
		      : streq(what, "refs")   ? refs_help
					      : main_help,
		      stdout);
		return EXIT_MATCH;
	}
	if (streq(cmd, "predict"))
		return cmd_predict(argc - 1, argv + 1);
	if (streq(cmd, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (streq(cmd, "attest"))
		return cmd_attest(argc - 1, argv + 1);
	if (streq(cmd, "refs"))
		return cmd_refs(argc - 1, argv + 1);
	return usage_error("", "unknown command '%s'", cmd);
}
