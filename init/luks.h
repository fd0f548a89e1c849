/* The state partition's LUKS2 header, validated on a private copy: the host controls the
 * disk and may change it between a check and a use, so the bytes read once are the only
 * ones trusted (and the only ones libcryptsetup is given). Pure code: no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../measured-boot/seal.h"

/* The one metadata size cvminit makes and accepts (cryptsetup's default): binary header
 * + JSON area, twice. The keyslot area follows; the data starts at 16 MiB. */
#define LUKS2_HDR_SIZE	  16384
#define LUKS2_BIN_SIZE	  4096
#define LUKS2_AREA_SIZE	  (2 * LUKS2_HDR_SIZE)
#define LUKS2_DATA_OFFSET (16ull << 20)
#define LUKS2_CIPHER	  "aes-xts-plain64"
#define LUKS2_KEY_BYTES	  64 /* aes-xts with two AES-256 keys */
#define LUKS2_HMAC_BYTES  32 /* hmac(sha256) integrity key, after the cipher key */
#define LUKS2_SECTOR	  4096

struct luks2_hdr {
	char uuid[40];
	char cipher[32];
	unsigned key_bits;	  /* of the cipher (512) */
	unsigned volume_key_size; /* bytes: cipher key + integrity key */
	unsigned sector_size;
	char integrity[32]; /* "" or "hmac(sha256)" */
	uint64_t data_offset;
	uint64_t seqid;
	int copy;	      /* the copy used: 0 primary, 1 secondary */
	bool primary_missing; /* no primary header at all (a first boot cut before its
				 end) */
	struct sealed token;
};

/* Inspects the first LUKS2_AREA_SIZE bytes of the partition. Returns 1 with h filled when
 * a copy is valid and everything in it is on the allow-list (the newer copy when both
 * are; equal sequence numbers must mean equal contents), 0 when neither copy's magic is
 * there, or a negative errno with a sentence in err: -EPROTONOSUPPORT (LUKS1, another
 * header size), -EBADMSG (corrupt, or anything cvminit does not make). */
int luks2_inspect(const uint8_t *area, size_t len, struct luks2_hdr *h, char *err,
		  size_t errlen);

/* Writes into out (LUKS2_AREA_SIZE bytes) the validated copy as both primary and
 * secondary, their offsets and checksums set: the detached header libcryptsetup loads. */
void luks2_materialize(const uint8_t *area, const struct luks2_hdr *h, uint8_t *out);

/* What cvminit measures into PCR 15 ("cvminit:state"):
 * luks2:<uuid>:<cipher>:<key bits>:<sector size>:<integrity or none>. */
int luks2_identity(const struct luks2_hdr *h, char *buf, size_t len);

/* The header copy's checksum (sha256 over hdr_size bytes with the csum field zeroed). */
void luks2_checksum(const uint8_t *copy, uint8_t out[32]);
