/* tests/test_signal.c — signal.h: tasks waiting for POSIX signals.
 *
 * Before the first zk_signal_wait() for a signal its default action (for
 * SIGUSR1: terminate) applies, so a test only raises a signal once the
 * runtime's handler is in place (wait_handler_installed). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(signal, .timeout = 60);

static bool handler_installed(int signo)
{
	struct sigaction sa;
	if (sigaction(signo, NULL, &sa) != 0)
		return false;
	return sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
}

/* Plain thread. */
static bool wait_handler_installed(int signo)
{
	uint64_t t0 = zk_now_ns();
	while (!handler_installed(signo)) {
		if (zt_ms_since(t0) > 10000)
			return false;
		zt_msleep(1);
	}
	return true;
}

/* Task. */
static bool task_wait_handler_installed(int signo)
{
	uint64_t t0 = zk_now_ns();
	while (!handler_installed(signo)) {
		if (zt_ms_since(t0) > 10000 || zk_sleep_ms(1) != 0)
			return false;
	}
	return true;
}

struct waiter {
	int signo;
	int rounds;
	atomic_long started;  /* rounds begun */
	atomic_long woken;    /* rounds ended */
	atomic_long last;     /* result of the last wait */
};

static void *wait_signal(void *arg)
{
	struct waiter *w = arg;
	int rounds = w->rounds ? w->rounds : 1;
	for (int i = 0; i < rounds; i++) {
		atomic_fetch_add(&w->started, 1);
		int r = zk_signal_wait(w->signo);
		atomic_store(&w->last, r);
		atomic_fetch_add(&w->woken, 1);
		if (r != w->signo)
			break;
	}
	return NULL;
}

static void assert_stays_asleep(struct waiter *w, long woken, unsigned ms)
{
	zt_msleep(ms);
	cr_assert_eq(atomic_load(&w->woken), woken, "signal wait for %d ended without the signal",
		     w->signo);
}

Test(signal, wait_wakes_when_a_plain_thread_raises_the_signal, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct waiter w = {.signo = SIGUSR1};
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(rt, &h, wait_signal, &w), 0);
	cr_assert(wait_handler_installed(SIGUSR1));
	assert_stays_asleep(&w, 0, 50);
	cr_assert_eq(kill(getpid(), SIGUSR1), 0);
	cr_assert(zt_wait_at_least(&w.woken, 1, 10000), "waiter not woken");
	cr_assert_eq(atomic_load(&w.last), SIGUSR1);
	zk_detach(h);
	zk_runtime_free(rt);
}

struct raiser {
	int signo;
	int delay_ms;
};

static void *raise_from_task(void *arg)
{
	struct raiser *r = arg;
	ZT_CHECK(task_wait_handler_installed(r->signo));
	zk_sleep_ms((uint64_t)r->delay_ms);
	ZT_CHECK_EQ(kill(getpid(), r->signo), 0);
	return NULL;
}

static void *wait_and_raise(void *arg)
{
	struct waiter *w = arg;
	struct raiser r = {.signo = w->signo, .delay_ms = 50};
	zk_task_t *waiter, *raiser;
	ZT_CHECK_EQ(zk_spawn(&waiter, wait_signal, w), 0);
	ZT_CHECK_EQ(zk_spawn(&raiser, raise_from_task, &r), 0);
	ZT_CHECK_EQ(zk_join(raiser, NULL), 0);
	ZT_CHECK_EQ(zk_join(waiter, NULL), 0);
	return NULL;
}

Test(signal, wait_wakes_when_another_task_raises_the_signal, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct waiter w = {.signo = SIGUSR1};
	zt_run(rt, wait_and_raise, &w);
	cr_assert_eq(atomic_load(&w.last), SIGUSR1);
	zk_runtime_free(rt);
}

Test(signal, wait_wakes_on_a_single_worker_runtime, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(1);
	struct waiter w = {.signo = SIGUSR2};
	zt_run(rt, wait_and_raise, &w);
	cr_assert_eq(atomic_load(&w.last), SIGUSR2);
	zk_runtime_free(rt);
}

Test(signal, every_waiter_for_the_signal_wakes, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(4);
	enum { N = 8 };
	struct waiter w[N];
	for (int i = 0; i < N; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].signo = SIGUSR1;
		cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &w[i]), 0);
	}
	for (int i = 0; i < N; i++)
		cr_assert(zt_wait_at_least(&w[i].started, 1, 10000));
	cr_assert(wait_handler_installed(SIGUSR1));
	zt_msleep(50);
	cr_assert_eq(kill(getpid(), SIGUSR1), 0);
	for (int i = 0; i < N; i++) {
		cr_assert(zt_wait_at_least(&w[i].woken, 1, 10000), "waiter %d not woken", i);
		cr_assert_eq(atomic_load(&w[i].last), SIGUSR1);
	}
	zk_runtime_free(rt);
}

Test(signal, a_waiter_ignores_other_signals, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct waiter w1 = {.signo = SIGUSR1}, w2 = {.signo = SIGUSR2};
	cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &w1), 0);
	cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &w2), 0);
	cr_assert(wait_handler_installed(SIGUSR1));
	cr_assert(wait_handler_installed(SIGUSR2));
	zt_msleep(50);
	cr_assert_eq(kill(getpid(), SIGUSR1), 0);
	cr_assert(zt_wait_at_least(&w1.woken, 1, 10000));
	assert_stays_asleep(&w2, 0, 100);
	cr_assert_eq(kill(getpid(), SIGUSR2), 0);
	cr_assert(zt_wait_at_least(&w2.woken, 1, 10000));
	cr_assert_eq(atomic_load(&w1.last), SIGUSR1);
	cr_assert_eq(atomic_load(&w2.last), SIGUSR2);
	zk_runtime_free(rt);
}

Test(signal, each_wait_needs_a_signal_sent_after_it_began, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct waiter w = {.signo = SIGUSR1, .rounds = 4};
	cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &w), 0);
	cr_assert(wait_handler_installed(SIGUSR1));
	for (long round = 1; round <= 4; round++) {
		cr_assert(zt_wait_at_least(&w.started, round, 10000));
		assert_stays_asleep(&w, round - 1, 50);
		cr_assert_eq(kill(getpid(), SIGUSR1), 0);
		cr_assert(zt_wait_at_least(&w.woken, round, 10000), "round %ld", round);
		cr_assert_eq(atomic_load(&w.last), SIGUSR1);
	}
	zk_runtime_free(rt);
}

Test(signal, a_signal_sent_while_nobody_waits_does_not_end_the_next_wait, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct waiter first = {.signo = SIGUSR2};
	cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &first), 0);
	cr_assert(wait_handler_installed(SIGUSR2));
	zt_msleep(50);
	cr_assert_eq(kill(getpid(), SIGUSR2), 0);
	cr_assert(zt_wait_at_least(&first.woken, 1, 10000));
	/* Nobody waits now. */
	cr_assert_eq(kill(getpid(), SIGUSR2), 0);
	zt_msleep(50);
	struct waiter second = {.signo = SIGUSR2};
	cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &second), 0);
	cr_assert(zt_wait_at_least(&second.started, 1, 10000));
	assert_stays_asleep(&second, 0, 100);
	cr_assert_eq(kill(getpid(), SIGUSR2), 0);
	cr_assert(zt_wait_at_least(&second.woken, 1, 10000));
	zk_runtime_free(rt);
}

Test(signal, waiters_in_two_runtimes_both_wake, .timeout = 30)
{
	zk_runtime_t *a = zt_runtime(1), *b = zt_runtime(2);
	struct waiter wa = {.signo = SIGUSR1}, wb = {.signo = SIGUSR1};
	cr_assert_eq(zk_spawn_on(a, NULL, wait_signal, &wa), 0);
	cr_assert_eq(zk_spawn_on(b, NULL, wait_signal, &wb), 0);
	cr_assert(zt_wait_at_least(&wa.started, 1, 10000));
	cr_assert(zt_wait_at_least(&wb.started, 1, 10000));
	cr_assert(wait_handler_installed(SIGUSR1));
	zt_msleep(50);
	cr_assert_eq(kill(getpid(), SIGUSR1), 0);
	cr_assert(zt_wait_at_least(&wa.woken, 1, 10000));
	cr_assert(zt_wait_at_least(&wb.woken, 1, 10000));
	zk_runtime_free(a);
	zk_runtime_free(b);
}

/* A signal directed at one thread (raise: this plain thread) rather than the
 * process still reaches the waiter. */
Test(signal, a_thread_directed_signal_wakes_the_waiter, .timeout = 30)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct waiter w = {.signo = SIGUSR1};
	cr_assert_eq(zk_spawn_on(rt, NULL, wait_signal, &w), 0);
	cr_assert(wait_handler_installed(SIGUSR1));
	zt_msleep(50);
	cr_assert_eq(raise(SIGUSR1), 0); /* to this (non-runtime) thread */
	cr_assert(zt_wait_at_least(&w.woken, 1, 10000));
	cr_assert_eq(atomic_load(&w.last), SIGUSR1);
	zk_runtime_free(rt);
}

static void *invalid_signals(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_signal_wait(SIGKILL), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(SIGSTOP), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(0), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(-1), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(65), -EINVAL);
	ZT_CHECK_EQ(zk_signal_wait(1000), -EINVAL);
	return NULL;
}

Test(signal, uncatchable_or_out_of_range_signals_are_einval)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, invalid_signals, NULL);
	zk_runtime_free(rt);
	/* Nothing was installed for SIGKILL/SIGSTOP (not possible anyway),
	 * and SIGUSR1 was not touched. */
	cr_assert_not(handler_installed(SIGUSR1));
}

Test(signal, wait_outside_a_task_is_eperm_and_installs_nothing)
{
	cr_assert_eq(zk_signal_wait(SIGUSR1), -EPERM);
	cr_assert_not(handler_installed(SIGUSR1));
}
