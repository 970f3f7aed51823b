/* lib/net_util.c — small TCP helpers over the suspending socket calls. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"

static int parse_ipv4(const char *host, uint16_t port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	if (!host) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

int zk_tcp_listen(const char *host, uint16_t port, int backlog)
{
	struct sockaddr_in sa;
	if (parse_ipv4(host, port, &sa) < 0)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int zk_tcp_connect(const char *host, uint16_t port)
{
	if (!zk__task_here())
		return -EPERM;
	struct sockaddr_in sa;
	if (parse_ipv4(host, port, &sa) < 0 || !host)
		return -EINVAL;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int r = zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0) {
		/* Through the backend, so a readiness backend drops its
		 * registration of the fd at once. */
		zk_close(fd);
		return r;
	}
	return fd;
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
