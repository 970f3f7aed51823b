/* tests/test_net.c — net.h: TCP listen/accept/connect/send/recv/shutdown on
 * 127.0.0.1 with real sockets, and every documented error. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(net, .timeout = 60);

static int port_of(int fd)
{
	int p = zk_socket_port(fd);
	cr_assert_gt(p, 0, "zk_socket_port = %d", p);
	return p;
}

static int sockopt(int fd, int level, int name)
{
	int v = 0;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, level, name, &v, &len) != 0)
		return -errno;
	return v;
}

/* ---- listen -------------------------------------------------------------------------- */

Test(net, listen_on_port_zero_picks_a_free_port)
{
	int fd = zk_tcp_listen("127.0.0.1", 0, 16);
	cr_assert_geq(fd, 0);
	int port = port_of(fd);
	cr_assert(port > 0 && port < 65536);
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	cr_assert_eq(sa.sin_family, AF_INET);
	cr_assert_eq(sa.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	cr_assert_eq(ntohs(sa.sin_port), port);
	cr_assert_eq(sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1, "listening");
	cr_assert_neq(sockopt(fd, SOL_SOCKET, SO_REUSEADDR), 0, "SO_REUSEADDR");
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* A second listener gets another port. */
	int fd2 = zk_tcp_listen("127.0.0.1", 0, 16);
	cr_assert_geq(fd2, 0);
	cr_assert_neq(port_of(fd2), port);
	close(fd);
	close(fd2);
}

Test(net, listen_with_null_host_binds_every_address)
{
	int fd = zk_tcp_listen(NULL, 0, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	cr_assert_eq(sa.sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_gt(zk_socket_port(fd), 0);
	close(fd);
}

Test(net, listen_rejects_an_unparsable_host)
{
	cr_assert_eq(zk_tcp_listen("not-an-ip", 0, 16), -EINVAL);
	cr_assert_eq(zk_tcp_listen("256.0.0.1", 0, 16), -EINVAL);
	cr_assert_eq(zk_tcp_listen("127.0.0.1.5", 0, 16), -EINVAL);
	cr_assert_eq(zk_tcp_listen("", 0, 16), -EINVAL);
	cr_assert_eq(zk_tcp_listen("[127.0.0.1]", 0, 16), -EINVAL);
	cr_assert_eq(zk_tcp_listen("::1]", 0, 16), -EINVAL);
	cr_assert_eq(zk_tcp_listen("::g", 0, 16), -EINVAL);
}

Test(net, listen_on_a_port_in_use_is_eaddrinuse)
{
	int fd = zk_tcp_listen("127.0.0.1", 0, 16);
	cr_assert_geq(fd, 0);
	int port = port_of(fd);
	cr_assert_eq(zk_tcp_listen("127.0.0.1", (uint16_t)port, 16), -EADDRINUSE);
	close(fd);
}

Test(net, socket_port_of_a_bad_fd_is_ebadf)
{
	cr_assert_eq(zk_socket_port(-1), -EBADF);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(zk_socket_port(p[0]), -ENOTSOCK);
	close(p[0]);
	close(p[1]);
}

/* ---- echo round trip -------------------------------------------------------------------- */

struct echo {
	int lfd;
	int port;
	struct sockaddr_in peer;
	atomic_long client_port;
};

static void *echo_server_once(void *arg)
{
	struct echo *e = arg;
	socklen_t len = sizeof(e->peer);
	int fd = zk_accept(e->lfd, (struct sockaddr *)&e->peer, &len);
	ZT_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	ZT_CHECK_EQ(len, sizeof(struct sockaddr_in));
	ZT_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	char buf[256];
	ssize_t n;
	while ((n = zk_recv(fd, buf, sizeof(buf), 0)) > 0)
		ZT_CHECK_EQ(zk_send(fd, buf, (size_t)n, 0), n);
	ZT_CHECK_EQ(n, 0); /* orderly shutdown by the client */
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

static void *echo_client(void *arg)
{
	struct echo *e = arg;
	zk_task_t *srv;
	ZT_CHECK_EQ(zk_spawn(&srv, echo_server_once, e), 0);
	int fd = zk_tcp_connect("127.0.0.1", (uint16_t)e->port);
	ZT_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	ZT_CHECK_EQ(sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
	ZT_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	atomic_store(&e->client_port, zk_socket_port(fd));
	const char *msgs[] = {"hello", "zokio", "a somewhat longer message with spaces"};
	for (int i = 0; i < 3; i++) {
		size_t len = strlen(msgs[i]);
		ZT_CHECK_EQ(zk_send(fd, msgs[i], len, 0), len);
		char buf[64] = {0};
		size_t got = 0;
		while (got < len) {
			ssize_t n = zk_recv(fd, buf + got, sizeof(buf) - got, 0);
			ZT_CHECK(n > 0);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		ZT_CHECK(memcmp(buf, msgs[i], len) == 0);
	}
	ZT_CHECK_EQ(zk_shutdown(fd, SHUT_WR), 0);
	char c;
	ZT_CHECK_EQ(zk_recv(fd, &c, 1, 0), 0); /* server closed after our FIN */
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_join(srv, NULL), 0);
	return NULL;
}

Test(net, tcp_echo_round_trip_over_loopback)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct echo e = {.lfd = zk_tcp_listen("127.0.0.1", 0, 16)};
	cr_assert_geq(e.lfd, 0);
	e.port = port_of(e.lfd);
	zt_run(rt, echo_client, &e);
	/* accept reported the client's address. */
	cr_assert_eq(e.peer.sin_family, AF_INET);
	cr_assert_eq(e.peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	cr_assert_eq(ntohs(e.peer.sin_port), atomic_load(&e.client_port));
	close(e.lfd);
	zk_runtime_free(rt);
}

/* zk_connect on a caller-made socket, and zk_accept with NULL addr. */
static void *accept_null_addr(void *arg)
{
	struct echo *e = arg;
	int fd = zk_accept(e->lfd, NULL, NULL);
	ZT_CHECK(fd >= 0);
	char buf[4];
	ZT_CHECK_EQ(zk_recv(fd, buf, 4, MSG_WAITALL), 4);
	ZT_CHECK(memcmp(buf, "ping", 4) == 0);
	ZT_CHECK_EQ(zk_send(fd, "pong", 4, 0), 4);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

static void *raw_connect(void *arg)
{
	struct echo *e = arg;
	zk_task_t *srv;
	ZT_CHECK_EQ(zk_spawn(&srv, accept_null_addr, e), 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ZT_CHECK(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ZT_CHECK_EQ(zk_connect(fd, NULL, sizeof(sa)), -EINVAL);
	ZT_CHECK_EQ(zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ZT_CHECK_EQ(zk_send(fd, "ping", 4, 0), 4);
	char buf[4];
	ZT_CHECK_EQ(zk_recv(fd, buf, 4, MSG_WAITALL), 4);
	ZT_CHECK(memcmp(buf, "pong", 4) == 0);
	/* Connecting an already connected socket. */
	ZT_CHECK_EQ(zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -EISCONN);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_join(srv, NULL), 0);
	return NULL;
}

Test(net, connect_on_a_plain_socket_and_accept_without_address)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct echo e = {.lfd = zk_tcp_listen("127.0.0.1", 0, 16)};
	cr_assert_geq(e.lfd, 0);
	e.port = port_of(e.lfd);
	zt_run(rt, raw_connect, &e);
	close(e.lfd);
	zk_runtime_free(rt);
}

/* ---- connect errors -------------------------------------------------------------------- */

static void *connect_refused(void *arg)
{
	int port = (int)(intptr_t)arg;
	ZT_CHECK_EQ(zk_tcp_connect("127.0.0.1", (uint16_t)port), -ECONNREFUSED);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ZT_CHECK_EQ(zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -ECONNREFUSED);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(net, connect_to_a_closed_port_is_econnrefused)
{
	int lfd = zk_tcp_listen("127.0.0.1", 0, 1);
	cr_assert_geq(lfd, 0);
	int port = port_of(lfd);
	close(lfd); /* nothing listens there now */
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, connect_refused, (void *)(intptr_t)port);
	zk_runtime_free(rt);
}

static void *connect_bad_host(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_tcp_connect("not-an-ip", 80), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_connect("300.1.1.1", 80), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_connect("", 80), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_connect(NULL, 80), -EINVAL);
	return NULL;
}

Test(net, tcp_connect_rejects_an_unparsable_host)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, connect_bad_host, NULL);
	zk_runtime_free(rt);
}

Test(net, socket_calls_outside_a_task_return_eperm)
{
	int lfd = zk_tcp_listen("127.0.0.1", 0, 4);
	cr_assert_geq(lfd, 0);
	int port = port_of(lfd);
	cr_assert_eq(zk_tcp_connect("127.0.0.1", (uint16_t)port), -EPERM);
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char buf[4] = "abc";
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int cfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(zk_connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), -EPERM);
	cr_assert_eq(zk_connect(cfd, NULL, 0), -EPERM);
	cr_assert_eq(zk_accept(lfd, NULL, NULL), -EPERM);
	cr_assert_eq(zk_send(sv[0], buf, 3, 0), -EPERM);
	cr_assert_eq(zk_recv(sv[1], buf, 3, MSG_DONTWAIT), -EPERM);
	cr_assert_eq(zk_shutdown(sv[0], SHUT_WR), -EPERM);
	/* Nothing was sent. */
	cr_assert_eq(recv(sv[1], buf, 3, MSG_DONTWAIT), -1);
	cr_assert_eq(errno, EAGAIN);
	close(cfd);
	close(sv[0]);
	close(sv[1]);
	close(lfd);
}

/* ---- peer closed: EPIPE without SIGPIPE, 0 on shutdown, ECONNRESET ---------------------- */

struct conn {
	int lfd;
	int port;
	int a, b; /* a: client end, b: accepted end */
};

static void *accept_into(void *arg)
{
	struct conn *c = arg;
	c->b = zk_accept(c->lfd, NULL, NULL);
	ZT_CHECK(c->b >= 0);
	return NULL;
}

/* Connects a TCP pair inside a task. */
static void connect_pair(struct conn *c)
{
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, accept_into, c), 0);
	c->a = zk_tcp_connect("127.0.0.1", (uint16_t)c->port);
	ZT_CHECK(c->a >= 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
}

static void *send_to_closed_peer(void *arg)
{
	struct conn *c = arg;
	connect_pair(c);
	ZT_CHECK_EQ(zk_close(c->b), 0);
	char buf[1024];
	memset(buf, 'x', sizeof(buf));
	ssize_t r = 0;
	/* The first sends may be accepted before the peer's RST arrives. */
	for (int i = 0; i < 1000; i++) {
		r = zk_send(c->a, buf, sizeof(buf), 0);
		if (r < 0)
			break;
		zk_sleep_ms(1);
	}
	ZT_CHECK(r == -EPIPE || r == -ECONNRESET);
	/* Once reset, sending keeps failing with EPIPE. */
	ZT_CHECK_EQ(zk_send(c->a, buf, sizeof(buf), 0), -EPIPE);
	ZT_CHECK_EQ(zk_close(c->a), 0);
	return NULL;
}

Test(net, send_after_the_peer_closed_is_epipe_and_raises_no_sigpipe)
{
	cr_assert_neq(signal(SIGPIPE, SIG_DFL), SIG_ERR); /* SIGPIPE would kill us */
	zk_runtime_t *rt = zt_runtime(2);
	struct conn c = {.lfd = zk_tcp_listen("127.0.0.1", 0, 4)};
	cr_assert_geq(c.lfd, 0);
	c.port = port_of(c.lfd);
	zt_run(rt, send_to_closed_peer, &c);
	close(c.lfd);
	zk_runtime_free(rt);
}

static void *send_after_own_shutdown(void *arg)
{
	struct conn *c = arg;
	connect_pair(c);
	ZT_CHECK_EQ(zk_shutdown(c->a, SHUT_WR), 0);
	ZT_CHECK_EQ(zk_send(c->a, "x", 1, 0), -EPIPE);
	/* A socketpair too. */
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	ZT_CHECK_EQ(zk_send(sv[0], "x", 1, 0), -EPIPE);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(c->a), 0);
	ZT_CHECK_EQ(zk_close(c->b), 0);
	return NULL;
}

Test(net, send_after_shutdown_write_is_epipe_and_raises_no_sigpipe)
{
	cr_assert_neq(signal(SIGPIPE, SIG_DFL), SIG_ERR);
	zk_runtime_t *rt = zt_runtime(1);
	struct conn c = {.lfd = zk_tcp_listen("127.0.0.1", 0, 4)};
	cr_assert_geq(c.lfd, 0);
	c.port = port_of(c.lfd);
	zt_run(rt, send_after_own_shutdown, &c);
	close(c.lfd);
	zk_runtime_free(rt);
}

static void *shutdown_peer_later(void *arg)
{
	struct conn *c = arg;
	ZT_CHECK_EQ(zk_sleep_ms(30), 0);
	ZT_CHECK_EQ(zk_send(c->b, "last", 4, 0), 4);
	ZT_CHECK_EQ(zk_shutdown(c->b, SHUT_WR), 0);
	return NULL;
}

static void *recv_zero_after_shutdown(void *arg)
{
	struct conn *c = arg;
	connect_pair(c);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, shutdown_peer_later, c), 0);
	char buf[16];
	ZT_CHECK_EQ(zk_recv(c->a, buf, 4, MSG_WAITALL), 4);
	ZT_CHECK(memcmp(buf, "last", 4) == 0);
	ZT_CHECK_EQ(zk_recv(c->a, buf, sizeof(buf), 0), 0);
	ZT_CHECK_EQ(zk_recv(c->a, buf, sizeof(buf), 0), 0); /* and stays at EOF */
	/* Our direction still works. */
	ZT_CHECK_EQ(zk_send(c->a, "back", 4, 0), 4);
	ZT_CHECK_EQ(zk_recv(c->b, buf, 4, MSG_WAITALL), 4);
	ZT_CHECK(memcmp(buf, "back", 4) == 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(zk_close(c->a), 0);
	ZT_CHECK_EQ(zk_close(c->b), 0);
	return NULL;
}

Test(net, recv_returns_zero_after_the_peer_shuts_down_writing)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct conn c = {.lfd = zk_tcp_listen("127.0.0.1", 0, 4)};
	cr_assert_geq(c.lfd, 0);
	c.port = port_of(c.lfd);
	zt_run(rt, recv_zero_after_shutdown, &c);
	close(c.lfd);
	zk_runtime_free(rt);
}

static void *reset_peer_later(void *arg)
{
	struct conn *c = arg;
	ZT_CHECK_EQ(zk_sleep_ms(30), 0);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	ZT_CHECK_EQ(setsockopt(c->b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	ZT_CHECK_EQ(zk_close(c->b), 0); /* sends RST */
	return NULL;
}

static void *recv_reset(void *arg)
{
	struct conn *c = arg;
	connect_pair(c);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, reset_peer_later, c), 0);
	char buf[16];
	ZT_CHECK_EQ(zk_recv(c->a, buf, sizeof(buf), 0), -ECONNRESET);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(zk_close(c->a), 0);
	return NULL;
}

Test(net, recv_on_a_reset_connection_is_econnreset)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct conn c = {.lfd = zk_tcp_listen("127.0.0.1", 0, 4)};
	cr_assert_geq(c.lfd, 0);
	c.port = port_of(c.lfd);
	zt_run(rt, recv_reset, &c);
	close(c.lfd);
	zk_runtime_free(rt);
}

/* ---- accept / recv / shutdown errors ---------------------------------------------------- */

static void *socket_errors(void *arg)
{
	(void)arg;
	char buf[8];
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	int unbound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ZT_CHECK(unbound >= 0);
	ZT_CHECK_EQ(zk_accept(-1, NULL, NULL), -EBADF);
	ZT_CHECK_EQ(zk_accept(p[0], NULL, NULL), -ENOTSOCK);
	ZT_CHECK_EQ(zk_accept(unbound, NULL, NULL), -EINVAL); /* not listening */
	ZT_CHECK_EQ(zk_recv(-1, buf, sizeof(buf), 0), -EBADF);
	ZT_CHECK_EQ(zk_recv(unbound, buf, sizeof(buf), 0), -ENOTCONN);
	ZT_CHECK_EQ(zk_send(-1, buf, sizeof(buf), 0), -EBADF);
	ZT_CHECK_EQ(zk_send(p[0], buf, sizeof(buf), 0), -ENOTSOCK);
	ZT_CHECK_EQ(zk_shutdown(-1, SHUT_RDWR), -EBADF);
	ZT_CHECK_EQ(zk_shutdown(unbound, SHUT_RDWR), -ENOTCONN);
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ZT_CHECK_EQ(zk_shutdown(sv[0], 42), -EINVAL);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	ZT_CHECK_EQ(zk_close(unbound), 0);
	ZT_CHECK_EQ(zk_close(p[0]), 0);
	ZT_CHECK_EQ(zk_close(p[1]), 0);
	return NULL;
}

Test(net, accept_recv_send_and_shutdown_report_their_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, socket_errors, NULL);
	zk_runtime_free(rt);
}

static void *peek_then_read(void *arg)
{
	(void)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ZT_CHECK_EQ(zk_send(sv[0], "abcdef", 6, 0), 6);
	char buf[8] = {0};
	ZT_CHECK_EQ(zk_recv(sv[1], buf, 3, MSG_PEEK), 3);
	ZT_CHECK(memcmp(buf, "abc", 3) == 0);
	ZT_CHECK_EQ(zk_recv(sv[1], buf, 6, MSG_WAITALL), 6);
	ZT_CHECK(memcmp(buf, "abcdef", 6) == 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	return NULL;
}

Test(net, recv_passes_its_flags_to_the_kernel)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, peek_then_read, NULL);
	zk_runtime_free(rt);
}

/* ---- bulk and many connections ------------------------------------------------------------ */

#define BULK (8u << 20)

static void *bulk_reader(void *arg)
{
	struct conn *c = arg;
	char *buf = malloc(65536);
	size_t got = 0;
	bool ok = true;
	for (;;) {
		ssize_t n = zk_recv(c->b, buf, 65536, 0);
		ZT_CHECK(n >= 0);
		if (n <= 0)
			break;
		if (ok && !zt_check_fill(buf, (size_t)n, 9, got))
			ok = false;
		got += (size_t)n;
	}
	ZT_CHECK(ok);
	ZT_CHECK_EQ(got, BULK);
	free(buf);
	return NULL;
}

static void *bulk_transfer(void *arg)
{
	struct conn *c = arg;
	connect_pair(c);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, bulk_reader, c), 0);
	char *data = malloc(BULK);
	zt_fill(data, BULK, 9);
	size_t sent = 0;
	while (sent < BULK) {
		ssize_t n = zk_send(c->a, data + sent, BULK - sent, 0); /* may be short */
		ZT_CHECK(n > 0);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	ZT_CHECK_EQ(zk_shutdown(c->a, SHUT_WR), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(zk_close(c->a), 0);
	ZT_CHECK_EQ(zk_close(c->b), 0);
	free(data);
	return NULL;
}

Test(net, eight_megabytes_stream_intact_through_short_sends, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct conn c = {.lfd = zk_tcp_listen("127.0.0.1", 0, 4)};
	cr_assert_geq(c.lfd, 0);
	c.port = port_of(c.lfd);
	zt_run(rt, bulk_transfer, &c);
	close(c.lfd);
	zk_runtime_free(rt);
}

struct many {
	int lfd;
	int port;
	size_t n;
	atomic_long served;
};

static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint32_t v;
	ssize_t n = zk_recv(fd, &v, sizeof(v), MSG_WAITALL);
	ZT_CHECK_EQ(n, sizeof(v));
	v = v * 2 + 1;
	ZT_CHECK_EQ(zk_send(fd, &v, sizeof(v), 0), sizeof(v));
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct many *m = arg;
	for (size_t i = 0; i < m->n; i++) {
		int fd = zk_accept(m->lfd, NULL, NULL);
		ZT_CHECK(fd >= 0);
		if (fd < 0)
			break;
		ZT_CHECK_EQ(zk_spawn(NULL, serve_one, (void *)(intptr_t)fd), 0);
		atomic_fetch_add(&m->served, 1);
	}
	return NULL;
}

struct client_arg {
	struct many *m;
	uint32_t v;
};

static void *client(void *arg)
{
	struct client_arg *a = arg;
	int fd = zk_tcp_connect("127.0.0.1", (uint16_t)a->m->port);
	ZT_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	ZT_CHECK_EQ(zk_send(fd, &a->v, sizeof(a->v), 0), sizeof(a->v));
	uint32_t r = 0;
	ZT_CHECK_EQ(zk_recv(fd, &r, sizeof(r), MSG_WAITALL), sizeof(r));
	ZT_CHECK_EQ(r, a->v * 2 + 1);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

static void *many_clients(void *arg)
{
	struct many *m = arg;
	zk_task_t *srv;
	ZT_CHECK_EQ(zk_spawn(&srv, accept_loop, m), 0);
	struct client_arg *ca = calloc(m->n, sizeof(*ca));
	zk_task_t **h = calloc(m->n, sizeof(*h));
	for (size_t i = 0; i < m->n; i++) {
		ca[i] = (struct client_arg){m, (uint32_t)i * 7};
		ZT_CHECK_EQ(zk_spawn(&h[i], client, &ca[i]), 0);
	}
	for (size_t i = 0; i < m->n; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	ZT_CHECK_EQ(zk_join(srv, NULL), 0);
	free(ca);
	free(h);
	return NULL;
}

Test(net, hundreds_of_concurrent_connections_are_served, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct many m = {.lfd = zk_tcp_listen("127.0.0.1", 0, 1024), .n = zt_scaled(500, 50)};
	cr_assert_geq(m.lfd, 0);
	m.port = port_of(m.lfd);
	zt_run(rt, many_clients, &m);
	cr_assert_eq(atomic_load(&m.served), (long)m.n);
	close(m.lfd);
	zk_runtime_free(rt);
}

/* ---- a connect that cannot complete: timeout and cancel ----------------------------------- */

/* A listener whose accept queue is full drops further SYNs, so a connect
 * to it stays in progress (retransmitting) for a long time. */
struct full_backlog {
	int lfd;
	int port;
	int fillers[8];
	int nfill;
};

static bool connect_hangs(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	bool hangs = false;
	if (r != 0 && errno == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		hangs = poll(&p, 1, 200) == 0;
	}
	close(fd);
	return hangs;
}

static void fill_backlog(struct full_backlog *fb)
{
	fb->lfd = zk_tcp_listen("127.0.0.1", 0, 1);
	cr_assert_geq(fb->lfd, 0);
	fb->port = port_of(fb->lfd);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fb->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (fb->nfill = 0; fb->nfill < 8; fb->nfill++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		fb->fillers[fb->nfill] = fd;
		connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (poll(&p, 1, 200) == 0) { /* this one already hangs: queue full */
			fb->nfill++;
			break;
		}
	}
	if (!connect_hangs(fb->port))
		cr_skip_test("this kernel completes connects to a full accept queue");
}

static void drain_backlog(struct full_backlog *fb)
{
	for (int i = 0; i < fb->nfill; i++)
		close(fb->fillers[i]);
	close(fb->lfd);
}

static void *connect_times_out(void *arg)
{
	struct full_backlog *fb = arg;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fb->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_timeout_next(100 * ZK_NSEC_PER_MSEC), 0);
	ZT_CHECK_EQ(zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -ETIMEDOUT);
	ZT_CHECK(zk_now_ns() - t0 >= 90 * ZK_NSEC_PER_MSEC);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(net, connect_that_cannot_complete_times_out_with_timeout_next, .timeout = 30)
{
	struct full_backlog fb;
	fill_backlog(&fb);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, connect_times_out, &fb);
	zk_runtime_free(rt);
	drain_backlog(&fb);
}

struct connect_cancel {
	struct full_backlog *fb;
	atomic_long ready;
	atomic_long res;
	atomic_long closed;
};

static void *connect_forever(void *arg)
{
	struct connect_cancel *cc = arg;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)cc->fb->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	atomic_store(&cc->ready, 1);
	atomic_store(&cc->res, zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	atomic_store(&cc->closed, zk_close(fd));
	return NULL;
}

static void *cancel_connect(void *arg)
{
	struct connect_cancel *cc = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, connect_forever, cc), 0);
	ZT_CHECK(zt_task_wait_at_least(&cc->ready, 1, 10000));
	zk_sleep_ms(50);
	ZT_CHECK(!zk_task_done(h));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(net, cancel_wakes_task_blocked_in_connect, .timeout = 30)
{
	struct full_backlog fb;
	fill_backlog(&fb);
	zk_runtime_t *rt = zt_runtime(2);
	struct connect_cancel cc = {.fb = &fb};
	zt_run(rt, cancel_connect, &cc);
	cr_assert_eq(atomic_load(&cc.res), -ECANCELED);
	cr_assert_eq(atomic_load(&cc.closed), 0);
	zk_runtime_free(rt);
	drain_backlog(&fb);
}

static void *recv_huge_len(void *arg)
{
	(void)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	char data[100];
	zt_fill(data, sizeof(data), 12);
	ZT_CHECK_EQ(zk_send(sv[0], data, sizeof(data), 0), 100);
	char buf[4096];
	/* Capped at 2^31-1, not truncated to 32 bits (which would read 7). */
	ZT_CHECK_EQ(zk_recv(sv[1], buf, ((size_t)1 << 32) + 7, 0), 100);
	ZT_CHECK(memcmp(buf, data, 100) == 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	return NULL;
}

Test(net, recv_lengths_beyond_int_max_are_capped_not_truncated)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, recv_huge_len, NULL);
	zk_runtime_free(rt);
}
