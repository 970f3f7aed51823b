/* backends/kqueue/kqueue.c — the kqueue backend (FreeBSD, macOS):
 * completions emulated on a readiness API, as backends/epoll/epoll.c does
 * on Linux, whose design this file follows.
 *
 * Owns, per worker: a kqueue, its EVFILT_USER wake event, a table of the fds
 * this worker waits on, the changelist of filters to (re)arm, a deadline
 * heap, a FIFO of finished ops, and the list of ops the blocking pool
 * (pool.c, which is backends/epoll/blocking_pool.c built here) finished for
 * this worker.
 *
 * How an op runs:
 *   - Socket, pipe and other pollable ops are tried at once, without
 *     blocking; a result goes to the done FIFO. EAGAIN parks the op on its
 *     fd's waiter list and queues an EV_ADD | EV_CLEAR of EVFILT_READ or
 *     EVFILT_WRITE (or both, for a POLL) for that fd. The changelist goes
 *     to the kernel inside the next wait()'s kevent call: arming costs no
 *     syscall of its own. One knote per (fd, filter) is shared by every op
 *     on the fd; an event retries the waiters of its direction in FIFO
 *     order, and for ops that consume readiness (recv, send, accept, read,
 *     write) the first one still getting EAGAIN stops the retries in that
 *     direction (one accept per new connection, not one per acceptor).
 *   - EV_CLEAR rather than EV_ONESHOT: a knote stays armed while the fd
 *     lives and reports each change of state once, like epoll's EPOLLET,
 *     so an op that got EAGAIN after an event does not need a re-arm and a
 *     POLL that wants only POLLHUP cannot make a readable fd fire in a
 *     loop. What EV_CLEAR loses is the current level; every park re-adds
 *     its filter (deduplicated within one changelist), and EV_ADD on an
 *     existing knote makes both kernels evaluate the filter again and
 *     queue the event if the fd is ready now, so readiness that came
 *     before the park is never missed.
 *   - Closed fds: kqueue drops a descriptor's knotes when that descriptor
 *     is closed, whoever closes it, and the number may then name a new
 *     file. Because each park re-adds its filter on the current file,
 *     there is nothing to verify (epoll.c's verification pass has no
 *     counterpart): a filter that cannot be added (EBADF: closed; EINVAL,
 *     ENODEV: not pollable) comes back as an EV_ERROR event and the ops
 *     waiting in that direction complete with that error. The changelist
 *     is never longer than the event list given with it, so every error
 *     has room to be reported.
 *   - Regular files (and block devices, directories), fsync, openat and
 *     the other file ops go to the blocking pool, batched until the next
 *     wait() (one pool lock round trip per batch). Pool threads push
 *     finished ops onto this backend's pool list under a mutex and trigger
 *     the EVFILT_USER event when the list was empty.
 *   - complete() runs only from wait() (and fini), after all events of the
 *     batch are handled: never from submit() or cancel().
 *
 * Never blocking a user's fd behind their back (their O_NONBLOCK belongs
 * to the open file description, shared with other threads and processes):
 *   - recv/send and the READ/WRITE family on sockets use MSG_DONTWAIT;
 *   - pipes, FIFOs, ttys and character devices have no per-call
 *     non-blocking read (no RWF_NOWAIT): O_NONBLOCK is set on the file for
 *     that one syscall and put back ("flip"), under a lock striped by fd
 *     number, as epoll.c does for accept and connect;
 *   - accept and connect flip too.
 *
 * Differences from Linux (io_uring and epoll; the rest of backend.h holds):
 *   - Everything epoll.c lists for the epoll backend holds here too
 *     (cancel cannot stop a running pool op; multishot completes once;
 *     RECVMSG with MSG_WAITALL is one recvmsg; no provided buffers:
 *     pbuf_data is NULL; no registered buffers or files, no direct
 *     descriptors, no kernel-linked chains: those entries are NULL), with
 *     these changes:
 *   - An fd closed with close(2) while ops wait on it: the ops keep waiting
 *     until cancelled or timed out (as on Linux), but if the number is
 *     reused and a new op parks on it, the new file's readiness also
 *     retries the old ops, which then run on the new file. (epoll checks
 *     the registration names the same file; kqueue cannot tell.) Closing
 *     an fd with ops in flight is a caller bug on every backend.
 *   - No RWF_NOWAIT: a read of a regular file always goes to the pool
 *     (epoll serves page-cache hits inline).
 *   - ACCEPT: macOS has no accept4: accept(), then FD_CLOEXEC and
 *     O_NONBLOCK are set as the flags ask (and O_NONBLOCK cleared
 *     otherwise: a BSD accepted socket inherits it from the listener, which
 *     the flip made non-blocking). Between the two calls the new fd lacks
 *     FD_CLOEXEC: a fork+exec on another thread at that instant leaks it.
 *     FreeBSD has accept4 and uses it. The flags are SOCK_CLOEXEC and
 *     SOCK_NONBLOCK where the headers define them (FreeBSD), else Linux's
 *     values (macOS), which is what a caller written for Linux passes.
 *   - CONNECT: completion is read with getsockopt(SO_ERROR) once the
 *     socket is writable (a BSD connect() retried after completion does
 *     not report the result the way Linux's does); a later connect() by
 *     the user gets EISCONN as on Linux.
 *   - SIGPIPE: sends use MSG_NOSIGNAL where the headers define it (FreeBSD;
 *     the macOS 13 SDK does too); built with an SDK without it, each send
 *     first sets SO_NOSIGPIPE on the socket, which stays set. A write to a
 *     pipe with no reader returns -EPIPE without SIGPIPE, as on epoll: on
 *     FreeBSD the write runs with SIGPIPE blocked and the signal, which
 *     FreeBSD sends to the writing thread, is consumed with sigtimedwait;
 *     macOS has no sigtimedwait and does not promise which thread gets the
 *     signal, so each write first sets F_SETNOSIGPIPE on the pipe, which
 *     stays set (on the open file, shared with whoever else holds it).
 *   - FSYNC: macOS fsync does not flush the drive's cache; Zokio's fsync
 *     (and fdatasync, as macOS declares no fdatasync) uses F_FULLFSYNC,
 *     falling back to fsync where the filesystem refuses it. FreeBSD:
 *     fsync and fdatasync.
 *   - STATX: no statx and no struct statx: -EOPNOTSUPP.
 *   - FALLOCATE: mode 0 only (FreeBSD posix_fallocate, which fails with
 *     EINVAL on ZFS; macOS F_PREALLOCATE then ftruncate to extend); any
 *     other mode is -EOPNOTSUPP.
 *   - SYNC_FILE_RANGE: no ranged call; the whole file's data is synced
 *     (fdatasync on FreeBSD, fsync on macOS): stronger, slower.
 *   - RENAMEAT with flags (RENAME_NOREPLACE, RENAME_EXCHANGE): -EOPNOTSUPP.
 *   - SPLICE: no splice(2): -EOPNOTSUPP (zk_sendfile needs a fallback).
 *   - SEND_ZC: a plain SEND. RECV_PBUF: never sent (pbuf_data is NULL);
 *     -EOPNOTSUPP if it is.
 *   - MSG_ERRQUEUE does not exist; MSG_OOB waiters do not consume
 *     readiness, as on epoll.
 *   - A POLL whose mask has neither input nor output bits (POLLERR or
 *     POLLHUP only) arms EVFILT_READ, where both systems report EOF and
 *     errors; each event re-checks with poll(2).
 *
 * Timeouts: an op with timeout_ns that does not complete at once gets a
 * deadline in a binary min-heap (index in b_pending), and kevent's timeout
 * is bounded by the nearest deadline (a timespec: nanosecond resolution).
 * A heap rather than an EVFILT_TIMER per op: arming and disarming a
 * deadline then costs no change to the kernel, and most deadlines are
 * disarmed before they fire.
 *
 * Op scratch fields while the backend holds an op:
 *   b_flags      state (ST_*) and OPF_* flags; written only on the worker;
 *   b_pending    deadline heap index + 1 (0: no deadline armed);
 *   b_next       next op in the waiter list / done FIFO / pool queue;
 *   b_scratch[0] bytes done so far (MSG_WAITALL); the pool's sink for
 *                pool ops;
 *   b_scratch[1] previous op in the waiter list; the pool's own for pool
 *                ops.
 *
 * Type-checked against the macOS 13 SDK headers (x86_64 and arm64); the
 * FreeBSD-only lines (accept4, sigtimedwait, and fdatasync/posix_fallocate
 * in op_bsd.c) follow FreeBSD's manual pages and have not been compiled.
 * macOS 11 or later (preadv/pwritev). Linux builds compile this file to
 * nothing. */
#if defined(__FreeBSD__) || defined(__APPLE__)

/* <sys/types.h> before <sys/event.h>: before FreeBSD 12.0 the latter did
 * not parse without it (kqueue(2), BUGS). */
#include <sys/types.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../backend.h"
#include "../epoll/blocking_pool.h"

/* Until backend.h declares it next to the others. */
extern const struct zk__backend_vtable zk__backend_kqueue;

/* Events taken per kevent call; also the most changes passed in one call,
 * so that each failed change has a slot for its EV_ERROR report. */
#define EVENT_BATCH 128
/* Longest bounded kevent wait. FreeBSD silently caps a timeout at 24
 * hours; capping it here too keeps a huge timeout_ns from meeting any
 * system's own limit on tv_sec (EINVAL). A capped wait returns 0 early,
 * which backend.h allows. */
#define MAX_WAIT_NS (86400ll * 1000000000ll)
/* Stripes of the O_NONBLOCK flip lock (a power of two). */
#define FLIP_STRIPES 64u
/* The EVFILT_USER event's ident: idents are per filter, so this cannot
 * clash with fd 0's EVFILT_READ/EVFILT_WRITE knotes. */
#define WAKE_IDENT 0

/* accept4 flags: the system's where it has them, else Linux's values, which
 * is what a caller written against backend.h ("accept4 flags") passes. */
#ifdef SOCK_CLOEXEC
#define ACC_CLOEXEC SOCK_CLOEXEC
#else
#define ACC_CLOEXEC 02000000u
#endif
#ifdef SOCK_NONBLOCK
#define ACC_NONBLOCK SOCK_NONBLOCK
#else
#define ACC_NONBLOCK 04000u
#endif

#ifdef MSG_NOSIGNAL
#define SEND_NOSIG MSG_NOSIGNAL
#else
#define SEND_NOSIG 0
#endif

/* Flags that make a waiter not consume readiness (see dispatch). */
#ifdef MSG_ERRQUEUE
#define NONEXCL_FLAGS (MSG_OOB | MSG_ERRQUEUE)
#else
#define NONEXCL_FLAGS MSG_OOB
#endif

/* Op states (low bits of b_flags). */
#define ST_MASK 7u
#define ST_IDLE 0u /* not held: before submit, after complete */
#define ST_DONE 1u /* in the done FIFO, complete() not run yet */
#define ST_WAIT 2u /* parked on its fd's waiter list */
#define ST_POOL 3u /* handed to the blocking pool */
#define ST_PEND 4u /* for the pool, in our pending list until the next wait() */
/* Op flags. */
#define OPF_IN (1u << 3)          /* waits for readability */
#define OPF_OUT (1u << 4)         /* waits for writability */
#define OPF_EXCL (1u << 5)        /* consumes readiness (see dispatch) */
#define OPF_SOCK (1u << 6)        /* READ/WRITE family on a socket */
#define OPF_FIFO (1u << 7)        /* ... on a pipe: SIGPIPE guard on writes */
#define OPF_NOOFF (1u << 8)       /* not seekable: op->off is ignored */
#define OPF_CONNECTING (1u << 10) /* connect in progress: read SO_ERROR */
#define OPF_STREAMSOCK (1u << 11) /* MSG_WAITALL: socket type checked, stream */
#define OPF_DGRAMSOCK (1u << 12)  /* MSG_WAITALL: socket type checked, not stream */

/* fd table entry flags. */
#define FD_ARMQ_IN 1u   /* EVFILT_READ add in the changelist */
#define FD_ARMQ_OUT 2u  /* EVFILT_WRITE add in the changelist */

#define T_WAIT 0
#define T_DONE 1

struct fd_entry {
	struct zk__op *head, *tail; /* ops parked on this fd, FIFO */
	unsigned flags;             /* FD_* */
};

struct deadline {
	uint64_t at; /* CLOCK_MONOTONIC ns */
	struct zk__op *op;
};

struct zk__backend {
	int kq;
	bool closing;                /* fini() started: new ops are cancelled */
	bool pool_ref;               /* holds a blocking-pool reference */
	unsigned inflight;           /* ops submitted, not yet completed */
	unsigned background;         /* of which background ops */
	unsigned pool_inflight;      /* of which in the blocking pool (or pending) */
	struct zk__op *pend_head, *pend_tail; /* pool ops not handed over yet */
	unsigned npend;
	struct fd_entry *fds;        /* indexed by fd */
	unsigned nfds;
	struct kevent *changes;      /* filters to add at the next kevent call */
	unsigned nchanges, cap_changes;
	struct deadline *heap;       /* min-heap on at */
	unsigned nheap, cap_heap;
	struct zk__op *done_head, *done_tail;
	/* Filled by pool threads. */
	struct zk__pool_sink sink;
	pthread_mutex_t cq_lock;
	struct zk__op *cq_head, *cq_tail;
	_Atomic bool cq_nonempty;    /* peeked without the lock */
	struct kevent events[EVENT_BATCH];
	struct zk__backend_stats *stats; /* the worker's metrics, or NULL */
};

/* (A GNU range designator, as in epoll.c; clang and gcc both take it.) */
static pthread_mutex_t flip_lock[FLIP_STRIPES] = {
	[0 ... FLIP_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER,
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- state ------------------------------------------------------------------ */

static void set_state(struct zk__op *op, unsigned st)
{
	op->b_flags = (op->b_flags & ~ST_MASK) | st;
}

static unsigned state_of(const struct zk__op *op)
{
	return op->b_flags & ST_MASK;
}

/* ---- deadline heap ---------------------------------------------------------- */

static void heap_set(struct zk__backend *b, unsigned i, struct deadline d)
{
	b->heap[i] = d;
	d.op->b_pending = i + 1;
}

static void heap_up(struct zk__backend *b, unsigned i)
{
	struct deadline d = b->heap[i];
	while (i > 0) {
		unsigned p = (i - 1) / 2;
		if (b->heap[p].at <= d.at)
			break;
		heap_set(b, i, b->heap[p]);
		i = p;
	}
	heap_set(b, i, d);
}

static void heap_down(struct zk__backend *b, unsigned i)
{
	struct deadline d = b->heap[i];
	for (;;) {
		unsigned c = 2 * i + 1;
		if (c >= b->nheap)
			break;
		if (c + 1 < b->nheap && b->heap[c + 1].at < b->heap[c].at)
			c++;
		if (b->heap[c].at >= d.at)
			break;
		heap_set(b, i, b->heap[c]);
		i = c;
	}
	heap_set(b, i, d);
}

/* Room for one more deadline, so that arming after the op has parked
 * cannot fail. */
static int heap_reserve(struct zk__backend *b)
{
	if (b->nheap < b->cap_heap)
		return 0;
	unsigned cap = b->cap_heap ? b->cap_heap * 2 : 64;
	struct deadline *h = realloc(b->heap, cap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	b->heap = h;
	b->cap_heap = cap;
	return 0;
}

static void heap_push(struct zk__backend *b, struct zk__op *op, uint64_t at)
{
	unsigned i = b->nheap++;
	b->heap[i] = (struct deadline){.at = at, .op = op};
	heap_up(b, i);
}

static void heap_remove(struct zk__backend *b, struct zk__op *op)
{
	if (!op->b_pending)
		return;
	unsigned i = op->b_pending - 1;
	op->b_pending = 0;
	if (--b->nheap == i)
		return;
	heap_set(b, i, b->heap[b->nheap]);
	if (i > 0 && b->heap[(i - 1) / 2].at > b->heap[i].at)
		heap_up(b, i);
	else
		heap_down(b, i);
}

static void arm_deadline(struct zk__backend *b, struct zk__op *op)
{
	uint64_t now = mono_ns();
	uint64_t at = op->timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + op->timeout_ns;
	heap_push(b, op, at);
}

/* ---- done FIFO -------------------------------------------------------------- */

/* op->res is set; complete() runs at the next run_done(). */
static void push_done(struct zk__backend *b, struct zk__op *op)
{
	heap_remove(b, op);
	set_state(op, ST_DONE);
	op->b_next = NULL;
	if (b->done_tail)
		b->done_tail->b_next = op;
	else
		b->done_head = op;
	b->done_tail = op;
}

static void finish_op(struct zk__backend *b, struct zk__op *op)
{
	b->inflight--;
	b->background -= op->background;
	ZK__BSTAT(b->stats, completed);
	op->b_flags = ST_IDLE; /* a cancel() from here on is a no-op */
	op->complete(op);
}

/* Runs the ops finished so far, not those their callbacks finish: a
 * callback that resubmits an op completing at once cannot keep one wait()
 * looping; they run at the next one, which will not block meanwhile. */
static int run_done(struct zk__backend *b)
{
	struct zk__op *op = b->done_head;
	b->done_head = b->done_tail = NULL;
	int n = 0;
	while (op) {
		struct zk__op *next = op->b_next;
		op->b_next = NULL;
		finish_op(b, op);
		op = next;
		n++;
	}
	return n;
}

/* Result of an op ended early (cancel, timeout, fini, a failed arm): what
 * it already transferred under MSG_WAITALL, as io_uring reports a partial
 * transfer. */
static int32_t early_res(const struct zk__op *op, int32_t err)
{
	return op->b_scratch[0] ? (int32_t)op->b_scratch[0] : err;
}

/* ---- fd table and changelist ------------------------------------------------ */

static int grow_fds(struct zk__backend *b, int fd)
{
	if ((unsigned)fd < b->nfds)
		return 0;
	unsigned n = b->nfds ? b->nfds : 64;
	while (n <= (unsigned)fd)
		n *= 2;
	struct fd_entry *f = realloc(b->fds, n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	memset(f + b->nfds, 0, (n - b->nfds) * sizeof(*f));
	b->fds = f;
	b->nfds = n;
	return 0;
}

/* Room for two more changes (a POLL arms both filters), so that queueing
 * after the op has parked cannot fail. */
static int changes_reserve(struct zk__backend *b)
{
	if (b->nchanges + 2 <= b->cap_changes)
		return 0;
	unsigned cap = b->cap_changes ? b->cap_changes * 2 : 64;
	struct kevent *c = realloc(b->changes, cap * sizeof(*c));
	if (!c)
		return -ENOMEM;
	b->changes = c;
	b->cap_changes = cap;
	return 0;
}

/* Queues an add of filter on fd unless one is queued already. EV_ADD on a
 * live knote only updates it, and makes the kernel check the filter at
 * once (see the top of the file): this is how a park sees readiness that
 * came before it. */
static void queue_arm(struct zk__backend *b, int fd, short filter)
{
	unsigned bit = filter == EVFILT_READ ? FD_ARMQ_IN : FD_ARMQ_OUT;
	struct fd_entry *e = &b->fds[fd];
	if (e->flags & bit)
		return;
	e->flags |= bit;
	EV_SET(&b->changes[b->nchanges++], (uintptr_t)fd, filter, EV_ADD | EV_CLEAR, 0, 0, NULL);
}

/* The n changes at first reached the kernel: their fds may queue again. */
static void changes_sent(struct zk__backend *b, const struct kevent *first, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int fd = (int)first[i].ident;
		if ((unsigned)fd < b->nfds)
			b->fds[fd].flags &= ~(FD_ARMQ_IN | FD_ARMQ_OUT);
	}
}

static void unlink_waiter(struct zk__backend *b, struct zk__op *op)
{
	struct fd_entry *e = &b->fds[op->fd];
	struct zk__op *prev = (struct zk__op *)(uintptr_t)op->b_scratch[1];
	struct zk__op *next = op->b_next;
	if (prev)
		prev->b_next = next;
	else
		e->head = next;
	if (next)
		next->b_scratch[1] = (uint64_t)(uintptr_t)prev;
	else
		e->tail = prev;
	op->b_next = NULL;
	op->b_scratch[1] = 0;
}

/* Parks op (which got EAGAIN) on its fd and queues the arm of its
 * direction. Returns 0 or -errno (the op could not wait: the caller
 * completes it). */
static int park(struct zk__backend *b, struct zk__op *op)
{
	int fd = op->fd;
	if (fd < 0)
		return -EBADF;
	int r = grow_fds(b, fd);
	if (r == 0)
		r = changes_reserve(b);
	if (r < 0)
		return r;
	unsigned dir = op->b_flags & (OPF_IN | OPF_OUT);
	if ((dir & OPF_IN) || !dir)
		queue_arm(b, fd, EVFILT_READ);
	if (dir & OPF_OUT)
		queue_arm(b, fd, EVFILT_WRITE);
	struct fd_entry *e = &b->fds[fd];
	set_state(op, ST_WAIT);
	op->b_next = NULL;
	op->b_scratch[1] = (uint64_t)(uintptr_t)e->tail;
	if (e->tail)
		e->tail->b_next = op;
	else
		e->head = op;
	e->tail = op;
	return 0;
}

/* Which filter's events concern op: POLL ops with neither direction
 * listen on EVFILT_READ (see park). */
static bool waits_on(const struct zk__op *op, short filter)
{
	unsigned dir = op->b_flags & (OPF_IN | OPF_OUT);
	if (filter == EVFILT_READ)
		return (dir & OPF_IN) || !dir;
	return dir & OPF_OUT;
}

/* Completes every op parked on fd for filter with res (or its partial
 * count); filter 0: every op on fd. */
static void fail_waiters(struct zk__backend *b, int fd, short filter, int32_t res)
{
	struct zk__op *op = b->fds[fd].head;
	while (op) {
		struct zk__op *next = op->b_next;
		if (!filter || waits_on(op, filter)) {
			unlink_waiter(b, op);
			op->res = early_res(op, res);
			push_done(b, op);
		}
		op = next;
	}
}

/* ---- non-blocking attempts -------------------------------------------------- */

static int done(struct zk__op *op, int64_t res)
{
	op->res = (int32_t)res;
	return T_DONE;
}

static int wait_for(struct zk__op *op, unsigned dir)
{
	op->b_flags = (op->b_flags & ~(OPF_IN | OPF_OUT | OPF_EXCL)) | dir;
	return T_WAIT;
}

/* Sets O_NONBLOCK on fd's file for one syscall (see the top of the file).
 * Returns 0 with the stripe locked and the old flags in *saved, or -errno. */
static int flip_begin(int fd, int *saved)
{
	pthread_mutex_t *l = &flip_lock[(unsigned)fd & (FLIP_STRIPES - 1)];
	pthread_mutex_lock(l);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
		int err = errno;
		pthread_mutex_unlock(l);
		return -err;
	}
	*saved = fl;
	return 0;
}

static void flip_end(int fd, int saved)
{
	int err = errno; /* the flipped call's */
	if (!(saved & O_NONBLOCK))
		fcntl(fd, F_SETFL, saved);
	pthread_mutex_unlock(&flip_lock[(unsigned)fd & (FLIP_STRIPES - 1)]);
	errno = err;
}

#if !defined(MSG_NOSIGNAL)
/* No per-call flag: the socket itself is told not to raise SIGPIPE. Set at
 * every send, not remembered per fd number: the number may name another
 * socket by now, and nothing tells the backend. */
static void socket_nosigpipe(int fd)
{
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
}
#define NOSIGPIPE(fd) socket_nosigpipe(fd)
#else
#define NOSIGPIPE(fd) ((void)(fd))
#endif

/* With MSG_WAITALL, io_uring keeps receiving until len only on stream and
 * seqpacket sockets; on datagram sockets one message is the whole answer. */
static bool waitall_applies(struct zk__op *op)
{
	if (!(op->flags & MSG_WAITALL) || (op->flags & (MSG_PEEK | MSG_DONTWAIT)))
		return false;
	if (!(op->b_flags & (OPF_STREAMSOCK | OPF_DGRAMSOCK))) {
		int type = 0;
		socklen_t l = sizeof(type);
		bool stream = getsockopt(op->fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 &&
			      (type == SOCK_STREAM || type == SOCK_SEQPACKET);
		op->b_flags |= stream ? OPF_STREAMSOCK : OPF_DGRAMSOCK;
	}
	return op->b_flags & OPF_STREAMSOCK;
}

/* RECV and SEND, progress in b_scratch[0] (nonzero only with WAITALL). */
static int try_sendrecv(struct zk__op *op, bool is_send)
{
	int uflags = (int)op->flags;
	int flags = uflags | MSG_DONTWAIT | (is_send ? SEND_NOSIG : 0);
	uint64_t got = op->b_scratch[0];
	if (is_send)
		NOSIGPIPE(op->fd);
	for (;;) {
		ssize_t r = is_send ? send(op->fd, (const char *)op->cbuf + got, op->len - got, flags)
				    : recv(op->fd, (char *)op->buf + got, op->len - got, flags);
		if (r > 0) {
			got += (uint64_t)r;
			op->b_scratch[0] = got;
			if (got < op->len && waitall_applies(op))
				continue;
			return done(op, (int64_t)got);
		}
		if (r == 0)
			return done(op, (int64_t)got);
		int err = errno;
		if (err == EINTR)
			continue;
		if (err == EAGAIN || err == EWOULDBLOCK) {
			if (uflags & MSG_DONTWAIT) /* the caller asked not to wait */
				return done(op, got ? (int64_t)got : -EAGAIN);
			unsigned excl = (uflags & NONEXCL_FLAGS) ? 0 : OPF_EXCL;
			return wait_for(op, (is_send ? OPF_OUT : OPF_IN) | excl);
		}
		return done(op, got ? (int64_t)got : -err);
	}
}

/* SENDMSG and RECVMSG: one message per op. */
static int try_msg(struct zk__op *op, bool is_send)
{
	int uflags = (int)op->flags;
	int flags = uflags | MSG_DONTWAIT | (is_send ? SEND_NOSIG : 0);
	if (is_send)
		NOSIGPIPE(op->fd);
	for (;;) {
		ssize_t r = is_send ? sendmsg(op->fd, op->msg, flags) : recvmsg(op->fd, op->msg, flags);
		if (r >= 0)
			return done(op, r);
		int err = errno;
		if (err == EINTR)
			continue;
		if ((err == EAGAIN || err == EWOULDBLOCK) && !(uflags & MSG_DONTWAIT)) {
			unsigned excl = (uflags & NONEXCL_FLAGS) ? 0 : OPF_EXCL;
			return wait_for(op, (is_send ? OPF_OUT : OPF_IN) | excl);
		}
		return done(op, -err);
	}
}

#ifdef __APPLE__
/* A pipe write that cannot raise SIGPIPE. macOS has no sigtimedwait to
 * consume the signal and does not say which thread it is sent to, so the
 * pipe is told not to raise it (see the top of the file). */
static ssize_t pipe_write(int fd, const struct iovec *iov, int cnt)
{
	fcntl(fd, F_SETNOSIGPIPE, 1);
	return writev(fd, iov, cnt);
}
#else
/* A pipe write with SIGPIPE blocked; a SIGPIPE it raised is consumed.
 * FreeBSD sends it to the writing thread (tdsignal), so the zero-timeout
 * sigtimedwait finds it. A SIGPIPE already blocked by the caller's mask is
 * left alone. */
static ssize_t pipe_write(int fd, const struct iovec *iov, int cnt)
{
	sigset_t pipe_set, old;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	ssize_t r = writev(fd, iov, cnt);
	int err = errno;
	if (r < 0 && err == EPIPE && !sigismember(&old, SIGPIPE)) {
		struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return r;
}
#endif

/* READ/WRITE/READV/WRITEV on anything pollable (not a regular file). */
static int try_rw(struct zk__op *op)
{
	bool is_write = op->opcode == ZK__OP_WRITE || op->opcode == ZK__OP_WRITEV;
	struct iovec one;
	const struct iovec *iov;
	int cnt;
	if (op->opcode == ZK__OP_READ || op->opcode == ZK__OP_WRITE) {
		one.iov_base = op->buf;
		one.iov_len = op->len;
		iov = &one;
		cnt = 1;
	} else {
		iov = op->iov;
		cnt = (int)op->len;
	}
	unsigned dir = (is_write ? OPF_OUT : OPF_IN) | OPF_EXCL;
	if ((op->b_flags & OPF_SOCK) && is_write)
		NOSIGPIPE(op->fd);
	for (;;) {
		ssize_t r;
		if (op->b_flags & OPF_SOCK) {
			struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = cnt};
			r = is_write ? sendmsg(op->fd, &m, MSG_DONTWAIT | SEND_NOSIG)
				     : recvmsg(op->fd, &m, MSG_DONTWAIT);
		} else {
			off_t off = (op->b_flags & OPF_NOOFF) ? -1 : (off_t)op->off;
			int saved = 0;
			int fr = flip_begin(op->fd, &saved);
			if (fr < 0)
				return done(op, fr);
			if (is_write && (op->b_flags & OPF_FIFO))
				r = pipe_write(op->fd, iov, cnt);
			else if (off == -1)
				r = is_write ? writev(op->fd, iov, cnt) : readv(op->fd, iov, cnt);
			else
				r = is_write ? pwritev(op->fd, iov, cnt, off)
					     : preadv(op->fd, iov, cnt, off);
			flip_end(op->fd, saved);
			if (r < 0 && errno == ESPIPE && off != -1) {
				/* Not seekable: like io_uring, ignore the offset. */
				op->b_flags |= OPF_NOOFF;
				continue;
			}
		}
		if (r >= 0)
			return done(op, r);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return wait_for(op, dir);
		return done(op, -errno);
	}
}

#ifdef __APPLE__
/* What accept4 would have set on the new socket. It inherited O_NONBLOCK
 * from the listener, which the flip had set: clear it unless asked for. */
static int accept_flags(int nfd, unsigned flags)
{
	if ((flags & ACC_CLOEXEC) && fcntl(nfd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	int fl = fcntl(nfd, F_GETFL);
	if (fl < 0)
		return -errno;
	int want = (flags & ACC_NONBLOCK) ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	if (want != fl && fcntl(nfd, F_SETFL, want) < 0)
		return -errno;
	return 0;
}
#endif

static int try_accept(struct zk__op *op)
{
	if (op->flags & ~(unsigned)(ACC_CLOEXEC | ACC_NONBLOCK))
		return done(op, -EINVAL); /* as accept4 says of unknown flags */
	for (;;) {
		int saved = 0;
		int r = flip_begin(op->fd, &saved);
		if (r < 0)
			return done(op, r);
#ifdef __APPLE__
		int nfd = accept(op->fd, op->addr, op->addrlen_p);
#else
		int nfd = accept4(op->fd, op->addr, op->addrlen_p, (int)op->flags);
#endif
		flip_end(op->fd, saved);
		if (nfd >= 0) {
#ifdef __APPLE__
			int fr = accept_flags(nfd, op->flags);
			if (fr < 0) {
				close(nfd);
				return done(op, fr);
			}
#endif
			return done(op, nfd);
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue; /* ECONNABORTED: that one is gone; Linux skips it */
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return wait_for(op, OPF_IN | OPF_EXCL);
		return done(op, -errno);
	}
}

/* Non-blocking connect; once the socket is writable, SO_ERROR holds the
 * result. Writable with SO_ERROR 0 and no peer yet means woken early. */
static int try_connect(struct zk__op *op)
{
	if (op->b_flags & OPF_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			return done(op, -errno);
		if (err)
			return done(op, -err);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getpeername(op->fd, (struct sockaddr *)&ss, &sl) == 0)
			return done(op, 0);
		if (errno == ENOTCONN)
			return wait_for(op, OPF_OUT);
		return done(op, -errno);
	}
	int saved = 0;
	int r = flip_begin(op->fd, &saved);
	if (r < 0)
		return done(op, r);
	r = connect(op->fd, op->caddr, op->addrlen);
	flip_end(op->fd, saved);
	if (r == 0)
		return done(op, 0);
	int err = errno;
	if (err == EINPROGRESS || err == EINTR) {
		/* EINTR on a non-blocking connect: it goes on asynchronously. */
		op->b_flags |= OPF_CONNECTING;
		return wait_for(op, OPF_OUT);
	}
	/* EAGAIN (a Unix socket whose listener's backlog is full, where the
	 * system says so) is returned as is: nothing would wake this socket
	 * when the backlog drains. */
	return done(op, -err);
}

static unsigned poll_dir(unsigned mask)
{
	unsigned dir = 0;
	if (mask & (POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND))
		dir |= OPF_IN;
	if (mask & (POLLOUT | POLLWRNORM | POLLWRBAND))
		dir |= OPF_OUT;
	return dir; /* 0: only POLLERR/POLLHUP: see park */
}

/* poll(2) with a zero timeout: the readiness right now, in poll bits.
 * kqueue's events do not carry poll(2) bits, so each event re-asks. */
static int try_poll(struct zk__op *op)
{
	if (op->fd < 0)
		return done(op, -EBADF); /* poll(2) would ignore it */
	struct pollfd p = {.fd = op->fd, .events = (short)op->flags};
	int r = poll(&p, 1, 0);
	if (r < 0 && errno != EINTR)
		return done(op, -errno);
	if (r > 0)
		return done(op, (p.revents & POLLNVAL) ? -EBADF : (int64_t)(uint16_t)p.revents);
	return wait_for(op, poll_dir(op->flags));
}

/* One non-blocking attempt. T_DONE: op->res is the result. T_WAIT: op must
 * wait for its OPF_IN/OPF_OUT direction. */
static int attempt(struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_RECV:
		return try_sendrecv(op, false);
	case ZK__OP_SEND:
	case ZK__OP_SEND_ZC: /* no zero-copy here: a plain send */
		return try_sendrecv(op, true);
	case ZK__OP_SENDMSG:
		return try_msg(op, true);
	case ZK__OP_RECVMSG:
		return try_msg(op, false);
	case ZK__OP_READ:
	case ZK__OP_WRITE:
	case ZK__OP_READV:
	case ZK__OP_WRITEV:
		return try_rw(op);
	case ZK__OP_ACCEPT:
		return try_accept(op);
	case ZK__OP_CONNECT:
		return try_connect(op);
	case ZK__OP_POLL:
		return try_poll(op);
	case ZK__OP_SHUTDOWN:
		return done(op, shutdown(op->fd, (int)op->flags) == 0 ? 0 : -errno);
	case ZK__OP_NOP:
		return done(op, 0);
	case ZK__OP_SPLICE:    /* no splice(2) */
	case ZK__OP_RECV_PBUF: /* no provided buffers */
		return done(op, -EOPNOTSUPP);
	default:
		return done(op, -EINVAL);
	}
}

/* ---- wake ------------------------------------------------------------------- */

/* Triggers the EVFILT_USER event. Any thread; kevent on one kqueue from
 * several threads is safe. A failure can only be the kqueue being gone,
 * and then nobody waits on it. */
static void trigger(int kq)
{
	struct kevent kev;
	EV_SET(&kev, WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	while (kevent(kq, &kev, 1, NULL, 0, NULL) < 0 && errno == EINTR)
		;
}

/* ---- pool ------------------------------------------------------------------- */

/* Runs on a pool thread. The trigger is made under cq_lock: fini() takes
 * the lock after the last delivery before closing the kqueue, so it can
 * never hit a closed (or reused) descriptor. */
static void sink_deliver(struct zk__pool_sink *sink, struct zk__op *op)
{
	struct zk__backend *b =
	    (struct zk__backend *)(void *)((char *)sink - offsetof(struct zk__backend, sink));
	pthread_mutex_lock(&b->cq_lock);
	op->b_next = NULL;
	if (b->cq_tail)
		b->cq_tail->b_next = op;
	else
		b->cq_head = op;
	b->cq_tail = op;
	if (!atomic_load_explicit(&b->cq_nonempty, memory_order_relaxed)) {
		atomic_store_explicit(&b->cq_nonempty, true, memory_order_release);
		trigger(b->kq);
	}
	pthread_mutex_unlock(&b->cq_lock);
}

/* Moves ops the pool finished for us to the done FIFO. */
static void drain_pool(struct zk__backend *b)
{
	if (!atomic_load_explicit(&b->cq_nonempty, memory_order_acquire))
		return;
	pthread_mutex_lock(&b->cq_lock);
	struct zk__op *op = b->cq_head;
	b->cq_head = b->cq_tail = NULL;
	atomic_store_explicit(&b->cq_nonempty, false, memory_order_relaxed);
	pthread_mutex_unlock(&b->cq_lock);
	while (op) {
		struct zk__op *next = op->b_next;
		b->pool_inflight--;
		push_done(b, op);
		op = next;
	}
}

/* Pool ops wait in a local list until the next wait(), which hands them
 * over in one batch (the io_uring SQ's batching). */
static void to_pool(struct zk__backend *b, struct zk__op *op)
{
	set_state(op, ST_PEND);
	if (op->timeout_ns)
		arm_deadline(b, op);
	b->pool_inflight++;
	op->b_next = NULL;
	op->b_scratch[1] = (uint64_t)(uintptr_t)b->pend_tail;
	if (b->pend_tail)
		b->pend_tail->b_next = op;
	else
		b->pend_head = op;
	b->pend_tail = op;
	b->npend++;
}

static void unlink_pending(struct zk__backend *b, struct zk__op *op)
{
	struct zk__op *prev = (struct zk__op *)(uintptr_t)op->b_scratch[1];
	struct zk__op *next = op->b_next;
	if (prev)
		prev->b_next = next;
	else
		b->pend_head = next;
	if (next)
		next->b_scratch[1] = (uint64_t)(uintptr_t)prev;
	else
		b->pend_tail = prev;
	op->b_next = NULL;
	op->b_scratch[1] = 0;
	b->npend--;
}

static void flush_pending(struct zk__backend *b)
{
	struct zk__op *head = b->pend_head;
	if (!head)
		return;
	for (struct zk__op *op = head; op; op = op->b_next)
		set_state(op, ST_POOL); /* before the pool can deliver it */
	unsigned n = b->npend;
	b->pend_head = b->pend_tail = NULL;
	b->npend = 0;
	int r = zk__pool_submit(head, n, &b->sink);
	if (r < 0) {
		while (head) {
			struct zk__op *next = head->b_next;
			b->pool_inflight--;
			head->res = r;
			push_done(b, head);
			head = next;
		}
	}
}

/* An op leaving early (cancel/timeout/fini). Pool ops already running
 * keep their real result: a blocking syscall cannot be interrupted. */
static void end_early(struct zk__backend *b, struct zk__op *op, int32_t err)
{
	switch (state_of(op)) {
	case ST_WAIT:
		unlink_waiter(b, op);
		op->res = early_res(op, err);
		push_done(b, op);
		break;
	case ST_PEND:
		unlink_pending(b, op);
		b->pool_inflight--;
		op->res = err;
		push_done(b, op);
		break;
	case ST_POOL:
		if (zk__pool_cancel(op)) {
			b->pool_inflight--;
			op->res = err;
			push_done(b, op);
		} else {
			heap_remove(b, op);
		}
		break;
	default:
		break; /* finished already: its result stands */
	}
}

static void expire(struct zk__backend *b)
{
	if (!b->nheap)
		return;
	uint64_t now = mono_ns();
	while (b->nheap && b->heap[0].at <= now)
		end_early(b, b->heap[0].op, -ETIMEDOUT);
}

/* ---- events ----------------------------------------------------------------- */

/* Retries the waiters of fd that an event of filter concerns, FIFO.
 * Completed ops go to the done FIFO (their callbacks run after the whole
 * batch). Among ops that consume readiness (OPF_EXCL), the first still
 * getting EAGAIN means the others would too: they are not tried, and
 * EV_CLEAR reports the next change. */
static void dispatch(struct zk__backend *b, int fd, short filter)
{
	bool dry = false;
	struct zk__op *op = b->fds[fd].head;
	while (op) {
		struct zk__op *next = op->b_next;
		if (!waits_on(op, filter) || ((op->b_flags & OPF_EXCL) && dry)) {
			op = next;
			continue;
		}
		if (attempt(op) == T_DONE) {
			unlink_waiter(b, op);
			push_done(b, op);
		} else if (op->b_flags & OPF_EXCL) {
			dry = true;
		}
		op = next;
	}
}

static void handle_events(struct zk__backend *b, int n)
{
	for (int i = 0; i < n; i++) {
		const struct kevent *ev = &b->events[i];
		if (ev->filter == EVFILT_USER)
			continue; /* a wake or a pool delivery: drain_pool looks */
		int fd = (int)ev->ident;
		if ((unsigned)fd >= b->nfds || !b->fds[fd].head)
			continue;
		if (ev->flags & EV_ERROR) {
			/* A queued add failed: EBADF (closed), EINVAL or ENODEV
			 * (nothing to poll). The ops that needed it cannot wait. */
			if (ev->data != 0)
				fail_waiters(b, fd, ev->filter, -(int32_t)ev->data);
			continue;
		}
		dispatch(b, fd, ev->filter);
	}
}

/* Hands the changelist to the kernel and waits up to timeout_ns (< 0: no
 * limit) for events. Returns the number of events in b->events, or -1 on
 * EINTR. On EINTR the changes stay queued: FreeBSD's kqueue(2) says they
 * were applied, macOS's says nothing, and an add is idempotent, so sending
 * them again is right on both. */
static int kq_enter(struct zk__backend *b, int64_t timeout_ns)
{
	static const struct timespec zero = {0, 0};
	/* Changes beyond one event list's worth go first, without waiting,
	 * so that every change has a slot for its EV_ERROR. */
	while (b->nchanges > EVENT_BATCH) {
		struct kevent *chunk = b->changes + b->nchanges - EVENT_BATCH;
		ZK__BSTAT(b->stats, enters);
		int r = kevent(b->kq, chunk, EVENT_BATCH, b->events, EVENT_BATCH, &zero);
		if (r < 0) {
			if (errno == EINTR)
				return -1;
			/* ENOMEM and the like: which adds took is unknown, so
			 * the ops behind them fail rather than wait forever. */
			int32_t err = -errno;
			for (unsigned i = 0; i < EVENT_BATCH; i++) {
				int fd = (int)chunk[i].ident;
				if ((unsigned)fd < b->nfds)
					fail_waiters(b, fd, chunk[i].filter, err);
			}
		}
		changes_sent(b, chunk, EVENT_BATCH);
		b->nchanges -= EVENT_BATCH;
		if (r > 0)
			handle_events(b, r);
	}
	struct timespec ts, *tsp = NULL;
	if (timeout_ns >= 0) {
		if (timeout_ns > MAX_WAIT_NS)
			timeout_ns = MAX_WAIT_NS;
		ts.tv_sec = (time_t)(timeout_ns / 1000000000);
		ts.tv_nsec = (long)(timeout_ns % 1000000000);
		tsp = &ts;
	}
	ZK__BSTAT(b->stats, enters);
	int r = kevent(b->kq, b->changes, (int)b->nchanges, b->events, EVENT_BATCH, tsp);
	if (r < 0 && errno == EINTR)
		return -1;
	if (r < 0) {
		int32_t err = -errno;
		for (unsigned i = 0; i < b->nchanges; i++) {
			int fd = (int)b->changes[i].ident;
			if ((unsigned)fd < b->nfds)
				fail_waiters(b, fd, b->changes[i].filter, err);
		}
	}
	changes_sent(b, b->changes, b->nchanges);
	b->nchanges = 0;
	return r;
}

/* ---- vtable ----------------------------------------------------------------- */

static int kq_init(struct zk__backend **out, const struct zk__backend_config *cfg)
{
	struct zk__backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->stats = cfg ? cfg->stats : NULL; /* no submission queue to size */
	int r = 0;
	pthread_mutex_init(&b->cq_lock, NULL);
	atomic_init(&b->cq_nonempty, false);
	b->sink.deliver = sink_deliver;
	/* A kqueue is not inherited by fork() children, but it does survive
	 * exec(): close-on-exec, as Linux's epoll_create1(EPOLL_CLOEXEC). */
	b->kq = kqueue();
	if (b->kq < 0)
		r = -errno;
	else if (fcntl(b->kq, F_SETFD, FD_CLOEXEC) < 0)
		r = -errno;
	if (r == 0) {
		/* EV_CLEAR: a retrieved trigger resets itself, as reading an
		 * eventfd does. */
		struct kevent kev;
		EV_SET(&kev, WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_FFNOP, 0, NULL);
		if (kevent(b->kq, &kev, 1, NULL, 0, NULL) < 0)
			r = -errno;
	}
	if (r == 0) {
		r = zk__pool_acquire();
		b->pool_ref = r == 0;
	}
	if (r < 0) {
		if (b->kq >= 0)
			close(b->kq);
		pthread_mutex_destroy(&b->cq_lock);
		free(b);
		return r;
	}
	*out = b;
	return 0;
}

/* READ/WRITE family: which path? Regular files, block devices and
 * directories block (or fail at once): the pool. Returns false if op is
 * finished (fstat failed). */
static bool classify_rw(struct zk__op *op, bool *pool)
{
	struct stat st;
	if (fstat(op->fd, &st) != 0) {
		op->res = -errno;
		return false;
	}
	*pool = false;
	if (S_ISSOCK(st.st_mode))
		op->b_flags |= OPF_SOCK | OPF_NOOFF;
	else if (S_ISFIFO(st.st_mode))
		op->b_flags |= OPF_FIFO | OPF_NOOFF;
	else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode))
		*pool = true;
	return true;
}

static void kq_close_op(struct zk__backend *b, struct zk__op *op)
{
	int fd = op->fd;
	/* close(2) drops this descriptor's knotes itself. An fd other ops
	 * still wait on keeps its entry: like io_uring, they keep waiting
	 * until cancelled or timed out. */
	if (fd >= 0 && (unsigned)fd < b->nfds && !b->fds[fd].head)
		b->fds[fd].flags &= FD_ARMQ_IN | FD_ARMQ_OUT;
	/* Inline: close(2) does not block on sockets, pipes or local files.
	 * Never retried: after EINTR the descriptor is gone on both systems. */
	op->res = close(fd) == 0 ? 0 : -errno;
	push_done(b, op);
}

static void kq_submit(struct zk__backend *b, struct zk__op *op)
{
	ZK__BSTAT(b->stats, submitted);
	b->inflight++;
	b->background += op->background;
	op->b_flags = 0;
	op->b_pending = 0;
	op->b_next = NULL;
	op->b_scratch[0] = op->b_scratch[1] = 0;
	op->more = false; /* multishot ops complete once here */
	op->cflags = 0;
	if (b->closing || op->fixed) {
		/* (No direct descriptors here: the core never sends one.) */
		op->res = b->closing ? -ECANCELED : -EBADF;
		push_done(b, op);
		return;
	}
	if (op->timeout_ns && heap_reserve(b) < 0) {
		op->res = -ENOMEM;
		push_done(b, op);
		return;
	}
	switch (op->opcode) {
	case ZK__OP_STATX:
		/* No struct statx to fill: say so without a pool round trip. */
		op->res = -EOPNOTSUPP;
		push_done(b, op);
		return;
	case ZK__OP_OPENAT:
	case ZK__OP_FSYNC:
	case ZK__OP_FALLOCATE:
	case ZK__OP_FTRUNCATE:
	case ZK__OP_SYNC_FILE_RANGE:
	case ZK__OP_RENAMEAT:
	case ZK__OP_UNLINKAT:
	case ZK__OP_MKDIRAT:
		to_pool(b, op);
		return;
	case ZK__OP_CLOSE:
		kq_close_op(b, op);
		return;
	case ZK__OP_READ:
	case ZK__OP_WRITE:
	case ZK__OP_READV:
	case ZK__OP_WRITEV: {
		bool pool;
		if (!classify_rw(op, &pool)) {
			push_done(b, op);
			return;
		}
		if (pool) {
			to_pool(b, op);
			return;
		}
		break;
	}
	default:
		break;
	}
	if (attempt(op) == T_DONE) {
		push_done(b, op);
		return;
	}
	int r = park(b, op);
	if (r < 0) {
		op->res = early_res(op, r);
		push_done(b, op);
		return;
	}
	if (op->timeout_ns)
		arm_deadline(b, op);
}

static void kq_cancel(struct zk__backend *b, struct zk__op *op)
{
	end_early(b, op, -ECANCELED);
}

static int kq_wait_vt(struct zk__backend *b, int64_t timeout_ns)
{
	flush_pending(b);
	drain_pool(b);
	expire(b);
	int n = run_done(b);
	/* Queued arms count as queued work: a parked op's filter must reach
	 * the kernel even when only background ops wait. */
	if (timeout_ns == 0 && b->inflight == b->background && !b->done_head && !b->nchanges)
		return n; /* nothing the caller waits for: no syscall */
	if (n > 0 || b->done_head)
		timeout_ns = 0; /* work is already here: do not sleep */
	if (timeout_ns != 0 && b->nheap) {
		uint64_t now = mono_ns();
		uint64_t at = b->heap[0].at;
		int64_t left = at <= now ? 0 : (at - now > INT64_MAX ? INT64_MAX : (int64_t)(at - now));
		if (timeout_ns < 0 || left < timeout_ns)
			timeout_ns = left;
	}
	int got = kq_enter(b, timeout_ns);
	if (got > 0)
		handle_events(b, got); /* < 0: EINTR; reap what is there */
	drain_pool(b);
	expire(b);
	return n + run_done(b);
}

static void kq_wake(struct zk__backend *b)
{
	trigger(b->kq);
}

static unsigned kq_inflight(const struct zk__backend *b)
{
	return b->inflight;
}

static void kq_fini(struct zk__backend *b)
{
	if (!b)
		return;
	b->closing = true;
	for (;;) {
		for (unsigned fd = 0; fd < b->nfds; fd++)
			if (b->fds[fd].head)
				fail_waiters(b, (int)fd, 0, -ECANCELED);
		while (b->pend_head)
			end_early(b, b->pend_head, -ECANCELED);
		struct zk__op *op = zk__pool_cancel_sink(&b->sink);
		while (op) {
			struct zk__op *next = op->b_next;
			b->pool_inflight--;
			op->res = -ECANCELED;
			push_done(b, op);
			op = next;
		}
		drain_pool(b);
		run_done(b);
		if (b->done_head)
			continue; /* a callback submitted (and was cancelled) */
		if (!b->pool_inflight)
			break;
		/* Ops running in the pool cannot be interrupted: wait for them.
		 * The pool triggers the user event when it delivers; any other
		 * event just goes round the loop again. */
		struct kevent ev;
		kevent(b->kq, NULL, 0, &ev, 1, NULL);
	}
	/* Every op is complete: no pool thread will deliver to us again. Take
	 * the lock once so the last deliverer is out of its critical section
	 * (it triggers the kqueue under it) before we close and free. */
	pthread_mutex_lock(&b->cq_lock);
	pthread_mutex_unlock(&b->cq_lock);
	if (b->pool_ref)
		zk__pool_release();
	close(b->kq);
	pthread_mutex_destroy(&b->cq_lock);
	free(b->fds);
	free(b->changes);
	free(b->heap);
	free(b);
}

const struct zk__backend_vtable zk__backend_kqueue = {
	.name = "kqueue",
	.init = kq_init,
	.fini = kq_fini,
	.submit = kq_submit,
	.cancel = kq_cancel,
	.wait = kq_wait_vt,
	.wake = kq_wake,
	.inflight = kq_inflight,
	/* pbuf_*, register_*, submit_chain, direct_*: none (NULL). */
};

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int zk__kqueue_unused;
#endif
