/* tests/test_net_sock.c — net.h beyond the basic calls: address parsing and
 * formatting, IPv6 TCP, listener and stream options (SO_REUSEPORT,
 * TCP_NODELAY, keep-alive), whole transfers (recv_exact / send_all /
 * read_exact / write_all), UDP (sendto/recvfrom, sendmsg/recvmsg,
 * connected UDP) and Unix stream and datagram sockets. Real sockets on
 * 127.0.0.1 / ::1 / a temp dir only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(net_sock, .timeout = 60);

static int sockopt(int fd, int level, int name)
{
	int v = 0;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, level, name, &v, &len) != 0)
		return -errno;
	return v;
}

/* IPv6 loopback may be disabled in a container: such tests skip. */
static bool have_ipv6_loopback(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* ---- addresses ------------------------------------------------------------------------- */

static void parse_ok(const char *s, int family, const char *formatted)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	int r = zk_addr_parse(s, &ss, &len);
	cr_assert_eq(r, 0, "zk_addr_parse(\"%s\") = %d", s, r);
	cr_assert_eq(ss.ss_family, family, "%s", s);
	char buf[ZK_ADDR_STRLEN];
	int n = zk_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf));
	cr_assert_eq(n, (int)strlen(formatted), "format(%s) = %d", s, n);
	cr_assert_str_eq(buf, formatted);
}

Test(net_sock, addr_parse_reads_ipv4_ipv6_and_unix_forms)
{
	parse_ok("127.0.0.1:80", AF_INET, "127.0.0.1:80");
	parse_ok("0.0.0.0:0", AF_INET, "0.0.0.0:0");
	parse_ok("10.1.2.3:65535", AF_INET, "10.1.2.3:65535");
	parse_ok("[::1]:8080", AF_INET6, "[::1]:8080");
	parse_ok("[2001:db8::a:b]:443", AF_INET6, "[2001:db8::a:b]:443");
	parse_ok("[::ffff:1.2.3.4]:1", AF_INET6, "[::ffff:1.2.3.4]:1");
	parse_ok("[fe80::1%7]:80", AF_INET6, "[fe80::1%7]:80");
	parse_ok("/tmp/zokio.sock", AF_UNIX, "/tmp/zokio.sock");
	parse_ok("./rel.sock", AF_UNIX, "./rel.sock");
	parse_ok("@zokio-abstract", AF_UNIX, "@zokio-abstract");

	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(zk_addr_parse("[::1]:8080", &ss, &len), 0);
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	cr_assert_eq(len, sizeof(*s6));
	cr_assert_eq(ntohs(s6->sin6_port), 8080);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
	cr_assert_eq(zk_addr_parse("@x", &ss, &len), 0);
	struct sockaddr_un *su = (struct sockaddr_un *)&ss;
	cr_assert_eq(su->sun_path[0], '\0');
	cr_assert_eq(su->sun_path[1], 'x');
	cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 2, "abstract: no trailing NUL");
	cr_assert_eq(zk_addr_parse("/a", &ss, &len), 0);
	cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 3, "path: with its NUL");
}

Test(net_sock, addr_parse_rejects_bad_input_with_einval_and_writes_nothing)
{
	static const char *bad[] = {
	    "",               /* empty */
	    "127.0.0.1",      /* no port */
	    "127.0.0.1:",     /* empty port */
	    "127.0.0.1:65536", /* port out of range */
	    "127.0.0.1:-1",   /* not decimal */
	    "127.0.0.1:8a",   /* trailing garbage */
	    "127.0.0.1: 80",  /* space */
	    "::1:80",         /* IPv6 without brackets: ambiguous */
	    "[::1]80",        /* missing colon */
	    "[::1]:",         /* empty port */
	    "[::1",           /* unbalanced */
	    "::1]:80",        /* unbalanced */
	    "[]:80",          /* empty host */
	    ":80",            /* empty host */
	    "[1.2.3.4]:80",   /* IPv4 in brackets */
	    "256.1.1.1:80",   /* bad octet */
	    "1.2.3:80",       /* short IPv4 */
	    "localhost:80",   /* a name, not a literal */
	    "[fe80::1%no-such-if0]:80", /* unknown zone */
	    "[fe80::1%]:80",  /* empty zone */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		memset(&ss, 0xa5, sizeof(ss));
		socklen_t len = 77;
		cr_assert_eq(zk_addr_parse(bad[i], &ss, &len), -EINVAL, "\"%s\"", bad[i]);
		cr_assert_eq(len, 77, "\"%s\" wrote len", bad[i]);
		unsigned char *p = (unsigned char *)&ss;
		for (size_t j = 0; j < sizeof(ss); j++)
			cr_assert_eq(p[j], 0xa5, "\"%s\" wrote the address", bad[i]);
	}
	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(zk_addr_parse(NULL, &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_parse("1.2.3.4:5", NULL, &len), -EINVAL);
	cr_assert_eq(zk_addr_parse("1.2.3.4:5", &ss, NULL), -EINVAL);
	/* A Unix path longer than sun_path. */
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	cr_assert_eq(zk_addr_parse(longp, &ss, &len), -ENAMETOOLONG);
	cr_assert_eq(zk_addr_unix(longp, &ss, &len), -ENAMETOOLONG);
	/* 107 characters + NUL fit a path; 108 do not; an abstract name may
	 * use all 108 bytes. */
	char p107[108], p108[109];
	memset(p107, 'b', sizeof(p107));
	p107[0] = '/';
	p107[107] = '\0';
	memset(p108, 'b', sizeof(p108));
	p108[0] = '/';
	p108[108] = '\0';
	cr_assert_eq(zk_addr_unix(p107, &ss, &len), 0);
	cr_assert_eq(zk_addr_unix(p108, &ss, &len), -ENAMETOOLONG);
	p108[0] = '@';
	cr_assert_eq(zk_addr_unix(p108, &ss, &len), 0);
	cr_assert_eq(zk_addr_unix("@", &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_unix("", &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_unix(NULL, &ss, &len), -EINVAL);
}

Test(net_sock, addr_ip_takes_bare_or_bracketed_literals_and_zones)
{
	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(zk_addr_ip(NULL, 9, &ss, &len), 0);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	cr_assert_eq(s4->sin_family, AF_INET);
	cr_assert_eq(s4->sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_eq(ntohs(s4->sin_port), 9);
	cr_assert_eq(zk_addr_ip("::1", 10, &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(zk_addr_ip("[::1]", 10, &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(zk_addr_ip("fe80::1%lo", 10, &ss, &len), 0);
	cr_assert_eq(((struct sockaddr_in6 *)&ss)->sin6_scope_id, if_nametoindex("lo"));
	cr_assert_eq(zk_addr_ip("fe80::1%no-such-if0", 10, &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_ip("[::1", 10, &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_ip("::1]", 10, &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_ip("[127.0.0.1]", 10, &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_ip("", 10, &ss, &len), -EINVAL);
	cr_assert_eq(zk_addr_ip("1.2.3.4:80", 10, &ss, &len), -EINVAL, "no port in a host");
}

Test(net_sock, addr_format_reports_small_buffers_and_unknown_families)
{
	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(zk_addr_parse("[2001:db8::1]:65535", &ss, &len), 0);
	char buf[ZK_ADDR_STRLEN];
	int n = zk_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf));
	cr_assert_eq(n, (int)strlen("[2001:db8::1]:65535"));
	cr_assert_eq(zk_addr_format((struct sockaddr *)&ss, len, buf, (size_t)n), -ENOSPC);
	cr_assert_eq(zk_addr_format((struct sockaddr *)&ss, len, buf, (size_t)n + 1), n);
	cr_assert_eq(zk_addr_format((struct sockaddr *)&ss, 8, buf, sizeof(buf)), -EINVAL);
	struct sockaddr other = {.sa_family = AF_APPLETALK};
	cr_assert_eq(zk_addr_format(&other, sizeof(other), buf, sizeof(buf)), -EAFNOSUPPORT);
	cr_assert_eq(zk_addr_format(NULL, 16, buf, sizeof(buf)), -EINVAL);
	/* An unnamed Unix socket (what recvfrom reports for an unbound
	 * sender) formats as "". */
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	cr_assert_eq(zk_addr_format((struct sockaddr *)&un, sizeof(sa_family_t), buf, sizeof(buf)),
		     0);
	cr_assert_str_eq(buf, "");
}

/* ---- TCP: IPv6, options ------------------------------------------------------------------ */

struct pair {
	int lfd;
	int port;
	const char *host;
	int a, b;
	struct sockaddr_storage peer;
};

static void *accept_one(void *arg)
{
	struct pair *p = arg;
	socklen_t len = sizeof(p->peer);
	p->b = zk_accept(p->lfd, (struct sockaddr *)&p->peer, &len);
	ZT_CHECK(p->b >= 0);
	return NULL;
}

static void tcp_pair(struct pair *p)
{
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, accept_one, p), 0);
	p->a = zk_tcp_connect(p->host, (uint16_t)p->port);
	ZT_CHECK(p->a >= 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
}

static void *ipv6_echo(void *arg)
{
	struct pair *p = arg;
	tcp_pair(p);
	if (p->a < 0 || p->b < 0)
		return NULL;
	ZT_CHECK_EQ(p->peer.ss_family, AF_INET6);
	char out[3000], in[3000];
	zt_fill(out, sizeof(out), 61);
	ZT_CHECK_EQ(zk_send_all(p->a, out, sizeof(out)), sizeof(out));
	ZT_CHECK_EQ(zk_recv_exact(p->b, in, sizeof(in)), sizeof(in));
	ZT_CHECK(memcmp(in, out, sizeof(in)) == 0);
	ZT_CHECK_EQ(zk_close(p->a), 0);
	ZT_CHECK_EQ(zk_close(p->b), 0);
	/* An address-based connect to the same listener. */
	struct sockaddr_storage ss;
	socklen_t len;
	ZT_CHECK_EQ(zk_addr_ip("::1", (uint16_t)p->port, &ss, &len), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, accept_one, p), 0);
	int fd = zk_tcp_connect_addr((struct sockaddr *)&ss, len);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_close(p->b), 0);
	return NULL;
}

Test(net_sock, tcp_over_ipv6_loopback_carries_bytes_intact)
{
	if (!have_ipv6_loopback())
		cr_skip_test("no IPv6 loopback here");
	zk_runtime_t *rt = zt_runtime(2);
	struct pair p = {.lfd = zk_tcp_listen("::1", 0, 16), .host = "[::1]"};
	cr_assert_geq(p.lfd, 0);
	p.port = zk_socket_port(p.lfd);
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);
	cr_assert_eq(getsockname(p.lfd, (struct sockaddr *)&sa, &len), 0);
	cr_assert_eq(sa.sin6_family, AF_INET6);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&sa.sin6_addr));
	zt_run(rt, ipv6_echo, &p);
	close(p.lfd);
	zk_runtime_free(rt);
}

Test(net_sock, v6only_flag_sets_ipv6_v6only)
{
	if (!have_ipv6_loopback())
		cr_skip_test("no IPv6 loopback here");
	int fd = zk_tcp_listen_flags("::1", 0, 4, ZK_TCP_V6ONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
	close(fd);
}

Test(net_sock, listen_flags_and_addresses_are_checked)
{
	cr_assert_eq(zk_tcp_listen_flags("127.0.0.1", 0, 4, 0x100), -EINVAL);
	cr_assert_eq(zk_tcp_listen_addr(NULL, 0, 4, 0), -EINVAL);
	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(zk_addr_unix("@zk-not-tcp", &ss, &len), 0);
	cr_assert_eq(zk_tcp_listen_addr((struct sockaddr *)&ss, len, 4, 0), -EAFNOSUPPORT);
	cr_assert_eq(zk_udp_bind("127.0.0.1", 0, 0x100), -EINVAL);
	cr_assert_eq(zk_udp_bind("nope", 0, 0), -EINVAL);
	cr_assert_eq(zk_udp_connect(NULL, 1), -EINVAL);
}

/* Two listeners share a port with ZK_TCP_REUSEPORT and the kernel spreads
 * connections over both; without the flag the second bind fails. */
Test(net_sock, reuseport_lets_listeners_share_a_port_and_spreads_connections)
{
	int l1 = zk_tcp_listen_flags("127.0.0.1", 0, 256, ZK_TCP_REUSEPORT);
	cr_assert_geq(l1, 0);
	cr_assert_eq(sockopt(l1, SOL_SOCKET, SO_REUSEPORT), 1);
	int port = zk_socket_port(l1);
	int l2 = zk_tcp_listen_flags("127.0.0.1", (uint16_t)port, 256, ZK_TCP_REUSEPORT);
	cr_assert_geq(l2, 0, "second REUSEPORT listener: %d", l2);
	cr_assert_eq(zk_tcp_listen("127.0.0.1", (uint16_t)port, 4), -EADDRINUSE);
	enum { N = 64 };
	int c[N];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < N; i++) {
		c[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_eq(connect(c[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	}
	/* Handshakes are complete: every connection waits in one queue. */
	int got[2] = {0, 0};
	int ls[2] = {l1, l2};
	for (int k = 0; k < 2; k++) {
		int fd;
		cr_assert_eq(fcntl(ls[k], F_SETFL, O_NONBLOCK), 0);
		while ((fd = accept4(ls[k], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
			got[k]++;
			close(fd);
		}
	}
	cr_assert_eq(got[0] + got[1], N);
	/* Hashed over source ports: all 64 on one side has odds 2^-63. */
	cr_assert_gt(got[0], 0);
	cr_assert_gt(got[1], 0);
	for (int i = 0; i < N; i++)
		close(c[i]);
	close(l1);
	close(l2);
}

static void *options(void *arg)
{
	struct pair *p = arg;
	tcp_pair(p);
	/* Both ends have TCP_NODELAY: the connector sets it, the accepted
	 * socket inherits it from the listener. */
	ZT_CHECK(sockopt(p->a, IPPROTO_TCP, TCP_NODELAY) == 1);
	ZT_CHECK(sockopt(p->b, IPPROTO_TCP, TCP_NODELAY) == 1);
	ZT_CHECK_EQ(zk_tcp_nodelay(p->b, false), 0);
	ZT_CHECK_EQ(sockopt(p->b, IPPROTO_TCP, TCP_NODELAY), 0);
	ZT_CHECK_EQ(zk_tcp_nodelay(p->b, true), 0);
	ZT_CHECK_EQ(sockopt(p->b, IPPROTO_TCP, TCP_NODELAY), 1);

	ZT_CHECK_EQ(sockopt(p->a, SOL_SOCKET, SO_KEEPALIVE), 0);
	ZT_CHECK_EQ(zk_tcp_keepalive(p->a, 30, 5, 3), 0);
	ZT_CHECK_EQ(sockopt(p->a, SOL_SOCKET, SO_KEEPALIVE), 1);
	ZT_CHECK_EQ(sockopt(p->a, IPPROTO_TCP, TCP_KEEPIDLE), 30);
	ZT_CHECK_EQ(sockopt(p->a, IPPROTO_TCP, TCP_KEEPINTVL), 5);
	ZT_CHECK_EQ(sockopt(p->a, IPPROTO_TCP, TCP_KEEPCNT), 3);
	ZT_CHECK_EQ(zk_tcp_keepalive(p->a, 0, 0, 0), 0);
	ZT_CHECK_EQ(sockopt(p->a, SOL_SOCKET, SO_KEEPALIVE), 0);
	ZT_CHECK_EQ(zk_tcp_keepalive(p->a, -1, 0, 0), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_keepalive(p->a, 10, -1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_keepalive(p->a, 10, 0, -1), -EINVAL);

	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ZT_CHECK_EQ(zk_tcp_nodelay(sv[0], true), -EOPNOTSUPP);
	ZT_CHECK_EQ(zk_tcp_keepalive(sv[0], 10, 1, 1), -EOPNOTSUPP);
	ZT_CHECK_EQ(sockopt(sv[0], SOL_SOCKET, SO_KEEPALIVE), 0);
	int u = zk_udp_bind("127.0.0.1", 0, 0);
	ZT_CHECK(u >= 0);
	ZT_CHECK_EQ(zk_tcp_nodelay(u, true), -EOPNOTSUPP);
	ZT_CHECK_EQ(zk_tcp_nodelay(-1, true), -EBADF);
	ZT_CHECK_EQ(zk_tcp_keepalive(-1, 1, 1, 1), -EBADF);
	int pp[2];
	ZT_CHECK_EQ(pipe(pp), 0);
	ZT_CHECK_EQ(zk_tcp_nodelay(pp[0], true), -ENOTSOCK);
	close(pp[0]);
	close(pp[1]);
	ZT_CHECK_EQ(zk_close(u), 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	ZT_CHECK_EQ(zk_close(p->a), 0);
	ZT_CHECK_EQ(zk_close(p->b), 0);
	return NULL;
}

Test(net_sock, nodelay_is_on_by_default_and_keepalive_is_settable)
{
	zk_runtime_t *rt = zt_runtime(1);
	struct pair p = {.lfd = zk_tcp_listen("127.0.0.1", 0, 16), .host = "127.0.0.1"};
	cr_assert_geq(p.lfd, 0);
	cr_assert_eq(sockopt(p.lfd, IPPROTO_TCP, TCP_NODELAY), 1);
	p.port = zk_socket_port(p.lfd);
	zt_run(rt, options, &p);
	close(p.lfd);
	zk_runtime_free(rt);
}

/* ---- graceful close ------------------------------------------------------------------------ */

static void *graceful_peer(void *arg)
{
	struct pair *p = arg;
	char buf[8];
	ZT_CHECK_EQ(zk_recv_exact(p->b, buf, 3), 3);
	ZT_CHECK(memcmp(buf, "bye", 3) == 0);
	ZT_CHECK_EQ(zk_recv(p->b, buf, sizeof(buf), 0), 0); /* the FIN */
	/* Our side may still talk; the closer discards it. */
	ZT_CHECK_EQ(zk_send_all(p->b, "trailing", 8), 8);
	ZT_CHECK_EQ(zk_close(p->b), 0);
	return NULL;
}

static void *graceful(void *arg)
{
	struct pair *p = arg;
	tcp_pair(p);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, graceful_peer, p), 0);
	ZT_CHECK_EQ(zk_send_all(p->a, "bye", 3), 3);
	ZT_CHECK_EQ(zk_close_graceful(p->a, 10 * ZK_NSEC_PER_SEC), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	/* A peer that never closes: the wait ends at the timeout, and the
	 * fd is closed anyway (the peer sees our FIN, then our close). */
	tcp_pair(p);
	ZT_CHECK_EQ(zk_close_graceful(p->a, 30 * ZK_NSEC_PER_MSEC), -ETIMEDOUT);
	char c;
	ZT_CHECK_EQ(zk_recv(p->b, &c, 1, 0), 0);
	ZT_CHECK_EQ(zk_close(p->b), 0);
	ZT_CHECK_EQ(zk_close_graceful(-1, 0), -EBADF);
	return NULL;
}

Test(net_sock, graceful_close_waits_for_the_peer_then_closes)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct pair p = {.lfd = zk_tcp_listen("127.0.0.1", 0, 16), .host = "127.0.0.1"};
	cr_assert_geq(p.lfd, 0);
	p.port = zk_socket_port(p.lfd);
	zt_run(rt, graceful, &p);
	close(p.lfd);
	zk_runtime_free(rt);
	cr_assert_eq(zk_close_graceful(0, 0), -EPERM);
}

/* ---- whole transfers -------------------------------------------------------------------- */

#define BIG (4u << 20)

struct xfer {
	struct pair p;
	char *data;
};

/* Sends BIG bytes in uneven pieces, with pauses, so the reader sees many
 * short receives. */
static void *dribble(void *arg)
{
	struct xfer *x = arg;
	size_t sent = 0, step = 1;
	while (sent < BIG) {
		size_t n = step < BIG - sent ? step : BIG - sent;
		ZT_CHECK_EQ(zk_send_all(x->p.a, x->data + sent, n), n);
		sent += n;
		step = step * 3 + 7;
		if (step > 300000)
			step = 13;
		if ((sent & 7) == 0)
			zk_yield();
	}
	ZT_CHECK_EQ(zk_shutdown(x->p.a, SHUT_WR), 0);
	return NULL;
}

static void *exact_transfer(void *arg)
{
	struct xfer *x = arg;
	tcp_pair(&x->p);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, dribble, x), 0);
	char *in = malloc(BIG);
	ZT_CHECK_EQ(zk_recv_exact(x->p.b, in, 10), 10);
	ZT_CHECK_EQ(zk_recv_exact(x->p.b, in + 10, BIG - 10), BIG - 10);
	ZT_CHECK(memcmp(in, x->data, BIG) == 0);
	/* At EOF with nothing left: 0. */
	ZT_CHECK_EQ(zk_recv_exact(x->p.b, in, 100), 0);
	ZT_CHECK_EQ(zk_recv_exact(x->p.b, in, 0), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	free(in);
	ZT_CHECK_EQ(zk_close(x->p.a), 0);
	ZT_CHECK_EQ(zk_close(x->p.b), 0);
	return NULL;
}

Test(net_sock, recv_exact_and_send_all_move_every_byte_across_short_transfers)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct xfer x = {.p = {.lfd = zk_tcp_listen("127.0.0.1", 0, 16), .host = "127.0.0.1"}};
	cr_assert_geq(x.p.lfd, 0);
	x.p.port = zk_socket_port(x.p.lfd);
	x.data = malloc(BIG);
	zt_fill(x.data, BIG, 77);
	zt_run(rt, exact_transfer, &x);
	free(x.data);
	close(x.p.lfd);
	zk_runtime_free(rt);
}

static void *exact_short_and_errors(void *arg)
{
	(void)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ZT_CHECK_EQ(zk_send_all(sv[0], "0123456789", 10), 10);
	ZT_CHECK_EQ(zk_shutdown(sv[0], SHUT_WR), 0);
	char buf[100];
	ZT_CHECK_EQ(zk_recv_exact(sv[1], buf, sizeof(buf)), 10); /* EOF first */
	ZT_CHECK(memcmp(buf, "0123456789", 10) == 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	/* The peer is gone: sending fails with EPIPE, no SIGPIPE. */
	ZT_CHECK_EQ(zk_send_all(sv[0], buf, sizeof(buf)), -EPIPE);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_recv_exact(-1, buf, 1), -EBADF);
	ZT_CHECK_EQ(zk_send_all(-1, buf, 1), -EBADF);
	/* A timeout on an exact read with nothing coming. */
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ZT_CHECK_EQ(zk_timeout_next(20 * ZK_NSEC_PER_MSEC), 0);
	ZT_CHECK_EQ(zk_recv_exact(sv[1], buf, 4), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);

	/* Files and pipes: zk_read_exact / zk_write_all. */
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/f", dir);
	int fd = zk_open(path, O_RDWR | O_CREAT, 0600);
	ZT_CHECK(fd >= 0);
	char data[5000], back[5000];
	zt_fill(data, sizeof(data), 5);
	ZT_CHECK_EQ(zk_write_all(fd, data, sizeof(data), 100), sizeof(data));
	ZT_CHECK_EQ(zk_read_exact(fd, back, sizeof(back), 100), sizeof(back));
	ZT_CHECK(memcmp(back, data, sizeof(back)) == 0);
	/* Past the end: a short count. */
	ZT_CHECK_EQ(zk_read_exact(fd, back, sizeof(back), 5000), 100);
	ZT_CHECK(memcmp(back, data + 4900, 100) == 0);
	/* At the file position. */
	ZT_CHECK_EQ(zk_write_all(fd, "abc", 3, -1), 3);
	ZT_CHECK_EQ(zk_read_exact(fd, back, 3, 0), 3);
	ZT_CHECK(memcmp(back, "abc", 3) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	int pp[2];
	ZT_CHECK_EQ(pipe2(pp, O_CLOEXEC), 0);
	ZT_CHECK_EQ(zk_write_all(pp[1], data, 1000, -1), 1000);
	ZT_CHECK_EQ(zk_close(pp[1]), 0);
	ZT_CHECK_EQ(zk_read_exact(pp[0], back, 2000, -1), 1000);
	ZT_CHECK(memcmp(back, data, 1000) == 0);
	ZT_CHECK_EQ(zk_close(pp[0]), 0);
	ZT_CHECK_EQ(zk_read_exact(-1, back, 1, 0), -EBADF);
	ZT_CHECK_EQ(zk_write_all(-1, back, 1, 0), -EBADF);
	zt_rmtree(dir);
	return NULL;
}

Test(net_sock, exact_calls_report_eof_as_a_short_count_and_errors_as_errno)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, exact_short_and_errors, NULL);
	zk_runtime_free(rt);
}

Test(net_sock, exact_calls_outside_a_task_return_eperm)
{
	char b[4];
	cr_assert_eq(zk_recv_exact(0, b, 4), -EPERM);
	cr_assert_eq(zk_send_all(0, b, 4), -EPERM);
	cr_assert_eq(zk_read_exact(0, b, 4, 0), -EPERM);
	cr_assert_eq(zk_write_all(0, b, 4, 0), -EPERM);
	cr_assert_eq(zk_sendto(0, b, 4, 0, NULL, 0), -EPERM);
	cr_assert_eq(zk_recvfrom(0, b, 4, 0, NULL, NULL), -EPERM);
	cr_assert_eq(zk_sendmsg(0, NULL, 0), -EPERM);
	cr_assert_eq(zk_recvmsg(0, NULL, 0), -EPERM);
	cr_assert_eq(zk_unix_connect("/nonexistent"), -EPERM);
	cr_assert_eq(zk_tcp_connect_addr(NULL, 0), -EPERM);
}

/* ---- UDP ------------------------------------------------------------------------------------ */

struct udp {
	int rx, tx;
	struct sockaddr_storage rx_addr, tx_addr;
	socklen_t rx_len, tx_len;
	unsigned n;
	atomic_long acked;
};

#define DGRAM 512
#define WINDOW 32

/* Receives n datagrams in order, checks each byte and the sender's
 * address, acks every WINDOW so the sender never overruns the buffer. */
static void *udp_receiver(void *arg)
{
	struct udp *u = arg;
	char buf[DGRAM + 16];
	for (unsigned i = 0; i < u->n; i++) {
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		ssize_t r = zk_recvfrom(u->rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		ZT_CHECK_EQ(r, DGRAM);
		if (r != DGRAM)
			return NULL;
		ZT_CHECK_EQ(flen, u->tx_len);
		ZT_CHECK(memcmp(&from, &u->tx_addr, u->tx_len) == 0);
		uint32_t seq;
		memcpy(&seq, buf, 4);
		ZT_CHECK_EQ(seq, i);
		ZT_CHECK(zt_check_fill(buf + 4, DGRAM - 4, i, 0));
		if ((i + 1) % WINDOW == 0 || i + 1 == u->n)
			ZT_CHECK_EQ(zk_sendto(u->rx, &i, 4, 0, (struct sockaddr *)&from, flen), 4);
	}
	return NULL;
}

static void *udp_sender(void *arg)
{
	struct udp *u = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, udp_receiver, u), 0);
	char buf[DGRAM];
	for (unsigned i = 0; i < u->n; i++) {
		memcpy(buf, &i, 4);
		zt_fill(buf + 4, DGRAM - 4, i);
		ZT_CHECK_EQ(zk_sendto(u->tx, buf, DGRAM, 0, (struct sockaddr *)&u->rx_addr, u->rx_len),
			    DGRAM);
		if ((i + 1) % WINDOW == 0 || i + 1 == u->n) {
			uint32_t ack = 0;
			ZT_CHECK_EQ(zk_recvfrom(u->tx, &ack, 4, 0, NULL, NULL), 4);
			ZT_CHECK_EQ(ack, i);
		}
	}
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

static void udp_run(const char *host)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct udp u = {.n = (unsigned)zt_scaled(20000, 500)};
	u.rx = zk_udp_bind(host, 0, 0);
	u.tx = zk_udp_bind(host, 0, 0);
	cr_assert_geq(u.rx, 0);
	cr_assert_geq(u.tx, 0);
	cr_assert(fcntl(u.rx, F_GETFD) & FD_CLOEXEC);
	u.rx_len = sizeof(u.rx_addr);
	u.tx_len = sizeof(u.tx_addr);
	cr_assert_eq(getsockname(u.rx, (struct sockaddr *)&u.rx_addr, &u.rx_len), 0);
	cr_assert_eq(getsockname(u.tx, (struct sockaddr *)&u.tx_addr, &u.tx_len), 0);
	zt_run(rt, udp_sender, &u);
	close(u.rx);
	close(u.tx);
	zk_runtime_free(rt);
}

Test(net_sock, udp_datagrams_arrive_whole_in_order_without_loss_on_loopback)
{
	udp_run("127.0.0.1");
}

Test(net_sock, udp_over_ipv6_loopback)
{
	if (!have_ipv6_loopback())
		cr_skip_test("no IPv6 loopback here");
	udp_run("::1");
}

Test(net_sock, udp_sockets_share_a_port_with_reuseport)
{
	int a = zk_udp_bind("127.0.0.1", 0, ZK_TCP_REUSEPORT);
	cr_assert_geq(a, 0);
	int port = zk_socket_port(a);
	int b = zk_udp_bind("127.0.0.1", (uint16_t)port, ZK_TCP_REUSEPORT);
	cr_assert_geq(b, 0, "second REUSEPORT UDP socket: %d", b);
	cr_assert_eq(zk_udp_bind("127.0.0.1", (uint16_t)port, 0), -EADDRINUSE);
	close(a);
	close(b);
}

static void *udp_misc(void *arg)
{
	(void)arg;
	int rx = zk_udp_bind("127.0.0.1", 0, 0);
	ZT_CHECK(rx >= 0);
	int port = zk_socket_port(rx);
	/* Connected UDP: zk_send/zk_recv with the peer fixed. */
	int c = zk_udp_connect("127.0.0.1", (uint16_t)port);
	ZT_CHECK(c >= 0);
	ZT_CHECK_EQ(zk_send(c, "hello", 5, 0), 5);
	char buf[64];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	ZT_CHECK_EQ(zk_recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 5);
	ZT_CHECK(memcmp(buf, "hello", 5) == 0);
	ZT_CHECK_EQ(zk_sendto(rx, "world", 5, 0, (struct sockaddr *)&from, flen), 5);
	ZT_CHECK_EQ(zk_recv(c, buf, sizeof(buf), 0), 5);
	ZT_CHECK(memcmp(buf, "world", 5) == 0);
	/* MSG_TRUNC reports the whole datagram's size. */
	ZT_CHECK_EQ(zk_send(c, "0123456789", 10, 0), 10);
	ZT_CHECK_EQ(zk_recvfrom(rx, buf, 4, MSG_TRUNC, NULL, NULL), 10);
	ZT_CHECK(memcmp(buf, "0123", 4) == 0);
	/* sendmsg / recvmsg gather and scatter one datagram. */
	struct iovec out[2] = {{"abc", 3}, {"defg", 4}};
	struct msghdr m = {.msg_iov = out, .msg_iovlen = 2};
	ZT_CHECK_EQ(zk_sendmsg(c, &m, 0), 7);
	char p1[2], p2[8] = {0};
	struct iovec in[2] = {{p1, 2}, {p2, 8}};
	struct sockaddr_storage name;
	struct msghdr rm = {.msg_name = &name, .msg_namelen = sizeof(name), .msg_iov = in,
			    .msg_iovlen = 2};
	ZT_CHECK_EQ(zk_recvmsg(rx, &rm, 0), 7);
	ZT_CHECK(memcmp(p1, "ab", 2) == 0 && memcmp(p2, "cdefg", 5) == 0);
	ZT_CHECK_EQ(rm.msg_namelen, sizeof(struct sockaddr_in));
	ZT_CHECK(memcmp(&name, &from, sizeof(struct sockaddr_in)) == 0);
	/* A truncated datagram sets MSG_TRUNC in msg_flags. */
	ZT_CHECK_EQ(zk_send(c, "0123456789", 10, 0), 10);
	struct iovec small = {p1, 2};
	struct msghdr tm = {.msg_iov = &small, .msg_iovlen = 1};
	ZT_CHECK_EQ(zk_recvmsg(rx, &tm, 0), 2);
	ZT_CHECK(tm.msg_flags & MSG_TRUNC);
	/* Errors. */
	ZT_CHECK_EQ(zk_sendmsg(c, NULL, 0), -EINVAL);
	ZT_CHECK_EQ(zk_recvmsg(c, NULL, 0), -EINVAL);
	ZT_CHECK_EQ(zk_recvfrom(rx, buf, 4, 0, (struct sockaddr *)&from, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_recvfrom(rx, buf, 4, MSG_DONTWAIT, NULL, NULL), -EAGAIN);
	ZT_CHECK_EQ(zk_sendto(rx, "x", 1, 0, NULL, 0), -EDESTADDRREQ);
	ZT_CHECK_EQ(zk_sendto(-1, "x", 1, 0, NULL, 0), -EBADF);
	/* Nothing comes: the timeout ends the wait. */
	ZT_CHECK_EQ(zk_timeout_next(20 * ZK_NSEC_PER_MSEC), 0);
	ZT_CHECK_EQ(zk_recvfrom(rx, buf, sizeof(buf), 0, NULL, NULL), -ETIMEDOUT);
	/* A connected socket whose peer port closed gets ECONNREFUSED (the
	 * ICMP port unreachable) on a later call. */
	ZT_CHECK_EQ(zk_close(rx), 0);
	ZT_CHECK_EQ(zk_send(c, "x", 1, 0), 1);
	ZT_CHECK_EQ(zk_timeout_next(5 * ZK_NSEC_PER_SEC), 0);
	ZT_CHECK_EQ(zk_recv(c, buf, sizeof(buf), 0), -ECONNREFUSED);
	ZT_CHECK_EQ(zk_close(c), 0);
	return NULL;
}

Test(net_sock, connected_udp_truncation_scatter_gather_and_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, udp_misc, NULL);
	zk_runtime_free(rt);
}

/* ---- Unix sockets ------------------------------------------------------------------------ */

struct unix_echo {
	int lfd;
	const char *path;
};

static void *unix_server(void *arg)
{
	struct unix_echo *e = arg;
	int fd = zk_accept(e->lfd, NULL, NULL);
	ZT_CHECK(fd >= 0);
	char buf[1000];
	ssize_t n;
	while ((n = zk_recv(fd, buf, sizeof(buf), 0)) > 0)
		ZT_CHECK_EQ(zk_send_all(fd, buf, (size_t)n), n);
	ZT_CHECK_EQ(n, 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

static void *unix_client(void *arg)
{
	struct unix_echo *e = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, unix_server, e), 0);
	int fd = zk_unix_connect(e->path);
	ZT_CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	ZT_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	static char out[100000], in[100000];
	zt_fill(out, sizeof(out), 3);
	/* Write and read in slices, so neither buffer fills. */
	for (size_t off = 0; off < sizeof(out); off += 10000) {
		ZT_CHECK_EQ(zk_send_all(fd, out + off, 10000), 10000);
		ZT_CHECK_EQ(zk_recv_exact(fd, in + off, 10000), 10000);
	}
	ZT_CHECK(memcmp(in, out, sizeof(in)) == 0);
	ZT_CHECK_EQ(zk_shutdown(fd, SHUT_WR), 0);
	char c;
	ZT_CHECK_EQ(zk_recv(fd, &c, 1, 0), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(net_sock, unix_stream_echo_over_a_path_and_an_abstract_name)
{
	zk_runtime_t *rt = zt_runtime(2);
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/echo.sock", dir);
	struct unix_echo e = {.lfd = zk_unix_listen(path, 8), .path = path};
	cr_assert_geq(e.lfd, 0);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(zk_unix_listen(path, 8), -EADDRINUSE, "an existing path is not removed");
	zt_run(rt, unix_client, &e);
	close(e.lfd);

	char name[64];
	snprintf(name, sizeof(name), "@zokio-test-%d", (int)getpid());
	e.lfd = zk_unix_listen(name, 8);
	cr_assert_geq(e.lfd, 0);
	e.path = name;
	zt_run(rt, unix_client, &e);
	close(e.lfd);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}

static void *unix_errors(void *arg)
{
	const char *dir = arg;
	char path[256];
	snprintf(path, sizeof(path), "%s/missing.sock", dir);
	ZT_CHECK_EQ(zk_unix_connect(path), -ENOENT);
	/* A socket file whose listener is gone. */
	snprintf(path, sizeof(path), "%s/dead.sock", dir);
	int fd = zk_unix_listen(path, 1);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_unix_connect(path), -ECONNREFUSED);
	/* A datagram socket is not a stream listener. */
	snprintf(path, sizeof(path), "%s/dgram.sock", dir);
	fd = zk_unix_dgram(path);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_unix_connect(path), -EPROTOTYPE);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_unix_connect(""), -EINVAL);
	ZT_CHECK_EQ(zk_unix_connect(NULL), -EINVAL);
	return NULL;
}

Test(net_sock, unix_connect_and_listen_report_their_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	char *dir = zt_tmpdir();
	zt_run(rt, unix_errors, dir);
	char longp[200];
	memset(longp, 'x', sizeof(longp));
	longp[0] = '/';
	longp[199] = '\0';
	cr_assert_eq(zk_unix_listen(longp, 1), -ENAMETOOLONG);
	cr_assert_eq(zk_unix_dgram(longp), -ENAMETOOLONG);
	cr_assert_eq(zk_unix_listen("/nonexistent-dir-zk/x.sock", 1), -ENOENT);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}

struct udg {
	const char *srv_path;
	const char *cli_path;
};

static void *unix_dgram(void *arg)
{
	struct udg *u = arg;
	int srv = zk_unix_dgram(u->srv_path);
	ZT_CHECK(srv >= 0);
	struct sockaddr_storage sa;
	socklen_t salen;
	ZT_CHECK_EQ(zk_addr_unix(u->srv_path, &sa, &salen), 0);
	/* An unbound sender: the receiver sees an unnamed address. */
	int anon = zk_unix_dgram(NULL);
	ZT_CHECK(anon >= 0);
	ZT_CHECK_EQ(zk_sendto(anon, "one", 3, 0, (struct sockaddr *)&sa, salen), 3);
	char buf[16];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	ZT_CHECK_EQ(zk_recvfrom(srv, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 3);
	ZT_CHECK(memcmp(buf, "one", 3) == 0);
	ZT_CHECK_EQ(flen, 0); /* unnamed: no address at all */
	/* A bound sender can be answered at the address recvfrom gave. */
	int cli = zk_unix_dgram(u->cli_path);
	ZT_CHECK(cli >= 0);
	unsigned n = (unsigned)zt_scaled(2000, 100);
	for (unsigned i = 0; i < n; i++) {
		ZT_CHECK_EQ(zk_sendto(cli, &i, sizeof(i), 0, (struct sockaddr *)&sa, salen), 4);
		unsigned v = ~0u;
		flen = sizeof(from);
		ZT_CHECK_EQ(zk_recvfrom(srv, &v, sizeof(v), 0, (struct sockaddr *)&from, &flen), 4);
		ZT_CHECK_EQ(v, i);
		v = i * 3;
		ZT_CHECK_EQ(zk_sendto(srv, &v, 4, 0, (struct sockaddr *)&from, flen), 4);
		ZT_CHECK_EQ(zk_recvfrom(cli, &v, 4, 0, NULL, NULL), 4);
		ZT_CHECK_EQ(v, i * 3);
	}
	char txt[ZK_ADDR_STRLEN];
	ZT_CHECK(zk_addr_format((struct sockaddr *)&from, flen, txt, sizeof(txt)) > 0);
	ZT_CHECK(strcmp(txt, u->cli_path) == 0);
	ZT_CHECK_EQ(zk_close(cli), 0);
	ZT_CHECK_EQ(zk_close(anon), 0);
	ZT_CHECK_EQ(zk_close(srv), 0);
	return NULL;
}

Test(net_sock, unix_datagrams_between_bound_and_unbound_sockets)
{
	zk_runtime_t *rt = zt_runtime(2);
	char *dir = zt_tmpdir();
	char sp[256], cp[256];
	snprintf(sp, sizeof(sp), "%s/srv.sock", dir);
	snprintf(cp, sizeof(cp), "%s/cli.sock", dir);
	struct udg u = {sp, cp};
	zt_run(rt, unix_dgram, &u);
	char an[64], ac[64];
	snprintf(an, sizeof(an), "@zk-dgram-srv-%d", (int)getpid());
	snprintf(ac, sizeof(ac), "@zk-dgram-cli-%d", (int)getpid());
	struct udg a = {an, ac};
	zt_run(rt, unix_dgram, &a);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}
