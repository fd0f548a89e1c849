/* The state partition: /var on the partition of Discoverable Partitions type "var", and
 * the writable paths containerd and kubelet need on an otherwise read-only root. */
#pragma once

#include "settings.h"

#define STATE_MOUNT "/var"

/* Finds the one state partition, makes ext4 on it when it is blank (first boot), mounts
 * it at /var. Runs after switch_root (mkfs.ext4 comes from the root). Fails closed when
 * the partition is missing, duplicated, or holds something else: it never formats over
 * data. Returns 1 when it made the filesystem, 0 when it mounted an existing one. */
int state_mount(void);
/* Makes /etc/kubernetes and /etc/cni writable (overlays with their upper layer in
 * /var/lib/cvminit), creates the /var directories the services write, mounts /tmp. */
void state_writable_paths(void);
