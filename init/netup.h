/* "Is the network up?": an address and a default route, read from the kernel's own
 * tables (/proc/net, SIOCGIFADDR). No packet from the network is ever parsed here. */
#pragma once

#include <stddef.h>

#define NETUP_PROC_NET "/proc/net"

/* 1 when the node has a default route (IPv4 or IPv6) on an interface that has an
 * address of that family (IPv6: global scope, not tentative), 0 when not; what says
 * which (e.g. "IPv4 default route on eth0, address 10.0.2.15") or what is missing.
 * procnet: /proc/net, or a directory laid out like it (tests). */
int netup_check(const char *procnet, char *what, size_t len);

/* The parsers, over the text of /proc/net/route, /proc/net/ipv6_route and
 * /proc/net/if_inet6. Each returns 1 and the interface when found, else 0. */
int netup_route4_default(const char *text, char *ifname, size_t len);
int netup_route6_default(const char *text, char *ifname, size_t len);
/* 1 and the address as text when ifname has an IPv6 address of global (or site) scope
 * that finished duplicate address detection. */
int netup_addr6_routable(const char *text, const char *ifname, char *addr, size_t len);
