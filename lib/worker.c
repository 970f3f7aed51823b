/* lib/worker.c — the worker loop: pick a task, run it, drive the ring and the
 * timer wheel, steal when idle, park in the backend's wait.
 *
 * One iteration runs one task. Which one:
 *   - every GLOBAL_INTERVAL iterations the global queue goes first, so tasks
 *     spawned from outside cannot be starved by a busy local queue;
 *   - then the LIFO slot (the task the last running task woke: its data is
 *     hot in cache), at most MAX_LIFO_POLLS times in a row so two tasks
 *     waking each other cannot starve the rest of the queue;
 *   - then the local queue (FIFO), then the global queue.
 * Every EVENT_INTERVAL tasks, and whenever there is nothing to run, the
 * worker submits its queued operations, reaps completions without blocking
 * (one io_uring_enter for the whole batch), fires due timers and handles
 * cancel requests from other threads. With nothing to do it searches (steals
 * half of another worker's queue) and then parks inside the backend's wait,
 * bounded by the nearest timer: I/O, timers and cross-thread wakes all end
 * that wait, and with no timers the wait has no timeout, so an idle runtime
 * makes no periodic wake-ups. */
#include <errno.h>
#include <pthread.h>
#ifndef _WIN32
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#endif

#include "fiber.h"
#include "internal.h"
#include "zokio/time.h"

/* Tasks between two looks at the global queue. Prime, as in Tokio, so it
 * does not fall into step with EVENT_INTERVAL. */
#define GLOBAL_INTERVAL 61u
/* Tasks between two non-blocking polls of the ring and the timer wheel:
 * bounds how long a completion waits behind a busy queue. */
#define EVENT_INTERVAL 61u
/* Consecutive runs from the LIFO slot before it yields to the queue. */
#define MAX_LIFO_POLLS 3u

void zk__worker_wake(struct zk__worker *w)
{
	w->rt->backend->wake(w->backend);
}

void zk__notify_parked(zk_runtime_t *rt)
{
	int idx = zk__idle_worker_to_notify(&rt->idle);
	if (idx >= 0)
		zk__worker_wake(&rt->workers[idx]);
}

/* Takes a fair share of the global queue into the local queue (one lock
 * round trip instead of one per task) and returns the first task. */
static struct zk_task *pull_global(struct zk__worker *w)
{
	zk_runtime_t *rt = w->rt;
	size_t queued = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
	if (queued == 0)
		return NULL;
	size_t len = zk__runq_len(&w->runq);
	size_t room = len >= ZK__RUNQ_CAP / 2 ? 0 : ZK__RUNQ_CAP / 2 - len;
	size_t want = queued / rt->nworkers + 1;
	if (want > room)
		want = room;
	struct zk_task *head;
	size_t got = zk__inject_pop_batch(&rt->inject, want ? want : 1, &head);
	if (got == 0)
		return NULL;
	ZK__STAT_ADD(w, global_pulls, got);
	struct zk_task *first = head;
	head = head->next;
	while (head) {
		struct zk_task *next = head->next;
		zk__runq_push(&w->runq, head, &rt->inject);
		head = next;
	}
	return first;
}

/* The next pinned task sent home to w (task.c): the whole list is taken
 * in one lock round trip and run from a private list. */
static struct zk_task *pop_home(struct zk__worker *w)
{
	struct zk_task *t = w->home_local;
	if (!t) {
		if (!atomic_load_explicit(&w->home_nonempty, memory_order_relaxed))
			return NULL;
		pthread_mutex_lock(&w->inbox_lock);
		t = w->home_head;
		w->home_head = w->home_tail = NULL;
		atomic_store_explicit(&w->home_nonempty, false, memory_order_relaxed);
		pthread_mutex_unlock(&w->inbox_lock);
		if (!t)
			return NULL;
	}
	w->home_local = t->next;
	return t;
}

static inline struct zk_task *next_task(struct zk__worker *w)
{
	zk_runtime_t *rt = w->rt;
	struct zk_task *t;
	if (w->tick % GLOBAL_INTERVAL == 0) {
		if ((t = zk__inject_pop(&rt->inject))) {
			ZK__STAT_INC(w, global_pulls);
			return t;
		}
		if ((t = pop_home(w)))
			return t;
	}
	if (atomic_load_explicit(&w->lifo, memory_order_relaxed) &&
	    (t = atomic_exchange_explicit(&w->lifo, NULL, memory_order_acq_rel))) {
		if (w->lifo_polls < MAX_LIFO_POLLS) {
			w->lifo_polls++;
			ZK__STAT_INC(w, lifo_hits);
			return t;
		}
		zk__runq_push(&w->runq, t, &rt->inject);
	}
	w->lifo_polls = 0;
	if ((t = zk__runq_pop(&w->runq)))
		return t;
	if ((t = pop_home(w)))
		return t;
	return pull_global(w);
}

struct zk_task *zk__worker_direct_next(struct zk__worker *w)
{
	/* The loop counts this run after the switch lands there: when that
	 * count reaches a poll, go back to the loop and let it poll. */
	if ((w->tick + 1) % EVENT_INTERVAL == 0 ||
	    atomic_load_explicit(&w->rt->stop, memory_order_relaxed)) {
		ZK__OBS_RUN_END(w); /* the task switching out has run */
		return NULL;
	}
	w->tick++;
	struct zk_task *t = next_task(w);
	if (t)
		ZK__OBS_RUN_BEGIN(w, t); /* (ends a timed run of the one switching out) */
	else
		ZK__OBS_RUN_END(w);
	return t;
}

/* Submits, reaps, fires timers, handles cancel requests. Returns how many
 * events it handled (a task may have become runnable for each). */
static int drive(struct zk__worker *w, int64_t timeout_ns)
{
	int n = w->rt->backend->wait(w->backend, timeout_ns);
	if (n < 0)
		n = 0;
	if (w->wheel.count) {
		unsigned fired = zk__wheel_advance(&w->wheel, zk_now_ns());
		ZK__STAT_ADD(w, timers_fired, fired);
		n += (int)fired;
	}
	ZK__OBS_DRIVE(w);
	if (atomic_load_explicit(&w->inbox_nonempty, memory_order_acquire)) {
		zk__task_cancel_inbox(w);
		n++;
	}
	return n;
}

static uint32_t next_rand(struct zk__worker *w)
{
	uint64_t x = w->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	w->rng = x;
	return (uint32_t)(x >> 32);
}

static struct zk_task *steal_work(struct zk__worker *w)
{
	zk_runtime_t *rt = w->rt;
	if (rt->nworkers > 1) {
		if (!w->searching) {
			if (!zk__idle_to_searching(&rt->idle))
				return NULL;
			w->searching = true;
		}
		unsigned start = next_rand(w) % rt->nworkers;
		for (unsigned i = 0; i < rt->nworkers; i++) {
			unsigned v = (start + i) % rt->nworkers;
			if (v == w->index)
				continue;
			uint32_t got;
			ZK__STAT_INC(w, steal_attempts);
			struct zk_task *t = zk__runq_steal_n(&rt->workers[v].runq, &w->runq, &got);
			if (t) {
				ZK__STAT_ADD(w, stolen_in, got);
				ZK__OBS_STOLEN_OUT(&rt->workers[v], got);
				return t;
			}
		}
	}
	struct zk_task *t = pull_global(w);
	if (t || rt->nworkers == 1 || !w->searching)
		return t;
	/* Last resort: a task left in another worker's LIFO slot. */
	unsigned start = next_rand(w) % rt->nworkers;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct zk__worker *v = &rt->workers[(start + i) % rt->nworkers];
		if (v != w && atomic_load_explicit(&v->lifo, memory_order_relaxed) &&
		    (t = atomic_exchange_explicit(&v->lifo, NULL, memory_order_acq_rel))) {
			ZK__STAT_INC(w, stolen_in);
			ZK__OBS_STOLEN_OUT(v, 1);
			return t;
		}
	}
	return NULL;
}

static void stop_searching(struct zk__worker *w)
{
	if (!w->searching)
		return;
	w->searching = false;
	/* The last searcher found work: there may be more, wake one more
	 * worker to look (the chain stops when a searcher finds nothing). */
	if (zk__idle_from_searching(&w->rt->idle))
		zk__notify_parked(w->rt);
}

static bool work_visible(struct zk__worker *w, bool check_all)
{
	zk_runtime_t *rt = w->rt;
	if (atomic_load_explicit(&w->lifo, memory_order_seq_cst) || !zk__runq_empty(&w->runq) ||
	    !zk__inject_empty(&rt->inject))
		return true;
	if (atomic_load_explicit(&w->inbox_nonempty, memory_order_seq_cst) ||
	    atomic_load_explicit(&rt->stop, memory_order_seq_cst) || w->home_local ||
	    atomic_load_explicit(&w->home_nonempty, memory_order_seq_cst))
		return true;
	if (check_all)
		for (unsigned i = 0; i < rt->nworkers; i++)
			if (!zk__runq_empty(&rt->workers[i].runq) ||
			    atomic_load_explicit(&rt->workers[i].lifo, memory_order_seq_cst))
				return true;
	return false;
}

static void park(struct zk__worker *w)
{
	zk_runtime_t *rt = w->rt;
	bool was_searching = w->searching;
	w->searching = false;
	atomic_store_explicit(&w->parked, true, memory_order_seq_cst);
	bool last = zk__idle_to_parked(&rt->idle, w->index, was_searching);
	if (!work_visible(w, last)) {
		ZK__STAT_INC(w, parks);
		int64_t timeout = zk__wheel_timeout(&w->wheel, zk_now_ns());
		drive(w, timeout);
	}
	atomic_store_explicit(&w->parked, false, memory_order_relaxed);
	if (!zk__idle_unpark(&rt->idle, w->index)) {
		w->searching = true; /* a notifier woke us to search */
		ZK__STAT_INC(w, unparks);
	}
	/* The wait made several tasks runnable here: let an idle worker help
	 * (the wakes inside the wait did not notify, see zk__schedule). */
	if (zk__runq_len(&w->runq) > 1 && zk__idle_should_notify(&rt->idle))
		zk__notify_parked(rt);
}

static void pin_to_cpu(struct zk__worker *w)
{
#ifdef _WIN32
	zk__win_pin_thread(w->index);
	return;
#else
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu <= 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET((int)(w->index % (unsigned)ncpu), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
#endif
}

static void worker_san_init(struct zk__worker *w)
{
#ifndef _WIN32 /* the thread's stack is only told to ASan, absent there */
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		void *lo;
		size_t size;
		if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
			w->thread_stack_lo = lo;
			w->thread_stack_size = size;
		}
		pthread_attr_destroy(&attr);
	}
#else
	(void)w;
#endif
#ifdef ZK_TSAN
	w->tsan_fiber = __tsan_get_current_fiber();
#endif
}

static void report_start(struct zk__worker *w, int res)
{
	zk_runtime_t *rt = w->rt;
	pthread_mutex_lock(&rt->start_lock);
	w->init_res = res;
	rt->started++;
	pthread_cond_broadcast(&rt->start_cond);
	pthread_mutex_unlock(&rt->start_lock);
}

void *zk__worker_main(void *arg)
{
	struct zk__worker *w = arg;
	zk_runtime_t *rt = w->rt;
	zk__tls_worker = w;
	/* A write on a socket or pipe whose reader is gone raises SIGPIPE in
	 * the thread that runs it; io_uring runs WRITE/WRITEV inline on the
	 * worker, and the default action would kill the process. Blocked on
	 * workers, the write just returns -EPIPE (fs.h), as on epoll; the
	 * signal stays pending on the worker thread, which never unblocks it. */
#ifndef _WIN32 /* Windows has no SIGPIPE: a send on a dead socket fails */
	sigset_t pipe_set;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
#endif
	if (rt->pin)
		pin_to_cpu(w);
	zk__arena_init(w);
	worker_san_init(w);
	zk__wheel_init(&w->wheel, zk_now_ns());
	w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)w->index * 0xbf58476d1ce4e5b9ull) ^ 1;
	struct zk__backend_config cfg = {.ring_entries = rt->ring_entries,
					 .worker_index = w->index,
					 .fault = &rt->fault,
					 .stats = ZK__OBS_BSTATS(w)};
	int res = rt->backend->init(&w->backend, &cfg);
	report_start(w, res);
	if (res < 0) {
		/* Counts as out of its loop for the barrier below. */
		pthread_mutex_lock(&rt->start_lock);
		rt->exited++;
		pthread_cond_broadcast(&rt->start_cond);
		pthread_mutex_unlock(&rt->start_lock);
		zk__tls_worker = NULL;
		return NULL;
	}
	zk__signal_worker_start(w);
	ZK__OBS_WORKER_START(w);

	while (!atomic_load_explicit(&rt->stop, memory_order_acquire)) {
		struct zk_task *t = next_task(w);
		if (t) {
			stop_searching(w);
			ZK__OBS_RUN_BEGIN(w, t);
			zk__task_run(w, t);
			ZK__OBS_RUN_END(w);
			if (++w->tick % EVENT_INTERVAL == 0)
				drive(w, 0);
			continue;
		}
		w->tick++;
		if (drive(w, 0) > 0)
			continue;
		t = steal_work(w);
		if (t) {
			stop_searching(w);
			ZK__OBS_RUN_BEGIN(w, t);
			zk__task_run(w, t);
			ZK__OBS_RUN_END(w);
			continue;
		}
		park(w);
	}
	if (w->searching) {
		w->searching = false;
		zk__idle_from_searching(&rt->idle);
	}
	/* Until every worker has left its loop, another one may still wake
	 * us (a task it runs wakes one of ours, which notifies us), so the
	 * backend must outlive all the loops: meet here before freeing it.
	 * Shutdown's wake-ups also happen under start_lock. */
	pthread_mutex_lock(&rt->start_lock);
	rt->exited++;
	pthread_cond_broadcast(&rt->start_cond);
	while (rt->exited < rt->nworkers)
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	pthread_mutex_unlock(&rt->start_lock);
	rt->backend->fini(w->backend);
	w->backend = NULL;
	zk__task_free_cache(w);
	zk__tls_worker = NULL;
	return NULL;
}
