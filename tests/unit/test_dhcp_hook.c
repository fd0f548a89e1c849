/* image/dhcp-hook.c, dhcpcd's script: which lease values reach resolv.conf (addresses
 * and host names only; the host controls the lease), per reason, and the merge. */
#define DHCP_HOOK_NO_MAIN
#include "../../image/dhcp-hook.c"
#include "harness.h"

TEST(dhcp_hook_lease_lines_keep_only_addresses_and_names)
{
	char *env[] = {
		"reason=BOUND",
		"interface=eth0",
		"new_domain_name_servers=10.0.2.3 not-an-ip 1.2.3.4;rm 192.0.2.1 192.0.2.2",
		"new_domain_search=example.org bad\\\\name a..b good-1.test",
		"new_domain_name=ignored.example",
		"nd1_rdnss1_servers=fec0::3",
		"nd1_dnssl1_search=v6.example",
		"PATH=/usr/bin",
		NULL,
	};
	char out[4096];

	CHECK_INT(lease_lines(env, out, sizeof(out)), 7);
	CHECK_STR(out, "nameserver 10.0.2.3\n"
		       "nameserver 192.0.2.1\n"
		       "nameserver 192.0.2.2\n"
		       "search example.org\n"
		       "search good-1.test\n"
		       "nameserver fec0::3\n"
		       "search v6.example\n");
}

TEST(dhcp_hook_domain_name_when_no_search)
{
	char *env[] = {"new_domain_name=corp.example", "new_domain_name_servers=10.0.2.3",
		       NULL};
	char *bad[] = {"new_domain_name=evil\nnameserver 6.6.6.6", NULL};
	char out[4096];

	CHECK_INT(lease_lines(env, out, sizeof(out)), 2);
	CHECK_STR(out, "nameserver 10.0.2.3\nsearch corp.example\n");
	/* A newline in a value cannot add a line: the word is not a name, it is dropped. */
	CHECK_INT(lease_lines(bad, out, sizeof(out)), 0);
	CHECK_STR(out, "");
}

TEST(dhcp_hook_merge)
{
	char *texts[] = {"nameserver 10.0.2.3\nsearch a.test\n",
			 "nameserver 10.0.2.3\nnameserver fec0::3\nsearch b.test\n",
			 "nameserver 1.1.1.1\nnameserver 2.2.2.2\njunk\n"};
	char out[1024];

	CHECK_INT(resolv_merge(texts, 3, out, sizeof(out)), 3);
	CHECK_STR(out, "# from DHCP/RA by dhcpcd and cvminit's dhcp-hook\n"
		       "nameserver 10.0.2.3\nnameserver fec0::3\nnameserver 1.1.1.1\n"
		       "search a.test b.test\n");
	CHECK_INT(resolv_merge(texts, 0, out, sizeof(out)), 0);
	CHECK_STR(out, "# from DHCP/RA by dhcpcd and cvminit's dhcp-hook\n");
}

TEST(dhcp_hook_reasons)
{
	const char *src = NULL;

	CHECK_INT(reason_action("BOUND", &src), 1);
	CHECK_STR(src, "dhcp");
	CHECK_INT(reason_action("ROUTERADVERT", &src), 1);
	CHECK_STR(src, "ra");
	CHECK_INT(reason_action("EXPIRE6", &src), -1);
	CHECK_STR(src, "dhcp6");
	CHECK_INT(reason_action("NOCARRIER", &src), -1);
	CHECK_STR(src, "*");
	CHECK_INT(reason_action("PREINIT", &src), 0);
	CHECK_INT(reason_action("CARRIER", &src), 0);
	CHECK(!valid_ifname("../x"));
	CHECK(!valid_ifname("eth0/x"));
	CHECK(valid_ifname("eth0"));
}
