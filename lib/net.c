/* TCP dialling for the host tool and the agent (lib/net.h): the address lookup, every
 * address tried in turn, timeouts on the socket so a silent peer cannot hang the caller. */
#include <errno.h>
#include <netdb.h>
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
