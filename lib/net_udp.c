/* lib/net_udp.c — datagram calls: sendto/recvfrom/sendmsg/recvmsg as
 * suspending ops (ZK__OP_SENDMSG / ZK__OP_RECVMSG on every backend), and
 * UDP socket helpers (bound, connected). */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "net_internal.h"
#include "zokio/net.h"

static ssize_t msg_op(uint8_t opcode, int fd, struct msghdr *msg, int flags)
{
	struct zk__op op = {.opcode = opcode, .fd = fd, .msg = msg, .flags = (uint32_t)flags};
	return zk__op_run(&op);
}

ssize_t zk_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	if (!msg)
		return zk__task_here() ? -EINVAL : -EPERM;
	/* The kernel only reads a msghdr it sends. */
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
	struct sockaddr_storage ss;
	socklen_t len;
	if (zk_addr_ip(host, port, &ss, &len) < 0)
		return -EINVAL;
	return zk__sock_bound(ss.ss_family, SOCK_DGRAM, (struct sockaddr *)&ss, len, flags);
}

int zk_udp_connect(const char *host, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!host || zk_addr_ip(host, port, &ss, &len) < 0)
		return -EINVAL;
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A datagram connect only records the peer: it never waits. */
	if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}
