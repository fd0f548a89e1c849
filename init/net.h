/* The node on the network, PID 1's part: NIC drivers for the devices present, loopback,
 * /run/cvminit/resolv.conf's place and the hostname. DHCP runs as a service (dhcpcd). */
#pragma once

#include <stddef.h>

#define NET_RUN_DIR	 "/run/cvminit"
#define NET_RESOLV_CONF	 NET_RUN_DIR "/resolv.conf"
#define NET_HOSTNAME_MAX 21 /* "cvm-" + 16 hex digits + NUL */

/* Loads the drivers of the network devices present (PCI class 02, virtio-net, VMBus)
 * by modalias from the root's modules. Returns how many modaliases matched. */
int net_drivers_load(void);
/* Loopback up and an empty resolv.conf in /run for /etc/resolv.conf to point at. */
int net_setup(void);
/* The node's hostname from its machine ID: "cvm-" + the first 16 hex digits of
 * SHA-256("cvminit hostname:" + machine-id). Pure; returns 0 or -EINVAL. */
int net_hostname_from_machine_id(const char *machine_id, char out[NET_HOSTNAME_MAX]);
/* Reads /etc/machine-id and sets the hostname from it (sethostname). */
int net_hostname_set(void);
