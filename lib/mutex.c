/* lib/mutex.c — the async mutex: FIFO-fair, with direct hand-off.
 *
 * One atomic word: UNLOCKED, LOCKED, or LOCKED|WAITERS. Lock and unlock
 * without waiters are one compare-and-swap each. With waiters queued the
 * word keeps WAITERS set, which sends every lock attempt to the queue and
 * every unlock to the slow path; the slow path, under the internal mutex,
 * hands ownership straight to the first waiter whose claim succeeds: the
 * word stays LOCKED, exactly one task is woken (no thundering herd) and no
 * newcomer can slip in between (no barging). That is Tokio's choice too
 * (its Mutex is a fair semaphore of one permit): a strict FIFO costs a
 * context switch per contended hand-off, and buys bounded waiting.
 *
 * While WAITERS is set only code holding the internal mutex changes the
 * word, so that code may store it plainly. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

#define M_UNLOCKED 0u
#define M_LOCKED 1u
#define M_WAITERS 2u

int zk_mutex_init(zk_mutex_t *m)
{
	if (!m)
		return -EINVAL;
	atomic_init(&m->state, M_UNLOCKED);
	pthread_mutex_init(&m->lock, NULL);
	m->waiters.head = m->waiters.tail = NULL;
	return 0;
}

int zk_mutex_destroy(zk_mutex_t *m)
{
	if (!m)
		return -EINVAL;
	if (atomic_load_explicit(&m->state, memory_order_acquire) != M_UNLOCKED)
		return -EBUSY;
	pthread_mutex_destroy(&m->lock);
	return 0;
}

/* Under m->lock, the mutex being held by the caller: pass it to the first
 * live waiter, or unlock it. */
static void release_locked(zk_mutex_t *m, struct zk__wakelist *wl)
{
	struct zk__waiter *w;
	while ((w = zk__waitq_pop(&m->waiters))) {
		if (zk__waiter_claim(w)) {
			w->res = 0;
			zk__wakelist_add(wl, w->sel);
			atomic_store_explicit(&m->state,
					      zk__waitq_empty(&m->waiters) ? M_LOCKED
									   : M_LOCKED | M_WAITERS,
					      memory_order_release);
			return;
		}
	}
	atomic_store_explicit(&m->state, M_UNLOCKED, memory_order_release);
}

static bool lock_try(struct zk__arm *a)
{
	zk_mutex_t *m = a->obj;
	uint32_t expect = M_UNLOCKED;
	if (!atomic_compare_exchange_strong_explicit(&m->state, &expect, M_LOCKED,
						     memory_order_acquire, memory_order_relaxed))
		return false;
	a->res = 0;
	return true;
}

static int lock_reg(struct zk__arm *a)
{
	zk_mutex_t *m = a->obj;
	struct zk__wakelist wl = {NULL, NULL};
	int ret;
	pthread_mutex_lock(&m->lock);
	uint32_t st = atomic_load_explicit(&m->state, memory_order_relaxed);
	for (;;) {
		if (st == M_UNLOCKED) {
			if (!atomic_compare_exchange_weak_explicit(&m->state, &st, M_LOCKED,
								   memory_order_acquire,
								   memory_order_relaxed))
				continue;
			if (zk__waiter_claim(&a->w)) {
				a->res = 0;
				a->done = true;
				ret = ZK__REG_CLAIMED;
			} else {
				/* Our wait was decided elsewhere: give it back. */
				release_locked(m, &wl);
				ret = ZK__REG_LOST;
			}
			break;
		}
		if (!(st & M_WAITERS) &&
		    !atomic_compare_exchange_weak_explicit(&m->state, &st, st | M_WAITERS,
							   memory_order_relaxed,
							   memory_order_relaxed))
			continue;
		zk__waitq_push(&m->waiters, &a->w);
		ret = ZK__REG_WAIT;
		break;
	}
	pthread_mutex_unlock(&m->lock);
	zk__wakelist_flush(&wl);
	return ret;
}

static void lock_unreg(struct zk__arm *a)
{
	zk_mutex_t *m = a->obj;
	pthread_mutex_lock(&m->lock);
	if (a->w.linked) {
		zk__waitq_remove(&m->waiters, &a->w);
		if (zk__waitq_empty(&m->waiters))
			atomic_store_explicit(&m->state, M_LOCKED, memory_order_relaxed);
	}
	pthread_mutex_unlock(&m->lock);
}

const struct zk__arm_ops zk__mutex_lock_arm = {
	.try_op = lock_try, .reg = lock_reg, .unreg = lock_unreg, .finish = zk__arm_finish_res,
};

static int lock_common(zk_mutex_t *m, uint64_t deadline)
{
	if (!m)
		return -EINVAL;
	struct zk__arm a = {.ops = &zk__mutex_lock_arm, .obj = m};
	if (lock_try(&a))
		return 0;
	return zk__wait_one(&a, deadline, 0);
}

int zk_mutex_lock(zk_mutex_t *m)
{
	return lock_common(m, ZK__NO_DEADLINE);
}

int zk_mutex_lock_timeout(zk_mutex_t *m, uint64_t timeout_ns)
{
	return lock_common(m, zk__deadline_after(timeout_ns));
}

int zk_mutex_trylock(zk_mutex_t *m)
{
	if (!m)
		return -EINVAL;
	uint32_t expect = M_UNLOCKED;
	return atomic_compare_exchange_strong_explicit(&m->state, &expect, M_LOCKED,
						       memory_order_acquire, memory_order_relaxed)
		   ? 0
		   : -EBUSY;
}

int zk_mutex_unlock(zk_mutex_t *m)
{
	if (!m)
		return -EINVAL;
	uint32_t expect = M_LOCKED;
	if (atomic_compare_exchange_strong_explicit(&m->state, &expect, M_UNLOCKED,
						    memory_order_release, memory_order_relaxed))
		return 0;
	if (expect == M_UNLOCKED)
		return -EPERM;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&m->lock);
	uint32_t st = atomic_load_explicit(&m->state, memory_order_relaxed);
	if (st == M_UNLOCKED) {
		pthread_mutex_unlock(&m->lock);
		return -EPERM;
	}
	/* LOCKED with or without waiters; nobody else changes it under the
	 * lock (a fast lock needs UNLOCKED, a fast unlock is ours to do). */
	release_locked(m, &wl);
	pthread_mutex_unlock(&m->lock);
	zk__wakelist_flush(&wl);
	return 0;
}
