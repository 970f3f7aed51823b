/* tests/test_cov2_net.c — net.h contracts the network suites leave out: a
 * stream and an acceptor with a task already receiving (-EBUSY for a second
 * receiver and for close), that receiver cancelled (-ECANCELED, and data
 * that arrives afterwards is still delivered), their calls from a plain
 * thread (-EPERM); TCP keepalive values the kernel refuses; a graceful
 * close whose peer never closes (-ETIMEDOUT); connect and accept from a
 * plain thread; the runtime's configuration and ZK_BACKEND errors; the
 * channel calls that take a NULL or report the capacity; a connection pool
 * reaped from a plain thread (idle timeout passed), with a connect timeout
 * set, and a checkout from a plain thread (-EPERM); a task already
 * cancelled calling zk_stream_recv and zk_acceptor_next (-ECANCELED at
 * once, nothing armed: both work afterwards).
 *
 * Socket scenarios run on the setup's backend and on an explicit epoll
 * runtime, one worker each so that "the other task has parked" follows from
 * it having run. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov2_net, .timeout = 60);

#define MS ZK_NSEC_PER_MSEC

static zk_runtime_t *runtime_on(zk_backend_kind_t kind, unsigned workers)
{
	zk_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = workers;
	cfg.backend = kind;
	zk_runtime_t *rt = NULL;
	int r = zk_runtime_create(&rt, &cfg);
	cr_assert_eq(r, 0, "zk_runtime_create(backend=%d) = %d", (int)kind, r);
	return rt;
}

static void on_both(zk_task_fn fn, void *arg)
{
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		zk_runtime_t *rt = runtime_on(kinds[i], 1);
		zt_run(rt, fn, arg);
		zk_runtime_free(rt);
	}
}

static bool tcp_pair(int fds[2])
{
	int lfd = zk_tcp_listen("127.0.0.1", 0, 4);
	ZT_CHECK(lfd >= 0);
	if (lfd < 0)
		return false;
	fds[0] = zk_tcp_connect("127.0.0.1", (uint16_t)zk_socket_port(lfd));
	ZT_CHECK(fds[0] >= 0);
	fds[1] = zk_accept(lfd, NULL, NULL);
	ZT_CHECK(fds[1] >= 0);
	zk_close(lfd);
	return fds[0] >= 0 && fds[1] >= 0;
}

/* ---- streams ---------------------------------------------------------------------------- */

struct srecv {
	zk_stream_t *s;
	ssize_t res;
	atomic_long in;
};

static void *stream_receiver(void *arg)
{
	struct srecv *r = arg;
	zk_rbuf_t rb;
	atomic_store(&r->in, 1);
	r->res = zk_stream_recv(r->s, &rb);
	if (r->res > 0)
		zk_rbuf_release(&rb);
	return NULL;
}

static void *stream_busy_and_cancel(void *arg)
{
	zk_stream_t **keep = arg;
	int fds[2];
	if (!tcp_pair(fds))
		return NULL;
	zk_stream_t *s = NULL;
	ZT_CHECK_EQ(zk_stream_open(&s, fds[1]), 0);
	struct srecv r = {.s = s, .res = 99};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, stream_receiver, &r), 0);
	/* One worker: once it said it is in, it has parked in the receive. */
	ZT_CHECK(zt_task_wait_at_least(&r.in, 1, 10000));
	zk_rbuf_t rb;
	memset(&rb, 0x5a, sizeof(rb));
	ZT_CHECK_EQ(zk_stream_recv(s, &rb), -EBUSY);
	ZT_CHECK_EQ(zk_stream_close(s), -EBUSY);
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(r.res, -ECANCELED);
	/* Data sent after the cancel still arrives, in order. */
	ZT_CHECK_EQ(zk_send_all(fds[0], "hello", 5), 5);
	char got[8] = {0};
	size_t have = 0;
	while (have < 5) {
		ssize_t n = zk_stream_recv(s, &rb);
		ZT_CHECK(n > 0);
		if (n <= 0)
			break;
		memcpy(got + have, rb.data, (size_t)n);
		have += (size_t)n;
		zk_rbuf_release(&rb);
	}
	ZT_CHECK(memcmp(got, "hello", 5) == 0);
	zk_close(fds[0]);
	if (keep) {
		/* Handed to the test's thread (which is no task), closed later. */
		*keep = s;
		return (void *)(intptr_t)fds[1];
	}
	ZT_CHECK_EQ(zk_stream_recv(s, &rb), 0); /* the peer closed */
	ZT_CHECK_EQ(zk_stream_close(s), 0);
	zk_close(fds[1]);
	return NULL;
}

Test(cov2_net, stream_busy_cancelled_receiver)
{
	on_both(stream_busy_and_cancel, NULL);
}

static void *close_stream(void *arg)
{
	ZT_CHECK_EQ(zk_stream_close(arg), 0);
	return NULL;
}

Test(cov2_net, stream_calls_outside_a_task)
{
	zk_runtime_t *rt = runtime_on(ZK_BACKEND_DEFAULT, 1);
	zk_stream_t *s = NULL;
	int fd = (int)(intptr_t)zt_run(rt, stream_busy_and_cancel, &s);
	cr_assert_not_null(s);
	zk_rbuf_t rb;
	cr_assert_eq(zk_stream_recv(s, &rb), -EPERM);
	cr_assert_eq(zk_stream_close(s), -EPERM);
	struct zk_stream_stats st;
	cr_assert_eq(zk_stream_stats(s, &st), 0);
	cr_assert_geq(st.pbuf + st.copied, 1);
	zt_run(rt, close_stream, s);
	close(fd);
	zk_runtime_free(rt);
}

/* ---- acceptors -------------------------------------------------------------------------- */

struct arecv {
	zk_acceptor_t *a;
	int res;
	atomic_long in;
};

static void *acceptor_waiter(void *arg)
{
	struct arecv *r = arg;
	atomic_store(&r->in, 1);
	r->res = zk_acceptor_next(r->a);
	return NULL;
}

static void *acceptor_busy_and_cancel(void *arg)
{
	zk_acceptor_t **keep = arg;
	int lfd = zk_tcp_listen("127.0.0.1", 0, 8);
	ZT_CHECK(lfd >= 0);
	zk_acceptor_t *a = NULL;
	ZT_CHECK_EQ(zk_acceptor_open(&a, lfd), 0);
	struct arecv r = {.a = a, .res = 99};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, acceptor_waiter, &r), 0);
	ZT_CHECK(zt_task_wait_at_least(&r.in, 1, 10000));
	ZT_CHECK_EQ(zk_acceptor_next(a), -EBUSY);
	ZT_CHECK_EQ(zk_acceptor_close(a), -EBUSY);
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK(r.res == -ECANCELED || r.res >= 0);
	if (r.res >= 0)
		zk_close(r.res);
	/* A connection made after the cancel is accepted. */
	int c = zk_tcp_connect("127.0.0.1", (uint16_t)zk_socket_port(lfd));
	ZT_CHECK(c >= 0);
	int s = zk_acceptor_next(a);
	ZT_CHECK(s >= 0);
	ZT_CHECK_EQ(zk_send_all(c, "z", 1), 1);
	char b = 0;
	ZT_CHECK_EQ(zk_recv_exact(s, &b, 1), 1);
	ZT_CHECK_EQ(b, 'z');
	zk_close(s);
	zk_close(c);
	if (keep) {
		*keep = a;
		return (void *)(intptr_t)lfd;
	}
	ZT_CHECK_EQ(zk_acceptor_close(a), 0);
	zk_close(lfd);
	return NULL;
}

Test(cov2_net, acceptor_busy_cancelled_waiter)
{
	on_both(acceptor_busy_and_cancel, NULL);
}

static void *close_acceptor(void *arg)
{
	ZT_CHECK_EQ(zk_acceptor_close(arg), 0);
	return NULL;
}

Test(cov2_net, acceptor_calls_outside_a_task)
{
	zk_runtime_t *rt = runtime_on(ZK_BACKEND_DEFAULT, 1);
	zk_acceptor_t *a = NULL;
	int lfd = (int)(intptr_t)zt_run(rt, acceptor_busy_and_cancel, &a);
	cr_assert_not_null(a);
	cr_assert_eq(zk_acceptor_next(a), -EPERM);
	cr_assert_eq(zk_acceptor_close(a), -EPERM);
	zt_run(rt, close_acceptor, a);
	close(lfd);
	zk_runtime_free(rt);
}

/* ---- TCP options and graceful close ------------------------------------------------------ */

static void *keepalive_refused(void *arg)
{
	(void)arg;
	int fds[2];
	if (!tcp_pair(fds))
		return NULL;
	/* Linux: TCP_KEEPIDLE and TCP_KEEPINTVL at most 32767 s, TCP_KEEPCNT
	 * at most 127. */
	ZT_CHECK_EQ(zk_tcp_keepalive(fds[0], 40000, 0, 0), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_keepalive(fds[0], 60, 40000, 0), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_keepalive(fds[0], 60, 10, 1000), -EINVAL);
	ZT_CHECK_EQ(zk_tcp_keepalive(fds[0], 60, 10, 5), 0);
	ZT_CHECK_EQ(zk_tcp_keepalive(fds[0], 0, 0, 0), 0);
	/* A UDP socket is no TCP socket. */
	int u = zk_udp_bind("127.0.0.1", 0, 0);
	ZT_CHECK(u >= 0);
	ZT_CHECK_EQ(zk_tcp_nodelay(u, true), -EOPNOTSUPP);
	ZT_CHECK_EQ(zk_tcp_keepalive(u, 60, 10, 5), -EOPNOTSUPP);
	zk_close(u);
	/* A graceful close whose peer neither sends nor closes times out. */
	ZT_CHECK_EQ(zk_close_graceful(fds[0], 20 * MS), -ETIMEDOUT);
	zk_close(fds[1]);
	return NULL;
}

Test(cov2_net, keepalive_refused_and_graceful_close_timeout)
{
	on_both(keepalive_refused, NULL);
}

Test(cov2_net, socket_calls_from_a_plain_thread)
{
	cr_assert_eq(zk_tcp_connect("127.0.0.1", 9), -EPERM);
	cr_assert_eq(zk_unix_connect("/nonexistent-zokio.sock"), -EPERM);
	struct sockaddr_in sa;
	cr_assert_eq(zk_accept(0, NULL, (socklen_t *)&sa), -EPERM);
	cr_assert_eq(zk_close_graceful(0, 0), -EPERM);
}

/* ---- runtime configuration and channels ---------------------------------------------------- */

Test(cov2_net, runtime_config_errors)
{
	zk_runtime_t *rt = (zk_runtime_t *)1;
	zk_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.stack_guard = ZK_GUARD_NEVER + 1;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), -EINVAL);
	memset(&cfg, 0, sizeof(cfg));
	cfg.backend = ZK_BACKEND_IOCP; /* Windows only */
	cr_assert_eq(zk_runtime_create(&rt, &cfg), -EINVAL);
	memset(&cfg, 0, sizeof(cfg));
	cfg.ring_entries = 100; /* not a power of two */
	cr_assert_eq(zk_runtime_create(&rt, &cfg), -EINVAL);
	setenv("ZK_BACKEND", "no-such-backend", 1);
	cr_assert_eq(zk_runtime_create(&rt, NULL), -EINVAL);
	/* An explicit backend does not read the variable. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 1;
	cfg.backend = ZK_BACKEND_EPOLL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	cr_assert_str_eq(zk_runtime_backend(rt), "epoll");
	zk_runtime_free(rt);
	unsetenv("ZK_BACKEND");
}

Test(cov2_net, channel_nulls_and_capacity)
{
	cr_assert_eq(zk_chan_capacity(NULL), 0);
	cr_assert_eq(zk_chan_sender_add(NULL), -EINVAL);
	cr_assert_eq(zk_chan_sender_drop(NULL), -EINVAL);
	cr_assert_eq(zk_chan_len(NULL), 0);
	zk_sem_t sem;
	cr_assert_eq(zk_sem_init(&sem, 0), 0);
	cr_assert_eq(zk_sem_try_acquire(&sem, 0), 0); /* nothing asked: nothing to wait for */
	cr_assert_eq(zk_sem_try_acquire(&sem, 1), -EAGAIN);
	zk_sem_destroy(&sem);
	zk_chan_t *ch = NULL;
	cr_assert_eq(zk_chan_create(&ch, 5), 0);
	cr_assert_eq(zk_chan_capacity(ch), 5);
	cr_assert_eq(zk_chan_len(ch), 0);
	cr_assert_eq(zk_chan_try_send(ch, (void *)1), 0);
	cr_assert_eq(zk_chan_len(ch), 1);
	zk_chan_free(ch);
}

/* ---- the connection pool ------------------------------------------------------------------ */

struct pool_run {
	zk_pool_t *p;
	int port;
};

static void *pool_get_put(void *arg)
{
	struct pool_run *pr = arg;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", pr->port);
	int fd = zk_pool_get(pr->p, addr);
	ZT_CHECK(fd >= 0);
	if (fd >= 0)
		ZT_CHECK_EQ(zk_pool_put(pr->p, fd, true), 0);
	return NULL;
}

/* An idle timeout of 1 ns: the connection put back is past it at once,
 * and a reap from a plain thread closes it (with close(2): no task). */
Test(cov2_net, pool_reap_from_a_plain_thread_and_connect_timeout)
{
	struct zk_pool_config cfg = {.idle_timeout_ns = 1,
				     .connect_timeout_ns = 5 * ZK_NSEC_PER_SEC};
	struct pool_run pr;
	cr_assert_eq(zk_pool_create(&pr.p, &cfg), 0);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(lfd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 8), 0);
	pr.port = zk_socket_port(lfd);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, pool_get_put, &pr);
	struct zk_pool_stats st;
	cr_assert_eq(zk_pool_stats(pr.p, &st), 0);
	cr_assert_eq(st.connects, 1);
	cr_assert_eq(st.idle, 1);
	cr_assert_eq(zk_pool_reap(pr.p), 1);
	cr_assert_eq(zk_pool_stats(pr.p, &st), 0);
	cr_assert_eq(st.idle, 0);
	cr_assert_eq(st.expired, 1);
	/* From a plain thread a checkout is refused. */
	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(zk_addr_ip("127.0.0.1", (uint16_t)pr.port, &ss, &len), 0);
	cr_assert_eq(zk_pool_get_addr(pr.p, (struct sockaddr *)&ss, len), -EPERM);
	cr_assert_eq(zk_pool_free(pr.p), 0);
	zk_runtime_free(rt);
	close(lfd);
}

/* ---- calls made by a task that is already cancelled -------------------------------------------- */

struct late {
	zk_notify_t n;
	zk_stream_t *s;
	zk_acceptor_t *a;
	int wait_res;
	ssize_t stream_res;
	int acc_res;
};

static void *cancelled_then_calls(void *arg)
{
	struct late *l = arg;
	l->wait_res = zk_notify_wait(&l->n); /* ends with our cancel */
	zk_rbuf_t rb;
	l->stream_res = zk_stream_recv(l->s, &rb);
	l->acc_res = zk_acceptor_next(l->a);
	return NULL;
}

static void *cancelled_task_main(void *arg)
{
	(void)arg;
	int fds[2];
	if (!tcp_pair(fds))
		return NULL;
	int lfd = zk_tcp_listen("127.0.0.1", 0, 4);
	ZT_CHECK(lfd >= 0);
	struct late l = {.wait_res = 99, .stream_res = 99, .acc_res = 99};
	ZT_CHECK_EQ(zk_notify_init(&l.n), 0);
	ZT_CHECK_EQ(zk_stream_open(&l.s, fds[1]), 0);
	ZT_CHECK_EQ(zk_acceptor_open(&l.a, lfd), 0);
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, cancelled_then_calls, &l), 0);
	zk_yield();
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(l.wait_res, -ECANCELED);
	ZT_CHECK_EQ(l.stream_res, -ECANCELED);
	ZT_CHECK_EQ(l.acc_res, -ECANCELED);
	/* Nothing was armed or lost: both still work. */
	ZT_CHECK_EQ(zk_send_all(fds[0], "q", 1), 1);
	zk_rbuf_t rb;
	ZT_CHECK_EQ(zk_stream_recv(l.s, &rb), 1);
	ZT_CHECK_EQ(rb.data[0], 'q');
	zk_rbuf_release(&rb);
	int c = zk_tcp_connect("127.0.0.1", (uint16_t)zk_socket_port(lfd));
	ZT_CHECK(c >= 0);
	int s = zk_acceptor_next(l.a);
	ZT_CHECK(s >= 0);
	zk_close(s);
	zk_close(c);
	ZT_CHECK_EQ(zk_stream_close(l.s), 0);
	ZT_CHECK_EQ(zk_acceptor_close(l.a), 0);
	zk_notify_destroy(&l.n);
	zk_close(lfd);
	zk_close(fds[0]);
	zk_close(fds[1]);
	return NULL;
}

Test(cov2_net, a_cancelled_task_gets_ecanceled_from_stream_and_acceptor)
{
	on_both(cancelled_task_main, NULL);
}
