/* tests/test_select.c — select.h: waiting for any / all of several
 * operations, with timeouts and cancel, performing only the winner;
 * zk_timeout_call around arbitrary waits (I/O included). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "helpers.h"
#include "race.h"

TestSuite(select, .timeout = 120);

#define MS ZK_NSEC_PER_MSEC
#define MSG(sender, seq) ((void *)(uintptr_t)(((uint64_t)(sender) << 32) | (uint64_t)(seq)))
#define MSG_SENDER(p) ((unsigned)((uintptr_t)(p) >> 32))
#define MSG_SEQ(p) ((uint32_t)(uintptr_t)(p))

static double slack_ms(void)
{
	return zt_scale() < 1.0 ? 1500 : 500;
}

static zk_chan_t *mk(size_t cap)
{
	zk_chan_t *ch = NULL;
	if (zk_chan_create(&ch, cap) != 0)
		zt_fail(__FILE__, __LINE__, "zk_chan_create");
	return ch;
}

/* ---- basics ------------------------------------------------------------------------------- */

static void *ready_one(void *arg)
{
	(void)arg;
	zk_chan_t *a = mk(4), *b = mk(4);
	ZT_CHECK_EQ(zk_chan_send(b, MSG(0, 7)), 0);
	zk_sel_t ops[2] = {{.kind = ZK_SEL_RECV, .obj = a}, {.kind = ZK_SEL_RECV, .obj = b}};
	ZT_CHECK_EQ(zk_select(ops, 2, ZK_FOREVER), 1);
	ZT_CHECK_EQ(ops[1].res, 0);
	ZT_CHECK(ops[1].value == MSG(0, 7));
	/* Nothing ready, zero timeout: only tries. */
	ZT_CHECK_EQ(zk_select(ops, 2, 0), -ETIMEDOUT);
	/* Disabled ops are ignored; no op at all just times out. */
	ops[0].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_chan_send(a, MSG(0, 1)), 0);
	ZT_CHECK_EQ(zk_select(ops, 2, 5 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_select(NULL, 0, 5 * MS), -ETIMEDOUT);
	void *v;
	ZT_CHECK_EQ(zk_chan_try_recv(a, &v), 0); /* not taken by the select */
	/* Bad input. */
	zk_sel_t bad = {.kind = (zk_sel_kind_t)99, .obj = a};
	ZT_CHECK_EQ(zk_select(&bad, 1, 0), -EINVAL);
	bad.kind = ZK_SEL_RECV;
	bad.obj = NULL;
	ZT_CHECK_EQ(zk_select(&bad, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_select(NULL, 1, 0), -EINVAL);
	/* A closed channel completes the op with -EPIPE. */
	ZT_CHECK_EQ(zk_chan_close(a), 0);
	ops[0].kind = ZK_SEL_RECV;
	ZT_CHECK_EQ(zk_select(ops, 2, ZK_FOREVER), 0);
	ZT_CHECK_EQ(ops[0].res, -EPIPE);
	zk_chan_free(a);
	zk_chan_free(b);
	return NULL;
}

Test(select, returns_the_ready_operation_and_performs_only_it)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, ready_one, NULL);
	zk_runtime_free(rt);
}

struct delayed {
	zk_chan_t *ch;
	zk_notify_t *n;
	int delay_ms;
};

static void *send_after(void *arg)
{
	struct delayed *d = arg;
	zk_sleep_ms((uint64_t)d->delay_ms);
	if (d->ch)
		ZT_CHECK_EQ(zk_chan_send(d->ch, MSG(1, 1)), 0);
	if (d->n)
		ZT_CHECK_EQ(zk_notify_one(d->n), 0);
	return NULL;
}

static void *first_of_many(void *arg)
{
	(void)arg;
	zk_chan_t *a = mk(2), *b = mk(0);
	zk_notify_t n;
	zk_notify_init(&n);
	struct delayed d = {.ch = b, .delay_ms = 20};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_after, &d), 0);
	zk_sel_t ops[3] = {{.kind = ZK_SEL_RECV, .obj = a},
			   {.kind = ZK_SEL_NOTIFY, .obj = &n},
			   {.kind = ZK_SEL_RECV, .obj = b}};
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_select(ops, 3, ZK_FOREVER), 2);
	ZT_CHECK(zt_ms_since(t0) >= 15);
	ZT_CHECK(ops[2].value == MSG(1, 1));
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	/* Now the notify wins, through a timed select. */
	struct delayed e = {.n = &n, .delay_ms = 10};
	ZT_CHECK_EQ(zk_spawn(&h, send_after, &e), 0);
	ZT_CHECK_EQ(zk_select(ops, 3, 5000 * MS), 1);
	ZT_CHECK_EQ(ops[1].res, 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	/* The losers consumed nothing: the notify holds no permit, a and b
	 * are empty and still receivable. */
	ZT_CHECK_EQ(zk_notify_wait_timeout(&n, 0), -ETIMEDOUT);
	void *v;
	ZT_CHECK_EQ(zk_chan_try_recv(a, &v), -EAGAIN);
	ZT_CHECK_EQ(zk_chan_try_recv(b, &v), -EAGAIN);
	zk_chan_free(a);
	zk_chan_free(b);
	return NULL;
}

Test(select, waits_for_the_first_of_several_and_the_others_consume_nothing)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, first_of_many, NULL);
	zk_runtime_free(rt);
	rt = zt_runtime(2);
	zt_run(rt, first_of_many, NULL);
	zk_runtime_free(rt);
}

/* Every kind in one select: only the ready semaphore wins; the held mutex,
 * the empty joinset wait, the unchanged watch are left alone. */
/* Released by all_kinds, in the order it expects the selects to end: no
 * timing decides the order. */
static zk_sem_t mutex_go, sleepy_go, mutex_held;

static void *hold_mutex(void *arg)
{
	zk_mutex_t *m = arg;
	ZT_CHECK_EQ(zk_mutex_lock(m), 0);
	ZT_CHECK_EQ(zk_sem_release(&mutex_held, 1), 0);
	ZT_CHECK_EQ(zk_sem_acquire(&mutex_go, 1), 0);
	ZT_CHECK_EQ(zk_mutex_unlock(m), 0);
	return NULL;
}

static void *sleepy(void *arg)
{
	ZT_CHECK_EQ(zk_sem_acquire(&sleepy_go, 1), 0);
	return arg;
}

static void *all_kinds(void *arg)
{
	(void)arg;
	zk_chan_t *ch = mk(1);
	ZT_CHECK_EQ(zk_chan_send(ch, NULL), 0); /* full: SEND waits */
	zk_sem_init(&mutex_go, 0);
	zk_sem_init(&sleepy_go, 0);
	zk_sem_init(&mutex_held, 0);
	zk_notify_t n;
	zk_notify_init(&n);
	zk_sem_t sem;
	zk_sem_init(&sem, 0);
	zk_mutex_t m;
	zk_mutex_init(&m);
	zk_rwlock_t rw;
	zk_rwlock_init(&rw);
	ZT_CHECK_EQ(zk_rwlock_wrlock(&rw), 0);
	zk_joinset_t *js;
	ZT_CHECK_EQ(zk_joinset_create(&js, NULL), 0);
	ZT_CHECK_EQ(zk_joinset_spawn(js, sleepy, (void *)(uintptr_t)60, NULL), 0);
	zk_watch_t *w;
	ZT_CHECK_EQ(zk_watch_create(&w, NULL), 0);
	zk_watch_rx_t wrx;
	zk_watch_subscribe(w, &wrx);
	zk_bcast_t *b;
	ZT_CHECK_EQ(zk_bcast_create(&b, 4), 0);
	zk_bcast_rx_t brx;
	zk_bcast_subscribe(b, &brx);
	zk_task_t *hm;
	ZT_CHECK_EQ(zk_spawn(&hm, hold_mutex, &m), 0);
	ZT_CHECK_EQ(zk_sem_acquire(&mutex_held, 1), 0);
	zk_sel_t ops[] = {
	    {.kind = ZK_SEL_SEND, .obj = ch, .value = MSG(0, 1)},
	    {.kind = ZK_SEL_NOTIFY, .obj = &n},
	    {.kind = ZK_SEL_ACQUIRE, .obj = &sem, .n = 2},
	    {.kind = ZK_SEL_LOCK, .obj = &m},
	    {.kind = ZK_SEL_RDLOCK, .obj = &rw},
	    {.kind = ZK_SEL_JOIN, .obj = js},
	    {.kind = ZK_SEL_WATCH, .obj = &wrx},
	    {.kind = ZK_SEL_BCAST_RECV, .obj = &brx},
	};
	size_t nops = sizeof(ops) / sizeof(ops[0]);
	ZT_CHECK_EQ(zk_sem_release(&sem, 1), 0); /* not enough */
	ZT_CHECK_EQ(zk_select(ops, nops, 10 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_sem_release(&sem, 1), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 2);
	ZT_CHECK_EQ(ops[2].res, 0);
	ZT_CHECK_EQ(zk_sem_available(&sem), 0);
	/* Then, one by one, each of the others. */
	ops[2].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_sem_release(&mutex_go, 1), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 3); /* the mutex */
	ZT_CHECK_EQ(ops[3].res, 0);
	ops[3].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_sem_release(&sleepy_go, 1), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 5); /* the joinset's task */
	ZT_CHECK_EQ(ops[5].res, 0);
	ZT_CHECK_EQ((uintptr_t)ops[5].value, 60);
	ZT_CHECK(ops[5].n != 0);
	ops[5].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_watch_send(w, (void *)3), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 6);
	ZT_CHECK(ops[6].value == (void *)3);
	ops[6].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_bcast_send(b, (void *)4), 1);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 7);
	ZT_CHECK(ops[7].value == (void *)4);
	ops[7].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_notify_one(&n), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 1);
	ops[1].kind = ZK_SEL_NONE;
	ZT_CHECK_EQ(zk_rwlock_wrunlock(&rw), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 4);
	ops[4].kind = ZK_SEL_NONE;
	void *v;
	ZT_CHECK_EQ(zk_chan_recv(ch, &v), 0);
	ZT_CHECK_EQ(zk_select(ops, nops, ZK_FOREVER), 0);
	ZT_CHECK_EQ(zk_chan_recv(ch, &v), 0);
	ZT_CHECK(v == MSG(0, 1));
	/* The lock select took the mutex and the rdlock a shared lock. */
	ZT_CHECK_EQ(zk_mutex_trylock(&m), -EBUSY);
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_rwlock_trywrlock(&rw), -EBUSY);
	ZT_CHECK_EQ(zk_rwlock_rdunlock(&rw), 0);
	ZT_CHECK_EQ(zk_join(hm, NULL), 0);
	ZT_CHECK_EQ(zk_joinset_join_next(js, NULL, NULL), -ECHILD);
	zk_joinset_free(js);
	zk_watch_free(w);
	zk_bcast_free(b);
	zk_chan_free(ch);
	return NULL;
}

Test(select, every_kind_of_operation_can_be_selected)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, all_kinds, NULL);
	zk_runtime_free(rt);
}

static void *fairness(void *arg)
{
	(void)arg;
	zk_sem_t a, b;
	zk_sem_init(&a, 1000);
	zk_sem_init(&b, 1000);
	zk_sel_t ops[2] = {{.kind = ZK_SEL_ACQUIRE, .obj = &a, .n = 1},
			   {.kind = ZK_SEL_ACQUIRE, .obj = &b, .n = 1}};
	int count[2] = {0, 0};
	for (int i = 0; i < 1000; i++) {
		int r = zk_select(ops, 2, 0);
		ZT_CHECK(r == 0 || r == 1);
		if (r >= 0)
			count[r]++;
	}
	ZT_CHECK(count[0] > 200 && count[1] > 200);
	ZT_CHECK_EQ(zk_sem_available(&a) + zk_sem_available(&b), 1000);
	return NULL;
}

Test(select, when_several_are_ready_the_choice_is_fair)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, fairness, NULL);
	zk_runtime_free(rt);
}

/* ---- timeout and cancel -------------------------------------------------------------------- */

static void *timeout_consumes_nothing(void *arg)
{
	(void)arg;
	zk_chan_t *a = mk(2);
	zk_notify_t n;
	zk_notify_init(&n);
	zk_sel_t ops[2] = {{.kind = ZK_SEL_RECV, .obj = a}, {.kind = ZK_SEL_NOTIFY, .obj = &n}};
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_select(ops, 2, 40 * MS), -ETIMEDOUT);
	double el = zt_ms_since(t0);
	ZT_CHECK(el >= 40 && el < 40 + slack_ms());
	ZT_CHECK_EQ(zk_chan_send(a, MSG(0, 3)), 0);
	ZT_CHECK_EQ(zk_select(ops, 2, 40 * MS), 0);
	ZT_CHECK(ops[0].value == MSG(0, 3));
	zk_chan_free(a);
	return NULL;
}

Test(select, a_timeout_ends_the_wait_and_takes_nothing)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, timeout_consumes_nothing, NULL);
	zk_runtime_free(rt);
}

struct cbox {
	zk_chan_t *a, *b;
	atomic_long waiting;
	atomic_int ret;
};

static void *select_until_cancelled(void *arg)
{
	struct cbox *c = arg;
	zk_sel_t ops[2] = {{.kind = ZK_SEL_RECV, .obj = c->a}, {.kind = ZK_SEL_RECV, .obj = c->b}};
	atomic_store(&c->waiting, 1);
	atomic_store(&c->ret, zk_select(ops, 2, ZK_FOREVER));
	return NULL;
}

static void *cancel_select(void *arg)
{
	(void)arg;
	struct cbox c = {.a = mk(2), .b = mk(0)};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, select_until_cancelled, &c), 0);
	ZT_CHECK(zt_task_wait_at_least(&c.waiting, 1, 10000));
	zk_sleep_ms(10);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&c.ret), -ECANCELED);
	/* Both receivers were withdrawn: we can receive on both now. */
	ZT_CHECK_EQ(zk_chan_send(c.a, MSG(0, 1)), 0);
	ZT_CHECK_EQ(zk_chan_send(c.b, MSG(0, 2)), 0);
	void *v;
	ZT_CHECK_EQ(zk_chan_recv(c.a, &v), 0);
	ZT_CHECK_EQ(zk_chan_recv(c.b, &v), 0);
	zk_chan_free(c.a);
	zk_chan_free(c.b);
	return NULL;
}

Test(select, cancel_wakes_a_select_and_withdraws_every_operation)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_select, NULL);
	zk_runtime_free(rt);
}

/* ---- stress: many producers into several channels, one selecting consumer ----------------- */

struct sp {
	zk_chan_t *ch[4];
	size_t per;
	uint32_t next[4];
};

struct prod {
	zk_chan_t *ch;
	unsigned id;
	size_t n;
};

static void *producer(void *arg)
{
	struct prod *p = arg;
	for (size_t i = 0; i < p->n; i++) {
		ZT_CHECK_EQ(zk_chan_send(p->ch, MSG(p->id, i)), 0);
		if (i % 1024 == 1023)
			zk_yield();
	}
	ZT_CHECK_EQ(zk_chan_sender_drop(p->ch), 0);
	return NULL;
}

static void *select_consumer(void *arg)
{
	struct sp *s = arg;
	struct prod p[4];
	zk_task_t *h[4];
	for (unsigned i = 0; i < 4; i++) {
		ZT_CHECK_EQ(zk_chan_sender_add(s->ch[i]), 0);
		p[i] = (struct prod){.ch = s->ch[i], .id = i, .n = s->per};
		ZT_CHECK_EQ(zk_spawn(&h[i], producer, &p[i]), 0);
	}
	zk_sel_t ops[4];
	for (unsigned i = 0; i < 4; i++)
		ops[i] = (zk_sel_t){.kind = ZK_SEL_RECV, .obj = s->ch[i]};
	unsigned open = 4;
	long timeouts = 0;
	while (open > 0) {
		int r = zk_select(ops, 4, 1 * MS); /* the timer races the wakes */
		if (r == -ETIMEDOUT) {
			timeouts++;
			continue;
		}
		ZT_CHECK(r >= 0 && r < 4);
		if (r < 0)
			break;
		if (ops[r].res == -EPIPE) {
			ops[r].kind = ZK_SEL_NONE;
			open--;
			continue;
		}
		ZT_CHECK_EQ(ops[r].res, 0);
		void *v = ops[r].value;
		if (MSG_SENDER(v) != (unsigned)r || MSG_SEQ(v) != s->next[r]) {
			zt_fail(__FILE__, __LINE__, "chan %d: got %u/%u expected %u", r,
				MSG_SENDER(v), MSG_SEQ(v), s->next[r]);
			break;
		}
		s->next[r]++;
	}
	for (unsigned i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(select, a_selecting_consumer_gets_every_message_once_and_in_order, .timeout = 300)
{
	struct sp s = {.per = zt_scaled(100000, 5000)};
	for (int i = 0; i < 4; i++)
		cr_assert_eq(zk_chan_create(&s.ch[i], i == 3 ? 0 : (size_t)(4 << i)), 0);
	zk_runtime_t *rt = zt_runtime(4);
	zt_run(rt, select_consumer, &s);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(s.next[i], s.per);
		zk_chan_free(s.ch[i]);
	}
	zk_runtime_free(rt);
}

/* Cancel racing a send into one of the selected channels, from two plain
 * threads at the same instant. */
struct srace {
	zk_chan_t *a, *b;
	zk_task_t *h;
	atomic_long ready;
	atomic_long got, cancelled;
	size_t round;
};

static void *race_selector(void *arg)
{
	struct srace *s = arg;
	zk_sel_t ops[2] = {{.kind = ZK_SEL_RECV, .obj = s->a}, {.kind = ZK_SEL_RECV, .obj = s->b}};
	atomic_store(&s->ready, 1);
	int r = zk_select(ops, 2, s->round % 4 == 0 ? MS : ZK_FOREVER);
	if (r >= 0)
		atomic_fetch_add(&s->got, 1);
	else if (r == -ECANCELED)
		atomic_fetch_add(&s->cancelled, 1);
	else
		ZT_CHECK_EQ(r, -ETIMEDOUT);
	return NULL;
}

static void act_send(void *arg)
{
	struct srace *s = arg;
	if (zk_chan_try_send(s->round & 1 ? s->a : s->b, NULL) != 0)
		zt_fail(__FILE__, __LINE__, "try_send");
}

static void act_cancel(void *arg)
{
	struct srace *s = arg;
	zk_cancel(s->h);
}

static void *cancel_vs_send(void *arg)
{
	(void)arg;
	struct srace s = {.a = mk(4), .b = mk(0)};
	size_t rounds = zt_scaled(2000, 200);
	long drained = 0;
	for (size_t i = 0; i < rounds; i++) {
		s.round = i;
		atomic_store(&s.ready, 0);
		ZT_CHECK_EQ(zk_spawn(&s.h, race_selector, &s), 0);
		while (!atomic_load(&s.ready))
			zk_yield();
		if (i % 3 == 0)
			zk_sleep_ms(1);
		zt_race2(act_send, act_cancel, &s);
		ZT_CHECK_EQ(zk_join(s.h, NULL), 0);
		void *v;
		while (zk_chan_try_recv(s.a, &v) == 0)
			drained++;
		while (zk_chan_try_recv(s.b, &v) == 0)
			drained++;
	}
	ZT_CHECK_EQ(atomic_load(&s.got) + drained, (long)rounds);
	ZT_CHECK(atomic_load(&s.cancelled) > 0);
	zk_chan_free(s.a);
	zk_chan_free(s.b);
	return NULL;
}

Test(select, cancel_and_a_send_at_the_same_instant_lose_nothing, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(3);
	zt_run(rt, cancel_vs_send, NULL);
	zk_runtime_free(rt);
}

/* ---- select_all ------------------------------------------------------------------------------ */

static void *wait_all(void *arg)
{
	(void)arg;
	zk_chan_t *a = mk(2), *b = mk(2);
	zk_mutex_t m;
	zk_mutex_init(&m);
	struct delayed d1 = {.ch = a, .delay_ms = 20}, d2 = {.ch = b, .delay_ms = 10};
	zk_task_t *h1, *h2;
	ZT_CHECK_EQ(zk_spawn(&h1, send_after, &d1), 0);
	ZT_CHECK_EQ(zk_spawn(&h2, send_after, &d2), 0);
	zk_sel_t ops[3] = {{.kind = ZK_SEL_RECV, .obj = a},
			   {.kind = ZK_SEL_RECV, .obj = b},
			   {.kind = ZK_SEL_LOCK, .obj = &m}};
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_select_all(ops, 3, ZK_FOREVER), 0);
	ZT_CHECK(zt_ms_since(t0) >= 15);
	for (int i = 0; i < 3; i++)
		ZT_CHECK_EQ(ops[i].res, 0);
	ZT_CHECK(ops[0].value == MSG(1, 1) && ops[1].value == MSG(1, 1));
	ZT_CHECK_EQ(zk_mutex_unlock(&m), 0);
	ZT_CHECK_EQ(zk_join(h1, NULL), 0);
	ZT_CHECK_EQ(zk_join(h2, NULL), 0);
	/* One that never completes: a timeout, and its res says so. */
	ZT_CHECK_EQ(zk_chan_send(a, MSG(0, 5)), 0);
	ZT_CHECK_EQ(zk_select_all(ops, 2, 20 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(ops[0].res, 0);
	ZT_CHECK(ops[0].value == MSG(0, 5));
	ZT_CHECK_EQ(ops[1].res, -EINPROGRESS);
	zk_chan_free(a);
	zk_chan_free(b);
	return NULL;
}

Test(select, select_all_completes_every_operation_or_reports_which_did_not)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, wait_all, NULL);
	zk_runtime_free(rt);
}

/* ---- from a foreign thread -------------------------------------------------------------------- */

static void *send_both_later(void *arg)
{
	zk_chan_t **ch = arg;
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_chan_send(ch[1], MSG(0, 9)), 0);
	return NULL;
}

Test(select, a_foreign_thread_can_select)
{
	zk_chan_t *ch[2];
	cr_assert_eq(zk_chan_create(&ch[0], 2), 0);
	cr_assert_eq(zk_chan_create(&ch[1], 2), 0);
	zk_runtime_t *rt = zt_runtime(2);
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(rt, &h, send_both_later, ch), 0);
	zk_sel_t ops[2] = {{.kind = ZK_SEL_RECV, .obj = ch[0]}, {.kind = ZK_SEL_RECV, .obj = ch[1]}};
	cr_assert_eq(zk_select(ops, 2, 5 * MS), -ETIMEDOUT);
	cr_assert_eq(zk_select(ops, 2, ZK_FOREVER), 1);
	cr_assert_eq(ops[1].value, MSG(0, 9));
	cr_assert_eq(zk_detach(h), 0);
	zk_runtime_free(rt);
	zt_assert_no_failures();
	zk_chan_free(ch[0]);
	zk_chan_free(ch[1]);
}

/* ---- zk_timeout_call ----------------------------------------------------------------------- */

static void *quick(void *arg)
{
	return (void *)((uintptr_t)arg + 1);
}

static void *sleeps_long(void *arg)
{
	(void)arg;
	int r = zk_sleep_ms(10000);
	return (void *)(intptr_t)r;
}

static void *reads_a_silent_pipe(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char c;
	ssize_t r = zk_read(fd, &c, 1, -1);
	return (void *)(intptr_t)r;
}

static void *timeouts_around_anything(void *arg)
{
	(void)arg;
	void *res = NULL;
	ZT_CHECK_EQ(zk_timeout_call(1000 * MS, quick, (void *)41, &res), 0);
	ZT_CHECK_EQ((uintptr_t)res, 42);
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_timeout_call(30 * MS, sleeps_long, NULL, &res), -ETIMEDOUT);
	double el = zt_ms_since(t0);
	ZT_CHECK(el >= 30 && el < 30 + slack_ms());
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED); /* the child saw the cancel */
	/* Around I/O. */
	int p[2];
	ZT_CHECK_EQ(pipe(p), 0);
	t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_timeout_call(30 * MS, reads_a_silent_pipe, (void *)(intptr_t)p[0], &res),
		    -ETIMEDOUT);
	ZT_CHECK(zt_ms_since(t0) < 30 + slack_ms());
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	close(p[0]);
	close(p[1]);
	ZT_CHECK_EQ(zk_timeout_call(10, NULL, NULL, NULL), -EINVAL);
	return NULL;
}

Test(select, timeout_call_bounds_any_wait_including_io)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, timeouts_around_anything, NULL);
	cr_assert_eq(zk_timeout_call(10, quick, NULL, NULL), -EPERM);
	zk_runtime_free(rt);
}

static void *timeout_call_cancelled(void *arg)
{
	atomic_long *child_done = arg;
	(void)child_done;
	void *res;
	int r = zk_timeout_call(ZK_FOREVER, sleeps_long, NULL, &res);
	ZT_CHECK_EQ(r, -ECANCELED);
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	return NULL;
}

static void *cancel_timeout_caller(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, timeout_call_cancelled, NULL), 0);
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(select, cancelling_a_timeout_call_cancels_and_waits_for_the_child)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_timeout_caller, NULL);
	zk_runtime_free(rt);
}

/* ---- shutdown -------------------------------------------------------------------------------- */

struct forever {
	zk_chan_t *ch;
	zk_mutex_t m;
	zk_sem_t sem;
	zk_notify_t n;
	zk_barrier_t b;
	zk_rwlock_t rw;
	atomic_long blocked;
	atomic_long cancelled;
};

static void count_result(struct forever *f, int r)
{
	if (r == -ECANCELED)
		atomic_fetch_add(&f->cancelled, 1);
	else
		zt_fail(__FILE__, __LINE__, "blocked call returned %d", r);
}

static void *block_recv(void *arg)
{
	struct forever *f = arg;
	void *v;
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_chan_recv_timeout(f->ch, &v, 3600 * ZK_NSEC_PER_SEC));
	return NULL;
}

static void *block_lock(void *arg)
{
	struct forever *f = arg;
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_mutex_lock(&f->m));
	return NULL;
}

static void *block_acquire(void *arg)
{
	struct forever *f = arg;
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_sem_acquire_timeout(&f->sem, 1, 3600 * ZK_NSEC_PER_SEC));
	return NULL;
}

static void *block_notify(void *arg)
{
	struct forever *f = arg;
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_notify_wait(&f->n));
	return NULL;
}

static void *block_barrier(void *arg)
{
	struct forever *f = arg;
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_barrier_wait(&f->b));
	return NULL;
}

static void *block_rwlock(void *arg)
{
	struct forever *f = arg;
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_rwlock_wrlock_timeout(&f->rw, 3600 * ZK_NSEC_PER_SEC));
	return NULL;
}

static void *block_select(void *arg)
{
	struct forever *f = arg;
	zk_sel_t ops[2] = {{.kind = ZK_SEL_NOTIFY, .obj = &f->n}, {.kind = ZK_SEL_LOCK, .obj = &f->m}};
	atomic_fetch_add(&f->blocked, 1);
	count_result(f, zk_select(ops, 2, ZK_FOREVER));
	return NULL;
}

static void *block_everything(void *arg)
{
	struct forever *f = arg;
	ZT_CHECK_EQ(zk_mutex_lock(&f->m), 0); /* held forever */
	ZT_CHECK_EQ(zk_rwlock_rdlock(&f->rw), 0);
	zk_task_fn fns[] = {block_recv, block_lock, block_acquire, block_notify,
			    block_barrier, block_rwlock, block_select};
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		for (int k = 0; k < (i == 0 ? 1 : 3); k++) /* one receiver: MPSC */
			ZT_CHECK_EQ(zk_spawn(NULL, fns[i], f), 0);
	ZT_CHECK(zt_task_wait_at_least(&f->blocked, 19, 10000));
	zk_sleep_ms(10);
	return NULL;
}

Test(select, shutdown_cancels_tasks_blocked_in_every_primitive)
{
	static struct forever f;
	cr_assert_eq(zk_chan_create(&f.ch, 1), 0);
	zk_mutex_init(&f.m);
	zk_sem_init(&f.sem, 0);
	zk_notify_init(&f.n);
	zk_barrier_init(&f.b, 100);
	zk_rwlock_init(&f.rw);
	zk_runtime_t *rt = zt_runtime(3);
	zt_run(rt, block_everything, &f);
	uint64_t t0 = zk_now_ns();
	zk_runtime_free(rt); /* cancels them all and waits for them */
	cr_assert_lt(zt_ms_since(t0), 5000);
	zt_assert_no_failures();
	cr_assert_eq(atomic_load(&f.cancelled), 19);
	zk_chan_free(f.ch);
}
