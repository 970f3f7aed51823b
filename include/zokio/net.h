/* zokio/net.h — socket I/O that suspends the calling task.
 *
 * Sockets are ordinary fds (create them with socket(2), or with the helpers
 * below which make them close-on-exec). accept/connect/recv/send are submitted
 * to the worker's ring like file I/O (see fs.h for the errors every call
 * shares: -EPERM outside a task, -ECANCELED, -ETIMEDOUT). Sends never raise
 * SIGPIPE: a write to a closed peer returns -EPIPE. */
#ifndef ZOKIO_NET_H
#define ZOKIO_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* accept4(fd, addr, addrlen, SOCK_CLOEXEC). addr/addrlen may be NULL.
 * Returns the connected fd or -errno (-EBADF, -ENOTSOCK, -EINVAL for a socket
 * that is not listening, -EMFILE, ...). */
int zk_accept(int fd, struct sockaddr *addr, socklen_t *addrlen);

/* connect(fd, addr, addrlen) on a socket; suspends until the connection is
 * established or fails. Returns 0 or -errno (-ECONNREFUSED, -ETIMEDOUT,
 * -ENETUNREACH, -EINVAL for a NULL addr, ...). */
int zk_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);

/* recv(fd, buf, len, flags). Returns bytes received, 0 on orderly shutdown
 * by the peer, or -errno (-ECONNRESET, -ENOTCONN, -EBADF, ...). */
ssize_t zk_recv(int fd, void *buf, size_t len, int flags);

/* send(fd, buf, len, flags | MSG_NOSIGNAL). Returns bytes sent (may be short)
 * or -errno (-EPIPE, -ECONNRESET, ...). */
ssize_t zk_send(int fd, const void *buf, size_t len, int flags);

/* shutdown(fd, how). Returns 0 or -errno (-ENOTCONN, -EINVAL, -EBADF). */
int zk_shutdown(int fd, int how);

/* Creates a TCP socket listening on 127.0.0.1/any IPv4 address host:port
 * (host NULL = 0.0.0.0; port 0 picks a free port, read it back with
 * zk_socket_port). SO_REUSEADDR is set. Not suspending; callable from any
 * thread. Returns the fd or -errno (-EINVAL for an unparsable host,
 * -EADDRINUSE, ...). */
int zk_tcp_listen(const char *host, uint16_t port, int backlog);

/* Creates a TCP socket and connects it to IPv4 host:port through zk_connect.
 * Returns the fd or -errno (-EINVAL for an unparsable host, -ECONNREFUSED,
 * ...). TCP_NODELAY is set. Suspends; needs a runtime task. */
int zk_tcp_connect(const char *host, uint16_t port);

/* Local port of a bound socket (host order), or -errno. */
int zk_socket_port(int fd);

#ifdef __cplusplus
}
#endif
#endif
