/* lib/notify.c — notify: wake one or all waiting tasks, with a stored
 * permit so that a notify_one that comes before the wait is not lost.
 *
 * One atomic word: EMPTY, NOTIFIED (a permit is stored, nobody waits) or
 * WAITING (the queue is not empty). EMPTY <-> NOTIFIED change without the
 * lock (notify_one with nobody waiting, a wait that finds the permit);
 * anything that involves WAITING happens under the internal mutex. A
 * notify_one with waiters hands its notification to the first waiter whose
 * claim succeeds; if every queued waiter is leaving (cancelled, timed out,
 * won another arm of a select), the permit is stored instead, so a
 * notification is never dropped on the floor. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

#define N_EMPTY 0u
#define N_NOTIFIED 1u
#define N_WAITING 2u

int zk_notify_init(zk_notify_t *n)
{
	if (!n)
		return -EINVAL;
	atomic_init(&n->state, N_EMPTY);
	pthread_mutex_init(&n->lock, NULL);
	n->waiters.head = n->waiters.tail = NULL;
	return 0;
}

int zk_notify_destroy(zk_notify_t *n)
{
	if (!n)
		return -EINVAL;
	if (atomic_load_explicit(&n->state, memory_order_acquire) == N_WAITING)
		return -EBUSY;
	pthread_mutex_destroy(&n->lock);
	return 0;
}

int zk_notify_one(zk_notify_t *n)
{
	if (!n)
		return -EINVAL;
	uint32_t st = atomic_load_explicit(&n->state, memory_order_acquire);
	for (;;) {
		if (st == N_NOTIFIED)
			return 0;
		if (st == N_EMPTY) {
			if (atomic_compare_exchange_weak_explicit(&n->state, &st, N_NOTIFIED,
								  memory_order_acq_rel,
								  memory_order_acquire))
				return 0;
			continue;
		}
		pthread_mutex_lock(&n->lock);
		st = atomic_load_explicit(&n->state, memory_order_relaxed);
		if (st != N_WAITING) {
			pthread_mutex_unlock(&n->lock);
			continue;
		}
		struct zk__waiter *w;
		struct zk__sel *woken = NULL;
		while ((w = zk__waitq_pop(&n->waiters))) {
			if (zk__waiter_claim(w)) {
				w->res = 0;
				woken = w->sel;
				break;
			}
		}
		if (zk__waitq_empty(&n->waiters))
			atomic_store_explicit(&n->state, woken ? N_EMPTY : N_NOTIFIED,
					      memory_order_release);
		pthread_mutex_unlock(&n->lock);
		if (woken)
			zk__sel_wake(woken);
		return 0;
	}
}

int zk_notify_all(zk_notify_t *n)
{
	if (!n)
		return -EINVAL;
	if (atomic_load_explicit(&n->state, memory_order_acquire) != N_WAITING)
		return 0;
	struct zk__wakelist wl = {NULL, NULL};
	int count = 0;
	pthread_mutex_lock(&n->lock);
	if (atomic_load_explicit(&n->state, memory_order_relaxed) == N_WAITING) {
		struct zk__waiter *w;
		while ((w = zk__waitq_pop(&n->waiters))) {
			if (zk__waiter_claim(w)) {
				w->res = 0;
				zk__wakelist_add(&wl, w->sel);
				count++;
			}
		}
		atomic_store_explicit(&n->state, N_EMPTY, memory_order_release);
	}
	pthread_mutex_unlock(&n->lock);
	zk__wakelist_flush(&wl);
	return count;
}

/* ---- wait arm ---------------------------------------------------------------- */

static bool wait_try(struct zk__arm *a)
{
	zk_notify_t *n = a->obj;
	uint32_t expect = N_NOTIFIED;
	if (!atomic_compare_exchange_strong_explicit(&n->state, &expect, N_EMPTY,
						     memory_order_acq_rel, memory_order_relaxed))
		return false;
	a->res = 0;
	return true;
}

static int wait_reg(struct zk__arm *a)
{
	zk_notify_t *n = a->obj;
	int ret;
	pthread_mutex_lock(&n->lock);
	uint32_t st = atomic_load_explicit(&n->state, memory_order_relaxed);
	for (;;) {
		if (st == N_NOTIFIED) {
			if (!atomic_compare_exchange_weak_explicit(&n->state, &st, N_EMPTY,
								   memory_order_acq_rel,
								   memory_order_relaxed))
				continue;
			if (zk__waiter_claim(&a->w)) {
				a->res = 0;
				a->done = true;
				ret = ZK__REG_CLAIMED;
			} else {
				/* Decided elsewhere: keep the permit stored
				 * (nobody can be queued: we hold the lock and
				 * the word was NOTIFIED). */
				atomic_store_explicit(&n->state, N_NOTIFIED, memory_order_release);
				ret = ZK__REG_LOST;
			}
			break;
		}
		if (st == N_EMPTY &&
		    !atomic_compare_exchange_weak_explicit(&n->state, &st, N_WAITING,
							   memory_order_relaxed,
							   memory_order_relaxed))
			continue;
		zk__waitq_push(&n->waiters, &a->w);
		ret = ZK__REG_WAIT;
		break;
	}
	pthread_mutex_unlock(&n->lock);
	return ret;
}

static void wait_unreg(struct zk__arm *a)
{
	zk_notify_t *n = a->obj;
	/* Won by this arm: either wait_reg/wait_try claimed it without
	 * queueing, or a notifier did, and notifiers pop a waiter before they
	 * claim it (under the lock, before the claim we read with acquire).
	 * Either way it is not queued: no lock round trip needed. */
	if (atomic_load_explicit(&a->w.sel->claim, memory_order_acquire) == a->w.arm)
		return;
	pthread_mutex_lock(&n->lock);
	if (a->w.linked) {
		zk__waitq_remove(&n->waiters, &a->w);
		if (zk__waitq_empty(&n->waiters))
			atomic_store_explicit(&n->state, N_EMPTY, memory_order_release);
	}
	pthread_mutex_unlock(&n->lock);
}

const struct zk__arm_ops zk__notify_wait_arm = {
	.try_op = wait_try, .reg = wait_reg, .unreg = wait_unreg, .finish = zk__arm_finish_res,
};

int zk_notify_wait(zk_notify_t *n)
{
	if (!n)
		return -EINVAL;
	struct zk__arm a = {.ops = &zk__notify_wait_arm, .obj = n};
	return zk__wait_one(&a, ZK__NO_DEADLINE, 0);
}

int zk_notify_wait_timeout(zk_notify_t *n, uint64_t timeout_ns)
{
	if (!n)
		return -EINVAL;
	struct zk__arm a = {.ops = &zk__notify_wait_arm, .obj = n};
	return zk__wait_one(&a, zk__deadline_after(timeout_ns), 0);
}
