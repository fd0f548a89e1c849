/* The network readiness check behind "ready network": the kernel's routing tables and
 * addresses, as /proc/net and an ioctl show them; never a packet from the network. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "netup.h"
#include "util.h"

#define RTF_UP_FLAG	0x0001
#define RTF_REJECT_FLAG 0x0200
#define IFA_TENTATIVE	0x40
#define IFA_DADFAILED	0x08

/* Copies the line at *p into buf (cut at its size) and moves *p past it; false at the
 * end of the text. */
static bool next_line(const char **p, char *buf, size_t size)
{
	size_t n;

	if (!**p)
		return false;
	n = strcspn(*p, "\n");
	snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), *p);
	*p += n + ((*p)[n] == '\n');
	return true;
}

int netup_route4_default(const char *text, char *ifname, size_t len)
{
	char line[256], iface[IF_NAMESIZE + 1];
	unsigned dest, gw, flags, mask;

	/* "Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT", hex
	 * fields in the kernel's byte order; the first line is the header. */
	next_line(&text, line, sizeof(line));
	while (next_line(&text, line, sizeof(line))) {
		if (sscanf(line, "%16s %x %x %x %*d %*d %*d %x", iface, &dest, &gw,
			   &flags, &mask) != 5)
			continue;
		if (dest == 0 && mask == 0 && (flags & RTF_UP_FLAG) &&
		    !(flags & RTF_REJECT_FLAG) && !streq(iface, "lo")) {
			snprintf(ifname, len, "%s", iface);
			return 1;
		}
	}
	return 0;
}

int netup_route6_default(const char *text, char *ifname, size_t len)
{
	char line[256], dest[33], iface[IF_NAMESIZE + 1];
	unsigned plen, flags;

	/* "dest plen src plen nexthop metric refcnt use flags iface", no header. The
	 * kernel keeps an unreachable default on lo (RTF_REJECT): not a route out. */
	while (next_line(&text, line, sizeof(line))) {
		if (sscanf(line, "%32s %x %*32s %*x %*32s %*x %*x %*x %x %16s", dest,
			   &plen, &flags, iface) != 4)
			continue;
		if (streq(dest, "00000000000000000000000000000000") && plen == 0 &&
		    (flags & RTF_UP_FLAG) && !(flags & RTF_REJECT_FLAG) &&
		    !streq(iface, "lo")) {
			snprintf(ifname, len, "%s", iface);
			return 1;
		}
	}
	return 0;
}

int netup_addr6_routable(const char *text, const char *ifname, char *addr, size_t len)
{
	char line[256], hex[33], iface[IF_NAMESIZE + 1];
	unsigned scope, flags;

	/* "address ifindex prefixlen scope flags ifname", all hex but the name. Scope
	 * 0x00 is global, 0x40 site (fec0::/10: deprecated, but what QEMU's user network
	 * hands out); link (0x20) and host (0x10) addresses reach no router's far side. */
	while (next_line(&text, line, sizeof(line))) {
		struct in6_addr a;

		if (sscanf(line, "%32s %*x %*x %x %x %16s", hex, &scope, &flags, iface) !=
			    4 ||
		    strlen(hex) != 32)
			continue;
		if (!streq(iface, ifname) || (scope != 0x00 && scope != 0x40) ||
		    (flags & (IFA_TENTATIVE | IFA_DADFAILED)))
			continue;
		for (int i = 0; i < 16; i++) {
			unsigned b;
			sscanf(hex + 2 * i, "%2x", &b);
			a.s6_addr[i] = (uint8_t)b;
		}
		if (!inet_ntop(AF_INET6, &a, addr, (socklen_t)len))
			snprintf(addr, len, "?");
		return 1;
	}
	return 0;
}

/* The file's text into buf (NUL-terminated, cut at its size); "" when unreadable. */
static void read_text(const char *dir, const char *name, char *buf, size_t size)
{
	char path[256];
	ssize_t n = 0, r;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while ((size_t)n < size - 1 && (r = read(fd, buf + n, size - 1 - (size_t)n)) > 0)
		n += r;
	buf[n] = '\0';
	close(fd);
}

/* The interface's IPv4 address as text, or false when it has none. */
static bool ipv4_address(const char *ifname, char *buf, size_t len)
{
	struct ifreq ifr = {0};
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	if (strlen(ifname) >= sizeof(ifr.ifr_name))
		return false;
	memcpy(ifr.ifr_name, ifname, strlen(ifname) + 1);
	if (ioctl(fd, SIOCGIFADDR, &ifr) < 0)
		return false;
	return inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, buf,
			 (socklen_t)len) != NULL;
}

int netup_check(const char *procnet, char *what, size_t len)
{
	static char text[65536];
	char ifname[IF_NAMESIZE + 1], addr[INET6_ADDRSTRLEN];
	bool route = false;

	read_text(procnet, "route", text, sizeof(text));
	if (netup_route4_default(text, ifname, sizeof(ifname))) {
		route = true;
		if (ipv4_address(ifname, addr, sizeof(addr))) {
			snprintf(what, len, "IPv4 default route on %s, address %s",
				 ifname, addr);
			return 1;
		}
	}
	read_text(procnet, "ipv6_route", text, sizeof(text));
	if (netup_route6_default(text, ifname, sizeof(ifname))) {
		route = true;
		read_text(procnet, "if_inet6", text, sizeof(text));
		if (netup_addr6_routable(text, ifname, addr, sizeof(addr))) {
			snprintf(what, len, "IPv6 default route on %s, address %s",
				 ifname, addr);
			return 1;
		}
	}
	snprintf(what, len, "%s",
		 route ? "a default route but no address on its interface"
		       : "no address with a default route");
	return 0;
}
