/* The attestation protocol between cvminit-agent (on the node) and `cvm-measure attest`:
 * request and response framing, shared by both ends (docs/attestation.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTEST_PORT 7741

/*
 * Request, all integers big-endian:
 *   "CVMQ" | version (1 byte, 1) | type (1 byte) | body length (2 bytes) | body
 * type 1 EVIDENCE: body = the verifier's 32-byte nonce, exactly.
 * type 2 ACTIVATE: body = credential blob length (2) | blob | secret length (2) | secret
 *                  (TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents, as
 *                  TPM2_ActivateCredential takes them); at most ATTEST_MAX_BODY bytes.
 * A connection carries at most ATTEST_MAX_REQUESTS requests, one after the other.
 *
 * Response: "CVMR" | version (1) | status (1 byte, enum attest_status) | length (4) |
 * that many bytes of items: type (2) | length (4) | value. Each item type appears once,
 * except ATTEST_ITEM_PCRS (one per bank).
 */
#define ATTEST_MAGIC_REQ    "CVMQ"
#define ATTEST_MAGIC_RESP   "CVMR"
#define ATTEST_VERSION	    1
#define ATTEST_HDR	    8
#define ATTEST_RESP_HDR	    10
#define ATTEST_NONCE	    32
#define ATTEST_MAX_BODY	    1024
#define ATTEST_MAX_REQUEST  (ATTEST_HDR + ATTEST_MAX_BODY)
#define ATTEST_MAX_REQUESTS 2
#define ATTEST_MAX_RESPONSE (4u << 20)
#define ATTEST_MAX_LOG	    (1u << 20)

enum attest_type {
	ATTEST_REQ_EVIDENCE = 1,
	ATTEST_REQ_ACTIVATE = 2,
};

enum attest_status {
	ATTEST_OK = 0,
	ATTEST_BAD_REQUEST = 1, /* the agent then closes the connection */
	ATTEST_TPM_FAILED = 2,
	ATTEST_BUSY = 3,
};

enum attest_item {
	ATTEST_ITEM_QUOTE = 1,	   /* TPMS_ATTEST as the TPM marshalled it (signed) */
	ATTEST_ITEM_SIGNATURE = 2, /* TPMT_SIGNATURE, marshalled */
	ATTEST_ITEM_AK_PUBLIC = 3, /* TPMT_PUBLIC of the AK, marshalled */
	ATTEST_ITEM_EK_CERT = 4,   /* DER, from NV index 0x01c00002 (RSA 2048 EK) */
	ATTEST_ITEM_PCRS = 5,	   /* alg (2) | 16 PCR values of that bank, PCR 0 first */
	ATTEST_ITEM_FIRMWARE_LOG = 6, /* the firmware's binary TCG log */
	ATTEST_ITEM_CVMINIT_LOG = 7,  /* cvminit's CEL-JSON log */
	ATTEST_ITEM_TSM_REPORT = 8,   /* configfs-tsm outblob (SNP report / TDX quote) */
	ATTEST_ITEM_TSM_PROVIDER =
		9,		 /* configfs-tsm provider ("sev_guest", "tdx_guest") */
	ATTEST_ITEM_SECRET = 10, /* ActivateCredential's result */
	ATTEST_ITEM_ERROR = 11,	 /* with a failure status: what failed, as text */
	ATTEST_ITEM_MAX = 11,
};

/* A join quote's qualifying data is the 32-byte nonce followed by these 32 bytes: the
 * agent quotes 32 bytes of a verifier's choosing, so it can never be asked for a quote that
 * passes as a join's (the host could otherwise get a node's agent to quote a nonce bound to
 * a key of its own and take the bundle; docs/attestation.md). */
#define ATTEST_JOIN_TAG "cvm-join v1 quote, no attest 32B"

#define ATTEST_QUOTED_PCRS 16 /* PCRs 0-15 */
#define ATTEST_MAX_BANKS   4

struct attest_request {
	enum attest_type type;
	uint8_t nonce[ATTEST_NONCE];
	const uint8_t *blob; /* ACTIVATE: pointers into the parsed buffer */
	size_t blob_len;
	const uint8_t *secret;
	size_t secret_len;
};

/* Parses one request from buf. Returns its total length (header and body) when complete,
 * 0 when more bytes are needed (len < what the header announces), -EBADMSG when it can
 * never be a valid request (so the agent can drop the connection at the first bad byte).
 */
int attest_request_parse(const uint8_t *buf, size_t len, struct attest_request *req);
/* Writes a request into buf (ATTEST_MAX_REQUEST bytes); returns its length or -EINVAL. */
int attest_request_write(uint8_t *buf, const struct attest_request *req);

struct attest_span {
	const uint8_t *p;
	size_t len;
	bool present;
};

struct attest_response {
	enum attest_status status;
	struct attest_span item[ATTEST_ITEM_MAX + 1];
	size_t n_banks;
	struct {
		uint16_t alg;
		const uint8_t *values; /* ATTEST_QUOTED_PCRS × the bank's digest size */
		size_t size;	       /* digest size */
	} banks[ATTEST_MAX_BANKS];
};

/* Parses a response (the whole of it: header and items). Spans point into buf. Returns 0,
 * 0 with *need set when more bytes are needed (need: the total length), or -EBADMSG with
 * why set. Unknown item types, a repeated item, a bank twice, a PCRS item of the wrong
 * size are refused. */
int attest_response_parse(const uint8_t *buf, size_t len, struct attest_response *resp,
			  size_t *need, const char **why);

/* A growing response buffer: the agent's writer. */
struct attest_buf {
	uint8_t *p;
	size_t len, cap;
	bool failed; /* out of memory or over ATTEST_MAX_RESPONSE */
};

void attest_buf_begin(struct attest_buf *b, enum attest_status status);
void attest_buf_item(struct attest_buf *b, enum attest_item type, const void *v,
		     size_t n);
/* Patches the length; returns 0, or -ENOMEM / -E2BIG when an append failed. */
int attest_buf_end(struct attest_buf *b);
void attest_buf_free(struct attest_buf *b);
