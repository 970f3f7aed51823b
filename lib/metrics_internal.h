/* lib/metrics_internal.h — the per-worker counters and histograms, the
 * per-task dump notes, and the hooks the scheduler calls to update them.
 *
 * Every field is written by one thread only, the worker that owns it (except
 * stolen_out, written by thieves with an atomic add: steals are the slow
 * path), with a relaxed load and store, never a read-modify-write: on x86 and
 * arm64 that is a plain increment. A snapshot from another thread reads them
 * with relaxed loads, which keeps ThreadSanitizer quiet and costs the worker
 * nothing. Built without ZK_METRICS (meson -Dmetrics=false) every hook below
 * is an empty macro. */
#ifndef ZOKIO_METRICS_INTERNAL_H
#define ZOKIO_METRICS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../backends/backend.h"
#include "histogram.h"

/* One in this many resumes and wakes is timed (see zokio/metrics.h). */
#define ZK__SAMPLE_EVERY 256u
#define ZK__IO_SAMPLE_EVERY 8u

/* What a wait is for (struct zk__wait.kind; 0 = not described). */
enum {
	ZK__WAIT_OTHER = 0,
	ZK__WAIT_IO,     /* obj: struct zk__op */
	ZK__WAIT_TIMER,  /* obj: struct zk__timer on owner's wheel */
	ZK__WAIT_JOIN,   /* obj: the joined struct zk_task */
	ZK__WAIT_SYNC,   /* obj: struct zk__sel; what: the struct zk__arm array */
	ZK__WAIT_SELECT, /* the same, several arms (what: the first) */
};

static inline void zk__stat_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static inline void zk__stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* Adds the resumes counted down in run_left since the last call to polls;
 * call before run_left is set, and set run_from with it. */
#define ZK__POLLS_FLUSH(s)                                                          \
	do {                                                                     \
		zk__stat_add(&(s)->polls, (uint32_t)((s)->run_from - (s)->run_left)); \
		(s)->run_from = (s)->run_left;                                   \
	} while (0)

struct zk__worker_stats {
	_Alignas(64) _Atomic uint64_t polls;
	_Atomic uint64_t stolen_in;
	_Atomic uint64_t steal_attempts;
	_Atomic uint64_t parks;
	_Atomic uint64_t unparks;
	_Atomic uint64_t lifo_hits;
	_Atomic uint64_t global_pulls;
	_Atomic uint64_t timers_fired;
	/* Owner-only plain fields. run_left counts resumes down to the next
	 * timed one; polls is brought up to date from it (run_from - run_left
	 * resumes since the last time) whenever the worker polls for events
	 * and when a sample starts or ends: one decrement per resume counts
	 * and samples at once, and a snapshot lags at most one event poll. */
	uint32_t run_left;          /* resumes until the next timed one */
	uint32_t run_from;          /* run_left when polls was last updated */
	uint32_t wake_left;         /* wakes until the next stamped one */
	uint32_t io_left;           /* I/O ops until the next timed one */
	uint64_t run_t0;            /* start of the timed resume, or 0 */
	_Atomic uint64_t now_coarse; /* refreshed at each event poll */
	struct zk__backend_stats be; /* filled by the backend */
	/* Written by thieves. */
	_Alignas(64) _Atomic uint64_t stolen_out;
	_Alignas(64) struct zk__hist run_ns;
	struct zk__hist delay_ns;
	struct zk__hist io_ns[ZK__OP_COUNT_];
};

/* What a suspended task waits for, noted by the task itself when it parks
 * (its struct zk__wait lives on its stack and may be gone by the time a
 * dump looks), read racily by the dump. */
struct zk__task_obs {
	/* Written at every park: first, on the cache line the record's tail
	 * already shares with fields spawn writes. */
	_Atomic uint64_t w_kfd;     /* ZK__WAIT_* << 32 | (uint32_t)fd (IO) */
	_Atomic uint64_t w_arg;     /* IO: opcode; TIMER: deadline ns; JOIN:
	                             * task id; SYNC: deadline ns or 0 */
	_Atomic uint64_t w_since;   /* worker's coarse clock at park */
	const char *spawn_file;     /* NULL: unknown */
	int spawn_line;
	/* Rarely written. */
	uint64_t woken_ns;          /* stamped wake (sampled); valid while the
	                             * task's obs_stamped flag is set */
	_Atomic(const void *) w_ptr; /* SYNC: the arm ops */
	_Atomic(const void *) w_obj; /* SYNC: the primitive */
};

/* Runtime-wide metrics state. */
struct zk__rt_obs {
	_Atomic uint64_t start_ns;  /* zk_now_ns() when worker 0 started */
	_Atomic bool serving;       /* a metrics socket server runs */
};

struct zk_runtime;
struct zk_task;
struct zk__worker;
struct zk__wait;
struct zk__op;

uint64_t zk__coarse_now(void);
/* task_dump.c */
extern _Thread_local const char *zk__spawn_file __attribute__((tls_model("initial-exec")));
extern _Thread_local int zk__spawn_line __attribute__((tls_model("initial-exec")));
void zk__obs_dump_at_shutdown(struct zk_runtime *rt);
/* metrics.c */
/* The sampled paths: out of line and cold, so the hooks on the hot path
 * stay a few instructions and do not change what the compiler inlines. */
#define ZK__COLD __attribute__((cold, noinline))
ZK__COLD void zk__obs_run_timed_begin(struct zk__worker *w, struct zk_task *t);
ZK__COLD void zk__obs_run_timed_end(struct zk__worker *w);
ZK__COLD void zk__obs_wake_stamp(struct zk__worker *w, struct zk_task *t);
void zk__obs_drive(struct zk__worker *w);
void zk__obs_worker_start(struct zk__worker *w);
ZK__COLD uint64_t zk__obs_io_begin(struct zk__worker *w);
ZK__COLD void zk__obs_io_end(struct zk__op *op, uint64_t t0);
/* metrics_server.c */
void zk__metrics_server_autostart(struct zk_runtime *rt);

#ifdef ZK_METRICS
#define ZK__STAT_INC(w, f) zk__stat_inc(&(w)->stats.f)
#define ZK__STAT_ADD(w, f, n) zk__stat_add(&(w)->stats.f, (n))
/* Around zk__task_run: counts the resume, times one in ZK__SAMPLE_EVERY
 * and records the scheduling delay of a stamped wake. */
#define ZK__OBS_RUN_BEGIN(w, t)                                                   \
	do {                                                                     \
		if (__builtin_expect(--(w)->stats.run_left == 0 || (t)->obs_stamped, 0)) \
			zk__obs_run_timed_begin((w), (t));                       \
	} while (0)
#define ZK__OBS_RUN_END(w)                                                        \
	do {                                                                     \
		if (__builtin_expect((w)->stats.run_t0 != 0, 0))                 \
			zk__obs_run_timed_end(w);                                \
	} while (0)
/* In zk__task_wake, w = the waking worker (NULL: a foreign thread, whose
 * wakes are not sampled). */
#define ZK__OBS_WAKE(w, t)                                                        \
	do {                                                                     \
		if (__builtin_expect((w) && --(w)->stats.wake_left == 0, 0))     \
			zk__obs_wake_stamp((w), (t));                            \
	} while (0)
/* In zk__task_new: the spawn site zk_spawn_at left for this spawn. */
#define ZK__OBS_TASK_INIT(t)                                                      \
	do {                                                                     \
		(t)->obs.spawn_file = zk__spawn_file;                            \
		(t)->obs.spawn_line = zk__spawn_line;                            \
		(t)->obs_stamped = false;                                        \
	} while (0)
#define ZK__OBS_PARK(t, wt) zk__obs_park_note((t), (wt))
#define ZK__OBS_DRIVE(w) zk__obs_drive(w)
/* In op_submit_and_park: times one op in ZK__IO_SAMPLE_EVERY. */
#define ZK__OBS_IO_BEGIN(w) \
	(__builtin_expect(--(w)->stats.io_left == 0, 0) ? zk__obs_io_begin(w) : 0)
#define ZK__OBS_IO_END(op, t0)                                                    \
	do {                                                                     \
		if (t0)                                                          \
			zk__obs_io_end((op), (t0));                              \
	} while (0)
#define ZK__OBS_BSTATS(w) (&(w)->stats.be)
#define ZK__OBS_STOLEN_OUT(v, n) \
	atomic_fetch_add_explicit(&(v)->stats.stolen_out, (n), memory_order_relaxed)
#define ZK__OBS_WORKER_START(w) zk__obs_worker_start(w)
#define ZK__OBS_SHUTDOWN(rt) zk__obs_dump_at_shutdown(rt)
#else
#define ZK__STAT_INC(w, f) ((void)0)
#define ZK__STAT_ADD(w, f, n) ((void)0)
#define ZK__OBS_RUN_BEGIN(w, t) ((void)0)
#define ZK__OBS_RUN_END(w) ((void)0)
#define ZK__OBS_WAKE(w, t) ((void)0)
#define ZK__OBS_TASK_INIT(t) ((void)0)
#define ZK__OBS_PARK(t, wt) ((void)0)
#define ZK__OBS_DRIVE(w) ((void)0)
#define ZK__OBS_IO_BEGIN(w) ((uint64_t)0)
#define ZK__OBS_IO_END(op, t0) ((void)(t0))
#define ZK__OBS_BSTATS(w) ((struct zk__backend_stats *)0)
#define ZK__OBS_STOLEN_OUT(v, n) ((void)0)
#define ZK__OBS_WORKER_START(w) ((void)0)
#define ZK__OBS_SHUTDOWN(rt) ((void)0)
#endif

#endif
