/* lib/semaphore.c — the counting semaphore (n permits at a time, strict
 * FIFO) and the rwlock built on it.
 *
 * One atomic word: permits << 2 | CLOSED | WAITERS. Without waiters,
 * acquire and release are one compare-and-swap. Once a task queues, WAITERS
 * sends every acquire to the queue (so nobody overtakes it) and every
 * release to the slow path, which, under the internal mutex, adds the
 * permits and hands them to waiters from the head of the queue as long as
 * the head's whole request fits. The head is never skipped for a smaller
 * request behind it: that is what makes a writer of the rwlock (which asks
 * for every permit) safe from starvation by readers. While WAITERS is set
 * only code holding the mutex changes the word.
 *
 * A waiter that leaves (cancelled, timed out) re-runs the hand-out: the
 * permits it was blocking may now satisfy the waiters behind it. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

#define S_WAITERS 1ull
#define S_CLOSED 2ull
#define PERMITS(st) ((st) >> 2)
#define ONE (1ull << 2)

int zk_sem_init(zk_sem_t *s, uint64_t permits)
{
	if (!s || permits > ZK_SEM_MAX_PERMITS)
		return -EINVAL;
	atomic_init(&s->state, permits << 2);
	pthread_mutex_init(&s->lock, NULL);
	s->waiters.head = s->waiters.tail = NULL;
	return 0;
}

int zk_sem_destroy(zk_sem_t *s)
{
	if (!s)
		return -EINVAL;
	if (atomic_load_explicit(&s->state, memory_order_acquire) & S_WAITERS)
		return -EBUSY;
	pthread_mutex_destroy(&s->lock);
	return 0;
}

uint64_t zk_sem_available(zk_sem_t *s)
{
	return s ? PERMITS(atomic_load_explicit(&s->state, memory_order_acquire)) : 0;
}

static bool fast_acquire(zk_sem_t *s, uint64_t n)
{
	uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
	while (!(st & (S_WAITERS | S_CLOSED)) && PERMITS(st) >= n) {
		if (atomic_compare_exchange_weak_explicit(&s->state, &st, st - n * ONE,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
	}
	return false;
}

/* Under s->lock with WAITERS set (or the queue empty): hands permits to the
 * head of the queue while its request fits; clears WAITERS once the queue
 * is empty. */
static void dispatch_locked(zk_sem_t *s, struct zk__wakelist *wl)
{
	if (zk__waitq_empty(&s->waiters))
		return;
	uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
	struct zk__waiter *w;
	while ((w = s->waiters.head)) {
		if (!(st & S_CLOSED) && PERMITS(st) < w->want)
			break;
		zk__waitq_pop(&s->waiters);
		if (!zk__waiter_claim(w))
			continue; /* leaving: it takes nothing */
		if (st & S_CLOSED) {
			w->res = -EPIPE;
		} else {
			st -= w->want * ONE;
			w->res = 0;
		}
		zk__wakelist_add(wl, w->sel);
	}
	if (zk__waitq_empty(&s->waiters))
		st &= ~S_WAITERS;
	atomic_store_explicit(&s->state, st, memory_order_release);
}

/* Releases n permits, refusing if the count would exceed max. */
static int release_max(zk_sem_t *s, uint64_t n, uint64_t max, int err)
{
	uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
	while (!(st & S_WAITERS)) {
		if (PERMITS(st) > max || n > max - PERMITS(st))
			return err;
		if (atomic_compare_exchange_weak_explicit(&s->state, &st, st + n * ONE,
							  memory_order_release,
							  memory_order_relaxed))
			return 0;
	}
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&s->lock);
	st = atomic_load_explicit(&s->state, memory_order_relaxed);
	for (;;) {
		if (PERMITS(st) > max || n > max - PERMITS(st)) {
			pthread_mutex_unlock(&s->lock);
			return err;
		}
		if (atomic_compare_exchange_weak_explicit(&s->state, &st, st + n * ONE,
							  memory_order_release,
							  memory_order_relaxed))
			break;
	}
	dispatch_locked(s, &wl);
	pthread_mutex_unlock(&s->lock);
	zk__wakelist_flush(&wl);
	return 0;
}

int zk_sem_release(zk_sem_t *s, uint64_t n)
{
	if (!s)
		return -EINVAL;
	if (n == 0)
		return 0;
	return release_max(s, n, ZK_SEM_MAX_PERMITS, -EOVERFLOW);
}

int zk_sem_close(zk_sem_t *s)
{
	if (!s)
		return -EINVAL;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&s->lock);
	uint64_t st = atomic_fetch_or_explicit(&s->state, S_CLOSED, memory_order_acq_rel);
	if (!(st & S_CLOSED))
		dispatch_locked(s, &wl);
	pthread_mutex_unlock(&s->lock);
	zk__wakelist_flush(&wl);
	return (st & S_CLOSED) ? -EALREADY : 0;
}

/* ---- acquire arm: a->n permits --------------------------------------------- */

static bool acq_try(struct zk__arm *a)
{
	zk_sem_t *s = a->obj;
	if (fast_acquire(s, a->n)) {
		a->res = 0;
		return true;
	}
	if (atomic_load_explicit(&s->state, memory_order_acquire) & S_CLOSED) {
		a->res = -EPIPE;
		return true;
	}
	return false;
}

static int acq_reg(struct zk__arm *a)
{
	zk_sem_t *s = a->obj;
	uint64_t n = a->n;
	struct zk__wakelist wl = {NULL, NULL};
	int ret;
	pthread_mutex_lock(&s->lock);
	uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
	for (;;) {
		if (st & S_CLOSED) {
			ret = zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
			a->res = -EPIPE;
			a->done = true;
			break;
		}
		if (!(st & S_WAITERS) && PERMITS(st) >= n) {
			if (!atomic_compare_exchange_weak_explicit(&s->state, &st, st - n * ONE,
								   memory_order_acquire,
								   memory_order_relaxed))
				continue;
			if (zk__waiter_claim(&a->w)) {
				a->res = 0;
				a->done = true;
				ret = ZK__REG_CLAIMED;
			} else {
				/* Decided elsewhere: put the permits back. */
				st = atomic_fetch_add_explicit(&s->state, n * ONE,
							       memory_order_release);
				dispatch_locked(s, &wl);
				ret = ZK__REG_LOST;
			}
			break;
		}
		if (!(st & S_WAITERS) &&
		    !atomic_compare_exchange_weak_explicit(&s->state, &st, st | S_WAITERS,
							   memory_order_relaxed,
							   memory_order_relaxed))
			continue;
		zk__waitq_push(&s->waiters, &a->w);
		ret = ZK__REG_WAIT;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	zk__wakelist_flush(&wl);
	return ret;
}

static void acq_unreg(struct zk__arm *a)
{
	zk_sem_t *s = a->obj;
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&s->lock);
	if (a->w.linked) {
		zk__waitq_remove(&s->waiters, &a->w);
		if (zk__waitq_empty(&s->waiters)) {
			uint64_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
			atomic_store_explicit(&s->state, st & ~S_WAITERS, memory_order_release);
		} else {
			dispatch_locked(s, &wl);
		}
	}
	pthread_mutex_unlock(&s->lock);
	zk__wakelist_flush(&wl);
}

const struct zk__arm_ops zk__sem_acquire_arm = {
	.try_op = acq_try, .reg = acq_reg, .unreg = acq_unreg, .finish = zk__arm_finish_res,
};

static int acquire_common(zk_sem_t *s, uint64_t n, uint64_t deadline)
{
	if (!s || n > ZK_SEM_MAX_PERMITS)
		return -EINVAL;
	if (n == 0)
		return 0;
	struct zk__arm a = {.ops = &zk__sem_acquire_arm, .obj = s, .n = n};
	return zk__wait_one(&a, deadline, 0);
}

int zk_sem_acquire(zk_sem_t *s, uint64_t n)
{
	return acquire_common(s, n, ZK__NO_DEADLINE);
}

int zk_sem_acquire_timeout(zk_sem_t *s, uint64_t n, uint64_t timeout_ns)
{
	return acquire_common(s, n, zk__deadline_after(timeout_ns));
}

int zk_sem_try_acquire(zk_sem_t *s, uint64_t n)
{
	if (!s || n > ZK_SEM_MAX_PERMITS)
		return -EINVAL;
	if (n == 0)
		return 0;
	struct zk__arm a = {.ops = &zk__sem_acquire_arm, .obj = s, .n = n};
	return acq_try(&a) ? a.res : -EAGAIN;
}

/* ---- rwlock ------------------------------------------------------------------ */

int zk_rwlock_init(zk_rwlock_t *l)
{
	return l ? zk_sem_init(&l->sem, ZK_RWLOCK_MAX_READERS) : -EINVAL;
}

int zk_rwlock_destroy(zk_rwlock_t *l)
{
	if (!l)
		return -EINVAL;
	if (atomic_load_explicit(&l->sem.state, memory_order_acquire) !=
	    ZK_RWLOCK_MAX_READERS * ONE)
		return -EBUSY;
	return zk_sem_destroy(&l->sem);
}

int zk_rwlock_rdlock(zk_rwlock_t *l)
{
	return l ? acquire_common(&l->sem, 1, ZK__NO_DEADLINE) : -EINVAL;
}

int zk_rwlock_rdlock_timeout(zk_rwlock_t *l, uint64_t timeout_ns)
{
	return l ? acquire_common(&l->sem, 1, zk__deadline_after(timeout_ns)) : -EINVAL;
}

int zk_rwlock_tryrdlock(zk_rwlock_t *l)
{
	if (!l)
		return -EINVAL;
	return fast_acquire(&l->sem, 1) ? 0 : -EBUSY;
}

int zk_rwlock_wrlock(zk_rwlock_t *l)
{
	return l ? acquire_common(&l->sem, ZK_RWLOCK_MAX_READERS, ZK__NO_DEADLINE) : -EINVAL;
}

int zk_rwlock_wrlock_timeout(zk_rwlock_t *l, uint64_t timeout_ns)
{
	return l ? acquire_common(&l->sem, ZK_RWLOCK_MAX_READERS, zk__deadline_after(timeout_ns))
		 : -EINVAL;
}

int zk_rwlock_trywrlock(zk_rwlock_t *l)
{
	if (!l)
		return -EINVAL;
	return fast_acquire(&l->sem, ZK_RWLOCK_MAX_READERS) ? 0 : -EBUSY;
}

int zk_rwlock_rdunlock(zk_rwlock_t *l)
{
	if (!l)
		return -EINVAL;
	return release_max(&l->sem, 1, ZK_RWLOCK_MAX_READERS, -EPERM);
}

int zk_rwlock_wrunlock(zk_rwlock_t *l)
{
	if (!l)
		return -EINVAL;
	return release_max(&l->sem, ZK_RWLOCK_MAX_READERS, ZK_RWLOCK_MAX_READERS, -EPERM);
}
