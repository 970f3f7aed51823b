/* backends/iocp/net_win.c — the Windows build's TCP helpers and IP address
 * parsing (lib/net_util.c and lib/net_addr.c are POSIX sockets code).
 * Sockets are created overlapped (WSA_FLAG_OVERLAPPED), as the IOCP
 * backend needs, and not inheritable. A SOCKET travels in the int fd.
 *
 * Differences from Linux: listeners do not set SO_REUSEADDR (on Windows it
 * lets another socket steal a bound port; TIME_WAIT does not block a
 * rebind there anyway); ZK_TCP_REUSEPORT is -EOPNOTSUPP; zk_addr_ip takes
 * no IPv6 zone. UDP: see the SENDMSG/RECVMSG notes in iocp.c. */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>
#include <mswsock.h> /* SIO_UDP_CONNRESET */
#include <ws2tcpip.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "../../lib/internal.h"
#include "iocp_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"

static int sock_err(void)
{
	return zk__win_errno((DWORD)WSAGetLastError());
}

static int new_socket_type(int family, int type)
{
	int r = zk__win_wsa_init();
	if (r < 0)
		return r;
	SOCKET s = WSASocketW(family, type, type == SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP, NULL,
			      0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	if (s == INVALID_SOCKET)
		return sock_err();
	if ((uintptr_t)s > INT32_MAX) {
		closesocket(s);
		return -EMFILE;
	}
	return (int)(uintptr_t)s;
}

static int new_socket(int family)
{
	return new_socket_type(family, SOCK_STREAM);
}

int zk_addr_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	if (!ss || !len)
		return -EINVAL;
	if (zk__win_wsa_init() < 0)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (!host) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*len = sizeof(*in);
		return 0;
	}
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(host);
	if (n == 0 || n >= sizeof buf)
		return -EINVAL;
	memcpy(buf, host, n + 1);
	const char *h = buf;
	bool bracket = buf[0] == '[';
	if (bracket) {
		if (n < 3 || buf[n - 1] != ']')
			return -EINVAL;
		buf[n - 1] = 0;
		h = buf + 1;
	} else if (strchr(buf, ']')) {
		return -EINVAL;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	if (!bracket && inet_pton(AF_INET, h, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		*len = sizeof(*in);
		return 0;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

int zk_tcp_listen_addr(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags)
{
	if (!sa || (flags & ~(ZK_TCP_REUSEPORT | ZK_TCP_V6ONLY)))
		return -EINVAL;
	if (flags & ZK_TCP_REUSEPORT)
		return -EOPNOTSUPP;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	int fd = new_socket(sa->sa_family);
	if (fd < 0)
		return fd;
	SOCKET s = (SOCKET)(uintptr_t)fd;
	DWORD one = 1, v6only = (flags & ZK_TCP_V6ONLY) ? 1 : 0;
	if (sa->sa_family == AF_INET6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&v6only, sizeof v6only);
	/* Accepted sockets inherit TCP_NODELAY (SO_UPDATE_ACCEPT_CONTEXT). */
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (char *)&one, sizeof one);
	if (bind(s, sa, len) != 0 || listen(s, backlog > 0 ? backlog : SOMAXCONN) != 0) {
		int e = sock_err();
		closesocket(s);
		return e;
	}
	return fd;
}

int zk_tcp_listen_flags(const char *host, uint16_t port, int backlog, unsigned flags)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r = zk_addr_ip(host, port, &ss, &len);
	if (r < 0)
		return r;
	return zk_tcp_listen_addr((struct sockaddr *)&ss, len, backlog, flags);
}

int zk_tcp_listen(const char *host, uint16_t port, int backlog)
{
	return zk_tcp_listen_flags(host, port, backlog, 0);
}

int zk_tcp_connect_addr(const struct sockaddr *sa, socklen_t len)
{
	if (!zk__task_here())
		return -EPERM;
	if (!sa)
		return -EINVAL;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	int fd = new_socket(sa->sa_family);
	if (fd < 0)
		return fd;
	int r = zk_connect(fd, sa, len);
	if (r < 0) {
		zk_close(fd);
		return r;
	}
	zk_tcp_nodelay(fd, true);
	return fd;
}

int zk_tcp_connect(const char *host, uint16_t port)
{
	if (!host)
		return zk__task_here() ? -EINVAL : -EPERM;
	struct sockaddr_storage ss;
	socklen_t len;
	int r = zk_addr_ip(host, port, &ss, &len);
	if (r < 0)
		return zk__task_here() ? r : -EPERM;
	return zk_tcp_connect_addr((struct sockaddr *)&ss, len);
}

int zk_tcp_nodelay(int fd, bool on)
{
	DWORD v = on ? 1 : 0;
	if (fd < 0)
		return -EBADF;
	if (setsockopt((SOCKET)(uintptr_t)fd, IPPROTO_TCP, TCP_NODELAY, (char *)&v, sizeof v) != 0)
		return sock_err();
	return 0;
}

int zk_socket_port(int fd)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (fd < 0)
		return -EBADF;
	if (getsockname((SOCKET)(uintptr_t)fd, (struct sockaddr *)&ss, &len) != 0)
		return sock_err();
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

/* ---- UDP ------------------------------------------------------------------- */

static ssize_t msg_op(uint8_t opcode, int fd, struct msghdr *msg, int flags)
{
	struct zk__op op = {.opcode = opcode, .fd = fd, .msg = msg, .flags = (uint32_t)flags};
	return zk__op_run(&op);
}

ssize_t zk_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (!msg)
		return zk__task_here() ? -EINVAL : -EPERM;
	/* Winsock only reads a message it sends. */
	return msg_op(ZK__OP_SENDMSG, fd, (struct msghdr *)msg, flags);
}

ssize_t zk_recvmsg(int fd, struct msghdr *msg, int flags)
{
	if (!msg)
		return zk__task_here() ? -EINVAL : -EPERM;
	return msg_op(ZK__OP_RECVMSG, fd, msg, flags);
}

ssize_t zk_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
		  socklen_t addrlen)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len > INT_MAX ? INT_MAX : len};
	struct msghdr m = {.msg_name = (void *)addr, .msg_namelen = addr ? addrlen : 0,
			   .msg_iov = &iov, .msg_iovlen = 1};
	return msg_op(ZK__OP_SENDMSG, fd, &m, flags);
}

ssize_t zk_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
		    socklen_t *addrlen)
{
	if ((addr == NULL) != (addrlen == NULL))
		return zk__task_here() ? -EINVAL : -EPERM;
	struct iovec iov = {.iov_base = buf, .iov_len = len > INT_MAX ? INT_MAX : len};
	struct msghdr m = {.msg_name = addr, .msg_namelen = addrlen ? *addrlen : 0,
			   .msg_iov = &iov, .msg_iovlen = 1};
	ssize_t r = msg_op(ZK__OP_RECVMSG, fd, &m, flags);
	if (r >= 0 && addrlen)
		*addrlen = m.msg_namelen;
	return r;
}

int zk_udp_bind(const char *host, uint16_t port, unsigned flags)
{
	if (flags & ~(ZK_TCP_REUSEPORT | ZK_TCP_V6ONLY))
		return -EINVAL;
	if (flags & ZK_TCP_REUSEPORT)
		return -EOPNOTSUPP;
	struct sockaddr_storage ss;
	socklen_t len;
	if (zk_addr_ip(host, port, &ss, &len) < 0)
		return -EINVAL;
	int fd = new_socket_type(ss.ss_family, SOCK_DGRAM);
	if (fd < 0)
		return fd;
	SOCKET s = (SOCKET)(uintptr_t)fd;
	DWORD v6only = (flags & ZK_TCP_V6ONLY) ? 1 : 0;
	if (ss.ss_family == AF_INET6)
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&v6only, sizeof v6only);
	/* Windows fails the next receive of an unconnected UDP socket with
	 * WSAECONNRESET when an earlier send drew an ICMP port unreachable;
	 * POSIX reports nothing there. */
	BOOL off = FALSE;
	DWORD n;
	WSAIoctl(s, SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &n, NULL, NULL);
	if (bind(s, (struct sockaddr *)&ss, len) != 0) {
		int e = sock_err();
		closesocket(s);
		return e;
	}
	return fd;
}

int zk_udp_connect(const char *host, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!host || zk_addr_ip(host, port, &ss, &len) < 0)
		return -EINVAL;
	int fd = new_socket_type(ss.ss_family, SOCK_DGRAM);
	if (fd < 0)
		return fd;
	/* A datagram connect only records the peer: it never waits. */
	if (connect((SOCKET)(uintptr_t)fd, (struct sockaddr *)&ss, len) != 0) {
		int e = sock_err();
		closesocket((SOCKET)(uintptr_t)fd);
		return e;
	}
	return fd;
}
