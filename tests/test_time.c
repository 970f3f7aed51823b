/* tests/test_time.c — time.h: the clock, sleeps, sleep_until, and zk_timeout_next. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(time, .timeout = 60);

#define MS ZK_NSEC_PER_MSEC
/* How late a sleep may end on a noisy machine without the test failing. */
#define LATE_BOUND_NS (2 * ZK_NSEC_PER_SEC)

Test(time, now_is_monotonic_and_advances)
{
	uint64_t a = zk_now_ns();
	cr_assert_gt(a, 0);
	uint64_t prev = a;
	for (int i = 0; i < 100000; i++) {
		uint64_t b = zk_now_ns();
		cr_assert_geq(b, prev);
		prev = b;
	}
	zt_msleep(5);
	cr_assert_geq(zk_now_ns() - a, 5 * MS);
}

/* ---- sleeps never end early ---------------------------------------------------- */

static void *sleep_durations(void *arg)
{
	(void)arg;
	static const uint64_t ms[] = {1, 2, 3, 5, 10, 17, 25, 64, 65, 100};
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		uint64_t t0 = zk_now_ns();
		ZT_CHECK_EQ(zk_sleep_ms(ms[i]), 0);
		uint64_t el = zk_now_ns() - t0;
		if (el < ms[i] * MS)
			zt_fail(__FILE__, __LINE__, "sleep_ms(%llu) ended after %llu ns",
				(unsigned long long)ms[i], (unsigned long long)el);
		if (el > ms[i] * MS + LATE_BOUND_NS)
			zt_fail(__FILE__, __LINE__, "sleep_ms(%llu) took %llu ns",
				(unsigned long long)ms[i], (unsigned long long)el);
	}
	static const uint64_t ns[] = {1, 1000, 100000, 999999, 1000001, 2500000};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t t0 = zk_now_ns();
		ZT_CHECK_EQ(zk_sleep_ns(ns[i]), 0);
		uint64_t el = zk_now_ns() - t0;
		if (el < ns[i])
			zt_fail(__FILE__, __LINE__, "sleep_ns(%llu) ended after %llu ns",
				(unsigned long long)ns[i], (unsigned long long)el);
		if (el > ns[i] + LATE_BOUND_NS)
			zt_fail(__FILE__, __LINE__, "sleep_ns(%llu) took %llu ns",
				(unsigned long long)ns[i], (unsigned long long)el);
	}
	return NULL;
}

Test(time, sleep_never_ends_early)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, sleep_durations, NULL);
	zk_runtime_free(rt);
}

/* Sleeps that cross the wheel's level boundaries (64 ms, 4096 ms) and start
 * at varying phases of the wheel. */
static void *sleep_across_levels(void *arg)
{
	uint64_t ms = (uint64_t)(uintptr_t)arg;
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_sleep_ms(ms), 0);
	uint64_t el = zk_now_ns() - t0;
	if (el < ms * MS || el > ms * MS + LATE_BOUND_NS)
		zt_fail(__FILE__, __LINE__, "sleep_ms(%llu) took %llu ns", (unsigned long long)ms,
			(unsigned long long)el);
	return NULL;
}

static void *many_levels(void *arg)
{
	(void)arg;
	static const uintptr_t ms[] = {63, 64, 65, 127, 128, 200, 4095, 4097};
	enum { N = sizeof(ms) / sizeof(ms[0]) };
	zk_task_t *h[N * 3];
	for (int phase = 0; phase < 3; phase++) {
		for (size_t i = 0; i < N; i++)
			ZT_CHECK_EQ(zk_spawn(&h[phase * N + i], sleep_across_levels, (void *)ms[i]), 0);
		zk_sleep_ms(7);
	}
	for (size_t i = 0; i < N * 3; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(time, sleeps_across_timer_wheel_levels_are_never_early, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, many_levels, NULL);
	zk_runtime_free(rt);
}

/* Timers fire in deadline order on one worker. */
static atomic_long fire_pos;
static long fire_order[5];

static void *sleep_and_record(void *arg)
{
	long ms = (long)(uintptr_t)arg;
	ZT_CHECK_EQ(zk_sleep_ms((uint64_t)ms), 0);
	fire_order[atomic_fetch_add(&fire_pos, 1)] = ms;
	return NULL;
}

static void *spawn_out_of_order(void *arg)
{
	(void)arg;
	static const uintptr_t ms[5] = {120, 30, 90, 60, 150};
	zk_task_t *h[5];
	for (int i = 0; i < 5; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], sleep_and_record, (void *)ms[i]), 0);
	for (int i = 0; i < 5; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(time, timers_fire_in_deadline_order)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, spawn_out_of_order, NULL);
	long want[5] = {30, 60, 90, 120, 150};
	for (int i = 0; i < 5; i++)
		cr_assert_eq(fire_order[i], want[i], "position %d: %ld", i, fire_order[i]);
	zk_runtime_free(rt);
}

/* A sleeping task does not hold up its worker. */
static atomic_long side_progress;

static void *side_worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++) {
		atomic_fetch_add(&side_progress, 1);
		zk_yield();
	}
	return NULL;
}

static void *sleep_while_other_runs(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, side_worker, NULL), 0);
	ZT_CHECK_EQ(zk_sleep_ms(50), 0);
	ZT_CHECK_EQ(atomic_load(&side_progress), 100);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(time, a_sleeping_task_lets_its_worker_run_others)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, sleep_while_other_runs, NULL);
	zk_runtime_free(rt);
}

static void *sleep_zero(void *arg)
{
	(void)arg;
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_sleep_ns(0), 0);
	ZT_CHECK_EQ(zk_sleep_ms(0), 0);
	ZT_CHECK(zk_now_ns() - t0 < LATE_BOUND_NS);
	return NULL;
}

Test(time, zero_sleep_returns_promptly)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, sleep_zero, NULL);
	zk_runtime_free(rt);
}

/* ---- sleep_until ----------------------------------------------------------------- */

static void *until_past(void *arg)
{
	(void)arg;
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_sleep_until(0), 0);
	ZT_CHECK_EQ(zk_sleep_until(1), 0);
	ZT_CHECK_EQ(zk_sleep_until(t0 - 10 * MS), 0);
	ZT_CHECK_EQ(zk_sleep_until(zk_now_ns()), 0);
	double ms = zt_ms_since(t0);
	if (ms > 1000)
		zt_fail(__FILE__, __LINE__, "past deadlines took %.1f ms", ms);
	return NULL;
}

Test(time, sleep_until_a_past_deadline_returns_promptly)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, until_past, NULL);
	zk_runtime_free(rt);
}

static void *until_future(void *arg)
{
	(void)arg;
	for (int i = 1; i <= 5; i++) {
		uint64_t deadline = zk_now_ns() + (uint64_t)i * 7 * MS + 123457;
		ZT_CHECK_EQ(zk_sleep_until(deadline), 0);
		uint64_t now = zk_now_ns();
		if (now < deadline)
			zt_fail(__FILE__, __LINE__, "woke %llu ns before the deadline",
				(unsigned long long)(deadline - now));
		if (now > deadline + LATE_BOUND_NS)
			zt_fail(__FILE__, __LINE__, "woke %llu ns late",
				(unsigned long long)(now - deadline));
	}
	return NULL;
}

Test(time, sleep_until_a_future_deadline_is_never_early)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, until_future, NULL);
	zk_runtime_free(rt);
}

/* A deadline far beyond the wheel's reach is not treated as past. */
static void *until_far(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)zk_sleep_until(UINT64_MAX);
}

static void *far_sleeper_stays_asleep(void *arg)
{
	(void)arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, until_far, NULL), 0);
	ZT_CHECK_EQ(zk_sleep_ms(100), 0);
	ZT_CHECK(!zk_task_done(h));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(h, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	return NULL;
}

Test(time, sleep_until_the_far_future_sleeps_until_cancelled)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, far_sleeper_stays_asleep, NULL);
	zk_runtime_free(rt);
}

static void *huge_sleep(void *arg)
{
	/* No overflow in the ms -> ns product; now + ns does overflow. */
	if (arg)
		return (void *)(intptr_t)zk_sleep_ms(UINT64_MAX / ZK_NSEC_PER_MSEC);
	return (void *)(intptr_t)zk_sleep_ns(UINT64_MAX);
}

static void *huge_sleeper_stays_asleep(void *arg)
{
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, huge_sleep, arg), 0);
	ZT_CHECK_EQ(zk_sleep_ms(100), 0);
	ZT_CHECK(!zk_task_done(h));
	ZT_CHECK_EQ(zk_cancel(h), 0);
	void *res = NULL;
	ZT_CHECK_EQ(zk_join(h, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	return NULL;
}

Test(time, sleep_ns_of_uint64_max_does_not_end_at_once)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, huge_sleeper_stays_asleep, NULL);
	zk_runtime_free(rt);
}

Test(time, sleep_ms_of_the_largest_duration_does_not_end_at_once)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, huge_sleeper_stays_asleep, (void *)1);
	zk_runtime_free(rt);
}

Test(time, sleeps_outside_a_task_return_eperm)
{
	uint64_t t0 = zk_now_ns();
	cr_assert_eq(zk_sleep_ms(100), -EPERM);
	cr_assert_eq(zk_sleep_ns(100 * MS), -EPERM);
	cr_assert_eq(zk_sleep_until(zk_now_ns() + 100 * MS), -EPERM);
	cr_assert_eq(zk_sleep_ns(0), -EPERM);
	cr_assert_lt(zt_ms_since(t0), 50.0, "nothing is done outside a task");
	cr_assert_eq(zk_timeout_next(MS), -EPERM);
}

/* ---- zk_timeout_next -------------------------------------------------------------- */

struct tpair {
	int sv[2];
};

static void tpair_open(struct tpair *p)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->sv), 0);
}

static void tpair_close(struct tpair *p)
{
	close(p->sv[0]);
	close(p->sv[1]);
}

static void *send_after(void *arg)
{
	struct tpair *p = arg;
	ZT_CHECK_EQ(zk_sleep_ms(150), 0);
	ZT_CHECK_EQ(zk_send(p->sv[1], "late", 4, 0), 4);
	return NULL;
}

static void *recv_times_out_then_next_call_waits(void *arg)
{
	struct tpair *p = arg;
	char buf[8];
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_timeout_next(50 * MS), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), -ETIMEDOUT);
	uint64_t el = zk_now_ns() - t0;
	if (el < 45 * MS || el > 50 * MS + LATE_BOUND_NS)
		zt_fail(__FILE__, __LINE__, "timed out after %llu ns", (unsigned long long)el);
	/* The timeout was consumed: the next recv waits for the late data. */
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_after, p), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), 4);
	ZT_CHECK(memcmp(buf, "late", 4) == 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(time, timeout_next_makes_recv_without_data_return_etimedout)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct tpair p;
	tpair_open(&p);
	zt_run(rt, recv_times_out_then_next_call_waits, &p);
	tpair_close(&p);
	zk_runtime_free(rt);
}

static void *timeout_consumed_by_completed_call(void *arg)
{
	struct tpair *p = arg;
	char buf[8];
	ZT_CHECK_EQ(zk_send(p->sv[1], "now", 3, 0), 3);
	ZT_CHECK_EQ(zk_timeout_next(50 * MS), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), 3); /* completes at once */
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_after, p), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), 4); /* no timeout left */
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(time, timeout_is_consumed_by_a_call_that_completes_in_time)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct tpair p;
	tpair_open(&p);
	zt_run(rt, timeout_consumed_by_completed_call, &p);
	tpair_close(&p);
	zk_runtime_free(rt);
}

static void *timeout_disarmed(void *arg)
{
	struct tpair *p = arg;
	char buf[8];
	ZT_CHECK_EQ(zk_timeout_next(10 * MS), 0);
	ZT_CHECK_EQ(zk_timeout_next(0), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_after, p), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), 4);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(time, timeout_next_zero_disarms)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct tpair p;
	tpair_open(&p);
	zt_run(rt, timeout_disarmed, &p);
	tpair_close(&p);
	zk_runtime_free(rt);
}

static void *timeout_survives_close(void *arg)
{
	struct tpair *p = arg;
	char buf[8];
	int extra[2];
	ZT_CHECK_EQ(pipe2(extra, O_CLOEXEC), 0);
	ZT_CHECK_EQ(zk_timeout_next(30 * MS), 0);
	ZT_CHECK_EQ(zk_close(extra[0]), 0); /* does not consume it */
	ZT_CHECK_EQ(zk_close(extra[1]), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), -ETIMEDOUT);
	return NULL;
}

Test(time, zk_close_does_not_consume_the_armed_timeout, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(1);
	struct tpair p;
	tpair_open(&p);
	zt_run(rt, timeout_survives_close, &p);
	tpair_close(&p);
	zk_runtime_free(rt);
}

/* Every suspending I/O call honours the timeout. */
static void *timeouts_on_each_call(void *arg)
{
	(void)arg;
	int pfd[2];
	ZT_CHECK_EQ(pipe2(pfd, O_CLOEXEC), 0);
	char buf[8];
	ZT_CHECK_EQ(zk_timeout_next(20 * MS), 0);
	ZT_CHECK_EQ(zk_read(pfd[0], buf, sizeof(buf), -1), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_timeout_next(20 * MS), 0);
	ZT_CHECK_EQ(zk_poll(pfd[0], POLLIN), -ETIMEDOUT);
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	ZT_CHECK_EQ(zk_timeout_next(20 * MS), 0);
	ZT_CHECK_EQ(zk_readv(pfd[0], &iov, 1, -1), -ETIMEDOUT);
	int lfd = zk_tcp_listen("127.0.0.1", 0, 4);
	ZT_CHECK(lfd >= 0);
	ZT_CHECK_EQ(zk_timeout_next(20 * MS), 0);
	ZT_CHECK_EQ(zk_accept(lfd, NULL, NULL), -ETIMEDOUT);
	/* The fds are still usable after a timed-out call. */
	ZT_CHECK_EQ(zk_write(pfd[1], "x", 1, -1), 1);
	ZT_CHECK_EQ(zk_timeout_next(2000 * MS), 0);
	ZT_CHECK_EQ(zk_read(pfd[0], buf, sizeof(buf), -1), 1);
	ZT_CHECK_EQ(zk_close(lfd), 0);
	ZT_CHECK_EQ(zk_close(pfd[0]), 0);
	ZT_CHECK_EQ(zk_close(pfd[1]), 0);
	return NULL;
}

Test(time, timeout_applies_to_read_poll_readv_and_accept)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, timeouts_on_each_call, NULL);
	zk_runtime_free(rt);
}

/* A timeout does not fire when the call completes first, even much later
 * than the call started (data arrives before the deadline). */
static void *send_soon(void *arg)
{
	struct tpair *p = arg;
	ZT_CHECK_EQ(zk_sleep_ms(20), 0);
	ZT_CHECK_EQ(zk_send(p->sv[1], "ok", 2, 0), 2);
	return NULL;
}

static void *data_before_deadline(void *arg)
{
	struct tpair *p = arg;
	char buf[8];
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, send_soon, p), 0);
	ZT_CHECK_EQ(zk_timeout_next(5 * ZK_NSEC_PER_SEC), 0);
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), 2);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(time, call_completing_before_its_timeout_returns_its_result)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct tpair p;
	tpair_open(&p);
	zt_run(rt, data_before_deadline, &p);
	tpair_close(&p);
	zk_runtime_free(rt);
}

/* Timeouts are per task: one task's armed timeout does not leak to another. */
static void *arm_and_sleep(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_timeout_next(1 * MS), 0);
	ZT_CHECK_EQ(zk_sleep_ms(100), 0); /* a sleep is not I/O: keeps the timeout */
	return NULL;
}

static void *per_task_timeouts(void *arg)
{
	struct tpair *p = arg;
	zk_task_t *a, *b;
	ZT_CHECK_EQ(zk_spawn(&a, arm_and_sleep, NULL), 0);
	zk_yield();
	ZT_CHECK_EQ(zk_spawn(&b, send_after, p), 0);
	char buf[8];
	ZT_CHECK_EQ(zk_recv(p->sv[0], buf, sizeof(buf), 0), 4);
	ZT_CHECK_EQ(zk_join(a, NULL), 0);
	ZT_CHECK_EQ(zk_join(b, NULL), 0);
	return NULL;
}

Test(time, an_armed_timeout_belongs_to_its_task_only)
{
	zk_runtime_t *rt = zt_runtime(1);
	struct tpair p;
	tpair_open(&p);
	zt_run(rt, per_task_timeouts, &p);
	tpair_close(&p);
	zk_runtime_free(rt);
}

/* Many tasks with timeouts on one worker at once. */
static void *many_timeouts_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4];
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_timeout_next(30 * MS), 0);
	ZT_CHECK_EQ(zk_recv(fd, buf, sizeof(buf), 0), -ETIMEDOUT);
	ZT_CHECK(zk_now_ns() - t0 >= 25 * MS);
	return NULL;
}

static void *many_timeouts(void *arg)
{
	(void)arg;
	enum { N = 200 };
	int sv[N][2];
	zk_task_t *h[N];
	for (int i = 0; i < N; i++) {
		ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
		ZT_CHECK_EQ(zk_spawn(&h[i], many_timeouts_one, (void *)(intptr_t)sv[i][0]), 0);
	}
	for (int i = 0; i < N; i++) {
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	return NULL;
}

Test(time, many_concurrent_timeouts_all_fire, .timeout = 60)
{
	zk_config_t cfg = {.workers = 2, .ring_entries = 16};
	zk_runtime_t *rt;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	zt_run(rt, many_timeouts, NULL);
	zk_runtime_free(rt);
}

/* Cancelling a call that has a timeout armed reports the cancel, not a
 * timeout, and promptly. */
struct timed_cancel {
	int sv[2];
	atomic_long ready;
	atomic_long res;
};

static void *timed_recv(void *arg)
{
	struct timed_cancel *tc = arg;
	char buf[4];
	ZT_CHECK_EQ(zk_timeout_next(30 * ZK_NSEC_PER_SEC), 0);
	atomic_store(&tc->ready, 1);
	atomic_store(&tc->res, zk_recv(tc->sv[0], buf, sizeof(buf), 0));
	return NULL;
}

static void *cancel_timed(void *arg)
{
	struct timed_cancel *tc = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, timed_recv, tc), 0);
	ZT_CHECK(zt_task_wait_at_least(&tc->ready, 1, 10000));
	zk_sleep_ms(20);
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_cancel(h), 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK(zk_now_ns() - t0 < LATE_BOUND_NS);
	return NULL;
}

Test(time, cancelling_a_call_with_an_armed_timeout_reports_ecanceled)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct timed_cancel tc = {0};
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, tc.sv), 0);
	zt_run(rt, cancel_timed, &tc);
	cr_assert_eq(atomic_load(&tc.res), -ECANCELED);
	close(tc.sv[0]);
	close(tc.sv[1]);
	zk_runtime_free(rt);
}
