/* lib/waitq.c — selections: how a task (or a foreign thread) waits for the
 * first of several events, with an optional deadline, and is cancelled.
 *
 * Built on task.c's suspension protocol (read its top comment first).
 *
 * The claim word. Every party that may end a wait — a waker handing over a
 * message, permit or notification; the deadline timer; zk_cancel() — first
 * moves the selection's claim word from ZK__SEL_OPEN to its own value with
 * one compare-and-swap. Exactly one succeeds, and only that one calls
 * zk__task_wake(): "exactly one wake per suspension" holds however many
 * wakers, timers and cancellers race. A waker whose claim fails takes
 * nothing from the waiter and gives nothing away: it moves on to the next
 * waiter, so a notification, a permit or a slot is never lost to a waiter
 * that is leaving.
 *
 * The waiter itself may claim (a re-check after registering finds the
 * operation ready): then nobody else will wake it and it does not park. A
 * waiter that did not win its own claim always parks, because a wake is on
 * its way (or has already arrived: task.c's NOTIFIED state keeps it).
 *
 * Publishing. The waiter publishes its struct zk__wait in task->wait before
 * it registers anywhere, so a canceller that comes while it is registering
 * already finds it (the cancel then wakes a RUNNING task, which task.c
 * turns into an immediate reschedule when it parks). A waiter that does not
 * park unpublishes itself the way zk__task_park does.
 *
 * Deadlines. A task's deadline is a zk__timer on the wheel of the worker
 * the task runs on when it starts waiting (tw). Only tw's thread may touch
 * that wheel, so while the timer is armed the wait is owned by tw
 * (wait.owner = tw): task.c routes cancellations to tw's thread, where the
 * cancel callback can remove the timer. The timer's fire callback also runs
 * there. A waker on another thread claims and wakes the task directly; the
 * task may then resume on another worker with its timer still in tw's
 * wheel. It must not return (its stack holds the timer) until tw has
 * removed it: if the timer has not fired (timer_done), the task parks once
 * more on a "disarm" wait owned by tw and queues itself on tw's cancel
 * inbox; tw removes the timer and wakes it. That costs a round trip through
 * tw only when a timed wait ends early on another worker.
 *
 * Foreign threads (not runtime workers) wait on a condition variable in the
 * selection; they cannot be cancelled, and their deadline is the condition
 * wait's timeout. */
#include <errno.h>
#include <time.h>

#include "waitq.h"
#include "zokio/time.h"

/* ---- wake, cancel, fire ------------------------------------------------ */

void zk__sel_wake(struct zk__sel *s)
{
	struct zk_task *t = s->task;
	if (t) {
		zk__task_wake(t);
		return;
	}
	pthread_mutex_lock(&s->fmu);
	s->fdone = true;
	pthread_cond_signal(&s->fcond);
	pthread_mutex_unlock(&s->fmu);
}

/* Called under t->wait_lock; for a timed selection, on tw's thread. */
static void sel_cancel(struct zk_task *t, struct zk__wait *wt)
{
	struct zk__sel *s = (struct zk__sel *)wt;
	int open = ZK__SEL_OPEN;
	if (!atomic_compare_exchange_strong_explicit(&s->claim, &open, ZK__SEL_CANCELED,
						     memory_order_acq_rel, memory_order_acquire))
		return; /* already won: that winner wakes the task */
	if (s->tw) {
		zk__wheel_remove(&s->tw->wheel, &s->tm);
		atomic_store_explicit(&s->timer_done, true, memory_order_release);
	}
	zk__task_wake(t);
}

/* On tw's thread, from its wheel. */
static void sel_fire(struct zk__timer *tm)
{
	struct zk__sel *s = (struct zk__sel *)((char *)tm - offsetof(struct zk__sel, tm));
	struct zk_task *t = s->task;
	if (tm->when < s->tick) {
		/* A deadline beyond the wheel's reach was clamped: go round
		 * again (we are on tw's thread, inside its wheel's advance,
		 * where re-linking is what a cascade does anyway). */
		tm->when = s->tick;
		if (zk__wheel_insert(&s->tw->wheel, tm))
			return;
	}
	int open = ZK__SEL_OPEN;
	bool won = atomic_compare_exchange_strong_explicit(&s->claim, &open, ZK__SEL_TIMEDOUT,
							   memory_order_acq_rel,
							   memory_order_acquire);
	/* The last touch of s unless we won: the task may return right after. */
	atomic_store_explicit(&s->timer_done, true, memory_order_release);
	if (won)
		zk__task_wake(t);
}

/* The disarm wait's callback: on tw's thread, under t->wait_lock, from the
 * cancel inbox (our own request or a real cancel; idempotent). */
static void disarm_cb(struct zk_task *t, struct zk__wait *wt)
{
	struct zk__sel *s = wt->obj;
	if (s->disarm_done)
		return;
	s->disarm_done = true;
	zk__wheel_remove(&s->tw->wheel, &s->tm);
	atomic_store_explicit(&s->timer_done, true, memory_order_release);
	zk__task_wake(t);
}

/* The task resumed on another worker than tw with its timer still armed:
 * have tw remove it, suspended meanwhile. Not cancellable (it must happen). */
static void disarm_remote(struct zk__sel *s)
{
	struct zk_task *t = s->task;
	struct zk__wait dw = {.cancel = disarm_cb, .owner = s->tw, .obj = s, .res = 0};
	s->disarm_done = false;
	pthread_mutex_lock(&t->wait_lock);
	atomic_store_explicit(&t->wait, &dw, memory_order_seq_cst);
	/* If t is already queued on some inbox, that entry is on tw's: an
	 * entry is only queued while a wait its worker owns is published, and
	 * this task published none since it was woken. */
	zk__task_inbox_push(t, s->tw);
	pthread_mutex_unlock(&t->wait_lock);
	zk__task_park(t, &dw);
}

/* ---- selection life cycle --------------------------------------------- */

static int sel_init(struct zk__sel *s, uint64_t deadline, unsigned flags)
{
	struct zk__worker *w = zk__worker_here();
	struct zk_task *t = w ? w->current : NULL;
	if (w && !t)
		return -EPERM; /* a worker's own loop must never block */
	if (t && !(flags & ZK__SEL_NOCANCEL) &&
	    atomic_load_explicit(&t->cancel, memory_order_acquire))
		return -ECANCELED;
	s->wait.cancel = (flags & ZK__SEL_NOCANCEL) ? NULL : sel_cancel;
	s->wait.owner = NULL;
	s->wait.obj = s;
	s->wait.res = 0;
	s->task = t;
	atomic_init(&s->claim, ZK__SEL_OPEN);
	s->self_claimed = false;
	s->published = false;
	s->parked = false;
	s->deadline = deadline;
	s->tw = NULL;
	atomic_init(&s->timer_done, true);
	s->disarm_done = false;
	s->wake_next = NULL;
	if (!t) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->fcond, &ca);
		pthread_condattr_destroy(&ca);
		pthread_mutex_init(&s->fmu, NULL);
		s->fdone = false;
	}
	return 0;
}

/* Arms the deadline and publishes the wait: from here on anyone may claim.
 * Returns 0, or -ETIMEDOUT when the deadline's tick has already passed
 * (nothing armed). */
static int sel_arm(struct zk__sel *s)
{
	struct zk_task *t = s->task;
	if (!t)
		return 0;
	if (s->deadline != ZK__NO_DEADLINE) {
		struct zk__worker *w = zk__worker_here();
		s->tm.fire = sel_fire;
		s->tm.ctx = s;
		s->tm.linked = false;
		s->tick = zk__wheel_tick_for(&w->wheel, s->deadline);
		s->tm.when = s->tick;
		if (!zk__wheel_insert(&w->wheel, &s->tm))
			return -ETIMEDOUT;
		atomic_store_explicit(&s->timer_done, false, memory_order_relaxed);
		s->tw = w;
		s->wait.owner = w;
	}
	atomic_store_explicit(&t->wait, &s->wait, memory_order_seq_cst);
	s->published = true;
	return 0;
}

/* Returns the claim once the selection is decided. */
static int sel_wait(struct zk__sel *s)
{
	if (s->self_claimed)
		return atomic_load_explicit(&s->claim, memory_order_acquire);
	if (s->task) {
		zk__task_park(s->task, &s->wait);
		s->parked = true;
		return atomic_load_explicit(&s->claim, memory_order_acquire);
	}
	pthread_mutex_lock(&s->fmu);
	while (!s->fdone) {
		if (s->deadline == ZK__NO_DEADLINE) {
			pthread_cond_wait(&s->fcond, &s->fmu);
			continue;
		}
		struct timespec ts = {.tv_sec = (time_t)(s->deadline / ZK_NSEC_PER_SEC),
				      .tv_nsec = (long)(s->deadline % ZK_NSEC_PER_SEC)};
		if (pthread_cond_timedwait(&s->fcond, &s->fmu, &ts) == ETIMEDOUT && !s->fdone) {
			int open = ZK__SEL_OPEN;
			if (atomic_compare_exchange_strong_explicit(&s->claim, &open,
								    ZK__SEL_TIMEDOUT,
								    memory_order_acq_rel,
								    memory_order_acquire))
				break;
			/* Claimed meanwhile: its wake is coming. */
			s->deadline = ZK__NO_DEADLINE;
		}
	}
	pthread_mutex_unlock(&s->fmu);
	return atomic_load_explicit(&s->claim, memory_order_acquire);
}

/* After every arm is unregistered: no waker can reach s any more. */
static void sel_done(struct zk__sel *s)
{
	struct zk_task *t = s->task;
	if (!t) {
		pthread_mutex_destroy(&s->fmu);
		pthread_cond_destroy(&s->fcond);
		return;
	}
	if (s->published && !s->parked) {
		/* As zk__task_park's epilogue: wait out a canceller still
		 * holding our record. */
		atomic_store_explicit(&t->wait, NULL, memory_order_seq_cst);
		if (atomic_load_explicit(&t->cancel, memory_order_seq_cst)) {
			pthread_mutex_lock(&t->wait_lock);
			pthread_mutex_unlock(&t->wait_lock);
		}
	}
	if (s->tw && !atomic_load_explicit(&s->timer_done, memory_order_acquire)) {
		struct zk__worker *w = zk__worker_here();
		if (w == s->tw) {
			/* Same thread as the wheel: the timer cannot be firing. */
			zk__wheel_remove(&w->wheel, &s->tm);
			atomic_store_explicit(&s->timer_done, true, memory_order_relaxed);
		} else {
			disarm_remote(s);
		}
	}
}

/* ---- the driver -------------------------------------------------------- */

uint64_t zk__deadline_after(uint64_t timeout_ns)
{
	if (timeout_ns == 0)
		return ZK__DEADLINE_NOW;
	if (timeout_ns == UINT64_MAX)
		return ZK__NO_DEADLINE;
	uint64_t now = zk_now_ns();
	return timeout_ns >= ZK__NO_DEADLINE - now ? ZK__NO_DEADLINE : now + timeout_ns;
}

static _Thread_local unsigned sel_rr __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) size_t zk__sel_start(size_t n)
{
	if (n <= 1)
		return 0;
	uint64_t x = (uint64_t)(++sel_rr) * 0x9e3779b97f4a7c15ull;
	x ^= x >> 29;
	return (size_t)((x >> 32) % n);
}

int zk__select(struct zk__arm *arms, size_t n, size_t start, uint64_t deadline, unsigned flags)
{
	for (;;) {
		for (size_t k = 0; k < n; k++) {
			size_t i = start + k < n ? start + k : start + k - n;
			struct zk__arm *a = &arms[i];
			a->done = false;
			a->registered = false;
			if (a->ops->try_op(a))
				return (int)i;
		}
		if (deadline == ZK__DEADLINE_NOW ||
		    (deadline != ZK__NO_DEADLINE && zk_now_ns() >= deadline))
			return -ETIMEDOUT;
		struct zk__sel s;
		int r = sel_init(&s, deadline, flags);
		if (r < 0)
			return r;
		s.wait.kind = n > 1 ? ZK__WAIT_SELECT : ZK__WAIT_SYNC, s.wait.what = arms;
		r = sel_arm(&s);
		if (r < 0) {
			sel_done(&s);
			return r;
		}
		for (size_t k = 0; k < n; k++) {
			size_t i = start + k < n ? start + k : start + k - n;
			struct zk__arm *a = &arms[i];
			a->w.prev = a->w.next = NULL;
			a->w.sel = &s;
			a->w.arm = (int)i;
			a->w.linked = false;
			a->w.want = a->n;
			a->w.item = NULL;
			a->w.res = 0;
			a->registered = true;
			int rr = a->ops->reg(a);
			if (rr == ZK__REG_CLAIMED) {
				s.self_claimed = true;
				break;
			}
			if (rr == ZK__REG_LOST)
				break;
		}
		int claim = sel_wait(&s);
		for (size_t i = 0; i < n; i++) {
			if (arms[i].registered) {
				arms[i].ops->unreg(&arms[i]);
				arms[i].registered = false;
			}
		}
		sel_done(&s);
		if (claim >= 0) {
			struct zk__arm *a = &arms[claim];
			if (a->done || a->ops->finish(a))
				return claim;
			continue; /* woken for readiness, but not ready: again */
		}
		return claim == ZK__SEL_TIMEDOUT ? -ETIMEDOUT : -ECANCELED;
	}
}

int zk__wait_one(struct zk__arm *a, uint64_t deadline, unsigned flags)
{
	int r = zk__select(a, 1, 0, deadline, flags);
	return r < 0 ? r : a->res;
}

bool zk__arm_finish_res(struct zk__arm *a)
{
	a->res = a->w.res;
	return true;
}
