/* lib/obs_park.h — the task-dump note a task writes when it parks (see
 * task_dump.c), inline: it runs on every park, so it is a handful of loads
 * and three relaxed stores. Sync waits (the arm's ops and object) go out of
 * line. Included at the end of internal.h, where the task and worker types
 * are complete. */
#ifndef ZOKIO_OBS_PARK_H
#define ZOKIO_OBS_PARK_H

#include "zokio/time.h"

__attribute__((cold, noinline)) uint64_t zk__obs_park_sync(struct zk_task *t,
							    const struct zk__wait *wt);

static inline void zk__obs_park_note(struct zk_task *t, const struct zk__wait *wt)
{
	struct zk__task_obs *o = &t->obs;
	uint64_t kfd = (uint64_t)ZK__WAIT_OTHER << 32 | 0xffffffffu;
	uint64_t arg = 0;
	switch (wt->kind) {
	case ZK__WAIT_IO: {
		const struct zk__op *op = wt->obj;
		kfd = (uint64_t)ZK__WAIT_IO << 32 | (uint32_t)op->fd;
		arg = op->opcode;
		break;
	}
	case ZK__WAIT_TIMER:
		kfd = (uint64_t)ZK__WAIT_TIMER << 32 | 0xffffffffu;
		arg = wt->owner->wheel.start_ns +
		      ((const struct zk__timer *)wt->obj)->when * ZK_NSEC_PER_MSEC;
		break;
	case ZK__WAIT_JOIN:
		kfd = (uint64_t)ZK__WAIT_JOIN << 32 | 0xffffffffu;
		arg = ((const struct zk_task *)wt->obj)->id;
		break;
	case ZK__WAIT_SYNC:
	case ZK__WAIT_SELECT:
		kfd = (uint64_t)(uint32_t)wt->kind << 32 | 0xffffffffu;
		arg = zk__obs_park_sync(t, wt);
		break;
	default:
		break;
	}
	/* The thread-local directly: no switch happens between here and the
	 * caller's read of it. A task parks on a worker thread. */
	struct zk__worker *w = zk__tls_worker;
	atomic_store_explicit(&o->w_kfd, kfd, memory_order_relaxed);
	atomic_store_explicit(&o->w_arg, arg, memory_order_relaxed);
	atomic_store_explicit(&o->w_since,
			      atomic_load_explicit(&w->stats.now_coarse, memory_order_relaxed),
			      memory_order_relaxed);
}

#endif
