/* lib/oneshot.c — the oneshot channel: one value, one sender, one receiver.
 *
 * One atomic word holds the whole state: EMPTY, SENT, CLOSED, or the pointer
 * of the task waiting to receive. The sender writes the value before it
 * publishes SENT (release); the receiver reads it after it sees SENT
 * (acquire). */
#include <errno.h>

#include "internal.h"
#include "zokio/sync.h"

#define OS_EMPTY 0u
#define OS_SENT 1u
#define OS_CLOSED 2u

void zk_oneshot_init(zk_oneshot_t *o)
{
	atomic_init(&o->state, OS_EMPTY);
	o->value = NULL;
}

static int finish(zk_oneshot_t *o, uintptr_t final, void *value)
{
	if (!o)
		return -EINVAL;
	uintptr_t s = atomic_load_explicit(&o->state, memory_order_acquire);
	for (;;) {
		if (s == OS_SENT || s == OS_CLOSED)
			return -EALREADY;
		if (final == OS_SENT)
			o->value = value;
		if (atomic_compare_exchange_weak_explicit(&o->state, &s, final, memory_order_acq_rel,
							  memory_order_acquire))
			break;
	}
	if (s != OS_EMPTY)
		zk__task_wake((struct zk_task *)s);
	return 0;
}

int zk_oneshot_send(zk_oneshot_t *o, void *value)
{
	return finish(o, OS_SENT, value);
}

int zk_oneshot_close(zk_oneshot_t *o)
{
	return finish(o, OS_CLOSED, NULL);
}

static void recv_cancel(struct zk_task *self, struct zk__wait *wt)
{
	zk_oneshot_t *o = wt->obj;
	uintptr_t expect = (uintptr_t)self;
	if (atomic_compare_exchange_strong_explicit(&o->state, &expect, OS_EMPTY,
						    memory_order_acq_rel, memory_order_acquire)) {
		wt->res = -ECANCELED;
		zk__task_wake(self);
	}
}

int zk_oneshot_recv(zk_oneshot_t *o, void **value)
{
	if (!o)
		return -EINVAL;
	struct zk_task *self = zk__task_here();
	if (!self)
		return -EPERM;
	uintptr_t s = atomic_load_explicit(&o->state, memory_order_acquire);
	if (s == OS_EMPTY) {
		if (atomic_load_explicit(&self->cancel, memory_order_acquire))
			return -ECANCELED;
		struct zk__wait wt = {.cancel = recv_cancel, .obj = o};
		if (atomic_compare_exchange_strong_explicit(&o->state, &s, (uintptr_t)self,
							    memory_order_acq_rel,
							    memory_order_acquire)) {
			int r = zk__task_park(self, &wt);
			if (r < 0)
				return r;
			s = atomic_load_explicit(&o->state, memory_order_acquire);
		}
	}
	if (s == OS_SENT) {
		if (value)
			*value = o->value;
		return 0;
	}
	if (s == OS_CLOSED)
		return -EPIPE;
	return -EBUSY;
}
