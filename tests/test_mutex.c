/* tests/test_mutex.c — sync.h: the async mutex and the rwlock: mutual
 * exclusion across workers and foreign threads, FIFO hand-off (no
 * barging), timeouts, cancel, and cancel racing the hand-off. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "race.h"

TestSuite(mutex, .timeout = 120);

#define MS ZK_NSEC_PER_MSEC

static double slack_ms(void)
{
	return zt_scale() < 1.0 ? 1500 : 500;
}

/* ---- basics ---------------------------------------------------------------------------- */

static void *basics(void *arg)
{
	(void)arg;
	zk_mutex_t m;
	ZT_CHECK_EQ(zk_mutex_init(&m), 0);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), -EPERM);
	ZT_CHECK_EQ(zk_mutex_lock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_trylock(&m), -EBUSY);
	ZT_CHECK_EQ(zk_mutex_destroy(&m), -EBUSY);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_trylock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_lock_timeout(&m, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_lock_timeout(&m, 0), 0);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_destroy(&m), 0);
	zk_mutex_t s = ZK_MUTEX_INITIALIZER;
	ZT_CHECK_EQ(zk_mutex_lock(&s), 0);
	ZT_CHECK_EQ(zk_mutex_unlock(&s), 0);
	ZT_CHECK_EQ(zk_mutex_lock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_mutex_unlock(NULL), -EINVAL);
	return NULL;
}

Test(mutex, lock_trylock_unlock_and_their_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, basics, NULL);
	zk_runtime_free(rt);
}

/* ---- mutual exclusion under contention ------------------------------------------------- */

struct shared {
	zk_mutex_t m;
	long counter;     /* plain: only touched under m */
	atomic_long inside;
	size_t iters;
};

static void *incrementer(void *arg)
{
	struct shared *s = arg;
	for (size_t i = 0; i < s->iters; i++) {
		ZT_CHECK_EQ(zk_mutex_lock(&s->m), 0);
		ZT_CHECK_EQ(atomic_fetch_add(&s->inside, 1), 0);
		long c = s->counter;
		if (i % 64 == 0)
			zk_yield(); /* held across a suspension */
		s->counter = c + 1;
		atomic_fetch_sub(&s->inside, 1);
		ZT_CHECK_EQ(zk_mutex_unlock(&s->m), 0);
	}
	return NULL;
}

static void *foreign_incrementer(void *arg)
{
	struct shared *s = arg;
	for (size_t i = 0; i < s->iters; i++) {
		if (zk_mutex_lock(&s->m) != 0) {
			zt_fail(__FILE__, __LINE__, "foreign lock failed");
			return NULL;
		}
		if (atomic_fetch_add(&s->inside, 1) != 0)
			zt_fail(__FILE__, __LINE__, "two holders");
		s->counter++;
		atomic_fetch_sub(&s->inside, 1);
		zk_mutex_unlock(&s->m);
	}
	return NULL;
}

static void *contend(void *arg)
{
	struct shared *s = arg;
	enum { N = 8 };
	zk_task_t *h[N];
	for (int i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], incrementer, s), 0);
	for (int i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(mutex, tasks_on_several_workers_and_foreign_threads_are_mutually_excluded, .timeout = 300)
{
	struct shared s = {.iters = zt_scaled(20000, 2000)};
	zk_mutex_init(&s.m);
	zk_runtime_t *rt = zt_runtime(4);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, foreign_incrementer, &s), 0);
	zt_run(rt, contend, &s);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	zt_assert_no_failures();
	cr_assert_eq(s.counter, (long)(10 * s.iters));
	cr_assert_eq(zk_mutex_destroy(&s.m), 0);
	zk_runtime_free(rt);
}

/* ---- FIFO hand-off ------------------------------------------------------------------------ */

struct fifo {
	zk_mutex_t m;
	atomic_long queued;
	int order[16];
	atomic_int next;
};

struct fifo_arg {
	struct fifo *f;
	int id;
};

static void *queue_up(void *arg)
{
	struct fifo_arg *a = arg;
	atomic_fetch_add(&a->f->queued, 1);
	ZT_CHECK_EQ(zk_mutex_lock(&a->f->m), 0);
	a->f->order[atomic_fetch_add(&a->f->next, 1)] = a->id;
	ZT_CHECK_EQ(zk_mutex_unlock(&a->f->m), 0);
	return NULL;
}

static void *fifo_handoff(void *arg)
{
	(void)arg;
	struct fifo f = {0};
	zk_mutex_init(&f.m);
	struct fifo_arg args[8];
	zk_task_t *h[8];
	ZT_CHECK_EQ(zk_mutex_lock(&f.m), 0);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct fifo_arg){.f = &f, .id = i};
		ZT_CHECK_EQ(zk_spawn(&h[i], queue_up, &args[i]), 0);
		/* Let it reach the queue before the next one starts. */
		ZT_CHECK(zt_task_wait_at_least(&f.queued, i + 1, 10000));
		zk_sleep_ms(3);
	}
	ZT_CHECK_EQ(zk_mutex_unlock(&f.m), 0);
	/* Handed to the first waiter: no barging in between. */
	ZT_CHECK_EQ(zk_mutex_trylock(&f.m), -EBUSY);
	for (int i = 0; i < 8; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	for (int i = 0; i < 8; i++)
		ZT_CHECK_EQ(f.order[i], i);
	ZT_CHECK_EQ(zk_mutex_destroy(&f.m), 0);
	return NULL;
}

Test(mutex, waiters_get_the_lock_in_fifo_order_without_barging)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, fifo_handoff, NULL);
	zk_runtime_free(rt);
}

/* ---- timeout and cancel ---------------------------------------------------------------------- */

struct waiter_box {
	zk_mutex_t *m;
	atomic_long waiting;
	atomic_int ret;
	uint64_t timeout_ns;
};

static void *lock_and_report(void *arg)
{
	struct waiter_box *b = arg;
	atomic_store(&b->waiting, 1);
	int r = b->timeout_ns ? zk_mutex_lock_timeout(b->m, b->timeout_ns) : zk_mutex_lock(b->m);
	atomic_store(&b->ret, r);
	if (r == 0)
		zk_mutex_unlock(b->m);
	return NULL;
}

static void *timeout_then_cancel(void *arg)
{
	(void)arg;
	zk_mutex_t m;
	zk_mutex_init(&m);
	ZT_CHECK_EQ(zk_mutex_lock(&m), 0);
	uint64_t t0 = zk_now_ns();
	struct waiter_box tb = {.m = &m, .timeout_ns = 30 * MS, .ret = 1};
	zk_task_t *ht;
	ZT_CHECK_EQ(zk_spawn(&ht, lock_and_report, &tb), 0);
	/* A second waiter behind the timed one, and a third to be cancelled. */
	struct waiter_box cb = {.m = &m, .ret = 1}, lb = {.m = &m, .ret = 1};
	zk_task_t *hc, *hl;
	ZT_CHECK(zt_task_wait_at_least(&tb.waiting, 1, 10000));
	zk_sleep_ms(2);
	ZT_CHECK_EQ(zk_spawn(&hc, lock_and_report, &cb), 0);
	ZT_CHECK(zt_task_wait_at_least(&cb.waiting, 1, 10000));
	zk_sleep_ms(2);
	ZT_CHECK_EQ(zk_spawn(&hl, lock_and_report, &lb), 0);
	ZT_CHECK_EQ(zk_join(ht, NULL), 0);
	double el = zt_ms_since(t0);
	ZT_CHECK_EQ(atomic_load(&tb.ret), -ETIMEDOUT);
	ZT_CHECK(el >= 30 && el < 30 + slack_ms());
	ZT_CHECK_EQ(zk_cancel(hc), 0);
	ZT_CHECK_EQ(zk_join(hc, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&cb.ret), -ECANCELED);
	/* The last waiter still gets the lock when we let go. */
	ZT_CHECK_EQ(atomic_load(&lb.ret), 1);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_join(hl, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&lb.ret), 0);
	ZT_CHECK_EQ(zk_mutex_destroy(&m), 0);
	return NULL;
}

Test(mutex, timed_out_and_cancelled_waiters_leave_the_queue_and_the_rest_proceed)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, timeout_then_cancel, NULL);
	zk_runtime_free(rt);
}

/* Cancel and unlock at the same instant (from two plain threads): the
 * waiter either gets the lock (and releases it) or is cancelled holding
 * nothing; the mutex never ends up stuck or doubly held. */
struct mrace {
	zk_mutex_t m;
	zk_task_t *h;
};

static void act_unlock(void *arg)
{
	struct mrace *r = arg;
	if (zk_mutex_unlock(&r->m) != 0)
		zt_fail(__FILE__, __LINE__, "unlock");
}

static void act_cancel(void *arg)
{
	struct mrace *r = arg;
	zk_cancel(r->h);
}

static void *cancel_vs_unlock(void *arg)
{
	(void)arg;
	struct mrace r;
	zk_mutex_init(&r.m);
	size_t rounds = zt_scaled(2000, 200);
	long got = 0, cancelled = 0;
	for (size_t i = 0; i < rounds; i++) {
		ZT_CHECK_EQ(zk_mutex_lock(&r.m), 0);
		struct waiter_box b = {.m = &r.m, .ret = 1, .timeout_ns = (i % 4 == 0) ? MS : 0};
		ZT_CHECK_EQ(zk_spawn(&r.h, lock_and_report, &b), 0);
		while (!atomic_load(&b.waiting))
			zk_yield();
		if (i % 3 == 0)
			zk_sleep_ms(1);
		zt_race2(act_unlock, act_cancel, &r);
		ZT_CHECK_EQ(zk_join(r.h, NULL), 0);
		int ret = atomic_load(&b.ret);
		if (ret == 0)
			got++;
		else if (ret == -ECANCELED || ret == -ETIMEDOUT)
			cancelled++;
		else
			zt_fail(__FILE__, __LINE__, "lock = %d", ret);
		ZT_CHECK_EQ(zk_mutex_lock_timeout(&r.m, 5000 * MS), 0);
		ZT_CHECK_EQ(zk_mutex_unlock(&r.m), 0);
	}
	ZT_CHECK_EQ(got + cancelled, (long)rounds);
	ZT_CHECK(cancelled > 0);
	ZT_CHECK_EQ(zk_mutex_destroy(&r.m), 0);
	return NULL;
}

Test(mutex, cancel_racing_the_hand_off_never_loses_the_lock, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(3);
	zt_run(rt, cancel_vs_unlock, NULL);
	zk_runtime_free(rt);
}

/* ---- rwlock ------------------------------------------------------------------------------------ */

struct rw {
	zk_rwlock_t l;
	atomic_long readers, writers, max_readers;
	long value;
	size_t iters;
};

static void *reader(void *arg)
{
	struct rw *s = arg;
	for (size_t i = 0; i < s->iters; i++) {
		ZT_CHECK_EQ(zk_rwlock_rdlock(&s->l), 0);
		long r = atomic_fetch_add(&s->readers, 1) + 1;
		long cur = atomic_load(&s->max_readers);
		while (r > cur && !atomic_compare_exchange_weak(&s->max_readers, &cur, r))
			;
		ZT_CHECK_EQ(atomic_load(&s->writers), 0);
		if (i % 16 == 0)
			zk_yield();
		atomic_fetch_sub(&s->readers, 1);
		ZT_CHECK_EQ(zk_rwlock_rdunlock(&s->l), 0);
	}
	return NULL;
}

static void *writer(void *arg)
{
	struct rw *s = arg;
	for (size_t i = 0; i < s->iters / 4; i++) {
		ZT_CHECK_EQ(zk_rwlock_wrlock(&s->l), 0);
		ZT_CHECK_EQ(atomic_fetch_add(&s->writers, 1), 0);
		ZT_CHECK_EQ(atomic_load(&s->readers), 0);
		long v = s->value;
		if (i % 8 == 0)
			zk_yield();
		s->value = v + 1;
		atomic_fetch_sub(&s->writers, 1);
		ZT_CHECK_EQ(zk_rwlock_wrunlock(&s->l), 0);
	}
	return NULL;
}

static void *rw_mix(void *arg)
{
	struct rw *s = arg;
	zk_task_t *h[8];
	for (int i = 0; i < 8; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], i < 6 ? reader : writer, s), 0);
	for (int i = 0; i < 8; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	ZT_CHECK_EQ(s->value, (long)(2 * (s->iters / 4)));
	return NULL;
}

Test(mutex, rwlock_readers_share_and_writers_exclude, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(4);
	struct rw s = {.iters = zt_scaled(20000, 2000)};
	zk_rwlock_init(&s.l);
	zt_run(rt, rw_mix, &s);
	cr_assert_eq(zk_rwlock_destroy(&s.l), 0);
	zk_runtime_free(rt);
}

struct rwq {
	zk_rwlock_t l;
	atomic_long writer_waiting;
	atomic_long writer_done;
	atomic_long late_reader_done;
};

static void *waiting_writer(void *arg)
{
	struct rwq *q = arg;
	atomic_store(&q->writer_waiting, 1);
	ZT_CHECK_EQ(zk_rwlock_wrlock(&q->l), 0);
	ZT_CHECK_EQ(atomic_load(&q->late_reader_done), 0);
	atomic_store(&q->writer_done, 1);
	ZT_CHECK_EQ(zk_rwlock_wrunlock(&q->l), 0);
	return NULL;
}

static void *late_reader(void *arg)
{
	struct rwq *q = arg;
	ZT_CHECK_EQ(zk_rwlock_rdlock(&q->l), 0);
	/* Queued behind the writer: it went first. */
	ZT_CHECK_EQ(atomic_load(&q->writer_done), 1);
	atomic_store(&q->late_reader_done, 1);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&q->l), 0);
	return NULL;
}

static void *writer_not_starved(void *arg)
{
	(void)arg;
	struct rwq q = {0};
	zk_rwlock_init(&q.l);
	ZT_CHECK_EQ(zk_rwlock_rdlock(&q.l), 0);
	ZT_CHECK_EQ(zk_rwlock_tryrdlock(&q.l), 0);   /* readers share */
	ZT_CHECK_EQ(zk_rwlock_trywrlock(&q.l), -EBUSY);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&q.l), 0);
	zk_task_t *hw, *hr;
	ZT_CHECK_EQ(zk_spawn(&hw, waiting_writer, &q), 0);
	ZT_CHECK(zt_task_wait_at_least(&q.writer_waiting, 1, 10000));
	zk_sleep_ms(5);
	/* A writer waits: new readers queue behind it. */
	ZT_CHECK_EQ(zk_rwlock_tryrdlock(&q.l), -EBUSY);
	ZT_CHECK_EQ(zk_rwlock_rdlock_timeout(&q.l, 10 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_spawn(&hr, late_reader, &q), 0);
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&q.l), 0); /* the writer goes, then the reader */
	ZT_CHECK_EQ(zk_join(hw, NULL), 0);
	ZT_CHECK_EQ(zk_join(hr, NULL), 0);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&q.l), -EPERM);
	ZT_CHECK_EQ(zk_rwlock_wrunlock(&q.l), -EPERM);
	ZT_CHECK_EQ(zk_rwlock_trywrlock(&q.l), 0);
	ZT_CHECK_EQ(zk_rwlock_tryrdlock(&q.l), -EBUSY);
	ZT_CHECK_EQ(zk_rwlock_wrlock_timeout(&q.l, 5 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_rwlock_destroy(&q.l), -EBUSY);
	ZT_CHECK_EQ(zk_rwlock_wrunlock(&q.l), 0);
	ZT_CHECK_EQ(zk_rwlock_destroy(&q.l), 0);
	return NULL;
}

Test(mutex, rwlock_a_waiting_writer_is_not_overtaken_by_later_readers)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, writer_not_starved, NULL);
	zk_runtime_free(rt);
}
