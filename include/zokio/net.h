/* zokio/net.h — socket I/O that suspends the calling task.
 *
 * Sockets are ordinary fds (create them with socket(2), or with the helpers
 * below which make them close-on-exec). accept/connect/recv/send are submitted
 * to the worker's ring like file I/O (see fs.h for the errors every call
 * shares: -EPERM outside a task, -ECANCELED, -ETIMEDOUT). Sends never raise
 * SIGPIPE: a write to a closed peer returns -EPIPE.
 *
 * Sections: the basic calls; multishot accept; receiving into provided
 * buffers; addresses (IPv4, IPv6, Unix; parse and format); TCP listeners,
 * streams and their options; whole transfers (read_exact / write_all,
 * zero-copy sends); UDP and datagram calls; Unix sockets.
 *
 * What each io_uring feature needs from the kernel, and what happens
 * without it (probed at first use, once per process):
 *   multishot accept (zk_acceptor)        5.19  one accept per call
 *   provided-buffer ring (zk_stream)      5.19  poll, then recv into a
 *                                               pooled heap buffer
 *   multishot recv (zk_stream)            6.0   one buffer-select recv
 *                                               per call
 *   SEND_ZC (zk_send_zc, zk_send_all)     6.0   -EOPNOTSUPP / a copying
 *                                               send
 *   direct descriptors (ZK_ACCEPT_DIRECT) 5.19  ordinary fds
 * The epoll backend takes the right-hand column for all of them. So does
 * io_uring with ZK_URING_DISABLE=all in the environment (or a list of the
 * features, backends/backend.h): the test command runs the network tests
 * that way, so the fallbacks are tested on a new kernel too. */
#ifndef ZOKIO_NET_H
#define ZOKIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifdef _WIN32
/* Windows: a socket is a SOCKET carried in the int fd (Windows keeps
 * handle values within 32 bits); close it with zk_close. The Windows build
 * provides zk_accept/connect/recv/send/shutdown, zk_tcp_listen[_flags|
 * _addr] (no ZK_TCP_REUSEPORT: -EOPNOTSUPP), zk_tcp_connect[_addr],
 * zk_tcp_nodelay, zk_socket_port, zk_addr_ip (no IPv6 zone),
 * zk_recv_exact, zk_send_all, zk_read_exact, zk_write_all, and UDP:
 * zk_udp_bind, zk_udp_connect, zk_sendto, zk_recvfrom, zk_sendmsg,
 * zk_recvmsg (at most 8 iovecs, no control data; backends/iocp/). Socket
 * calls need a runtime task (-EPERM elsewhere). The rest of this header
 * is Linux only. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <sys/types.h>
#include "fs.h" /* struct iovec */
#ifndef ZK_MSGHDR_DEFINED
#define ZK_MSGHDR_DEFINED 1
/* POSIX's struct msghdr, for zk_sendmsg/zk_recvmsg on Windows. */
struct msghdr {
	void *msg_name;
	socklen_t msg_namelen;
	struct iovec *msg_iov;
	size_t msg_iovlen;
	void *msg_control;     /* must be NULL / 0 on Windows */
	size_t msg_controllen;
	int msg_flags;
};
#endif
#else
#include <sys/socket.h>
#include <sys/types.h>
#endif

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

/* ==== multishot accept =====================================================
 * An acceptor turns a listener's accepts into one kernel operation: on
 * io_uring (kernel 5.19+) a multishot accept stays armed on the ring of the
 * worker that armed it and queues each new connection in the acceptor, so
 * a busy listener costs one completion per connection and no submission.
 * On older kernels (detected once, at the first use) and on the epoll
 * backend each zk_acceptor_next() is one plain accept. One task at a time
 * uses an acceptor; the listener stays the caller's (close it after
 * zk_acceptor_close). */
typedef struct zk_acceptor zk_acceptor_t;

/* Creates an acceptor for the listening socket lfd. Nothing is submitted
 * until the first zk_acceptor_next(). Returns 0, or -EPERM outside a task,
 * -EINVAL (out NULL, lfd < 0), -ENOMEM. */
int zk_acceptor_open(zk_acceptor_t **out, int lfd);

/* Flags of zk_acceptor_open_flags(). */
#define ZK_ACCEPT_DIRECT 1u /* connections as direct descriptors (below) */

/* zk_acceptor_open with ZK_ACCEPT_* flags. Also -EINVAL for an unknown
 * flag. */
int zk_acceptor_open_flags(zk_acceptor_t **out, int lfd, unsigned flags);

/* ==== direct descriptors ===================================================
 * On io_uring (5.19+) an acceptor opened with ZK_ACCEPT_DIRECT puts each
 * connection into a slot of its worker's ring (a "direct descriptor")
 * instead of the process's fd table: the process can then hold more
 * connections than RLIMIT_NOFILE allows fds (each worker's ring has
 * RLIMIT_NOFILE (soft) slots, at most 65 536, set up at the first direct
 * accept). zk_acceptor_next() then returns ZK_FD_DIRECT | worker << 20 |
 * slot, an int that is no fd of the process.
 *   Usable with: zk_recv, zk_send, zk_send_all, zk_send_zc, zk_recv_exact,
 *   zk_shutdown, zk_poll, zk_close, zk_close_graceful, zk_read, zk_write,
 *   zk_stream_*: the calls that suspend on a ring op.
 *   Not with calls that run a plain syscall (zk_tcp_nodelay,
 *   zk_tcp_keepalive, zk_socket_port, getsockopt(2), close(2)): -EBADF.
 *   Accepted sockets inherit TCP_NODELAY and other options from the
 *   listener, so set those on the listener.
 * The file lives in one worker's ring: a task running elsewhere that
 * makes a call on it first moves to that worker (a hop, like a wake, per
 * call). Spawn the connection's task pinned there instead:
 *   zk_spawn_pinned(rt, NULL, serve, (void *)(intptr_t)fd, zk_fd_worker(fd))
 * Where there are no direct descriptors (epoll, kernels before 5.19, a
 * ring with registered files) the acceptor returns ordinary fds, for
 * which zk_fd_worker() says -ENOENT. Close each with zk_close(); the
 * runtime's end closes the ones left. */
#define ZK_FD_DIRECT 0x40000000

/* The worker whose ring holds direct descriptor fd (0..workers-1), or
 * -ENOENT (an ordinary fd: any worker may use it), -EBADF (fd < 0 or no
 * descriptor Zokio makes). Any thread. */
int zk_fd_worker(int fd);

/* The next connection (a close-on-exec fd), suspending until one comes.
 * Returns the fd or -errno: as zk_accept (-EINVAL: lfd is not listening,
 * -EBADF, -EMFILE, -ENFILE, ...), -ECANCELED, -ENOMEM (a connection was
 * refused for want of memory to queue it), -EBUSY (another task is in
 * zk_acceptor_next or zk_acceptor_close on it), -EINVAL (a NULL), -EPERM.
 * After an error the next call re-arms. zk_timeout_next() does not apply
 * (it is disarmed): bound the wait with zk_timeout_call() (select.h). */
int zk_acceptor_next(zk_acceptor_t *a);

/* Stops accepting: cancels the kernel's accept and waits until it has
 * ended, closes the connections accepted but not taken, frees a. Works in
 * a cancelled task. Returns 0, or -EINVAL (a NULL), -EBUSY (a task is in
 * zk_acceptor_next; nothing done), -EPERM outside a task. */
int zk_acceptor_close(zk_acceptor_t *a);

/* ==== receiving into provided buffers =======================================
 * A stream receives into buffers the runtime lends only when data arrives,
 * so a connection waiting for data holds no receive buffer (100 000 idle
 * connections cost no receive memory). On io_uring each worker's ring has
 * a provided-buffer ring (256 x 16 KiB; kernel 5.19+) and the stream keeps
 * one multishot recv armed (kernel 6.0+; one recv per call on 5.19): each
 * arrival lands in a buffer of the ring and waits in the stream for
 * zk_stream_recv(). When every buffer is lent out (-ENOBUFS in the kernel)
 * the stream receives once into a pooled heap buffer and then re-arms:
 * nothing is lost or reordered. Without provided buffers (epoll, older
 * kernels) each call waits for readability and then receives into a
 * pooled heap buffer. One task at a time receives on a stream; the fd
 * stays the caller's (close it after zk_stream_close). */
typedef struct zk_stream zk_stream_t;

/* A lent buffer: data[0..len). Give it back with zk_rbuf_release() (from
 * any task or thread, while the runtime lives); holding many starves the
 * worker's other connections of buffers. Fields ending in _ are private. */
typedef struct zk_rbuf {
	const char *data;
	size_t len;
	void *priv_[3];
	uint32_t priv_flags_;
} zk_rbuf_t;

struct zk_stream_stats {
	uint64_t pbuf;    /* receives served from a provided buffer */
	uint64_t copied;  /* receives into a pooled heap buffer */
	uint64_t enobufs; /* times the kernel ran out of provided buffers */
};

/* Wraps the connected stream socket fd. Nothing is submitted until the
 * first zk_stream_recv(). Returns 0, or -EPERM outside a task, -EINVAL
 * (out NULL, fd < 0), -ENOMEM. */
int zk_stream_open(zk_stream_t **out, int fd);

/* Receives the next bytes, suspending until some arrive. Returns the count
 * (> 0, with *rb lent to the caller), 0 at the end of the stream (then
 * always 0), or -errno: as zk_recv (-ECONNRESET, -ENOTCONN, -EBADF, ...),
 * -ECANCELED, -ENOMEM (data could not be kept: the stream is failed for
 * good), -EBUSY (another task is in zk_stream_recv or zk_stream_close on
 * it), -EINVAL (a NULL), -EPERM. *rb is cleared unless bytes are returned.
 * zk_timeout_next() does not apply (it is disarmed): bound the wait with
 * zk_timeout_call() (select.h); data that arrives meanwhile is kept for
 * the next call. */
ssize_t zk_stream_recv(zk_stream_t *s, zk_rbuf_t *rb);

/* Gives a buffer back (idempotent; NULL or a cleared rbuf: nothing). */
void zk_rbuf_release(zk_rbuf_t *rb);

/* Counters of s. Returns 0 or -EINVAL (a NULL). */
int zk_stream_stats(zk_stream_t *s, struct zk_stream_stats *st);

/* Stops receiving: cancels the kernel's recv and waits until it has ended,
 * discards data already received into the stream but not taken (its
 * buffers go back), frees s. Buffers already
 * lent stay valid until released. Works in a cancelled task. Returns 0, or
 * -EINVAL (s NULL), -EBUSY (a task is in zk_stream_recv; nothing done),
 * -EPERM outside a task. */
int zk_stream_close(zk_stream_t *s);

/* ==== addresses ============================================================
 * Only numeric addresses: name resolution is DNS's business. None of these
 * calls suspends; all are callable from any thread. */

/* Room for any address zk_addr_format() writes, with its NUL. */
#define ZK_ADDR_STRLEN 128

/* Fills *ss (and *len) with the IP literal host and port. host is an IPv4
 * literal ("127.0.0.1"), an IPv6 literal with or without brackets ("::1",
 * "[::1]"), optionally with a zone ("fe80::1%lo", by interface name or
 * number); NULL means the IPv4 any address (0.0.0.0).
 * Returns 0, or -EINVAL: ss or len NULL, host empty, not a literal, with
 * unbalanced brackets, brackets around an IPv4 literal, or a zone naming no
 * interface. */
int zk_addr_ip(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);

/* Fills *ss with the Unix socket address path. A leading '@' names the
 * abstract namespace (Linux; "@name" is "\0name" on the wire, without a
 * trailing NUL). Returns 0, or -EINVAL (a NULL argument, path empty or just
 * "@"), -ENAMETOOLONG (longer than sun_path can hold). */
int zk_addr_unix(const char *path, struct sockaddr_storage *ss, socklen_t *len);

/* Parses an address written as text:
 *   "1.2.3.4:80", "[::1]:8080", "[fe80::1%eth0]:80"  IP literal and port,
 *   "/run/app.sock", "./rel.sock", "@abstract"       a Unix socket.
 * The port is 0..65535 in decimal, required for IP addresses.
 * Returns 0, or -EINVAL with nothing written to *ss when str is empty, has
 * no ':port', an IPv6 literal without brackets ("::1:80" is ambiguous), a
 * port that is empty, not decimal or > 65535, or an unparsable host;
 * -ENAMETOOLONG for a Unix path too long for sun_path. */
int zk_addr_parse(const char *str, struct sockaddr_storage *ss, socklen_t *len);

/* Writes sa as text in the forms zk_addr_parse() reads ("1.2.3.4:80",
 * "[::1]:80", "/path", "@name"; an unnamed Unix socket gives ""). Returns
 * the length written (without the NUL), or -EINVAL (NULL argument, len too
 * short for the family), -EAFNOSUPPORT (not AF_INET/AF_INET6/AF_UNIX),
 * -ENOSPC (cap too small; ZK_ADDR_STRLEN always suffices). */
int zk_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap);

/* ==== TCP ==================================================================
 * Listeners set SO_REUSEADDR and TCP_NODELAY (which accepted sockets
 * inherit: request/response traffic should not wait on Nagle); connected
 * streams set TCP_NODELAY. Every socket is close-on-exec. */

/* Flags of zk_tcp_listen_flags() / zk_tcp_listen_addr(). */
#define ZK_TCP_REUSEPORT 1u /* SO_REUSEPORT: several listeners (e.g. one per
                             * worker) bind the same port and the kernel
                             * spreads new connections over them */
#define ZK_TCP_V6ONLY 2u    /* an IPv6 listener does not take IPv4 too */

/* Creates a TCP socket listening on host:port, host an IPv4 or IPv6 literal
 * as for zk_addr_ip (NULL = 0.0.0.0; port 0 picks a free port, read it back
 * with zk_socket_port). SO_REUSEADDR is set. Not suspending; callable from
 * any thread. Returns the fd or -errno (-EINVAL for an unparsable host,
 * -EADDRINUSE, -EADDRNOTAVAIL, ...). backlog <= 0 means SOMAXCONN. */
int zk_tcp_listen(const char *host, uint16_t port, int backlog);

/* zk_tcp_listen with ZK_TCP_* flags. Also -EINVAL for an unknown flag. */
int zk_tcp_listen_flags(const char *host, uint16_t port, int backlog, unsigned flags);

/* zk_tcp_listen_flags on an address (AF_INET or AF_INET6). Also -EINVAL
 * (sa NULL), -EAFNOSUPPORT (another family). */
int zk_tcp_listen_addr(const struct sockaddr *sa, socklen_t len, int backlog, unsigned flags);

/* Creates a TCP socket and connects it to host:port (an IPv4 or IPv6
 * literal as for zk_addr_ip; NULL is -EINVAL) through zk_connect.
 * Returns the fd or -errno (-EINVAL for an unparsable host, -ECONNREFUSED,
 * ...). TCP_NODELAY is set. Suspends; needs a runtime task. */
int zk_tcp_connect(const char *host, uint16_t port);

/* zk_tcp_connect to an AF_INET or AF_INET6 address. Returns the fd or
 * -errno (-EINVAL: sa NULL; -EAFNOSUPPORT: another family; -ECONNREFUSED,
 * -ETIMEDOUT, ...). Suspends. */
int zk_tcp_connect_addr(const struct sockaddr *sa, socklen_t len);

/* TCP_NODELAY on (true) or off. Returns 0 or -errno (-EBADF, -ENOTSOCK,
 * -EOPNOTSUPP for a socket that is not TCP). */
int zk_tcp_nodelay(int fd, bool on);

/* TCP keep-alive: idle_s > 0 turns it on (SO_KEEPALIVE) and sends the first
 * probe after idle_s seconds of silence, then one every interval_s seconds
 * (0: the system default), declaring the peer dead after count unanswered
 * probes (0: the system default); a recv then fails with -ETIMEDOUT.
 * idle_s == 0 turns keep-alive off. Returns 0 or -errno (-EINVAL for a
 * negative argument, -EBADF, -ENOTSOCK, -EOPNOTSUPP for a socket that is
 * not TCP). */
int zk_tcp_keepalive(int fd, int idle_s, int interval_s, int count);

/* Graceful close of a stream socket: shuts down writing (the peer reads
 * EOF after everything sent), discards what the peer still sends until it
 * closes its side, then closes fd. The fd is closed in every case.
 * timeout_ns bounds the wait for the peer (0: no limit). Returns 0, or
 * -ETIMEDOUT (the peer did not finish in time), -ECONNRESET, -ENOTCONN,
 * -EBADF, -ECANCELED (fd still closed), -EPERM outside a task (nothing
 * done). Suspends. */
int zk_close_graceful(int fd, uint64_t timeout_ns);

/* Local port of a bound socket (host order), or -errno. */
int zk_socket_port(int fd);

/* ==== whole transfers ======================================================
 * Loops over short transfers. A zk_timeout_next() timeout applies to the
 * first underlying call only. On an error after part of the data moved,
 * the error is returned (what was received is in buf). */

/* Receives exactly len bytes on a stream socket. Returns len, or fewer
 * (>= 0) when the peer shut down first (orderly EOF), or -errno
 * (-ECONNRESET, -EBADF, -ECANCELED, ...). len 0 returns 0 at once. */
ssize_t zk_recv_exact(int fd, void *buf, size_t len);

/* Sends all len bytes. Returns len or -errno (-EPIPE, -ECONNRESET, ...).
 * Pieces of at least zk_send_zc_min() bytes go out with zk_send_zc where
 * the kernel has it. */
ssize_t zk_send_all(int fd, const void *buf, size_t len);

/* Zero-copy send: the kernel sends straight from buf (io_uring SEND_ZC,
 * kernel 6.0+) and the call returns only after the kernel's notification
 * that it no longer reads buf, so buf is the caller's again on return.
 * Returns bytes sent (may be short) or -errno as zk_send, or -EOPNOTSUPP
 * when the kernel has no SEND_ZC. On epoll it is a plain (copying) send. */
ssize_t zk_send_zc(int fd, const void *buf, size_t len, int flags);

/* The size from which zk_send_all sends zero-copy (default 128 KiB, the
 * loopback measurement in lib/net_zc.c; 0: never). Larger sends go out in
 * zero-copy calls of at most 512 KiB. Callable from any thread. */
size_t zk_send_zc_min(void);
void zk_send_zc_set_min(size_t bytes);

/* Reads exactly len bytes from any fd (zk_read; off == -1: at the file
 * position, else from off onwards). Returns len, or fewer (>= 0) at end of
 * file, or -errno. */
ssize_t zk_read_exact(int fd, void *buf, size_t len, int64_t off);

/* Writes all len bytes to any fd (zk_write; off as for zk_read_exact).
 * Returns len or -errno (-ENOSPC, -EPIPE, ...); a write of 0 bytes is
 * -EIO (nothing would ever progress). */
ssize_t zk_write_all(int fd, const void *buf, size_t len, int64_t off);

/* ==== UDP and datagrams ====================================================
 * On loopback no datagram is lost while the receiver's buffer has room;
 * elsewhere UDP is unreliable as always. */

/* sendto(fd, buf, len, flags | MSG_NOSIGNAL, addr, addrlen); addr NULL
 * sends to the connected peer. Returns bytes sent or -errno (-EMSGSIZE,
 * -EDESTADDRREQ on an unconnected socket without addr, -ECONNREFUSED on a
 * connected UDP socket whose peer port is closed, ...). */
ssize_t zk_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
		  socklen_t addrlen);

/* recvfrom(fd, buf, len, flags, addr, addrlen): one datagram (truncated to
 * len: pass MSG_TRUNC to get its full length). addr/addrlen may both be
 * NULL; *addrlen is in/out as for recvfrom(2). Returns the byte count or
 * -errno (-EINVAL when exactly one of addr/addrlen is NULL,
 * -ECONNREFUSED, ...). */
ssize_t zk_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
		    socklen_t *addrlen);

/* sendmsg / recvmsg (msg must stay valid until the call returns; it does,
 * the call suspends). Returns bytes or -errno (-EINVAL for a NULL msg).
 * recvmsg updates msg_namelen, msg_controllen and msg_flags. */
ssize_t zk_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t zk_recvmsg(int fd, struct msghdr *msg, int flags);

/* A UDP socket bound to host:port (as zk_tcp_listen: host an IP literal,
 * NULL = 0.0.0.0, port 0 picks one). flags: ZK_TCP_REUSEPORT (several
 * sockets share the port), ZK_TCP_V6ONLY. Not suspending. Returns the fd or
 * -errno (-EINVAL, -EADDRINUSE, ...). */
int zk_udp_bind(const char *host, uint16_t port, unsigned flags);

/* A connected UDP socket: send with zk_send, receive only from host:port
 * with zk_recv. Not suspending (a UDP connect only sets the peer).
 * Returns the fd or -errno (-EINVAL for an unparsable or NULL host). */
int zk_udp_connect(const char *host, uint16_t port);

/* ==== Unix sockets =========================================================
 * path as for zk_addr_unix ('@' = abstract namespace). */

/* A SOCK_STREAM Unix socket listening on path. An existing file at path is
 * not removed: -EADDRINUSE (unlink it first if it is stale). Not
 * suspending. Returns the fd or -errno (-EINVAL, -ENAMETOOLONG, -EACCES,
 * -ENOENT for a missing directory, ...). */
int zk_unix_listen(const char *path, int backlog);

/* A SOCK_STREAM Unix socket connected to path through zk_connect.
 * Suspends. Returns the fd or -errno (-ENOENT, -ECONNREFUSED, ...). */
int zk_unix_connect(const char *path);

/* A SOCK_DGRAM Unix socket bound to path (NULL: unbound, it can send but
 * not be answered). Not suspending. Returns the fd or -errno (as
 * zk_unix_listen). */
int zk_unix_dgram(const char *path);

#ifdef __cplusplus
}
#endif
#endif
