/* Whether a secret is still in the SAPI buffer of a tpm2-tss ESYS context. ESYS writes a
 * decrypted response parameter (the unsealed key) back into that buffer, and unseal_key
 * wipes it; the tests look through the whole buffer for any 16 bytes of the key.
 * The caller's last TPM command was a FlushContext, whose response is the 10-byte header
 * only, so the response parameters start 10 bytes into the buffer; tpm2-tss sizes the
 * buffer TPM2_MAX_COMMAND_SIZE. The including file defines _GNU_SOURCE (memmem). */
#pragma once

#include <stdbool.h>
#include <string.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_sys.h>

#include "../../measured-boot/tpm.h"
#include "harness.h"

static inline bool sapi_buffer_holds(struct tpm *t, const uint8_t *key, size_t len)
{
	TSS2_SYS_CONTEXT *sys = NULL;
	const uint8_t *rp = NULL, *buf;
	size_t n = 0;

	CHECK_INT(Esys_GetSysContext(tpm_esys(t), &sys), 0);
	CHECK_INT(Tss2_Sys_GetRpBuffer(sys, &n, &rp), 0);
	CHECK_INT(n, 0);
	buf = rp - 10;
	CHECK(buf[0] == 0x80 && buf[1] == 0x01); /* TPM2_ST_NO_SESSIONS: the header */
	for (size_t i = 0; i + 16 <= len; i += 16)
		if (memmem(buf, TPM2_MAX_COMMAND_SIZE, key + i, 16))
			return true;
	return false;
}
