/* backends/epoll/blocking_pool.h — threads that run the operations a
 * readiness backend cannot make non-blocking (regular-file I/O, fsync, open).
 *
 * One pool per process, shared by every backend instance that acquired it
 * (reference counted): a bounded set of threads that grows on demand and
 * shrinks when idle. An operation is the caller's struct zk__op itself (no
 * allocation per job); while the pool holds it the pool owns op->b_next and
 * op->b_scratch[1], and op->b_scratch[0] names the sink that gets the result.
 * Everything else in the op stays the submitter's. */
#ifndef ZOKIO_BLOCKING_POOL_H
#define ZOKIO_BLOCKING_POOL_H

#include <stdbool.h>

#include "../backend.h"

/* Where a finished job goes. deliver() runs on a pool thread, after op->res
 * is set; it must hand the op back to its owner (it must not call
 * op->complete: that runs on the owner's thread). */
struct zk__pool_sink {
	void (*deliver)(struct zk__pool_sink *sink, struct zk__op *op);
};

/* Takes a reference on the pool (the first one sets it up; no thread starts
 * until the first job). Returns 0 or -ENOMEM. */
int zk__pool_acquire(void);

/* Drops a reference. The last one stops and joins every pool thread; the
 * caller must have no job queued or running by then. */
void zk__pool_release(void);

/* Queues the n ops of the list head (linked through b_next, in order) to
 * run on pool threads; sink->deliver(sink, op) is called for each when it is
 * done. One lock round trip for the batch; wakes as many idle threads as
 * there are new jobs and starts more if too few are idle (up to the cap).
 * Returns 0, or -EAGAIN if the pool has no thread and none could be started
 * (then no op was queued). Supported opcodes: READ, WRITE, READV, WRITEV (at
 * op->off, or at the file position when op->off == -1), FSYNC, OPENAT,
 * CLOSE, STATX, FALLOCATE, FTRUNCATE, SYNC_FILE_RANGE, RENAMEAT, UNLINKAT,
 * MKDIRAT; any other completes with -EINVAL. */
int zk__pool_submit(struct zk__op *head, unsigned n, struct zk__pool_sink *sink);

/* Removes op from the queue if no thread has taken it yet: returns true, and
 * the pool will not touch op again. False: op is running (or done) and will
 * be delivered. */
bool zk__pool_cancel(struct zk__op *op);

/* Removes every queued job of sink; returns them as a list linked through
 * b_next (NULL if none). Jobs of sink already running are delivered later. */
struct zk__op *zk__pool_cancel_sink(struct zk__pool_sink *sink);

#endif
