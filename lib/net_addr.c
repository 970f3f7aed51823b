/* lib/net_addr.c — socket addresses as text: IPv4/IPv6 literals with ports,
 * Unix paths and abstract names; parsing with clear -EINVAL, and
 * formatting back into the same forms.
 *
 * Only numeric literals: anything needing a resolver is rejected, so no
 * call here can block. Nothing is written to the caller's address unless
 * the whole input parsed. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "zokio/net.h"

/* The longest host text we accept: an IPv6 literal (45) plus a zone. */
#define HOST_MAX (INET6_ADDRSTRLEN + IF_NAMESIZE + 4)

/* Zone of a link-local IPv6 address: an interface name or a number. */
static int parse_zone(const char *z, uint32_t *out)
{
	if (!*z)
		return -EINVAL;
	char *end;
	unsigned long v = strtoul(z, &end, 10);
	if (*end == '\0' && z[0] >= '0' && z[0] <= '9' && v <= UINT32_MAX) {
		*out = (uint32_t)v;
		return 0;
	}
	unsigned idx = if_nametoindex(z);
	if (!idx)
		return -EINVAL;
	*out = idx;
	return 0;
}

/* host is n bytes (not NUL-terminated), brackets already removed when
 * bracketed is set. */
static int parse_host(const char *host, size_t n, bool bracketed, uint16_t port,
		      struct sockaddr_storage *ss, socklen_t *len)
{
	char buf[HOST_MAX + 1];
	if (n == 0 || n > HOST_MAX)
		return -EINVAL;
	memcpy(buf, host, n);
	buf[n] = '\0';
	if (!bracketed) {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof(sin));
		if (inet_pton(AF_INET, buf, &sin.sin_addr) == 1) {
			sin.sin_family = AF_INET;
			sin.sin_port = htons(port);
			memset(ss, 0, sizeof(*ss));
			memcpy(ss, &sin, sizeof(sin));
			*len = sizeof(sin);
			return 0;
		}
	}
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof(sin6));
	char *pct = strchr(buf, '%');
	if (pct) {
		*pct = '\0';
		uint32_t scope;
		if (parse_zone(pct + 1, &scope) < 0)
			return -EINVAL;
		sin6.sin6_scope_id = scope;
	}
	if (inet_pton(AF_INET6, buf, &sin6.sin6_addr) != 1)
		return -EINVAL;
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &sin6, sizeof(sin6));
	*len = sizeof(sin6);
	return 0;
}

int zk_addr_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	if (!ss || !len)
		return -EINVAL;
	if (!host) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port),
					  .sin_addr.s_addr = htonl(INADDR_ANY)};
		memset(ss, 0, sizeof(*ss));
		memcpy(ss, &sin, sizeof(sin));
		*len = sizeof(sin);
		return 0;
	}
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[') {
		if (host[n - 1] != ']')
			return -EINVAL;
		return parse_host(host + 1, n - 2, true, port, ss, len);
	}
	if (memchr(host, '[', n) || memchr(host, ']', n))
		return -EINVAL;
	return parse_host(host, n, false, port, ss, len);
}

int zk_addr_unix(const char *path, struct sockaddr_storage *ss, socklen_t *len)
{
	if (!path || !ss || !len)
		return -EINVAL;
	struct sockaddr_un sun;
	size_t n = strlen(path);
	bool abstract = path[0] == '@';
	if (n == 0 || (abstract && n == 1))
		return -EINVAL;
	/* A path needs its NUL inside sun_path; an abstract name does not. */
	if (abstract ? n > sizeof(sun.sun_path) : n >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, n);
	if (abstract)
		sun.sun_path[0] = '\0';
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, &sun, sizeof(sun));
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 0 : 1));
	return 0;
}

static int parse_port(const char *p, uint16_t *out)
{
	if (!*p)
		return -EINVAL;
	unsigned long v = 0;
	for (const char *c = p; *c; c++) {
		if (*c < '0' || *c > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*c - '0');
		if (v > 65535)
			return -EINVAL;
	}
	*out = (uint16_t)v;
	return 0;
}

int zk_addr_parse(const char *str, struct sockaddr_storage *ss, socklen_t *len)
{
	if (!str || !ss || !len || !*str)
		return -EINVAL;
	if (str[0] == '/' || str[0] == '@' || (str[0] == '.' && str[1] == '/'))
		return zk_addr_unix(str, ss, len);
	const char *host = str, *colon;
	size_t hlen;
	bool bracketed = false;
	if (str[0] == '[') {
		const char *close = strchr(str, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		host = str + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		bracketed = true;
	} else {
		colon = strrchr(str, ':');
		if (!colon || memchr(str, ':', (size_t)(colon - str)))
			return -EINVAL; /* no port, or an unbracketed IPv6 literal */
		hlen = (size_t)(colon - str);
	}
	uint16_t port;
	if (parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	struct sockaddr_storage tmp;
	socklen_t tlen;
	int r = parse_host(host, hlen, bracketed, port, &tmp, &tlen);
	if (r < 0)
		return r;
	*ss = tmp;
	*len = tlen;
	return 0;
}

int zk_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
	if (!sa || !buf || len < (socklen_t)sizeof(sa_family_t))
		return -EINVAL;
	char out[ZK_ADDR_STRLEN];
	int n;
	switch (sa->sa_family) {
	case AF_INET: {
		if (len < (socklen_t)sizeof(struct sockaddr_in))
			return -EINVAL;
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		n = snprintf(out, sizeof(out), "%s:%u", ip, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		if (len < (socklen_t)sizeof(struct sockaddr_in6))
			return -EINVAL;
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		if (sin6->sin6_scope_id)
			n = snprintf(out, sizeof(out), "[%s%%%u]:%u", ip, sin6->sin6_scope_id,
				     ntohs(sin6->sin6_port));
		else
			n = snprintf(out, sizeof(out), "[%s]:%u", ip, ntohs(sin6->sin6_port));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)sa;
		size_t off = offsetof(struct sockaddr_un, sun_path);
		size_t plen = len > (socklen_t)off ? (size_t)len - off : 0;
		if (plen > sizeof(sun->sun_path))
			plen = sizeof(sun->sun_path);
		if (plen == 0) {
			n = 0;
			out[0] = '\0';
		} else if (sun->sun_path[0] == '\0') {
			out[0] = '@';
			memcpy(out + 1, sun->sun_path + 1, plen - 1);
			out[plen] = '\0';
			n = (int)plen;
		} else {
			size_t l = strnlen(sun->sun_path, plen);
			memcpy(out, sun->sun_path, l);
			out[l] = '\0';
			n = (int)l;
		}
		break;
	}
	default:
		return -EAFNOSUPPORT;
	}
	if ((size_t)n + 1 > cap)
		return -ENOSPC;
	memcpy(buf, out, (size_t)n + 1);
	return n;
}
