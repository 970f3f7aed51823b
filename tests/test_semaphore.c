/* tests/test_semaphore.c — sync.h: the counting semaphore: n permits at a
 * time, strict FIFO, timeouts, cancel (a leaving head lets the queue move),
 * close, and permit conservation under a storm of acquires, releases,
 * timeouts and cancels. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "helpers.h"

TestSuite(semaphore, .timeout = 120);

#define MS ZK_NSEC_PER_MSEC

static void *basics(void *arg)
{
	(void)arg;
	zk_sem_t s;
	ZT_CHECK_EQ(zk_sem_init(&s, 3), 0);
	ZT_CHECK_EQ(zk_sem_available(&s), 3);
	ZT_CHECK_EQ(zk_sem_acquire(&s, 2), 0);
	ZT_CHECK_EQ(zk_sem_try_acquire(&s, 2), -EAGAIN);
	ZT_CHECK_EQ(zk_sem_try_acquire(&s, 1), 0);
	ZT_CHECK_EQ(zk_sem_acquire_timeout(&s, 1, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_sem_acquire(&s, 0), 0);
	ZT_CHECK_EQ(zk_sem_release(&s, 3), 0);
	ZT_CHECK_EQ(zk_sem_available(&s), 3);
	ZT_CHECK_EQ(zk_sem_release(&s, ZK_SEM_MAX_PERMITS), -EOVERFLOW);
	ZT_CHECK_EQ(zk_sem_acquire(&s, ZK_SEM_MAX_PERMITS + 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_init(&s, ZK_SEM_MAX_PERMITS + 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_close(&s), 0);
	ZT_CHECK_EQ(zk_sem_close(&s), -EALREADY);
	ZT_CHECK_EQ(zk_sem_acquire(&s, 1), -EPIPE);
	ZT_CHECK_EQ(zk_sem_try_acquire(&s, 1), -EPIPE);
	ZT_CHECK_EQ(zk_sem_release(&s, 1), 0);
	ZT_CHECK_EQ(zk_sem_destroy(&s), 0);
	zk_sem_t st = ZK_SEM_INITIALIZER(2);
	ZT_CHECK_EQ(zk_sem_acquire(&st, 2), 0);
	ZT_CHECK_EQ(zk_sem_release(&st, 2), 0);
	return NULL;
}

Test(semaphore, acquire_release_try_close_and_their_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, basics, NULL);
	zk_runtime_free(rt);
}

struct req {
	zk_sem_t *s;
	uint64_t n;
	uint64_t timeout_ns;
	atomic_long *queued;
	atomic_long *order;
	long got_at;
	atomic_int ret;
};

static void *acquirer(void *arg)
{
	struct req *q = arg;
	atomic_fetch_add(q->queued, 1);
	int r = q->timeout_ns ? zk_sem_acquire_timeout(q->s, q->n, q->timeout_ns)
			      : zk_sem_acquire(q->s, q->n);
	if (r == 0)
		q->got_at = atomic_fetch_add(q->order, 1);
	atomic_store(&q->ret, r);
	return NULL;
}

static void *strict_fifo(void *arg)
{
	(void)arg;
	zk_sem_t s;
	zk_sem_init(&s, 0);
	atomic_long queued = 0, order = 0;
	/* Queue: 5 permits, then 1, then 1. */
	struct req r[3] = {{.s = &s, .n = 5}, {.s = &s, .n = 1}, {.s = &s, .n = 1}};
	zk_task_t *h[3];
	for (int i = 0; i < 3; i++) {
		r[i].queued = &queued;
		r[i].order = &order;
		atomic_init(&r[i].ret, 1);
		ZT_CHECK_EQ(zk_spawn(&h[i], acquirer, &r[i]), 0);
		ZT_CHECK(zt_task_wait_at_least(&queued, i + 1, 10000));
		zk_sleep_ms(3);
	}
	/* 4 permits do not satisfy the head; the small ones behind it wait. */
	ZT_CHECK_EQ(zk_sem_release(&s, 4), 0);
	zk_sleep_ms(10);
	ZT_CHECK_EQ(atomic_load(&order), 0);
	ZT_CHECK_EQ(zk_sem_try_acquire(&s, 1), -EAGAIN); /* no barging either */
	ZT_CHECK_EQ(zk_sem_release(&s, 1), 0); /* 5: exactly the head's */
	ZT_CHECK_EQ(zk_join(h[0], NULL), 0);
	ZT_CHECK_EQ(atomic_load(&r[0].ret), 0);
	zk_sleep_ms(10);
	ZT_CHECK_EQ(atomic_load(&order), 1);
	ZT_CHECK_EQ(atomic_load(&r[1].ret), 1);
	ZT_CHECK_EQ(atomic_load(&r[2].ret), 1);
	ZT_CHECK_EQ(zk_sem_release(&s, 2), 0);
	for (int i = 1; i < 3; i++) {
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
		ZT_CHECK_EQ(atomic_load(&r[i].ret), 0);
	}
	ZT_CHECK_EQ(zk_sem_available(&s), 0);
	ZT_CHECK_EQ(zk_sem_destroy(&s), 0);
	return NULL;
}

Test(semaphore, a_large_request_at_the_head_is_not_overtaken)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, strict_fifo, NULL);
	zk_runtime_free(rt);
}

static void *leaving_head(void *arg)
{
	bool cancel = arg != NULL;
	zk_sem_t s;
	zk_sem_init(&s, 2);
	atomic_long queued = 0, order = 0;
	struct req big = {.s = &s, .n = 10, .queued = &queued, .order = &order,
			  .timeout_ns = cancel ? 0 : 30 * MS};
	struct req small = {.s = &s, .n = 2, .queued = &queued, .order = &order};
	atomic_init(&big.ret, 1);
	atomic_init(&small.ret, 1);
	zk_task_t *hb, *hs;
	ZT_CHECK_EQ(zk_spawn(&hb, acquirer, &big), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 1, 10000));
	zk_sleep_ms(3);
	ZT_CHECK_EQ(zk_spawn(&hs, acquirer, &small), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 2, 10000));
	zk_sleep_ms(3);
	ZT_CHECK_EQ(atomic_load(&small.ret), 1); /* behind the big one */
	if (cancel)
		ZT_CHECK_EQ(zk_cancel(hb), 0);
	ZT_CHECK_EQ(zk_join(hb, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&big.ret), cancel ? -ECANCELED : -ETIMEDOUT);
	/* The head left: the 2 permits it was blocking go to the next. */
	ZT_CHECK_EQ(zk_join(hs, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&small.ret), 0);
	ZT_CHECK_EQ(zk_sem_available(&s), 0);
	return NULL;
}

Test(semaphore, a_head_that_times_out_or_is_cancelled_lets_the_queue_move)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, leaving_head, NULL);
	zt_run(rt, leaving_head, (void *)1);
	zk_runtime_free(rt);
}

static void *close_wakes(void *arg)
{
	(void)arg;
	zk_sem_t s;
	zk_sem_init(&s, 0);
	atomic_long queued = 0, order = 0;
	struct req r = {.s = &s, .n = 1, .queued = &queued, .order = &order};
	atomic_init(&r.ret, 1);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, acquirer, &r), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 1, 10000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_sem_close(&s), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&r.ret), -EPIPE);
	return NULL;
}

Test(semaphore, close_wakes_waiters_with_epipe)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, close_wakes, NULL);
	zk_runtime_free(rt);
}

/* ---- conservation under a storm ---------------------------------------------------------- */

#define PERMITS 5

struct storm {
	zk_sem_t s;
	atomic_long held;     /* permits held right now */
	atomic_long over;     /* times held exceeded PERMITS */
	atomic_long ok, failed;
	size_t iters;
};

static void *storm_task(void *arg)
{
	struct storm *st = arg;
	uint64_t x = zk_task_id() * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < st->iters; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t n = 1 + x % 3;
		int r = (x >> 8) % 4 == 0 ? zk_sem_acquire_timeout(&st->s, n, (x >> 16) % 2 * MS)
					  : zk_sem_acquire(&st->s, n);
		if (r == -ECANCELED)
			return NULL;
		if (r != 0) {
			ZT_CHECK_EQ(r, -ETIMEDOUT);
			atomic_fetch_add(&st->failed, 1);
			continue;
		}
		if (atomic_fetch_add(&st->held, (long)n) + (long)n > PERMITS)
			atomic_fetch_add(&st->over, 1);
		if (i % 8 == 0)
			zk_yield();
		atomic_fetch_sub(&st->held, (long)n);
		ZT_CHECK_EQ(zk_sem_release(&st->s, n), 0);
		atomic_fetch_add(&st->ok, 1);
	}
	return NULL;
}

static void *foreign_storm(void *arg)
{
	struct storm *st = arg;
	for (size_t i = 0; i < st->iters / 4; i++) {
		if (zk_sem_acquire(&st->s, 2) != 0) {
			zt_fail(__FILE__, __LINE__, "foreign acquire");
			return NULL;
		}
		if (atomic_fetch_add(&st->held, 2) + 2 > PERMITS)
			atomic_fetch_add(&st->over, 1);
		atomic_fetch_sub(&st->held, 2);
		zk_sem_release(&st->s, 2);
	}
	return NULL;
}

static void *run_storm(void *arg)
{
	struct storm *st = arg;
	enum { N = 12 };
	zk_task_t *h[N];
	for (int i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], storm_task, st), 0);
	zk_sleep_ms(20);
	/* Cancel a few mid-flight. */
	for (int i = 0; i < N; i += 4)
		ZT_CHECK_EQ(zk_cancel(h[i]), 0);
	for (int i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(semaphore, permits_are_conserved_under_acquires_timeouts_and_cancels, .timeout = 300)
{
	struct storm st = {.iters = zt_scaled(20000, 2000)};
	zk_sem_init(&st.s, PERMITS);
	zk_runtime_t *rt = zt_runtime(4);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, foreign_storm, &st), 0);
	zt_run(rt, run_storm, &st);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	cr_assert_eq(atomic_load(&st.over), 0);
	cr_assert_eq(zk_sem_available(&st.s), PERMITS);
	cr_assert_gt(atomic_load(&st.ok), 0);
	cr_assert_eq(zk_sem_destroy(&st.s), 0);
	zk_runtime_free(rt);
}
