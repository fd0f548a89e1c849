/* TCP for the host tools and the agent (lib/net.h): dialling (every address tried in turn,
 * timeouts so a silent peer cannot hang the caller) and listening (agent, cvm-join). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

int net_dial(const char *target, unsigned timeout_s, char *why, size_t why_len)
{
	_cleanup_free_ char *host = strdup(target);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	struct timeval tv = {.tv_sec = timeout_s};
	char *port;
	int fd = -1, r;

	if (!host)
		return -ENOMEM;
	port = strrchr(host, ':');
	if (!port || port == host || !port[1]) {
		snprintf(why, why_len, "%s: want HOST:PORT", target);
		return -EINVAL;
	}
	*port++ = '\0';
	if (host[0] == '[' && port[-2] == ']') {
		port[-2] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		snprintf(why, why_len, "%s: %s", target, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		r = errno;
		close(fd);
		fd = -1;
		errno = r;
	}
	if (fd < 0)
		snprintf(why, why_len, "%s: %s", target, strerror(errno));
	freeaddrinfo(res);
	return fd < 0 ? -EHOSTUNREACH : fd;
}

static int listen_one(const struct sockaddr *a, socklen_t len, bool nonblock, int backlog,
		      bool dual)
{
	int one = 1, zero = 0, fd, r;

	fd = socket(a->sa_family,
		    SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (dual)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, a, len) == 0 && listen(fd, backlog) == 0)
		return fd;
	r = -errno;
	close(fd);
	return r;
}

int net_listen(const char *addr, bool nonblock, int backlog, char *why, size_t why_len)
{
	_cleanup_free_ char *host = strdup(addr);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags =
					 AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE},
			*res = NULL;
	char *port, *end;
	unsigned long p;
	int fd, r;

	if (!host)
		return -ENOMEM;
	port = strrchr(host, ':');
	if (!port || !port[1])
		goto bad;
	*port++ = '\0';
	p = strtoul(port, &end, 10);
	if (*end || p == 0 || p > 65535)
		goto bad;
	if (!host[0]) {
		/* Every address: dual stack when the kernel has IPv6, else IPv4 alone. */
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
					  .sin6_port = htons((uint16_t)p),
					  .sin6_addr = IN6ADDR_ANY_INIT};
		struct sockaddr_in a4 = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)p),
					 .sin_addr.s_addr = htonl(INADDR_ANY)};

		fd = listen_one((struct sockaddr *)&a6, sizeof(a6), nonblock, backlog,
				true);
		if (fd < 0)
			fd = listen_one((struct sockaddr *)&a4, sizeof(a4), nonblock,
					backlog, false);
		if (fd < 0)
			snprintf(why, why_len, "%s: %s", addr, strerror(-fd));
		return fd;
	}
	if (host[0] == '[' && port[-2] == ']') {
		port[-2] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0 || !res) {
		snprintf(why, why_len, "%s: not a numeric address: %s", addr,
			 r ? gai_strerror(r) : "none");
		if (res)
			freeaddrinfo(res);
		return -EINVAL;
	}
	fd = listen_one(res->ai_addr, res->ai_addrlen, nonblock, backlog, false);
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(why, why_len, "%s: %s", addr, strerror(-fd));
	return fd;
bad:
	snprintf(why, why_len, "%s: want HOST:PORT or :PORT", addr);
	return -EINVAL;
}
