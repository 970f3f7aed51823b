/* zokio/select.h — composition: wait for any or all of several operations,
 * timeouts around any wait, join sets, structured cancellation scopes.
 *
 * The errors every suspending call here shares are those of sync.h: -EPERM
 * on a worker thread outside a task, -ECANCELED when the calling task is
 * cancelled, -ETIMEDOUT for a timeout; foreign threads block. */
#ifndef ZOKIO_SELECT_H
#define ZOKIO_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "sync.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== select: the first of several operations ============================= */

typedef enum zk_sel_kind {
	ZK_SEL_NONE = 0,   /* ignored (lets a caller switch ops on and off) */
	ZK_SEL_RECV,       /* obj zk_chan_t *: receive one message into value */
	ZK_SEL_SEND,       /* obj zk_chan_t *: send value */
	ZK_SEL_NOTIFY,     /* obj zk_notify_t *: zk_notify_wait */
	ZK_SEL_ACQUIRE,    /* obj zk_sem_t *: acquire n permits */
	ZK_SEL_LOCK,       /* obj zk_mutex_t *: lock */
	ZK_SEL_RDLOCK,     /* obj zk_rwlock_t *: shared lock */
	ZK_SEL_WRLOCK,     /* obj zk_rwlock_t *: exclusive lock */
	ZK_SEL_JOIN,       /* obj zk_joinset_t *: join the next finished task;
	                    * value = its result, n = its task id */
	ZK_SEL_BCAST_RECV, /* obj zk_bcast_rx_t *: value = the message; on
	                    * -EOVERFLOW n = messages missed */
	ZK_SEL_WATCH,      /* obj zk_watch_rx_t *: value = the new value */
} zk_sel_kind_t;

/* One operation of a select. Fill kind, obj and the inputs (value for SEND,
 * n for ACQUIRE); the outputs are written only for the operation that
 * completed. */
typedef struct zk_sel {
	zk_sel_kind_t kind;
	void *obj;
	void *value; /* in: message to send; out: message / result received */
	uint64_t n;  /* in: permits; out: task id (JOIN), missed (BCAST_RECV) */
	int res;     /* out: the operation's own result, as its single call
	              * would return it (0, -EPIPE for a closed channel,
	              * -ECHILD for an empty join set, ...) */
} zk_sel_t;

/* Most operations one select may wait on. */
#define ZK_SELECT_MAX 1024

/* Waits until one of ops[0..n) completes, performs exactly that one, and
 * returns its index; its res (and value/n) hold its outcome. The others are
 * not performed — nothing received, sent, acquired, locked or consumed — so
 * a select that returns, times out or is cancelled loses no message: every
 * operation is cancel-safe. When several are ready at once one is picked at
 * random (no operation is starved). Operations that cannot complete now
 * wait without any polling: each registers with its object.
 * timeout_ns: ZK_FOREVER, or 0 to only try.
 * Returns the index (>= 0), or -ETIMEDOUT, -ECANCELED, -EINVAL (ops NULL
 * with n > 0, n > ZK_SELECT_MAX, an unknown kind, a NULL obj on an enabled
 * op), -ENOMEM (more than 8 ops need a small allocation), -EPERM. With no
 * enabled op it just waits for the timeout or cancel. A RECV op is the
 * channel's receiver for the duration (see zk_chan_recv): one channel may
 * appear in at most one RECV op (a second one completes with -EBUSY). */
int zk_select(zk_sel_t *ops, size_t n, uint64_t timeout_ns);

/* Waits until every enabled op of ops[0..n) has completed, performing each
 * as soon as it can (so a message is received as soon as it arrives, not
 * in index order). Ops that did not complete have res == -EINPROGRESS.
 * Returns 0 when all completed, or -ETIMEDOUT / -ECANCELED (the ops already
 * completed stay completed: check each res), -EINVAL, -EPERM. */
int zk_select_all(zk_sel_t *ops, size_t n, uint64_t timeout_ns);

/* ==== join sets ============================================================= */

/* A set of tasks spawned together and joined as they finish, in the order
 * they finish. zk_joinset_free aborts (cancels) whatever still runs. Free
 * every set (and end every scope) before zk_runtime_free of its runtime:
 * the set holds its tasks' handles. */
typedef struct zk_joinset zk_joinset_t;

/* Creates an empty set whose tasks run on rt (NULL: the calling task's
 * runtime). Returns 0, -EINVAL (rt NULL outside a task, out NULL),
 * -ENOMEM. */
int zk_joinset_create(zk_joinset_t **out, zk_runtime_t *rt);

/* Spawns fn(arg) into js; its task id is stored in *id if id is not NULL.
 * Any thread. Returns 0, -EINVAL, -ECANCELED (js is being shut down, or the
 * runtime is), -ENOMEM. */
int zk_joinset_spawn(zk_joinset_t *js, zk_task_fn fn, void *arg, uint64_t *id);

/* Waits for the next task of js to finish (or takes one that already did),
 * stores its return value in *result and its id in *id (each if not NULL)
 * and removes it from the set. Returns 0, or
 *   -ESRCH     the task was cancelled before it started (it never ran;
 *              *id is set, *result is not),
 *   -ENOMEM    the task never ran: no stack could be allocated for it,
 *   -ECHILD    js holds no task,
 *   -ECANCELED the caller was cancelled (no task was taken),
 *   -EINVAL, -EPERM. */
int zk_joinset_join_next(zk_joinset_t *js, void **result, uint64_t *id);

/* zk_joinset_join_next giving up after timeout_ns: also -ETIMEDOUT. */
int zk_joinset_join_next_timeout(zk_joinset_t *js, void **result, uint64_t *id,
				 uint64_t timeout_ns);

/* Non-waiting: -EAGAIN when tasks run but none has finished. */
int zk_joinset_try_join_next(zk_joinset_t *js, void **result, uint64_t *id);

/* Cancels every task of js that is still running (they stay in the set
 * until joined). Any thread. Returns how many were asked, or -EINVAL. */
int zk_joinset_abort_all(zk_joinset_t *js);

/* Tasks in js: running plus finished but not yet joined. */
size_t zk_joinset_len(zk_joinset_t *js);

/* Aborts every running task and waits until all have finished, dropping
 * their results; spawns are refused (-ECANCELED) from then on. Not
 * cancellable: a cancelled caller still waits, so no task of js outlives
 * the call. Returns 0, -EINVAL, -EPERM. */
int zk_joinset_shutdown(zk_joinset_t *js);

/* Aborts every running task and releases js; the tasks finish on their own
 * (their results are dropped). Any thread. js may be NULL. */
void zk_joinset_free(zk_joinset_t *js);

/* ==== timeouts around any wait ============================================== */

/* Runs fn(arg) as a child task and waits for it at most timeout_ns. If it
 * returns in time, stores its result in *result (if not NULL) and returns 0.
 * Otherwise cancels it — whatever it waits on (I/O, sleep, lock, channel,
 * join, another select) ends with -ECANCELED — waits until it has returned
 * (it never outlives the call), stores what it returned in *result, and
 * returns -ETIMEDOUT. If the caller is cancelled the child is cancelled and
 * waited for the same way and -ECANCELED is returned. Costs one spawn.
 * Returns also -EINVAL (fn NULL), -ENOMEM, -EPERM (outside a task). */
int zk_timeout_call(uint64_t timeout_ns, zk_task_fn fn, void *arg, void **result);

/* ==== structured scopes ===================================================== */

/* A scope owns the tasks spawned into it: zk_scope_end cancels the ones
 * still running and waits for all of them, so none outlives the scope (a
 * task that must outlive it is spawned with zk_spawn and detached instead).
 * Scopes nest: a child may open its own scope; cancelling a task that waits
 * in zk_scope_wait or zk_scope_end cancels its children, which cancel
 * theirs. */
typedef struct zk_scope {
	zk_joinset_t *js; /* private */
} zk_scope_t;

/* Opens a scope for tasks on the calling task's runtime (or on rt if not
 * NULL). Returns 0, -EINVAL, -ENOMEM. */
int zk_scope_begin(zk_scope_t *s, zk_runtime_t *rt);

/* Spawns fn(arg) as a child of s (its return value is dropped). Any thread,
 * including the scope's own children. Returns 0, -EINVAL, -ECANCELED (the
 * scope is ending), -ENOMEM. */
int zk_scope_spawn(zk_scope_t *s, zk_task_fn fn, void *arg);

/* Waits until every child has returned (children spawned meanwhile
 * included). If the caller is cancelled while waiting, cancels the children,
 * still waits for all of them, and returns -ECANCELED. Returns 0, -EINVAL,
 * -EPERM. */
int zk_scope_wait(zk_scope_t *s);

/* Cancels every running child. Any thread. Returns 0 or -EINVAL. */
int zk_scope_cancel(zk_scope_t *s);

/* Ends the scope: refuses new children, cancels the running ones, waits
 * for all (not cancellable), and frees the scope. Returns 0, -EINVAL,
 * -EPERM (on a worker thread outside a task). */
int zk_scope_end(zk_scope_t *s);

#ifdef __cplusplus
}
#endif
#endif
