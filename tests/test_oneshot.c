/* tests/test_oneshot.c — sync.h: the oneshot channel. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(oneshot, .timeout = 60);

static void *send_then_recv(void *arg)
{
	(void)arg;
	zk_oneshot_t o;
	zk_oneshot_init(&o);
	ZT_CHECK_EQ(zk_oneshot_send(&o, (void *)0x1234), 0);
	void *v = NULL;
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_oneshot_recv(&o, &v), 0);
	ZT_CHECK(v == (void *)0x1234);
	ZT_CHECK(zt_ms_since(t0) < 1000);
	/* Already sent: a second receive returns at once with the value. */
	v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&o, &v), 0);
	ZT_CHECK(v == (void *)0x1234);
	/* value may be NULL. */
	ZT_CHECK_EQ(zk_oneshot_recv(&o, NULL), 0);
	return NULL;
}

Test(oneshot, send_before_recv_is_received_at_once)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, send_then_recv, NULL);
	zk_runtime_free(rt);
}

struct pair {
	zk_oneshot_t o;
	void *value;
	int delay_ms;
	atomic_long receiving;
};

static void *send_later(void *arg)
{
	struct pair *p = arg;
	ZT_CHECK(zt_task_wait_at_least(&p->receiving, 1, 10000));
	ZT_CHECK_EQ(zk_sleep_ms((uint64_t)p->delay_ms), 0);
	ZT_CHECK_EQ(zk_oneshot_send(&p->o, p->value), 0);
	return NULL;
}

static void *recv_before_send(void *arg)
{
	struct pair *p = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_later, p), 0);
	atomic_store(&p->receiving, 1);
	void *v = NULL;
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_oneshot_recv(&p->o, &v), 0);
	ZT_CHECK(v == p->value);
	ZT_CHECK(zk_now_ns() - t0 >= (uint64_t)(p->delay_ms - 5) * ZK_NSEC_PER_MSEC);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(oneshot, recv_suspends_until_a_later_send)
{
	/* One worker: the sender only runs because the receiver suspended. */
	zk_runtime_t *rt = zt_runtime(1);
	struct pair p = {.value = (void *)0xabc, .delay_ms = 30};
	zk_oneshot_init(&p.o);
	zt_run(rt, recv_before_send, &p);
	zk_runtime_free(rt);
}

Test(oneshot, recv_suspends_until_a_later_send_on_two_workers)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct pair p = {.value = NULL, .delay_ms = 30}; /* NULL is a value too */
	zk_oneshot_init(&p.o);
	zt_run(rt, recv_before_send, &p);
	zk_runtime_free(rt);
}

static void *close_later(void *arg)
{
	struct pair *p = arg;
	ZT_CHECK(zt_task_wait_at_least(&p->receiving, 1, 10000));
	ZT_CHECK_EQ(zk_sleep_ms(20), 0);
	ZT_CHECK_EQ(zk_oneshot_close(&p->o), 0);
	return NULL;
}

static void *recv_closed(void *arg)
{
	(void)arg;
	/* Closed before the receive. */
	zk_oneshot_t o;
	zk_oneshot_init(&o);
	ZT_CHECK_EQ(zk_oneshot_close(&o), 0);
	void *v = (void *)0x5;
	ZT_CHECK_EQ(zk_oneshot_recv(&o, &v), -EPIPE);
	ZT_CHECK(v == (void *)0x5);
	/* Closed while the receiver waits. */
	struct pair p = {0};
	zk_oneshot_init(&p.o);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, close_later, &p), 0);
	atomic_store(&p.receiving, 1);
	ZT_CHECK_EQ(zk_oneshot_recv(&p.o, &v), -EPIPE);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(oneshot, close_makes_recv_return_epipe)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, recv_closed, NULL);
	zk_runtime_free(rt);
}

Test(oneshot, second_send_or_close_is_ealready)
{
	zk_oneshot_t o;
	zk_oneshot_init(&o);
	cr_assert_eq(zk_oneshot_send(&o, (void *)1), 0);
	cr_assert_eq(zk_oneshot_send(&o, (void *)2), -EALREADY);
	cr_assert_eq(zk_oneshot_close(&o), -EALREADY);
	zk_oneshot_init(&o);
	cr_assert_eq(zk_oneshot_close(&o), 0);
	cr_assert_eq(zk_oneshot_close(&o), -EALREADY);
	cr_assert_eq(zk_oneshot_send(&o, (void *)3), -EALREADY);
}

static void *recv_after_double_send(void *arg)
{
	zk_oneshot_t *o = arg;
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(o, &v), 0);
	ZT_CHECK(v == (void *)1); /* the refused second value did not replace it */
	return NULL;
}

Test(oneshot, a_refused_send_does_not_replace_the_value)
{
	zk_oneshot_t o;
	zk_oneshot_init(&o);
	cr_assert_eq(zk_oneshot_send(&o, (void *)1), 0);
	cr_assert_eq(zk_oneshot_send(&o, (void *)2), -EALREADY);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, recv_after_double_send, &o);
	zk_runtime_free(rt);
}

Test(oneshot, null_channel_is_einval)
{
	cr_assert_eq(zk_oneshot_send(NULL, NULL), -EINVAL);
	cr_assert_eq(zk_oneshot_close(NULL), -EINVAL);
}

static void *recv_null(void *arg)
{
	(void)arg;
	void *v;
	ZT_CHECK_EQ(zk_oneshot_recv(NULL, &v), -EINVAL);
	return NULL;
}

Test(oneshot, recv_on_null_channel_is_einval)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, recv_null, NULL);
	zk_runtime_free(rt);
}

static void *recv_value(void *arg)
{
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(arg, &v), 0);
	return v;
}

Test(oneshot, recv_outside_a_task_is_eperm)
{
	zk_oneshot_t o;
	zk_oneshot_init(&o);
	void *v = (void *)7;
	cr_assert_eq(zk_oneshot_recv(&o, &v), -EPERM);
	cr_assert_eq(v, (void *)7);
	/* Even with a value waiting (it is not consumed: still receivable). */
	cr_assert_eq(zk_oneshot_send(&o, (void *)8), 0);
	cr_assert_eq(zk_oneshot_recv(&o, &v), -EPERM);
	cr_assert_eq(zk_oneshot_send(&o, (void *)9), -EALREADY);
	zk_runtime_t *rt = zt_runtime(1);
	cr_assert_eq(zt_run(rt, recv_value, &o), (void *)8);
	zk_runtime_free(rt);
}

/* ---- send from a plain thread ----------------------------------------------------- */

struct foreign {
	zk_oneshot_t o;
	atomic_long receiving;
	int ret;
};

static void *foreign_sender(void *arg)
{
	struct foreign *f = arg;
	if (!zt_wait_at_least(&f->receiving, 1, 10000))
		return NULL;
	zt_msleep(20);
	f->ret = zk_oneshot_send(&f->o, (void *)0x600d);
	return NULL;
}

static void *recv_foreign(void *arg)
{
	struct foreign *f = arg;
	atomic_store(&f->receiving, 1);
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&f->o, &v), 0);
	ZT_CHECK(v == (void *)0x600d);
	return NULL;
}

Test(oneshot, send_from_a_plain_thread_wakes_the_receiver)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct foreign f = {.ret = 1};
	zk_oneshot_init(&f.o);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, foreign_sender, &f), 0);
	zt_run(rt, recv_foreign, &f);
	pthread_join(th, NULL);
	cr_assert_eq(f.ret, 0);
	zk_runtime_free(rt);
}

/* ---- busy, cancel ----------------------------------------------------------------- */

struct busy {
	zk_oneshot_t o;
	atomic_long first_waiting;
	atomic_long second_res;
};

static void *first_receiver(void *arg)
{
	struct busy *b = arg;
	atomic_store(&b->first_waiting, 1);
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&b->o, &v), 0);
	ZT_CHECK(v == (void *)0x42);
	return NULL;
}

static void *second_receiver(void *arg)
{
	struct busy *b = arg;
	void *v = (void *)1;
	atomic_store(&b->second_res, zk_oneshot_recv(&b->o, &v));
	ZT_CHECK(v == (void *)1);
	return NULL;
}

static void *two_receivers(void *arg)
{
	struct busy *b = arg;
	zk_task_t *h1, *h2;
	ZT_CHECK_EQ(zk_spawn(&h1, first_receiver, b), 0);
	ZT_CHECK(zt_task_wait_at_least(&b->first_waiting, 1, 10000));
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_spawn(&h2, second_receiver, b), 0);
	ZT_CHECK_EQ(zk_join(h2, NULL), 0);
	ZT_CHECK_EQ(atomic_load(&b->second_res), -EBUSY);
	ZT_CHECK_EQ(zk_oneshot_send(&b->o, (void *)0x42), 0);
	ZT_CHECK_EQ(zk_join(h1, NULL), 0);
	return NULL;
}

Test(oneshot, a_second_concurrent_receiver_is_ebusy)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct busy b = {0};
	zk_oneshot_init(&b.o);
	zt_run(rt, two_receivers, &b);
	zk_runtime_free(rt);
}

static void *recv_and_report(void *arg)
{
	struct busy *b = arg;
	atomic_store(&b->first_waiting, 1);
	void *v = NULL;
	int r = zk_oneshot_recv(&b->o, &v);
	return (void *)(intptr_t)r;
}

static void *cancel_then_resend(void *arg)
{
	struct busy *b = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, recv_and_report, b), 0);
	ZT_CHECK(zt_task_wait_at_least(&b->first_waiting, 1, 10000));
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(h, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	/* The withdrawn receive lost nothing: a later send is received. */
	ZT_CHECK_EQ(zk_oneshot_send(&b->o, (void *)0x42), 0);
	ZT_CHECK_EQ(zk_spawn(&h, first_receiver, b), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(oneshot, a_cancelled_receive_is_withdrawn_and_the_value_not_lost)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct busy b = {0};
	zk_oneshot_init(&b.o);
	zt_run(rt, cancel_then_resend, &b);
	zk_runtime_free(rt);
}

/* ---- a relay across many tasks and both workers ---------------------------------------- */

struct relay {
	zk_oneshot_t in;
	zk_oneshot_t *out;
};

static void *relay_step(void *arg)
{
	struct relay *r = arg;
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&r->in, &v), 0);
	ZT_CHECK_EQ(zk_oneshot_send(r->out, (void *)((uintptr_t)v + 1)), 0);
	return NULL;
}

static void *relay_chain(void *arg)
{
	size_t n = (size_t)(uintptr_t)arg;
	struct relay *r = calloc(n, sizeof(*r));
	zk_oneshot_t end;
	zk_oneshot_init(&end);
	for (size_t i = 0; i < n; i++) {
		zk_oneshot_init(&r[i].in);
		r[i].out = i + 1 < n ? &r[i + 1].in : &end;
		ZT_CHECK_EQ(zk_spawn(NULL, relay_step, &r[i]), 0);
	}
	ZT_CHECK_EQ(zk_oneshot_send(&r[0].in, (void *)0), 0);
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&end, &v), 0);
	ZT_CHECK_EQ((uintptr_t)v, n);
	/* Wait until every relay task is done with r before freeing it: the
	 * last send happens-before our receive, but a relay task may still be
	 * returning; the runtime's shutdown below waits for them. */
	return r;
}

Test(oneshot, a_value_relayed_through_thousands_of_tasks_arrives_intact, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	void *r = zt_run(rt, relay_chain, (void *)(uintptr_t)zt_scaled(10000, 1000));
	zk_runtime_free(rt);
	free(r);
}

/* A sender in a task of another runtime. */
struct cross {
	zk_oneshot_t o;
	atomic_long receiving;
};

static void *cross_send(void *arg)
{
	struct cross *c = arg;
	ZT_CHECK(zt_task_wait_at_least(&c->receiving, 1, 10000));
	zk_sleep_ms(10);
	ZT_CHECK_EQ(zk_oneshot_send(&c->o, (void *)0xc0de), 0);
	return NULL;
}

static void *cross_recv(void *arg)
{
	struct cross *c = arg;
	atomic_store(&c->receiving, 1);
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&c->o, &v), 0);
	ZT_CHECK(v == (void *)0xc0de);
	return NULL;
}

Test(oneshot, send_from_a_task_of_another_runtime_wakes_the_receiver)
{
	zk_runtime_t *a = zt_runtime(1), *b = zt_runtime(1);
	struct cross c = {0};
	zk_oneshot_init(&c.o);
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(b, &h, cross_send, &c), 0);
	zt_run(a, cross_recv, &c);
	cr_assert_eq(zk_detach(h), 0);
	zk_runtime_free(b);
	zk_runtime_free(a);
	zt_assert_no_failures();
}
