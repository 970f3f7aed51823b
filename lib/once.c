/* lib/once.c — the once-cell: a value initialised lazily, exactly once.
 *
 * EMPTY -> RUNNING (one caller runs init, the others queue) -> READY. If
 * init fails the cell goes back to EMPTY and the turn passes to the first
 * queued caller whose claim succeeds (it runs its own init); on success
 * every queued caller is released with the value. The value is written
 * before READY is published (release), so a reader that sees READY
 * (acquire) sees the value without the lock. */
#include <errno.h>

#include "waitq.h"
#include "zokio/sync.h"

#define O_EMPTY 0u
#define O_RUNNING 1u
#define O_READY 2u

/* Arm results. */
#define TURN_READY 0  /* the value is there */
#define TURN_INIT 1   /* the caller must run init */

int zk_once_init(zk_once_t *o)
{
	if (!o)
		return -EINVAL;
	atomic_init(&o->state, O_EMPTY);
	o->value = NULL;
	pthread_mutex_init(&o->lock, NULL);
	o->waiters.head = o->waiters.tail = NULL;
	return 0;
}

int zk_once_destroy(zk_once_t *o)
{
	if (!o)
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	bool busy = atomic_load_explicit(&o->state, memory_order_relaxed) == O_RUNNING ||
		    !zk__waitq_empty(&o->waiters);
	pthread_mutex_unlock(&o->lock);
	if (busy)
		return -EBUSY;
	pthread_mutex_destroy(&o->lock);
	return 0;
}

bool zk_once_get(zk_once_t *o, void **value)
{
	if (!o || atomic_load_explicit(&o->state, memory_order_acquire) != O_READY)
		return false;
	if (value)
		*value = o->value;
	return true;
}

static bool turn_try(struct zk__arm *a)
{
	zk_once_t *o = a->obj;
	bool got = true;
	pthread_mutex_lock(&o->lock);
	uint32_t st = atomic_load_explicit(&o->state, memory_order_relaxed);
	if (st == O_READY) {
		a->res = TURN_READY;
	} else if (st == O_EMPTY) {
		atomic_store_explicit(&o->state, O_RUNNING, memory_order_relaxed);
		a->res = TURN_INIT;
	} else {
		got = false;
	}
	pthread_mutex_unlock(&o->lock);
	return got;
}

static int turn_reg(struct zk__arm *a)
{
	zk_once_t *o = a->obj;
	int ret = ZK__REG_WAIT;
	pthread_mutex_lock(&o->lock);
	uint32_t st = atomic_load_explicit(&o->state, memory_order_relaxed);
	if (st == O_RUNNING) {
		zk__waitq_push(&o->waiters, &a->w);
	} else if (!zk__waiter_claim(&a->w)) {
		ret = ZK__REG_LOST;
	} else {
		if (st == O_EMPTY)
			atomic_store_explicit(&o->state, O_RUNNING, memory_order_relaxed);
		a->res = st == O_EMPTY ? TURN_INIT : TURN_READY;
		a->done = true;
		ret = ZK__REG_CLAIMED;
	}
	pthread_mutex_unlock(&o->lock);
	return ret;
}

static void turn_unreg(struct zk__arm *a)
{
	zk_once_t *o = a->obj;
	pthread_mutex_lock(&o->lock);
	zk__waitq_remove(&o->waiters, &a->w);
	pthread_mutex_unlock(&o->lock);
}

static const struct zk__arm_ops once_arm = {
	.try_op = turn_try, .reg = turn_reg, .unreg = turn_unreg, .finish = zk__arm_finish_res,
};

int zk_once_get_or_init(zk_once_t *o, zk_once_fn init, void *arg, void **value)
{
	if (!o || !init)
		return -EINVAL;
	if (atomic_load_explicit(&o->state, memory_order_acquire) == O_READY) {
		if (value)
			*value = o->value;
		return 0;
	}
	struct zk__arm a = {.ops = &once_arm, .obj = o};
	int r = zk__wait_one(&a, ZK__NO_DEADLINE, 0);
	if (r < 0)
		return r;
	if (r == TURN_READY) {
		if (value)
			*value = o->value;
		return 0;
	}
	/* Our turn: the cell is RUNNING and ours. */
	void *v = NULL;
	int ir = init(arg, &v);
	struct zk__wakelist wl = {NULL, NULL};
	struct zk__waiter *w;
	pthread_mutex_lock(&o->lock);
	if (ir >= 0) {
		o->value = v;
		atomic_store_explicit(&o->state, O_READY, memory_order_release);
		while ((w = zk__waitq_pop(&o->waiters)))
			if (zk__waiter_claim(w)) {
				w->res = TURN_READY;
				zk__wakelist_add(&wl, w->sel);
			}
	} else {
		atomic_store_explicit(&o->state, O_EMPTY, memory_order_relaxed);
		while ((w = zk__waitq_pop(&o->waiters)))
			if (zk__waiter_claim(w)) {
				w->res = TURN_INIT;
				atomic_store_explicit(&o->state, O_RUNNING, memory_order_relaxed);
				zk__wakelist_add(&wl, w->sel);
				break;
			}
	}
	pthread_mutex_unlock(&o->lock);
	zk__wakelist_flush(&wl);
	if (ir < 0)
		return ir;
	if (value)
		*value = v;
	return 0;
}
