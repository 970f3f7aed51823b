/* tests/test_net_stream.c — zk_stream: receives into provided buffers
 * (io_uring buffer ring + multishot recv) or pooled heap buffers (epoll):
 * bytes intact end to end, the -ENOBUFS replenish path, many idle streams
 * sharing one worker's 256 buffers, EOF, reset, cancel and close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(net_stream, .timeout = 120);

/* Provided buffers are expected on io_uring with kernel 6.0+ (multishot
 * recv; buffer rings since 5.19). */
static bool expect_pbuf(void)
{
	if (!zt_backend_is_uring() || !zt_uring_feature("pbuf"))
		return false;
	struct utsname u;
	int maj = 0, min = 0;
	if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &maj, &min) != 2)
		return false;
	return maj > 6 || (maj == 6 && min >= 0);
}

static void tcp_pair(int *a, int *b)
{
	int lfd = zk_tcp_listen("127.0.0.1", 0, 4);
	ZT_CHECK(lfd >= 0);
	int sv[2] = {-1, -1};
	sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_storage ss;
	socklen_t len;
	ZT_CHECK_EQ(zk_addr_ip("127.0.0.1", (uint16_t)zk_socket_port(lfd), &ss, &len), 0);
	ZT_CHECK_EQ(zk_connect(sv[0], (struct sockaddr *)&ss, len), 0);
	sv[1] = zk_accept(lfd, NULL, NULL);
	ZT_CHECK(sv[1] >= 0);
	zk_close(lfd);
	*a = sv[0];
	*b = sv[1];
}

/* ---- bytes intact ------------------------------------------------------------------------ */

struct bulk {
	int a, b;
	size_t len;
	char *data;
};

static void *bulk_send(void *arg)
{
	struct bulk *k = arg;
	ZT_CHECK_EQ(zk_send_all(k->a, k->data, k->len), k->len);
	ZT_CHECK_EQ(zk_shutdown(k->a, SHUT_WR), 0);
	return NULL;
}

static void *stream_bulk(void *arg)
{
	struct bulk *k = arg;
	tcp_pair(&k->a, &k->b);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, bulk_send, k), 0);
	zk_stream_t *s;
	ZT_CHECK_EQ(zk_stream_open(&s, k->b), 0);
	size_t got = 0;
	bool ok = true;
	for (;;) {
		zk_rbuf_t rb;
		ssize_t n = zk_stream_recv(s, &rb);
		ZT_CHECK(n >= 0);
		if (n <= 0)
			break;
		ZT_CHECK_EQ(rb.len, n);
		if (got + (size_t)n > k->len || memcmp(rb.data, k->data + got, (size_t)n) != 0)
			ok = false;
		got += (size_t)n;
		zk_rbuf_release(&rb);
		zk_rbuf_release(&rb); /* idempotent */
	}
	ZT_CHECK(ok);
	ZT_CHECK_EQ(got, k->len);
	zk_rbuf_t rb;
	ZT_CHECK_EQ(zk_stream_recv(s, &rb), 0); /* stays at EOF */
	ZT_CHECK(rb.data == NULL && rb.len == 0);
	struct zk_stream_stats st;
	ZT_CHECK_EQ(zk_stream_stats(s, &st), 0);
	if (expect_pbuf())
		ZT_CHECK(st.pbuf > 0);
	else
		ZT_CHECK(st.copied > 0);
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(zk_close(k->a), 0);
	ZT_CHECK_EQ(zk_close(k->b), 0);
	return NULL;
}

Test(net_stream, sixteen_megabytes_arrive_intact_through_lent_buffers)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct bulk k = {.len = zt_scaled(16u << 20, 2u << 20)};
	k.data = malloc(k.len);
	zt_fill(k.data, k.len, 21);
	zt_run(rt, stream_bulk, &k);
	free(k.data);
	zk_runtime_free(rt);
}

/* ---- ENOBUFS ------------------------------------------------------------------------------- */

#define HOLD 400

/* One worker, so the stream always uses the same ring of 256 buffers. The
 * receiver holds the first HOLD buffers without giving any back: the
 * kernel runs out (-ENOBUFS ends the multishot), the stream keeps
 * receiving through heap buffers, and once everything is released the
 * provided-buffer path resumes. Every byte arrives, in order. */
static void *enobufs(void *arg)
{
	struct bulk *k = arg;
	tcp_pair(&k->a, &k->b);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, bulk_send, k), 0);
	zk_stream_t *s;
	ZT_CHECK_EQ(zk_stream_open(&s, k->b), 0);
	zk_rbuf_t *held = calloc(HOLD, sizeof(*held));
	unsigned nheld = 0;
	size_t got = 0;
	bool ok = true;
	struct zk_stream_stats at_release = {0};
	for (;;) {
		zk_rbuf_t rb;
		ssize_t n = zk_stream_recv(s, &rb);
		ZT_CHECK(n >= 0);
		if (n <= 0)
			break;
		if (got + (size_t)n > k->len || memcmp(rb.data, k->data + got, (size_t)n) != 0)
			ok = false;
		got += (size_t)n;
		if (nheld < HOLD) {
			held[nheld++] = rb;
			if (nheld == HOLD) {
				ZT_CHECK_EQ(zk_stream_stats(s, &at_release), 0);
				for (unsigned i = 0; i < HOLD; i++)
					zk_rbuf_release(&held[i]);
			}
		} else {
			zk_rbuf_release(&rb);
		}
	}
	ZT_CHECK(ok);
	ZT_CHECK_EQ(got, k->len);
	ZT_CHECK_EQ(nheld, HOLD);
	struct zk_stream_stats st;
	ZT_CHECK_EQ(zk_stream_stats(s, &st), 0);
	if (expect_pbuf()) {
		/* Ran out while holding, received anyway, and went back to
		 * provided buffers after the release. */
		ZT_CHECK(at_release.enobufs >= 1);
		ZT_CHECK(at_release.copied >= 1);
		ZT_CHECK(at_release.pbuf >= 256);
		ZT_CHECK(st.pbuf > at_release.pbuf);
	}
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	free(held);
	ZT_CHECK_EQ(zk_close(k->a), 0);
	ZT_CHECK_EQ(zk_close(k->b), 0);
	return NULL;
}

Test(net_stream, enobufs_is_survived_without_losing_data_and_replenished)
{
	zk_runtime_t *rt = zt_runtime(1);
	/* More than 256 x 16 KiB, so holding HOLD buffers must run the ring
	 * dry whatever sizes the receives have. */
	struct bulk k = {.len = 24u << 20};
	k.data = malloc(k.len);
	zt_fill(k.data, k.len, 22);
	zt_run(rt, enobufs, &k);
	free(k.data);
	zk_runtime_free(rt);
}

/* ---- many idle streams share the ring ------------------------------------------------------ */

struct idle {
	int fd;
	atomic_long *got;
	atomic_long *pbuf;
	atomic_long *armed;
};

static void *idle_reader(void *arg)
{
	struct idle *d = arg;
	zk_stream_t *s;
	ZT_CHECK_EQ(zk_stream_open(&s, d->fd), 0);
	atomic_fetch_add(d->armed, 1);
	zk_rbuf_t rb;
	ssize_t n = zk_stream_recv(s, &rb);
	ZT_CHECK_EQ(n, 4);
	if (n == 4) {
		uint32_t v;
		memcpy(&v, rb.data, 4);
		ZT_CHECK_EQ(v, (uint32_t)d->fd * 3u);
		atomic_fetch_add(d->got, 1);
	}
	zk_rbuf_release(&rb);
	struct zk_stream_stats st;
	zk_stream_stats(s, &st);
	atomic_fetch_add(d->pbuf, (long)st.pbuf);
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	return NULL;
}

static void *many_idle(void *arg)
{
	size_t n = (size_t)(uintptr_t)arg;
	int *a = calloc(n, sizeof(int)), *b = calloc(n, sizeof(int));
	struct idle *d = calloc(n, sizeof(*d));
	zk_task_t **h = calloc(n, sizeof(*h));
	atomic_long got = 0, pbuf = 0, armed = 0;
	for (size_t i = 0; i < n; i++) {
		int sv[2];
		ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		a[i] = sv[0];
		b[i] = sv[1];
		d[i] = (struct idle){b[i], &got, &pbuf, &armed};
		ZT_CHECK_EQ(zk_spawn(&h[i], idle_reader, &d[i]), 0);
	}
	/* Every reader is waiting, none has data: then each gets 4 bytes. */
	ZT_CHECK(zt_task_wait_at_least(&armed, (long)n, 30000));
	zk_sleep_ms(10);
	for (size_t i = 0; i < n; i++) {
		uint32_t v = (uint32_t)b[i] * 3u;
		ZT_CHECK_EQ(zk_send_all(a[i], &v, 4), 4);
	}
	for (size_t i = 0; i < n; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	ZT_CHECK_EQ(atomic_load(&got), (long)n);
	/* More receives were served from the two rings' 512 buffers than
	 * they hold: waiting streams do not pin one each. */
	if (expect_pbuf())
		ZT_CHECK(atomic_load(&pbuf) > 512);
	for (size_t i = 0; i < n; i++) {
		zk_close(a[i]);
		zk_close(b[i]);
	}
	free(a);
	free(b);
	free(d);
	free(h);
	return NULL;
}

Test(net_stream, thousands_of_idle_streams_share_the_buffer_rings)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, many_idle, (void *)(uintptr_t)zt_scaled(3000, 600));
	zk_runtime_free(rt);
}

/* ---- EOF, reset, cancel, close ------------------------------------------------------------- */

static void *edges(void *arg)
{
	(void)arg;
	zk_stream_t *s;
	zk_rbuf_t rb;
	ZT_CHECK_EQ(zk_stream_open(NULL, 3), -EINVAL);
	ZT_CHECK_EQ(zk_stream_open(&s, -1), -EINVAL);
	ZT_CHECK_EQ(zk_stream_recv(NULL, &rb), -EINVAL);
	ZT_CHECK_EQ(zk_stream_close(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_stream_stats(NULL, NULL), -EINVAL);
	zk_rbuf_release(NULL);

	/* Reset by the peer. */
	int a, b;
	tcp_pair(&a, &b);
	ZT_CHECK_EQ(zk_stream_open(&s, b), 0);
	ZT_CHECK_EQ(zk_send_all(a, "abc", 3), 3);
	ZT_CHECK_EQ(zk_stream_recv(s, &rb), 3);
	ZT_CHECK(memcmp(rb.data, "abc", 3) == 0);
	zk_rbuf_release(&rb);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	ZT_CHECK_EQ(setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	ZT_CHECK_EQ(zk_close(a), 0);
	ZT_CHECK_EQ(zk_stream_recv(s, &rb), -ECONNRESET);
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	ZT_CHECK_EQ(zk_close(b), 0);

	/* Data queued and never taken is given back by close. */
	tcp_pair(&a, &b);
	ZT_CHECK_EQ(zk_stream_open(&s, b), 0);
	ZT_CHECK_EQ(zk_send(a, "x", 1, 0), 1);
	ZT_CHECK_EQ(zk_stream_recv(s, &rb), 1);
	zk_rbuf_release(&rb);
	for (int i = 0; i < 50; i++)
		ZT_CHECK_EQ(zk_send(a, "y", 1, 0), 1);
	zk_sleep_ms(10);
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	/* A new stream on the same fd sees what the kernel had not
	 * delivered yet; nothing arrives twice (the old stream's data was
	 * consumed from the socket, so a fresh stream may see less). */
	ZT_CHECK_EQ(zk_stream_open(&s, b), 0);
	ZT_CHECK_EQ(zk_shutdown(a, SHUT_WR), 0);
	ssize_t n, total = 0;
	while ((n = zk_stream_recv(s, &rb)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			ZT_CHECK_EQ(rb.data[i], 'y');
		total += n;
		zk_rbuf_release(&rb);
	}
	ZT_CHECK_EQ(n, 0);
	ZT_CHECK(total <= 50);
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	ZT_CHECK_EQ(zk_close(a), 0);
	ZT_CHECK_EQ(zk_close(b), 0);
	return NULL;
}

Test(net_stream, reset_close_and_bad_arguments)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, edges, NULL);
	zk_runtime_free(rt);
	zk_stream_t *s;
	cr_assert_eq(zk_stream_open(&s, 0), -EPERM);
}

struct blocked {
	int fd;
	atomic_long ready, res, closed;
};

static void *recv_forever(void *arg)
{
	struct blocked *bl = arg;
	zk_stream_t *s;
	ZT_CHECK_EQ(zk_stream_open(&s, bl->fd), 0);
	atomic_store(&bl->ready, 1);
	zk_rbuf_t rb;
	atomic_store(&bl->res, zk_stream_recv(s, &rb));
	atomic_store(&bl->closed, zk_stream_close(s));
	return NULL;
}

static void *cancel_recv(void *arg)
{
	(void)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct blocked bl = {.fd = sv[1]};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, recv_forever, &bl), 0);
	ZT_CHECK(zt_task_wait_at_least(&bl.ready, 1, 10000));
	zk_sleep_ms(20);
	ZT_CHECK(!zk_task_done(h));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&bl.res), -ECANCELED);
	ZT_CHECK_EQ(atomic_load(&bl.closed), 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	return NULL;
}

Test(net_stream, cancel_wakes_a_task_blocked_in_stream_recv)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_recv, NULL);
	zk_runtime_free(rt);
}

/* ---- closing from whichever worker the task is on ------------------------------------------ */

/* The multishot op lives on the ring of the worker that armed it; the
 * task may have moved (stealing) by the time it closes, and the close then
 * goes through that worker's cancel inbox. Many rounds, each hopping
 * workers through joins, take both paths; each must end the op before the stream is freed
 * (ASan would see a completion touching freed memory). */
static void *sleeper(void *arg)
{
	(void)arg;
	zk_sleep_ms(1);
	return NULL;
}

/* Joining a task that another worker may have stolen: the join's wake-up
 * then resumes this task on that worker. */
static void hop(void)
{
	for (int i = 0; i < 2; i++) {
		zk_task_t *h;
		ZT_CHECK_EQ(zk_spawn(&h, sleeper, NULL), 0);
		zk_yield();
		ZT_CHECK_EQ(zk_join(h, NULL), 0);
	}
}

static void *close_rounds(void *arg)
{
	unsigned rounds = (unsigned)(uintptr_t)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	int lfd = zk_tcp_listen("127.0.0.1", 0, 64);
	ZT_CHECK(lfd >= 0);
	int port = zk_socket_port(lfd);
	for (unsigned r = 0; r < rounds; r++) {
		zk_stream_t *s;
		ZT_CHECK_EQ(zk_stream_open(&s, sv[1]), 0);
		ZT_CHECK_EQ(zk_send_all(sv[0], &r, sizeof(r)), sizeof(r));
		zk_rbuf_t rb;
		ZT_CHECK_EQ(zk_stream_recv(s, &rb), sizeof(r));
		unsigned v;
		memcpy(&v, rb.data, sizeof(v));
		ZT_CHECK_EQ(v, r);
		zk_rbuf_release(&rb);
		hop();
		ZT_CHECK_EQ(zk_stream_close(s), 0); /* the recv stays armed until here */

		zk_acceptor_t *a;
		ZT_CHECK_EQ(zk_acceptor_open(&a, lfd), 0);
		int c = zk_tcp_connect("127.0.0.1", (uint16_t)port);
		ZT_CHECK(c >= 0);
		int fd = zk_acceptor_next(a);
		ZT_CHECK(fd >= 0);
		hop();
		ZT_CHECK_EQ(zk_acceptor_close(a), 0);
		ZT_CHECK_EQ(zk_close(fd), 0);
		ZT_CHECK_EQ(zk_close(c), 0);
	}
	ZT_CHECK_EQ(zk_close(lfd), 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	return NULL;
}

Test(net_stream, streams_and_acceptors_close_cleanly_from_any_worker)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, close_rounds, (void *)(uintptr_t)zt_scaled(200, 40));
	zk_runtime_free(rt);
}

/* ---- a timeout around a receive ------------------------------------------------------------ */

struct timed {
	zk_stream_t *s;
	zk_rbuf_t rb;
	ssize_t n;
};

static void *timed_recv(void *arg)
{
	struct timed *t = arg;
	t->n = zk_stream_recv(t->s, &t->rb);
	return NULL;
}

static void *timeout_around_recv(void *arg)
{
	(void)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct timed t = {0};
	ZT_CHECK_EQ(zk_stream_open(&t.s, sv[1]), 0);
	/* Nothing comes: the receive is cancelled at the deadline. */
	ZT_CHECK_EQ(zk_timeout_call(20 * ZK_NSEC_PER_MSEC, timed_recv, &t, NULL), -ETIMEDOUT);
	ZT_CHECK_EQ(t.n, -ECANCELED);
	/* The stream goes on, and loses nothing. */
	uint32_t nums[100];
	for (uint32_t i = 0; i < 100; i++)
		nums[i] = i;
	ZT_CHECK_EQ(zk_send_all(sv[0], nums, sizeof(nums)), sizeof(nums));
	ZT_CHECK_EQ(zk_shutdown(sv[0], SHUT_WR), 0);
	uint32_t next = 0, v;
	char part[4];
	size_t have = 0;
	zk_rbuf_t rb;
	ssize_t n;
	while ((n = zk_stream_recv(t.s, &rb)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			part[have++] = rb.data[i];
			if (have == 4) {
				memcpy(&v, part, 4);
				ZT_CHECK_EQ(v, next);
				next++;
				have = 0;
			}
		}
		zk_rbuf_release(&rb);
	}
	ZT_CHECK_EQ(n, 0);
	ZT_CHECK_EQ(next, 100);
	ZT_CHECK_EQ(zk_stream_close(t.s), 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	return NULL;
}

Test(net_stream, timeout_call_bounds_a_receive_and_the_stream_goes_on)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, timeout_around_recv, NULL);
	zk_runtime_free(rt);
}
