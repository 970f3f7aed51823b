/* tests/test_chan.c — sync.h: MPSC channels (bounded and unbounded),
 * broadcast and watch channels: order, waiting, close, timeouts, cancel,
 * foreign threads, and many producers at once with nothing lost or
 * duplicated. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "race.h"

TestSuite(chan, .timeout = 120);

#define MS ZK_NSEC_PER_MSEC
#define MSG(sender, seq) ((void *)(uintptr_t)(((uint64_t)(sender) << 32) | (uint64_t)(seq)))
#define MSG_SENDER(p) ((unsigned)((uintptr_t)(p) >> 32))
#define MSG_SEQ(p) ((uint32_t)(uintptr_t)(p))

/* Lateness allowed for timers: looser under sanitizers. */
static double slack_ms(void)
{
	return zt_scale() < 1.0 ? 1500 : 500;
}

static zk_chan_t *mk(size_t cap)
{
	zk_chan_t *ch = NULL;
	int r = zk_chan_create(&ch, cap);
	if (r != 0)
		zt_fail(__FILE__, __LINE__, "zk_chan_create(%zu) = %d", cap, r);
	return ch;
}

/* ---- basics ------------------------------------------------------------------------ */

static void *fifo_order(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	zk_chan_t *ch = mk(cap);
	size_t n = cap ? cap : 1000; /* unbounded: well past the initial ring */
	for (size_t i = 0; i < n; i++)
		ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, i)), 0);
	ZT_CHECK_EQ(zk_chan_len(ch), n);
	if (cap)
		ZT_CHECK_EQ(zk_chan_try_send(ch, MSG(0, n)), -EAGAIN);
	for (size_t i = 0; i < n; i++) {
		void *v = NULL;
		ZT_CHECK_EQ(zk_chan_recv(ch, &v), 0);
		ZT_CHECK_EQ(MSG_SEQ(v), i);
	}
	void *v = (void *)1;
	ZT_CHECK_EQ(zk_chan_try_recv(ch, &v), -EAGAIN);
	ZT_CHECK(v == (void *)1);
	ZT_CHECK_EQ(zk_chan_len(ch), 0);
	zk_chan_free(ch);
	return NULL;
}

Test(chan, bounded_delivers_in_fifo_order_and_refuses_when_full)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, fifo_order, (void *)(uintptr_t)8);
	zt_run(rt, fifo_order, (void *)(uintptr_t)5); /* not a power of two */
	zt_run(rt, fifo_order, (void *)(uintptr_t)1);
	zk_runtime_free(rt);
}

Test(chan, unbounded_grows_and_keeps_fifo_order)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, fifo_order, (void *)(uintptr_t)0);
	zk_runtime_free(rt);
}

Test(chan, bad_arguments_are_einval)
{
	zk_chan_t *ch;
	cr_assert_eq(zk_chan_create(NULL, 4), -EINVAL);
	cr_assert_eq(zk_chan_send(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_chan_try_send(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_chan_recv(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_chan_try_recv(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_chan_close(NULL), -EINVAL);
	cr_assert_eq(zk_chan_create(&ch, 4), 0);
	void *buf[2];
	cr_assert_eq(zk_chan_try_recv_many(ch, buf, 0), -EINVAL);
	cr_assert_eq(zk_chan_try_recv_many(ch, NULL, 2), -EINVAL);
	cr_assert_eq(zk_chan_sender_drop(ch), -EINVAL);
	zk_chan_free(ch);
	zk_chan_free(NULL);
}

struct later {
	zk_chan_t *ch;
	atomic_long waiting;
	int delay_ms;
	int count;
};

static void *send_later(void *arg)
{
	struct later *l = arg;
	ZT_CHECK(zt_task_wait_at_least(&l->waiting, 1, 10000));
	zk_sleep_ms((uint64_t)l->delay_ms);
	for (int i = 0; i < l->count; i++)
		ZT_CHECK_EQ(zk_chan_send(l->ch, MSG(1, i)), 0);
	return NULL;
}

static void *recv_waits(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	struct later l = {.ch = mk(cap), .delay_ms = 30, .count = 1};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_later, &l), 0);
	atomic_store(&l.waiting, 1);
	uint64_t t0 = zk_now_ns();
	void *v = NULL;
	ZT_CHECK_EQ(zk_chan_recv(l.ch, &v), 0);
	ZT_CHECK(v == MSG(1, 0));
	ZT_CHECK(zt_ms_since(t0) >= 25);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	zk_chan_free(l.ch);
	return NULL;
}

Test(chan, recv_suspends_until_a_message_arrives)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, recv_waits, (void *)(uintptr_t)4);
	zt_run(rt, recv_waits, (void *)(uintptr_t)0);
	zk_runtime_free(rt);
	rt = zt_runtime(2);
	zt_run(rt, recv_waits, (void *)(uintptr_t)4);
	zt_run(rt, recv_waits, (void *)(uintptr_t)0);
	zk_runtime_free(rt);
}

static void *drain_slowly(void *arg)
{
	struct later *l = arg;
	ZT_CHECK(zt_task_wait_at_least(&l->waiting, 1, 10000));
	zk_sleep_ms(30);
	for (int i = 0; i < l->count; i++) {
		void *v = NULL;
		ZT_CHECK_EQ(zk_chan_recv(l->ch, &v), 0);
		ZT_CHECK_EQ(MSG_SEQ(v), i);
	}
	return NULL;
}

static void *send_waits_while_full(void *arg)
{
	(void)arg;
	struct later l = {.ch = mk(2), .count = 5};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, drain_slowly, &l), 0);
	ZT_CHECK_EQ(zk_chan_send(l.ch, MSG(0, 0)), 0);
	ZT_CHECK_EQ(zk_chan_send(l.ch, MSG(0, 1)), 0);
	atomic_store(&l.waiting, 1);
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_chan_send(l.ch, MSG(0, 2)), 0); /* full: waits for the drain */
	ZT_CHECK(zt_ms_since(t0) >= 25);
	ZT_CHECK_EQ(zk_chan_send(l.ch, MSG(0, 3)), 0);
	ZT_CHECK_EQ(zk_chan_send(l.ch, MSG(0, 4)), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	zk_chan_free(l.ch);
	return NULL;
}

Test(chan, send_on_a_full_channel_suspends_until_there_is_room)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, send_waits_while_full, NULL);
	zk_runtime_free(rt);
	rt = zt_runtime(2);
	zt_run(rt, send_waits_while_full, NULL);
	zk_runtime_free(rt);
}

static void *batch_receive(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	zk_chan_t *ch = mk(cap);
	for (int i = 0; i < 10; i++)
		ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, i)), 0);
	void *buf[4];
	int got = 0;
	while (got < 10) {
		int r = zk_chan_recv_many(ch, buf, 4);
		ZT_CHECK(r >= 1 && r <= 4);
		if (r < 1)
			break;
		for (int k = 0; k < r; k++)
			ZT_CHECK_EQ(MSG_SEQ(buf[k]), got + k);
		got += r;
	}
	ZT_CHECK_EQ(zk_chan_try_recv_many(ch, buf, 4), -EAGAIN);
	ZT_CHECK_EQ(zk_chan_recv_many_timeout(ch, buf, 4, 5 * MS), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_chan_close(ch), 0);
	ZT_CHECK_EQ(zk_chan_recv_many(ch, buf, 4), -EPIPE);
	zk_chan_free(ch);
	return NULL;
}

Test(chan, recv_many_takes_a_batch_in_order)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, batch_receive, (void *)(uintptr_t)16);
	zt_run(rt, batch_receive, (void *)(uintptr_t)0);
	zk_runtime_free(rt);
}

/* ---- close ---------------------------------------------------------------------------- */

static void *close_drains(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	zk_chan_t *ch = mk(cap);
	ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, 1)), 0);
	ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, 2)), 0);
	ZT_CHECK(!zk_chan_is_closed(ch));
	ZT_CHECK_EQ(zk_chan_close(ch), 0);
	ZT_CHECK(zk_chan_is_closed(ch));
	ZT_CHECK_EQ(zk_chan_close(ch), -EALREADY);
	ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, 3)), -EPIPE);
	ZT_CHECK_EQ(zk_chan_try_send(ch, MSG(0, 3)), -EPIPE);
	void *v = NULL;
	ZT_CHECK_EQ(zk_chan_recv(ch, &v), 0);
	ZT_CHECK(v == MSG(0, 1));
	ZT_CHECK_EQ(zk_chan_try_recv(ch, &v), 0);
	ZT_CHECK(v == MSG(0, 2));
	ZT_CHECK_EQ(zk_chan_recv(ch, &v), -EPIPE);
	ZT_CHECK_EQ(zk_chan_try_recv(ch, &v), -EPIPE);
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 10 * MS), -EPIPE);
	zk_chan_free(ch);
	return NULL;
}

Test(chan, after_close_the_receiver_drains_then_gets_epipe_and_senders_get_epipe)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, close_drains, (void *)(uintptr_t)4);
	zt_run(rt, close_drains, (void *)(uintptr_t)0);
	zk_runtime_free(rt);
}

struct closer {
	zk_chan_t *ch;
	atomic_long waiting;
};

static void *close_later(void *arg)
{
	struct closer *c = arg;
	ZT_CHECK(zt_task_wait_at_least(&c->waiting, 1, 10000));
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_chan_close(c->ch), 0);
	return NULL;
}

static void *close_wakes_waiters(void *arg)
{
	(void)arg;
	/* A waiting receiver. */
	struct closer c = {.ch = mk(2)};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, close_later, &c), 0);
	atomic_store(&c.waiting, 1);
	void *v;
	ZT_CHECK_EQ(zk_chan_recv(c.ch, &v), -EPIPE);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	zk_chan_free(c.ch);
	/* A waiting sender on a full channel. */
	struct closer d = {.ch = mk(1)};
	ZT_CHECK_EQ(zk_chan_send(d.ch, MSG(0, 0)), 0);
	ZT_CHECK_EQ(zk_spawn(&h, close_later, &d), 0);
	atomic_store(&d.waiting, 1);
	ZT_CHECK_EQ(zk_chan_send(d.ch, MSG(0, 1)), -EPIPE);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	/* The message sent before the close is still there. */
	ZT_CHECK_EQ(zk_chan_recv(d.ch, &v), 0);
	ZT_CHECK(v == MSG(0, 0));
	ZT_CHECK_EQ(zk_chan_recv(d.ch, &v), -EPIPE);
	zk_chan_free(d.ch);
	return NULL;
}

Test(chan, close_wakes_a_waiting_receiver_and_a_waiting_sender_with_epipe)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, close_wakes_waiters, NULL);
	zk_runtime_free(rt);
}

struct counted {
	zk_chan_t *ch;
	int id;
	int n;
};

static void *counted_sender(void *arg)
{
	struct counted *c = arg;
	for (int i = 0; i < c->n; i++)
		ZT_CHECK_EQ(zk_chan_send(c->ch, MSG(c->id, i)), 0);
	ZT_CHECK_EQ(zk_chan_sender_drop(c->ch), 0);
	return NULL;
}

static void *last_sender_closes(void *arg)
{
	(void)arg;
	zk_chan_t *ch = mk(3);
	struct counted c[4];
	for (int i = 0; i < 4; i++) {
		c[i] = (struct counted){.ch = ch, .id = i, .n = 50};
		ZT_CHECK_EQ(zk_chan_sender_add(ch), 0);
	}
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_spawn(NULL, counted_sender, &c[i]), 0);
	int got = 0;
	void *v;
	int r;
	while ((r = zk_chan_recv(ch, &v)) == 0)
		got++;
	ZT_CHECK_EQ(r, -EPIPE);
	ZT_CHECK_EQ(got, 200);
	zk_chan_free(ch);
	return NULL;
}

Test(chan, dropping_the_last_registered_sender_closes_the_channel)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, last_sender_closes, NULL);
	zk_runtime_free(rt);
}

/* ---- timeouts ------------------------------------------------------------------------------ */

static void *timeouts(void *arg)
{
	(void)arg;
	zk_chan_t *ch = mk(1);
	void *v = (void *)7;
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 30 * MS), -ETIMEDOUT);
	double el = zt_ms_since(t0);
	ZT_CHECK(el >= 30 && el < 30 + slack_ms());
	ZT_CHECK(v == (void *)7);
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, 0)), 0);
	t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_chan_send_timeout(ch, MSG(0, 1), 30 * MS), -ETIMEDOUT);
	el = zt_ms_since(t0);
	ZT_CHECK(el >= 30 && el < 30 + slack_ms());
	/* The timed-out send sent nothing. */
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, ZK_FOREVER), 0);
	ZT_CHECK(v == MSG(0, 0));
	ZT_CHECK_EQ(zk_chan_try_recv(ch, &v), -EAGAIN);
	/* A message that arrives before the deadline ends the wait early. */
	ZT_CHECK_EQ(zk_chan_send_timeout(ch, MSG(0, 2), 30 * MS), 0);
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 1000 * MS), 0);
	ZT_CHECK(v == MSG(0, 2));
	zk_chan_free(ch);
	return NULL;
}

Test(chan, recv_and_send_timeouts_expire_without_side_effects)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, timeouts, NULL);
	zk_runtime_free(rt);
}

struct tsend {
	zk_chan_t *ch;
	int count;
	atomic_long waiting;
};

static void *foreign_paced_sender(void *arg)
{
	struct tsend *t = arg;
	if (!zt_wait_at_least(&t->waiting, 1, 10000))
		return NULL;
	for (int i = 0; i < t->count; i++) {
		if (i % 16 == 0)
			zt_msleep(1);
		if (zk_chan_send(t->ch, MSG(1, i)) != 0)
			zt_fail(__FILE__, __LINE__, "send %d", i);
	}
	return NULL;
}

static void *timed_recv_loop(void *arg)
{
	struct tsend *t = arg;
	atomic_store(&t->waiting, 1);
	uint64_t t0 = zk_now_ns();
	for (int i = 0; i < t->count; i++) {
		void *v;
		ZT_CHECK_EQ(zk_chan_recv_timeout(t->ch, &v, 5000 * MS), 0);
		ZT_CHECK(v == MSG(1, i));
	}
	ZT_CHECK(zt_ms_since(t0) < 4000);
	return NULL;
}

Test(chan, a_timed_recv_woken_from_another_thread_returns_the_message)
{
	/* The timer sits on the wheel of the worker where the wait began; the
	 * wake comes from a plain thread, and the task resumes on whichever
	 * worker takes it from the global queue: the timer must then be
	 * removed on its own worker (a remote disarm) before the task goes on. */
	zk_runtime_t *rt = zt_runtime(3);
	for (int round = 0; round < 2; round++) {
		struct tsend t = {.ch = mk(round ? 0 : 4), .count = (int)zt_scaled(3000, 300)};
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, foreign_paced_sender, &t), 0);
		zt_run(rt, timed_recv_loop, &t);
		pthread_join(th, NULL);
		zk_chan_free(t.ch);
	}
	zt_assert_no_failures();
	zk_runtime_free(rt);
}

/* ---- cancel --------------------------------------------------------------------------------- */

struct cancel_box {
	zk_chan_t *ch;
	atomic_long waiting;
	int ret;
	void *v;
};

static void *blocked_recv(void *arg)
{
	struct cancel_box *b = arg;
	atomic_store(&b->waiting, 1);
	b->ret = zk_chan_recv(b->ch, &b->v);
	return NULL;
}

static void *blocked_send(void *arg)
{
	struct cancel_box *b = arg;
	atomic_store(&b->waiting, 1);
	b->ret = zk_chan_send(b->ch, MSG(9, 9));
	return NULL;
}

static void *cancel_recv_and_send(void *arg)
{
	size_t cap = (size_t)(uintptr_t)arg;
	struct cancel_box b = {.ch = mk(cap), .v = (void *)3};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, blocked_recv, &b), 0);
	ZT_CHECK(zt_task_wait_at_least(&b.waiting, 1, 10000));
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(b.ret, -ECANCELED);
	ZT_CHECK(b.v == (void *)3);
	/* Nothing lost: the next receive gets a later message. */
	ZT_CHECK_EQ(zk_chan_send(b.ch, MSG(0, 5)), 0);
	void *v;
	ZT_CHECK_EQ(zk_chan_recv(b.ch, &v), 0);
	ZT_CHECK(v == MSG(0, 5));
	if (cap) {
		/* A sender blocked on a full channel. */
		for (size_t i = 0; i < cap; i++)
			ZT_CHECK_EQ(zk_chan_send(b.ch, MSG(0, i)), 0);
		atomic_store(&b.waiting, 0);
		ZT_CHECK_EQ(zk_spawn(&h, blocked_send, &b), 0);
		ZT_CHECK(zt_task_wait_at_least(&b.waiting, 1, 10000));
		zk_sleep_ms(20);
		ZT_CHECK_EQ(zk_cancel(h), 0);
		ZT_CHECK_EQ(zk_join(h, NULL), 0);
		ZT_CHECK_EQ(b.ret, -ECANCELED);
		for (size_t i = 0; i < cap; i++) {
			ZT_CHECK_EQ(zk_chan_recv(b.ch, &v), 0);
			ZT_CHECK(v == MSG(0, i));
		}
		ZT_CHECK_EQ(zk_chan_try_recv(b.ch, &v), -EAGAIN); /* it sent nothing */
	}
	zk_chan_free(b.ch);
	return NULL;
}

Test(chan, cancel_wakes_task_blocked_in_recv_or_send_and_nothing_is_lost)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_recv_and_send, (void *)(uintptr_t)2);
	zt_run(rt, cancel_recv_and_send, (void *)(uintptr_t)0);
	zk_runtime_free(rt);
}

static void *cancelled_before(void *arg)
{
	zk_chan_t *ch = arg;
	ZT_CHECK(zk_cancelled());
	void *v;
	ZT_CHECK_EQ(zk_chan_recv(ch, &v), -ECANCELED);
	ZT_CHECK_EQ(zk_chan_recv_timeout(ch, &v, 10 * MS), -ECANCELED);
	/* Non-waiting calls still work in a cancelled task. */
	ZT_CHECK_EQ(zk_chan_try_send(ch, MSG(0, 1)), 0);
	/* A receive that can complete at once completes. */
	ZT_CHECK_EQ(zk_chan_recv(ch, &v), 0);
	return NULL;
}

static void *spawn_cancelled(void *arg)
{
	zk_chan_t *ch = mk(2);
	zk_task_t *h;
	(void)arg;
	ZT_CHECK_EQ(zk_spawn(&h, cancelled_before, ch), 0);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	/* Cancelled before it started: it never runs. */
	ZT_CHECK_EQ(zk_join(h, NULL), -ECANCELED);
	zk_chan_free(ch);
	return NULL;
}

struct selfc {
	zk_chan_t *ch;
	atomic_long started;
	atomic_long go;
};

static void *wait_go_then_recv(void *arg)
{
	struct selfc *s = arg;
	atomic_store(&s->started, 1);
	while (!atomic_load(&s->go))
		zk_yield();
	return cancelled_before(s->ch);
}

static void *cancel_running(void *arg)
{
	(void)arg;
	struct selfc s = {.ch = mk(2)};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, wait_go_then_recv, &s), 0);
	ZT_CHECK(zt_task_wait_at_least(&s.started, 1, 10000));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	atomic_store(&s.go, 1);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	zk_chan_free(s.ch);
	return NULL;
}

Test(chan, a_cancelled_task_gets_ecanceled_without_waiting)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, spawn_cancelled, NULL);
	zt_run(rt, cancel_running, NULL);
	zk_runtime_free(rt);
}

static void *busy_second_receiver(void *arg)
{
	(void)arg;
	struct cancel_box b = {.ch = mk(4)};
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, blocked_recv, &b), 0);
	ZT_CHECK(zt_task_wait_at_least(&b.waiting, 1, 10000));
	zk_sleep_ms(20);
	void *v;
	ZT_CHECK_EQ(zk_chan_recv(b.ch, &v), -EBUSY);
	ZT_CHECK_EQ(zk_chan_send(b.ch, MSG(0, 1)), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(b.ret, 0);
	ZT_CHECK(b.v == MSG(0, 1));
	zk_chan_free(b.ch);
	return NULL;
}

Test(chan, a_second_waiting_receiver_is_ebusy)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, busy_second_receiver, NULL);
	zk_runtime_free(rt);
}

/* Outside a task on a worker thread is impossible to reach from a test;
 * from a foreign thread the waiting calls block it (below). */

/* ---- foreign threads ------------------------------------------------------------------------ */

struct foreign_tx {
	zk_chan_t *ch;
	unsigned id;
	size_t n;
	bool use_try;
	atomic_long *eagain;
};

static void *foreign_sender(void *arg)
{
	struct foreign_tx *f = arg;
	for (size_t i = 0; i < f->n; i++) {
		if (f->use_try) {
			int r;
			while ((r = zk_chan_try_send(f->ch, MSG(f->id, i))) == -EAGAIN) {
				atomic_fetch_add(f->eagain, 1);
				zt_msleep(1);
			}
			if (r != 0)
				zt_fail(__FILE__, __LINE__, "try_send = %d", r);
		} else {
			int r = zk_chan_send(f->ch, MSG(f->id, i));
			if (r != 0)
				zt_fail(__FILE__, __LINE__, "send = %d", r);
		}
	}
	return NULL;
}

struct task_tx {
	zk_chan_t *ch;
	unsigned id;
	size_t n;
};

static void *task_sender(void *arg)
{
	struct task_tx *t = arg;
	for (size_t i = 0; i < t->n; i++) {
		int r = zk_chan_send(t->ch, MSG(t->id, i));
		if (r != 0) {
			zt_fail(__FILE__, __LINE__, "send = %d", r);
			break;
		}
		/* Some migration between workers on the way. */
		if (i % 4096 == 4095)
			zk_yield();
	}
	return NULL;
}

struct mp {
	zk_chan_t *ch;
	unsigned ntask, nforeign;
	size_t per_sender;
	bool batch;
	uint32_t *next; /* per sender: next expected seq */
};

static void *consume_all(void *arg)
{
	struct mp *m = arg;
	unsigned nsend = m->ntask + m->nforeign;
	size_t total = (size_t)nsend * m->per_sender;
	struct task_tx *tt = calloc(m->ntask, sizeof(*tt));
	zk_task_t **hs = calloc(m->ntask, sizeof(*hs));
	for (unsigned i = 0; i < m->ntask; i++) {
		tt[i] = (struct task_tx){.ch = m->ch, .id = m->nforeign + i, .n = m->per_sender};
		ZT_CHECK_EQ(zk_spawn(&hs[i], task_sender, &tt[i]), 0);
	}
	size_t got = 0;
	void *buf[64];
	while (got < total) {
		int r = m->batch ? zk_chan_recv_many(m->ch, buf, 64) : zk_chan_recv(m->ch, &buf[0]);
		if (r < 0) {
			zt_fail(__FILE__, __LINE__, "recv = %d after %zu", r, got);
			break;
		}
		int k = m->batch ? r : 1;
		for (int j = 0; j < k; j++) {
			unsigned s = MSG_SENDER(buf[j]);
			if (s >= nsend || MSG_SEQ(buf[j]) != m->next[s]) {
				zt_fail(__FILE__, __LINE__, "sender %u: got seq %u, expected %u", s,
					MSG_SEQ(buf[j]), s < nsend ? m->next[s] : 0);
				got = total;
				break;
			}
			m->next[s]++;
		}
		got += (size_t)k;
	}
	void *v;
	ZT_CHECK_EQ(zk_chan_try_recv(m->ch, &v), -EAGAIN);
	for (unsigned i = 0; i < m->ntask; i++)
		ZT_CHECK_EQ(zk_join(hs[i], NULL), 0);
	free(tt);
	free(hs);
	return NULL;
}

static void many_producers(size_t total, unsigned workers, size_t cap, unsigned ntask,
			   unsigned nforeign, bool foreign_try, bool batch)
{
	unsigned nsend = ntask + nforeign;
	struct mp m = {.ch = NULL, .ntask = ntask, .nforeign = nforeign,
		       .per_sender = total / nsend, .batch = batch};
	cr_assert_eq(zk_chan_create(&m.ch, cap), 0);
	m.next = calloc(nsend, sizeof(uint32_t));
	atomic_long eagain = 0;
	zk_runtime_t *rt = zt_runtime(workers);
	pthread_t th[8];
	struct foreign_tx ft[8];
	for (unsigned i = 0; i < nforeign; i++) {
		ft[i] = (struct foreign_tx){.ch = m.ch, .id = i, .n = m.per_sender,
					    .use_try = foreign_try, .eagain = &eagain};
		cr_assert_eq(pthread_create(&th[i], NULL, foreign_sender, &ft[i]), 0);
	}
	zt_run(rt, consume_all, &m);
	for (unsigned i = 0; i < nforeign; i++)
		pthread_join(th[i], NULL);
	for (unsigned s = 0; s < nsend; s++)
		cr_assert_eq(m.next[s], m.per_sender, "sender %u: %u of %zu", s, m.next[s],
			     m.per_sender);
	zk_runtime_free(rt);
	zk_chan_free(m.ch);
	free(m.next);
}

Test(chan, a_million_messages_from_tasks_and_foreign_threads_bounded, .timeout = 300)
{
	many_producers(zt_scaled(1000000, 20000), 4, 128, 4, 2, false, false);
}

Test(chan, a_million_messages_batch_received_from_a_tiny_bounded_channel, .timeout = 300)
{
	many_producers(zt_scaled(1000000, 20000), 3, 3, 3, 2, false, true);
}

Test(chan, a_million_messages_unbounded_with_foreign_try_send, .timeout = 300)
{
	many_producers(zt_scaled(1000000, 20000), 4, 0, 3, 3, true, true);
}

Test(chan, foreign_try_send_on_a_full_channel_is_eagain)
{
	/* The test's own thread is foreign too. */
	zk_chan_t *ch;
	cr_assert_eq(zk_chan_create(&ch, 2), 0);
	cr_assert_eq(zk_chan_try_send(ch, NULL), 0);
	cr_assert_eq(zk_chan_try_send(ch, NULL), 0);
	cr_assert_eq(zk_chan_try_send(ch, NULL), -EAGAIN);
	zk_chan_free(ch);
	/* The foreign senders back off 1 ms on each -EAGAIN. */
	many_producers(zt_scaled(20000, 2000), 2, 4, 0, 2, true, false);
}

static void *foreign_receiver(void *arg)
{
	zk_chan_t *ch = arg;
	void *v = NULL;
	/* Blocks this plain thread, with and without a timeout. */
	int r = zk_chan_recv_timeout(ch, &v, 20 * MS);
	if (r != -ETIMEDOUT)
		zt_fail(__FILE__, __LINE__, "foreign recv_timeout = %d", r);
	for (int i = 0; i < 100; i++) {
		r = zk_chan_recv(ch, &v);
		if (r != 0 || v != MSG(0, i))
			zt_fail(__FILE__, __LINE__, "foreign recv %d = %d", i, r);
	}
	return NULL;
}

static void *send_hundred(void *arg)
{
	zk_chan_t *ch = arg;
	zk_sleep_ms(40);
	for (int i = 0; i < 100; i++)
		ZT_CHECK_EQ(zk_chan_send(ch, MSG(0, i)), 0);
	return NULL;
}

Test(chan, a_foreign_thread_may_block_in_recv)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_chan_t *ch;
	cr_assert_eq(zk_chan_create(&ch, 2), 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, foreign_receiver, ch), 0);
	zt_run(rt, send_hundred, ch);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	zk_runtime_free(rt);
	zk_chan_free(ch);
}

/* ---- races: cancel and timeout against sends ---------------------------------------------- */

struct race {
	zk_chan_t *ch;
	zk_task_t *rx;
	atomic_long received;
	atomic_long cancelled;
	atomic_long timedout;
	atomic_long ready;
	int timeout_ms;  /* on every fourth round */
	size_t round;
};

static void *racing_receiver(void *arg)
{
	struct race *r = arg;
	void *v;
	atomic_store(&r->ready, 1);
	int ret = r->timeout_ms && r->round % 4 == 0 ? zk_chan_recv_timeout(r->ch, &v, (uint64_t)r->timeout_ms * MS)
				: zk_chan_recv(r->ch, &v);
	if (ret == 0)
		atomic_fetch_add(&r->received, 1);
	else if (ret == -ECANCELED)
		atomic_fetch_add(&r->cancelled, 1);
	else if (ret == -ETIMEDOUT)
		atomic_fetch_add(&r->timedout, 1);
	else
		zt_fail(__FILE__, __LINE__, "recv = %d", ret);
	return NULL;
}

static void act_send(void *arg)
{
	struct race *r = arg;
	int ret = zk_chan_try_send(r->ch, MSG(0, 1));
	if (ret != 0)
		zt_fail(__FILE__, __LINE__, "try_send = %d", ret);
}

static void act_cancel(void *arg)
{
	struct race *r = arg;
	zk_cancel(r->rx);
}

/* Each round: a receiver waits (or is about to); a plain thread sends and
 * another cancels it at the same instant. Whatever wins, the message is
 * received exactly once: by this receiver, or by the drain afterwards. */
static void *cancel_vs_send(void *arg)
{
	struct race *r = arg;
	size_t rounds = zt_scaled(2000, 200);
	long drained = 0;
	for (size_t i = 0; i < rounds; i++) {
		atomic_store(&r->ready, 0);
		r->round = i;
		ZT_CHECK_EQ(zk_spawn(&r->rx, racing_receiver, r), 0);
		while (!atomic_load(&r->ready))
			zk_yield();
		if (i % 3 == 0)
			zk_sleep_ms(1); /* sometimes surely parked by now */
		zt_race2(act_send, act_cancel, r);
		ZT_CHECK_EQ(zk_join(r->rx, NULL), 0);
		void *v;
		while (zk_chan_try_recv(r->ch, &v) == 0)
			drained++;
	}
	ZT_CHECK_EQ(atomic_load(&r->received) + drained, (long)rounds);
	ZT_CHECK_EQ(atomic_load(&r->received) + atomic_load(&r->cancelled) +
			atomic_load(&r->timedout),
		    (long)rounds);
	/* Both outcomes happened (otherwise the race was not a race). */
	ZT_CHECK(atomic_load(&r->cancelled) > 0);
	return NULL;
}

Test(chan, cancel_and_send_at_the_same_instant_lose_and_duplicate_nothing, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(3);
	struct race r = {0};
	r.ch = mk(4);
	zt_run(rt, cancel_vs_send, &r);
	zk_chan_free(r.ch);
	struct race u = {0};
	u.ch = mk(0);
	u.timeout_ms = 1; /* and the timer races too */
	zt_run(rt, cancel_vs_send, &u);
	zk_chan_free(u.ch);
	zk_runtime_free(rt);
}

/* Timed receives racing a steady producer: every message arrives once. */
struct tstream {
	zk_chan_t *ch;
	size_t n;
};

static void *steady_producer(void *arg)
{
	struct tstream *s = arg;
	for (size_t i = 0; i < s->n; i++) {
		ZT_CHECK_EQ(zk_chan_send(s->ch, MSG(0, i)), 0);
		if (i % 64 == 0)
			zk_sleep_ms(1);
	}
	return NULL;
}

static void *timed_consumer(void *arg)
{
	struct tstream *s = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, steady_producer, s), 0);
	size_t next = 0;
	long timeouts = 0;
	while (next < s->n) {
		void *v;
		int r = zk_chan_recv_timeout(s->ch, &v, 1 * MS);
		if (r == -ETIMEDOUT) {
			timeouts++;
			continue;
		}
		ZT_CHECK_EQ(r, 0);
		if (r != 0 || MSG_SEQ(v) != next) {
			zt_fail(__FILE__, __LINE__, "got %u expected %zu", MSG_SEQ(v), next);
			break;
		}
		next++;
	}
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(chan, timed_receives_racing_a_producer_get_every_message_once, .timeout = 300)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct tstream s = {.ch = mk(8), .n = zt_scaled(20000, 2000)};
	zt_run(rt, timed_consumer, &s);
	zk_chan_free(s.ch);
	zk_runtime_free(rt);
}

/* ---- broadcast ------------------------------------------------------------------------------ */

struct bsub {
	zk_bcast_t *b;
	zk_bcast_rx_t rx;
	int n;
	atomic_long *ready;
};

static void *bcast_reader(void *arg)
{
	struct bsub *s = arg;
	atomic_fetch_add(s->ready, 1);
	for (int i = 0; i < s->n; i++) {
		void *v = NULL;
		uint64_t missed = 0;
		ZT_CHECK_EQ(zk_bcast_recv(&s->rx, &v, &missed), 0);
		ZT_CHECK_EQ((uintptr_t)v, (uintptr_t)i);
	}
	void *v;
	ZT_CHECK_EQ(zk_bcast_recv(&s->rx, &v, NULL), -EPIPE);
	return NULL;
}

static void *bcast_all_see_all(void *arg)
{
	(void)arg;
	zk_bcast_t *b;
	ZT_CHECK_EQ(zk_bcast_create(&b, 1000), 0);
	atomic_long ready = 0;
	struct bsub subs[4];
	zk_task_t *h[4];
	for (int i = 0; i < 4; i++) {
		subs[i] = (struct bsub){.b = b, .n = 500, .ready = &ready};
		ZT_CHECK_EQ(zk_bcast_subscribe(b, &subs[i].rx), 0);
		ZT_CHECK_EQ(zk_spawn(&h[i], bcast_reader, &subs[i]), 0);
	}
	ZT_CHECK(zt_task_wait_at_least(&ready, 4, 10000));
	for (int i = 0; i < 500; i++) {
		ZT_CHECK_EQ(zk_bcast_send(b, (void *)(uintptr_t)i), 4);
		if (i % 100 == 0)
			zk_sleep_ms(1);
	}
	ZT_CHECK_EQ(zk_bcast_close(b), 0);
	ZT_CHECK_EQ(zk_bcast_close(b), -EALREADY);
	ZT_CHECK_EQ(zk_bcast_send(b, NULL), -EPIPE);
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	zk_bcast_free(b);
	return NULL;
}

Test(chan, broadcast_every_receiver_sees_every_message_then_epipe)
{
	zk_runtime_t *rt = zt_runtime(3);
	zt_run(rt, bcast_all_see_all, NULL);
	zk_runtime_free(rt);
}

static void *bcast_lag(void *arg)
{
	(void)arg;
	zk_bcast_t *b;
	ZT_CHECK_EQ(zk_bcast_create(&b, 4), 0);
	zk_bcast_rx_t rx, late;
	ZT_CHECK_EQ(zk_bcast_subscribe(b, &rx), 0);
	for (int i = 0; i < 10; i++)
		ZT_CHECK_EQ(zk_bcast_send(b, (void *)(uintptr_t)i), 1);
	ZT_CHECK_EQ(zk_bcast_subscribe(b, &late), 0);
	void *v;
	uint64_t missed = 0;
	ZT_CHECK_EQ(zk_bcast_recv(&rx, &v, &missed), -EOVERFLOW);
	ZT_CHECK_EQ(missed, 6);
	for (int i = 6; i < 10; i++) {
		ZT_CHECK_EQ(zk_bcast_try_recv(&rx, &v, &missed), 0);
		ZT_CHECK_EQ((uintptr_t)v, (uintptr_t)i);
	}
	ZT_CHECK_EQ(zk_bcast_try_recv(&rx, &v, &missed), -EAGAIN);
	ZT_CHECK_EQ(zk_bcast_recv_timeout(&rx, &v, &missed, 10 * MS), -ETIMEDOUT);
	/* A late subscriber sees only what comes after. */
	ZT_CHECK_EQ(zk_bcast_try_recv(&late, &v, NULL), -EAGAIN);
	ZT_CHECK_EQ(zk_bcast_send(b, (void *)(uintptr_t)42), 2);
	ZT_CHECK_EQ(zk_bcast_recv(&late, &v, NULL), 0);
	ZT_CHECK_EQ((uintptr_t)v, 42);
	ZT_CHECK_EQ(zk_bcast_unsubscribe(&late), 0);
	ZT_CHECK_EQ(zk_bcast_send(b, NULL), 1);
	zk_bcast_free(b);
	return NULL;
}

Test(chan, broadcast_tells_a_lagging_receiver_how_many_it_missed)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, bcast_lag, NULL);
	zk_runtime_free(rt);
}

static void *bcast_cancelled_reader(void *arg)
{
	struct bsub *s = arg;
	atomic_fetch_add(s->ready, 1);
	void *v;
	ZT_CHECK_EQ(zk_bcast_recv(&s->rx, &v, NULL), -ECANCELED);
	return NULL;
}

static void *bcast_cancel2(void *arg)
{
	(void)arg;
	zk_bcast_t *b;
	ZT_CHECK_EQ(zk_bcast_create(&b, 4), 0);
	atomic_long ready = 0;
	struct bsub s = {.b = b, .n = 1, .ready = &ready};
	ZT_CHECK_EQ(zk_bcast_subscribe(b, &s.rx), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, bcast_cancelled_reader, &s), 0);
	ZT_CHECK(zt_task_wait_at_least(&ready, 1, 10000));
	zk_sleep_ms(10);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	/* The receiver's position did not move: it still gets the next one. */
	ZT_CHECK_EQ(zk_bcast_send(b, (void *)5), 1);
	void *v;
	ZT_CHECK_EQ(zk_bcast_recv(&s.rx, &v, NULL), 0);
	ZT_CHECK(v == (void *)5);
	zk_bcast_free(b);
	return NULL;
}

Test(chan, cancel_wakes_a_broadcast_receiver)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, bcast_cancel2, NULL);
	zk_runtime_free(rt);
}

/* ---- watch ---------------------------------------------------------------------------------- */

struct wsub {
	zk_watch_t *w;
	zk_watch_rx_t rx;
	atomic_long ready;
	uintptr_t last;
};

static void *watch_reader(void *arg)
{
	struct wsub *s = arg;
	atomic_store(&s->ready, 1);
	void *v;
	int r;
	uintptr_t prev = 0;
	while ((r = zk_watch_changed(&s->rx, &v)) == 0) {
		ZT_CHECK((uintptr_t)v > prev); /* only newer values */
		prev = (uintptr_t)v;
	}
	ZT_CHECK_EQ(r, -EPIPE);
	s->last = prev;
	return NULL;
}

static void *watch_latest(void *arg)
{
	(void)arg;
	struct wsub s = {0};
	ZT_CHECK_EQ(zk_watch_create(&s.w, (void *)0), 0);
	ZT_CHECK_EQ(zk_watch_subscribe(s.w, &s.rx), 0);
	void *v;
	ZT_CHECK_EQ(zk_watch_changed_timeout(&s.rx, &v, 5 * MS), -ETIMEDOUT);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, watch_reader, &s), 0);
	ZT_CHECK(zt_task_wait_at_least(&s.ready, 1, 10000));
	for (uintptr_t i = 1; i <= 1000; i++) {
		ZT_CHECK_EQ(zk_watch_send(s.w, (void *)i), 0);
		if (i % 100 == 0)
			zk_sleep_ms(1);
	}
	uint64_t ver;
	ZT_CHECK(zk_watch_get(s.w, &ver) == (void *)1000);
	ZT_CHECK_EQ(ver, 1000);
	ZT_CHECK_EQ(zk_watch_close(s.w), 0);
	ZT_CHECK_EQ(zk_watch_send(s.w, NULL), -EPIPE);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(s.last, 1000); /* the last value is never skipped */
	zk_watch_free(s.w);
	return NULL;
}

Test(chan, watch_receivers_see_newer_values_and_always_the_last)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, watch_latest, NULL);
	zk_runtime_free(rt);
}
