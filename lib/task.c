/* lib/task.c — task records and their life cycle: spawn, run, suspend, wake,
 * join, cancel, free.
 *
 * Suspension protocol. A task that waits publishes a struct zk__wait (on its
 * own stack) in t->wait, registers itself with whatever will wake it, and
 * switches back to its worker with reason PARK. The worker then moves the
 * task from RUNNING to IDLE. A waker calls zk__task_wake() exactly once per
 * suspension: IDLE -> SCHEDULED and into a run queue, or, if the task is
 * still RUNNING because it has not finished switching out, RUNNING ->
 * RUNNING|NOTIFIED, and the worker reschedules it right after the switch. So
 * a task is never resumed on two stacks at once and no wake is lost.
 *
 * Cancellation. zk_cancel() sets t->cancel, then, under t->wait_lock, asks
 * the published wait to cancel itself. Waits owned by a worker (ring ops,
 * timers) may only be touched on that worker's thread, so a canceller on
 * another thread queues the task on the owner's cancel inbox and wakes it.
 * The task, after it resumes, clears t->wait and, if a cancel was requested,
 * takes and drops the wait lock: that waits out a canceller still using the
 * wait record before the task's stack frame (which holds it) goes away. The
 * flag is sticky: every later suspending call returns -ECANCELED at once.
 * The task sets t->wait before it reads t->cancel, and the canceller sets
 * t->cancel before it reads t->wait (both seq_cst): one of them always sees
 * the other, so a cancel that races with the start of a wait is not lost. */
#include <errno.h>
#include <string.h>

#include "fiber.h"
#include "internal.h"

/* initial-exec: a plain %fs-relative load instead of a __tls_get_addr call
 * on every access (the library is linked, not dlopen'ed late). */
_Thread_local struct zk__worker *zk__tls_worker __attribute__((tls_model("initial-exec")));

/* noinline plus an opaque asm: never inlined, never assumed pure, so each
 * call reads the thread-local of the thread running at that moment. */
__attribute__((noinline)) struct zk__worker *zk__worker_here(void)
{
	struct zk__worker *w = zk__tls_worker;
	__asm__ volatile("" ::: "memory");
	return w;
}

/* Freed task records a worker keeps for reuse. */
#define TASK_CACHE_MAX 1024u

/* ---- switching ------------------------------------------------------------ */

/* Takes the switch that just ended: the task that switched out (w->prev)
 * is off its stack now, so it may be queued, parked or freed. Runs first
 * thing wherever a switch lands: in the worker loop (zk__task_run), in a
 * task resuming (switch_to_next), or in a task starting (task_entry). */
static void task_finish(struct zk__worker *w, struct zk_task *t);

/* ---- pinned tasks ---------------------------------------------------------
 * A pinned task (t->pin) runs only on its home worker: it uses something
 * that lives in that worker's ring (direct descriptors). It never enters a
 * run queue other workers steal from: every schedule of it goes to its
 * home's list (under the home's inbox lock), which only the home takes
 * from (zk__worker_take_home). A pinned task that reaches another worker
 * all the same (pinned while it sat in a queue) is sent home by
 * task_prepare. */
void zk__task_send_home(struct zk_task *t)
{
	struct zk__worker *home = &t->rt->workers[t->pin - 1];
	t->next = NULL;
	pthread_mutex_lock(&home->inbox_lock);
	if (home->home_tail)
		home->home_tail->next = t;
	else
		home->home_head = t;
	home->home_tail = t;
	atomic_store_explicit(&home->home_nonempty, true, memory_order_seq_cst);
	pthread_mutex_unlock(&home->inbox_lock);
	/* A busy home finds it in its next look for work; a parked one (it
	 * publishes `parked`, then looks at home_nonempty) needs waking. */
	if (home != zk__worker_here() &&
	    atomic_load_explicit(&home->parked, memory_order_seq_cst))
		zk__worker_wake(home);
}

static inline void requeue(struct zk__worker *w, struct zk_task *t)
{
	if (t->pin)
		zk__task_send_home(t);
	else
		zk__runq_push(&w->runq, t, &w->rt->inject);
}

static void finish_switch(struct zk__worker *w)
{
	struct zk_task *p = w->prev;
	if (!p)
		return;
	w->prev = NULL;
	switch (p->switch_reason) {
	case ZK__SW_EXIT:
		task_finish(w, p);
		break;
	case ZK__SW_YIELD:
		atomic_store_explicit(&p->state, ZK__T_SCHEDULED, memory_order_release);
		requeue(w, p);
		break;
	default: {
		uint32_t expect = ZK__T_RUNNING;
		if (!atomic_compare_exchange_strong_explicit(&p->state, &expect, ZK__T_IDLE,
							     memory_order_acq_rel,
							     memory_order_acquire)) {
			/* Woken while switching out: run it again soon. */
			atomic_store_explicit(&p->state, ZK__T_SCHEDULED, memory_order_release);
			requeue(w, p);
		}
		break;
	}
	}
}

static void task_entry(void *arg);

/* Live lists. A task joins its shard's list the first time it suspends or
 * yields, or when it finishes while a handle still holds its record; a task
 * that runs straight through (most spawns in a burst) never takes the
 * shard lock. The lists are for what must find tasks that are not running:
 * shutdown's cancel walk, the task dump, and freeing records whose handles
 * were never released. Shutdown's walk sets `closing` first; a task linked
 * after the walk passed its shard sees `closing` here under the same lock,
 * and one that has not started yet sees it in task_prepare. */
static void live_link(struct zk_task **head, struct zk_task *t);

static void live_link_once(struct zk_task *t, bool cancel_if_closing)
{
	if (t->live_linked)
		return;
	zk_runtime_t *rt = t->rt;
	struct zk__live_shard *sh = &rt->shards[t->shard];
	pthread_mutex_lock(&sh->lock);
	live_link(&sh->head, t);
	t->live_linked = true;
	if (cancel_if_closing && atomic_load_explicit(&rt->closing, memory_order_relaxed))
		atomic_store_explicit(&t->cancel, true, memory_order_seq_cst);
	pthread_mutex_unlock(&sh->lock);
}

/* Gives t a stack on its first run. False if t finished instead (cancelled
 * before it started, or no stack): it is then freed, and must not run. */
static bool task_prepare(struct zk__worker *w, struct zk_task *t)
{
	if (t->pin && t->pin != w->index + 1) {
		zk__task_send_home(t); /* stays SCHEDULED */
		return false;
	}
	atomic_store_explicit(&t->state, ZK__T_RUNNING, memory_order_release);
	if (t->started)
		return true;
	if (atomic_load_explicit(&t->cancel, memory_order_acquire) ||
	    atomic_load_explicit(&w->rt->closing, memory_order_seq_cst)) {
		t->exit_res = -ECANCELED;
		task_finish(w, t);
		return false;
	}
	t->stack = zk__stack_get(w->rt, &w->stacks);
	if (!t->stack) {
		t->exit_res = -ENOMEM;
		task_finish(w, t);
		return false;
	}
#ifdef _WIN32
	t->sp = zk__fiber_init_win(t->stack->lo, (char *)t->stack->lo + t->stack->size, task_entry,
				   t);
#else
	t->sp = zk__fiber_init((char *)t->stack->lo + t->stack->size, task_entry, t);
#endif
	t->started = true;
#ifdef ZK_TSAN
	t->tsan_fiber = __tsan_create_fiber(0);
#endif
	return true;
}

/* From a task (t, its switch_reason set) to the next one. When the worker
 * loop has nothing to do between the two (no ring poll due, no shutdown),
 * the switch goes straight to the next runnable task: one context switch
 * instead of two (task -> loop -> task), and each is costly (the return
 * stack buffer holds the other context's calls, so the `ret` after the
 * switch mispredicts). Otherwise it goes back to the loop. Returns when t
 * is resumed, possibly on another worker. Does not return if t exited. */
static void switch_to_next(struct zk_task *t, bool exiting)
{
	struct zk__worker *w = zk__worker_here();
	struct zk_task *next;
	do {
		next = zk__worker_direct_next(w);
	} while (next && !task_prepare(w, next));
	w->prev = t;
	void *to;
	if (next) {
		w->current = next;
		to = next->sp;
#ifdef ZK_ASAN
		__sanitizer_start_switch_fiber(exiting ? NULL : &t->asan_fake, next->stack->lo,
					       next->stack->size);
#endif
#ifdef ZK_TSAN
		__tsan_switch_to_fiber(next->tsan_fiber, 0);
#endif
	} else {
		to = w->sched_sp;
#ifdef ZK_ASAN
		__sanitizer_start_switch_fiber(exiting ? NULL : &t->asan_fake, w->thread_stack_lo,
					       w->thread_stack_size);
#endif
#ifdef ZK_TSAN
		__tsan_switch_to_fiber(w->tsan_fiber, 0);
#endif
	}
	(void)exiting;
	zk__fiber_switch(&t->sp, to);
#ifdef ZK_ASAN
	__sanitizer_finish_switch_fiber(t->asan_fake, NULL, NULL);
#endif
	finish_switch(zk__worker_here());
}

static void task_entry(void *arg)
{
	struct zk_task *t = arg;
#ifdef ZK_ASAN
	__sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
	finish_switch(zk__worker_here());
	t->result = t->fn(t->arg);
	t->switch_reason = ZK__SW_EXIT;
	switch_to_next(t, true);
	__builtin_unreachable();
}

/* ---- records -------------------------------------------------------------- */

static void live_unlink(struct zk_task **head, struct zk_task *t)
{
	if (t->live_prev)
		t->live_prev->live_next = t->live_next;
	else
		*head = t->live_next;
	if (t->live_next)
		t->live_next->live_prev = t->live_prev;
}

static void live_link(struct zk_task **head, struct zk_task *t)
{
	t->live_prev = NULL;
	t->live_next = *head;
	if (*head)
		(*head)->live_prev = t;
	*head = t;
}

/* Unlinked record: keep it for reuse on this worker, or give it back. The
 * wait lock stays initialised while the record sits in the cache. */
static void record_recycle(struct zk__worker *w, struct zk_task *t)
{
	if (w && w->task_cache_n < TASK_CACHE_MAX) {
		t->next = w->task_cache;
		w->task_cache = t;
		w->task_cache_n++;
		return;
	}
	pthread_mutex_destroy(&t->wait_lock);
	zk__free_sized(t, sizeof(*t));
}

static void task_free(struct zk_task *t)
{
	zk_runtime_t *rt = t->rt;
	if (t->live_linked) {
		struct zk__live_shard *sh = &rt->shards[t->shard];
		pthread_mutex_lock(&sh->lock);
		live_unlink(&sh->head, t);
		pthread_mutex_unlock(&sh->lock);
	}
	struct zk__worker *w = zk__worker_here();
	record_recycle(w && w->rt == rt ? w : NULL, t);
}

void zk__task_release(struct zk_task *t)
{
	if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		task_free(t);
}

void zk__task_free_cache(struct zk__worker *w)
{
	while (w->task_cache) {
		struct zk_task *t = w->task_cache;
		w->task_cache = t->next;
		pthread_mutex_destroy(&t->wait_lock);
		zk__free(t);
	}
	w->task_cache_n = 0;
}

/* Shutdown: cancel every task that has not returned. */
void zk__task_cancel_all(zk_runtime_t *rt)
{
	ZK__OBS_SHUTDOWN(rt);
	for (unsigned i = 0; i < rt->nshards; i++) {
		struct zk__live_shard *sh = &rt->shards[i];
		pthread_mutex_lock(&sh->lock);
		for (struct zk_task *t = sh->head; t; t = t->live_next)
			if (atomic_load_explicit(&t->state, memory_order_acquire) != ZK__T_DONE)
				zk_cancel(t);
		pthread_mutex_unlock(&sh->lock);
	}
}

/* After the workers stopped: free records that handles still hold. */
void zk__task_destroy_lists(zk_runtime_t *rt)
{
	for (unsigned i = 0; i < rt->nshards; i++) {
		struct zk_task *t = rt->shards[i].head;
		rt->shards[i].head = NULL;
		while (t) {
			struct zk_task *next = t->live_next;
			pthread_mutex_destroy(&t->wait_lock);
			zk__free(t);
			t = next;
		}
	}
}

int zk__task_new(zk_runtime_t *rt, struct zk__worker *w, zk_task_fn fn, void *arg,
		 struct zk_task **out)
{
	struct zk_task *t;
	if (w && w->task_cache) {
		t = w->task_cache;
		w->task_cache = t->next;
		w->task_cache_n--;
	} else {
		t = zk__alloc(sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t, 0, sizeof(*t));
		pthread_mutex_init(&t->wait_lock, NULL);
	}
	/* Field by field rather than memset: this is the spawn hot path and
	 * the record is hot in cache; the wait lock survives recycling. */
	atomic_init(&t->state, ZK__T_SCHEDULED);
	atomic_init(&t->refs, 1);
	atomic_init(&t->cancel, false);
	atomic_init(&t->cancel_queued, false);
	atomic_init(&t->joiner, NULL);
	atomic_init(&t->wait, NULL);
	t->started = false;
	t->switch_reason = 0;
	t->sp = NULL;
	t->stack = NULL;
	t->fn = fn;
	t->arg = arg;
	t->result = NULL;
	t->exit_res = 0;
	t->rt = rt;
	t->next = NULL;
	t->cancel_next = NULL;
	t->on_exit = NULL;
	t->on_exit_ctx = NULL;
	t->next_timeout_ns = 0;
	t->pin = 0;
	t->asan_fake = NULL;
	t->tsan_fiber = NULL;
	ZK__OBS_TASK_INIT(t);
	if (w) {
		/* Worker index in the low byte keeps ids unique without a
		 * shared counter. */
		t->id = (++w->next_task_id << 8) | w->index;
		atomic_store_explicit(&w->n_spawned,
				      atomic_load_explicit(&w->n_spawned, memory_order_relaxed) + 1,
				      memory_order_release);
	} else {
		uint64_t n = atomic_fetch_add_explicit(&rt->foreign_ids, 1, memory_order_relaxed);
		t->id = ((n + 1) << 8) | 0xff;
		atomic_fetch_add_explicit(&rt->foreign_spawned, 1, memory_order_release);
	}
	t->shard = (uint32_t)((t->id >> 8) ^ (t->id & 0xff)) & (rt->nshards - 1);
	t->live_linked = false;
	/* Not linked yet (live_link_once): a task that runs to completion
	 * without ever suspending costs no lock round trip. */
	if (atomic_load_explicit(&rt->closing, memory_order_seq_cst))
		atomic_store_explicit(&t->cancel, true, memory_order_relaxed);
	*out = t;
	return 0;
}

/* ---- scheduling ------------------------------------------------------------ */

void zk__schedule(zk_runtime_t *rt, struct zk_task *t, bool lifo)
{
	struct zk__worker *w = zk__worker_here();
	if (t->pin && w && w->rt == rt) {
		zk__task_send_home(t);
		return;
	}
	if (w && w->rt == rt) {
		if (lifo) {
			struct zk_task *prev =
			    atomic_exchange_explicit(&w->lifo, t, memory_order_acq_rel);
			if (!prev)
				return;
			t = prev;
		}
		zk__runq_push(&w->runq, t, &rt->inject);
		/* Not while this worker reaps inside its own park: it counts as
		 * parked and could pick itself. It decides once it is up. */
		if (!atomic_load_explicit(&w->parked, memory_order_relaxed) &&
		    zk__idle_should_notify(&rt->idle))
			zk__notify_parked(rt);
		return;
	}
	/* From outside (a foreign thread, another runtime's worker): shutdown
	 * must not stop the workers and free rt while this wake still touches
	 * them, although the woken task may finish (and let shutdown go on)
	 * before we are done here. */
	zk__foreign_enter(rt);
	if (t->pin) {
		zk__task_send_home(t);
	} else {
		zk__inject_push(&rt->inject, t);
		zk__notify_parked(rt);
	}
	zk__foreign_leave(rt);
}

void zk__foreign_enter(zk_runtime_t *rt)
{
	atomic_fetch_add_explicit(&rt->foreign_spawning, 1, memory_order_seq_cst);
}

/* Under done_lock, which shutdown holds while it checks the count: once it
 * sees zero, no caller is still between its decrement and its last touch
 * of rt. */
void zk__foreign_leave(zk_runtime_t *rt)
{
	pthread_mutex_lock(&rt->done_lock);
	if (atomic_fetch_sub_explicit(&rt->foreign_spawning, 1, memory_order_seq_cst) == 1 &&
	    atomic_load_explicit(&rt->closing, memory_order_seq_cst))
		pthread_cond_broadcast(&rt->done_cond);
	pthread_mutex_unlock(&rt->done_lock);
}

void zk__task_wake(struct zk_task *t)
{
	uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
	for (;;) {
		if (s == ZK__T_IDLE) {
			if (atomic_compare_exchange_weak_explicit(&t->state, &s, ZK__T_SCHEDULED,
								  memory_order_acq_rel,
								  memory_order_acquire)) {
				struct zk__worker *w = zk__worker_here();
				ZK__OBS_WAKE(w, t);
				/* Woken by a running task (a join, a message): run it
				 * next on this worker. Woken by the loop (I/O, timer):
				 * queue it behind what is already runnable. */
				zk__schedule(t->rt, t, w && w->current != NULL);
				return;
			}
		} else if (s == ZK__T_RUNNING) {
			if (atomic_compare_exchange_weak_explicit(&t->state, &s,
								  ZK__T_RUNNING | ZK__T_NOTIFIED,
								  memory_order_acq_rel,
								  memory_order_acquire))
				return;
		} else {
			return; /* already scheduled or notified */
		}
	}
}

/* ---- run / exit ------------------------------------------------------------ */

static void task_finish(struct zk__worker *w, struct zk_task *t)
{
	zk_runtime_t *rt = t->rt;
	if (t->stack) {
		zk__stack_put(&w->stacks, t->stack);
		t->stack = NULL;
	}
#ifdef ZK_TSAN
	if (t->tsan_fiber) {
		__tsan_destroy_fiber(t->tsan_fiber);
		t->tsan_fiber = NULL;
	}
#endif
	/* A handle still holds the record: it must be findable (and freed by
	 * the runtime's end) if the handle is never released. */
	if (atomic_load_explicit(&t->refs, memory_order_acquire) > 1)
		live_link_once(t, false);
	atomic_store_explicit(&t->state, ZK__T_DONE, memory_order_release);
	struct zk_task *j = atomic_exchange_explicit(&t->joiner, ZK__JOIN_DONE, memory_order_acq_rel);
	if (j && j != ZK__JOIN_DONE)
		zk__task_wake(j);
	/* Counted before on_exit: block_on's exit hook lets its caller go
	 * on, and a shutdown that caller starts must not count this task as
	 * still alive (ZK_TASK_DUMP_AT_EXIT reported it). The worker stays
	 * alive until shutdown joins it, so what follows is safe either way. */
	atomic_store_explicit(&w->n_finished,
			      atomic_load_explicit(&w->n_finished, memory_order_relaxed) + 1,
			      memory_order_seq_cst);
	if (t->on_exit)
		t->on_exit(t);
	if (atomic_load_explicit(&rt->closing, memory_order_seq_cst)) {
		pthread_mutex_lock(&rt->done_lock);
		pthread_cond_broadcast(&rt->done_cond);
		pthread_mutex_unlock(&rt->done_lock);
	}
	zk__task_release(t);
}

void zk__task_run(struct zk__worker *w, struct zk_task *t)
{
	if (!task_prepare(w, t))
		return;
	w->current = t;
#ifdef ZK_ASAN
	__sanitizer_start_switch_fiber(&w->asan_fake, t->stack->lo, t->stack->size);
#endif
#ifdef ZK_TSAN
	__tsan_switch_to_fiber(t->tsan_fiber, 0);
#endif
	zk__fiber_switch(&w->sched_sp, t->sp);
#ifdef ZK_ASAN
	__sanitizer_finish_switch_fiber(w->asan_fake, NULL, NULL);
#endif
	w->current = NULL;
	/* Not necessarily t: t may have switched straight to other tasks. */
	finish_switch(w);
}

/* ---- suspend / cancel ---------------------------------------------------- */

static void cancel_wait_locked(struct zk_task *t)
{
	struct zk__wait *wt = atomic_load_explicit(&t->wait, memory_order_seq_cst);
	if (!wt || !wt->cancel)
		return;
	struct zk__worker *owner = wt->owner;
	if (!owner || owner == zk__worker_here()) {
		wt->cancel(t, wt);
		return;
	}
	/* Owned by another worker: hand it over. */
	zk__task_inbox_push(t, owner);
}

void zk__task_inbox_push(struct zk_task *t, struct zk__worker *owner)
{
	/* Once: a task already queued on some inbox is not queued again. */
	if (atomic_exchange_explicit(&t->cancel_queued, true, memory_order_acq_rel))
		return;
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	pthread_mutex_lock(&owner->inbox_lock);
	t->cancel_next = owner->inbox;
	owner->inbox = t;
	atomic_store_explicit(&owner->inbox_nonempty, true, memory_order_seq_cst);
	pthread_mutex_unlock(&owner->inbox_lock);
	zk__worker_wake(owner);
}

void zk__task_cancel_inbox(struct zk__worker *w)
{
	if (!atomic_load_explicit(&w->inbox_nonempty, memory_order_acquire))
		return;
	pthread_mutex_lock(&w->inbox_lock);
	struct zk_task *list = w->inbox;
	w->inbox = NULL;
	atomic_store_explicit(&w->inbox_nonempty, false, memory_order_relaxed);
	pthread_mutex_unlock(&w->inbox_lock);
	while (list) {
		struct zk_task *t = list;
		list = t->cancel_next;
		atomic_store_explicit(&t->cancel_queued, false, memory_order_release);
		pthread_mutex_lock(&t->wait_lock);
		struct zk__wait *wt = atomic_load_explicit(&t->wait, memory_order_seq_cst);
		/* Only if the task still waits on something this worker owns; if
		 * it moved on, its next wait saw the sticky flag itself. */
		if (wt && wt->cancel && wt->owner == w)
			wt->cancel(t, wt);
		pthread_mutex_unlock(&t->wait_lock);
		zk__task_release(t);
	}
}

int zk__task_park_cancelling(struct zk_task *t, struct zk__wait *wt)
{
	struct zk__worker *owner = wt->owner;
	if (owner == zk__worker_here()) {
		wt->cancel(t, wt);
	} else {
		/* Published first, so that the owner finds it. */
		atomic_store_explicit(&t->wait, wt, memory_order_seq_cst);
		pthread_mutex_lock(&t->wait_lock);
		zk__task_inbox_push(t, owner);
		pthread_mutex_unlock(&t->wait_lock);
	}
	return zk__task_park(t, wt);
}

int zk__task_park(struct zk_task *t, struct zk__wait *wt)
{
	live_link_once(t, true);
	ZK__OBS_PARK(t, wt);
	/* Published already (a select publishes before it registers, for
	 * cancels that race the registration): that seq_cst store orders
	 * the cancel check below as well, so skip a second one. */
	if (atomic_load_explicit(&t->wait, memory_order_relaxed) != wt)
		atomic_store_explicit(&t->wait, wt, memory_order_seq_cst);
	if (atomic_load_explicit(&t->cancel, memory_order_seq_cst)) {
		pthread_mutex_lock(&t->wait_lock);
		cancel_wait_locked(t);
		pthread_mutex_unlock(&t->wait_lock);
	}
	t->switch_reason = ZK__SW_PARK;
	switch_to_next(t, false);
	atomic_store_explicit(&t->wait, NULL, memory_order_seq_cst);
	if (atomic_load_explicit(&t->cancel, memory_order_seq_cst)) {
		/* A canceller may still hold our wait record: wait it out. */
		pthread_mutex_lock(&t->wait_lock);
		pthread_mutex_unlock(&t->wait_lock);
	}
	return wt->res;
}

/* ---- public API ------------------------------------------------------------ */

static int spawn_queue(zk_runtime_t *rt, struct zk__worker *w, zk_task_t **handle,
		       zk_task_fn fn, void *arg, void (*on_exit)(struct zk_task *),
		       void *on_exit_ctx, unsigned pin);

#ifdef ZK_PERF_INJECT_WORK
/* Test-only slowdown (meson option perf_inject_work) that lets the
 * perf-regression tool prove it catches a known regression. */
static void injected_work(void)
{
	volatile unsigned sink = 0;
	for (unsigned i = 0; i < ZK_PERF_INJECT_WORK; i++)
		sink += i;
}
#else
static inline void injected_work(void) {}
#endif

static int spawn_internal(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
			  void (*on_exit)(struct zk_task *), void *on_exit_ctx, unsigned pin)
{
	injected_work();
	if (!rt || !fn)
		return -EINVAL;
	struct zk__worker *w = zk__worker_here();
	if (w && w->rt != rt)
		w = NULL;
	if (!w) {
		/* A spawn from outside must finish (queue its task, wake a
		 * worker) before shutdown may stop the workers, or see that
		 * shutdown began and back out: announce it, then look (both
		 * seq_cst; shutdown sets closing, then waits for zero). */
		zk__foreign_enter(rt);
		int r = atomic_load_explicit(&rt->closing, memory_order_seq_cst)
			    ? -ECANCELED
			    : spawn_queue(rt, NULL, handle, fn, arg, on_exit, on_exit_ctx, pin);
		zk__foreign_leave(rt);
		return r;
	}
	if (atomic_load_explicit(&rt->closing, memory_order_acquire))
		return -ECANCELED;
	return spawn_queue(rt, w, handle, fn, arg, on_exit, on_exit_ctx, pin);
}

static int spawn_queue(zk_runtime_t *rt, struct zk__worker *w, zk_task_t **handle,
		       zk_task_fn fn, void *arg, void (*on_exit)(struct zk_task *),
		       void *on_exit_ctx, unsigned pin)
{
	struct zk_task *t;
	int r = zk__task_new(rt, w, fn, arg, &t);
	if (r < 0)
		return r;
	t->pin = (uint16_t)pin;
	t->on_exit = on_exit;
	t->on_exit_ctx = on_exit_ctx;
	if (handle) {
		atomic_store_explicit(&t->refs, 2, memory_order_relaxed);
		*handle = t;
	}
	/* From a task: into the LIFO slot, as Tokio does. The task it displaces
	 * goes to the stealable queue and only that may wake an idle worker, so
	 * a chain of spawns stays on one warm worker without a wake-up each. */
	zk__schedule(rt, t, w != NULL);
	return 0;
}

int zk__spawn_with_exit(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
			void (*on_exit)(struct zk_task *), void *ctx)
{
	return spawn_internal(rt, handle, fn, arg, on_exit, ctx, 0);
}

int zk_spawn_on(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg)
{
	return spawn_internal(rt, handle, fn, arg, NULL, NULL, 0);
}

int zk_spawn_pinned(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
		    unsigned worker)
{
	if (rt && worker >= rt->nworkers)
		return -EINVAL;
	return spawn_internal(rt, handle, fn, arg, NULL, NULL, worker + 1);
}

int zk_task_pin(void)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	/* Read after the switch that may have moved t: zk__task_here() is
	 * the worker running t now, and t cannot move while it runs. */
	unsigned idx = zk__worker_here()->index;
	t->pin = (uint16_t)(idx + 1);
	return (int)idx;
}

void zk__task_move(struct zk_task *t, unsigned worker)
{
	if (zk__worker_here()->index == worker)
		return;
	uint16_t saved = t->pin;
	live_link_once(t, true);
	/* Pinned to the destination, a yield lands there: finish_switch
	 * sends it home. Not zk_yield: a cancelled task must move too (to
	 * close its descriptors). */
	t->pin = (uint16_t)(worker + 1);
	t->switch_reason = ZK__SW_YIELD;
	switch_to_next(t, false);
	t->pin = saved;
}

int zk_task_unpin(void)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	t->pin = 0;
	return 0;
}

int zk_spawn(zk_task_t **handle, zk_task_fn fn, void *arg)
{
	struct zk_task *self = zk__task_here();
	if (!self)
		return -EPERM;
	return spawn_internal(self->rt, handle, fn, arg, NULL, NULL, 0);
}

static void join_cancel(struct zk_task *self, struct zk__wait *wt)
{
	struct zk_task *t = wt->obj;
	struct zk_task *expect = self;
	if (atomic_compare_exchange_strong_explicit(&t->joiner, &expect, NULL,
						    memory_order_acq_rel, memory_order_acquire)) {
		wt->res = -ECANCELED;
		zk__task_wake(self);
	}
}

int zk_join(zk_task_t *t, void **result)
{
	if (!t)
		return -EINVAL;
	struct zk_task *self = zk__task_here();
	if (!self)
		return -EPERM;
	if (t == self)
		return -EDEADLK;
	if (atomic_load_explicit(&t->joiner, memory_order_acquire) != ZK__JOIN_DONE) {
		if (atomic_load_explicit(&self->cancel, memory_order_acquire)) {
			zk__task_release(t);
			return -ECANCELED;
		}
		struct zk__wait wt = {.cancel = join_cancel, .obj = t, .res = 0, .kind = ZK__WAIT_JOIN};
		struct zk_task *expect = NULL;
		if (atomic_compare_exchange_strong_explicit(&t->joiner, &expect, self,
							    memory_order_acq_rel,
							    memory_order_acquire)) {
			if (zk__task_park(self, &wt) == -ECANCELED) {
				zk__task_release(t);
				return -ECANCELED;
			}
		}
	}
	if (result)
		*result = t->result;
	int r = t->exit_res;
	zk__task_release(t);
	return r;
}

int zk_detach(zk_task_t *t)
{
	if (!t)
		return -EINVAL;
	zk__task_release(t);
	return 0;
}

int zk_cancel(zk_task_t *t)
{
	if (!t)
		return -EINVAL;
	atomic_store_explicit(&t->cancel, true, memory_order_seq_cst);
	if (!atomic_load_explicit(&t->wait, memory_order_seq_cst))
		return 0;
	pthread_mutex_lock(&t->wait_lock);
	cancel_wait_locked(t);
	pthread_mutex_unlock(&t->wait_lock);
	return 0;
}

bool zk_task_done(const zk_task_t *t)
{
	return t && atomic_load_explicit(&((zk_task_t *)t)->state, memory_order_acquire) ==
			ZK__T_DONE;
}

int zk_yield(void)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	live_link_once(t, true);
	if (atomic_load_explicit(&t->cancel, memory_order_acquire))
		return -ECANCELED;
	t->switch_reason = ZK__SW_YIELD;
	switch_to_next(t, false);
	return 0;
}

uint64_t zk_task_id(void)
{
	struct zk_task *t = zk__task_here();
	return t ? t->id : 0;
}

uint64_t zk_task_handle_id(const zk_task_t *t)
{
	return t ? t->id : 0;
}

bool zk_cancelled(void)
{
	struct zk_task *t = zk__task_here();
	return t && atomic_load_explicit(&t->cancel, memory_order_acquire);
}
