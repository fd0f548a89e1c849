/* The measured identities, one function each: what cvminit measures into PCR 15 and
 * compares with the initrd's reference values, what cvm-measure predicts, and the
 * reference file the image build writes. Pure: strings in, strings out. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_ROOT_MAX  192 /* cvminit:root data, with its NUL */
#define IDENTITY_STATE_MAX 256 /* cvminit:state data, with its NUL */

/* The partuuids of the root's data and hash partitions: the first and last 128 bits of
 * the root hash (systemd's convention), as 36-character UUIDs. hash_hex: 64 lower-case
 * hex digits. */
void identity_root_uuids(const char *hash_hex, char data_uuid[37], char hash_uuid[37]);

/* cvminit:root: verity:<roothash>:<data partuuid>:<hash partuuid>:erofs. Returns its
 * length, -EINVAL when hash_hex is not 64 lower-case hex digits, -ENOBUFS. */
int identity_root(const char *hash_hex, char *out, size_t len);

/* cvminit:state: luks2:<uuid>:<cipher-mode>:<cipher key bits>:<sector size>:<integrity
 * or none>. Returns its length, -ENOBUFS. */
int identity_state(const char *uuid, const char *cipher_mode, unsigned key_bits,
		   unsigned sector_size, const char *integrity, char *out, size_t len);

/* The text of /etc/cvminit/reference (init/reference.h) for a command line as the kernel
 * shows it, the config file's bytes (config NULL: no config in the initrd) and the root
 * of the command line's roothash= (none: no root line). Returns its length, -EINVAL (a
 * roothash= cvminit would refuse, a command line with a newline), -ENOBUFS. */
int identity_reference(const char *cmdline, const uint8_t *config, size_t config_len,
		       char *out, size_t len);
