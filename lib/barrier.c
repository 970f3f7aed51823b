/* lib/barrier.c — a reusable barrier for a fixed number of tasks.
 *
 * Arrivals are counted under the barrier's mutex; the task that completes
 * a round (the leader) claims every queued waiter and wakes it. A waiter
 * that leaves before the round is complete (cancelled, timed out) takes
 * its arrival back. One that is cancelled at the very moment the round
 * completes may lose the race to the leader's claim: its arrival then
 * counted for the round, it returns -ECANCELED, and the others go on. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

int zk_barrier_init(zk_barrier_t *b, unsigned count)
{
	if (!b || count == 0)
		return -EINVAL;
	pthread_mutex_init(&b->lock, NULL);
	b->count = count;
	b->arrived = 0;
	b->generation = 0;
	b->waiters.head = b->waiters.tail = NULL;
	return 0;
}

int zk_barrier_destroy(zk_barrier_t *b)
{
	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	bool busy = !zk__waitq_empty(&b->waiters);
	pthread_mutex_unlock(&b->lock);
	if (busy)
		return -EBUSY;
	pthread_mutex_destroy(&b->lock);
	return 0;
}

/* Under b->lock: the round is complete; release everyone queued. */
static void complete_round_locked(zk_barrier_t *b, struct zk__wakelist *wl)
{
	struct zk__waiter *w;
	while ((w = zk__waitq_pop(&b->waiters))) {
		if (zk__waiter_claim(w)) {
			w->res = 0;
			zk__wakelist_add(wl, w->sel);
		}
	}
	b->arrived = 0;
	b->generation++;
}

/* The last arrival completes the round without waiting. */
static bool bw_try(struct zk__arm *a)
{
	zk_barrier_t *b = a->obj;
	struct zk__wakelist wl = {NULL, NULL};
	bool leader = false;
	pthread_mutex_lock(&b->lock);
	if (b->arrived + 1 == b->count) {
		complete_round_locked(b, &wl);
		leader = true;
	}
	pthread_mutex_unlock(&b->lock);
	zk__wakelist_flush(&wl);
	if (leader)
		a->res = ZK_BARRIER_LEADER;
	return leader;
}

static int bw_reg(struct zk__arm *a)
{
	zk_barrier_t *b = a->obj;
	struct zk__wakelist wl = {NULL, NULL};
	int ret;
	pthread_mutex_lock(&b->lock);
	if (b->arrived + 1 == b->count) {
		if (zk__waiter_claim(&a->w)) {
			complete_round_locked(b, &wl);
			a->res = ZK_BARRIER_LEADER;
			a->done = true;
			ret = ZK__REG_CLAIMED;
		} else {
			ret = ZK__REG_LOST; /* we never arrived */
		}
	} else {
		b->arrived++;
		zk__waitq_push(&b->waiters, &a->w);
		ret = ZK__REG_WAIT;
	}
	pthread_mutex_unlock(&b->lock);
	zk__wakelist_flush(&wl);
	return ret;
}

static void bw_unreg(struct zk__arm *a)
{
	zk_barrier_t *b = a->obj;
	pthread_mutex_lock(&b->lock);
	if (a->w.linked) {
		zk__waitq_remove(&b->waiters, &a->w);
		b->arrived--;
	}
	pthread_mutex_unlock(&b->lock);
}

static const struct zk__arm_ops barrier_arm = {
	.try_op = bw_try, .reg = bw_reg, .unreg = bw_unreg, .finish = zk__arm_finish_res,
};

int zk_barrier_wait_timeout(zk_barrier_t *b, uint64_t timeout_ns)
{
	if (!b)
		return -EINVAL;
	struct zk__arm a = {.ops = &barrier_arm, .obj = b};
	return zk__wait_one(&a, zk__deadline_after(timeout_ns), 0);
}

int zk_barrier_wait(zk_barrier_t *b)
{
	return zk_barrier_wait_timeout(b, ZK_FOREVER);
}
