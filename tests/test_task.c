/* tests/test_task.c — task.h: spawn, join, detach, yield, ids, cancel. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(cancel, .timeout = 60);
TestSuite(task, .timeout = 60);

/* ---- spawn / join ------------------------------------------------------------ */

static void *square(void *arg)
{
	uintptr_t x = (uintptr_t)arg;
	return (void *)(x * x);
}

static void *spawn_join_many(void *arg)
{
	(void)arg;
	enum { N = 200 };
	zk_task_t *h[N];
	for (uintptr_t i = 0; i < N; i++) {
		h[i] = NULL;
		ZT_CHECK_EQ(zk_spawn(&h[i], square, (void *)i), 0);
		ZT_CHECK(h[i] != NULL);
	}
	for (uintptr_t i = 0; i < N; i++) {
		void *res = NULL;
		ZT_CHECK_EQ(zk_join(h[i], &res), 0);
		ZT_CHECK_EQ((uintptr_t)res, i * i);
	}
	return (void *)1;
}

Test(task, spawn_then_join_returns_each_result)
{
	zk_runtime_t *rt = zt_runtime(2);
	cr_assert_eq(zt_run(rt, spawn_join_many, NULL), (void *)1);
	zk_runtime_free(rt);
}

static void *join_null_result(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, square, (void *)3), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(task, join_accepts_a_null_result_pointer)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, join_null_result, NULL);
	zk_runtime_free(rt);
}

static void *spawn_errors(void *arg)
{
	(void)arg;
	zk_task_t *h = (zk_task_t *)(uintptr_t)1;
	ZT_CHECK_EQ(zk_spawn(&h, NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_spawn_on(NULL, &h, square, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_spawn_on(zk_runtime_current(), &h, NULL, NULL), -EINVAL);
	ZT_CHECK(h == (zk_task_t *)(uintptr_t)1);
	return NULL;
}

Test(task, spawn_rejects_null_fn_and_null_runtime)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, spawn_errors, NULL);
	zk_task_t *h = NULL;
	cr_assert_eq(zk_spawn_on(NULL, &h, square, NULL), -EINVAL);
	cr_assert_eq(zk_spawn_on(rt, &h, NULL, NULL), -EINVAL);
	zk_runtime_free(rt);
}

Test(task, spawn_outside_a_task_returns_eperm)
{
	zk_task_t *h = NULL;
	cr_assert_eq(zk_spawn(&h, square, NULL), -EPERM);
	zk_runtime_t *rt = zt_runtime(1);
	cr_assert_eq(zk_spawn(&h, square, NULL), -EPERM);
	cr_assert_null(h);
	zk_runtime_free(rt);
}

/* zk_spawn_on from a plain thread, joined from a task. */
static void *join_given(void *arg)
{
	zk_task_t **hs = arg;
	uintptr_t sum = 0;
	for (int i = 0; i < 16; i++) {
		void *res = NULL;
		ZT_CHECK_EQ(zk_join(hs[i], &res), 0);
		sum += (uintptr_t)res;
	}
	return (void *)sum;
}

/* Joins one handle from a task; returns its result (join must succeed). */
static void *join_one(void *arg)
{
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(arg, &res), 0);
	return res;
}

Test(task, spawn_on_from_a_plain_thread_then_join_in_a_task)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_task_t *hs[16];
	uintptr_t want = 0;
	for (uintptr_t i = 0; i < 16; i++) {
		cr_assert_eq(zk_spawn_on(rt, &hs[i], square, (void *)i), 0);
		want += i * i;
	}
	cr_assert_eq((uintptr_t)zt_run(rt, join_given, hs), want);
	zk_runtime_free(rt);
}

/* zk_spawn_on another runtime from a task, and joining across runtimes. */
static void *report_runtime(void *arg)
{
	(void)arg;
	return zk_runtime_current();
}

static void *spawn_on_other(void *arg)
{
	zk_runtime_t *other = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn_on(other, &h, report_runtime, NULL), 0);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(h, &res), 0);
	ZT_CHECK(res == other);
	return NULL;
}

Test(task, spawn_on_another_runtime_runs_there_and_can_be_joined)
{
	zk_runtime_t *a = zt_runtime(1), *b = zt_runtime(1);
	zt_run(a, spawn_on_other, b);
	zt_run(b, spawn_on_other, a);
	zk_runtime_free(a);
	zk_runtime_free(b);
}

/* ---- join errors ------------------------------------------------------------- */

struct self_join {
	zk_oneshot_t handle;
	atomic_long res;
};

static void *join_self(void *arg)
{
	struct self_join *s = arg;
	void *h = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(&s->handle, &h), 0);
	atomic_store(&s->res, zk_join(h, NULL));
	/* The handle stays valid: the parent joins it. */
	return (void *)0x77;
}

static void *join_errors(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_join(NULL, NULL), -EINVAL);
	struct self_join s;
	zk_oneshot_init(&s.handle);
	atomic_init(&s.res, 1);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, join_self, &s), 0);
	ZT_CHECK_EQ(zk_oneshot_send(&s.handle, h), 0);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(h, &res), 0);
	ZT_CHECK(res == (void *)0x77);
	ZT_CHECK_EQ(atomic_load(&s.res), -EDEADLK);
	return NULL;
}

Test(task, join_null_is_einval_and_self_join_is_edeadlk)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, join_errors, NULL);
	zk_runtime_free(rt);
}

Test(task, join_outside_a_task_is_eperm_and_keeps_the_handle)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(rt, &h, square, (void *)5), 0);
	void *res = NULL;
	cr_assert_eq(zk_join(h, &res), -EPERM);
	cr_assert_null(res);
	/* Still valid: a task can join it. */
	cr_assert_eq((uintptr_t)zt_run(rt, join_one, h), 25);
	zk_runtime_free(rt);
}

/* ---- detach, done ------------------------------------------------------------- */

static atomic_long detached_done;

static void *slow_increment(void *arg)
{
	(void)arg;
	zk_sleep_ms(10);
	atomic_fetch_add(&detached_done, 1);
	return NULL;
}

static void *detach_some(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		zk_task_t *h;
		ZT_CHECK_EQ(zk_spawn(&h, slow_increment, NULL), 0);
		ZT_CHECK_EQ(zk_detach(h), 0);
		ZT_CHECK_EQ(zk_spawn(NULL, slow_increment, NULL), 0); /* detached at birth */
	}
	ZT_CHECK(zt_task_wait_at_least(&detached_done, 100, 10000));
	return NULL;
}

Test(task, detached_tasks_run_to_completion)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, detach_some, NULL);
	cr_assert_eq(atomic_load(&detached_done), 100);
	/* Detach from a plain thread too. */
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(rt, &h, slow_increment, NULL), 0);
	cr_assert_eq(zk_detach(h), 0);
	cr_assert(zt_wait_at_least(&detached_done, 101, 10000));
	cr_assert_eq(zk_detach(NULL), -EINVAL);
	zk_runtime_free(rt);
}

static void *wait_on_oneshot(void *arg)
{
	void *v = NULL;
	ZT_CHECK_EQ(zk_oneshot_recv(arg, &v), 0);
	return v;
}

Test(task, task_done_turns_true_only_after_the_task_returned)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_oneshot_t os;
	zk_oneshot_init(&os);
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(rt, &h, wait_on_oneshot, &os), 0);
	zt_msleep(20);
	cr_assert_not(zk_task_done(h));
	cr_assert_not(zk_task_done(NULL));
	cr_assert_eq(zk_oneshot_send(&os, (void *)0x31), 0);
	uint64_t t0 = zk_now_ns();
	while (!zk_task_done(h) && zt_ms_since(t0) < 10000)
		zt_msleep(1);
	cr_assert(zk_task_done(h));
	cr_assert_eq((uintptr_t)zt_run(rt, join_one, h), 0x31);
	zk_runtime_free(rt);
}

/* ---- yield ----------------------------------------------------------------------- */

static atomic_long order_pos;
static long order[8];

static void *record_b(void *arg)
{
	(void)arg;
	order[atomic_fetch_add(&order_pos, 1)] = 'B';
	return NULL;
}

static void *yield_around(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, record_b, NULL), 0);
	order[atomic_fetch_add(&order_pos, 1)] = 'A';
	ZT_CHECK_EQ(zk_yield(), 0);
	order[atomic_fetch_add(&order_pos, 1)] = 'C';
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(task, yield_runs_queued_tasks_before_resuming)
{
	/* One worker: the spawned task can only run if the spawner yields. */
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, yield_around, NULL);
	cr_assert_eq(atomic_load(&order_pos), 3);
	cr_assert_eq(order[0], 'A');
	cr_assert_eq(order[1], 'B');
	cr_assert_eq(order[2], 'C');
	zk_runtime_free(rt);
}

/* Two tasks on one worker yielding in turn interleave strictly. */
static atomic_long pingpong_turns;

static void *yield_loop(void *arg)
{
	long me = (long)(uintptr_t)arg;
	long bad = 0;
	for (int i = 0; i < 1000; i++) {
		long prev = atomic_exchange(&pingpong_turns, me);
		if (i > 0 && prev == me)
			bad++;
		ZT_CHECK_EQ(zk_yield(), 0);
	}
	return (void *)(uintptr_t)bad;
}

static void *two_yielders(void *arg)
{
	(void)arg;
	zk_task_t *a, *b;
	ZT_CHECK_EQ(zk_spawn(&a, yield_loop, (void *)1), 0);
	ZT_CHECK_EQ(zk_spawn(&b, yield_loop, (void *)2), 0);
	void *ra, *rb;
	ZT_CHECK_EQ(zk_join(a, &ra), 0);
	ZT_CHECK_EQ(zk_join(b, &rb), 0);
	ZT_CHECK_EQ((uintptr_t)ra + (uintptr_t)rb, 0);
	return NULL;
}

Test(task, yielding_tasks_on_one_worker_alternate)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, two_yielders, NULL);
	zk_runtime_free(rt);
}

Test(task, yield_outside_a_task_returns_eperm)
{
	cr_assert_eq(zk_yield(), -EPERM);
}

/* ---- ids -------------------------------------------------------------------------- */

static void *my_id(void *arg)
{
	(void)arg;
	uint64_t id = zk_task_id();
	ZT_CHECK(id == zk_task_id()); /* stable */
	zk_yield();
	ZT_CHECK(id == zk_task_id());
	return (void *)(uintptr_t)id;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct ids {
	size_t n;
	uint64_t *ids;
};

static void *collect_ids(void *arg)
{
	struct ids *s = arg;
	zk_task_t **h = calloc(s->n, sizeof(*h));
	for (size_t i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], my_id, NULL), 0);
	for (size_t i = 0; i < s->n; i++) {
		uint64_t hid = zk_task_handle_id(h[i]);
		void *res = NULL;
		ZT_CHECK_EQ(zk_join(h[i], &res), 0);
		s->ids[i] = (uint64_t)(uintptr_t)res;
		ZT_CHECK(s->ids[i] == hid);
	}
	free(h);
	return (void *)(uintptr_t)zk_task_id();
}

Test(task, task_ids_are_unique_and_nonzero)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct ids s = {.n = 2000};
	s.ids = calloc(s.n + 16, sizeof(uint64_t));
	uint64_t parent = (uint64_t)(uintptr_t)zt_run(rt, collect_ids, &s);
	/* Plus tasks spawned from outside. */
	for (size_t i = 0; i < 16; i++) {
		zk_task_t *h;
		cr_assert_eq(zk_spawn_on(rt, &h, my_id, NULL), 0);
		uint64_t hid = zk_task_handle_id(h);
		s.ids[s.n + i] = (uint64_t)(uintptr_t)zt_run(rt, join_one, h);
		cr_assert_eq(s.ids[s.n + i], hid);
	}
	size_t n = s.n + 16;
	for (size_t i = 0; i < n; i++) {
		cr_assert_neq(s.ids[i], 0);
		cr_assert_neq(s.ids[i], parent);
	}
	qsort(s.ids, n, sizeof(uint64_t), cmp_u64);
	for (size_t i = 1; i < n; i++)
		cr_assert_neq(s.ids[i], s.ids[i - 1], "duplicate id %llu",
			      (unsigned long long)s.ids[i]);
	cr_assert_eq(zk_task_id(), 0);
	cr_assert_eq(zk_task_handle_id(NULL), 0);
	free(s.ids);
	zk_runtime_free(rt);
}

/* ---- cancellation of a task blocked in each kind of wait -------------------------- */

enum blk_kind { B_SLEEP, B_RECV, B_ACCEPT, B_PIPE, B_JOIN, B_ONESHOT, B_SIGNAL, B_POLL };

struct blk {
	enum blk_kind kind;
	int fd;               /* what it waits on, closed by the task after cancel */
	int peer;             /* other end, closed by the test */
	zk_task_t *target;    /* B_JOIN */
	zk_oneshot_t os;      /* B_ONESHOT */
	atomic_long ready;
	atomic_long res;      /* the blocking call's result */
	atomic_long cancelled_seen;
	atomic_long later_sleep, later_yield, later_recv, later_oneshot, later_signal;
	atomic_long close_res;
	atomic_long worker;
};

static void *blocker(void *arg)
{
	struct blk *b = arg;
	char buf[16];
	long r = 0;
	atomic_store(&b->worker, zk_worker_index());
	atomic_store(&b->ready, 1);
	switch (b->kind) {
	case B_SLEEP:
		r = zk_sleep_ms(60000);
		break;
	case B_RECV:
		r = zk_recv(b->fd, buf, sizeof(buf), 0);
		break;
	case B_ACCEPT:
		r = zk_accept(b->fd, NULL, NULL);
		break;
	case B_PIPE:
		r = zk_read(b->fd, buf, sizeof(buf), -1);
		break;
	case B_JOIN:
		r = zk_join(b->target, NULL);
		break;
	case B_ONESHOT:
		r = zk_oneshot_recv(&b->os, NULL);
		break;
	case B_SIGNAL:
		r = zk_signal_wait(SIGUSR2);
		break;
	case B_POLL:
		r = zk_poll(b->fd, POLLIN);
		break;
	}
	atomic_store(&b->res, r);
	atomic_store(&b->cancelled_seen, zk_cancelled());
	/* Sticky: every later suspending call returns -ECANCELED at once. */
	atomic_store(&b->later_sleep, zk_sleep_ms(1));
	atomic_store(&b->later_yield, zk_yield());
	zk_oneshot_t os;
	zk_oneshot_init(&os);
	atomic_store(&b->later_oneshot, zk_oneshot_recv(&os, NULL));
	atomic_store(&b->later_signal, zk_signal_wait(SIGUSR2));
	if (b->fd >= 0) {
		atomic_store(&b->later_recv, zk_read(b->fd, buf, sizeof(buf), -1));
		atomic_store(&b->close_res, zk_close(b->fd));
	} else {
		atomic_store(&b->later_recv, -ECANCELED);
	}
	return (void *)0xc0ffee;
}

static void *sleep_forever(void *arg)
{
	(void)arg;
	zk_sleep_ms(60000);
	return NULL;
}

static void blk_setup(struct blk *b, enum blk_kind kind)
{
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->fd = b->peer = -1;
	int sv[2];
	switch (kind) {
	case B_RECV:
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		b->fd = sv[0];
		b->peer = sv[1];
		break;
	case B_ACCEPT:
		b->fd = zk_tcp_listen("127.0.0.1", 0, 8);
		cr_assert_geq(b->fd, 0);
		break;
	case B_PIPE:
	case B_POLL:
		cr_assert_eq(pipe2(sv, O_CLOEXEC), 0);
		b->fd = sv[0];
		b->peer = sv[1];
		break;
	case B_ONESHOT:
		zk_oneshot_init(&b->os);
		break;
	default:
		break;
	}
}

static void blk_check(struct blk *b, const char *what)
{
	cr_assert_eq(atomic_load(&b->res), -ECANCELED, "%s: blocking call returned %ld", what,
		     atomic_load(&b->res));
	cr_assert(atomic_load(&b->cancelled_seen), "%s: zk_cancelled() false", what);
	cr_assert_eq(atomic_load(&b->later_sleep), -ECANCELED, "%s: later sleep", what);
	cr_assert_eq(atomic_load(&b->later_yield), -ECANCELED, "%s: later yield", what);
	cr_assert_eq(atomic_load(&b->later_oneshot), -ECANCELED, "%s: later oneshot", what);
	cr_assert_eq(atomic_load(&b->later_signal), -ECANCELED, "%s: later signal", what);
	cr_assert_eq(atomic_load(&b->later_recv), -ECANCELED, "%s: later read", what);
	if (b->fd >= 0) {
		cr_assert_eq(atomic_load(&b->close_res), 0, "%s: zk_close after cancel = %ld",
			     what, atomic_load(&b->close_res));
		cr_assert_eq(fcntl(b->fd, F_GETFD), -1, "%s: fd still open", what);
	}
	if (b->peer >= 0)
		close(b->peer);
}

/* Cancels a blocker from a task (the driver) and checks the outcome. */
static void *drive_cancel(void *arg)
{
	struct blk *b = arg;
	if (b->kind == B_JOIN)
		ZT_CHECK_EQ(zk_spawn(&b->target, sleep_forever, NULL), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, blocker, b), 0);
	ZT_CHECK(zt_task_wait_at_least(&b->ready, 1, 10000));
	zk_sleep_ms(30); /* let it reach its wait */
	ZT_CHECK(!zk_task_done(h));
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_cancel(h), 0);
	void *res = NULL;
	/* The blocker returns normally: join reports its return value. */
	ZT_CHECK_EQ(zk_join(h, &res), 0);
	ZT_CHECK(res == (void *)0xc0ffee);
	double ms = zt_ms_since(t0);
	if (ms > 5000)
		zt_fail(__FILE__, __LINE__, "cancel took %.0f ms to take effect", ms);
	return NULL;
}

static void cancel_case(enum blk_kind kind, unsigned workers, const char *what)
{
	zk_runtime_t *rt = zt_runtime(workers);
	struct blk *b = malloc(sizeof(*b));
	blk_setup(b, kind);
	zt_run(rt, drive_cancel, b);
	blk_check(b, what);
	zk_runtime_free(rt);
	free(b);
}

Test(cancel, cancel_wakes_task_blocked_in_sleep) { cancel_case(B_SLEEP, 2, "sleep"); }
Test(cancel, cancel_wakes_task_blocked_in_recv) { cancel_case(B_RECV, 2, "recv"); }
Test(cancel, cancel_wakes_task_blocked_in_accept) { cancel_case(B_ACCEPT, 2, "accept"); }
Test(cancel, cancel_wakes_task_blocked_in_pipe_read) { cancel_case(B_PIPE, 2, "pipe read"); }
Test(cancel, cancel_wakes_task_blocked_in_poll) { cancel_case(B_POLL, 2, "poll"); }
Test(cancel, cancel_wakes_task_blocked_in_join) { cancel_case(B_JOIN, 2, "join"); }
Test(cancel, cancel_wakes_task_blocked_in_oneshot_recv) { cancel_case(B_ONESHOT, 2, "oneshot"); }
Test(cancel, cancel_wakes_task_blocked_in_signal_wait) { cancel_case(B_SIGNAL, 2, "signal"); }

/* Same, with canceller and blocker certainly on one worker. */
Test(cancel, cancel_on_the_same_worker_wakes_task_blocked_in_sleep)
{
	cancel_case(B_SLEEP, 1, "sleep");
}
Test(cancel, cancel_on_the_same_worker_wakes_task_blocked_in_recv)
{
	cancel_case(B_RECV, 1, "recv");
}
Test(cancel, cancel_on_the_same_worker_wakes_task_blocked_in_join)
{
	cancel_case(B_JOIN, 1, "join");
}

/* A task cancelled while joining detaches its target, which keeps running. */
static atomic_long target_finished;

static void *finish_later(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_sleep_ms(100), 0);
	atomic_store(&target_finished, 1);
	return NULL;
}

static void *join_target(void *arg)
{
	return (void *)(intptr_t)zk_join(arg, NULL);
}

static void *cancel_joiner(void *arg)
{
	(void)arg;
	zk_task_t *target, *joiner;
	ZT_CHECK_EQ(zk_spawn(&target, finish_later, NULL), 0);
	ZT_CHECK_EQ(zk_spawn(&joiner, join_target, target), 0);
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_cancel(joiner), 0);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(joiner, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	ZT_CHECK_EQ(atomic_load(&target_finished), 0);
	ZT_CHECK(zt_task_wait_at_least(&target_finished, 1, 10000));
	return NULL;
}

Test(cancel, cancelled_joiner_leaves_its_target_running)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_joiner, NULL);
	cr_assert_eq(atomic_load(&target_finished), 1);
	zk_runtime_free(rt);
}

/* ---- cancel before start ---------------------------------------------------------- */

static atomic_long never_ran;

static void *must_not_run(void *arg)
{
	(void)arg;
	atomic_fetch_add(&never_ran, 1);
	return (void *)1;
}

static void *cancel_before_start(void *arg)
{
	(void)arg;
	/* One worker and no suspension between spawn and cancel: the child
	 * cannot have started. */
	for (int i = 0; i < 10; i++) {
		zk_task_t *h;
		ZT_CHECK_EQ(zk_spawn(&h, must_not_run, NULL), 0);
		ZT_CHECK_EQ(zk_cancel(h), 0);
		ZT_CHECK_EQ(zk_cancel(h), 0); /* any number of times */
		void *res = (void *)0x99;
		ZT_CHECK_EQ(zk_join(h, &res), -ECANCELED);
	}
	return NULL;
}

Test(cancel, cancel_before_start_means_fn_never_runs)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, cancel_before_start, NULL);
	cr_assert_eq(atomic_load(&never_ran), 0);
	zk_runtime_free(rt);
}

static void *cancel_before_start_done(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, must_not_run, NULL), 0);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_yield(), 0); /* the child gets its turn and is dropped */
	ZT_CHECK(zk_task_done(h));
	ZT_CHECK_EQ(zk_join(h, NULL), -ECANCELED);
	return NULL;
}

Test(cancel, task_cancelled_before_start_reports_done)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, cancel_before_start_done, NULL);
	cr_assert_eq(atomic_load(&never_ran), 0);
	zk_runtime_free(rt);
}

/* A cancel from a plain thread of a task spawned from a plain thread that
 * has not started (the runtime's only worker is busy). */
static atomic_long hog_release;

static void *hog(void *arg)
{
	(void)arg;
	uint64_t t0 = zk_now_ns();
	while (!atomic_load(&hog_release) && zk_now_ns() - t0 < 10 * ZK_NSEC_PER_SEC)
		;
	return NULL;
}

static atomic_long hog_started;

static void *hog_flag(void *arg)
{
	atomic_store(&hog_started, 1);
	return hog(arg);
}

static void *join_two(void *arg)
{
	zk_task_t **h = arg;
	ZT_CHECK_EQ(zk_join(h[0], NULL), 0);
	void *res = (void *)5;
	ZT_CHECK_EQ(zk_join(h[1], &res), -ECANCELED);
	return NULL;
}

Test(cancel, cancel_from_a_plain_thread_before_start)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_task_t *h[2];
	cr_assert_eq(zk_spawn_on(rt, &h[0], hog_flag, NULL), 0);
	cr_assert(zt_wait_at_least(&hog_started, 1, 10000));
	cr_assert_eq(zk_spawn_on(rt, &h[1], must_not_run, NULL), 0);
	cr_assert_eq(zk_cancel(h[1]), 0);
	atomic_store(&hog_release, 1);
	zt_run(rt, join_two, h);
	cr_assert_eq(atomic_load(&never_ran), 0);
	zk_runtime_free(rt);
}

/* ---- cancel: sticky, idempotent, after completion ------------------------------- */

Test(cancel, cancel_rejects_null)
{
	cr_assert_eq(zk_cancel(NULL), -EINVAL);
}

static void *cancel_after_return(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, square, (void *)6), 0);
	void *v = NULL;
	/* Wait until it returned without joining. */
	for (int i = 0; i < 10000 && !zk_task_done(h); i++)
		zk_sleep_ms(1);
	ZT_CHECK(zk_task_done(h));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, &v), 0);
	ZT_CHECK_EQ((uintptr_t)v, 36);
	return NULL;
}

Test(cancel, cancel_after_the_task_returned_keeps_its_result)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_after_return, NULL);
	zk_runtime_free(rt);
}

/* A cancelled task that never suspends again runs to its end normally. */
static void *compute_after_cancel(void *arg)
{
	(void)arg;
	while (!zk_cancelled())
		zk_sleep_ms(1);
	ZT_CHECK(zk_cancelled());
	uint64_t acc = 0;
	for (uint64_t i = 0; i < 1000000; i++)
		acc += i;
	/* Non-suspending calls still work. */
	ZT_CHECK(zk_task_id() != 0);
	ZT_CHECK(zk_runtime_current() != NULL);
	return (void *)(uintptr_t)acc;
}

static void *cancel_compute(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, compute_after_cancel, NULL), 0);
	zk_sleep_ms(10);
	ZT_CHECK_EQ(zk_cancel(h), 0);
	void *v = NULL;
	ZT_CHECK_EQ(zk_join(h, &v), 0);
	ZT_CHECK_EQ((uintptr_t)v, 499999500000ull);
	return NULL;
}

Test(cancel, cancelled_task_returns_normally_with_its_value)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_compute, NULL);
	zk_runtime_free(rt);
}

Test(cancel, cancelled_is_false_outside_tasks_and_in_uncancelled_tasks)
{
	cr_assert_not(zk_cancelled());
}

static void *not_cancelled(void *arg)
{
	(void)arg;
	return (void *)(uintptr_t)zk_cancelled();
}

Test(cancel, uncancelled_task_sees_cancelled_false)
{
	zk_runtime_t *rt = zt_runtime(1);
	cr_assert_eq(zt_run(rt, not_cancelled, NULL), (void *)0);
	zk_runtime_free(rt);
}

/* ---- cancel from a plain thread and from another worker ------------------------- */

struct foreign_cancel {
	struct blk *b;
	zk_task_t *h;
	atomic_long handle_ready;
};

static void *spawn_blocker_and_join(void *arg)
{
	struct foreign_cancel *fc = arg;
	ZT_CHECK_EQ(zk_spawn(&fc->h, blocker, fc->b), 0);
	atomic_store(&fc->handle_ready, 1);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(fc->h, &res), 0);
	ZT_CHECK(res == (void *)0xc0ffee);
	return NULL;
}

static void *canceller_thread(void *arg)
{
	struct foreign_cancel *fc = arg;
	if (!zt_wait_at_least(&fc->handle_ready, 1, 10000) ||
	    !zt_wait_at_least(&fc->b->ready, 1, 10000)) {
		zt_fail(__FILE__, __LINE__, "blocker never started");
		return NULL;
	}
	zt_msleep(30);
	ZT_CHECK_EQ(zk_cancel(fc->h), 0);
	return NULL;
}

static void foreign_cancel_case(enum blk_kind kind, const char *what)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct foreign_cancel fc = {.b = malloc(sizeof(struct blk))};
	blk_setup(fc.b, kind);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, canceller_thread, &fc), 0);
	zt_run(rt, spawn_blocker_and_join, &fc);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	blk_check(fc.b, what);
	free(fc.b);
	zk_runtime_free(rt);
}

Test(cancel, cancel_from_a_plain_thread_wakes_task_blocked_in_sleep)
{
	foreign_cancel_case(B_SLEEP, "sleep");
}
Test(cancel, cancel_from_a_plain_thread_wakes_task_blocked_in_recv)
{
	foreign_cancel_case(B_RECV, "recv");
}
Test(cancel, cancel_from_a_plain_thread_wakes_task_blocked_in_oneshot_recv)
{
	foreign_cancel_case(B_ONESHOT, "oneshot");
}
Test(cancel, cancel_from_a_plain_thread_wakes_task_blocked_in_signal_wait)
{
	foreign_cancel_case(B_SIGNAL, "signal");
}

/* Cancel from a task that runs on another worker than the blocker. Two
 * probes are spawned from outside; each spins without suspending, so while
 * one occupies a worker the other must run on the second worker. The probe
 * that finds itself on a worker other than the blocker's cancels it. */
struct probe {
	struct blk *b;
	zk_task_t *h;
	atomic_long claimed;
	atomic_long canceller_worker;
};

static void *probe(void *arg)
{
	struct probe *p = arg;
	uint64_t t0 = zk_now_ns();
	int me = zk_worker_index();
	while (!atomic_load(&p->claimed) && zk_now_ns() - t0 < 10 * ZK_NSEC_PER_SEC) {
		if (me != atomic_load(&p->b->worker)) {
			long expect = 0;
			if (atomic_compare_exchange_strong(&p->claimed, &expect, 1)) {
				atomic_store(&p->canceller_worker, me);
				ZT_CHECK_EQ(zk_worker_index(), me);
				ZT_CHECK_EQ(zk_cancel(p->h), 0);
			}
			break;
		}
	}
	return NULL;
}

static void *join_blocker(void *arg)
{
	struct probe *p = arg;
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(p->h, &res), 0);
	ZT_CHECK(res == (void *)0xc0ffee);
	return NULL;
}

static void other_worker_cancel_case(enum blk_kind kind, const char *what)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct probe p = {.b = malloc(sizeof(struct blk))};
	blk_setup(p.b, kind);
	atomic_store(&p.b->worker, -1);
	cr_assert_eq(zk_spawn_on(rt, &p.h, blocker, p.b), 0);
	cr_assert(zt_wait_at_least(&p.b->ready, 1, 10000));
	zt_msleep(30);
	long bw = atomic_load(&p.b->worker);
	cr_assert(bw == 0 || bw == 1);
	zk_task_t *probes[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(zk_spawn_on(rt, &probes[i], probe, &p), 0);
	zt_run(rt, join_blocker, &p);
	cr_assert_eq(atomic_load(&p.claimed), 1, "no probe ran on the other worker");
	cr_assert_neq(atomic_load(&p.canceller_worker), bw);
	blk_check(p.b, what);
	free(p.b);
	zk_runtime_free(rt);
}

Test(cancel, cancel_from_another_worker_wakes_task_blocked_in_recv)
{
	other_worker_cancel_case(B_RECV, "recv");
}
Test(cancel, cancel_from_another_worker_wakes_task_blocked_in_sleep)
{
	other_worker_cancel_case(B_SLEEP, "sleep");
}
Test(cancel, cancel_from_another_worker_wakes_task_blocked_in_accept)
{
	other_worker_cancel_case(B_ACCEPT, "accept");
}

/* A cancel racing with a wait that is about to start is not lost: the
 * canceller varies how long it waits after the spawn, so the cancel lands
 * before the start, during the first run, or once the sleep is armed. A lost
 * cancel leaves the join waiting 60 s (and the test times out). */
static void *sleep_soon(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)zk_sleep_ms(60000);
}

static void *cancel_races(void *arg)
{
	size_t n = (size_t)(uintptr_t)arg;
	for (size_t i = 0; i < n; i++) {
		zk_task_t *h;
		ZT_CHECK_EQ(zk_spawn(&h, sleep_soon, NULL), 0);
		if (i % 4 == 1)
			zk_yield();
		else if (i % 4 == 2)
			zk_sleep_ms(1);
		else if (i % 4 == 3)
			for (volatile int k = 0; k < (int)(i * 37 % 5000); k++)
				;
		uint64_t t0 = zk_now_ns();
		ZT_CHECK_EQ(zk_cancel(h), 0);
		void *res = NULL;
		int r = zk_join(h, &res);
		if (r == 0)
			ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
		else
			ZT_CHECK_EQ(r, -ECANCELED); /* never started */
		if (zt_ms_since(t0) > 5000)
			zt_fail(__FILE__, __LINE__, "iteration %zu: cancel took %.0f ms", i,
				zt_ms_since(t0));
	}
	return NULL;
}

Test(cancel, cancel_racing_with_the_start_of_a_wait_is_not_lost, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_races, (void *)(uintptr_t)zt_scaled(2000, 200));
	zk_runtime_free(rt);
}

/* Same race from a plain thread, against tasks spawned from outside. */
static atomic_long race_started;

static void *sleep_soon_count(void *arg)
{
	(void)arg;
	atomic_fetch_add(&race_started, 1);
	return (void *)(intptr_t)zk_sleep_ms(60000);
}

static void *join_checked(void *arg)
{
	zk_task_t *h = arg;
	void *res = NULL;
	int r = zk_join(h, &res);
	if (r == 0)
		ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	else
		ZT_CHECK_EQ(r, -ECANCELED);
	return NULL;
}

Test(cancel, cancel_from_a_plain_thread_racing_with_start_is_not_lost, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	size_t n = zt_scaled(500, 50);
	for (size_t i = 0; i < n; i++) {
		zk_task_t *h;
		long before = atomic_load(&race_started);
		cr_assert_eq(zk_spawn_on(rt, &h, sleep_soon_count, NULL), 0);
		if (i % 3 == 1)
			zt_wait_at_least(&race_started, before + 1, 1000);
		cr_assert_eq(zk_cancel(h), 0);
		zt_run(rt, join_checked, h);
	}
	zk_runtime_free(rt);
}
