/* What OVMF extends into PCR 4 and systemd-stub 257 and cvminit into PCR 11 and 15,
 * computed from the UKI file (and, for the state, a LUKS2 header). The stub's rules
 * (src/boot/efi/stub.c measure_sections(), src/boot/efi/pe.c) are in predict.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libcryptsetup.h>

#include "../lib/cmdline.h"
#include "../lib/util.h"
#include "../lib/digest.h"
#include "identity.h"
#include "generation.h"
#include "predict.h"

/* systemd src/fundamental/uki.h: .linux .osrel .cmdline .initrd .ucode .splash .dtb
 * .uname .sbat .pcrsig .pcrpkey .profile ("PLEASE DO NOT REORDER"), .pcrsig not measured.
 */
const char *const predict_stub_sections[] = {
	".linux", ".osrel", ".cmdline", ".initrd",  ".ucode",	".splash",
	".dtb",	  ".uname", ".sbat",	".pcrpkey", ".profile", NULL,
};

const char *const predict_phases[] = {"enter-initrd", "leave-initrd", "ready", "shutdown",
				      NULL};

const char *const predict_pcr15_events[] = {"cvminit:cmdline", "cvminit:config",
					    "cvminit:root", "cvminit:state", NULL};

/* Appends r (its digests filled in) with copies of event and event_type. */
static int append_record(struct eventlog *log, struct eventlog_record r,
			 const char *event, const char *event_type)
{
	struct eventlog_record *grown;

	r.recnum = log->n;
	r.event = strdup(event);
	r.event_type = event_type ? strdup(event_type) : NULL;
	if (!r.event || (event_type && !r.event_type))
		goto oom;
	grown = realloc(log->records, (log->n + 1) * sizeof(*grown));
	if (!grown)
		goto oom;
	log->records = grown;
	log->records[log->n++] = r;
	return 0;
oom:
	free(r.event);
	free(r.event_type);
	return -ENOMEM;
}

int predict_append(struct eventlog *log, unsigned pcr, const char *event,
		   const char *event_type, const void *data, size_t len,
		   const uint16_t *algs, size_t n_algs)
{
	struct eventlog_record r = {.pcr = pcr, .rtmr = -1, .extended = true};

	if (pcr > EVENTLOG_MAX_PCR || n_algs > EVENTLOG_MAX_DIGESTS)
		return -EINVAL;
	for (size_t i = 0; i < n_algs; i++) {
		int k = digest_compute(algs[i], data, len, r.digests[i].buf);

		if (k < 0)
			return k;
		r.digests[i].alg = algs[i];
		r.digests[i].size = (uint16_t)k;
	}
	r.n_digests = n_algs;
	return append_record(log, r, event, event_type);
}

/* The section s as the loader placed it: VirtualSize bytes from its VirtualAddress, the
 * file data then zeros. *filled is set when the zero fill needed a copy (free it). */
static int loaded_section(const struct pe_file *pe, const struct pe_section *s,
			  const uint8_t **data, size_t *len, uint8_t **filled)
{
	*filled = NULL;
	*data = pe_section_file_data(pe, s, len);
	if (s->virtual_size > *len) {
		if (s->virtual_size > PREDICT_MAX_ZERO_FILL)
			return -EFBIG;
		*filled = calloc(1, s->virtual_size);
		if (!*filled)
			return -ENOMEM;
		memcpy(*filled, *data, *len);
		*data = *filled;
		*len = s->virtual_size;
	}
	return 0;
}

static int append_section(struct eventlog *log, const struct pe_file *pe,
			  const struct pe_section *s, const char *name,
			  const uint16_t *algs, size_t n_algs)
{
	char event[64];
	_cleanup_free_ uint8_t *filled = NULL;
	const uint8_t *data;
	size_t len;
	int r;

	snprintf(event, sizeof(event), "uki-section-name:%s", name);
	r = predict_append(log, PREDICT_PCR, event, NULL, name, strlen(name) + 1, algs,
			   n_algs);
	if (r < 0)
		return r;

	/* The stub hashes VirtualSize bytes at ImageBase + VirtualAddress; past the file
	 * data the loader zero-filled them. */
	r = loaded_section(pe, s, &data, &len, &filled);
	if (r < 0)
		return r;
	snprintf(event, sizeof(event), "uki-section:%s", name);
	return predict_append(log, PREDICT_PCR, event, NULL, data, len, algs, n_algs);
}

int predict_stub_records(const struct pe_file *pe, const uint16_t *algs, size_t n_algs,
			 struct eventlog *log)
{
	const struct pe_section *linux_section = pe_find(pe, ".linux");
	int n = 0;

	if (pe_find(pe, ".profile"))
		return -EOPNOTSUPP;
	if (!linux_section || linux_section->virtual_size == 0)
		return -ENOENT;
	for (size_t i = 0; predict_stub_sections[i]; i++) {
		const struct pe_section *s = pe_find(pe, predict_stub_sections[i]);
		int r;

		/* The first entry of a name wins; with VirtualSize 0 the stub treats the
		 * section as absent. */
		if (!s || s->virtual_size == 0)
			continue;
		r = append_section(log, pe, s, predict_stub_sections[i], algs, n_algs);
		if (r < 0)
			return r;
		n += 2;
	}
	return n;
}

/* An EV_EFI_BOOT_SERVICES_APPLICATION record: the image's Authenticode hash per bank. */
static int append_image(struct eventlog *log, const struct pe_file *image,
			const char *event, const uint16_t *algs, size_t n_algs,
			const char **why)
{
	struct eventlog_record r = {.pcr = PREDICT_PCR4, .rtmr = -1, .extended = true};

	if (n_algs > EVENTLOG_MAX_DIGESTS)
		return -EINVAL;
	for (size_t i = 0; i < n_algs; i++) {
		int k = pe_authenticode(image, algs[i], r.digests[i].buf, why);

		if (k < 0)
			return k;
		r.digests[i].alg = algs[i];
		r.digests[i].size = (uint16_t)k;
	}
	r.n_digests = n_algs;
	return append_record(log, r, event, "EV_EFI_BOOT_SERVICES_APPLICATION");
}

int predict_pcr4_records(const struct pe_file *pe, unsigned failed, const uint16_t *algs,
			 size_t n_algs, struct eventlog *log, const char **why)
{
	static const uint8_t separator[4] = {0};
	const struct pe_section *s = pe_find(pe, ".linux");
	_cleanup_free_ uint8_t *filled = NULL;
	struct pe_file kernel = {0};
	const uint8_t *data;
	size_t len, off;
	int r;

	*why = NULL;
	if (failed > PREDICT_PCR4_MAX_FAILED)
		return -EINVAL;
	if (!s || s->virtual_size == 0)
		return -ENOENT;
	r = loaded_section(pe, s, &data, &len, &filled);
	if (r < 0)
		return r;
	/* The stub's LoadImage() gets the section from memory: the firmware hashes that
	 * buffer as a whole file, its size VirtualSize. */
	r = pe_parse(data, len, &kernel, &off, why);
	if (r < 0)
		goto out_kernel;

	r = predict_append(log, PREDICT_PCR4, "boot-option", "EV_EFI_ACTION",
			   PREDICT_PCR4_ACTION, strlen(PREDICT_PCR4_ACTION), algs,
			   n_algs);
	if (r < 0)
		goto out;
	r = predict_append(log, PREDICT_PCR4, "separator", "EV_SEPARATOR", separator,
			   sizeof(separator), algs, n_algs);
	if (r < 0)
		goto out;
	/* The separators go in once, at the first attempt; each later one says the
	 * previous returned. */
	for (unsigned i = 0; i < failed; i++) {
		r = predict_append(log, PREDICT_PCR4, "returning", "EV_EFI_ACTION",
				   PREDICT_PCR4_RETURN, strlen(PREDICT_PCR4_RETURN), algs,
				   n_algs);
		if (r < 0)
			goto out;
		r = predict_append(log, PREDICT_PCR4, "boot-option", "EV_EFI_ACTION",
				   PREDICT_PCR4_ACTION, strlen(PREDICT_PCR4_ACTION), algs,
				   n_algs);
		if (r < 0)
			goto out;
	}
	r = append_image(log, pe, "uki", algs, n_algs, why);
	if (r < 0)
		goto out;
	r = append_image(log, &kernel, ".linux", algs, n_algs, why);
	if (r < 0)
		goto out_kernel;
	r = 4 + 2 * (int)failed;
out:
	pe_free(&kernel);
	return r;
out_kernel:
	pe_free(&kernel);
	return r == -EBADMSG ? -ENOEXEC : r;
}

int predict_phase_record(const char *phase, const uint16_t *algs, size_t n_algs,
			 struct eventlog *log)
{
	return predict_append(log, PREDICT_PCR, phase, "phase", phase, strlen(phase),
			      algs, n_algs);
}

/* systemd src/boot/util.c shall_be_whitespace(): control characters, space, DEL. */
static bool stub_whitespace(uint8_t c)
{
	return c <= 0x20 || c == 0x7f;
}

char *predict_mangle_cmdline(const uint8_t *data, size_t len)
{
	const uint8_t *nul = memchr(data, 0, len);
	size_t n = nul ? (size_t)(nul - data) : len, i = 0, o = 0, end = 0;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	while (i < n && stub_whitespace(data[i]))
		i++;
	for (; i < n; i++) {
		if (stub_whitespace(data[i])) {
			out[o++] = ' ';
			continue;
		}
		out[o++] = (char)data[i];
		end = o;
	}
	out[end] = '\0';
	return out;
}

int predict_uki_cmdline(const struct pe_file *pe, char **ret)
{
	const struct pe_section *s = pe_find(pe, ".cmdline");
	const uint8_t *data;
	size_t len;

	if (!s || s->virtual_size == 0)
		return -ENOENT;
	/* Past the file data the loaded section is zeros: the string ends there. */
	data = pe_section_file_data(pe, s, &len);
	*ret = predict_mangle_cmdline(data, len);
	return *ret ? 0 : -ENOMEM;
}

/* As init/root.c: "roothash=" with nothing after it is present, and malformed. */
int predict_root_data(const char *cmdline, char *out, size_t len, const char **why)
{
	char h[1024];
	int n;

	*why = NULL;
	n = cmdline_get(cmdline, "roothash", h, sizeof(h));
	if (n == 0 && !cmdline_has_key(cmdline, "roothash"))
		return 0;
	if (n == -EEXIST) {
		*why = "roothash= is given more than once (cvminit refuses to boot)";
		return -EEXIST;
	}
	if (n < 0) {
		*why = "the command line cannot be parsed for roothash= (cvminit refuses to boot)";
		return -EINVAL;
	}
	if (len < PREDICT_ROOT_MAX)
		return -ENOBUFS;
	/* The function cvminit forms its cvminit:root data with. */
	n = identity_root(h, out, len);
	if (n == -EINVAL) {
		*why = "roothash= is not 64 lower-case hex digits (cvminit refuses to boot)";
		return n;
	}
	return n < 0 ? n : 1;
}

static void quiet(int level, const char *msg, void *data)
{
	(void)level;
	(void)msg;
	(void)data;
}

int predict_state_from_luks(const char *path, char *out, size_t len, const char **why)
{
	struct crypt_params_integrity ip = {0};
	struct crypt_device *cd = NULL;
	const char *uuid, *cipher, *mode, *integrity = "none";
	char cipher_mode[96];
	int r, key;

	*why = NULL;
	/* Our messages name the problem; libcryptsetup's own would go to stderr. */
	crypt_set_log_callback(NULL, quiet, NULL);
	r = crypt_init(&cd, path);
	if (r < 0) {
		*why = "cannot open it";
		return r;
	}
	r = crypt_load(cd, CRYPT_LUKS2, NULL);
	if (r < 0) {
		*why = crypt_load(cd, CRYPT_LUKS1, NULL) == 0
			       ? "a LUKS1 header: cvminit's state is LUKS2"
			       : "no valid LUKS2 header (libcryptsetup cannot load it)";
		r = -EINVAL;
		goto out;
	}
	uuid = crypt_get_uuid(cd);
	cipher = crypt_get_cipher(cd);
	mode = crypt_get_cipher_mode(cd);
	key = crypt_get_volume_key_size(cd);
	if (!uuid || !cipher || !mode) {
		*why = "the LUKS2 header has no UUID or no crypt segment";
		r = -EINVAL;
		goto out;
	}
	if (key <= 0) {
		*why = "the LUKS2 header has no keyslot, so no volume key size";
		r = -EINVAL;
		goto out;
	}
	/* With dm-integrity the volume key is the cipher key then the integrity key;
	 * cvminit's identity names the cipher's (init/luks.h luks2_identity()). */
	if (crypt_get_integrity_info(cd, &ip) == 0 && ip.integrity && *ip.integrity) {
		integrity = ip.integrity;
		if (ip.integrity_key_size >= (uint32_t)key) {
			*why = "the integrity key is not shorter than the volume key";
			r = -EINVAL;
			goto out;
		}
		key -= (int)ip.integrity_key_size;
	}
	snprintf(cipher_mode, sizeof(cipher_mode), "%s-%s", cipher, mode);
	r = identity_state(uuid, cipher_mode, (unsigned)key * 8,
			   (unsigned)crypt_get_sector_size(cd), integrity, out, len);
	if (r < 0) {
		*why = "the header's strings are too long";
		r = -ENOBUFS;
		goto out;
	}
	r = 0;
out:
	crypt_free(cd);
	return r;
}

int predict_state_check(const char *state, const char **why)
{
	int colons = 0;

	*why = NULL;
	if (!startswith(state, "luks2:")) {
		*why = "does not start with luks2:";
		return -EINVAL;
	}
	if (strlen(state) >= PREDICT_STATE_MAX) {
		*why = "is too long";
		return -EINVAL;
	}
	for (const char *p = state; *p; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			*why = "contains whitespace or a control character";
			return -EINVAL;
		}
		colons += *p == ':';
	}
	if (colons != 5) {
		*why = "is not luks2:<uuid>:<cipher>-<mode>:<key bits>:<sector size>:"
		       "<integrity>";
		return -EINVAL;
	}
	return 0;
}

int predict_pcr15_records(const struct predict_pcr15 *in, const uint16_t *algs,
			  size_t n_algs, struct eventlog *log)
{
	const struct {
		const char *event;
		const void *data;
		size_t len;
		bool present;
	} recs[] = {
		{"cvminit:cmdline", in->cmdline ? in->cmdline : "",
		 in->cmdline ? strlen(in->cmdline) : 0, true},
		{"cvminit:config", in->config ? (const void *)in->config : "",
		 in->config_len, true},
		{"cvminit:root", in->root, in->root ? strlen(in->root) : 0,
		 in->root != NULL},
		{"cvminit:state", in->state, in->state ? strlen(in->state) : 0,
		 in->state != NULL},
	};
	struct eventlog_record *last;
	int n = 0;

	if (!in->cmdline)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(recs); i++) {
		int r;

		if (!recs[i].present)
			continue;
		r = predict_append(log, PREDICT_PCR15, recs[i].event, NULL, recs[i].data,
				   recs[i].len, algs, n_algs);
		if (r < 0)
			return r;
		/* As cvminit logs it: the content beside the digests. */
		last = &log->records[log->n - 1];
		last->data = malloc(recs[i].len ? recs[i].len : 1);
		if (!last->data)
			return -ENOMEM;
		memcpy(last->data, recs[i].data, recs[i].len);
		last->data_len = recs[i].len;
		last->has_data = true;
		if (streq(recs[i].event, "cvminit:config") &&
		    !(last->name = strdup("/etc/cvminit/cvminit.conf")))
			return -ENOMEM;
		n++;
	}
	return n;
}

static bool is_volume_key_type(const struct eventlog_record *r)
{
	return r->event_type && streq(r->event_type, PREDICT_VOLUME_KEY_TYPE);
}

static bool is_generation(const struct eventlog_record *r)
{
	return r->event && streq(r->event, GENERATION_EVENT);
}

/* Appends a copy of a node's record to log, with its digests in the banks asked for (in
 * that order), its event, event_type when given and, with data, its content. */
static int pin_record(const struct eventlog_record *found, const uint16_t *algs,
		      size_t n_algs, const char *event_type, bool data,
		      const char *bank_why, struct eventlog *log, const char **why)
{
	struct eventlog_record r = {.pcr = PREDICT_PCR15, .rtmr = -1, .extended = true};
	struct eventlog_record *grown = NULL;

	for (size_t b = 0; b < n_algs; b++) {
		size_t i;

		for (i = 0; i < found->n_digests; i++)
			if (found->digests[i].alg == algs[b])
				break;
		if (i == found->n_digests ||
		    found->digests[i].size != digest_size(algs[b])) {
			*why = bank_why;
			return -ENODATA;
		}
		r.digests[b] = found->digests[i];
	}
	r.n_digests = n_algs;
	r.recnum = log->n;
	r.event = strdup(found->event);
	if (event_type)
		r.event_type = strdup(event_type);
	if (data && found->has_data) {
		r.data = malloc(found->data_len + 1);
		if (r.data) {
			memcpy(r.data, found->data, found->data_len);
			r.data_len = found->data_len;
			r.has_data = true;
		}
	}
	if (r.event && (r.event_type || !event_type) &&
	    (r.data || !data || !found->has_data))
		grown = realloc(log->records, (log->n + 1) * sizeof(*grown));
	if (!grown) {
		free(r.event);
		free(r.event_type);
		free(r.data);
		return -ENOMEM;
	}
	log->records = grown;
	log->records[log->n++] = r;
	return 0;
}

int predict_volume_key_record(const struct eventlog *node, const char *state,
			      const uint16_t *algs, size_t n_algs, struct eventlog *log,
			      const char **why)
{
	const struct eventlog_record *found;
	const char *uuid;
	size_t uuid_len;

	*why = NULL;
	if (n_algs > EVENTLOG_MAX_DIGESTS || !startswith(state, "luks2:"))
		return -EINVAL;
	uuid = state + strlen("luks2:");
	uuid_len = strcspn(uuid, ":");
	if (eventlog_pcr_records(node, 0, PREDICT_PCR15, is_volume_key_type, &found) >
	    1) {
		*why = "the log has more than one extended volume-key record for PCR 15 (one "
		       "boot makes one)";
		return -EEXIST;
	}
	if (!found) {
		*why = "the log has no extended PCR 15 record of event type volume-key "
		       "(cvminit:volume-key:<uuid>)";
		return -ENOENT;
	}
	if (!found->event || !startswith(found->event, PREDICT_VOLUME_KEY_EVENT) ||
	    strlen(found->event) != strlen(PREDICT_VOLUME_KEY_EVENT) + uuid_len ||
	    strncmp(found->event + strlen(PREDICT_VOLUME_KEY_EVENT), uuid, uuid_len) !=
		    0) {
		*why = "its volume-key record names another LUKS2 UUID than the state";
		return -EXDEV;
	}
	return pin_record(found, algs, n_algs, PREDICT_VOLUME_KEY_TYPE, false,
			  "its volume-key record lacks a digest in a bank asked for", log,
			  why);
}

int predict_generation_record(const struct eventlog *node, const uint16_t *algs,
			      size_t n_algs, struct eventlog *log, const char **why)
{
	const struct eventlog_record *found;

	*why = NULL;
	if (n_algs > EVENTLOG_MAX_DIGESTS)
		return -EINVAL;
	if (eventlog_pcr_records(node, 0, PREDICT_PCR15, is_generation, &found) > 1) {
		*why = "the log has more than one extended cvminit:generation record for PCR "
		       "15 (one boot makes one)";
		return -EEXIST;
	}
	if (!found)
		return -ENOENT;
	return pin_record(found, algs, n_algs, NULL, true,
			  "its cvminit:generation record lacks a digest in a bank asked "
			  "for",
			  log, why);
}
