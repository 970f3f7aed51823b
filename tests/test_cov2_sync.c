/* tests/test_cov2_sync.c — small contracts no suite checks: the NULL
 * arguments of broadcast, watch and notify calls (-EINVAL, or nothing for
 * the frees); zk_sleep_until with a deadline ahead, behind, a year away
 * (cancelled) and outside a task; histogram corners (a bucket index past
 * the end, percentile 0 of one value, percentiles clamped to min and max);
 * address formatting of short and over-long addresses; a UDP "connect" to
 * the broadcast address without SO_BROADCAST; zk_signal_wait on the signals
 * glibc reserves; 1 ns timeouts of notify, channel and semaphore waits in a
 * task and on a foreign thread; a select reporting a broadcast receiver's
 * missed count, selects with an unknown kind or a NULL object, and
 * zk_timeout_call's argument errors; NULL task handles, and a join from a
 * plain thread (-EPERM, the handle still joinable from a task). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "helpers.h"

TestSuite(cov2_sync, .timeout = 60);

#define MS ZK_NSEC_PER_MSEC

Test(cov2_sync, broadcast_watch_notify_nulls)
{
	zk_bcast_t *b = NULL;
	cr_assert_eq(zk_bcast_create(NULL, 4), -EINVAL);
	cr_assert_eq(zk_bcast_create(&b, 0), -EINVAL);
	zk_bcast_free(NULL);
	cr_assert_eq(zk_bcast_send(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_bcast_close(NULL), -EINVAL);
	zk_bcast_rx_t rx;
	cr_assert_eq(zk_bcast_subscribe(NULL, &rx), -EINVAL);
	cr_assert_eq(zk_bcast_unsubscribe(NULL), -EINVAL);
	void *v;
	uint64_t missed;
	cr_assert_eq(zk_bcast_try_recv(NULL, &v, &missed), -EINVAL);

	zk_watch_t *w = NULL;
	cr_assert_eq(zk_watch_create(NULL, NULL), -EINVAL);
	zk_watch_free(NULL);
	cr_assert_eq(zk_watch_send(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_watch_close(NULL), -EINVAL);
	uint64_t ver = 77;
	cr_assert_null(zk_watch_get(NULL, &ver));
	zk_watch_rx_t wrx;
	cr_assert_eq(zk_watch_subscribe(NULL, &wrx), -EINVAL);
	cr_assert_eq(zk_watch_create(&w, (void *)3), 0);
	cr_assert_eq(zk_watch_subscribe(w, NULL), -EINVAL);
	cr_assert_eq(zk_watch_changed_timeout(NULL, &v, MS), -EINVAL);
	zk_watch_free(w);

	cr_assert_eq(zk_notify_init(NULL), -EINVAL);
	cr_assert_eq(zk_notify_destroy(NULL), -EINVAL);
	cr_assert_eq(zk_notify_all(NULL), -EINVAL);
	cr_assert_eq(zk_notify_wait_timeout(NULL, MS), -EINVAL);
	(void)b;
}

struct until {
	uint64_t deadline;
	int res;
};

static void *sleep_until_far(void *arg)
{
	struct until *u = arg;
	u->res = zk_sleep_until(u->deadline);
	return NULL;
}

static void *sleep_until_main(void *arg)
{
	(void)arg;
	uint64_t d = zk_now_ns() + 3 * MS;
	ZT_CHECK_EQ(zk_sleep_until(d), 0);
	ZT_CHECK(zk_now_ns() >= d);
	/* In the past: a yield. */
	ZT_CHECK_EQ(zk_sleep_until(zk_now_ns() - 1000), 0);
	ZT_CHECK_EQ(zk_sleep_until(0), 0);
	/* A year away: beyond every level of the timer wheel; cancelled. */
	struct until u = {.deadline = zk_now_ns() + 365ull * 24 * 3600 * ZK_NSEC_PER_SEC,
			  .res = 99};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, sleep_until_far, &u), 0);
	zk_yield();
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(u.res, -ECANCELED);
	return NULL;
}

Test(cov2_sync, sleep_until)
{
	cr_assert_eq(zk_sleep_until(zk_now_ns() + MS), -EPERM);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, sleep_until_main, NULL);
	zk_runtime_free(rt);
}

Test(cov2_sync, histogram_corners)
{
	/* Past the last bucket: the last bucket's bounds. */
	cr_assert_eq(zk_histogram_bucket_low(ZK_HIST_BUCKETS + 10),
		     zk_histogram_bucket_low(ZK_HIST_BUCKETS - 1));
	cr_assert_geq(zk_histogram_bucket_high(ZK_HIST_BUCKETS - 1),
		      zk_histogram_bucket_low(ZK_HIST_BUCKETS - 1));
	zk_histogram_t *h = calloc(1, sizeof(*h));
	cr_assert_not_null(h);
	zk_histogram_record(h, 1000003);
	/* p = 0 is the first value; every percentile of one value is it
	 * (clamped to min and max, whatever its bucket's bounds). */
	cr_assert_eq(zk_histogram_percentile(h, 0.0), 1000003);
	cr_assert_eq(zk_histogram_percentile(h, 50.0), 1000003);
	cr_assert_eq(zk_histogram_percentile(h, 100.0), 1000003);
	zk_histogram_record(h, 5);
	cr_assert_eq(zk_histogram_percentile(h, 1.0), 5);
	cr_assert_eq(zk_histogram_percentile(h, 99.0), 1000003);
	/* Counts that disagree with the buckets (a racy snapshot): the max. */
	h->count += 10;
	cr_assert_eq(zk_histogram_percentile(h, 100.0), 1000003);
	free(h);
}

Test(cov2_sync, address_format_lengths)
{
	char buf[ZK_ADDR_STRLEN];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
	sin.sin_addr.s_addr = htonl(0x7f000001);
	cr_assert_eq(zk_addr_format((struct sockaddr *)&sin, sizeof(sin) - 1, buf, sizeof(buf)),
		     -EINVAL);
	cr_assert_gt(zk_addr_format((struct sockaddr *)&sin, sizeof(sin), buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "127.0.0.1:80");
	struct sockaddr_storage ss;
	socklen_t len = 0;
	cr_assert_eq(zk_addr_ip("127.0.0.1", 1, NULL, &len), -EINVAL);
	cr_assert_eq(zk_addr_ip("127.0.0.1", 1, &ss, NULL), -EINVAL);
	/* A Unix address longer than sun_path: what fits. */
	struct {
		struct sockaddr_un sun;
		char extra[64];
	} big;
	memset(&big, 'p', sizeof(big));
	big.sun.sun_family = AF_UNIX;
	big.sun.sun_path[0] = '/';
	int n = zk_addr_format((struct sockaddr *)&big, (socklen_t)sizeof(big), buf, sizeof(buf));
	cr_assert_geq(n, 1);
	cr_assert_leq((size_t)n, sizeof(big.sun.sun_path));
	cr_assert_eq(buf[0], '/');
}

static void *udp_broadcast(void *arg)
{
	(void)arg;
	/* Without SO_BROADCAST, Linux refuses a datagram connect to the
	 * broadcast address. */
	ZT_CHECK_EQ(zk_udp_connect("255.255.255.255", 9), -EACCES);
	int fd = zk_udp_connect("127.0.0.1", 9);
	ZT_CHECK(fd >= 0);
	zk_close(fd);
	return NULL;
}

Test(cov2_sync, udp_connect_to_broadcast_is_refused)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, udp_broadcast, NULL);
	zk_runtime_free(rt);
}

static void *reserved_signals(void *arg)
{
	(void)arg;
	/* glibc keeps 32 and 33 for itself (thread cancellation, setxid):
	 * sigaction refuses them, and so does the wait. */
	ZT_CHECK_EQ(zk_signal_wait(32), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(33), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(0), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(9), -EINVAL); /* SIGKILL */
	return NULL;
}

Test(cov2_sync, signals_glibc_keeps_cannot_be_waited_for)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, reserved_signals, NULL);
	zk_runtime_free(rt);
}

/* ---- timeouts that have passed before the wait begins ----------------------------------------- */

static void *one_ns_timeouts(void *arg)
{
	(void)arg;
	zk_notify_t n;
	ZT_CHECK_EQ(zk_notify_init(&n), 0);
	zk_chan_t *ch = NULL;
	ZT_CHECK_EQ(zk_chan_create(&ch, 2), 0);
	zk_sem_t s;
	ZT_CHECK_EQ(zk_sem_init(&s, 0), 0);
	void *v = NULL;
	for (int i = 0; i < 3; i++) {
		ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 1), -ETIMEDOUT);
		ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 1), -ETIMEDOUT);
		ZT_CHECK_EQ(zk_sem_acquire_timeout(&s, 1, 1), -ETIMEDOUT);
	}
	/* Still usable afterwards. */
	ZT_CHECK_EQ(zk_chan_try_send(ch, (void *)9), 0);
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 1), 0);
	ZT_CHECK_EQ((intptr_t)v, 9);
	ZT_CHECK_EQ(zk_sem_release(&s, 1), 0);
	ZT_CHECK_EQ(zk_sem_acquire_timeout(&s, 1, 1), 0);
	zk_sem_destroy(&s);
	zk_chan_free(ch);
	zk_notify_destroy(&n);
	return NULL;
}

Test(cov2_sync, a_one_nanosecond_timeout_times_out_in_a_task_and_on_a_thread)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, one_ns_timeouts, NULL);
	zk_runtime_free(rt);
	/* The same on a foreign thread (it blocks on a condition variable). */
	one_ns_timeouts(NULL);
	zt_assert_no_failures();
	zk_chan_t *ch = NULL;
	cr_assert_eq(zk_chan_create(&ch, 1), 0);
	void *v;
	cr_assert_eq(zk_chan_recv_timeout(ch, &v, 2 * MS), -ETIMEDOUT);
	zk_chan_free(ch);
}

/* ---- select corners ---------------------------------------------------------------------------- */

static void *select_corners(void *arg)
{
	(void)arg;
	zk_bcast_t *b = NULL;
	ZT_CHECK_EQ(zk_bcast_create(&b, 2), 0);
	zk_bcast_rx_t rx;
	ZT_CHECK_EQ(zk_bcast_subscribe(b, &rx), 0);
	for (intptr_t i = 1; i <= 5; i++)
		ZT_CHECK_EQ(zk_bcast_send(b, (void *)i), 1);
	/* rx fell three messages behind: the select reports how many. */
	zk_sel_t ops[2] = {{.kind = ZK_SEL_NONE}, {.kind = ZK_SEL_BCAST_RECV, .obj = &rx}};
	ZT_CHECK_EQ(zk_select(ops, 2, 0), 1);
	ZT_CHECK_EQ(ops[1].res, -EOVERFLOW);
	ZT_CHECK_EQ(ops[1].n, 3);
	ops[1].n = 0;
	ZT_CHECK_EQ(zk_select(ops, 2, 0), 1);
	ZT_CHECK_EQ(ops[1].res, 0);
	ZT_CHECK_EQ((intptr_t)ops[1].value, 4);
	zk_bcast_unsubscribe(&rx);
	zk_bcast_free(b);

	/* A send to a closed bounded channel is ready at once: -EPIPE. */
	zk_chan_t *ch = NULL;
	ZT_CHECK_EQ(zk_chan_create(&ch, 1), 0);
	ZT_CHECK_EQ(zk_chan_close(ch), 0);
	zk_sel_t snd = {.kind = ZK_SEL_SEND, .obj = ch, .value = (void *)1};
	ZT_CHECK_EQ(zk_select(&snd, 1, ZK_FOREVER), 0);
	ZT_CHECK_EQ(snd.res, -EPIPE);
	zk_chan_free(ch);

	/* An unknown kind, a NULL object: -EINVAL from both calls. */
	zk_sel_t bad = {.kind = (zk_sel_kind_t)99, .obj = &rx};
	ZT_CHECK_EQ(zk_select(&bad, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_select_all(&bad, 1, 0), -EINVAL);
	zk_sel_t nul = {.kind = ZK_SEL_NOTIFY, .obj = NULL};
	ZT_CHECK_EQ(zk_select(&nul, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_select_all(&nul, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_timeout_call(MS, NULL, NULL, NULL), -EINVAL);
	return NULL;
}

static void *never_called(void *arg)
{
	return arg;
}

Test(cov2_sync, select_overflow_count_and_invalid_ops)
{
	cr_assert_eq(zk_timeout_call(MS, never_called, NULL, NULL), -EPERM);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, select_corners, NULL);
	zk_runtime_free(rt);
}

/* ---- task handles -------------------------------------------------------------------------------- */

static void *ret_arg(void *arg)
{
	return arg;
}

static void *join_it(void *arg)
{
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(arg, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, 42);
	return NULL;
}

Test(cov2_sync, task_handle_errors)
{
	cr_assert_eq(zk_join(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_detach(NULL), -EINVAL);
	cr_assert_eq(zk_cancel(NULL), -EINVAL);
	zk_runtime_t *rt = zt_runtime(1);
	zk_task_t *t = NULL;
	cr_assert_eq(zk_spawn_on(rt, &t, ret_arg, (void *)42), 0);
	/* Outside a task: -EPERM, and the handle stays valid. */
	cr_assert_eq(zk_join(t, NULL), -EPERM);
	zt_run(rt, join_it, t);
	zk_runtime_free(rt);
}
