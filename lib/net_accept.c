/* lib/net_accept.c — zk_acceptor: a listener's accepts as one multishot op.
 *
 * On io_uring (5.19+) one IORING_OP_ACCEPT with the multishot flag stays
 * armed on the ring of the worker that armed it (its owner): every new
 * connection is a completion that runs acc_complete() on the owner, which
 * queues the fd and wakes the task waiting in zk_acceptor_next(), if any.
 * The task may run on any worker meanwhile: the queue is under a mutex.
 * When the kernel ends the multishot (an error, a CQ overflow, a cancel)
 * the final completion has more == false and the next call re-arms.
 *
 * Fallback: the first multishot completion on an unknown kernel that is
 * -EINVAL either means "not listening" or "no multishot accept" (before
 * 5.19): a plain accept tells which, and the answer is kept for the
 * process. The epoll backend completes every accept once (more == false),
 * so there each zk_acceptor_next() is one accept: the same code, re-armed
 * per connection.
 *
 * Stopping: backend ops may only be cancelled on their owner's thread. A
 * close from another worker publishes a wait whose owner is that worker
 * and queues the task on its cancel inbox (the path zk_cancel takes), so
 * the owner runs acc_cancel(); the task then waits for the final
 * completion, after which the kernel holds no reference to the acceptor.
 *
 * Direct descriptors (ZK_ACCEPT_DIRECT): the accept is armed to put each
 * connection into a free slot of the arming worker's direct table instead
 * of the process's fd table, and the acceptor hands out the slot encoded
 * with that worker's index (zk__direct_fd). Where the worker has no table
 * (epoll, old kernel, registered files) the arm is a plain one. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"

/* Multishot accept on this kernel: unknown, works, or not supported. */
enum { MS_UNKNOWN = 0, MS_YES, MS_NO };
static _Atomic int ms_accept = MS_UNKNOWN;

struct zk_acceptor {
	pthread_mutex_t lock;
	int lfd;
	struct zk__op op;          /* the (multishot) accept while armed */
	struct zk__worker *owner;  /* whose ring holds op, while armed */
	bool armed;
	bool multishot;            /* op was armed as multishot */
	bool direct;               /* ZK_ACCEPT_DIRECT was asked for */
	bool closing;              /* zk_acceptor_close started */
	bool busy;                 /* a task is inside next() or close() */
	int err;                   /* the final completion's error, unreported */
	struct zk_task *waiter;    /* parked in next() or close() */
	bool want_final;           /* the waiter waits for !armed (close) */
	int *q;                    /* accepted fds not taken yet, a ring */
	unsigned qhead, qlen, qcap;
};

static bool q_push(struct zk_acceptor *a, int fd)
{
	if (a->qlen == a->qcap) {
		unsigned cap = a->qcap ? a->qcap * 2 : 16;
		int *n = malloc(cap * sizeof(*n));
		if (!n)
			return false;
		for (unsigned i = 0; i < a->qlen; i++)
			n[i] = a->q[(a->qhead + i) % a->qcap];
		free(a->q);
		a->q = n;
		a->qhead = 0;
		a->qcap = cap;
	}
	a->q[(a->qhead + a->qlen) % a->qcap] = fd;
	a->qlen++;
	return true;
}

static int q_pop(struct zk_acceptor *a)
{
	int fd = a->q[a->qhead];
	a->qhead = (a->qhead + 1) % a->qcap;
	a->qlen--;
	return fd;
}

/* Runs on the owner worker, once per accepted connection (and once at the
 * end, with more == false). */
static void acc_complete(struct zk__op *op)
{
	struct zk_acceptor *a = op->ctx;
	int res = op->res;
	bool more = op->more;
	pthread_mutex_lock(&a->lock);
	if (res >= 0) {
		if (a->multishot)
			atomic_store_explicit(&ms_accept, MS_YES, memory_order_relaxed);
		/* A connection nobody will take (closing), or no memory to
		 * queue it: refuse it rather than leak it. */
		int fd = op->fixed ? zk__direct_fd(a->owner->index, (unsigned)res) : res;
		if (a->closing || !q_push(a, fd)) {
			if (op->fixed)
				a->owner->rt->backend->direct_release(a->owner->backend, (unsigned)res);
			else
				close(res);
			if (!a->closing)
				a->err = -ENOMEM;
		}
	} else if (!more && !(a->closing && res == -ECANCELED)) {
		a->err = res;
	}
	if (!more) {
		a->armed = false;
		a->owner = NULL;
	}
	struct zk_task *t = a->waiter;
	bool wake = t && (a->want_final ? !a->armed : (a->qlen || a->err || !a->armed));
	if (wake)
		a->waiter = NULL;
	pthread_mutex_unlock(&a->lock);
	if (wake)
		zk__task_wake(t);
}

/* Runs on the owner worker (wait->owner), from zk_cancel or close. */
static void acc_cancel(struct zk_task *t, struct zk__wait *wt)
{
	(void)t;
	struct zk_acceptor *a = wt->obj;
	pthread_mutex_lock(&a->lock);
	bool armed = a->armed && a->owner == wt->owner;
	pthread_mutex_unlock(&a->lock);
	if (armed)
		wt->owner->rt->backend->cancel(wt->owner->backend, &a->op);
}

/* Lock held: arms the accept on the calling worker. */
static void arm(struct zk_acceptor *a, struct zk__worker *w)
{
	memset(&a->op, 0, sizeof(a->op));
	a->op.opcode = ZK__OP_ACCEPT;
	a->op.fd = a->lfd;
	a->op.flags = SOCK_CLOEXEC;
	a->multishot = atomic_load_explicit(&ms_accept, memory_order_relaxed) != MS_NO &&
		       !(zk__uring_disabled() & ZK__URING_NO_MS_ACCEPT);
	a->op.multishot = a->multishot;
	a->op.complete = acc_complete;
	a->op.ctx = a;
	a->op.fixed = a->direct && zk__direct_table(w) > 0;
	a->armed = true;
	a->owner = w;
	w->rt->backend->submit(w->backend, &a->op);
}

int zk_acceptor_open(zk_acceptor_t **out, int lfd)
{
	return zk_acceptor_open_flags(out, lfd, 0);
}

int zk_acceptor_open_flags(zk_acceptor_t **out, int lfd, unsigned flags)
{
	if (!zk__task_here())
		return -EPERM;
	if (!out || lfd < 0 || (flags & ~ZK_ACCEPT_DIRECT))
		return -EINVAL;
	struct zk_acceptor *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	a->lfd = lfd;
	a->direct = flags & ZK_ACCEPT_DIRECT;
	*out = a;
	return 0;
}

int zk_acceptor_next(zk_acceptor_t *a)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	if (!a)
		return -EINVAL;
	t->next_timeout_ns = 0; /* not supported here (see net.h) */
	pthread_mutex_lock(&a->lock);
	if (a->busy || a->closing) {
		pthread_mutex_unlock(&a->lock);
		return -EBUSY;
	}
	a->busy = true;
	int r;
	for (;;) {
		if (a->qlen) {
			r = q_pop(a);
			break;
		}
		if (a->err) {
			r = a->err;
			a->err = 0;
			if (r == -EINVAL && a->multishot &&
			    atomic_load_explicit(&ms_accept, memory_order_relaxed) == MS_UNKNOWN) {
				/* Not listening, or no multishot accept? A plain
				 * accept tells. */
				pthread_mutex_unlock(&a->lock);
				r = zk_accept(a->lfd, NULL, NULL);
				if (r != -EINVAL)
					atomic_store_explicit(&ms_accept, MS_NO, memory_order_relaxed);
				pthread_mutex_lock(&a->lock);
			}
			break;
		}
		if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
			r = -ECANCELED;
			break;
		}
		struct zk__worker *w = zk__worker_here();
		if (!a->armed)
			arm(a, w);
		a->waiter = t;
		a->want_final = false;
		struct zk__wait wt = {.cancel = acc_cancel, .owner = a->owner, .obj = a};
		pthread_mutex_unlock(&a->lock);
		zk__task_park(t, &wt);
		pthread_mutex_lock(&a->lock);
		a->waiter = NULL;
	}
	a->busy = false;
	pthread_mutex_unlock(&a->lock);
	return r;
}

int zk_acceptor_close(zk_acceptor_t *a)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	if (!a)
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	if (a->busy) {
		pthread_mutex_unlock(&a->lock);
		return -EBUSY;
	}
	a->busy = true;
	a->closing = true;
	while (a->armed) {
		struct zk__worker *owner = a->owner;
		a->waiter = t;
		a->want_final = true;
		struct zk__wait wt = {.cancel = acc_cancel, .owner = owner, .obj = a};
		pthread_mutex_unlock(&a->lock);
		zk__task_park_cancelling(t, &wt);
		pthread_mutex_lock(&a->lock);
		a->waiter = NULL;
	}
	pthread_mutex_unlock(&a->lock);
	/* Nothing holds a now: close what nobody took. */
	while (a->qlen)
		zk_close(q_pop(a));
	free(a->q);
	pthread_mutex_destroy(&a->lock);
	free(a);
	return 0;
}
