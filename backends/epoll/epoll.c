/* backends/epoll/epoll.c — the epoll backend: completions emulated on a
 * readiness API, for kernels or sandboxes without io_uring.
 *
 * Owns, per worker: an epoll instance, the worker's wake eventfd (registered
 * in it), a table of the fds this worker waits on, a deadline heap, a FIFO of
 * finished ops, and the list of ops the blocking pool (blocking_pool.c)
 * finished for this worker.
 *
 * How an op runs:
 *   - Socket, pipe and other pollable ops are tried at once, without
 *     blocking (below); a result goes to the done FIFO. EAGAIN parks the op
 *     on its fd's waiter list and the fd is registered with epoll, edge
 *     triggered, for every event at once (IN|OUT|RDHUP|PRI...): one
 *     registration per fd, kept while this backend lives, shared by every
 *     op on that fd (a reader and a writer, or a thousand readers). An
 *     event retries the waiters it concerns in FIFO order; for ops that
 *     consume readiness (recv, send, accept, read, write) the first one
 *     still getting EAGAIN stops the retries in its direction, so a
 *     thousand acceptors on one socket cost one accept per new connection,
 *     not a thousand.
 *   - Regular files (and block devices, directories), fsync and openat go to
 *     the blocking pool. They wait in a local list until the next wait(),
 *     which hands the batch over in one lock round trip (the SQ's batching;
 *     per-op hand-over cost 2.5x in futex traffic). Pool threads push
 *     finished ops onto this backend's pool list under a mutex and write
 *     the wake eventfd when the list was empty. One exception, as io_uring
 *     does it: a read at an offset whose pages are all in the page cache
 *     is served at once with RWF_NOWAIT (see try_cached_read).
 *   - complete() runs only from wait() (and fini), after all events of the
 *     batch are handled: never from submit() or cancel(), so a callback
 *     never recurses into its caller, and a callback that submits cannot
 *     disturb a waiter list being walked (TigerBeetle's completed FIFO).
 *
 * Never blocking a user's fd behind their back: the user's fds may be
 * blocking, and their O_NONBLOCK flag belongs to the open file description,
 * which other processes and threads share. So:
 *   - recv/send use MSG_DONTWAIT (send also MSG_NOSIGNAL: no SIGPIPE);
 *   - READ/WRITE/READV/WRITEV on a socket become recvmsg/sendmsg with the
 *     same flags; on a pipe, character device or anonymous inode (eventfd)
 *     preadv2/pwritev2 with RWF_NOWAIT, a per-call non-blocking mode;
 *   - accept and connect have no per-call flag: O_NONBLOCK is set on the
 *     file for the duration of that one syscall and put back ("flip"), under
 *     a lock striped by fd number so that two workers flipping one fd cannot
 *     leave it non-blocking or see each other's flip as the user's setting.
 *     A thread outside Zokio doing a blocking accept on the same socket at
 *     that instant would see EAGAIN; that is the documented price. Files
 *     without RWF_NOWAIT support (EOPNOTSUPP, e.g. eventfd writes) flip too.
 *   - a write to a pipe whose reader is gone raises SIGPIPE in the writing
 *     thread; the write runs with SIGPIPE blocked and a SIGPIPE it caused
 *     is consumed (sigtimedwait with a zero timeout) before the mask is
 *     restored, so the op just returns -EPIPE.
 * A READ/WRITE op fstat()s its fd once to pick one of these paths (and the
 * pool for regular files); socket ops (RECV, SEND, ...) do not.
 *
 * Registrations and closed fds. epoll keys a registration on (file, fd) and
 * drops it silently when the file is closed; a later file reusing the fd
 * number is not registered, and an op parked on it would wait forever. The
 * backend cannot see every close (close(2) is the user's), so an entry that
 * goes from idle to waiting is *unverified* and queued; before the worker
 * blocks in epoll_wait (and at least every VERIFY_INTERVAL non-blocking
 * waits) each queued entry is checked with EPOLL_CTL_ADD: EEXIST proves the
 * registration names the current file, success means it had gone stale and
 * now is fixed (the kernel reports current readiness for a new
 * registration, so nothing is missed), EBADF means the fd was closed and
 * its waiters complete with -EBADF. A busy worker therefore makes no
 * epoll_ctl for ops completed by events before it would sleep; an idle one
 * pays one cheap ADD (EEXIST) per fd that started waiting, just before it
 * sleeps. zk_close on this worker deregisters at once; CONNECT (almost
 * always on a fresh socket) and fds created by ACCEPT/OPENAT are verified at
 * once too.
 *
 * Timeouts: an op with timeout_ns that does not complete at once gets a
 * deadline in a binary min-heap (index in b_pending); epoll_wait's timeout
 * is bounded by the nearest deadline (epoll_pwait2: nanosecond resolution,
 * with a millisecond fallback for kernels before 5.11).
 *
 * Op scratch fields while the backend holds an op:
 *   b_flags      state (ST_*) and OPF_* flags; written only on the worker;
 *   b_pending    deadline heap index + 1 (0: no deadline armed);
 *   b_next       next op in the waiter list / done FIFO / pool queue;
 *   b_scratch[0] bytes done so far (MSG_WAITALL); the pool's sink for
 *                pool ops;
 *   b_scratch[1] previous op in the waiter list; the pool's own for pool
 *                ops. */
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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../backend.h"
#include "blocking_pool.h"

/* Events taken from epoll per epoll_wait; bounds the array, not the work. */
#define EVENT_BATCH 128
/* Non-blocking waits between two verification passes while the worker
 * stays busy (see "Registrations and closed fds"): bounds how long an op
 * parked on a stale registration waits on a worker that never sleeps. */
#define VERIFY_INTERVAL 64u
/* Stripes of the O_NONBLOCK flip lock (a power of two). */
#define FLIP_STRIPES 64u

/* Every event, edge triggered: one registration serves every op on the fd
 * whatever it waits for, so the interest never has to change. */
#define EP_EVENTS                                                                              \
	(EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM |  \
	 EPOLLWRBAND | EPOLLET)
#define EP_IN_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND)
#define EP_OUT_EVENTS (EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND)
#define WAKE_KEY UINT64_MAX

/* Op states (low bits of b_flags). */
#define ST_MASK 7u
#define ST_IDLE 0u /* not held: before submit, after complete */
#define ST_DONE 1u /* in the done FIFO, complete() not run yet */
#define ST_WAIT 2u /* parked on its fd's waiter list */
#define ST_POOL 3u /* handed to the blocking pool */
#define ST_PEND 4u /* for the pool, in our pending list until the next wait() */
/* Op flags. */
#define OPF_IN (1u << 3)         /* waits for readability */
#define OPF_OUT (1u << 4)        /* waits for writability */
#define OPF_EXCL (1u << 5)       /* consumes readiness (see dispatch) */
#define OPF_SOCK (1u << 6)       /* READ/WRITE family on a socket */
#define OPF_FIFO (1u << 7)       /* ... on a pipe: SIGPIPE guard on writes */
#define OPF_NOOFF (1u << 8)      /* not seekable: op->off is ignored */
#define OPF_FLIP (1u << 9)       /* no RWF_NOWAIT: flip O_NONBLOCK instead */
#define OPF_CONNECTING (1u << 10) /* connect in progress: retry connect() */
#define OPF_STREAMSOCK (1u << 11) /* MSG_WAITALL: socket type checked, stream */
#define OPF_DGRAMSOCK (1u << 12)  /* MSG_WAITALL: socket type checked, not stream */

/* fd table entry flags. */
#define FD_REG 1u      /* registered in our epoll (as far as we know) */
#define FD_VERIFIED 2u /* registration proven to name the current file */
#define FD_QUEUED 4u   /* on the verify list */

#define T_WAIT 0
#define T_DONE 1

struct fd_entry {
	struct zk__op *head, *tail; /* ops parked on this fd, FIFO */
	unsigned flags;             /* FD_* */
};

struct deadline {
	uint64_t at;       /* CLOCK_MONOTONIC ns */
	struct zk__op *op;
};

struct zk__backend {
	int epfd;
	int wake_fd;                 /* eventfd: wake() and pool completions */
	dev_t anon_dev;              /* st_dev of anonymous inodes (eventfd...) */
	bool closing;                /* fini() started: new ops are cancelled */
	bool no_pwait2;              /* kernel lacks epoll_pwait2 */
	bool pool_ref;               /* holds a blocking-pool reference */
	unsigned inflight;           /* ops submitted, not yet completed */
	unsigned background;         /* of which background ops */
	unsigned pool_inflight;      /* of which in the blocking pool (or pending) */
	struct zk__op *pend_head, *pend_tail; /* pool ops not handed over yet */
	unsigned npend;
	struct fd_entry *fds;        /* indexed by fd */
	int *verify;                 /* fds queued for verification */
	unsigned nfds;               /* size of fds and verify */
	unsigned nverify;
	unsigned verify_skips;       /* non-blocking waits since the last pass */
	struct deadline *heap;       /* min-heap on at */
	unsigned nheap, cap_heap;
	struct zk__op *done_head, *done_tail;
	/* Filled by pool threads. */
	struct zk__pool_sink sink;
	pthread_mutex_t cq_lock;
	struct zk__op *cq_head, *cq_tail;
	_Atomic bool cq_nonempty;    /* peeked without the lock */
	struct epoll_event events[EVENT_BATCH];
	struct zk__backend_stats *stats; /* the worker's metrics, or NULL */
};

static pthread_mutex_t flip_lock[FLIP_STRIPES] = {
	[0 ... FLIP_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER,
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- FIFOs and state ------------------------------------------------------ */

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

/* ---- done FIFO ------------------------------------------------------------------ */

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

/* Result of an op ended early (cancel, timeout, fini): what it already
 * transferred under MSG_WAITALL, as io_uring reports a partial transfer. */
static int32_t early_res(const struct zk__op *op, int32_t err)
{
	return op->b_scratch[0] ? (int32_t)op->b_scratch[0] : err;
}

/* ---- fd table and registration -------------------------------------------------- */

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
	int *v = realloc(b->verify, n * sizeof(*v));
	if (!v)
		return -ENOMEM; /* fds grew; nfds did not: harmless */
	b->verify = v;
	b->nfds = n;
	return 0;
}

/* EPOLL_CTL_ADD; EEXIST means our registration already names this file. */
static int ep_add(struct zk__backend *b, int fd)
{
	struct epoll_event ev = {.events = EP_EVENTS, .data.u64 = (uint64_t)(unsigned)fd};
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 || errno == EEXIST)
		return 0;
	return -errno;
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
	/* Idle again: the fd may be closed and its number reused before the
	 * next op waits on it, so that op must verify the registration. */
	if (!e->head)
		e->flags &= ~FD_VERIFIED;
}

/* Parks op (which got EAGAIN) on its fd. fresh: the fd is probably new
 * (connect): verify the registration now rather than before sleeping.
 * Returns 0 or -errno (the op could not wait: the caller completes it). */
static int park(struct zk__backend *b, struct zk__op *op, bool fresh)
{
	int fd = op->fd;
	if (fd < 0)
		return -EBADF;
	int r = grow_fds(b, fd);
	if (r < 0)
		return r;
	struct fd_entry *e = &b->fds[fd];
	if (!(e->flags & FD_REG) || (fresh && !(e->flags & FD_VERIFIED))) {
		r = ep_add(b, fd);
		if (r == -EPERM)
			return -EAGAIN; /* not pollable: EAGAIN would never end */
		if (r < 0)
			return r;
		e->flags |= FD_REG | FD_VERIFIED;
	} else if (!(e->flags & (FD_VERIFIED | FD_QUEUED))) {
		e->flags |= FD_QUEUED;
		b->verify[b->nverify++] = fd;
	}
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

/* Completes every op parked on fd with res (or its partial count). */
static void fail_waiters(struct zk__backend *b, int fd, int32_t res)
{
	struct zk__op *op;
	while ((op = b->fds[fd].head)) {
		unlink_waiter(b, op);
		op->res = early_res(op, res);
		push_done(b, op);
	}
}

/* The verification pass (see the top of the file). */
static void verify_pending(struct zk__backend *b)
{
	b->verify_skips = 0;
	for (unsigned i = 0; i < b->nverify; i++) {
		int fd = b->verify[i];
		struct fd_entry *e = &b->fds[fd];
		e->flags &= ~FD_QUEUED;
		if (!e->head || (e->flags & FD_VERIFIED))
			continue;
		int r = ep_add(b, fd);
		if (r == 0) {
			e->flags |= FD_REG | FD_VERIFIED;
			continue;
		}
		/* EBADF: closed; EPERM: the number now names a file that cannot
		 * be polled. Either way the file the ops waited on is gone. */
		e->flags &= ~(FD_REG | FD_VERIFIED);
		fail_waiters(b, fd, r == -EPERM ? -EBADF : r);
	}
	b->nverify = 0;
}

/* A new file got number fd (accept, openat): an entry we had for that
 * number named a closed file. */
static void forget_fd(struct zk__backend *b, int fd)
{
	if (fd >= 0 && (unsigned)fd < b->nfds && !b->fds[fd].head)
		b->fds[fd].flags &= FD_QUEUED;
}

/* ---- non-blocking attempts ------------------------------------------------------ */

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
	int flags = uflags | MSG_DONTWAIT | (is_send ? MSG_NOSIGNAL : 0);
	uint64_t got = op->b_scratch[0];
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
			unsigned excl = (uflags & (MSG_OOB | MSG_ERRQUEUE)) ? 0 : OPF_EXCL;
			return wait_for(op, (is_send ? OPF_OUT : OPF_IN) | excl);
		}
		return done(op, got ? (int64_t)got : -err);
	}
}

/* SENDMSG and RECVMSG: one message per op (MSG_WAITALL is passed to the
 * kernel but a short stream read is not continued, unlike RECV). */
static int try_msg(struct zk__op *op, bool is_send)
{
	int uflags = (int)op->flags;
	int flags = uflags | MSG_DONTWAIT | (is_send ? MSG_NOSIGNAL : 0);
	for (;;) {
		ssize_t r = is_send ? sendmsg(op->fd, op->msg, flags) : recvmsg(op->fd, op->msg, flags);
		if (r >= 0)
			return done(op, r);
		int err = errno;
		if (err == EINTR)
			continue;
		if ((err == EAGAIN || err == EWOULDBLOCK) && !(uflags & MSG_DONTWAIT)) {
			unsigned excl = (uflags & (MSG_OOB | MSG_ERRQUEUE)) ? 0 : OPF_EXCL;
			return wait_for(op, (is_send ? OPF_OUT : OPF_IN) | excl);
		}
		return done(op, -err);
	}
}

/* Runs a write with SIGPIPE blocked; a SIGPIPE it raised is consumed. A
 * SIGPIPE already blocked by the caller's mask is left alone. */
static ssize_t nosigpipe(ssize_t (*fn)(int, const struct iovec *, int, off_t, int), int fd,
			 const struct iovec *iov, int cnt, off_t off, int flags)
{
	sigset_t pipe_set, old;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	ssize_t r = fn(fd, iov, cnt, off, flags);
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

static ssize_t do_preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return preadv2(fd, iov, cnt, off, flags);
}

static ssize_t do_pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
	return pwritev2(fd, iov, cnt, off, flags);
}

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
	for (;;) {
		ssize_t r;
		if (op->b_flags & OPF_SOCK) {
			struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
			r = is_write ? sendmsg(op->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL)
				     : recvmsg(op->fd, &m, MSG_DONTWAIT);
		} else {
			off_t off = (op->b_flags & OPF_NOOFF) ? -1 : (off_t)op->off;
			ssize_t (*fn)(int, const struct iovec *, int, off_t, int) =
			    is_write ? do_pwritev2 : do_preadv2;
			int saved = 0, flags = RWF_NOWAIT;
			if (op->b_flags & OPF_FLIP) {
				int fr = flip_begin(op->fd, &saved);
				if (fr < 0)
					return done(op, fr);
				flags = 0;
			}
			r = (op->b_flags & OPF_FIFO) && is_write
				? nosigpipe(fn, op->fd, iov, cnt, off, flags)
				: fn(op->fd, iov, cnt, off, flags);
			if (op->b_flags & OPF_FLIP)
				flip_end(op->fd, saved);
			if (r < 0 && errno == EOPNOTSUPP && !(op->b_flags & OPF_FLIP)) {
				op->b_flags |= OPF_FLIP;
				continue;
			}
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

static int try_accept(struct zk__op *op)
{
	for (;;) {
		int saved = 0;
		int r = flip_begin(op->fd, &saved);
		if (r < 0)
			return done(op, r);
		int nfd = accept4(op->fd, op->addr, op->addrlen_p, (int)op->flags);
		flip_end(op->fd, saved);
		if (nfd >= 0)
			return done(op, nfd);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return wait_for(op, OPF_IN | OPF_EXCL);
		return done(op, -errno);
	}
}

/* Non-blocking connect, then on writability connect() again, as io_uring
 * does: Linux leaves a socket whose asynchronous connect finished in the
 * "connecting" state until the next connect() call, which returns 0 (or the
 * error) and makes it connected, so that a later connect() by the user gets
 * -EISCONN as it would on io_uring. */
static int try_connect(struct zk__op *op)
{
	bool again = op->b_flags & OPF_CONNECTING;
	int saved = 0;
	int r = flip_begin(op->fd, &saved);
	if (r < 0)
		return done(op, r);
	r = connect(op->fd, op->caddr, op->addrlen);
	flip_end(op->fd, saved);
	if (r == 0)
		return done(op, 0);
	int err = errno;
	if (again && err == EISCONN)
		return done(op, 0);
	if (err == EINPROGRESS || err == EINTR || (again && err == EALREADY)) {
		/* EINTR on a non-blocking connect: it goes on asynchronously.
		 * EALREADY on a retry: woken before it finished. */
		op->b_flags |= OPF_CONNECTING;
		return wait_for(op, OPF_OUT);
	}
	/* EAGAIN (a Unix socket whose listener's backlog is full) is returned
	 * as is: nothing would wake this socket when the backlog drains. */
	return done(op, -err);
}

static unsigned poll_dir(unsigned mask)
{
	unsigned dir = 0;
	if (mask & (POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND | POLLRDHUP))
		dir |= OPF_IN;
	if (mask & (POLLOUT | POLLWRNORM | POLLWRBAND))
		dir |= OPF_OUT;
	return dir; /* 0: only POLLERR/POLLHUP, which wake every waiter */
}

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

/* SPLICE: the output (op->fd) is made non-blocking for the call by a flip
 * (a pipe end honours SPLICE_F_NONBLOCK, a socket only O_NONBLOCK), and
 * SIGPIPE is blocked and consumed as in nosigpipe(): splice into a socket
 * whose peer is gone raises it. On EAGAIN the op waits for the output to
 * become writable; an input pipe must not be empty (see backend.h). A
 * regular-file input is read inline: pages not in the page cache make the
 * call wait for the disk (see backend.h). */
static int try_splice(struct zk__op *op)
{
	for (;;) {
		loff_t in_off = op->off2, out_off = op->off;
		int saved = 0;
		int fr = flip_begin(op->fd, &saved);
		if (fr < 0)
			return done(op, fr);
		sigset_t pipe_set, old;
		sigemptyset(&pipe_set);
		sigaddset(&pipe_set, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
		ssize_t r = splice(op->fd2, op->off2 >= 0 ? &in_off : NULL, op->fd,
				   op->off >= 0 ? &out_off : NULL, op->len,
				   op->flags | SPLICE_F_NONBLOCK);
		int err = errno;
		if (r < 0 && err == EPIPE && !sigismember(&old, SIGPIPE)) {
			struct timespec zero = {0, 0};
			while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
				;
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		errno = err;
		flip_end(op->fd, saved);
		if (r >= 0)
			return done(op, r);
		if (err == EINTR)
			continue;
		if (err == EAGAIN)
			return wait_for(op, OPF_OUT | OPF_EXCL);
		return done(op, -err);
	}
}

/* One non-blocking attempt. T_DONE: op->res is the result. T_WAIT: op must
 * wait for its OPF_IN/OPF_OUT direction. */
static int attempt(struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_RECV:
		return try_sendrecv(op, false);
	case ZK__OP_SEND:
		return try_sendrecv(op, true);
	case ZK__OP_SENDMSG:
		return try_msg(op, true);
	case ZK__OP_SEND_ZC: /* no zero-copy here: a plain send */
		return try_sendrecv(op, true);
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
	case ZK__OP_SPLICE:
		return try_splice(op);
	default:
		return done(op, -EINVAL);
	}
}

/* ---- pool ------------------------------------------------------------------------ */

/* Runs on a pool thread. The eventfd is written under cq_lock: fini()
 * takes the lock after the last delivery before closing it, so the write
 * can never hit a closed (or reused) fd. */
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
		uint64_t one = 1;
		ssize_t r = write(b->wake_fd, &one, sizeof(one));
		(void)r; /* saturated counter: a wake is pending anyway */
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
 * over in one batch: one pool lock round trip and one wake-up per idle
 * thread per batch instead of per op (the io_uring SQ's batching). */
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

/* ---- events ------------------------------------------------------------------------ */

/* Retries the waiters of fd that the events concern, FIFO. Completed ops
 * go to the done FIFO (their callbacks run after the whole batch). Among
 * ops that consume readiness (OPF_EXCL), the first still getting EAGAIN in
 * a direction means the others would too: they are not tried. */
static void dispatch(struct zk__backend *b, int fd, uint32_t ev)
{
	bool all = ev & (EPOLLERR | EPOLLHUP);
	bool in_dry = false, out_dry = false;
	struct zk__op *op = b->fds[fd].head;
	while (op) {
		struct zk__op *next = op->b_next;
		unsigned want = op->b_flags & (OPF_IN | OPF_OUT);
		bool hit = all || ((want & OPF_IN) && (ev & EP_IN_EVENTS)) ||
			   ((want & OPF_OUT) && (ev & EP_OUT_EVENTS));
		if (!hit) {
			op = next;
			continue;
		}
		if (op->opcode == ZK__OP_POLL) {
			/* epoll reports the file's readiness at delivery time, in
			 * poll(2) bits: no syscall needed. */
			uint32_t rev = ev & (op->flags | POLLERR | POLLHUP);
			if (rev) {
				unlink_waiter(b, op);
				op->res = (int32_t)rev;
				push_done(b, op);
			}
			op = next;
			continue;
		}
		bool excl = op->b_flags & OPF_EXCL;
		bool *dry = (want & OPF_IN) ? &in_dry : &out_dry;
		if (excl && *dry) {
			op = next;
			continue;
		}
		if (attempt(op) == T_DONE) {
			unlink_waiter(b, op);
			push_done(b, op);
		} else if (op->b_flags & OPF_EXCL) {
			*dry = true;
		}
		op = next;
	}
}

static int epoll_wait_ns(struct zk__backend *b, int64_t timeout_ns)
{
	ZK__BSTAT(b->stats, enters);
#ifdef SYS_epoll_pwait2
	if (!b->no_pwait2) {
		struct timespec ts, *tsp = NULL;
		if (timeout_ns >= 0) {
			ts.tv_sec = (time_t)(timeout_ns / 1000000000);
			ts.tv_nsec = (long)(timeout_ns % 1000000000);
			tsp = &ts;
		}
		long r = syscall(SYS_epoll_pwait2, b->epfd, b->events, EVENT_BATCH, tsp, NULL,
				 (size_t)0);
		if (r >= 0 || errno != ENOSYS)
			return (int)r;
		b->no_pwait2 = true;
	}
#endif
	int ms = -1;
	if (timeout_ns >= 0) {
		int64_t m = (timeout_ns + 999999) / 1000000; /* round up: never early */
		ms = m > INT_MAX ? INT_MAX : (int)m;
	}
	return epoll_wait(b->epfd, b->events, EVENT_BATCH, ms);
}

static void handle_events(struct zk__backend *b, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t key = b->events[i].data.u64;
		if (key == WAKE_KEY) {
			uint64_t v;
			ssize_t r = read(b->wake_fd, &v, sizeof(v));
			(void)r; /* EAGAIN: another read drained it; fine */
			continue;
		}
		int fd = (int)key;
		if ((unsigned)fd < b->nfds && b->fds[fd].head)
			dispatch(b, fd, b->events[i].events);
	}
}

/* ---- vtable --------------------------------------------------------------------- */

static int ep_init(struct zk__backend **out, const struct zk__backend_config *cfg)
{
	(void)cfg; /* no submission queue to size */
	struct zk__backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->epfd = -1;
	b->wake_fd = -1;
	b->stats = cfg ? cfg->stats : NULL;
	int r = 0;
	pthread_mutex_init(&b->cq_lock, NULL);
	atomic_init(&b->cq_nonempty, false);
	b->sink.deliver = sink_deliver;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0)
		r = -errno;
	if (r == 0) {
		b->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (b->wake_fd < 0)
			r = -errno;
	}
	struct stat st;
	if (r == 0) {
		if (fstat(b->wake_fd, &st) == 0)
			b->anon_dev = st.st_dev;
		else
			r = -errno;
	}
	if (r == 0) {
		/* The wake fd is ours alone: level triggered would do as well,
		 * but it is read at every event anyway. */
		struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = WAKE_KEY};
		if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->wake_fd, &ev) < 0)
			r = -errno;
	}
	if (r == 0) {
		r = zk__pool_acquire();
		b->pool_ref = r == 0;
	}
	if (r < 0) {
		if (b->wake_fd >= 0)
			close(b->wake_fd);
		if (b->epfd >= 0)
			close(b->epfd);
		pthread_mutex_destroy(&b->cq_lock);
		free(b);
		return r;
	}
	*out = b;
	return 0;
}

/* READ/WRITE family: which path? Regular files, block devices and
 * directories block (or fail at once): the pool. Anonymous inodes (eventfd,
 * timerfd) may report any mode on some kernels, so they are told apart by
 * their device. Returns false if op is finished (fstat failed). */
static bool classify_rw(struct zk__backend *b, struct zk__op *op, bool *pool)
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
	else if ((S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode)) &&
		 st.st_dev != b->anon_dev)
		*pool = true;
	return true;
}

/* A read at an offset of a regular file whose pages are all cached is
 * served here, as io_uring does before it punts to its workers: preadv2
 * with RWF_NOWAIT copies from the page cache or fails with EAGAIN, never
 * waits for the disk. Not under O_DIRECT, where RWF_NOWAIT only avoids
 * lock waits and still waits for the device. A short count may mean "the
 * rest is not cached" rather than EOF, so it is redone in the pool (a
 * read at an offset is idempotent); 0 is EOF (nothing cached gives
 * EAGAIN). True: op->res is the result. */
static bool try_cached_read(struct zk__op *op)
{
	if ((op->opcode != ZK__OP_READ && op->opcode != ZK__OP_READV) || op->off < 0)
		return false;
	int fl = fcntl(op->fd, F_GETFL);
	if (fl < 0 || (fl & O_DIRECT))
		return false;
	struct iovec one = {.iov_base = op->buf, .iov_len = op->len};
	const struct iovec *iov = &one;
	int cnt = 1;
	size_t want = op->len;
	if (op->opcode == ZK__OP_READV) {
		iov = op->iov;
		cnt = (int)op->len;
		want = 0;
		for (int i = 0; i < cnt; i++)
			want += iov[i].iov_len;
	}
	ssize_t r = preadv2(op->fd, iov, cnt, (off_t)op->off, RWF_NOWAIT);
	if (r < 0 || (r > 0 && (size_t)r < want))
		return false; /* EAGAIN, EOPNOTSUPP, ... : the pool says */
	op->res = (int32_t)r;
	return true;
}

static void ep_close_op(struct zk__backend *b, struct zk__op *op)
{
	int fd = op->fd;
	if (fd >= 0 && (unsigned)fd < b->nfds && !b->fds[fd].head) {
		/* Deregister first: if the file has other references (dup,
		 * fork) the kernel would keep our registration alive after the
		 * close and report its events under this number. An fd other ops
		 * still wait on is left registered: like io_uring, they keep
		 * waiting until cancelled or timed out. */
		if (b->fds[fd].flags & FD_REG)
			epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
		b->fds[fd].flags &= FD_QUEUED;
	}
	/* Inline: close(2) does not block on sockets, pipes or local files.
	 * (A socket with SO_LINGER and a timeout would; so would a network
	 * filesystem's flush.) Never retried: on Linux EINTR still closed it. */
	op->res = close(fd) == 0 ? 0 : -errno;
	push_done(b, op);
}

static void ep_submit(struct zk__backend *b, struct zk__op *op)
{
	ZK__BSTAT(b->stats, submitted);
	b->inflight++;
	b->background += op->background;
	op->b_flags = 0;
	op->b_pending = 0;
	op->b_next = NULL;
	op->b_scratch[0] = op->b_scratch[1] = 0;
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
	case ZK__OP_OPENAT:
	case ZK__OP_FSYNC:
	case ZK__OP_STATX:
	case ZK__OP_FALLOCATE:
	case ZK__OP_FTRUNCATE:
	case ZK__OP_SYNC_FILE_RANGE:
	case ZK__OP_RENAMEAT:
	case ZK__OP_UNLINKAT:
	case ZK__OP_MKDIRAT:
		to_pool(b, op);
		return;
	case ZK__OP_CLOSE:
		ep_close_op(b, op);
		return;
	case ZK__OP_READ:
	case ZK__OP_WRITE:
	case ZK__OP_READV:
	case ZK__OP_WRITEV: {
		bool pool;
		if (!classify_rw(b, op, &pool)) {
			push_done(b, op);
			return;
		}
		if (pool) {
			if (try_cached_read(op))
				push_done(b, op);
			else
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
	int r = park(b, op, op->opcode == ZK__OP_CONNECT);
	if (r < 0) {
		op->res = early_res(op, r);
		push_done(b, op);
		return;
	}
	if (op->timeout_ns)
		arm_deadline(b, op);
}

static void ep_cancel(struct zk__backend *b, struct zk__op *op)
{
	end_early(b, op, -ECANCELED);
}

/* Fds born from ops the pool or an event finished (accept, openat): our
 * entry for that number, if any, named a closed file. */
static void note_new_fds(struct zk__backend *b)
{
	for (struct zk__op *op = b->done_head; op; op = op->b_next)
		if ((op->opcode == ZK__OP_ACCEPT || op->opcode == ZK__OP_OPENAT) && op->res >= 0)
			forget_fd(b, op->res);
}

static int ep_wait(struct zk__backend *b, int64_t timeout_ns)
{
	flush_pending(b);
	drain_pool(b);
	expire(b);
	note_new_fds(b);
	int n = run_done(b);
	if (timeout_ns == 0 && b->inflight == b->background && !b->done_head)
		return n; /* nothing the caller waits for: no syscall */
	if (n > 0 || b->done_head)
		timeout_ns = 0; /* work is already here: do not sleep */
	if (timeout_ns != 0 || ++b->verify_skips >= VERIFY_INTERVAL) {
		if (b->nverify)
			verify_pending(b);
		else
			b->verify_skips = 0;
		if (b->done_head)
			timeout_ns = 0;
	}
	if (timeout_ns != 0 && b->nheap) {
		uint64_t now = mono_ns();
		uint64_t at = b->heap[0].at;
		int64_t left = at <= now ? 0 : (at - now > INT64_MAX ? INT64_MAX : (int64_t)(at - now));
		if (timeout_ns < 0 || left < timeout_ns)
			timeout_ns = left;
	}
	int got = epoll_wait_ns(b, timeout_ns);
	if (got > 0)
		handle_events(b, got); /* < 0: EINTR; reap what is there */
	drain_pool(b);
	expire(b);
	note_new_fds(b);
	return n + run_done(b);
}

static void ep_wake(struct zk__backend *b)
{
	uint64_t one = 1;
	/* A failed write means the counter is saturated: the reader is
	 * already due to wake, which is all we want. */
	ssize_t r = write(b->wake_fd, &one, sizeof(one));
	(void)r;
}

static unsigned ep_inflight(const struct zk__backend *b)
{
	return b->inflight;
}

static void ep_fini(struct zk__backend *b)
{
	if (!b)
		return;
	b->closing = true;
	for (;;) {
		for (unsigned fd = 0; fd < b->nfds; fd++)
			if (b->fds[fd].head)
				fail_waiters(b, (int)fd, -ECANCELED);
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
		 * The pool writes wake_fd when it delivers. */
		struct pollfd p = {.fd = b->wake_fd, .events = POLLIN};
		if (poll(&p, 1, -1) > 0) {
			uint64_t v;
			ssize_t r = read(b->wake_fd, &v, sizeof(v));
			(void)r;
		}
	}
	/* Every op is complete: no pool thread will deliver to us again. Take
	 * the lock once so the last deliverer is out of its critical section
	 * (it writes wake_fd under it) before we close and free. */
	pthread_mutex_lock(&b->cq_lock);
	pthread_mutex_unlock(&b->cq_lock);
	if (b->pool_ref)
		zk__pool_release();
	close(b->wake_fd);
	close(b->epfd);
	pthread_mutex_destroy(&b->cq_lock);
	free(b->fds);
	free(b->verify);
	free(b->heap);
	free(b);
}

const struct zk__backend_vtable zk__backend_epoll = {
	.name = "epoll",
	.init = ep_init,
	.fini = ep_fini,
	.submit = ep_submit,
	.cancel = ep_cancel,
	.wait = ep_wait,
	.wake = ep_wake,
	.inflight = ep_inflight,
};
