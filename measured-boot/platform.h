/* The platform rule: which TPM or TDX RTMRs this node trusts. platform_read() takes a
 * snapshot of what sysfs and configfs-tsm show; platform_decide() is the rule over it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "measure.h"

/* A marshalled TPMT_PUBLIC: RSA 4096 needs 512 bytes of modulus, plus the header. */
#define PLATFORM_BLOB_MAX   1024
#define PLATFORM_REASON_MAX 640
#define PLATFORM_FOUND_MAX  256

/* The SVSM vTPM service GUID (SVSM spec, SVSM_ATTEST_SINGLE_SERVICE): its manifest,
 * version 0, is the vTPM's EK public area as a marshalled TPMT_PUBLIC. */
#define PLATFORM_SVSM_VTPM_GUID "c476f1eb-0123-45a5-9641-b4e7dde5bfe3"

enum platform_blob {
	PLATFORM_BLOB_ABSENT,	 /* not offered (no SVSM, no vTPM service) or not read */
	PLATFORM_BLOB_OK,	 /* parses as one whole TPMT_PUBLIC */
	PLATFORM_BLOB_MALFORMED, /* offered: truncated, oversized, not a TPMT_PUBLIC */
};

/* What was read. Filled by platform_read() (and the EK by tpm_ek_public()); tests fill it
 * by hand or point platform_read() at a fake tree. */
struct platform_facts {
	int n_tpms;	       /* tpmN entries in /sys/class/tpm */
	int tpm_index;	       /* N of the first, -1 when none: /dev/tpmrmN */
	bool tdx;	       /* an Intel TDX guest */
	bool rtmr;	       /* tdx_guest/measurements/rtmr0..2:sha384 present */
	bool snp;	       /* an AMD SEV-SNP guest */
	char tsm_provider[32]; /* configfs-tsm report provider, "" without one */
	bool svsm;	       /* configfs-tsm offers service_provider: an SVSM runs */
	enum platform_blob manifest;
	size_t manifest_len;
	uint8_t manifest_buf[PLATFORM_BLOB_MAX];
	enum platform_blob ek; /* the TPM's EK public (TCG default RSA 2048 template) */
	size_t ek_len;
	uint8_t ek_buf[PLATFORM_BLOB_MAX];
	bool ek_possessed; /* the TPM proved it holds the EK's private part */
};

struct platform_decision {
	enum measurer_backend
		backend; /* MEASURER_NONE: nothing trusted to measure into */
	bool may_seal;	 /* the TPM may hold the state key */
	int n_tpms;	 /* as found: a caller may wait for a TPM still probing */
	int tpm_index;	 /* the TPM's N (/dev/tpmrmN) when backend is MEASURER_TPM */
	bool refuse;	 /* what was found is a refusal whatever measure= says */
	char found[PLATFORM_FOUND_MAX];	  /* what was read, for the log */
	char reason[PLATFORM_REASON_MAX]; /* the rule that applied and, when refused, the
					     fix */
};

/* Reads under root ("/" on a node; a fake tree in tests) the TPMs, the TDX and SEV-SNP
 * guest interfaces and, through configfs-tsm, the SVSM vTPM manifest. Never fails: what
 * cannot be read counts as absent (the decision then trusts less, never more). */
/* buf = root + "/" + rel (root NULL or "": "/"): the trees the platform and the TDX
 * backend read are rooted at root so the tests can point them at fakes. */
int path_at(char *buf, size_t size, const char *root, const char *rel);
void platform_read(const char *root, struct platform_facts *f);
/* True when the decision needs the TPM's EK public: an SVSM vTPM manifest to compare. */
bool platform_needs_ek(const struct platform_facts *f);
/* Whether a blob is one whole marshalled TPMT_PUBLIC. */
enum platform_blob platform_blob_check(const uint8_t *buf, size_t len);

/* The rule. tpm_platform: the measured config says `set tpm=platform` (this cloud's vTPM
 * is trusted). Pure: same facts, same decision. */
void platform_decide(const struct platform_facts *f, bool tpm_platform,
		     struct platform_decision *d);
