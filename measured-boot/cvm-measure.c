/* cvm-measure: the host tool that predicts PCR 11 for a UKI (systemd-stub's section
 * measurements plus cvminit's phases) and verifies a boot's event log against PCR values.
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

#include "../init/util.h"
#include "digest.h"
#include "eventlog.h"
#include "pe.h"
#include "predict.h"
#include "replay.h"

enum {
	EXIT_MATCH = 0,
	EXIT_MISMATCH = 1,
	EXIT_USAGE = 2,
};

#define MAX_BANKS 4

static const char *const main_help =
	"Usage: cvm-measure COMMAND [OPTIONS]\n"
	"\n"
	"Reference values for cvminit nodes.\n"
	"\n"
	"Commands:\n"
	"  predict --uki FILE   PCR 11 after systemd-stub and after each cvminit phase;\n"
	"                       --json writes measurements.json\n"
	"  verify --log FILE --pcrs FILE\n"
	"                       replay an event log and compare it with PCR values\n"
	"  help [COMMAND]       this text, or a command's\n"
	"\n"
	"'cvm-measure COMMAND --help' describes a command's options and exit codes.\n";

static const char *const predict_help =
	"Usage: cvm-measure predict --uki FILE [--banks LIST] [--json FILE] [--phase "
	"PHASE]\n"
	"\n"
	"Predicts PCR 11 for a unified kernel image booted by systemd-stub 257.\n"
	"\n"
	"The stub extends PCR 11, in this order, for each of .linux .osrel .cmdline "
	".initrd\n"
	".ucode .splash .dtb .uname .sbat .pcrpkey that the UKI has (the first section "
	"of a\n"
	"name; VirtualSize 0 counts as absent; .pcrsig is never measured): first the "
	"section\n"
	"name with its trailing NUL, then the section's VirtualSize bytes as loaded "
	"(file\n"
	"data from PointerToRawData, zero-filled past SizeOfRawData). cvminit then "
	"extends\n"
	"the phase strings enter-initrd, leave-initrd, ready (bytes without NUL, as\n"
	"systemd-pcrphase does). UKIs with .profile sections are refused.\n"
	"\n"
	"Output: the measured sections, then one line per bank and phase:\n"
	"  PCR 11 <bank> <phase> <hex>\n"
	"where phase 'boot' is the value after the stub, before cvminit measures "
	"anything.\n"
	"\n"
	"Options:\n"
	"  --uki FILE      the UKI (PE32+)\n"
	"  --banks LIST    comma-separated banks: sha1 sha256 sha384 sha512\n"
	"                  (default sha256,sha384)\n"
	"  --json FILE     write {\"11\": {\"expected\": \"<sha256 hex>\", \"warnOnly\": "
	"false}}\n"
	"                  (Constellation's measurements.json) for --phase\n"
	"  --phase PHASE   boot, enter-initrd (default), leave-initrd or ready\n"
	"  -h, --help      this text\n"
	"\n"
	"Exit status: 0 done; 2 usage error or unreadable/malformed input.\n";

static const char *const verify_help =
	"Usage: cvm-measure verify --log FILE --pcrs FILE [--uki FILE]\n"
	"\n"
	"Replays a CEL-JSON event log (cvminit's /run/log/cvminit/measure.log or "
	"systemd's\n"
	"tpm2-measure.log) and compares every PCR listed in the PCRs file with the "
	"replay.\n"
	"For each PCR that differs it prints both values and the first record the PCR "
	"does\n"
	"not reflect (the record after the longest prefix of its records that "
	"reproduces\n"
	"the value).\n"
	"\n"
	"The log starts after the firmware and systemd-stub: their PCR 11 extends are "
	"not in\n"
	"it. With --uki, the stub's PCR 11 records for that UKI (as 'predict' computes "
	"them)\n"
	"are replayed before the log, so PCR 11 can be verified too.\n"
	"\n"
	"PCRs file: one value per line, '#' starts a comment, blank lines are ignored:\n"
	"  <pcr>: <bank>:<hex>          e.g. 11: sha256:9f86d0…\n"
	"or, as tpm2_pcrread prints them, a bank line followed by its PCRs:\n"
	"  sha256:\n"
	"    11: 0x9F86D0…\n"
	"Banks: sha1 sha256 sha384 sha512. Each bank is replayed and compared on the "
	"PCRs\n"
	"given for it.\n"
	"\n"
	"Options:\n"
	"  --log FILE    the event log\n"
	"  --pcrs FILE   the PCR values (see above)\n"
	"  --uki FILE    prepend systemd-stub's PCR 11 measurements of this UKI\n"
	"  -h, --help    this text\n"
	"\n"
	"Exit status: 0 every PCR matches; 1 some PCR differs; 2 usage error or an\n"
	"unreadable or malformed input (the message names the file and the byte "
	"offset).\n";

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

/* Reads a whole regular file; -errno. */
static int read_all(const char *path, uint8_t **ret, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *buf;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int e = k < 0 ? -errno : -EIO;
			free(buf);
			return e;
		}
		got += (size_t)k;
	}
	buf[got] = '\0';
	*ret = buf;
	*len = got;
	return 0;
}

/* Loads and parses a UKI; prints the error and returns EXIT_USAGE, or 0. */
static int load_uki(const char *path, uint8_t **buf, struct pe_file *pe)
{
	size_t len, off;
	const char *why;
	int r;

	r = read_all(path, buf, &len);
	if (r < 0)
		return input_error("%s: %s", path, strerror(-r));
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

static int write_json(const char *path, const char *sha256_hex)
{
	_cleanup_free_ char *tmp = NULL;
	FILE *f;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f,
		"{\n  \"11\": {\n    \"expected\": \"%s\",\n    \"warnOnly\": false\n  "
		"}\n}\n",
		sha256_hex);
	if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0) {
		int e = -errno;
		fclose(f);
		unlink(tmp);
		return e ? e : -EIO;
	}
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	return 0;
}

static int cmd_predict(int argc, char **argv)
{
	static const struct option opts[] = {
		{"uki", required_argument, NULL, 'u'},
		{"banks", required_argument, NULL, 'b'},
		{"json", required_argument, NULL, 'j'},
		{"phase", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *uki = NULL, *json = NULL, *phase = "enter-initrd";
	uint16_t algs[MAX_BANKS] = {DIGEST_ALG_SHA256, DIGEST_ALG_SHA384};
	size_t n_algs = 2;
	_cleanup_free_ uint8_t *buf = NULL;
	struct pe_file pe = {0};
	struct eventlog log = {0};
	char json_value[2 * DIGEST_MAX + 1] = "";
	bool phase_known;
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
		case 'j':
			json = optarg;
			break;
		case 'p':
			phase = optarg;
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
	phase_known = streq(phase, "boot");
	for (size_t i = 0; predict_phases[i]; i++)
		phase_known |= streq(phase, predict_phases[i]);
	if (!phase_known)
		return usage_error("predict ",
				   "--phase %s: not one of boot enter-initrd "
				   "leave-initrd ready",
				   phase);
	if (json) {
		bool have = false;
		for (size_t i = 0; i < n_algs; i++)
			have |= algs[i] == DIGEST_ALG_SHA256;
		if (!have)
			return usage_error("predict ",
					   "--json writes sha256 values: --banks "
					   "must include sha256");
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
		       "SizeOfRawData "
		       "%u)\n",
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
			struct replay_pcrs p;
			char hex[2 * DIGEST_MAX + 1];
			int size = replay_log(&log, algs[b], &p);

			if (size < 0) {
				ret = input_error("replay %s: %s",
						  digest_alg_name(algs[b]),
						  strerror(-size));
				goto out;
			}
			digest_to_hex(p.v[PREDICT_PCR], (size_t)size, hex);
			printf("PCR %d %s %s %s\n", PREDICT_PCR, digest_alg_name(algs[b]),
			       label, hex);
			if (algs[b] == DIGEST_ALG_SHA256 && streq(label, phase))
				memcpy(json_value, hex, sizeof(hex));
		}
	}
	if (json) {
		int r = write_json(json, json_value);
		if (r < 0) {
			ret = input_error("%s: %s", json, strerror(-r));
			goto out;
		}
		printf("wrote %s (PCR 11 sha256 after %s)\n", json, phase);
	}
	ret = EXIT_MATCH;
out:
	eventlog_free(&log);
	pe_free(&pe);
	return ret;
}

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

	r = read_all(path, &buf, &len);
	if (r < 0)
		return input_error("%s: %s", path, strerror(-r));
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
		    digest_from_hex(value, bank->pcrs.v[pcr], (size_t)size) != size)
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

static void describe_record(const struct eventlog *log, size_t idx, size_t n_stub,
			    const char *log_path, const char *uki_path)
{
	const struct eventlog_record *r;

	if (idx == SIZE_MAX) {
		printf("  no record explains it: the PCR was extended without a log "
		       "record\n");
		return;
	}
	r = &log->records[idx];
	if (idx < n_stub)
		printf("  first diverging: systemd-stub measurement %zu of %s: %s\n", idx,
		       uki_path, r->event);
	else
		printf("  first diverging: record %llu at byte offset %zu of %s: "
		       "\"%s\"\n",
		       (unsigned long long)r->recnum, r->offset, log_path,
		       r->event ? r->event : "");
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{"log", required_argument, NULL, 'l'},
		{"pcrs", required_argument, NULL, 'p'},
		{"uki", required_argument, NULL, 'u'},
		{"help", no_argument, NULL, 'h'},
		{},
	};
	const char *log_path = NULL, *pcrs_path = NULL, *uki = NULL;
	struct bank_values banks[MAX_BANKS];
	size_t n_banks = 0, n_stub = 0, bad_offset = 0;
	struct eventlog log = {0}, all = {0};
	_cleanup_free_ uint8_t *buf = NULL;
	struct pe_file pe = {0};
	bool mismatch = false;
	int c, r, ret;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			log_path = optarg;
			break;
		case 'p':
			pcrs_path = optarg;
			break;
		case 'u':
			uki = optarg;
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
	if (!log_path || !pcrs_path)
		return usage_error("verify ", "--log FILE and --pcrs FILE are required");

	ret = parse_pcrs(pcrs_path, banks, &n_banks);
	if (ret)
		return ret;

	r = eventlog_read(log_path, &log, &bad_offset);
	if (r == -EBADMSG) {
		ret = input_error("%s: malformed record at byte offset %zu", log_path,
				  bad_offset);
		goto out;
	}
	if (r < 0) {
		ret = input_error("%s: %s", log_path, strerror(-r));
		goto out;
	}

	if (uki) {
		uint16_t algs[MAX_BANKS];
		struct eventlog_record *grown;

		for (size_t i = 0; i < n_banks; i++)
			algs[i] = banks[i].pcrs.alg;
		ret = load_uki(uki, &buf, &pe);
		if (ret)
			goto out;
		ret = stub_records(uki, &pe, algs, n_banks, &all);
		if (ret)
			goto out;
		n_stub = all.n;
		/* The log's records follow the stub's; all owns them from here. */
		grown = realloc(all.records, (all.n + log.n) * sizeof(*grown));
		if (!grown) {
			ret = input_error("%s", strerror(ENOMEM));
			goto out;
		}
		all.records = grown;
		if (log.n)
			memcpy(all.records + all.n, log.records, log.n * sizeof(*grown));
		all.n += log.n;
		free(log.records);
		log = (struct eventlog){0};
	} else {
		all = log;
		log = (struct eventlog){0};
	}

	for (size_t b = 0; b < n_banks; b++) {
		const char *bank = digest_alg_name(banks[b].pcrs.alg);
		struct replay_pcrs replayed;
		int size = replay_log(&all, banks[b].pcrs.alg, &replayed);

		if (size == -ENODATA) {
			ret = input_error(
				"%s: a record has no %s digest: cannot replay that bank",
				log_path, bank);
			goto out;
		}
		if (size < 0) {
			ret = input_error("replay %s: %s", bank, strerror(-size));
			goto out;
		}
		for (unsigned p = 0; p < REPLAY_PCRS; p++) {
			struct replay_divergence d;
			char want[2 * DIGEST_MAX + 1], got[2 * DIGEST_MAX + 1];

			if (!(banks[b].mask & (UINT32_C(1) << p)))
				continue;
			r = replay_verify(&all, &banks[b].pcrs, UINT32_C(1) << p, &d);
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
			digest_to_hex(banks[b].pcrs.v[p], (size_t)size, want);
			digest_to_hex(replayed.v[p], (size_t)size, got);
			printf("PCR %u %s: MISMATCH\n", p, bank);
			printf("  pcrs file: %s\n", want);
			printf("  replayed:  %s\n", got);
			describe_record(&all, d.record, n_stub, log_path, uki);
			if (p == PREDICT_PCR && !uki)
				printf("  (PCR 11 holds systemd-stub's measurements, "
				       "which are not "
				       "in the log: pass --uki)\n");
		}
	}
	ret = mismatch ? EXIT_MISMATCH : EXIT_MATCH;
out:
	eventlog_free(&log);
	eventlog_free(&all);
	pe_free(&pe);
	return ret;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd)
		return usage_error("", "no command");
	if (streq(cmd, "-h") || streq(cmd, "--help") || streq(cmd, "help")) {
		const char *what = argc > 2 ? argv[2] : "";

		fputs(streq(what, "predict")  ? predict_help
		      : streq(what, "verify") ? verify_help
					      : main_help,
		      stdout);
		return EXIT_MATCH;
	}
	if (streq(cmd, "predict"))
		return cmd_predict(argc - 1, argv + 1);
	if (streq(cmd, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	return usage_error("", "unknown command '%s'", cmd);
}
