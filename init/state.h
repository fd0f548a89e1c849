/* The state partition: /var on the partition of Discoverable Partitions type "var", and
 * the writable paths containerd and kubelet need on an otherwise read-only root. */
#pragma once

#include "settings.h"

#define STATE_MOUNT "/var"

struct measurer;

/* In the initrd, after root_open() and before leave-initrd is measured: finds the one state
 * partition and opens it as /dev/mapper/state (first boot: makes the LUKS2 volume and seals
 * its key to the TPM; later boots: validates the header, unseals, activates), then
 * measures its identity into PCR 15 ("cvminit:state"). Fails closed on anything else. */
void state_open(struct measurer *m, const struct settings *s);
/* After switch_root: makes ext4 on the opened volume when it has none yet (first boot;
 * mkfs.ext4 comes from the root), mounts it at /var. Fails closed when the partition
 * holds something else: it never formats over data. Returns 1 when it made the
 * filesystem, 0 when it mounted an existing one. */
int state_mount(void);
/* Makes /etc/kubernetes and /etc/cni writable (overlays with their upper layer in
 * /var/lib/cvminit), creates the /var directories the services write, mounts /tmp, and
 * binds the machine ID (below) over /etc/machine-id. */
void state_writable_paths(void);
/* The machine ID (32 hex digits and a NUL) derived from a LUKS2 UUID; 0 or -EINVAL. */
int state_machine_id(const char *luks_uuid, char out[33]);
/* At shutdown, after /var is unmounted: closes the state volume. */
void state_close(void);
