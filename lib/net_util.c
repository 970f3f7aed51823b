/* lib/net_util.c — TCP helpers over the suspending socket calls: listeners
 * (IPv4 and IPv6, SO_REUSEPORT), connected streams, and the stream
 * options (TCP_NODELAY, keep-alive). Address parsing is net_addr.c's. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "net_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/time.h"

#define LISTEN_FLAGS (ZK_TCP_REUSEPORT | ZK_TCP_V6ONLY)

int zk__sock_bound(int family, int type, const struct sockaddr *sa, socklen_t len,
		   unsigned flags)
{
	int fd = socket(family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (family == AF_INET || family == AF_INET6) {
		/* TCP: rebind a port whose old connections linger in TIME_WAIT.
		 * Not UDP, where SO_REUSEADDR lets any other socket bind the
		 * same port and take a share of its datagrams. */
		if (type == SOCK_STREAM)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if ((flags & ZK_TCP_REUSEPORT) &&
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
			goto fail;
		if (family == AF_INET6 && (flags & ZK_TCP_V6ONLY) &&
		    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
			goto fail;
	}
	if (bind(fd, sa, len) != 0)
		goto fail;
	return fd;
fail:;
	int e = -errno;
	close(fd);
	return e;
}

int zk_tcp_listen_addr(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags)
{
	if (!sa || (flags & ~LISTEN_FLAGS))
		return -EINVAL;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	int fd = zk__sock_bound(sa->sa_family, SOCK_STREAM, sa, len, flags);
	if (fd < 0)
		return fd;
	/* Accepted sockets inherit TCP_NODELAY from the listener. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int zk_tcp_listen_flags(const char *host, uint16_t port, int backlog, unsigned flags)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (zk_addr_ip(host, port, &ss, &len) < 0)
		return -EINVAL;
	return zk_tcp_listen_addr((struct sockaddr *)&ss, len, backlog, flags);
}

int zk_tcp_listen(const char *host, uint16_t port, int backlog)
{
	return zk_tcp_listen_flags(host, port, backlog, 0);
}

int zk__sock_connect(int family, int type, const struct sockaddr *sa, socklen_t len)
{
	if (!zk__task_here())
		return -EPERM;
	int fd = socket(family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (type == SOCK_STREAM && family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	int r = zk_connect(fd, sa, len);
	if (r < 0) {
		/* Through the backend, so a readiness backend drops its
		 * registration of the fd at once. */
		zk_close(fd);
		return r;
	}
	return fd;
}

int zk_tcp_connect_addr(const struct sockaddr *sa, socklen_t len)
{
	if (!zk__task_here())
		return -EPERM;
	if (!sa)
		return -EINVAL;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	return zk__sock_connect(sa->sa_family, SOCK_STREAM, sa, len);
}

int zk_tcp_connect(const char *host, uint16_t port)
{
	if (!zk__task_here())
		return -EPERM;
	struct sockaddr_storage ss;
	socklen_t len;
	if (!host || zk_addr_ip(host, port, &ss, &len) < 0)
		return -EINVAL;
	return zk__sock_connect(ss.ss_family, SOCK_STREAM, (struct sockaddr *)&ss, len);
}

/* setsockopt at the TCP level; a non-TCP socket reports EOPNOTSUPP (Unix
 * sockets) or ENOPROTOOPT (UDP): both become -EOPNOTSUPP. */
static int tcp_opt(int fd, int level, int name, int v)
{
	if (setsockopt(fd, level, name, &v, sizeof(v)) == 0)
		return 0;
	return errno == ENOPROTOOPT ? -EOPNOTSUPP : -errno;
}

/* Checks that fd is a TCP socket, so that an option SOL_SOCKET accepts on
 * any socket (SO_KEEPALIVE) is not silently set on a Unix one. */
static int check_tcp(int fd)
{
	int proto = 0;
	socklen_t l = sizeof(proto);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) != 0)
		return -errno;
	return proto == IPPROTO_TCP ? 0 : -EOPNOTSUPP;
}

int zk_tcp_nodelay(int fd, bool on)
{
	int r = check_tcp(fd);
	return r < 0 ? r : tcp_opt(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int zk_tcp_keepalive(int fd, int idle_s, int interval_s, int count)
{
	if (idle_s < 0 || interval_s < 0 || count < 0)
		return -EINVAL;
	int r = check_tcp(fd);
	if (r < 0)
		return r;
	if (idle_s == 0)
		return tcp_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
	if ((r = tcp_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
		return r;
	if (interval_s && (r = tcp_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
		return r;
	if (count && (r = tcp_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
		return r;
	return tcp_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
}

int zk_close_graceful(int fd, uint64_t timeout_ns)
{
	if (!zk__task_here())
		return -EPERM;
	int r = zk_shutdown(fd, SHUT_WR);
	uint64_t deadline = timeout_ns ? zk_now_ns() + timeout_ns : 0;
	char sink[512];
	while (r == 0) {
		if (deadline) {
			uint64_t now = zk_now_ns();
			if (now >= deadline) {
				r = -ETIMEDOUT;
				break;
			}
			zk_timeout_next(deadline - now);
		}
		ssize_t n = zk_recv(fd, sink, sizeof(sink), 0);
		if (n == 0)
			break;
		if (n < 0)
			r = (int)n;
	}
	int c = zk_close(fd);
	return r < 0 ? r : c;
}

int zk_socket_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}
