/* measurements.json writer and reader (format in measurements.h). The reader takes a file
 * the verifier is given, so it checks every field and refuses what it does not know. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "../lib/hex.h"
#include "../lib/util.h"
#include "eventlog.h"
#include "measurements.h"

#define HEXBUF (2 * DIGEST_MAX + 1)

static json_object *hex_string(const uint8_t *d, size_t n)
{
	char hex[HEXBUF];

	if (n > DIGEST_MAX)
		return NULL;
	hex_encode(d, n, hex);
	return json_object_new_string(hex);
}

static int record_json(const struct meas_record *r, json_object **ret)
{
	json_object *o = json_object_new_object();
	int e = 0;

	if (!o)
		return -ENOMEM;
	e |= json_add(o, "event", json_object_new_string(r->event));
	if (r->name)
		e |= json_add(o, "name", json_object_new_string(r->name));
	if (r->has_data)
		e |= json_add(o, "data",
			      json_object_new_string_len((const char *)r->data,
							 (int)r->data_len));
	for (size_t i = 0; i < r->n_digests; i++)
		e |= json_add(o, digest_alg_name(r->digests[i].alg),
			      hex_string(r->digests[i].buf, r->digests[i].size));
	if (e) {
		json_object_put(o);
		return -ENOMEM;
	}
	*ret = o;
	return 0;
}

static json_object *to_json(const struct measurements *m)
{
	json_object *root = json_object_new_object();
	int e = 0;

	if (!root)
		return NULL;
	for (unsigned p = 0; p < MEAS_PCRS && !e; p++) {
		json_object *o, *arr;
		char key[8];

		if (!m->pcr[p].present)
			continue;
		o = json_object_new_object();
		snprintf(key, sizeof(key), "%u", p);
		e |= json_add(root, key, o);
		if (e)
			break;
		if (m->pcr[p].has_expected)
			e |= json_add(
				o, "expected",
				hex_string(m->pcr[p].expected, m->pcr[p].expected_len));
		e |= json_add(o, "warnOnly",
			      json_object_new_boolean(m->pcr[p].warn_only));
		if (p != 15)
			continue;
		arr = json_object_new_array();
		e |= json_add(o, "replay", arr);
		for (size_t i = 0; !e && i < m->n_replay; i++) {
			json_object *r;

			e |= record_json(&m->replay[i], &r);
			if (!e && json_object_array_add(arr, r) < 0) {
				json_object_put(r);
				e = -ENOMEM;
			}
		}
		arr = json_object_new_array();
		e |= json_add(o, "perNode", arr);
		for (size_t i = 0; !e && i < m->n_per_node; i++)
			e |= json_object_array_add(
				arr, json_object_new_string(m->per_node[i]));
	}
	if (e) {
		json_object_put(root);
		return NULL;
	}
	return root;
}

int measurements_write(const char *path, const struct measurements *m)
{
	_cleanup_free_ char *tmp = NULL;
	json_object *o = to_json(m);
	const char *text;
	FILE *f;
	int e = 0;

	if (!o)
		return -ENOMEM;
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							 JSON_C_TO_STRING_SPACED |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || asprintf(&tmp, "%s.tmp", path) < 0) {
		json_object_put(o);
		return -ENOMEM;
	}
	f = fopen(tmp, "we");
	if (!f) {
		e = -errno;
		json_object_put(o);
		return e;
	}
	fputs(text, f);
	fputc('\n', f);
	json_object_put(o);
	if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0)
		e = errno ? -errno : -EIO;
	if (fclose(f) != 0 && !e)
		e = -errno;
	if (!e && rename(tmp, path) < 0)
		e = -errno;
	if (e)
		unlink(tmp);
	return e;
}

/* --- reader ------------------------------------------------------------------- */

void measurements_free(struct measurements *m)
{
	for (size_t i = 0; i < m->n_replay; i++) {
		free(m->replay[i].event);
		free(m->replay[i].name);
		free(m->replay[i].data);
	}
	for (size_t i = 0; i < m->n_per_node; i++)
		free(m->per_node[i]);
	memset(m, 0, sizeof(*m));
}

bool measurements_per_node(const struct measurements *m, const char *event)
{
	for (size_t i = 0; i < m->n_per_node; i++) {
		size_t n = strlen(m->per_node[i]);

		if (strncmp(event, m->per_node[i], n) == 0 &&
		    (event[n] == '\0' || event[n] == ':'))
			return true;
	}
	return false;
}

static const char *parse_expected(json_object *v, uint8_t *out, size_t *len)
{
	int n = json_object_is_type(v, json_type_string) ? json_object_get_string_len(v)
							 : 0;

	if ((n != 64 && n != 96) ||
	    hex_decode(json_object_get_string(v), out, DIGEST_MAX) != n / 2)
		return "expected is not 64 or 96 hex digits (a sha256 or sha384 value)";
	*len = (size_t)n / 2;
	return NULL;
}

static const char *parse_record(json_object *o, struct meas_record *r)
{
	json_object_object_foreach(o, key, v)
	{
		int alg;

		if (streq(key, "event") || streq(key, "name") || streq(key, "data")) {
			char **dst = streq(key, "event") ? &r->event : &r->name;
			size_t n;

			if (!json_object_is_type(v, json_type_string))
				return "a replay record's event, name or data is not a string";
			n = (size_t)json_object_get_string_len(v);
			if (streq(key, "data")) {
				r->data = malloc(n ? n : 1);
				if (!r->data)
					return "out of memory";
				memcpy(r->data, json_object_get_string(v), n);
				r->data_len = n;
				r->has_data = true;
				continue;
			}
			if (memchr(json_object_get_string(v), '\0', n))
				return "a replay record's event or name has a NUL";
			*dst = strdup(json_object_get_string(v));
			if (!*dst)
				return "out of memory";
			continue;
		}
		alg = digest_alg_from_name(key);
		if (alg < 0)
			return "a replay record has an unknown key";
		if (r->n_digests >= EVENTLOG_MAX_DIGESTS)
			return "a replay record has too many digests";
		if (!json_object_is_type(v, json_type_string) ||
		    hex_decode(json_object_get_string(v), r->digests[r->n_digests].buf,
			       DIGEST_MAX) != digest_size((uint16_t)alg) ||
		    (size_t)json_object_get_string_len(v) !=
			    2 * (size_t)digest_size((uint16_t)alg))
			return "a replay record's digest is not hex of its bank's size";
		r->digests[r->n_digests].alg = (uint16_t)alg;
		r->digests[r->n_digests].size = (uint16_t)digest_size((uint16_t)alg);
		r->n_digests++;
	}
	if (!r->event)
		return "a replay record has no event";
	if (r->n_digests == 0)
		return "a replay record has no digest";
	return NULL;
}

static const char *parse_pcr15(json_object *o, struct measurements *m)
{
	json_object *v;

	if (json_object_object_get_ex(o, "replay", &v)) {
		size_t n;

		if (!json_object_is_type(v, json_type_array))
			return "\"15\".replay is not an array";
		n = json_object_array_length(v);
		if (n > MEAS_MAX_RECORDS)
			return "\"15\".replay has too many records";
		for (size_t i = 0; i < n; i++) {
			json_object *r = json_object_array_get_idx(v, i);
			const char *err;

			if (!json_object_is_type(r, json_type_object))
				return "a \"15\".replay record is not an object";
			m->n_replay++;
			err = parse_record(r, &m->replay[i]);
			if (err)
				return err;
		}
	}
	if (json_object_object_get_ex(o, "perNode", &v)) {
		size_t n;

		if (!json_object_is_type(v, json_type_array))
			return "\"15\".perNode is not an array";
		n = json_object_array_length(v);
		if (n > ARRAY_SIZE(m->per_node))
			return "\"15\".perNode has too many entries";
		for (size_t i = 0; i < n; i++) {
			json_object *s = json_object_array_get_idx(v, i);

			if (!json_object_is_type(s, json_type_string) ||
			    json_object_get_string_len(s) == 0)
				return "a \"15\".perNode entry is not a non-empty string";
			m->per_node[i] = strdup(json_object_get_string(s));
			if (!m->per_node[i])
				return "out of memory";
			m->n_per_node++;
		}
	}
	return NULL;
}

static const char *parse_root(json_object *root, struct measurements *m, char *where,
			      size_t where_len)
{
	if (!json_object_is_type(root, json_type_object))
		return "not a JSON object";
	json_object_object_foreach(root, key, o)
	{
		char *end;
		unsigned long p;
		const char *err;

		snprintf(where, where_len, "\"%.16s\": ", key);
		errno = 0;
		p = strtoul(key, &end, 10);
		if (!*key || *end || errno || key[0] == '-' || key[0] == '+' ||
		    (key[0] == '0' && key[1]) || p >= MEAS_PCRS)
			return "not a PCR number 0-23";
		if (!json_object_is_type(o, json_type_object))
			return "not an object";
		m->pcr[p].present = true;
		json_object_object_foreach(o, k, v)
		{
			if (streq(k, "expected")) {
				err = parse_expected(v, m->pcr[p].expected,
						     &m->pcr[p].expected_len);
				if (err)
					return err;
				m->pcr[p].has_expected = true;
			} else if (streq(k, "warnOnly")) {
				if (!json_object_is_type(v, json_type_boolean))
					return "warnOnly is not a boolean";
				m->pcr[p].warn_only = json_object_get_boolean(v);
			} else if (p == 15 &&
				   (streq(k, "replay") || streq(k, "perNode"))) {
				continue;
			} else {
				return "unknown key";
			}
		}
		if (p == 15) {
			err = parse_pcr15(o, m);
			if (err)
				return err;
			if (!m->pcr[p].has_expected && m->n_replay == 0)
				return "neither expected nor replay";
		} else if (!m->pcr[p].has_expected) {
			return "no expected value";
		}
	}
	where[0] = '\0';
	for (unsigned p = 0, len = 0; p < MEAS_PCRS; p++) {
		if (!m->pcr[p].has_expected)
			continue;
		if (len && m->pcr[p].expected_len != len)
			return "expected values of two banks (64 and 96 hex digits) mixed";
		len = (unsigned)m->pcr[p].expected_len;
	}
	return NULL;
}

int measurements_parse(const char *buf, size_t len, struct measurements *m, char *err,
		       size_t err_len)
{
	json_tokener *tok;
	json_object *root;
	const char *why;
	char where[32] = "";

	memset(m, 0, sizeof(*m));
	if (len > INT_MAX || memchr(buf, '\0', len)) {
		snprintf(err, err_len, "not a JSON text");
		return -EBADMSG;
	}
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, buf, (int)len);
	if (!root) {
		snprintf(err, err_len, "not JSON: %s",
			 json_tokener_error_desc(json_tokener_get_error(tok)));
		json_tokener_free(tok);
		return -EBADMSG;
	}
	for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\n' && buf[i] != '\t' && buf[i] != '\r') {
			json_tokener_free(tok);
			json_object_put(root);
			snprintf(err, err_len, "trailing bytes after the object");
			return -EBADMSG;
		}
	json_tokener_free(tok);
	why = parse_root(root, m, where, sizeof(where));
	json_object_put(root);
	if (why) {
		snprintf(err, err_len, "%s%s", where, why);
		return -EBADMSG;
	}
	return 0;
}
