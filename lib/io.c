/* lib/io.c — file and socket calls that suspend the calling task.
 *
 * Each call fills a struct zk__op on the task's own stack, submits it to the
 * ring of the worker running the task, and parks the task until the backend
 * calls op_complete() on that worker. The op record needs no allocation and
 * lives exactly as long as the kernel needs it. The file calls go through
 * zk__fs_run (fs_ops.c), which also serves them on foreign threads. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "fs_internal.h"
#include "internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/time.h"

_Static_assert(ZK__FD_DIRECT == ZK_FD_DIRECT, "direct descriptor encoding");

int zk__direct_table(struct zk__worker *w)
{
	if (w->direct == 0) {
		const struct zk__backend_vtable *vt = w->rt->backend;
		w->direct = vt->direct_files ? vt->direct_files(w->backend) : -EOPNOTSUPP;
		if (w->direct == 0)
			w->direct = -EMFILE;
	}
	return w->direct;
}

static inline unsigned direct_owner(int fd)
{
	return ((unsigned)fd & ~(unsigned)ZK__FD_DIRECT) >> ZK__DIRECT_WORKER_SHIFT;
}

struct zk__worker *zk__direct_go(struct zk_task *t, int fd)
{
	struct zk__worker *w = zk__worker_here();
	if (fd < ZK__FD_DIRECT)
		return w;
	unsigned owner = direct_owner(fd);
	if (owner >= w->rt->nworkers)
		return NULL;
	if (owner != w->index) {
		/* The file lives in that worker's ring only: go there. A task
		 * pinned to it (zk_spawn_pinned with zk_fd_worker) never has
		 * to. */
		zk__task_move(t, owner);
		w = zk__worker_here();
	}
	return w;
}

int zk__op_direct_slow(struct zk__worker *w, struct zk__op *op)
{
	unsigned v = (unsigned)op->fd & ~(unsigned)ZK__FD_DIRECT;
	unsigned owner = v >> ZK__DIRECT_WORKER_SHIFT;
	unsigned slot = v & ZK__DIRECT_SLOT_MASK;
	if (owner != w->index)
		return owner < w->rt->nworkers ? -EXDEV : -EBADF;
	if (w->direct <= 0 || slot >= (unsigned)w->direct)
		return -EBADF;
	op->fd = (int32_t)slot;
	op->fixed = true;
	return 0;
}

int zk_fd_worker(int fd)
{
	if (fd < 0)
		return -EBADF;
	if (fd < ZK__FD_DIRECT)
		return -ENOENT;
	unsigned owner = direct_owner(fd);
	return owner < ZK__MAX_WORKERS ? (int)owner : -EBADF;
}

static void op_complete(struct zk__op *op)
{
	zk__task_wake(op->ctx);
}

/* Runs on the op's worker (the wait's owner). */
static void op_cancel(struct zk_task *t, struct zk__wait *wt)
{
	(void)t;
	wt->owner->rt->backend->cancel(wt->owner->backend, wt->obj);
}

static int op_submit_and_park(struct zk_task *t, struct zk__op *op, bool cancellable,
			      uint64_t timeout_ns)
{
	struct zk__worker *w = zk__worker_here();
	if (op->fd >= ZK__FD_DIRECT && !op->fixed) {
		w = zk__direct_go(t, op->fd);
		int dr = w ? zk__op_direct(w, op) : -EBADF;
		if (dr < 0)
			return dr;
	}
	op->complete = op_complete;
	op->ctx = t;
	op->timeout_ns = timeout_ns;
	struct zk__wait wt = {.cancel = cancellable ? op_cancel : NULL, .owner = w, .obj = op,
			      .kind = ZK__WAIT_IO};
	uint64_t obs_t0 = ZK__OBS_IO_BEGIN(w);
	w->rt->backend->submit(w->backend, op);
	zk__task_park(t, &wt);
	ZK__OBS_IO_END(op, obs_t0);
	return op->res;
}

/* The readiness an op that failed with -EAGAIN waits for before it is
 * retried, or 0 for ops that are simply retried. */
static unsigned again_mask(const struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_READV:
	case ZK__OP_RECV:
	case ZK__OP_RECVMSG:
	case ZK__OP_ACCEPT:
		return POLLIN;
	case ZK__OP_WRITE:
	case ZK__OP_WRITEV:
	case ZK__OP_SEND:
	case ZK__OP_SENDMSG:
	case ZK__OP_SEND_ZC:
		return POLLOUT;
	default:
		return 0;
	}
}

/* Retries without readiness to wait for before -EAGAIN reaches the user. */
#define MAX_BLIND_RETRIES 8

/* Runs op to its result. -EINTR and -EAGAIN never reach the caller: the
 * kernel (or the fault-injection backend) may return them for an op that
 * did nothing, so the op is submitted again, after waiting for readiness
 * on -EAGAIN (an fd the user made O_NONBLOCK makes io_uring return it).
 * Two exceptions: RECV/SEND with MSG_DONTWAIT asked for -EAGAIN, and an op
 * with no readiness to wait for gets it after MAX_BLIND_RETRIES tries. A
 * zk_timeout_next() deadline spans the retries. */
int zk__op_run(struct zk__op *op)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	uint64_t timeout = t->next_timeout_ns;
	t->next_timeout_ns = 0;
	uint64_t deadline = timeout ? zk_now_ns() + timeout : 0;
	unsigned blind = 0;
	/* A direct descriptor is resolved to its ring's slot at each submit:
	 * the task may run on another worker by the retry. */
	const int fd = op->fd;
	for (;;) {
		op->fd = fd;
		op->fixed = false;
		if (atomic_load_explicit(&t->cancel, memory_order_acquire))
			return -ECANCELED;
		if (deadline) {
			uint64_t now = zk_now_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			timeout = deadline - now;
		}
		int r = op_submit_and_park(t, op, true, timeout);
		if (r != -EINTR && r != -EAGAIN)
			return r;
		if (r == -EINTR)
			continue;
		if ((op->opcode == ZK__OP_RECV || op->opcode == ZK__OP_SEND ||
		     op->opcode == ZK__OP_RECVMSG || op->opcode == ZK__OP_SENDMSG ||
		     op->opcode == ZK__OP_SEND_ZC) &&
		    (op->flags & MSG_DONTWAIT))
			return r;
		unsigned mask = again_mask(op);
		if (!mask) {
			if (++blind > MAX_BLIND_RETRIES)
				return r;
			continue;
		}
		struct zk__op p = {.opcode = ZK__OP_POLL, .fd = fd, .flags = mask};
		if (deadline) {
			uint64_t now = zk_now_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			timeout = deadline - now;
		}
		int pr = op_submit_and_park(t, &p, true, timeout);
		if (pr == -ECANCELED || pr == -ETIMEDOUT)
			return pr;
		/* Any other poll error (a file epoll cannot watch) or
		 * readiness: the retry tells the truth. */
		if (pr < 0 && pr != -EINTR && pr != -EAGAIN && ++blind > MAX_BLIND_RETRIES)
			return r;
	}
}

static inline uint32_t cap_len(size_t len)
{
	return len > INT_MAX ? INT_MAX : (uint32_t)len;
}

int zk_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (!path)
		return zk__fs_where() == ZK__FS_ON_WORKER ? -EPERM : -EINVAL;
	struct zk__op op = {.opcode = ZK__OP_OPENAT, .fd = dirfd, .path = path,
			    .flags = (uint32_t)(flags | O_CLOEXEC), .mode = mode};
	return zk__fs_run(&op);
}

int zk_open(const char *path, int flags, mode_t mode)
{
	return zk_openat(AT_FDCWD, path, flags, mode);
}

int zk_close(int fd)
{
	struct zk_task *t = zk__task_here();
	struct zk__op op = {.opcode = ZK__OP_CLOSE, .fd = fd};
	if (!t)
		return zk__fs_run(&op); /* a foreign thread, or -EPERM */
	/* Not cancellable and not refused when cancelled: a cancelled task
	 * must still be able to release its fds. */
	return op_submit_and_park(t, &op, false, 0);
}

ssize_t zk_read(int fd, void *buf, size_t len, int64_t off)
{
	struct zk__op op = {.opcode = ZK__OP_READ, .fd = fd, .buf = buf, .len = cap_len(len),
			    .off = off};
	return zk__fs_run(&op);
}

ssize_t zk_write(int fd, const void *buf, size_t len, int64_t off)
{
	struct zk__op op = {.opcode = ZK__OP_WRITE, .fd = fd, .cbuf = buf, .len = cap_len(len),
			    .off = off};
	return zk__fs_run(&op);
}

static ssize_t vec_op(uint8_t opcode, int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	if (zk__fs_where() == ZK__FS_ON_WORKER)
		return -EPERM;
	if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	struct zk__op op = {.opcode = opcode, .fd = fd, .iov = iov, .len = (uint32_t)iovcnt,
			    .off = off};
	return zk__fs_run(&op);
}

ssize_t zk_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	return vec_op(ZK__OP_READV, fd, iov, iovcnt, off);
}

ssize_t zk_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	return vec_op(ZK__OP_WRITEV, fd, iov, iovcnt, off);
}

int zk_fsync(int fd)
{
	struct zk__op op = {.opcode = ZK__OP_FSYNC, .fd = fd};
	return zk__fs_run(&op);
}

int zk_fdatasync(int fd)
{
	struct zk__op op = {.opcode = ZK__OP_FSYNC, .fd = fd, .flags = ZK__FSYNC_DATASYNC};
	return zk__fs_run(&op);
}

int zk_poll(int fd, unsigned mask)
{
	struct zk__op op = {.opcode = ZK__OP_POLL, .fd = fd, .flags = mask};
	return zk__op_run(&op);
}

int zk_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
	if ((addr == NULL) != (addrlen == NULL))
		return zk__task_here() ? -EINVAL : -EPERM;
	struct zk__op op = {.opcode = ZK__OP_ACCEPT, .fd = fd, .addr = addr, .addrlen_p = addrlen,
			    .flags = SOCK_CLOEXEC};
	return zk__op_run(&op);
}

int zk_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	if (!addr)
		return zk__task_here() ? -EINVAL : -EPERM;
	struct zk__op op = {.opcode = ZK__OP_CONNECT, .fd = fd, .caddr = addr, .addrlen = addrlen};
	return zk__op_run(&op);
}

ssize_t zk_recv(int fd, void *buf, size_t len, int flags)
{
	struct zk__op op = {.opcode = ZK__OP_RECV, .fd = fd, .buf = buf, .len = cap_len(len),
			    .flags = (uint32_t)flags};
	return zk__op_run(&op);
}

ssize_t zk_send(int fd, const void *buf, size_t len, int flags)
{
	struct zk__op op = {.opcode = ZK__OP_SEND, .fd = fd, .cbuf = buf, .len = cap_len(len),
			    .flags = (uint32_t)flags};
	return zk__op_run(&op);
}

int zk_shutdown(int fd, int how)
{
	struct zk__op op = {.opcode = ZK__OP_SHUTDOWN, .fd = fd, .flags = (uint32_t)how};
	return zk__op_run(&op);
}

int zk_timeout_next(uint64_t ns)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	t->next_timeout_ns = ns;
	return 0;
}
