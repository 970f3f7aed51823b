/* lib/net_unix.c — Unix domain sockets: stream listeners and connections,
 * datagram sockets; paths or abstract names ("@name"). */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "net_internal.h"
#include "zokio/net.h"

int zk_unix_listen(const char *path, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r = zk_addr_unix(path, &ss, &len);
	if (r < 0)
		return r;
	int fd = zk__sock_bound(AF_UNIX, SOCK_STREAM, (struct sockaddr *)&ss, len, 0);
	if (fd < 0)
		return fd;
	if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int zk_unix_connect(const char *path)
{
	if (!zk__task_here())
		return -EPERM;
	struct sockaddr_storage ss;
	socklen_t len;
	int r = zk_addr_unix(path, &ss, &len);
	if (r < 0)
		return r;
	return zk__sock_connect(AF_UNIX, SOCK_STREAM, (struct sockaddr *)&ss, len);
}

int zk_unix_dgram(const char *path)
{
	if (!path) {
		int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	struct sockaddr_storage ss;
	socklen_t len;
	int r = zk_addr_unix(path, &ss, &len);
	if (r < 0)
		return r;
	return zk__sock_bound(AF_UNIX, SOCK_DGRAM, (struct sockaddr *)&ss, len, 0);
}
