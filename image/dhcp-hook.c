/* dhcp-hook: dhcpcd's --script on the node (the root has no shell for dhcpcd-run-hooks).
 * It writes the DNS servers and search domains of each lease into /run/cvminit/resolv.conf.
 *
 * dhcpcd runs it with the lease in the environment (dhcpcd-run-hooks(8)): reason,
 * interface, new_domain_name_servers, new_domain_search, new_domain_name (DHCPv4),
 * new_dhcp6_name_servers, new_dhcp6_domain_search (DHCPv6), nd<i>_rdnss<j>_servers and
 * nd<i>_dnssl<j>_search (IPv6 router advertisements). These values come from the network,
 * which the host controls: only what parses as an address or a host name is kept, the rest
 * is dropped and said on stderr (the service's log). One file per interface and source
 * under /run/cvminit/dns/; resolv.conf is made from all of them, written to a temporary
 * file and renamed. This runs in dhcpcd's process tree, never in PID 1. Nothing else
 * (hostname, NTP, routes) is taken from the lease here: dhcpcd sets addresses and routes
 * itself, the hostname is the node's own (cvminit, from the machine ID). */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUN_DIR	    "/run/cvminit"
#define DNS_DIR	    RUN_DIR "/dns"
#define RESOLV_CONF RUN_DIR "/resolv.conf"
#define NS_MAX	    3 /* what the resolvers read (MAXNS) */
#define SEARCH_MAX  6
#define VALUE_MAX   1024

/* An IPv4 or IPv6 address, as text: the only form a name server is kept in. */
static bool valid_address(const char *s)
{
	unsigned char buf[16];

	return strlen(s) < INET6_ADDRSTRLEN &&
	       (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* A DNS name of letters, digits, '-', '_' and dots: labels of 1-63, at most 253 in all.
 * Nothing that could end the line or start a new directive in resolv.conf. */
static bool valid_domain(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 253)
		return false;
	for (const char *c = s; *c; c++) {
		if (*c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* An interface name is part of a file name here. */
static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 15 || s[0] == '.')
		return false;
	for (const char *c = s; *c; c++)
		if (*c == '/' || *c <= ' ' || *c > '~')
			return false;
	return true;
}

/* Appends the words of value that pass check to out as "<prefix> <word>\n" lines;
 * returns how many were kept. A word that does not pass is reported. */
static int add_words(const char *value, bool (*check)(const char *), const char *prefix,
		     char *out, size_t size, int max)
{
	char buf[VALUE_MAX + 1], *save = NULL;
	int kept = 0;

	if (!value)
		return 0;
	if (strlen(value) > VALUE_MAX) {
		fprintf(stderr, "dhcp-hook: a %s value of %zu bytes dropped\n", prefix,
			strlen(value));
		return 0;
	}
	strcpy(buf, value);
	for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		size_t len = strlen(out);

		if (!check(w)) {
			fprintf(stderr,
				"dhcp-hook: dropped a %s that is not one: \"%.64s\"\n",
				prefix, w);
			continue;
		}
		if (kept == max)
			break;
		snprintf(out + len, size - len, "%s %s\n", prefix, w);
		kept++;
	}
	return kept;
}

/* The lines one lease gives: "nameserver <addr>" and "search <domain>", from the
 * environment of this reason. Returns the number of lines. */
int lease_lines(char *const *env, char *out, size_t size);
int lease_lines(char *const *env, char *out, size_t size)
{
	int n = 0;

	const char *domain_name = NULL;

	out[0] = '\0';
	for (char *const *e = env; *e; e++) {
		const char *eq = strchr(*e, '=');
		char key[64];

		if (!eq || eq - *e >= (long)sizeof(key))
			continue;
		snprintf(key, sizeof(key), "%.*s", (int)(eq - *e), *e);
		if (!strcmp(key, "new_domain_name"))
			domain_name = eq + 1;
		else if (!strcmp(key, "new_domain_name_servers") ||
			 !strcmp(key, "new_dhcp6_name_servers") ||
			 (!strncmp(key, "nd", 2) && strstr(key, "_rdnss") &&
			  strstr(key, "_servers")))
			n += add_words(eq + 1, valid_address, "nameserver", out, size,
				       NS_MAX);
		else if (!strcmp(key, "new_domain_search") ||
			 !strcmp(key, "new_dhcp6_domain_search") ||
			 (!strncmp(key, "nd", 2) && strstr(key, "_dnssl") &&
			  strstr(key, "_search")))
			n += add_words(eq + 1, valid_domain, "search", out, size,
				       SEARCH_MAX);
	}
	/* A domain name alone (DHCPv4 option 15, one name) is the search list when none is
	 * given. */
	if (!strstr(out, "search ") && domain_name) {
		if (valid_domain(domain_name))
			n += add_words(domain_name, valid_domain, "search", out, size, 1);
		else
			fprintf(stderr,
				"dhcp-hook: dropped a domain name that is not one\n");
	}
	return n;
}

/* Merges lease files (name order) into resolv.conf text: at most NS_MAX name servers
 * and one search line, duplicates dropped. */
int resolv_merge(char *const *texts, int ntexts, char *out, size_t size);
int resolv_merge(char *const *texts, int ntexts, char *out, size_t size)
{
	char ns[NS_MAX][INET6_ADDRSTRLEN], search[SEARCH_MAX][254];
	int nns = 0, nsearch = 0;
	size_t len;

	for (int i = 0; i < ntexts; i++) {
		char buf[4096], *save = NULL;

		snprintf(buf, sizeof(buf), "%s", texts[i]);
		for (char *l = strtok_r(buf, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save)) {
			const char *v;
			bool dup = false;

			if (!strncmp(l, "nameserver ", 11) && valid_address(v = l + 11)) {
				for (int j = 0; j < nns; j++)
					dup |= !strcmp(ns[j], v);
				if (!dup && nns < NS_MAX)
					snprintf(ns[nns++], sizeof(ns[0]), "%s", v);
			} else if (!strncmp(l, "search ", 7) && valid_domain(v = l + 7)) {
				for (int j = 0; j < nsearch; j++)
					dup |= !strcmp(search[j], v);
				if (!dup && nsearch < SEARCH_MAX)
					snprintf(search[nsearch++], sizeof(search[0]),
						 "%s", v);
			}
		}
	}
	snprintf(out, size, "# from DHCP/RA by dhcpcd and cvminit's dhcp-hook\n");
	for (int i = 0; i < nns; i++) {
		len = strlen(out);
		snprintf(out + len, size - len, "nameserver %s\n", ns[i]);
	}
	if (nsearch) {
		len = strlen(out);
		snprintf(out + len, size - len, "search");
		for (int i = 0; i < nsearch; i++) {
			len = strlen(out);
			snprintf(out + len, size - len, " %s", search[i]);
		}
		len = strlen(out);
		snprintf(out + len, size - len, "\n");
	}
	return nns;
}

/* What a reason does with this interface's file of that source: 1 write, -1 remove,
 * 0 nothing. */
int reason_action(const char *reason, const char **source);
int reason_action(const char *reason, const char **source)
{
	static const struct {
		const char *reason, *source;
		int action;
	} table[] = {
		{"BOUND", "dhcp", 1},	  {"RENEW", "dhcp", 1},
		{"REBIND", "dhcp", 1},	  {"REBOOT", "dhcp", 1},
		{"INFORM", "dhcp", 1},	  {"STATIC", "dhcp", 1},
		{"BOUND6", "dhcp6", 1},	  {"RENEW6", "dhcp6", 1},
		{"REBIND6", "dhcp6", 1},  {"REBOOT6", "dhcp6", 1},
		{"INFORM6", "dhcp6", 1},  {"ROUTERADVERT", "ra", 1},
		{"EXPIRE", "dhcp", -1},	  {"FAIL", "dhcp", -1},
		{"RELEASE", "dhcp", -1},  {"STOP", "dhcp", -1},
		{"NOCARRIER", "*", -1},	  {"DEPARTED", "*", -1},
		{"EXPIRE6", "dhcp6", -1}, {"RELEASE6", "dhcp6", -1},
		{"STOP6", "dhcp6", -1},
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!strcmp(reason, table[i].reason)) {
			*source = table[i].source;
			return table[i].action;
		}
	return 0;
}

/* The unit test (tests/unit/test_dhcp_hook.c) takes the pure parts above. */
#ifndef DHCP_HOOK_NO_MAIN
static int write_file(const char *path, const char *text)
{
	char tmp[300];
	size_t n = strlen(text);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, n) != (ssize_t)n) {
		int r = -errno;
		close(fd);
		unlink(tmp);
		return r;
	}
	close(fd);
	return rename(tmp, path) < 0 ? -errno : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* resolv.conf from every file under DNS_DIR. */
static int rebuild(void)
{
	static char bufs[32][4096], out[8192];
	char *names[32], *texts[32];
	static char namebuf[32][256];
	struct dirent *e;
	int n = 0, nns;
	DIR *d = opendir(DNS_DIR);

	while (d && (e = readdir(d)) && n < 32) {
		if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp"))
			continue;
		snprintf(namebuf[n], sizeof(namebuf[0]), "%s", e->d_name);
		names[n] = namebuf[n];
		n++;
	}
	if (d)
		closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	for (int i = 0; i < n; i++) {
		char path[300];
		ssize_t len = -1;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", DNS_DIR, names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			len = read(fd, bufs[i], sizeof(bufs[0]) - 1);
			close(fd);
		}
		bufs[i][len < 0 ? 0 : len] = '\0';
		texts[i] = bufs[i];
	}
	nns = resolv_merge(texts, n, out, sizeof(out));
	fprintf(stderr, "dhcp-hook: %s: %d name server(s) from %d lease file(s)\n",
		RESOLV_CONF, nns, n);
	return write_file(RESOLV_CONF, out);
}

extern char **environ;

int main(void)
{
	const char *reason = getenv("reason"), *ifname = getenv("interface");
	const char *source = NULL;
	static char text[4096];
	char path[300];
	int action, r;

	if (!reason || !ifname || !valid_ifname(ifname))
		return 0;
	action = reason_action(reason, &source);
	if (!action)
		return 0;
	mkdir(RUN_DIR, 0755);
	mkdir(DNS_DIR, 0755);
	if (action > 0) {
		int n = lease_lines(environ, text, sizeof(text));
		snprintf(path, sizeof(path), "%s/%s.%s", DNS_DIR, ifname, source);
		fprintf(stderr, "dhcp-hook: %s on %s: %d line(s)\n", reason, ifname, n);
		r = write_file(path, text);
		if (r < 0)
			fprintf(stderr, "dhcp-hook: write %s: %s\n", path, strerror(-r));
	} else {
		static const char *const all[] = {"dhcp", "dhcp6", "ra"};
		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
			if (strcmp(source, "*") && strcmp(source, all[i]))
				continue;
			snprintf(path, sizeof(path), "%s/%s.%s", DNS_DIR, ifname, all[i]);
			unlink(path);
		}
		fprintf(stderr, "dhcp-hook: %s on %s: its DNS servers dropped\n", reason,
			ifname);
	}
	r = rebuild();
	if (r < 0)
		fprintf(stderr, "dhcp-hook: write %s: %s\n", RESOLV_CONF, strerror(-r));
	/* dhcpcd logs a failing script; the lease itself stands either way. */
	return r < 0;
}
#endif
