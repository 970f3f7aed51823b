/* lib/fs_internal.h — what the storage-engine file layer's files share
 * (fs_ops.c, fs_foreign.c, fs_batch.c, fs_direct.c).
 *
 * A file call is one struct zk__op. zk__fs_run() sends it where the calling
 * thread can wait for it: the running task's worker ring (zk__op_run), the
 * calling foreign thread's own ring, or a plain syscall. */
#ifndef ZOKIO_FS_INTERNAL_H
#define ZOKIO_FS_INTERNAL_H

#include <stdbool.h>

#include "internal.h"

/* Where the calling thread's file calls go. */
enum zk__fs_where {
	ZK__FS_IN_TASK,   /* a runtime task: suspend it */
	ZK__FS_ON_WORKER, /* a worker thread outside a task: refuse (-EPERM) */
	ZK__FS_FOREIGN,   /* any other thread: its ring or a syscall */
};

static inline enum zk__fs_where zk__fs_where(void)
{
	struct zk__worker *w = zk__worker_here();
	if (!w)
		return ZK__FS_FOREIGN;
	return w->current ? ZK__FS_IN_TASK : ZK__FS_ON_WORKER;
}

/* Runs op to completion from whatever thread calls it (see fs.h, "Calling
 * from any thread"). Returns op's result: -errno or >= 0. */
int zk__fs_run(struct zk__op *op);

/* fs_foreign.c: runs op on the calling foreign thread (its ring or a
 * syscall), retrying -EINTR and waiting out -EAGAIN. */
int zk__fs_foreign_run(struct zk__op *op);

/* fs_foreign.c: the calling foreign thread's backend instance (its ring),
 * created on first use; NULL when the thread runs plain syscalls. */
struct zk__backend *zk__fs_thread_ring(void);

/* Poll events an op that got -EAGAIN waits for before it is retried, or 0
 * when the op is not a read or write. */
static inline unsigned zk__fs_again_events(const struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_READV:
		return 0x001; /* POLLIN */
	case ZK__OP_WRITE:
	case ZK__OP_WRITEV:
		return 0x004; /* POLLOUT */
	default:
		return 0;
	}
}

#endif
