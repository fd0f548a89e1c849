/* Writer and reader of the CEL-JSON event log (see eventlog.h for the record format). The
 * writer serialises with json-c and appends under flock(); the reader never trusts the
 * file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../lib/hex.h"
#include "../lib/log.h"
#include "eventlog.h"

#define RS 0x1e

static int mkdir_parents(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

int eventlog_open(const char *path)
{
	int fd, r;

	r = mkdir_parents(path);
	if (r < 0)
		return log_errno(r, "eventlog: create directories of %s", path);
	/* Public data (digests and event names), read by verifiers: 0644. */
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return log_errno(-errno, "eventlog: open %s", path);
	return fd;
}

int eventlog_lock(int fd)
{
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return log_errno(-errno, "eventlog: lock");
	return 0;
}

void eventlog_unlock(int fd)
{
	(void)flock(fd, LOCK_UN);
}

/* The number of records already in the log: the record separators in it. */
static int count_records(int fd, uint64_t *ret)
{
	char buf[4096];
	uint64_t n = 0;
	off_t off = 0;
	ssize_t k;

	while ((k = pread(fd, buf, sizeof(buf), off)) != 0) {
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (ssize_t i = 0; i < k; i++)
			n += buf[i] == RS;
		off += k;
	}
	*ret = n;
	return 0;
}

int json_add(json_object *o, const char *key, json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

/* Whether the bytes are UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF) without NUL: then they go into the log as a JSON string, readable. */
static bool utf8_text(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];
		uint32_t cp;
		size_t k;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static int add_data(json_object *content, const struct eventlog_record *r)
{
	_cleanup_free_ char *hex = NULL;

	if (utf8_text(r->data, r->data_len))
		return json_add(content, "data",
				json_object_new_string_len((const char *)r->data,
							   (int)r->data_len));
	hex = malloc(2 * r->data_len + 1);
	if (!hex)
		return -ENOMEM;
	hex_encode(r->data, r->data_len, hex);
	return json_add(content, "dataHex", json_object_new_string(hex));
}

static json_object *record_to_json(const struct eventlog_record *r)
{
	json_object *o = json_object_new_object(), *digests, *content;
	int e = 0;

	if (!o)
		return NULL;
	e |= json_add(o, "recnum", json_object_new_uint64(r->recnum));
	e |= json_add(o, "pcr", json_object_new_int((int)r->pcr));
	if (r->rtmr >= 0)
		e |= json_add(o, "rtmr", json_object_new_int(r->rtmr));
	digests = json_object_new_array();
	e |= json_add(o, "digests", digests);
	for (size_t i = 0; !e && i < r->n_digests; i++) {
		const struct digest *d = &r->digests[i];
		char hex[2 * DIGEST_MAX + 1];
		json_object *x = json_object_new_object();

		if (!x || json_object_array_add(digests, x) < 0) {
			json_object_put(x);
			e = 1;
			break;
		}
		hex_encode(d->buf, d->size, hex);
		e |= json_add(x, "hashAlg",
			      json_object_new_string(digest_alg_name(d->alg)));
		e |= json_add(x, "digest", json_object_new_string(hex));
	}
	e |= json_add(o, "content_type", json_object_new_string("systemd"));
	content = json_object_new_object();
	e |= json_add(o, "content", content);
	if (!e) {
		e |= json_add(content, "string", json_object_new_string(r->event));
		if (r->event_type)
			e |= json_add(content, "eventType",
				      json_object_new_string(r->event_type));
		if (r->has_data)
			e |= add_data(content, r);
		if (r->name)
			e |= json_add(content, "name", json_object_new_string(r->name));
		e |= json_add(content, "extended", json_object_new_boolean(r->extended));
	}
	if (e) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

int eventlog_append_locked(int fd, struct eventlog_record *r)
{
	_cleanup_free_ char *buf = NULL;
	const char *json;
	json_object *o;
	size_t len, done = 0;
	int k;

	if (!r->event || r->pcr > EVENTLOG_MAX_PCR || r->n_digests == 0 ||
	    r->n_digests > EVENTLOG_MAX_DIGESTS ||
	    (r->has_data && r->data_len > INT_MAX / 2))
		return -EINVAL;
	for (size_t i = 0; i < r->n_digests; i++)
		if (!digest_alg_name(r->digests[i].alg) ||
		    digest_size(r->digests[i].alg) != r->digests[i].size)
			return -EINVAL;
	k = count_records(fd, &r->recnum);
	if (k < 0)
		return log_errno(k, "eventlog: read");

	o = record_to_json(r);
	if (!o)
		return -ENOMEM;
	/* One buffer, so the record goes out in one write() of RS, object and newline. */
	json = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	len = json ? strlen(json) + 2 : 0;
	buf = json ? malloc(len) : NULL;
	if (!buf) {
		json_object_put(o);
		return -ENOMEM;
	}
	buf[0] = RS;
	memcpy(buf + 1, json, len - 2);
	buf[len - 1] = '\n';
	json_object_put(o);
	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return log_errno(-errno, "eventlog: write record %llu",
					 (unsigned long long)r->recnum);
		}
		done += (size_t)n;
	}
	return 0;
}

int eventlog_append(int fd, struct eventlog_record *r)
{
	int k = eventlog_lock(fd);

	if (k < 0)
		return k;
	k = eventlog_append_locked(fd, r);
	eventlog_unlock(fd);
	return k;
}

/* --- reader ------------------------------------------------------------------- */

static void record_clear(struct eventlog_record *r)
{
	free(r->event);
	free(r->event_type);
	free(r->data);
	free(r->name);
	memset(r, 0, sizeof(*r));
}

unsigned eventlog_pcr_records(const struct eventlog *log, size_t first, unsigned pcr,
			      bool (*match)(const struct eventlog_record *r),
			      const struct eventlog_record **found)
{
	unsigned n = 0;

	*found = NULL;
	for (size_t i = first; i < log->n; i++) {
		const struct eventlog_record *r = &log->records[i];

		if (r->pcr != pcr || !r->extended || r->rtmr >= 0 || !match(r))
			continue;
		if (n++ == 0)
			*found = r;
	}
	return n;
}

void eventlog_free(struct eventlog *log)
{
	for (size_t i = 0; i < log->n; i++)
		record_clear(&log->records[i]);
	free(log->records);
	log->records = NULL;
	log->n = 0;
}

static json_object *get(json_object *o, const char *key, json_type type)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

static const char *parse_digests(json_object *arr, struct eventlog_record *r)
{
	size_t n = json_object_array_length(arr);

	if (n == 0)
		return "no digests";
	for (size_t i = 0; i < n; i++) {
		json_object *x = json_object_array_get_idx(arr, i), *a, *h;
		struct digest *d;
		int alg, size;

		if (!json_object_is_type(x, json_type_object) ||
		    !(a = get(x, "hashAlg", json_type_string)) ||
		    !(h = get(x, "digest", json_type_string)))
			return "a digest lacks hashAlg or digest";
		alg = digest_alg_from_name(json_object_get_string(a));
		if (alg < 0)
			continue; /* a bank we cannot compute: like systemd, skip it */
		if (r->n_digests >= EVENTLOG_MAX_DIGESTS)
			return "too many digests";
		d = &r->digests[r->n_digests];
		size = hex_decode(json_object_get_string(h), d->buf, DIGEST_MAX);
		if (size != digest_size((uint16_t)alg))
			return "digest is not hex of the algorithm's size";
		d->alg = (uint16_t)alg;
		d->size = (uint16_t)size;
		r->n_digests++;
	}
	return NULL;
}

/* content.data or content.dataHex, not both. */
static const char *parse_data(json_object *content, struct eventlog_record *r)
{
	json_object *text = NULL, *hex = NULL;
	bool has_text, has_hex;
	size_t n;

	has_text = json_object_object_get_ex(content, "data", &text);
	has_hex = json_object_object_get_ex(content, "dataHex", &hex);
	if (!has_text && !has_hex)
		return NULL;
	if (has_text && has_hex)
		return "both data and dataHex";
	if (has_text) {
		if (!json_object_is_type(text, json_type_string))
			return "data is not a string";
		n = (size_t)json_object_get_string_len(text);
		r->data = malloc(n ? n : 1);
		if (!r->data)
			return "out of memory";
		memcpy(r->data, json_object_get_string(text), n);
		r->data_len = n;
	} else {
		const char *h;
		int k;

		if (!json_object_is_type(hex, json_type_string))
			return "dataHex is not a string";
		h = json_object_get_string(hex);
		n = strlen(h);
		if (n % 2)
			return "dataHex is not hex";
		r->data = malloc(n / 2 ? n / 2 : 1);
		if (!r->data)
			return "out of memory";
		if (n == 0) {
			k = 0;
		} else {
			k = hex_decode(h, r->data, n / 2);
			if (k < 0 || (size_t)k != n / 2)
				return "dataHex is not hex";
		}
		r->data_len = (size_t)k;
	}
	r->has_data = true;
	return NULL;
}

/* Fills r from one parsed object; returns NULL or what is wrong with it. */
static const char *parse_record(json_object *o, struct eventlog_record *r)
{
	json_object *v, *content;
	const char *err;
	int64_t i;

	if (!json_object_is_type(o, json_type_object))
		return "not an object";
	if ((v = get(o, "recnum", json_type_int)))
		r->recnum = json_object_get_uint64(v);
	if (!(v = get(o, "pcr", json_type_int)))
		return "no integer pcr";
	i = json_object_get_int64(v);
	if (i < 0 || i > EVENTLOG_MAX_PCR)
		return "pcr out of range";
	r->pcr = (unsigned)i;
	r->rtmr = -1;
	if ((v = get(o, "rtmr", json_type_int))) {
		i = json_object_get_int64(v);
		if (i < 0 || i > 3)
			return "rtmr out of range";
		r->rtmr = (int)i;
	}
	if (!(v = get(o, "digests", json_type_array)))
		return "no digests array";
	err = parse_digests(v, r);
	if (err)
		return err;
	r->extended = true;
	v = get(o, "content_type", json_type_string);
	if (!v || !streq(json_object_get_string(v), "systemd"))
		/* Another producer's content: digests and pcr are all replay needs. */
		return NULL;
	if (!(content = get(o, "content", json_type_object)))
		return "content_type systemd without a content object";
	if ((v = get(content, "string", json_type_string)) &&
	    !(r->event = strdup(json_object_get_string(v))))
		return "out of memory";
	if ((v = get(content, "eventType", json_type_string)) &&
	    !(r->event_type = strdup(json_object_get_string(v))))
		return "out of memory";
	if ((v = get(content, "name", json_type_string)) &&
	    !(r->name = strdup(json_object_get_string(v))))
		return "out of memory";
	err = parse_data(content, r);
	if (err)
		return err;
	if (json_object_object_get_ex(content, "extended", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return "extended is not a boolean";
		r->extended = json_object_get_boolean(v);
	}
	return NULL;
}

static bool only_space(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return false;
	return true;
}

/* Parses the record text between two separators into r; returns NULL or the reason. */
static const char *parse_one(const char *text, size_t n, struct eventlog_record *r)
{
	json_tokener *tok;
	json_object *o;
	const char *err;
	size_t end;

	if (n == 0 || n > INT_MAX)
		return n ? "record too long" : "empty record";
	if (memchr(text, '\0', n))
		return "NUL byte in record";
	tok = json_tokener_new();
	if (!tok)
		return "out of memory";
	o = json_tokener_parse_ex(tok, text, (int)n);
	if (!o) {
		err = json_tokener_get_error(tok) == json_tokener_continue
			      ? "truncated record"
			      : json_tokener_error_desc(json_tokener_get_error(tok));
		json_tokener_free(tok);
		return err;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!only_space(text + end, n - end))
		err = "trailing bytes after the object";
	else
		err = parse_record(o, r);
	json_object_put(o);
	return err;
}

int eventlog_parse(const char *buf, size_t len, struct eventlog *log, size_t *bad_offset)
{
	size_t pos = 0;

	*log = (struct eventlog){0};
	*bad_offset = 0;
	while (pos < len) {
		struct eventlog_record r = {0}, *grown;
		const char *end, *err;
		size_t n;

		if (buf[pos] != RS) {
			err = "no record separator";
			goto bad;
		}
		end = memchr(buf + pos + 1, RS, len - pos - 1);
		n = (end ? (size_t)(end - buf) : len) - pos - 1;
		err = parse_one(buf + pos + 1, n, &r);
		if (err)
			goto bad;
		r.offset = pos;
		grown = realloc(log->records, (log->n + 1) * sizeof(*grown));
		if (!grown) {
			record_clear(&r);
			return -ENOMEM;
		}
		log->records = grown;
		log->records[log->n++] = r;
		pos += n + 1;
		continue;
	bad:
		record_clear(&r);
		*bad_offset = pos;
		log_debug("eventlog: bad record at byte %zu: %s", pos, err);
		return -EBADMSG;
	}
	return (int)(log->n > INT_MAX ? INT_MAX : log->n);
}

int eventlog_read(const char *path, struct eventlog *log, size_t *bad_offset)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	*log = (struct eventlog){0};
	*bad_offset = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_SH) < 0)
		if (errno != EINTR)
			return -errno;
	for (;;) {
		ssize_t k;

		if (len == cap) {
			char *grown = realloc(buf, cap ? cap * 2 : 16384);
			if (!grown)
				return -ENOMEM;
			buf = grown;
			cap = cap ? cap * 2 : 16384;
		}
		k = read(fd, buf + len, cap - len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	return eventlog_parse(buf, len, log, bad_offset);
}

int eventlog_check_content(const struct eventlog_record *r, char *why, size_t why_len)
{
	const void *data;
	size_t len;

	if (r->event_type && streq(r->event_type, "volume-key"))
		return -ENOKEY;
	if (r->has_data) {
		data = r->data;
		len = r->data_len;
	} else if (r->event) {
		/* systemd's rule: the logged string is what was hashed. */
		data = r->event;
		len = strlen(r->event);
	} else {
		snprintf(why, why_len,
			 "the record carries no content (not content_type "
			 "systemd): its digests cannot be checked");
		return -ENODATA;
	}
	for (size_t i = 0; i < r->n_digests; i++) {
		uint8_t d[DIGEST_MAX];
		int k = digest_compute(r->digests[i].alg, data, len, d);

		if (k < 0) {
			snprintf(why, why_len, "cannot hash bank %s",
				 digest_alg_name(r->digests[i].alg) ?: "?");
			return -EOPNOTSUPP;
		}
		if ((size_t)k != r->digests[i].size ||
		    memcmp(d, r->digests[i].buf, (size_t)k)) {
			snprintf(
				why, why_len,
				"its %s digest is not the digest of its content (%zu bytes)",
				digest_alg_name(r->digests[i].alg) ?: "?", len);
			return 1;
		}
	}
	return 0;
}
