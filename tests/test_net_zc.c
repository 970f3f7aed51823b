/* tests/test_net_zc.c — zero-copy sends (io_uring SEND_ZC; a plain send on
 * epoll): the result is the send's byte count, not the notification's; the
 * buffer is the caller's again when the call returns (overwriting it at
 * once never changes what the peer receives); zk_send_all above the
 * threshold; errors. Real TCP on 127.0.0.1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(net_zc, .timeout = 120);

static void *accept_into(void *arg)
{
	int *p = arg;
	p[1] = zk_accept(p[0], NULL, NULL);
	ZT_CHECK(p[1] >= 0);
	return NULL;
}

static void tcp_pair(int *a, int *b)
{
	int p[2] = {zk_tcp_listen("127.0.0.1", 0, 4), -1};
	ZT_CHECK(p[0] >= 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, accept_into, p), 0);
	*a = zk_tcp_connect("127.0.0.1", (uint16_t)zk_socket_port(p[0]));
	ZT_CHECK(*a >= 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	*b = p[1];
	zk_close(p[0]);
}

struct zc {
	int a, b;
	size_t piece;
	unsigned rounds;
	bool ok;
	size_t got;
};

/* Reads rounds * piece bytes; piece r must be filled with seed r. */
static void *verify_reader(void *arg)
{
	struct zc *z = arg;
	char *buf = malloc(z->piece);
	z->ok = true;
	for (unsigned r = 0; r < z->rounds; r++) {
		ssize_t n = zk_recv_exact(z->b, buf, z->piece);
		ZT_CHECK_EQ(n, z->piece);
		if (n != (ssize_t)z->piece || !zt_check_fill(buf, z->piece, r + 1, 0))
			z->ok = false;
		z->got += (size_t)(n > 0 ? n : 0);
	}
	free(buf);
	return NULL;
}

/* One buffer, refilled with a new pattern right after each zk_send_zc
 * returns: if the call returned before the kernel was done with the
 * pages, the peer would see the next round's bytes. */
static void *reuse_buffer(void *arg)
{
	struct zc *z = arg;
	tcp_pair(&z->a, &z->b);
	if (!zt_uring_feature("send_zc")) {
		/* io_uring without SEND_ZC (the olduring setup): said so. */
		char c = 0;
		ZT_CHECK_EQ(zk_send_zc(z->a, &c, 1, 0), -EOPNOTSUPP);
		z->rounds = 0;
	}
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, verify_reader, z), 0);
	char *buf = malloc(z->piece);
	for (unsigned r = 0; r < z->rounds; r++) {
		zt_fill(buf, z->piece, r + 1);
		size_t sent = 0;
		while (sent < z->piece) {
			ssize_t n = zk_send_zc(z->a, buf + sent, z->piece - sent, 0);
			ZT_CHECK(n > 0); /* the send's count, never the notification's 0 */
			if (n <= 0)
				break;
			sent += (size_t)n;
		}
		memset(buf, 0xee, z->piece); /* ours again: scribble */
	}
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK(z->ok);
	ZT_CHECK_EQ(z->got, (size_t)z->rounds * z->piece);
	free(buf);
	ZT_CHECK_EQ(zk_close(z->a), 0);
	ZT_CHECK_EQ(zk_close(z->b), 0);
	return NULL;
}

Test(net_zc, send_zc_returns_the_byte_count_and_the_buffer_is_free_on_return)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct zc z = {.piece = 256u << 10, .rounds = (unsigned)zt_scaled(64, 8)};
	zt_run(rt, reuse_buffer, &z);
	struct zc small = {.piece = 1000, .rounds = (unsigned)zt_scaled(500, 50)};
	zt_run(rt, reuse_buffer, &small);
	zk_runtime_free(rt);
}

static void *send_all_zc(void *arg)
{
	struct zc *z = arg;
	tcp_pair(&z->a, &z->b);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, verify_reader, z), 0);
	char *buf = malloc(z->piece);
	for (unsigned r = 0; r < z->rounds; r++) {
		zt_fill(buf, z->piece, r + 1);
		ZT_CHECK_EQ(zk_send_all(z->a, buf, z->piece), z->piece);
	}
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK(z->ok);
	free(buf);
	ZT_CHECK_EQ(zk_close(z->a), 0);
	ZT_CHECK_EQ(zk_close(z->b), 0);
	return NULL;
}

Test(net_zc, send_all_above_the_threshold_goes_zero_copy_and_arrives_intact)
{
	cr_assert_eq(zk_send_zc_min(), 128u << 10, "the measured default");
	zk_runtime_t *rt = zt_runtime(2);
	/* 3 MiB per call: split into zero-copy pieces of at most 512 KiB. */
	struct zc z = {.piece = 3u << 20, .rounds = (unsigned)zt_scaled(8, 2)};
	zt_run(rt, send_all_zc, &z);
	/* Threshold off: plain sends, same bytes. */
	zk_send_zc_set_min(0);
	cr_assert_eq(zk_send_zc_min(), 0);
	struct zc c = {.piece = 3u << 20, .rounds = 2};
	zt_run(rt, send_all_zc, &c);
	zk_send_zc_set_min(128u << 10);
	zk_runtime_free(rt);
}

static void *zc_errors(void *arg)
{
	(void)arg;
	char buf[64] = {0};
	/* io_uring without SEND_ZC (the olduring setup) says so first. */
	int missing = zt_uring_feature("send_zc") ? 0 : -EOPNOTSUPP;
	ZT_CHECK_EQ(zk_send_zc(-1, buf, sizeof(buf), 0), missing ? missing : -EBADF);
	int a, b;
	tcp_pair(&a, &b);
	ZT_CHECK_EQ(zk_shutdown(a, SHUT_WR), 0);
	ZT_CHECK_EQ(zk_send_zc(a, buf, sizeof(buf), 0),
		    missing ? missing : -EPIPE); /* and no SIGPIPE */
	ZT_CHECK_EQ(zk_close(a), 0);
	ZT_CHECK_EQ(zk_close(b), 0);
	return NULL;
}

Test(net_zc, send_zc_reports_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, zc_errors, NULL);
	zk_runtime_free(rt);
	char buf[4];
	cr_assert_eq(zk_send_zc(0, buf, 4, 0), -EPERM);
}
