/* tests/test_joinset.c — select.h: join sets (spawn many, join as they
 * finish, abort all) and structured scopes (children cancelled and joined
 * when the scope ends, nested scopes, a cancelled parent outlives its
 * children). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "helpers.h"

TestSuite(joinset, .timeout = 120);

#define MS ZK_NSEC_PER_MSEC

static void *sleep_then_return(void *arg)
{
	uintptr_t ms = (uintptr_t)arg;
	int r = zk_sleep_ms(ms);
	return r == 0 ? arg : (void *)(intptr_t)r;
}

static void *finish_order(void *arg)
{
	(void)arg;
	zk_joinset_t *js;
	ZT_CHECK_EQ(zk_joinset_create(&js, NULL), 0);
	void *res;
	ZT_CHECK_EQ(zk_joinset_join_next(js, &res, NULL), -ECHILD);
	uintptr_t delays[4] = {40, 10, 30, 20};
	uint64_t ids[4];
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_joinset_spawn(js, sleep_then_return, (void *)delays[i], &ids[i]), 0);
	ZT_CHECK_EQ(zk_joinset_len(js), 4);
	ZT_CHECK_EQ(zk_joinset_try_join_next(js, &res, NULL), -EAGAIN);
	ZT_CHECK_EQ(zk_joinset_join_next_timeout(js, &res, NULL, 2 * MS), -ETIMEDOUT);
	uintptr_t expect[4] = {10, 20, 30, 40};
	for (int i = 0; i < 4; i++) {
		uint64_t id = 0;
		ZT_CHECK_EQ(zk_joinset_join_next(js, &res, &id), 0);
		ZT_CHECK_EQ((uintptr_t)res, expect[i]);
		int k = expect[i] == 10 ? 1 : expect[i] == 20 ? 3 : expect[i] == 30 ? 2 : 0;
		ZT_CHECK_EQ(id, ids[k]);
	}
	ZT_CHECK_EQ(zk_joinset_len(js), 0);
	ZT_CHECK_EQ(zk_joinset_join_next(js, &res, NULL), -ECHILD);
	zk_joinset_free(js);
	return NULL;
}

Test(joinset, tasks_are_joined_in_the_order_they_finish)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, finish_order, NULL);
	zk_runtime_free(rt);
}

static void *abort_all(void *arg)
{
	(void)arg;
	zk_joinset_t *js;
	ZT_CHECK_EQ(zk_joinset_create(&js, NULL), 0);
	for (int i = 0; i < 10; i++)
		ZT_CHECK_EQ(zk_joinset_spawn(js, sleep_then_return, (void *)(uintptr_t)10000, NULL), 0);
	zk_sleep_ms(10);
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_joinset_abort_all(js), 10);
	for (int i = 0; i < 10; i++) {
		void *res;
		ZT_CHECK_EQ(zk_joinset_join_next(js, &res, NULL), 0);
		ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	}
	ZT_CHECK(zt_ms_since(t0) < 5000);
	/* A task aborted before it ever ran is reported as such. */
	uint64_t id, got = 0;
	ZT_CHECK_EQ(zk_joinset_spawn(js, sleep_then_return, (void *)1, &id), 0);
	ZT_CHECK_EQ(zk_joinset_abort_all(js), 1);
	int r = zk_joinset_join_next(js, NULL, &got);
	ZT_CHECK(r == -ESRCH || r == 0); /* it may have started already */
	ZT_CHECK_EQ(got, id);
	zk_joinset_free(js);
	return NULL;
}

Test(joinset, abort_all_cancels_every_running_task)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, abort_all, NULL);
	zk_runtime_free(rt);
}

static void *spawn_then_abort_at_once(void *arg)
{
	(void)arg;
	/* One worker: the spawned tasks cannot start before we abort. */
	zk_joinset_t *js;
	ZT_CHECK_EQ(zk_joinset_create(&js, NULL), 0);
	for (int i = 0; i < 3; i++)
		ZT_CHECK_EQ(zk_joinset_spawn(js, sleep_then_return, (void *)1, NULL), 0);
	ZT_CHECK_EQ(zk_joinset_abort_all(js), 3);
	for (int i = 0; i < 3; i++)
		ZT_CHECK_EQ(zk_joinset_join_next(js, NULL, NULL), -ESRCH);
	zk_joinset_free(js);
	return NULL;
}

Test(joinset, a_task_aborted_before_it_started_is_esrch)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, spawn_then_abort_at_once, NULL);
	zk_runtime_free(rt);
}

static void *free_with_running(void *arg)
{
	atomic_long *finished = arg;
	zk_joinset_t *js;
	ZT_CHECK_EQ(zk_joinset_create(&js, NULL), 0);
	for (int i = 0; i < 5; i++)
		ZT_CHECK_EQ(zk_joinset_spawn(js, sleep_then_return, (void *)(uintptr_t)10000, NULL), 0);
	ZT_CHECK_EQ(zk_joinset_spawn(js, sleep_then_return, (void *)(uintptr_t)1, NULL), 0);
	zk_sleep_ms(10); /* one finished, unjoined */
	zk_joinset_free(js); /* aborts the others; they free themselves */
	(void)finished;
	return NULL;
}

Test(joinset, free_aborts_running_tasks_and_leaks_nothing)
{
	zk_runtime_t *rt = zt_runtime(2);
	uint64_t t0 = zk_now_ns();
	zt_run(rt, free_with_running, NULL);
	zk_runtime_free(rt); /* waits for the aborted tasks */
	cr_assert_lt(zt_ms_since(t0), 5000);
}

struct jc {
	zk_joinset_t *js;
	atomic_long waiting;
	atomic_int ret;
};

static void *joiner(void *arg)
{
	struct jc *c = arg;
	atomic_store(&c->waiting, 1);
	atomic_store(&c->ret, zk_joinset_join_next(c->js, NULL, NULL));
	return NULL;
}

static void *cancel_joiner(void *arg)
{
	(void)arg;
	struct jc c = {0};
	ZT_CHECK_EQ(zk_joinset_create(&c.js, NULL), 0);
	ZT_CHECK_EQ(zk_joinset_spawn(c.js, sleep_then_return, (void *)(uintptr_t)40, NULL), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, joiner, &c), 0);
	ZT_CHECK(zt_task_wait_at_least(&c.waiting, 1, 10000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&c.ret), -ECANCELED);
	/* The task stayed in the set. */
	ZT_CHECK_EQ(zk_joinset_len(c.js), 1);
	void *res;
	ZT_CHECK_EQ(zk_joinset_join_next(c.js, &res, NULL), 0);
	ZT_CHECK_EQ((uintptr_t)res, 40);
	zk_joinset_free(c.js);
	return NULL;
}

Test(joinset, a_cancelled_joiner_takes_no_task)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_joiner, NULL);
	zk_runtime_free(rt);
}

static void *add_one(void *arg)
{
	return (void *)((uintptr_t)arg + 1);
}

struct many {
	zk_joinset_t *js;
	size_t n;
};

static void *spawner(void *arg)
{
	struct many *m = arg;
	for (size_t i = 0; i < m->n; i++)
		ZT_CHECK_EQ(zk_joinset_spawn(m->js, add_one, (void *)(uintptr_t)i, NULL), 0);
	return NULL;
}

static void *many_spawners(void *arg)
{
	struct many *m = arg;
	zk_task_t *h[4];
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], spawner, m), 0);
	uint64_t sum = 0;
	size_t joined = 0;
	while (joined < 4 * m->n) {
		void *res;
		int r = zk_joinset_join_next(m->js, &res, NULL);
		if (r == -ECHILD) {
			zk_sleep_ms(1); /* the spawners are behind */
			continue;
		}
		ZT_CHECK_EQ(r, 0);
		sum += (uintptr_t)res;
		joined++;
	}
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	ZT_CHECK_EQ(sum, 4 * (m->n * (m->n + 1) / 2));
	return NULL;
}

Test(joinset, thousands_of_tasks_spawned_from_several_tasks_are_all_joined, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(4);
	struct many m = {.n = zt_scaled(25000, 2500)};
	cr_assert_eq(zk_joinset_create(&m.js, rt), 0);
	zt_run(rt, many_spawners, &m);
	zk_joinset_free(m.js);
	zk_runtime_free(rt);
}

Test(joinset, a_foreign_thread_can_spawn_into_and_join_a_set)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_joinset_t *js;
	cr_assert_eq(zk_joinset_create(&js, NULL), -EINVAL); /* no runtime here */
	cr_assert_eq(zk_joinset_create(&js, rt), 0);
	for (uintptr_t i = 0; i < 10; i++)
		cr_assert_eq(zk_joinset_spawn(js, add_one, (void *)i, NULL), 0);
	uintptr_t sum = 0;
	void *res;
	int r;
	while ((r = zk_joinset_join_next(js, &res, NULL)) == 0)
		sum += (uintptr_t)res;
	cr_assert_eq(r, -ECHILD);
	cr_assert_eq(sum, 55);
	cr_assert_eq(zk_joinset_spawn(js, sleep_then_return, (void *)(uintptr_t)10000, NULL), 0);
	cr_assert_eq(zk_joinset_shutdown(js), 0);
	cr_assert_eq(zk_joinset_len(js), 0);
	cr_assert_eq(zk_joinset_spawn(js, add_one, NULL, NULL), -ECANCELED);
	zk_joinset_free(js);
	zk_runtime_free(rt);
}

/* ---- scopes ---------------------------------------------------------------------------------- */

struct tree {
	atomic_long alive;
	atomic_long started;
	atomic_long cancelled;
	int depth;
};

struct node {
	struct tree *t;
	int depth;
};

/* Opens a scope with two children (down to depth), then sleeps "forever". */
static void *scoped_node(void *arg)
{
	struct node *n = arg;
	struct tree *t = n->t;
	atomic_fetch_add(&t->alive, 1);
	atomic_fetch_add(&t->started, 1);
	zk_scope_t s;
	ZT_CHECK_EQ(zk_scope_begin(&s, NULL), 0);
	struct node kids[2];
	if (n->depth > 0)
		for (int i = 0; i < 2; i++) {
			kids[i] = (struct node){.t = t, .depth = n->depth - 1};
			ZT_CHECK_EQ(zk_scope_spawn(&s, scoped_node, &kids[i]), 0);
		}
	if (zk_sleep_ms(100000) == -ECANCELED)
		atomic_fetch_add(&t->cancelled, 1);
	/* Ending the scope cancels and joins the children before kids[]
	 * (on this stack) goes away. */
	ZT_CHECK_EQ(zk_scope_end(&s), 0);
	atomic_fetch_sub(&t->alive, 1);
	return NULL;
}

static void *scope_tree(void *arg)
{
	struct tree *t = arg;
	zk_scope_t s;
	ZT_CHECK_EQ(zk_scope_begin(&s, NULL), 0);
	struct node root = {.t = t, .depth = t->depth};
	ZT_CHECK_EQ(zk_scope_spawn(&s, scoped_node, &root), 0);
	long want = (1L << (t->depth + 1)) - 1;
	ZT_CHECK(zt_task_wait_at_least(&t->started, want, 10000));
	ZT_CHECK_EQ(atomic_load(&t->alive), want);
	ZT_CHECK_EQ(zk_scope_end(&s), 0);
	/* Every descendant has returned. */
	ZT_CHECK_EQ(atomic_load(&t->alive), 0);
	ZT_CHECK_EQ(atomic_load(&t->cancelled), want);
	return NULL;
}

Test(joinset, ending_a_scope_cancels_and_joins_a_whole_tree_of_scoped_tasks)
{
	zk_runtime_t *rt = zt_runtime(3);
	struct tree t = {.depth = 4};
	zt_run(rt, scope_tree, &t);
	zk_runtime_free(rt);
}

struct waiter_parent {
	struct tree *t;
	atomic_long waiting;
	atomic_int ret;
	atomic_long alive_at_return;
};

static void *parent_waits(void *arg)
{
	struct waiter_parent *p = arg;
	zk_scope_t s;
	ZT_CHECK_EQ(zk_scope_begin(&s, NULL), 0);
	struct node kids[3];
	for (int i = 0; i < 3; i++) {
		kids[i] = (struct node){.t = p->t, .depth = 1};
		ZT_CHECK_EQ(zk_scope_spawn(&s, scoped_node, &kids[i]), 0);
	}
	atomic_store(&p->waiting, 1);
	atomic_store(&p->ret, zk_scope_wait(&s));
	atomic_store(&p->alive_at_return, atomic_load(&p->t->alive));
	ZT_CHECK_EQ(zk_scope_end(&s), 0);
	return NULL;
}

static void *cancel_waiting_parent(void *arg)
{
	struct tree *t = arg;
	struct waiter_parent p = {.t = t};
	atomic_init(&p.ret, 1);
	atomic_init(&p.alive_at_return, -1);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, parent_waits, &p), 0);
	ZT_CHECK(zt_task_wait_at_least(&t->started, 9, 10000));
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&p.ret), -ECANCELED);
	/* The parent returned from zk_scope_wait only after its children. */
	ZT_CHECK_EQ(atomic_load(&p.alive_at_return), 0);
	ZT_CHECK_EQ(atomic_load(&t->cancelled), 9);
	return NULL;
}

Test(joinset, a_cancelled_parent_cancels_its_children_and_outlives_them)
{
	zk_runtime_t *rt = zt_runtime(3);
	struct tree t = {0};
	zt_run(rt, cancel_waiting_parent, &t);
	zk_runtime_free(rt);
}

static void *short_child(void *arg)
{
	atomic_long *done = arg;
	zk_sleep_ms(5);
	atomic_fetch_add(done, 1);
	return NULL;
}

static void *scope_waits_normally(void *arg)
{
	(void)arg;
	atomic_long done = 0;
	zk_scope_t s;
	ZT_CHECK_EQ(zk_scope_begin(&s, NULL), 0);
	for (int i = 0; i < 20; i++)
		ZT_CHECK_EQ(zk_scope_spawn(&s, short_child, &done), 0);
	ZT_CHECK_EQ(zk_scope_wait(&s), 0);
	ZT_CHECK_EQ(atomic_load(&done), 20);
	/* Still open: more children, then the end. */
	ZT_CHECK_EQ(zk_scope_spawn(&s, short_child, &done), 0);
	ZT_CHECK_EQ(zk_scope_wait(&s), 0);
	ZT_CHECK_EQ(atomic_load(&done), 21);
	ZT_CHECK_EQ(zk_scope_end(&s), 0);
	ZT_CHECK_EQ(zk_scope_spawn(&s, short_child, &done), -EINVAL);
	return NULL;
}

Test(joinset, scope_wait_waits_for_every_child_to_finish)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, scope_waits_normally, NULL);
	zk_runtime_free(rt);
}
