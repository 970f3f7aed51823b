/* lib/time.c — the monotonic clock and sleeping on the worker's timer wheel. */
#include <errno.h>
#include <time.h>

#include "internal.h"
#include "zokio/time.h"

uint64_t zk_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * ZK_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void sleep_fire(struct zk__timer *tm)
{
	zk__task_wake(tm->ctx);
}

/* Runs on the wheel's worker (the wait's owner). */
static void sleep_cancel(struct zk_task *t, struct zk__wait *wt)
{
	if (zk__wheel_remove(&wt->owner->wheel, wt->obj)) {
		wt->res = -ECANCELED;
		zk__task_wake(t);
	}
}

int zk_sleep_until(uint64_t deadline_ns)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	for (;;) {
		if (atomic_load_explicit(&t->cancel, memory_order_acquire))
			return -ECANCELED;
		struct zk__worker *w = zk__worker_here();
		struct zk__timer tm = {.fire = sleep_fire, .ctx = t};
		tm.when = zk__wheel_tick_for(&w->wheel, deadline_ns);
		if (!zk__wheel_insert(&w->wheel, &tm)) {
			/* The tick has passed already: just let others run. */
			return zk_yield();
		}
		struct zk__wait wt = {.cancel = sleep_cancel, .owner = w, .obj = &tm,
				      .kind = ZK__WAIT_TIMER};
		int r = zk__task_park(t, &wt);
		if (r < 0)
			return r;
		/* Deadlines beyond the wheel's reach were clamped. */
		if (zk_now_ns() >= deadline_ns)
			return 0;
	}
}

int zk_sleep_ns(uint64_t ns)
{
	if (!zk__task_here())
		return -EPERM;
	if (ns == 0)
		return zk_yield();
	uint64_t now = zk_now_ns();
	/* Saturate: a huge duration means "forever", not a wrapped deadline. */
	return zk_sleep_until(ns > UINT64_MAX - now ? UINT64_MAX : now + ns);
}

int zk_sleep_ms(uint64_t ms)
{
	return zk_sleep_ns(ms > UINT64_MAX / ZK_NSEC_PER_MSEC ? UINT64_MAX : ms * ZK_NSEC_PER_MSEC);
}
