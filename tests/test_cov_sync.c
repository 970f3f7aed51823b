/* tests/test_cov_sync.c — sync.h and select.h contracts the feature suites
 * leave out: the documented argument errors of every primitive, the fast
 * path of a ready once-cell, a semaphore closed under a waiter, a release
 * that would overflow, unlocking what is not locked, a select over more
 * operations than fit on its stack, scopes cancelled from outside and a
 * scope whose waiting parent is cancelled. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

TestSuite(cov_sync, .timeout = 60);

#define MS ZK_NSEC_PER_MSEC

/* ---- argument errors ---------------------------------------------------------------------- */

static int init_one(void *arg, void **value)
{
	(void)arg;
	*value = (void *)(intptr_t)7;
	return 0;
}

static void *arg_errors(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_mutex_init(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_mutex_destroy(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_mutex_lock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_mutex_trylock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_mutex_unlock(NULL), -EINVAL);

	ZT_CHECK_EQ(zk_sem_init(NULL, 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_destroy(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_sem_acquire(NULL, 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_try_acquire(NULL, 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_release(NULL, 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_close(NULL), -EINVAL);

	ZT_CHECK_EQ(zk_rwlock_init(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_destroy(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_rdlock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_wrlock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_tryrdlock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_trywrlock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_rwlock_wrunlock(NULL), -EINVAL);

	ZT_CHECK_EQ(zk_barrier_init(NULL, 2), -EINVAL);
	zk_barrier_t b;
	ZT_CHECK_EQ(zk_barrier_init(&b, 0), -EINVAL);
	ZT_CHECK_EQ(zk_barrier_destroy(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_barrier_wait(NULL), -EINVAL);

	ZT_CHECK_EQ(zk_once_init(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_once_destroy(NULL), -EINVAL);
	zk_once_t o;
	ZT_CHECK_EQ(zk_once_init(&o), 0);
	void *v = NULL;
	ZT_CHECK_EQ(zk_once_get_or_init(NULL, init_one, NULL, &v), -EINVAL);
	ZT_CHECK_EQ(zk_once_get_or_init(&o, NULL, NULL, &v), -EINVAL);
	ZT_CHECK(!zk_once_get(NULL, &v));
	ZT_CHECK_EQ(zk_once_destroy(&o), 0);

	ZT_CHECK_EQ(zk_joinset_create(NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_joinset_spawn(NULL, (zk_task_fn)NULL, NULL, NULL),
		    -EINVAL);
	ZT_CHECK_EQ(zk_joinset_join_next(NULL, NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_joinset_abort_all(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_joinset_len(NULL), 0);
	ZT_CHECK_EQ(zk_joinset_shutdown(NULL), -EINVAL);
	zk_joinset_free(NULL); /* documented no-op */
	zk_joinset_t *js;
	ZT_CHECK_EQ(zk_joinset_create(&js, NULL), 0);
	ZT_CHECK_EQ(zk_joinset_spawn(js, NULL, NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_joinset_abort_all(js), 0); /* nothing to ask */
	ZT_CHECK_EQ(zk_joinset_join_next(js, NULL, NULL), -ECHILD);
	zk_joinset_free(js);

	ZT_CHECK_EQ(zk_scope_begin(NULL, NULL), -EINVAL);
	zk_scope_t s = {0};
	ZT_CHECK_EQ(zk_scope_spawn(NULL, (zk_task_fn)NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_scope_spawn(&s, (zk_task_fn)NULL, NULL), -EINVAL); /* never begun */
	ZT_CHECK_EQ(zk_scope_cancel(&s), -EINVAL);
	ZT_CHECK_EQ(zk_scope_wait(&s), -EINVAL);
	ZT_CHECK_EQ(zk_scope_end(&s), -EINVAL);
	ZT_CHECK_EQ(zk_scope_cancel(NULL), -EINVAL);

	ZT_CHECK_EQ(zk_select(NULL, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_select_all(NULL, 1, 0), -EINVAL);
	zk_sel_t one = {.kind = ZK_SEL_NONE};
	ZT_CHECK_EQ(zk_select(&one, ZK_SELECT_MAX + 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_select_all(&one, ZK_SELECT_MAX + 1, 0), -EINVAL);
	zk_sem_t sem;
	ZT_CHECK_EQ(zk_sem_init(&sem, 1), 0);
	zk_sel_t big = {.kind = ZK_SEL_ACQUIRE, .obj = &sem, .n = ZK_SEM_MAX_PERMITS + 1};
	ZT_CHECK_EQ(zk_select(&big, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_sem_available(&sem), 1); /* nothing taken */
	ZT_CHECK_EQ(zk_sem_destroy(&sem), 0);
	zk_bcast_rx_t rx;
	memset(&rx, 0, sizeof(rx)); /* never subscribed */
	zk_sel_t brx = {.kind = ZK_SEL_BCAST_RECV, .obj = &rx};
	ZT_CHECK_EQ(zk_select(&brx, 1, 0), -EINVAL);
	zk_watch_rx_t wrx;
	memset(&wrx, 0, sizeof(wrx));
	zk_sel_t wsel = {.kind = ZK_SEL_WATCH, .obj = &wrx};
	ZT_CHECK_EQ(zk_select(&wsel, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_timeout_call(MS, NULL, NULL, NULL), -EINVAL);
	return NULL;
}

Test(cov_sync, every_primitive_refuses_null_and_invalid_arguments)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, arg_errors, NULL);
	zk_runtime_free(rt);
}

/* ---- mutex, semaphore, rwlock edges ------------------------------------------------------ */

struct sem_waiter {
	zk_sem_t *s;
	atomic_long *queued;
	int ret;
};

static void *sem_wait_task(void *arg)
{
	struct sem_waiter *w = arg;
	atomic_fetch_add(w->queued, 1);
	w->ret = zk_sem_acquire(w->s, 2);
	return NULL;
}

static void *lock_edges(void *arg)
{
	(void)arg;
	zk_mutex_t m;
	ZT_CHECK_EQ(zk_mutex_init(&m), 0);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), -EPERM); /* not locked */
	ZT_CHECK_EQ(zk_mutex_lock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_destroy(&m), -EBUSY);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_mutex_destroy(&m), 0);

	zk_sem_t s;
	ZT_CHECK_EQ(zk_sem_init(&s, ZK_SEM_MAX_PERMITS + 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_init(&s, 1), 0);
	ZT_CHECK_EQ(zk_sem_acquire(&s, 0), 0); /* n == 0: at once */
	ZT_CHECK_EQ(zk_sem_release(&s, 0), 0);
	ZT_CHECK_EQ(zk_sem_acquire(&s, ZK_SEM_MAX_PERMITS + 1), -EINVAL);
	ZT_CHECK_EQ(zk_sem_release(&s, ZK_SEM_MAX_PERMITS), -EOVERFLOW);
	ZT_CHECK_EQ(zk_sem_available(&s), 1); /* nothing added */
	/* A waiter for 2 permits; destroy refuses while it waits; close
	 * ends its wait with -EPIPE. */
	atomic_long queued = 0;
	struct sem_waiter w = {.s = &s, .queued = &queued, .ret = 1};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, sem_wait_task, &w), 0);
	ZT_CHECK(zt_task_wait_at_least(&queued, 1, 5000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_sem_destroy(&s), -EBUSY);
	ZT_CHECK_EQ(zk_sem_close(&s), 0);
	ZT_CHECK_EQ(zk_sem_close(&s), -EALREADY);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(w.ret, -EPIPE);
	ZT_CHECK_EQ(zk_sem_acquire(&s, 1), -EPIPE);
	ZT_CHECK_EQ(zk_sem_try_acquire(&s, 1), -EPIPE);
	ZT_CHECK_EQ(zk_sem_release(&s, 3), 0); /* kept, nobody can take them */
	ZT_CHECK_EQ(zk_sem_available(&s), 4);
	ZT_CHECK_EQ(zk_sem_destroy(&s), 0);

	zk_rwlock_t l;
	ZT_CHECK_EQ(zk_rwlock_init(&l), 0);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&l), -EPERM);
	ZT_CHECK_EQ(zk_rwlock_wrunlock(&l), -EPERM);
	ZT_CHECK_EQ(zk_rwlock_rdlock(&l), 0);
	ZT_CHECK_EQ(zk_rwlock_destroy(&l), -EBUSY);
	ZT_CHECK_EQ(zk_rwlock_wrunlock(&l), -EPERM); /* held shared, not exclusive */
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&l), 0);
	ZT_CHECK_EQ(zk_rwlock_destroy(&l), 0);
	return NULL;
}

Test(cov_sync, locks_report_misuse_overflow_and_closing)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, lock_edges, NULL);
	zk_runtime_free(rt);
}

/* ---- once-cell and barrier fast paths ----------------------------------------------------- */

static int count_init(void *arg, void **value)
{
	atomic_long *calls = arg;
	*value = (void *)(intptr_t)(100 + atomic_fetch_add(calls, 1));
	return 0;
}

static void *once_ready(void *arg)
{
	(void)arg;
	zk_once_t o;
	ZT_CHECK_EQ(zk_once_init(&o), 0);
	atomic_long calls = 0;
	void *v = NULL;
	ZT_CHECK_EQ(zk_once_get_or_init(&o, count_init, &calls, NULL), 0); /* value not wanted */
	ZT_CHECK_EQ(zk_once_get_or_init(&o, count_init, &calls, &v), 0);  /* ready: fast path */
	ZT_CHECK_EQ((intptr_t)v, 100);
	ZT_CHECK_EQ(zk_once_get_or_init(&o, count_init, &calls, NULL), 0);
	ZT_CHECK(zk_once_get(&o, NULL));
	ZT_CHECK_EQ(atomic_load(&calls), 1);
	ZT_CHECK_EQ(zk_once_destroy(&o), 0);

	/* A barrier of one: every wait leads its own round at once. */
	zk_barrier_t b;
	ZT_CHECK_EQ(zk_barrier_init(&b, 1), 0);
	for (int i = 0; i < 3; i++)
		ZT_CHECK_EQ(zk_barrier_wait(&b), ZK_BARRIER_LEADER);
	ZT_CHECK_EQ(zk_barrier_destroy(&b), 0);
	return NULL;
}

Test(cov_sync, a_ready_once_cell_returns_its_value_without_init)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, once_ready, NULL);
	zk_runtime_free(rt);
}

/* ---- select over many operations --------------------------------------------------------- */

#define NSEL 40

static void *send_to_last(void *arg)
{
	zk_chan_t *ch = arg;
	zk_sleep_ms(10);
	ZT_CHECK_EQ(zk_chan_send(ch, (void *)(intptr_t)77), 0);
	return NULL;
}

static void *select_many(void *arg)
{
	(void)arg;
	zk_notify_t n[NSEL];
	zk_sel_t ops[NSEL + 1];
	for (int i = 0; i < NSEL; i++) {
		ZT_CHECK_EQ(zk_notify_init(&n[i]), 0);
		ops[i] = (zk_sel_t){.kind = ZK_SEL_NOTIFY, .obj = &n[i]};
	}
	zk_chan_t *ch;
	ZT_CHECK_EQ(zk_chan_create(&ch, 4), 0);
	ops[NSEL] = (zk_sel_t){.kind = ZK_SEL_RECV, .obj = ch};
	/* Nothing ready: a zero timeout only tries. */
	ZT_CHECK_EQ(zk_select(ops, NSEL + 1, 0), -ETIMEDOUT);
	/* One notify among many, stored before the select. */
	ZT_CHECK_EQ(zk_notify_one(&n[23]), 0);
	ZT_CHECK_EQ(zk_select(ops, NSEL + 1, ZK_FOREVER), 23);
	ZT_CHECK_EQ(ops[23].res, 0);
	/* The last op completes later, from another task. */
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, send_to_last, ch), 0);
	ZT_CHECK_EQ(zk_select(ops, NSEL + 1, ZK_FOREVER), NSEL);
	ZT_CHECK_EQ(ops[NSEL].res, 0);
	ZT_CHECK_EQ((intptr_t)ops[NSEL].value, 77);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	/* select_all over all of them: every notify stored, one message. */
	for (int i = 0; i < NSEL; i++)
		ZT_CHECK_EQ(zk_notify_one(&n[i]), 0);
	ZT_CHECK_EQ(zk_chan_send(ch, (void *)(intptr_t)78), 0);
	ZT_CHECK_EQ(zk_select_all(ops, NSEL + 1, 5000 * MS), 0);
	for (int i = 0; i <= NSEL; i++)
		ZT_CHECK_EQ(ops[i].res, 0);
	ZT_CHECK_EQ((intptr_t)ops[NSEL].value, 78);
	/* Nothing is left behind: every permit was consumed. */
	for (int i = 0; i < NSEL; i++)
		ZT_CHECK_EQ(zk_notify_wait_timeout(&n[i], 0), -ETIMEDOUT);
	zk_chan_free(ch);
	for (int i = 0; i < NSEL; i++)
		ZT_CHECK_EQ(zk_notify_destroy(&n[i]), 0);
	return NULL;
}

Test(cov_sync, select_over_more_operations_than_fit_on_its_stack)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, select_many, NULL);
	zk_runtime_free(rt);
}

/* ---- scopes ------------------------------------------------------------------------------ */

static void *sleep_long(void *arg)
{
	atomic_long *ended = arg;
	int r = zk_sleep_ms(60000);
	if (r == -ECANCELED)
		atomic_fetch_add(ended, 1);
	return NULL;
}

static void *scope_cancel_from_outside(void *arg)
{
	(void)arg;
	zk_scope_t s;
	ZT_CHECK_EQ(zk_scope_begin(&s, NULL), 0);
	atomic_long ended = 0;
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_scope_spawn(&s, sleep_long, &ended), 0);
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_scope_cancel(&s), 0);
	ZT_CHECK_EQ(zk_scope_wait(&s), 0);
	ZT_CHECK_EQ(atomic_load(&ended), 4);
	ZT_CHECK_EQ(zk_scope_end(&s), 0);
	ZT_CHECK_EQ(zk_scope_end(&s), -EINVAL); /* ended: freed */
	return NULL;
}

Test(cov_sync, a_scope_cancelled_from_outside_ends_its_children)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, scope_cancel_from_outside, NULL);
	zk_runtime_free(rt);
}

struct scope_parent {
	atomic_long children_ended;
	atomic_long started;
	int wait_ret;
	long ended_when_returned;
};

static void *scope_child(void *arg)
{
	struct scope_parent *p = arg;
	atomic_fetch_add(&p->started, 1);
	zk_sleep_ms(60000);
	zk_sleep_ms(0); /* still cancelled */
	atomic_fetch_add(&p->children_ended, 1);
	return NULL;
}

static void *scope_parent_task(void *arg)
{
	struct scope_parent *p = arg;
	zk_scope_t s;
	ZT_CHECK_EQ(zk_scope_begin(&s, NULL), 0);
	for (int i = 0; i < 3; i++)
		ZT_CHECK_EQ(zk_scope_spawn(&s, scope_child, p), 0);
	p->wait_ret = zk_scope_wait(&s);
	p->ended_when_returned = atomic_load(&p->children_ended);
	/* The scope stays usable after a cancelled wait: end it. */
	ZT_CHECK_EQ(zk_scope_end(&s), 0);
	return NULL;
}

static void *cancel_scope_parent(void *arg)
{
	(void)arg;
	struct scope_parent p = {.wait_ret = 1};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, scope_parent_task, &p), 0);
	ZT_CHECK(zt_task_wait_at_least(&p.started, 3, 5000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(p.wait_ret, -ECANCELED);
	/* It returned only after all three children had. */
	ZT_CHECK_EQ(p.ended_when_returned, 3);
	return NULL;
}

Test(cov_sync, a_cancelled_parent_in_scope_wait_outlives_its_cancelled_children)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_scope_parent, NULL);
	zk_runtime_free(rt);
}
