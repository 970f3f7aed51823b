/* lib/net_exact.c — whole transfers: loops over short reads and writes
 * (zk_recv_exact, zk_send_all, zk_read_exact, zk_write_all). */
#include <errno.h>

#include "internal.h"
#include "net_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"

ssize_t zk_recv_exact(int fd, void *buf, size_t len)
{
	if (!zk__task_here())
		return -EPERM;
	size_t got = 0;
	while (got < len) {
		/* MSG_WAITALL: the kernel keeps filling the buffer itself, so a
		 * large read is usually one op, not one per segment. */
		ssize_t n = zk_recv(fd, (char *)buf + got, len - got, MSG_WAITALL);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

ssize_t zk_send_all(int fd, const void *buf, size_t len)
{
	if (!zk__task_here())
		return -EPERM;
	size_t sent = 0;
	while (sent < len) {
		size_t left = len - sent, zc = zk__send_zc_piece(left);
		ssize_t n = zc ? zk_send_zc(fd, (const char *)buf + sent, zc, 0) : -EOPNOTSUPP;
		if (n == -EOPNOTSUPP)
			n = zk_send(fd, (const char *)buf + sent, left, 0);
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;
		sent += (size_t)n;
	}
	return (ssize_t)sent;
}

ssize_t zk_read_exact(int fd, void *buf, size_t len, int64_t off)
{
	if (!zk__task_here())
		return -EPERM;
	size_t got = 0;
	while (got < len) {
		ssize_t n = zk_read(fd, (char *)buf + got, len - got, off < 0 ? -1 : off + (int64_t)got);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

ssize_t zk_write_all(int fd, const void *buf, size_t len, int64_t off)
{
	if (!zk__task_here())
		return -EPERM;
	size_t done = 0;
	while (done < len) {
		ssize_t n = zk_write(fd, (const char *)buf + done, len - done,
				     off < 0 ? -1 : off + (int64_t)done);
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}
