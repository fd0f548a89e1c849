/* The node on the network, PID 1's part: drivers by modalias, loopback up, the hostname
 * from the machine ID. Addresses, routes and DNS come from dhcpcd, a supervised service:
 * PID 1 never reads a packet. */
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "../lib/digest.h"
#include "../lib/hex.h"
#include "log.h"
#include "modules.h"
#include "net.h"

#define MODALIAS_MAX 32

/* First line of a sysfs file into buf; false when unreadable or empty. */
static bool sysfs_line(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return buf[0] != '\0';
}

/* Is this device of the bus a network device whose driver we should look for? PCI:
 * class 0x02 (network controller: gve, ena, mana, virtio-net's transitional id is
 * handled by virtio_pci); virtio: device id 1 (net); VMBus: every device (hv_netvsc
 * among them; the bus only exists on Hyper-V/Azure). */
static bool is_network_device(const char *bus, const char *dev, const char *modalias)
{
	char path[320], class[32];

	if (streq(bus, "pci")) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/class", dev);
		return sysfs_line(path, class, sizeof(class)) &&
		       startswith(class, "0x02");
	}
	if (streq(bus, "virtio"))
		return startswith(modalias, "virtio:d00000001v") != NULL;
	return streq(bus, "vmbus");
}

/* Collects the modaliases of the bus's network devices that have no driver yet. */
static int collect(const char *bus, char aliases[][128], int n, int max)
{
	char dir[64], path[400], alias[128];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/sys/bus/%s/devices", bus);
	d = opendir(dir);
	if (!d)
		return n;
	while ((e = readdir(d)) && n < max) {
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/driver", dir, e->d_name);
		if (lstat(path, &st) == 0)
			continue; /* bound already */
		snprintf(path, sizeof(path), "%s/%s/modalias", dir, e->d_name);
		if (!sysfs_line(path, alias, sizeof(alias)))
			continue;
		if (!is_network_device(bus, e->d_name, alias))
			continue;
		log_debug("net: %s device %s: %s", bus, e->d_name, alias);
		snprintf(aliases[n++], sizeof(aliases[0]), "%s", alias);
	}
	closedir(d);
	return n;
}

int net_drivers_load(void)
{
	static char aliases[MODALIAS_MAX][128];
	char *list[MODALIAS_MAX];
	char alias[128];
	char *vmbus[] = {alias};
	int n = 0, r;

	/* Hyper-V: the VMBus driver first (its ACPI device), so that the bus and its
	 * devices exist when they are walked below. */
	if (sysfs_line("/sys/bus/acpi/devices/VMBUS:00/modalias", alias, sizeof(alias)))
		modules_load_aliases(vmbus, 1, "Hyper-V VMBus");
	n = collect("pci", aliases, n, MODALIAS_MAX);
	n = collect("virtio", aliases, n, MODALIAS_MAX);
	n = collect("vmbus", aliases, n, MODALIAS_MAX);
	for (int i = 0; i < n; i++)
		list[i] = aliases[i];
	r = modules_load_aliases(list, n, "network device");
	if (n == 0)
		log_warn("net: no network device without a driver found (no NIC?)");
	else
		log_info(
			"net: %d network device(s) without a driver, %d driver match(es) "
			"loaded",
			n, r < 0 ? 0 : r);
	return r;
}

int net_setup(void)
{
	struct ifreq ifr = {.ifr_name = "lo"};
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r = 0, out;

	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		r = log_warn_errno(-errno, "net: loopback flags");
	else {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			r = log_warn_errno(-errno, "net: loopback up");
	}
	/* /etc/resolv.conf on the read-only root points here; dhcpcd's hook (image/
	 * dhcp-hook.c) fills it from the lease. Until then it says why it is empty. */
	if (mkdir(NET_RUN_DIR, 0755) < 0 && errno != EEXIST)
		return log_warn_errno(-errno, "net: mkdir %s", NET_RUN_DIR);
	out = open(NET_RESOLV_CONF, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out >= 0) {
		static const char text[] =
			"# no DNS servers yet: the DHCP lease has not come\n";
		if (write(out, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1)
			r = log_warn_errno(-errno, "net: write %s", NET_RESOLV_CONF);
		close(out);
	}
	if (r == 0)
		log_info("net: loopback up; %s waits for the DHCP lease",
			 NET_RESOLV_CONF);
	return r;
}

int net_hostname_from_machine_id(const char *machine_id, char out[NET_HOSTNAME_MAX])
{
	static const char label[] = "cvminit hostname:";
	char text[sizeof(label) + 32];
	uint8_t sum[32];
	char hex[65];

	if (strlen(machine_id) != 32 || strspn(machine_id, "0123456789abcdef") != 32)
		return -EINVAL;
	snprintf(text, sizeof(text), "%s%s", label, machine_id);
	if (digest_compute(DIGEST_ALG_SHA256, text, strlen(text), sum) != 32)
		return -EIO;
	hex_encode(sum, 8, hex);
	snprintf(out, NET_HOSTNAME_MAX, "cvm-%.16s", hex);
	return 0;
}

int net_hostname_set(void)
{
	char id[64], name[NET_HOSTNAME_MAX];
	int r;

	if (!sysfs_line("/etc/machine-id", id, sizeof(id))) {
		log_warn("net: no /etc/machine-id: the hostname stays \"(none)\"");
		return -ENOENT;
	}
	r = net_hostname_from_machine_id(id, name);
	if (r < 0)
		return log_warn_errno(
			r, "net: /etc/machine-id \"%.40s\" is not a machine ID", id);
	if (sethostname(name, strlen(name)) < 0)
		return log_warn_errno(-errno, "net: sethostname %s", name);
	log_info("net: hostname %s (from the machine ID)", name);
	return 0;
}
