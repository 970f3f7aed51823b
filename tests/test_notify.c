/* tests/test_notify.c — sync.h: notify (one/all, stored permit), barrier,
 * once-cell: semantics, timeouts, cancel, cancel racing notify, foreign
 * threads. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "helpers.h"
#include "race.h"

TestSuite(notify, .timeout = 120);

#define MS ZK_NSEC_PER_MSEC

/* ---- notify ------------------------------------------------------------------------------ */

static void *permit_stored(void *arg)
{
	(void)arg;
	zk_notify_t n;
	ZT_CHECK_EQ(zk_notify_init(&n), 0);
	ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_notify_one(&n), 0);
	ZT_CHECK_EQ(zk_notify_one(&n), 0); /* permits do not add up */
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_notify_wait(&n), 0);
	ZT_CHECK(zt_ms_since(t0) < 100);
	ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 20 * MS), -ETIMEDOUT);
	ZT_CHECK(zt_ms_since(t0) >= 20);
	/* notify_all with nobody waiting stores nothing. */
	ZT_CHECK_EQ(zk_notify_all(&n), 0);
	ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_notify_destroy(&n), 0);
	zk_notify_t s = ZK_NOTIFY_INITIALIZER;
	ZT_CHECK_EQ(zk_notify_one(&s), 0);
	ZT_CHECK_EQ(zk_notify_wait(&s), 0);
	ZT_CHECK_EQ(zk_notify_one(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_notify_wait(NULL), -EINVAL);
	return NULL;
}

Test(notify, a_notification_before_the_wait_is_not_lost)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, permit_stored, NULL);
	zk_runtime_free(rt);
}

struct nw {
	zk_notify_t *n;
	atomic_long *queued;
	atomic_long *order;
	long woke_at;
	atomic_int ret;
	uint64_t timeout_ns;
};

static void *notify_waiter(void *arg)
{
	struct nw *w = arg;
	atomic_fetch_add(w->queued, 1);
	int r = w->timeout_ns ? zk_notify_wait_timeout(w->n, w->timeout_ns) : zk_notify_wait(w->n);
	if (r == 0)
		w->woke_at = atomic_fetch_add(w->order, 1);
	atomic_store(&w->ret, r);
	return NULL;
}

static void *one_then_all(void *arg)
{
	(void)arg;
	zk_notify_t n;
	zk_notify_init(&n);
	atomic_long queued = 0, order = 0;
	struct nw w[4];
	zk_task_t *h[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct nw){.n = &n, .queued = &queued, .order = &order};
		atomic_init(&w[i].ret, 1);
		ZT_CHECK_EQ(zk_spawn(&h[i], notify_waiter, &w[i]), 0);
		ZT_CHECK(zt_task_wait_at_least(&queued, i + 1, 10000));
		zk_sleep_ms(3);
	}
	/* One: the longest waiting, and only it. */
	ZT_CHECK_EQ(zk_notify_one(&n), 0);
	ZT_CHECK_EQ(zk_join(h[0], NULL), 0);
	ZT_CHECK_EQ(atomic_load(&w[0].ret), 0);
	zk_sleep_ms(10);
	ZT_CHECK_EQ(atomic_load(&order), 1);
	ZT_CHECK_EQ(zk_notify_destroy(&n), -EBUSY);
	/* All: the other three. */
	ZT_CHECK_EQ(zk_notify_all(&n), 3);
	for (int i = 1; i < 4; i++) {
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
		ZT_CHECK_EQ(atomic_load(&w[i].ret), 0);
	}
	ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_notify_destroy(&n), 0);
	return NULL;
}

Test(notify, notify_one_wakes_the_longest_waiter_and_notify_all_the_rest)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, one_then_all, NULL);
	zk_runtime_free(rt);
}

static void *cancelled_waiter_passes_it_on(void *arg)
{
	(void)arg;
	zk_notify_t n;
	zk_notify_init(&n);
	atomic_long queued = 0, order = 0;
	struct nw a = {.n = &n, .queued = &queued, .order = &order};
	struct nw b = {.n = &n, .queued = &queued, .order = &order, .timeout_ns = 20 * MS};
	atomic_init(&a.ret, 1);
	atomic_init(&b.ret, 1);
	zk_task_t *ha, *hb;
	ZT_CHECK_EQ(zk_spawn(&hb, notify_waiter, &b), 0);
	ZT_CHECK_EQ(zk_spawn(&ha, notify_waiter, &a), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 2, 10000));
	ZT_CHECK_EQ(zk_join(hb, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&b.ret), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_cancel(ha), 0);
	ZT_CHECK_EQ(zk_join(ha, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&a.ret), -ECANCELED);
	/* Neither consumed anything: a notify now is stored for us. */
	ZT_CHECK_EQ(zk_notify_one(&n), 0);
	ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 0), 0);
	ZT_CHECK_EQ(zk_notify_destroy(&n), 0);
	return NULL;
}

Test(notify, timed_out_and_cancelled_waiters_consume_nothing)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancelled_waiter_passes_it_on, NULL);
	zk_runtime_free(rt);
}

/* Cancel and notify at the same instant, from two plain threads: the
 * notification is either consumed by the waiter or stored, never lost,
 * never doubled. */
struct nrace {
	zk_notify_t n;
	zk_task_t *h;
	atomic_long ready;
	atomic_int ret;
	bool timed;
};

static void *race_waiter(void *arg)
{
	struct nrace *r = arg;
	atomic_store(&r->ready, 1);
	atomic_store(&r->ret, r->timed ? zk_notify_wait_timeout(&r->n, MS) : zk_notify_wait(&r->n));
	return NULL;
}

static void act_notify(void *arg)
{
	struct nrace *r = arg;
	zk_notify_one(&r->n);
}

static void act_cancel(void *arg)
{
	struct nrace *r = arg;
	zk_cancel(r->h);
}

static void *cancel_vs_notify(void *arg)
{
	(void)arg;
	struct nrace r;
	zk_notify_init(&r.n);
	size_t rounds = zt_scaled(2000, 200);
	long consumed = 0, stored = 0, cancelled = 0;
	for (size_t i = 0; i < rounds; i++) {
		atomic_store(&r.ready, 0);
		atomic_store(&r.ret, 1);
		r.timed = i % 4 == 0;
		ZT_CHECK_EQ(zk_spawn(&r.h, race_waiter, &r), 0);
		while (!atomic_load(&r.ready))
			zk_yield();
		if (i % 3 == 0)
			zk_sleep_ms(1);
		zt_race2(act_notify, act_cancel, &r);
		ZT_CHECK_EQ(zk_join(r.h, NULL), 0);
		int ret = atomic_load(&r.ret);
		if (ret == 0)
			consumed++;
		else if (ret == -ECANCELED)
			cancelled++;
		else
			ZT_CHECK_EQ(ret, -ETIMEDOUT);
		if (zk_notify_wait_timeout(&r.n, 0) == 0)
			stored++;
	}
	ZT_CHECK_EQ(consumed + stored, (long)rounds);
	ZT_CHECK(cancelled > 0);
	ZT_CHECK_EQ(zk_notify_destroy(&r.n), 0);
	return NULL;
}

Test(notify, cancel_and_notify_at_the_same_instant_never_lose_the_notification, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(3);
	zt_run(rt, cancel_vs_notify, NULL);
	zk_runtime_free(rt);
}

struct pingpong {
	zk_notify_t ping, pong;
	size_t rounds;
};

static void *ponger(void *arg)
{
	struct pingpong *p = arg;
	for (size_t i = 0; i < p->rounds; i++) {
		ZT_CHECK_EQ(zk_notify_wait(&p->ping), 0);
		ZT_CHECK_EQ(zk_notify_one(&p->pong), 0);
	}
	return NULL;
}

static void *pinger(void *arg)
{
	struct pingpong *p = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, ponger, p), 0);
	for (size_t i = 0; i < p->rounds; i++) {
		ZT_CHECK_EQ(zk_notify_one(&p->ping), 0);
		ZT_CHECK_EQ(zk_notify_wait(&p->pong), 0);
	}
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(notify, ping_pong_between_two_tasks)
{
	struct pingpong p = {.rounds = zt_scaled(100000, 5000)};
	zk_notify_init(&p.ping);
	zk_notify_init(&p.pong);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, pinger, &p);
	zk_runtime_free(rt);
}

static void *foreign_notifier(void *arg)
{
	struct pingpong *p = arg;
	for (size_t i = 0; i < p->rounds; i++) {
		zk_notify_one(&p->ping);
		/* Blocks this thread until the task answers. */
		if (zk_notify_wait(&p->pong) != 0)
			zt_fail(__FILE__, __LINE__, "foreign wait failed");
	}
	return NULL;
}

Test(notify, a_foreign_thread_notifies_a_task_and_waits_for_its_answer)
{
	struct pingpong p = {.rounds = zt_scaled(20000, 2000)};
	zk_notify_init(&p.ping);
	zk_notify_init(&p.pong);
	zk_runtime_t *rt = zt_runtime(2);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, foreign_notifier, &p), 0);
	zt_run(rt, ponger, &p);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	zk_runtime_free(rt);
}

/* ---- barrier ------------------------------------------------------------------------------ */

struct bar {
	zk_barrier_t b;
	unsigned n;
	size_t rounds;
	atomic_long arrived[64];
	atomic_long leaders[64];
};

static void *barrier_member(void *arg)
{
	struct bar *s = arg;
	for (size_t r = 0; r < s->rounds; r++) {
		atomic_fetch_add(&s->arrived[r], 1);
		int ret = zk_barrier_wait(&s->b);
		ZT_CHECK(ret == 0 || ret == ZK_BARRIER_LEADER);
		/* Nobody passes before everyone arrived. */
		ZT_CHECK_EQ(atomic_load(&s->arrived[r]), s->n);
		if (ret == ZK_BARRIER_LEADER)
			atomic_fetch_add(&s->leaders[r], 1);
	}
	return NULL;
}

static void *barrier_rounds(void *arg)
{
	struct bar *s = arg;
	zk_task_t *h[16];
	for (unsigned i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], barrier_member, s), 0);
	for (unsigned i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	for (size_t r = 0; r < s->rounds; r++)
		ZT_CHECK_EQ(atomic_load(&s->leaders[r]), 1);
	ZT_CHECK_EQ(zk_barrier_destroy(&s->b), 0);
	return NULL;
}

Test(notify, barrier_releases_everyone_together_with_one_leader_per_round)
{
	static struct bar s; /* large */
	s.n = 8;
	s.rounds = 64;
	cr_assert_eq(zk_barrier_init(&s.b, s.n), 0);
	cr_assert_eq(zk_barrier_init(NULL, 1), -EINVAL);
	zk_runtime_t *rt = zt_runtime(4);
	zt_run(rt, barrier_rounds, &s);
	zk_runtime_free(rt);
}

struct bw {
	zk_barrier_t *b;
	atomic_long *queued;
	atomic_int ret;
};

static void *barrier_waiter(void *arg)
{
	struct bw *w = arg;
	atomic_fetch_add(w->queued, 1);
	atomic_store(&w->ret, zk_barrier_wait(w->b));
	return NULL;
}

static void *barrier_withdraw(void *arg)
{
	(void)arg;
	zk_barrier_t b;
	zk_barrier_init(&b, 3);
	atomic_long queued = 0;
	struct bw w1 = {.b = &b, .queued = &queued}, w2 = {.b = &b, .queued = &queued};
	atomic_init(&w1.ret, 7);
	atomic_init(&w2.ret, 7);
	zk_task_t *h1, *h2;
	ZT_CHECK_EQ(zk_spawn(&h1, barrier_waiter, &w1), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 1, 10000));
	zk_sleep_ms(5);
	/* A timed arrival that gives up: it does not count. */
	ZT_CHECK_EQ(zk_barrier_wait_timeout(&b, 10 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_spawn(&h2, barrier_waiter, &w2), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 2, 10000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_cancel(h2), 0); /* neither does a cancelled one */
	ZT_CHECK_EQ(zk_join(h2, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&w2.ret), -ECANCELED);
	ZT_CHECK_EQ(atomic_load(&w1.ret), 7);
	ZT_CHECK_EQ(zk_barrier_destroy(&b), -EBUSY);
	/* Two more arrivals complete the round. */
	struct bw w3 = {.b = &b, .queued = &queued};
	atomic_init(&w3.ret, 7);
	zk_task_t *h3;
	ZT_CHECK_EQ(zk_spawn(&h3, barrier_waiter, &w3), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 3, 10000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_barrier_wait(&b), ZK_BARRIER_LEADER);
	ZT_CHECK_EQ(zk_join(h1, NULL), 0);
	ZT_CHECK_EQ(zk_join(h3, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&w1.ret), 0);
	ZT_CHECK_EQ(atomic_load(&w3.ret), 0);
	ZT_CHECK_EQ(zk_barrier_destroy(&b), 0);
	return NULL;
}

Test(notify, barrier_arrivals_that_time_out_or_are_cancelled_are_withdrawn)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, barrier_withdraw, NULL);
	zk_runtime_free(rt);
}

/* ---- once-cell ------------------------------------------------------------------------------ */

struct cell {
	zk_once_t o;
	atomic_long inits;
	atomic_long fail_first;
};

static int slow_init(void *arg, void **value)
{
	struct cell *c = arg;
	atomic_fetch_add(&c->inits, 1);
	zk_sleep_ms(20); /* others arrive meanwhile and wait */
	if (atomic_exchange(&c->fail_first, 0))
		return -EIO;
	*value = (void *)0xce11;
	return 0;
}

static void *get_cell(void *arg)
{
	struct cell *c = arg;
	void *v = NULL;
	int r = zk_once_get_or_init(&c->o, slow_init, c, &v);
	if (r == -EIO)
		return (void *)(intptr_t)r;
	ZT_CHECK_EQ(r, 0);
	ZT_CHECK(v == (void *)0xce11);
	return NULL;
}

static void *once_many(void *arg)
{
	struct cell *c = arg;
	zk_task_t *h[10];
	for (int i = 0; i < 10; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], get_cell, c), 0);
	int eio = 0;
	for (int i = 0; i < 10; i++) {
		void *res;
		ZT_CHECK_EQ(zk_join(h[i], &res), 0);
		if ((intptr_t)res == -EIO)
			eio++;
	}
	void *v;
	ZT_CHECK(zk_once_get(&c->o, &v));
	ZT_CHECK(v == (void *)0xce11);
	return (void *)(intptr_t)eio;
}

Test(notify, once_cell_runs_init_once_while_others_wait)
{
	struct cell c = {0};
	zk_once_init(&c.o);
	void *v;
	cr_assert(!zk_once_get(&c.o, &v));
	zk_runtime_t *rt = zt_runtime(3);
	cr_assert_eq((intptr_t)zt_run(rt, once_many, &c), 0);
	cr_assert_eq(atomic_load(&c.inits), 1);
	cr_assert_eq(zk_once_destroy(&c.o), 0);
	zk_runtime_free(rt);
}

Test(notify, once_cell_a_failed_init_passes_the_turn_to_a_waiter)
{
	struct cell c = {0};
	zk_once_init(&c.o);
	atomic_store(&c.fail_first, 1);
	zk_runtime_t *rt = zt_runtime(3);
	cr_assert_eq((intptr_t)zt_run(rt, once_many, &c), 1);
	cr_assert_eq(atomic_load(&c.inits), 2);
	zk_runtime_free(rt);
}

static void *get_cell_expect_cancel(void *arg)
{
	struct cell *c = arg;
	void *v;
	ZT_CHECK_EQ(zk_once_get_or_init(&c->o, slow_init, c, &v), -ECANCELED);
	return NULL;
}

static void *once_cancel2(void *arg)
{
	struct cell *c = arg;
	zk_task_t *first, *second;
	ZT_CHECK_EQ(zk_spawn(&first, get_cell, c), 0);
	ZT_CHECK(zt_task_wait_at_least(&c->inits, 1, 10000));
	ZT_CHECK_EQ(zk_spawn(&second, get_cell_expect_cancel, c), 0);
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_once_destroy(&c->o), -EBUSY);
	ZT_CHECK_EQ(zk_cancel(second), 0);
	ZT_CHECK_EQ(zk_join(second, NULL), 0);
	ZT_CHECK_EQ(zk_join(first, NULL), 0);
	return NULL;
}

Test(notify, once_cell_a_cancelled_waiter_leaves_and_init_completes)
{
	struct cell c = {0};
	zk_once_init(&c.o);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, once_cancel2, &c);
	void *v;
	cr_assert(zk_once_get(&c.o, &v));
	cr_assert_eq(v, (void *)0xce11);
	zk_runtime_free(rt);
}
