/* zokio/task.h — tasks: spawn, join, detach, yield, cancel.
 *
 * A task is a fiber with its own stack, run by one worker at a time and moved
 * between workers by work stealing. A task that has not started holds no
 * stack. A spawned task is owned by its handle until the handle is joined or
 * detached; the task record is freed when both the task has returned and the
 * handle is gone.
 *
 * Cancellation is cooperative and sticky: zk_cancel() marks the task; the
 * operation it is suspended in (I/O, sleep, join, ...) completes at once with
 * -ECANCELED, and every later suspending call it makes returns -ECANCELED
 * without suspending (zk_close() still closes). The task then returns
 * normally, and its return value is what zk_join() reports. A task cancelled
 * before it started never runs. */
#ifndef ZOKIO_TASK_H
#define ZOKIO_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zk_task zk_task_t;

/* Spawns fn(arg) as a new task on the calling task's runtime. It is queued on
 * the calling worker's local queue, from where idle workers may steal it.
 * If handle is not NULL the task's handle is stored there and must later be
 * passed to zk_join() or zk_detach(); if handle is NULL the task is detached.
 * Returns 0, or
 *   -EINVAL  fn is NULL,
 *   -EPERM   called outside a runtime task (use zk_spawn_on),
 *   -ECANCELED the runtime is shutting down,
 *   -ENOMEM. */
int zk_spawn(zk_task_t **handle, zk_task_fn fn, void *arg);

/* Spawns fn(arg) on runtime rt from any thread (runtime task or not). From a
 * non-runtime thread the task goes to the global injection queue and an idle
 * worker is woken. Errors as zk_spawn, with -EINVAL also for rt NULL. */
int zk_spawn_on(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg);

/* Spawns fn(arg) pinned to worker `worker` (0..workers-1): it runs only
 * there, never stolen, and its wakes go there. For a task that uses what
 * lives in one worker's ring (direct descriptors, net.h: pin it to
 * zk_fd_worker(fd)). From any thread. Errors as zk_spawn_on, with -EINVAL
 * also for worker >= the runtime's workers. */
int zk_spawn_pinned(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
		    unsigned worker);

/* Pins the calling task to the worker running it now (see
 * zk_spawn_pinned). Returns that worker's index, or -EPERM outside a task.
 * zk_task_unpin() lets it migrate again: 0 or -EPERM. */
int zk_task_pin(void);
int zk_task_unpin(void);

/* Suspends the calling task until task t has returned, stores its return
 * value in *result (if result is not NULL) and releases the handle (t must
 * not be used afterwards, whatever the return value, except -EINVAL/-EPERM/
 * -EDEADLK where the handle stays valid).
 * Returns 0, or
 *   -EINVAL    t is NULL,
 *   -EPERM     called outside a runtime task,
 *   -EDEADLK   t is the calling task,
 *   -ECANCELED t was cancelled before it started (it never ran), or the
 *              *calling* task was cancelled while waiting: in that case the
 *              handle is released and t is detached (it keeps running). */
int zk_join(zk_task_t *t, void **result);

/* Releases the handle; the task keeps running and frees itself when done.
 * Returns 0 or -EINVAL (t NULL). Callable from any thread. */
int zk_detach(zk_task_t *t);

/* Requests cancellation of t (see the top of this file). Non-blocking and
 * callable from any thread, any number of times; the handle stays valid.
 * Returns 0 or -EINVAL (t NULL). */
int zk_cancel(zk_task_t *t);

/* True once t has returned (or was cancelled before it started). */
bool zk_task_done(const zk_task_t *t);

/* Puts the calling task at the back of its worker's run queue and runs others
 * first. Returns 0, -ECANCELED (the task was cancelled; it does not yield),
 * or -EPERM outside a runtime task. */
int zk_yield(void);

/* Id of the calling task (unique within its runtime, never 0), or 0 outside
 * a runtime task. */
uint64_t zk_task_id(void);

/* Id of the task behind handle t, or 0 if t is NULL. */
uint64_t zk_task_handle_id(const zk_task_t *t);

/* True if the calling task has been asked to cancel. */
bool zk_cancelled(void);

#ifdef __cplusplus
}
#endif
#endif
