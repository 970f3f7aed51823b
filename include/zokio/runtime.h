/* zokio/runtime.h — creating, running and tearing down a Zokio runtime.
 *
 * A runtime owns N worker threads. Each worker owns one I/O ring (io_uring by
 * default), a timer wheel, a local run queue and a jemalloc arena. Tasks are
 * fibers: a task's code is straight-line C that suspends inside zk_read(),
 * zk_sleep_ns(), zk_join(), ... while its worker runs other tasks.
 *
 * All functions return 0 or a positive value on success and a negative errno
 * value on failure, like liburing. */
#ifndef ZOKIO_RUNTIME_H
#define ZOKIO_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zk_runtime zk_runtime_t;

/* Which I/O backend the workers use. */
typedef enum zk_backend_kind {
	ZK_BACKEND_DEFAULT = 0, /* ZK_BACKEND env var ("io_uring", "epoll" or
	                         * "faulty") if set, else io_uring, or epoll
	                         * (with one line on stderr) when io_uring is unavailable (-ENOSYS,
	                         * -EPERM: old kernel, io_uring_disabled, seccomp) */
	ZK_BACKEND_IO_URING = 1,
	ZK_BACKEND_EPOLL = 2,   /* epoll; file I/O on a blocking thread pool */
	ZK_BACKEND_FAULTY = 3,  /* testing: wraps io_uring (or epoll) and injects
	                         * faults, seeded: ZK_FAULT_SEED, ZK_FAULT_RATE,
	                         * ZK_FAULT_KINDS, ZK_FAULT_INNER (README) */
	ZK_BACKEND_IOCP = 4,    /* Windows only, and its default (ZK_BACKEND=iocp):
	                         * an I/O completion port per worker. Elsewhere
	                         * -EINVAL; on Windows every other kind is -EINVAL */
} zk_backend_kind_t;

/* Runtime configuration. Zero-initialise and set what you need; every field
 * left at 0 takes the default given in its comment. */
typedef struct zk_config {
	/* Worker threads. Default: number of online CPUs. Max 256. */
	unsigned workers;
	/* Submission queue entries per worker ring (power of two). Default 256. */
	unsigned ring_entries;
	/* Usable stack bytes per task, rounded up to the page size.
	 * Default 64 KiB (256 KiB in sanitizer builds). Min 16 KiB. */
	size_t stack_size;
	/* Guard pages under task stacks. A guard page turns a stack overflow into
	 * a SIGSEGV at the faulting frame instead of silent corruption of the
	 * neighbouring stack, but costs one extra kernel mapping per stack, and
	 * the kernel caps mappings per process (vm.max_map_count, 65530 by
	 * default). ZK_GUARD_AUTO (default) guards stacks while the number of
	 * guarded stacks stays under a quarter of vm.max_map_count, then carves
	 * further stacks unguarded from large slabs, so 100 000 suspended tasks
	 * fit under the default limit. ZK_GUARD_ALWAYS guards every stack (task
	 * creation fails with -ENOMEM at the kernel's limit); ZK_GUARD_NEVER
	 * guards none. On Linux 6.13+ (madvise MADV_GUARD_INSTALL) a guard
	 * costs no mapping, and AUTO and ALWAYS guard every stack. */
	enum { ZK_GUARD_AUTO = 0, ZK_GUARD_ALWAYS = 1, ZK_GUARD_NEVER = 2 } stack_guard;
	/* I/O backend; see zk_backend_kind_t. */
	zk_backend_kind_t backend;
	/* Non-zero: pin worker N to CPU (N mod online CPUs). Default off. */
	int pin_workers;
} zk_config_t;

/* Creates a runtime and starts its workers.
 * cfg may be NULL for defaults. On success stores the runtime in *out and
 * returns 0.
 * Errors: -EINVAL (out is NULL, or a config field out of range: workers > 256,
 *         ring_entries not a power of two or > 32768, stack_size < 16 KiB),
 *         -ENOSYS/-EPERM (io_uring unavailable and no other backend),
 *         -ENOMEM, -EAGAIN (thread creation failed), or any error of
 *         io_uring_queue_init. */
int zk_runtime_create(zk_runtime_t **out, const zk_config_t *cfg);

/* A function run as a task: receives its argument, returns its result. */
typedef void *(*zk_task_fn)(void *arg);

/* Runs fn(arg) as a task on the runtime and blocks the calling (non-runtime)
 * thread until it returns; its return value is stored in *result if result
 * is not NULL. Other tasks keep running while block_on waits.
 * Returns 0, or
 *   -EINVAL  rt or fn is NULL,
 *   -EPERM   called from inside a runtime task (it would block a worker;
 *            spawn and zk_join instead),
 *   -ECANCELED the runtime was shut down before the task started,
 *   -ENOMEM. */
int zk_block_on(zk_runtime_t *rt, zk_task_fn fn, void *arg, void **result);

/* Shuts the runtime down: every task still alive is cancelled (its pending
 * operation completes with -ECANCELED and every later suspending call returns
 * -ECANCELED, so it can clean up), then shutdown waits until all tasks have
 * returned and stops the workers. A task that never suspends and never
 * returns keeps shutdown waiting. Call from a non-runtime thread.
 * Idempotent. Returns 0, -EINVAL (rt NULL), -EPERM (called from a task). */
int zk_runtime_shutdown(zk_runtime_t *rt);

/* Shuts down (if not done yet) and frees every resource of the runtime.
 * Task handles that were neither joined nor detached are released too.
 * rt may be NULL. Must not be called from a runtime task. */
void zk_runtime_free(zk_runtime_t *rt);

/* Number of worker threads of rt (0 if rt is NULL). */
unsigned zk_runtime_workers(const zk_runtime_t *rt);

/* Name of the backend the workers use ("io_uring"), or NULL if rt is NULL. */
const char *zk_runtime_backend(const zk_runtime_t *rt);

/* The runtime running the calling task, or NULL outside a runtime task. */
zk_runtime_t *zk_runtime_current(void);

/* Index of the worker running the calling task (0..workers-1), or -EPERM
 * outside a runtime task. Tasks migrate between workers (work stealing), so
 * this may change after any suspending call. */
int zk_worker_index(void);

#ifdef __cplusplus
}
#endif
#endif
