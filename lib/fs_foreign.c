/* lib/fs_foreign.c — file calls made from foreign threads (threads that are
 * not runtime workers: a storage engine's own threads, or main()), and
 * zk_fs_register_buffers from tasks (handed to every worker ring).
 *
 * Owns each foreign thread's private ring (and its registered buffers and
 * files, zk_fs_register_*): an instance of the io_uring
 * backend (backends/io_uring/io_uring.c) created at the thread's first file
 * call and freed at thread exit (a pthread key destructor) or by
 * zk_fs_thread_release(). The thread submits an op to its own instance and
 * waits in the instance's wait() until the op's complete() has run: only
 * that thread blocks, and no worker, runtime or hand-off queue is involved.
 * The instance is single-issuer by construction (one thread), so the
 * backend's SINGLE_ISSUER|DEFER_TASKRUN setup applies: completions are
 * processed only when this thread waits for them.
 *
 * Why a ring per thread and not a hand-off to a worker: a hand-off costs two
 * cross-thread wake-ups per call (to the worker, back to the caller), where
 * the private ring costs one io_uring_enter; and a storage engine's thread
 * should not queue behind tasks. Why not always plain syscalls: a batch
 * (fs_batch.c) goes to the kernel in one io_uring_enter and runs
 * concurrently there, and O_DIRECT reads at depth need that.
 *
 * Single calls skip the ring on purpose in two cases: the ops io_uring
 * always hands to its io-wq threads (fsync, fdatasync, sync_file_range,
 * fallocate, ftruncate, statx, renameat, unlinkat, mkdirat: see punted())
 * are the plain syscall, which blocks this thread just the same without
 * the hand-off; and a read at an offset is first tried
 * with preadv2(RWF_NOWAIT), which succeeds only when it need not wait
 * (see try_cached_read); the rest goes to the ring. Both shortcuts are
 * taken in ZK_FS_AUTO mode only: not after zk_fs_thread_mode(ZK_FS_RING)
 * (everything through the ring: what the tests and the benchmarks' ring
 * figures exercise), nor once the thread registered buffers or files
 * (their point is the ring).
 *
 * Fallback: plain syscalls (zk__op_syscall, backends/op_syscall.c) when
 * io_uring cannot be set up (old kernel, seccomp), when ZK_BACKEND=epoll is
 * in the environment (so the epoll test run covers this path), or when the
 * thread asked for it with
 * zk_fs_thread_mode(ZK_FS_SYSCALL). -EINTR is retried and -EAGAIN (a
 * non-blocking fd) waits for readiness, on both paths. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fs_internal.h"
#include "zokio/fs.h"

/* SQ entries of a foreign thread's ring: enough for a QD32 batch twice
 * over; larger batches go through the backend's unqueued FIFO. The CQ is
 * four times larger (the backend's choice). */
#define FOREIGN_RING_ENTRIES 64u

struct fs_thread {
	struct zk__backend *ring; /* the thread's backend instance, or NULL */
	int mode;                 /* ZK_FS_AUTO / _RING / _SYSCALL as asked */
	bool ring_failed;         /* AUTO tried the ring and could not */
	bool env_read;            /* ZK_BACKEND looked at */
	bool env_epoll;           /* ZK_BACKEND=epoll */
	bool registered;          /* buffers or files registered with the ring */
};

static _Thread_local struct fs_thread ft;

static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;

/* Serialises ring creation and destruction (rare: once per thread). The
 * kernel may map a new ring's SQ at the address of one another thread just
 * unmapped, and liburing maps and unmaps with raw syscalls that ThreadSanitizer
 * does not see; the lock gives it the happens-before edge it needs. */
static pthread_mutex_t ring_life = PTHREAD_MUTEX_INITIALIZER;

static void ring_free(struct zk__backend *b)
{
	pthread_mutex_lock(&ring_life);
	zk__backend_io_uring.fini(b);
	pthread_mutex_unlock(&ring_life);
}

/* Thread exit: the key's value is the thread's ring. */
static void ring_destructor(void *p)
{
	ring_free(p);
}

/* A child of fork() must not touch the parent's ring: the parent may still
 * be using it, and a SINGLE_ISSUER ring refuses another process's
 * submissions (so fini() could not even cancel the wake read). The child's
 * forking thread forgets it; its next call makes a new one. The old record
 * stays reachable from here so leak checkers do not report it. */
static struct zk__backend *forked_away;

static void fork_prepare(void)
{
	pthread_mutex_lock(&ring_life); /* no ring half made in the child */
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&ring_life);
}

static void forget_ring_in_child(void)
{
	pthread_mutex_unlock(&ring_life);
	if (ft.ring) {
		forked_away = ft.ring;
		ft.ring = NULL;
		ft.registered = false;
		pthread_setspecific(ring_key, NULL);
	}
}

static void ring_key_init(void)
{
	if (pthread_key_create(&ring_key, ring_destructor) != 0)
		abort(); /* PTHREAD_KEYS_MAX exhausted at load time: unusable */
	pthread_atfork(fork_prepare, fork_parent, forget_ring_in_child);
}

static int ring_create(void)
{
	pthread_once(&ring_key_once, ring_key_init);
	struct zk__backend_config cfg = {.ring_entries = FOREIGN_RING_ENTRIES};
	struct zk__backend *b;
	pthread_mutex_lock(&ring_life);
	int r = zk__backend_io_uring.init(&b, &cfg);
	pthread_mutex_unlock(&ring_life);
	if (r < 0)
		return r;
	if (pthread_setspecific(ring_key, b) != 0) {
		ring_free(b);
		return -ENOMEM;
	}
	ft.ring = b;
	return 0;
}

struct zk__backend *zk__fs_thread_ring(void)
{
	if (ft.mode == ZK_FS_SYSCALL)
		return NULL; /* even with a ring still around: the mode decides */
	if (ft.ring)
		return ft.ring;
	if (ft.ring_failed)
		return NULL;
	if (!ft.env_read) {
		const char *env = getenv("ZK_BACKEND");
		ft.env_epoll = env && strcmp(env, "epoll") == 0;
		ft.env_read = true;
	}
	if (ft.mode == ZK_FS_AUTO && ft.env_epoll)
		return NULL;
	if (ring_create() < 0) {
		ft.ring_failed = true;
		return NULL;
	}
	return ft.ring;
}

int zk_fs_thread_mode(int mode)
{
	if (zk__fs_where() != ZK__FS_FOREIGN)
		return -EPERM;
	switch (mode) {
	case ZK_FS_SYSCALL:
		ft.mode = mode;
		return ZK_FS_SYSCALL;
	case ZK_FS_RING:
		if (!ft.ring) {
			int r = ring_create();
			if (r < 0)
				return r;
		}
		ft.mode = mode;
		return ZK_FS_RING;
	case ZK_FS_AUTO:
		ft.mode = mode;
		ft.ring_failed = false;
		return zk__fs_thread_ring() ? ZK_FS_RING : ZK_FS_SYSCALL;
	default:
		return -EINVAL;
	}
}

void zk_fs_thread_release(void)
{
	if (zk__fs_where() != ZK__FS_FOREIGN || !ft.ring)
		return;
	pthread_setspecific(ring_key, NULL);
	ring_free(ft.ring);
	ft.ring = NULL;
	ft.registered = false;
}

static void foreign_complete(struct zk__op *op)
{
	*(bool *)op->ctx = true;
}

/* One op through the thread's ring, waiting for it. */
static int32_t ring_once(struct zk__backend *b, struct zk__op *op)
{
	bool done = false;
	op->complete = foreign_complete;
	op->ctx = &done;
	op->timeout_ns = 0;
	zk__backend_io_uring.submit(b, op);
	while (!done)
		zk__backend_io_uring.wait(b, -1);
	return op->res;
}

/* Waits until op's fd is ready for what op wants (after -EAGAIN). */
static void wait_ready(struct zk__backend *b, const struct zk__op *op, unsigned events)
{
	struct zk__op p = {.opcode = ZK__OP_POLL, .fd = op->fd, .flags = events, .off = -1};
	if (b)
		ring_once(b, &p);
	else
		zk__op_syscall(&p);
}

/* A read at an offset whose pages are all in the page cache, served by
 * preadv2(RWF_NOWAIT): one syscall, as cheap as pread, where the ring costs
 * an SQE, an io_uring_enter and a CQE for the same copy (io_uring itself
 * serves such a read inline). Anything not fully cached gets EAGAIN or a
 * short count and goes to the ring. On an O_DIRECT fd RWF_NOWAIT only
 * avoids lock and writeback waits: the device read happens here and this
 * (foreign) thread waits for it, exactly as pread would. True: *res is the
 * result. */
static bool try_cached_read(const struct zk__op *op, int32_t *res)
{
	if ((op->opcode != ZK__OP_READ && op->opcode != ZK__OP_READV) || op->off < 0)
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
	if (r < 0 && errno != EAGAIN && errno != EOPNOTSUPP && errno != EINTR) {
		*res = -errno; /* EBADF, EISDIR, EINVAL, ...: the ring would say the same */
		return true;
	}
	if (r < 0 || (r > 0 && (size_t)r < want))
		return false; /* not (all) cached: a short count may not be EOF */
	*res = (int32_t)r;
	return true;
}

/* Ops io_uring always hands to its io-wq kernel threads (they may block
 * and have no non-blocking attempt): through the ring they cost a thread
 * wake-up and two context switches more than the syscall, on a thread that
 * blocks either way. Measured: SQLite commits (fdatasync) through the ring
 * ran at 0.67x the unix VFS on a loaded 2-core machine. */
static bool punted(const struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_FSYNC:
	case ZK__OP_SYNC_FILE_RANGE:
	case ZK__OP_FALLOCATE:
	case ZK__OP_FTRUNCATE:
	case ZK__OP_STATX:
	case ZK__OP_RENAMEAT:
	case ZK__OP_UNLINKAT:
	case ZK__OP_MKDIRAT:
		return true;
	default:
		return false;
	}
}

int zk__fs_foreign_run(struct zk__op *op)
{
	for (;;) {
		/* The kernel always hands IORING_OP_STATX to an io-wq thread (a
		 * wake-up and two context switches, ~10x the syscall); on a
		 * thread that may block anyway the syscall is the better path. */
		struct zk__backend *b = punted(op) && ft.mode == ZK_FS_AUTO ? NULL
									    : zk__fs_thread_ring();
		int32_t r;
		/* (Not with registrations: their point is the ring's path.) */
		if (b && ft.mode == ZK_FS_AUTO && !ft.registered && try_cached_read(op, &r))
			return r;
		r = b ? ring_once(b, op) : zk__op_syscall(op);
		if (r == -EOPNOTSUPP && op->opcode == ZK__OP_FTRUNCATE && b)
			r = zk__op_syscall(op); /* kernel before 6.9: no ring op */
		if (r == -EINTR && op->opcode != ZK__OP_CLOSE)
			continue; /* (a close is never retried: the fd is gone) */
		if (r == -EAGAIN) {
			unsigned ev = zk__fs_again_events(op);
			if (ev)
				wait_ready(b, op, ev);
			continue;
		}
		return r;
	}
}

/* ---- registered buffers and files ---------------------------------------------- */

/* In a task: the set goes to every worker ring of the runtime (see fs.h).
 * One immutable snapshot, shared: each ring holds a reference until it has
 * applied it. The calling worker's ring applies it now (its result is the
 * call's); the others before they prepare their next op. */
static int task_register_buffers(const struct iovec *iov, unsigned n)
{
	struct zk__worker *w = zk__worker_here();
	zk_runtime_t *rt = w->rt;
	if (!rt->backend->register_buffers_later)
		return -EOPNOTSUPP;
	if (n > UINT16_MAX)
		return -EINVAL;
	struct zk__reg_snap *snap = malloc(sizeof(*snap) + (size_t)n * sizeof(struct iovec));
	if (!snap)
		return -ENOMEM;
	atomic_init(&snap->refs, rt->nworkers);
	snap->n = n;
	if (n)
		memcpy(snap->iov, iov, (size_t)n * sizeof(struct iovec));
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct zk__worker *o = &rt->workers[i];
		if (o != w)
			rt->backend->register_buffers_later(o->backend, snap, false);
	}
	/* (The task cannot move before this: nothing here suspends it.) */
	return rt->backend->register_buffers_later(w->backend, snap, true);
}

int zk_fs_register_buffers(const struct iovec *iov, unsigned n)
{
	enum zk__fs_where where = zk__fs_where();
	if (where == ZK__FS_ON_WORKER)
		return -EPERM;
	if (n && !iov)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!iov[i].iov_base || iov[i].iov_len == 0)
			return -EINVAL;
	if (where == ZK__FS_IN_TASK)
		return task_register_buffers(iov, n);
	struct zk__backend *b = zk__fs_thread_ring();
	if (!b || !zk__backend_io_uring.register_buffers)
		return -EOPNOTSUPP;
	int r = zk__backend_io_uring.register_buffers(b, iov, n);
	if (r == 0 && n)
		ft.registered = true;
	return r;
}

int zk_fs_register_files(const int *fds, unsigned n)
{
	if (zk__fs_where() != ZK__FS_FOREIGN)
		return -EPERM;
	if (n && !fds)
		return -EINVAL;
	struct zk__backend *b = zk__fs_thread_ring();
	if (!b || !zk__backend_io_uring.register_files)
		return -EOPNOTSUPP;
	int r = zk__backend_io_uring.register_files(b, fds, n);
	if (r == 0 && n)
		ft.registered = true;
	return r;
}
