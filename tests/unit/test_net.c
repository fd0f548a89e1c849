/* The network readiness parsers (/proc/net/route, ipv6_route, if_inet6, as the kernel
 * writes them), netup_check over a fake /proc/net, and sysctl.d lines. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "../../init/netup.h"
#include "../../init/sysctl.h"
#include "harness.h"

static const char route_default[] =
	"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	"eth0\t0002000A\t00000000\t0001\t0\t0\t1002\t00FFFFFF\t0\t0\t0\n"
	"eth0\t00000000\t0202000A\t0003\t0\t0\t1002\t00000000\t0\t0\t0\n";
static const char route_no_default[] =
	"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	"eth0\t0002000A\t00000000\t0001\t0\t0\t1002\t00FFFFFF\t0\t0\t0\n";
/* A default route that is down (flags 0x2) and a reject route: neither counts. */
static const char route_down[] =
	"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	"eth1\t00000000\t0202000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
	"eth2\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n";

static const char route6[] =
	"fec00000000000000000000000000000 40 00000000000000000000000000000000 00 "
	"00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
	"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
	"fe800000000000000000000000000002 00000400 00000001 00000000 00000003     eth0\n";
static const char route6_lo_reject[] =
	"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
	"00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
static const char if_inet6[] = "fe80000000000000505400fffe123456 02 40 20 80     eth0\n"
			       "fec0000000000000505400fffe123456 02 40 00 40     eth0\n"
			       "00000000000000000000000000000001 01 80 10 80       lo\n";
static const char if_inet6_done[] =
	"fec0000000000000505400fffe123456 02 40 40 00     eth0\n";
static const char if_inet6_global[] =
	"fe80000000000000505400fffe123456 02 40 20 80     eth0\n"
	"20010db8000000000000000000000001 02 40 00 00     eth0\n";

TEST(netup_route4)
{
	char ifname[32] = "";

	CHECK_INT(netup_route4_default(route_default, ifname, sizeof(ifname)), 1);
	CHECK_STR(ifname, "eth0");
	CHECK_INT(netup_route4_default(route_no_default, ifname, sizeof(ifname)), 0);
	CHECK_INT(netup_route4_default(route_down, ifname, sizeof(ifname)), 0);
	CHECK_INT(netup_route4_default("", ifname, sizeof(ifname)), 0);
	/* The header alone, or garbage, is no route. */
	CHECK_INT(netup_route4_default("eth0 00000000 x\n", ifname, sizeof(ifname)), 0);
}

TEST(netup_route6_and_address)
{
	char ifname[32] = "";

	CHECK_INT(netup_route6_default(route6, ifname, sizeof(ifname)), 1);
	CHECK_STR(ifname, "eth0");
	CHECK_INT(netup_route6_default(route6_lo_reject, ifname, sizeof(ifname)), 0);
	char a[64] = "";

	/* Link-local (scope 20) and tentative (flag 40) addresses do not count. */
	CHECK_INT(netup_addr6_routable(if_inet6, "eth0", a, sizeof(a)), 0);
	CHECK_INT(netup_addr6_routable(if_inet6_done, "eth0", a, sizeof(a)), 1);
	CHECK_STR(a, "fec0::5054:ff:fe12:3456");
	CHECK_INT(netup_addr6_routable(if_inet6_done, "eth1", a, sizeof(a)), 0);
	CHECK_INT(netup_addr6_routable(if_inet6_global, "eth0", a, sizeof(a)), 1);
	CHECK_STR(a, "2001:db8::1");
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
}

/* The IPv4 address comes from the interface itself, which this fake tree cannot give
 * ("eth0" of the test host may not exist or differ): the IPv6 path decides here. */
TEST(netup_check_fake_proc)
{
	char dir[] = "/tmp/netup-XXXXXX", what[160];

	CHECK(mkdtemp(dir) != NULL);
	write_file(dir, "route", route_no_default);
	write_file(dir, "ipv6_route", route6_lo_reject);
	write_file(dir, "if_inet6", if_inet6);
	CHECK_INT(netup_check(dir, what, sizeof(what)), 0);
	CHECK_STR(what, "no address with a default route");

	write_file(dir, "ipv6_route", route6);
	CHECK_INT(netup_check(dir, what, sizeof(what)), 0);
	CHECK_STR(what, "a default route but no address on its interface");

	write_file(dir, "if_inet6", if_inet6_done);
	CHECK_INT(netup_check(dir, what, sizeof(what)), 1);
	CHECK_STR(what, "IPv6 default route on eth0, address fec0::5054:ff:fe12:3456");
}

TEST(sysctl_lines)
{
	char l1[] = "  net.ipv4.ip_forward = 1  ";
	char l2[] = "-net.bridge.bridge-nf-call-iptables=1";
	char l3[] = "# comment", l4[] = "; comment", l5[] = "   ";
	char l6[] = "no equals sign", l7[] = "../../etc/x = 1", l8[] = " = 1";
	char l9[] = "kernel/printk = 4 4 1 7", l10[] = "/proc/x = 1", l11[] = "a b = 1";
	char *k, *v;
	bool ign = true;

	CHECK_INT(sysctl_parse_line(l1, &k, &v, &ign), 1);
	CHECK_STR(k, "net.ipv4.ip_forward");
	CHECK_STR(v, "1");
	CHECK(!ign);
	CHECK_INT(sysctl_parse_line(l2, &k, &v, &ign), 1);
	CHECK_STR(k, "net.bridge.bridge-nf-call-iptables");
	CHECK(ign);
	CHECK_INT(sysctl_parse_line(l3, &k, &v, &ign), 0);
	CHECK_INT(sysctl_parse_line(l4, &k, &v, &ign), 0);
	CHECK_INT(sysctl_parse_line(l5, &k, &v, &ign), 0);
	CHECK_INT(sysctl_parse_line(l6, &k, &v, &ign), -EINVAL);
	CHECK_INT(sysctl_parse_line(l7, &k, &v, &ign), -EINVAL);
	CHECK_INT(sysctl_parse_line(l8, &k, &v, &ign), -EINVAL);
	CHECK_INT(sysctl_parse_line(l9, &k, &v, &ign), 1);
	CHECK_STR(k, "kernel/printk");
	CHECK_STR(v, "4 4 1 7");
	CHECK_INT(sysctl_parse_line(l10, &k, &v, &ign), -EINVAL);
	CHECK_INT(sysctl_parse_line(l11, &k, &v, &ign), -EINVAL);
}

/* Files in name order across directories, a later directory's file replacing one of the
 * same name; a key that does not exist is a named failure, a '-' one is not. */
TEST(sysctl_apply_counts_failures)
{
	char a[] = "/tmp/sysctl-a-XXXXXX", b[] = "/tmp/sysctl-b-XXXXXX";
	const char *dirs[] = {a, b, NULL};

	CHECK(mkdtemp(a) != NULL);
	CHECK(mkdtemp(b) != NULL);
	write_file(a, "10-x.conf", "cvminit.test.no.such.key = 1\n");
	write_file(b, "10-x.conf", "-cvminit.test.no.such.key = 1\n# replaced\n");
	write_file(b, "20-y.conf", "cvminit.test.missing = 2\nnot a setting\n");
	write_file(b, "30-z.txt", "cvminit.test.ignored = 3\n");
	CHECK_INT(sysctl_apply(dirs), 2);
}

/* A key whose /proc/sys file does not exist yet is kept by sysctl_apply_present() (not
 * failed) and tried by sysctl_apply_later(), once, where a still missing one fails; a key
 * that exists is tried at once (kernel.osrelease is read-only: a failure now, never
 * kept, and nothing of the host's is changed). */
TEST(sysctl_present_then_later)
{
	char d[] = "/tmp/sysctl-p-XXXXXX";
	const char *dirs[] = {d, NULL};

	CHECK(mkdtemp(d) != NULL);
	write_file(d, "10-x.conf",
		   "cvminit.test.later.a = 1\nkernel.osrelease = 0\n"
		   "-cvminit.test.later.b = 2\n");
	CHECK_INT(sysctl_apply_present(dirs), 1); /* osrelease */
	CHECK_INT(sysctl_apply_later(false), 0);  /* still missing: kept */
	CHECK_INT(sysctl_apply_later(false), 0);
	CHECK_INT(sysctl_apply_later(true), 1); /* a fails; b is '-' */
	CHECK_INT(sysctl_apply_later(true), 0); /* nothing is kept twice */
	CHECK_INT(sysctl_apply(dirs), 2);	/* osrelease and a, nothing kept */
	CHECK_INT(sysctl_apply_later(true), 0);
}
