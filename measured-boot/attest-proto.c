/* Framing of the attestation protocol (attest-proto.h): the agent's request parser, which
 * reads untrusted network input, and the verifier's response parser, which reads evidence
 * from a node nobody trusts yet. Both check every length before using it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attest-proto.h"
#include "../lib/digest.h"

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int attest_request_parse(const uint8_t *buf, size_t len, struct attest_request *req)
{
	size_t body, k = len < 4 ? len : 4;
	const uint8_t *b;

	/* Refuse at the first byte that cannot start a request. */
	if (memcmp(buf, ATTEST_MAGIC_REQ, k) != 0)
		return -EBADMSG;
	if (len > 4 && buf[4] != ATTEST_VERSION)
		return -EBADMSG;
	if (len > 5 && buf[5] != ATTEST_REQ_EVIDENCE && buf[5] != ATTEST_REQ_ACTIVATE)
		return -EBADMSG;
	if (len < ATTEST_HDR)
		return 0;
	body = be16(buf + 6);
	if (body > ATTEST_MAX_BODY)
		return -EBADMSG;
	if (buf[5] == ATTEST_REQ_EVIDENCE && body != ATTEST_NONCE)
		return -EBADMSG;
	if (buf[5] == ATTEST_REQ_ACTIVATE && body < 4)
		return -EBADMSG;
	if (len < ATTEST_HDR + body)
		return 0;
	memset(req, 0, sizeof(*req));
	req->type = buf[5];
	b = buf + ATTEST_HDR;
	if (req->type == ATTEST_REQ_EVIDENCE) {
		memcpy(req->nonce, b, ATTEST_NONCE);
		return ATTEST_HDR + ATTEST_NONCE;
	}
	req->blob_len = be16(b);
	if (req->blob_len == 0 || 2 + req->blob_len + 2 > body)
		return -EBADMSG;
	req->blob = b + 2;
	req->secret_len = be16(b + 2 + req->blob_len);
	if (req->secret_len == 0 || 2 + req->blob_len + 2 + req->secret_len != body)
		return -EBADMSG;
	req->secret = b + 2 + req->blob_len + 2;
	return (int)(ATTEST_HDR + body);
}

int attest_request_write(uint8_t *buf, const struct attest_request *req)
{
	size_t body;

	memcpy(buf, ATTEST_MAGIC_REQ, 4);
	buf[4] = ATTEST_VERSION;
	buf[5] = (uint8_t)req->type;
	if (req->type == ATTEST_REQ_EVIDENCE) {
		put16(buf + 6, ATTEST_NONCE);
		memcpy(buf + ATTEST_HDR, req->nonce, ATTEST_NONCE);
		return ATTEST_HDR + ATTEST_NONCE;
	}
	if (req->type != ATTEST_REQ_ACTIVATE || !req->blob_len || !req->secret_len ||
	    req->blob_len > 0xffff || req->secret_len > 0xffff)
		return -EINVAL;
	body = 2 + req->blob_len + 2 + req->secret_len;
	if (body > ATTEST_MAX_BODY)
		return -EINVAL;
	put16(buf + 6, (uint16_t)body);
	put16(buf + ATTEST_HDR, (uint16_t)req->blob_len);
	memcpy(buf + ATTEST_RESP_HDR, req->blob, req->blob_len);
	put16(buf + ATTEST_RESP_HDR + req->blob_len, (uint16_t)req->secret_len);
	memcpy(buf + ATTEST_HDR + 4 + req->blob_len, req->secret, req->secret_len);
	return (int)(ATTEST_HDR + body);
}

int attest_response_parse(const uint8_t *buf, size_t len, struct attest_response *resp,
			  size_t *need, const char **why)
{
	size_t total, pos;

	memset(resp, 0, sizeof(*resp));
	*need = 0;
	if (len < ATTEST_RESP_HDR) {
		*need = ATTEST_RESP_HDR;
		return 0;
	}
	if (memcmp(buf, ATTEST_MAGIC_RESP, 4) != 0) {
		*why = "not a cvminit-agent response (magic)";
		return -EBADMSG;
	}
	if (buf[4] != ATTEST_VERSION) {
		*why = "unknown protocol version";
		return -EBADMSG;
	}
	resp->status = buf[5];
	total = be32(buf + 6);
	if (total > ATTEST_MAX_RESPONSE) {
		*why = "response longer than the protocol allows";
		return -EBADMSG;
	}
	if (len < ATTEST_RESP_HDR + total) {
		*need = ATTEST_RESP_HDR + total;
		return 0;
	}
	if (len > ATTEST_RESP_HDR + total) {
		*why = "bytes after the response";
		return -EBADMSG;
	}
	pos = ATTEST_RESP_HDR;
	while (pos < len) {
		uint16_t type;
		size_t n;

		if (len - pos < 6) {
			*why = "truncated item header";
			return -EBADMSG;
		}
		type = be16(buf + pos);
		n = be32(buf + pos + 2);
		pos += 6;
		if (n > len - pos) {
			*why = "item longer than the response";
			return -EBADMSG;
		}
		if (type == 0 || type > ATTEST_ITEM_MAX) {
			*why = "unknown item type";
			return -EBADMSG;
		}
		if (type == ATTEST_ITEM_PCRS) {
			int size;
			uint16_t alg;

			if (n < 2) {
				*why = "PCRS item without its bank";
				return -EBADMSG;
			}
			alg = be16(buf + pos);
			size = digest_size(alg);
			if (size < 0 || n != 2 + (size_t)size * ATTEST_QUOTED_PCRS) {
				*why = "PCRS item of an unknown bank or the wrong size";
				return -EBADMSG;
			}
			for (size_t i = 0; i < resp->n_banks; i++)
				if (resp->banks[i].alg == alg) {
					*why = "a bank's PCRS twice";
					return -EBADMSG;
				}
			if (resp->n_banks == ATTEST_MAX_BANKS) {
				*why = "too many banks";
				return -EBADMSG;
			}
			resp->banks[resp->n_banks].alg = alg;
			resp->banks[resp->n_banks].values = buf + pos + 2;
			resp->banks[resp->n_banks].size = (size_t)size;
			resp->n_banks++;
		} else {
			if (resp->item[type].present) {
				*why = "an item twice";
				return -EBADMSG;
			}
			resp->item[type] = (struct attest_span){buf + pos, n, true};
		}
		pos += n;
	}
	return 0;
}

/* --- writer ------------------------------------------------------------------- */

static void grow(struct attest_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (b->failed)
		return;
	if (n > ATTEST_MAX_RESPONSE + ATTEST_RESP_HDR - b->len) {
		b->failed = true;
		return;
	}
	if (b->len + n <= b->cap)
		return;
	cap = b->cap ? b->cap : 65536;
	while (cap < b->len + n)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

void attest_buf_begin(struct attest_buf *b, enum attest_status status)
{
	b->len = 0;
	b->failed = false;
	grow(b, ATTEST_RESP_HDR);
	if (b->failed)
		return;
	memcpy(b->p, ATTEST_MAGIC_RESP, 4);
	b->p[4] = ATTEST_VERSION;
	b->p[5] = (uint8_t)status;
	b->len = ATTEST_RESP_HDR;
}

void attest_buf_item(struct attest_buf *b, enum attest_item type, const void *v, size_t n)
{
	grow(b, 6 + n);
	if (b->failed)
		return;
	put16(b->p + b->len, (uint16_t)type);
	put32(b->p + b->len + 2, (uint32_t)n);
	if (n)
		memcpy(b->p + b->len + 6, v, n);
	b->len += 6 + n;
}

int attest_buf_end(struct attest_buf *b)
{
	if (b->failed)
		return b->p ? -E2BIG : -ENOMEM;
	put32(b->p + 6, (uint32_t)(b->len - ATTEST_HDR - 2));
	return 0;
}

void attest_buf_free(struct attest_buf *b)
{
	free(b->p);
	*b = (struct attest_buf){0};
}
