/* zokio/metrics.h — runtime metrics, latency histograms and task dumps.
 *
 * Every worker counts what it does in its own memory (no shared atomic on the
 * hot path): tasks polled, spawned, stolen, parks, LIFO-slot hits, global-queue
 * pulls, submissions, io_uring_enter calls, completions, timers fired; and
 * keeps log-linear histograms (HDR style, mergeable) of task run time per
 * resume, scheduling delay (woken -> running) and I/O latency per opcode.
 * zk_metrics_snapshot() copies all of it, per worker and summed, into a
 * struct; zk_metrics_json() renders a snapshot as JSON. zk_task_dump() lists
 * every live task that has suspended or yielded at least once (or finished
 * with its handle still held) with its state, what it waits on and its spawn
 * site; a task that was spawned and has not suspended yet is counted in
 * live_tasks but not listed (spawns in a burst take no shared lock).
 *
 * Costs and sampling. Counters are exact. A clock read costs about as much as
 * a whole yield, so the run-time and scheduling-delay histograms time one
 * resume (and one wake) in ZK_METRICS_SAMPLE_EVERY, and I/O latency one
 * operation in ZK_METRICS_IO_SAMPLE_EVERY: their counts are samples, their
 * percentiles are the distribution's. "How long a task has waited" in the
 * dump comes from a clock each worker refreshes whenever it polls for events
 * (CLOCK_MONOTONIC_COARSE): a few milliseconds of error.
 *
 * Built with meson option -Dmetrics=false, every hook compiles to nothing:
 * zk_metrics_enabled() is then false, snapshots hold zeros (gauges and the
 * runtime-wide figures excepted) and dumps list tasks without their waits.
 *
 * The runtime can serve all this on a Unix socket (zk_metrics_serve, or the
 * ZK_METRICS_SOCK environment variable at zk_runtime_create): one request
 * per line, "json" or "dump", one JSON document per answer, for tools/zk-top.
 * With ZK_TASK_DUMP_AT_EXIT=1 in the environment, zk_runtime_shutdown first
 * prints the tasks it is about to cancel (those still alive: often leaks) to
 * stderr, in zk_task_dump's text form.
 *
 * Cost (tests/metrics/cost.sh, tools/zk-perf): a resume costs four more
 * instructions, a park about fifteen (the dump note), a wake four, a spawn
 * three stores; on the scheduler micro benchmarks that is +1% (spawn_many)
 * to +6% (timer_churn) instructions at one worker. */
#ifndef ZOKIO_METRICS_H
#define ZOKIO_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- histograms ----------------------------------------------------------- */

/* Log-linear buckets: values 0..7 exactly, then 8 buckets per power of two,
 * so a bucket spans at most 1/8 of its value (12.5%). Values >= 2^40 (about
 * 18 minutes in ns) land in the last bucket. */
#define ZK_HIST_SUB_BITS 3
#define ZK_HIST_BUCKETS 304

typedef struct zk_histogram {
	uint64_t count;                   /* values recorded */
	uint64_t sum;                     /* their sum (wraps past 2^64) */
	uint64_t min, max;                /* 0 and 0 when count == 0 */
	uint64_t buckets[ZK_HIST_BUCKETS];
} zk_histogram_t;

/* Adds one value. h must not be NULL. Not thread-safe. */
void zk_histogram_record(zk_histogram_t *h, uint64_t value);

/* Adds every value of src to dst (buckets, count, sum, min, max). */
void zk_histogram_merge(zk_histogram_t *dst, const zk_histogram_t *src);

/* The value at percentile p (0..100): the highest value of the bucket that
 * holds the ceil(p/100 * count)-th smallest value, clamped to [min, max], so
 * within 12.5% above the exact answer. 0 for an empty histogram or NULL. */
uint64_t zk_histogram_percentile(const zk_histogram_t *h, double p);

/* Mean of the recorded values, 0 when empty. */
double zk_histogram_mean(const zk_histogram_t *h);

/* Index of the bucket value goes to, and the lowest and highest value of a
 * bucket (index < ZK_HIST_BUCKETS). */
unsigned zk_histogram_bucket(uint64_t value);
uint64_t zk_histogram_bucket_low(unsigned index);
uint64_t zk_histogram_bucket_high(unsigned index);

/* ---- snapshots ------------------------------------------------------------ */

/* Resumes timed per sample (run time, scheduling delay) and I/O operations
 * timed per sample. */
#define ZK_METRICS_SAMPLE_EVERY 256u
#define ZK_METRICS_IO_SAMPLE_EVERY 8u

/* I/O latency histograms, one per backend opcode (zk_metrics_io_name). */
#define ZK_METRICS_IO_OPS 32

typedef struct zk_worker_metrics {
	/* Counters since the runtime started. */
	uint64_t polls;          /* tasks resumed (or finished unstarted);
	                          * brought up to date each time the worker
	                          * polls for events (every 61 tasks, and
	                          * before it parks), so it may lag that much */
	uint64_t spawned;        /* tasks spawned by tasks on this worker */
	uint64_t stolen_in;      /* tasks this worker stole from others */
	uint64_t stolen_out;     /* tasks other workers stole from this one */
	uint64_t steal_attempts; /* other queues (and LIFO slots) looked at */
	uint64_t parks;          /* times it blocked waiting for work */
	uint64_t unparks;        /* of which woken by another worker to search */
	uint64_t lifo_hits;      /* tasks run from the LIFO slot */
	uint64_t global_pulls;   /* tasks taken from the global queue */
	uint64_t submissions;    /* operations handed to the backend */
	uint64_t enters;         /* calls that may enter the kernel to submit
	                          * or wait: liburing submit/wait calls on
	                          * io_uring (it skips the syscall when there is
	                          * nothing to do), epoll_wait on epoll */
	uint64_t completions;    /* operation completions delivered */
	uint64_t cq_overflows;   /* reaps that found the CQ overflowed (the
	                          * kernel held completions back) */
	uint64_t timers_fired;   /* timer-wheel entries fired */
	/* Gauges at snapshot time. */
	uint64_t local_queue_depth; /* tasks in the local queue (+ LIFO slot) */
	/* Histograms, nanoseconds (sampled, see above). */
	zk_histogram_t run_ns;          /* task run time per resume */
	zk_histogram_t sched_delay_ns;  /* woken -> running */
	zk_histogram_t io_ns[ZK_METRICS_IO_OPS]; /* submit -> complete, by opcode */
} zk_worker_metrics_t;

typedef struct zk_metrics {
	bool enabled;            /* built with metrics (zk_metrics_enabled) */
	unsigned workers;        /* entries in per_worker */
	const char *backend;     /* "io_uring", "epoll", "faulty" */
	uint64_t uptime_ns;      /* since zk_runtime_create */
	uint64_t foreign_spawned; /* tasks spawned from outside the runtime */
	uint64_t live_tasks;     /* spawned and not returned */
	uint64_t global_queue_depth;
	uint64_t blocking_threads; /* epoll's blocking pool (process-wide) */
	uint64_t blocking_queued;
	/* Both malloc'ed (a zk_worker_metrics_t is about 85 KiB: too big for a
	 * task's stack, so the snapshot itself stays small). */
	zk_worker_metrics_t *total;      /* sums over the workers (gauges too) */
	zk_worker_metrics_t *per_worker; /* `workers` entries */
} zk_metrics_t;

/* True when the library was built with metrics (meson -Dmetrics=true). */
bool zk_metrics_enabled(void);

/* Copies rt's metrics into *out; total and per_worker are allocated and must
 * be freed with zk_metrics_free(). Callable from any thread, inside a task or not;
 * never blocks a worker (figures are read while workers run, so two counters
 * may be a few events apart). Returns 0, -EINVAL (rt or out NULL), -ENOMEM. */
int zk_metrics_snapshot(zk_runtime_t *rt, zk_metrics_t *out);

/* Frees what zk_metrics_snapshot allocated; m may be NULL. */
void zk_metrics_free(zk_metrics_t *m);

/* Renders m as one JSON object into a malloc'ed, NUL-terminated string
 * stored in *out (length in *len if len is not NULL); free() it. Histograms
 * appear as count, mean, min, max and p50/p90/p99/p999; with per_worker true
 * the per-worker figures are included. Returns 0, -EINVAL, -ENOMEM. */
int zk_metrics_json(const zk_metrics_t *m, bool per_worker, char **out, size_t *len);

/* Name of backend opcode i ("read", "recv", ...), or NULL past the last. */
const char *zk_metrics_io_name(unsigned i);

/* ---- task dump ------------------------------------------------------------ */

/* Spawns as zk_spawn / zk_spawn_on and records file:line as the task's spawn
 * site for zk_task_dump (tasks spawned with plain zk_spawn show "?").
 * Errors as zk_spawn / zk_spawn_on. */
int zk_spawn_at(zk_task_t **handle, zk_task_fn fn, void *arg, const char *file, int line);
int zk_spawn_on_at(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
		   const char *file, int line);
#define ZK_SPAWN(handle, fn, arg) zk_spawn_at((handle), (fn), (arg), __FILE__, __LINE__)
#define ZK_SPAWN_ON(rt, handle, fn, arg) \
	zk_spawn_on_at((rt), (handle), (fn), (arg), __FILE__, __LINE__)

/* Writes every live task of rt as JSON (one object: {"tasks":[...]}) into a
 * malloc'ed string *out; free() it. Each task: id, state ("runnable",
 * "running", "suspended", "done"), wait (kind "io" with op and fd, "timer"
 * with deadline_ns, "join" with the task id, "channel"/"mutex"/"semaphore"/
 * "notify"/... with the object's address, or "other"), waited_ms, spawn
 * ("file:line" or "?"). Callable any time from any thread. Returns 0,
 * -EINVAL, -ENOMEM. */
int zk_task_dump_json(zk_runtime_t *rt, char **out, size_t *len);

/* The same as text, one line per task, to f. Returns the number of tasks
 * listed, -EINVAL (rt or f NULL) or -ENOMEM. The task list is copied shard by
 * shard under the runtime's locks and printed with none held: a dump never
 * holds up a worker that spawns or frees a task. */
int zk_task_dump(zk_runtime_t *rt, FILE *f);

/* ---- the metrics socket ---------------------------------------------------- */

/* Serves metrics on a Unix stream socket at path ("@name": abstract) from a
 * task of rt: each line a client sends, "json" (snapshot, per worker), "dump"
 * (the task dump) or "quit", is answered with one JSON document and a
 * newline. An existing socket file at path is replaced. The server stops at
 * shutdown. The ZK_METRICS_SOCK environment variable starts it when the
 * process's first runtime is created ("%p" in it: the process id). Callable from any thread. Returns 0, -EINVAL, -EBUSY
 * (already serving), -ENOTSUP (built without metrics), or a socket error. */
int zk_metrics_serve(zk_runtime_t *rt, const char *path);

#ifdef __cplusplus
}
#endif
#endif
