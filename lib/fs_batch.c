/* lib/fs_batch.c — zk_fs_batch: many file requests in one call, with linked
 * chains (write then fsync, the fsync skipped if the write fails).
 *
 * Owns one record per request (struct bop: the backend op plus chain
 * state), allocated per call and freed before it returns. Every chain head
 * is submitted at once to one backend instance — the running task's worker
 * ring, or the calling foreign thread's own ring — so the whole batch
 * reaches the kernel in one io_uring_enter. A chain is followed from the
 * completion callback, on the thread that owns that backend: when a link
 * completes fully, the next is submitted right there (it reaches the kernel
 * at the same wait() or the next), with no round trip through the task.
 * Where the backend can (io_uring's submit_chain: IOSQE_IO_LINK), a chain
 * of up to KCHAIN_MAX requests that fits the SQ goes to the kernel as one
 * linked unit instead and the kernel follows it; otherwise (epoll, the
 * fault-injection wrapper, a full SQ) the emulation above. Both give the
 * same results: a link that fails or moves less than its whole length
 * ends the chain, and the rest completes with -ECANCELED. A transient
 * error (EINTR, EAGAIN) in a kernel chain is retried like any other; the
 * links the kernel cancelled behind it are then run by emulation.
 *
 * Completions reach the caller through a lock-free LIFO of finished
 * records (done_head). In a task, the callbacks run on the worker that owns
 * the ring while the task may have moved to another worker, so the task
 * publishes that it is about to park by swapping in the WAITING marker; the
 * callback that replaces the marker wakes it. Exactly one wake per park, and
 * a callback touches the batch only before its push (after the push the task
 * may already have returned and freed it).
 *
 * Foreign threads in syscall mode run the requests in order, chains
 * included. -EINTR is retried and -EAGAIN on a non-blocking fd first polls
 * for readiness (a POLL op in place of the request, then the request
 * again), as for single calls. */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "fs_internal.h"
#include "zokio/fs.h"

struct batch;

struct bop {
	struct zk__op op;        /* what the backend runs */
	struct batch *bt;
	struct bop *dnext;       /* done list link */
	unsigned idx;            /* index in reqs */
	uint8_t opcode;          /* op's real opcode while it polls (EAGAIN) */
	uint32_t flags;          /* op's real flags while it polls */
	bool polling;            /* op is a POLL standing in for the request */
	bool submitted;          /* handed to the backend */
	bool completed;          /* finished for good */
	bool cancel_sent;        /* cancel() asked once already */
	bool kfollow;            /* submitted kernel-linked behind the previous
	                          * request: the kernel runs or cancels it */
	bool relink;             /* its kernel chain broke on a transient error
	                          * (EINTR/EAGAIN) of an earlier link that is
	                          * being retried: its -ECANCELED is not final,
	                          * the emulated chain will reach it */
};

/* done_head while the task is parked (or about to be) waiting for it. */
#define WAITING ((struct bop *)(uintptr_t)1)

struct batch {
	struct bop *ops;
	struct zk_fs_req *reqs;
	unsigned n;
	const struct zk__backend_vtable *vt;
	struct zk__backend *b;
	struct zk_task *task;    /* NULL on a foreign thread */
	bool cancelled;          /* on the backend's thread only */
	_Atomic(struct bop *) done_head;
};

static bool linked(const struct batch *bt, unsigned i)
{
	return i + 1 < bt->n && (bt->reqs[i].flags & ZK_FS_LINK);
}

/* Bytes a read or write asks for (for "succeeded fully"); 0 if not one. */
static size_t want_len(const struct zk_fs_req *r)
{
	switch (r->opcode) {
	case ZK_FS_READ:
	case ZK_FS_WRITE:
		return r->len > INT_MAX ? INT_MAX : r->len;
	case ZK_FS_READV:
	case ZK_FS_WRITEV: {
		size_t sum = 0;
		for (size_t i = 0; i < r->len; i++)
			sum += r->iov[i].iov_len;
		return sum;
	}
	default:
		return 0;
	}
}

static bool full_success(const struct zk_fs_req *r, int64_t res)
{
	if (res < 0)
		return false;
	size_t want = want_len(r);
	return want == 0 || (size_t)res == want;
}

/* Fills op from req; -EINVAL for what the single call would refuse. */
static int to_op(const struct zk_fs_req *r, struct zk__op *op)
{
	*op = (struct zk__op){.fd = r->fd, .off = r->off};
	switch (r->opcode) {
	case ZK_FS_NOP:
		op->opcode = ZK__OP_NOP;
		return 0;
	case ZK_FS_READ:
	case ZK_FS_WRITE:
		op->opcode = r->opcode == ZK_FS_READ ? ZK__OP_READ : ZK__OP_WRITE;
		op->buf = r->buf;
		op->len = r->len > INT_MAX ? INT_MAX : (uint32_t)r->len;
		return r->off < -1 ? -EINVAL : 0;
	case ZK_FS_READV:
	case ZK_FS_WRITEV:
		op->opcode = r->opcode == ZK_FS_READV ? ZK__OP_READV : ZK__OP_WRITEV;
		op->iov = r->iov;
		op->len = (uint32_t)r->len;
		return (r->off < -1 || !r->iov || r->len == 0 || r->len > IOV_MAX) ? -EINVAL : 0;
	case ZK_FS_FSYNC:
	case ZK_FS_FDATASYNC:
		op->opcode = ZK__OP_FSYNC;
		op->flags = r->opcode == ZK_FS_FDATASYNC ? ZK__FSYNC_DATASYNC : 0;
		return 0;
	case ZK_FS_SYNC_FILE_RANGE:
		op->opcode = ZK__OP_SYNC_FILE_RANGE;
		op->len = (uint32_t)r->len;
		op->flags = r->op_flags;
		return (r->off < 0 || r->len > UINT32_MAX) ? -EINVAL : 0;
	case ZK_FS_FALLOCATE:
		op->opcode = ZK__OP_FALLOCATE;
		op->flags = r->op_flags;
		op->len64 = r->len;
		return (r->off < 0 || r->len == 0 || r->len > INT64_MAX) ? -EINVAL : 0;
	case ZK_FS_FTRUNCATE:
		op->opcode = ZK__OP_FTRUNCATE;
		op->len64 = r->len;
		return r->len > INT64_MAX ? -EINVAL : 0;
	default:
		return -EINVAL;
	}
}

/* Pushes the list first..last onto done_head; wakes a parked task. After
 * this the batch may be gone: only locals are touched. */
static void push_done(struct batch *bt, struct bop *first, struct bop *last)
{
	struct zk_task *t = bt->task;
	_Atomic(struct bop *) *head = &bt->done_head;
	struct bop *old = atomic_load_explicit(head, memory_order_relaxed);
	do {
		last->dnext = old == WAITING ? NULL : old;
	} while (!atomic_compare_exchange_weak_explicit(head, &old, first, memory_order_acq_rel,
							memory_order_relaxed));
	if (old == WAITING)
		zk__task_wake(t);
}

static void bop_complete(struct zk__op *op);

static void submit_bop(struct batch *bt, struct bop *o)
{
	o->op.complete = bop_complete;
	o->op.ctx = o;
	o->op.timeout_ns = 0;
	o->submitted = true;
	bt->vt->submit(bt->b, &o->op);
}

/* Runs on the backend's thread, from its wait(). */
static void bop_complete(struct zk__op *op)
{
	struct bop *o = op->ctx;
	struct batch *bt = o->bt;
	if (o->polling) {
		/* The fd became ready (or the poll failed): run the request
		 * again, unless the batch is being cancelled. */
		o->polling = false;
		o->op.opcode = o->opcode;
		o->op.flags = o->flags;
		if (!bt->cancelled) {
			submit_bop(bt, o);
			return;
		}
		op->res = -ECANCELED;
	} else if (o->relink) {
		/* The kernel cancelled it when an earlier link failed with a
		 * transient error; that link is being retried, and the emulated
		 * chain submits or cancels this one when it gets here. */
		o->relink = false;
		o->submitted = false;
		return;
	} else if (!bt->cancelled && (op->res == -EINTR || op->res == -EAGAIN) &&
		   op->opcode != ZK__OP_CLOSE) {
		/* The kernel broke the chain behind it: the links it cancelled
		 * are re-run by emulation after the retry. */
		for (unsigned i = o->idx; linked(bt, i) && bt->ops[i + 1].kfollow; i++) {
			bt->ops[i + 1].kfollow = false;
			bt->ops[i + 1].relink = true;
		}
		unsigned ev = op->res == -EAGAIN ? zk__fs_again_events(op) : 0;
		if (ev) {
			o->opcode = op->opcode;
			o->flags = op->flags;
			o->polling = true;
			op->opcode = ZK__OP_POLL;
			op->flags = ev;
		}
		submit_bop(bt, o);
		return;
	}
	o->completed = true;
	struct bop *last = o;
	o->dnext = NULL;
	if (linked(bt, o->idx) && !bt->ops[o->idx + 1].kfollow) {
		struct bop *next = &bt->ops[o->idx + 1];
		if (!bt->cancelled && full_success(&bt->reqs[o->idx], op->res)) {
			submit_bop(bt, next);
		} else {
			/* The chain is broken: the rest of it completes now. */
			for (unsigned i = o->idx + 1;; i++) {
				struct bop *c = &bt->ops[i];
				c->op.res = -ECANCELED;
				c->completed = true;
				c->dnext = NULL;
				last->dnext = c;
				last = c;
				if (!linked(bt, i))
					break;
			}
		}
	}
	push_done(bt, o, last);
}

/* The task was cancelled: runs on the ring's owner worker. */
static void batch_cancel(struct zk_task *t, struct zk__wait *wt)
{
	(void)t;
	struct batch *bt = wt->obj;
	bt->cancelled = true;
	for (unsigned i = 0; i < bt->n; i++) {
		struct bop *o = &bt->ops[i];
		if (o->submitted && !o->completed && !o->cancel_sent) {
			o->cancel_sent = true;
			bt->vt->cancel(bt->b, &o->op);
		}
	}
}

/* Takes what completed since the last call; results to reqs, done() per
 * request in completion order. Returns how many. */
static unsigned drain(struct batch *bt, struct bop *list, zk_fs_done_fn done, void *ctx)
{
	/* The list is newest first: reverse it. */
	struct bop *rev = NULL;
	while (list) {
		struct bop *nx = list->dnext;
		list->dnext = rev;
		rev = list;
		list = nx;
	}
	unsigned k = 0;
	for (struct bop *o = rev; o; o = o->dnext, k++) {
		struct zk_fs_req *r = &bt->reqs[o->idx];
		r->res = o->op.res;
		if (done)
			done(r, ctx);
	}
	return k;
}

/* Longest chain handed to the kernel as one unit; a longer one is
 * emulated (it would hold that many SQEs at once). */
#define KCHAIN_MAX 32u

/* Submits the chain that starts at request i: as one kernel-linked unit
 * when the backend can take it now (io_uring: IOSQE_IO_LINK), else its
 * head alone, the completions following the rest (emulation). */
static void submit_chain(struct batch *bt, unsigned i)
{
	unsigned len = 1;
	while (linked(bt, i + len - 1) && len <= KCHAIN_MAX)
		len++;
	if (len > 1 && len <= KCHAIN_MAX && bt->vt->submit_chain) {
		struct zk__op *chain[KCHAIN_MAX];
		for (unsigned k = 0; k < len; k++) {
			struct bop *o = &bt->ops[i + k];
			o->op.complete = bop_complete;
			o->op.ctx = o;
			o->op.timeout_ns = 0;
			chain[k] = &o->op;
		}
		if (bt->vt->submit_chain(bt->b, chain, len)) {
			for (unsigned k = 0; k < len; k++) {
				bt->ops[i + k].submitted = true;
				bt->ops[i + k].kfollow = k > 0;
			}
			return;
		}
	}
	submit_bop(bt, &bt->ops[i]);
}

static bool chain_head(const struct zk_fs_req *reqs, unsigned i)
{
	return i == 0 || !(reqs[i - 1].flags & ZK_FS_LINK);
}

/* Foreign thread, syscall mode: in order. */
static int run_syscalls(struct zk_fs_req *reqs, struct bop *ops, unsigned n, zk_fs_done_fn done,
			void *ctx)
{
	bool skip = false;
	for (unsigned i = 0; i < n; i++) {
		struct zk_fs_req *r = &reqs[i];
		if (chain_head(reqs, i))
			skip = false;
		r->res = skip ? -ECANCELED : zk__fs_foreign_run(&ops[i].op);
		if ((r->flags & ZK_FS_LINK) && !full_success(r, r->res))
			skip = true;
		if (done)
			done(r, ctx);
	}
	return 0;
}

int zk_fs_batch(struct zk_fs_req *reqs, unsigned n, zk_fs_done_fn done, void *ctx)
{
	enum zk__fs_where where = zk__fs_where();
	if (where == ZK__FS_ON_WORKER)
		return -EPERM;
	if (!reqs || n == 0 || n > ZK_FS_BATCH_MAX)
		return -EINVAL;
	struct bop *ops = calloc(n, sizeof(*ops));
	if (!ops)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		if (to_op(&reqs[i], &ops[i].op) < 0) {
			free(ops);
			return -EINVAL;
		}
		ops[i].idx = i;
	}
	struct batch bt = {.ops = ops, .reqs = reqs, .n = n};
	atomic_init(&bt.done_head, NULL);
	for (unsigned i = 0; i < n; i++)
		ops[i].bt = &bt;

	struct zk_task *t = NULL;
	struct zk__wait wt = {.cancel = batch_cancel, .obj = &bt};
	if (where == ZK__FS_IN_TASK) {
		struct zk__worker *w = zk__worker_here();
		t = w->current;
		if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
			for (unsigned i = 0; i < n; i++)
				reqs[i].res = -ECANCELED;
			free(ops);
			return -ECANCELED;
		}
		bt.vt = w->rt->backend;
		bt.b = w->backend;
		bt.task = t;
		wt.owner = w;
	} else {
		bt.b = zk__fs_thread_ring();
		if (!bt.b) {
			int r = run_syscalls(reqs, ops, n, done, ctx);
			free(ops);
			return r;
		}
		bt.vt = &zk__backend_io_uring;
	}

	for (unsigned i = 0; i < n; i++)
		if (chain_head(reqs, i))
			submit_chain(&bt, i);

	unsigned got = 0;
	while (got < n) {
		struct bop *list = atomic_exchange_explicit(&bt.done_head, NULL, memory_order_acq_rel);
		if (list == WAITING)
			continue; /* woken by something else: nothing arrived */
		if (list) {
			got += drain(&bt, list, done, ctx);
			continue;
		}
		if (!t) {
			bt.vt->wait(bt.b, -1);
			continue;
		}
		struct bop *expect = NULL;
		if (atomic_compare_exchange_strong_explicit(&bt.done_head, &expect, WAITING,
							    memory_order_acq_rel,
							    memory_order_acquire))
			zk__task_park(t, &wt);
	}
	bool cancelled = t && atomic_load_explicit(&t->cancel, memory_order_acquire);
	free(ops);
	return cancelled ? -ECANCELED : 0;
}
