/* backends/iocp/io_win.c — the Windows build's lib/io.c: file and socket
 * calls that suspend the calling task, and the fs.h file calls that make
 * sense on Windows. lib/io.c and lib/fs_ops.c lean on POSIX (poll masks,
 * O_CLOEXEC, per-thread rings for foreign threads), so Windows gets this
 * file instead; the op record, the park and the wake are the same.
 *
 * Differences from Linux, all documented in fs.h/net.h terms:
 *   - File calls work on three kinds of thread, as on Linux: in a task
 *     (suspends it), on a foreign thread (blocks that thread only: the
 *     overlapped call is waited on with a per-thread event whose low bit
 *     keeps the packet off the worker ports; CreateFile/FlushFileBuffers
 *     run inline), on a worker thread outside a task (-EPERM). zk_fs_thread_
 *     release frees the thread's event. Socket calls need a task (-EPERM).
 *   - zk_open/zk_openat: flags O_RDONLY/O_WRONLY/O_RDWR/O_CREAT/O_EXCL/
 *     O_TRUNC are honoured, mode is ignored (Windows ACLs), others are
 *     ignored; the file is opened for overlapped I/O and shared for read,
 *     write and delete; CreateFile runs on the Windows thread pool. zk_openat
 *     takes only AT_FDCWD (-100) as dirfd, else -EOPNOTSUPP.
 *   - zk_read/zk_write need an offset >= 0 (-EINVAL for -1: overlapped
 *     handles have no file position). zk_readv/zk_writev run the vector as
 *     consecutive READ/WRITE ops and stop at the first short transfer.
 *   - zk_fdatasync is zk_fsync (FlushFileBuffers).
 *   - zk_poll returns -EOPNOTSUPP (IOCP has no readiness).
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "../../lib/internal.h"
#include "iocp_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/time.h"

#define WIN_AT_FDCWD (-100) /* Linux's AT_FDCWD, the only dirfd taken */

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
	op->complete = op_complete;
	op->ctx = t;
	op->timeout_ns = timeout_ns;
	struct zk__wait wt = {.cancel = cancellable ? op_cancel : NULL, .owner = w, .obj = op,
			      .kind = ZK__WAIT_IO};
	w->rt->backend->submit(w->backend, op);
	zk__task_park(t, &wt);
	return op->res;
}

/* Runs op to its result for the calling task, with the zk_timeout_next()
 * deadline. The IOCP backend never returns -EINTR or -EAGAIN (nothing is
 * non-blocking underneath), so there is nothing to retry. */
int zk__op_run(struct zk__op *op)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	uint64_t timeout = t->next_timeout_ns;
	t->next_timeout_ns = 0;
	if (atomic_load_explicit(&t->cancel, memory_order_acquire))
		return -ECANCELED;
	return op_submit_and_park(t, op, true, timeout);
}

/* Where a file call runs: the task's worker port, the calling foreign
 * thread, or nowhere (a worker thread outside a task). */
static int fs_run(struct zk__op *op)
{
	if (zk__task_here())
		return zk__op_run(op);
	if (zk__worker_here())
		return -EPERM;
	return zk__iocp_run_blocking(op);
}

/* An argument error: -EPERM where nothing may run, else err. */
static int arg_error(int err)
{
	return zk__worker_here() && !zk__task_here() ? -EPERM : err;
}

void zk_fs_thread_release(void)
{
	zk__iocp_thread_release();
}

static inline uint32_t cap_len(size_t len)
{
	return len > INT_MAX ? INT_MAX : (uint32_t)len;
}

int zk_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (!path)
		return arg_error(-EINVAL);
	if (dirfd != WIN_AT_FDCWD)
		return arg_error(-EOPNOTSUPP);
	struct zk__op op = {.opcode = ZK__OP_OPENAT, .fd = dirfd, .path = path,
			    .flags = (uint32_t)flags, .mode = mode};
	return fs_run(&op);
}

int zk_open(const char *path, int flags, mode_t mode)
{
	return zk_openat(WIN_AT_FDCWD, path, flags, mode);
}

int zk_close(int fd)
{
	struct zk_task *t = zk__task_here();
	struct zk__op op = {.opcode = ZK__OP_CLOSE, .fd = fd};
	if (!t)
		return fs_run(&op); /* a foreign thread, or -EPERM */
	/* Not cancellable and not refused when cancelled: a cancelled task
	 * must still be able to release its handles. */
	return op_submit_and_park(t, &op, false, 0);
}

ssize_t zk_read(int fd, void *buf, size_t len, int64_t off)
{
	struct zk__op op = {.opcode = ZK__OP_READ, .fd = fd, .buf = buf, .len = cap_len(len),
			    .off = off};
	return fs_run(&op);
}

ssize_t zk_write(int fd, const void *buf, size_t len, int64_t off)
{
	struct zk__op op = {.opcode = ZK__OP_WRITE, .fd = fd, .cbuf = buf, .len = cap_len(len),
			    .off = off};
	return fs_run(&op);
}

/* One op per piece; a short piece ends the call (as a short preadv). */
static ssize_t vec_op(bool write, int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	if (zk__worker_here() && !zk__task_here())
		return -EPERM;
	if (!iov || iovcnt <= 0 || iovcnt > 1024 || off < 0)
		return -EINVAL;
	ssize_t total = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len == 0)
			continue;
		ssize_t n = write ? zk_write(fd, iov[i].iov_base, iov[i].iov_len, off + total)
				  : zk_read(fd, iov[i].iov_base, iov[i].iov_len, off + total);
		if (n < 0)
			return total ? total : n;
		total += n;
		if ((size_t)n < iov[i].iov_len)
			break;
	}
	return total;
}

ssize_t zk_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	return vec_op(false, fd, iov, iovcnt, off);
}

ssize_t zk_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	return vec_op(true, fd, iov, iovcnt, off);
}

ssize_t zk_pread(int fd, void *buf, size_t len, off_t off)
{
	if (off < 0)
		return arg_error(-EINVAL);
	return zk_read(fd, buf, len, off);
}

ssize_t zk_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (off < 0)
		return arg_error(-EINVAL);
	return zk_write(fd, buf, len, off);
}

ssize_t zk_preadv(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	return zk_readv(fd, iov, iovcnt, off);
}

ssize_t zk_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	return zk_writev(fd, iov, iovcnt, off);
}

int zk_fsync(int fd)
{
	struct zk__op op = {.opcode = ZK__OP_FSYNC, .fd = fd};
	return fs_run(&op);
}

int zk_fdatasync(int fd)
{
	return zk_fsync(fd);
}

int zk_ftruncate(int fd, off_t length)
{
	if (length < 0)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_FTRUNCATE, .fd = fd, .len64 = (uint64_t)length};
	return fs_run(&op);
}

int zk_poll(int fd, unsigned mask)
{
	(void)fd, (void)mask;
	return zk__task_here() ? -EOPNOTSUPP : -EPERM;
}

ssize_t zk_read_exact(int fd, void *buf, size_t len, int64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = zk_read(fd, (char *)buf + done, len - done, off + (int64_t)done);
		if (n < 0)
			return n;
		if (n == 0)
			return (ssize_t)done;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t zk_write_all(int fd, const void *buf, size_t len, int64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = zk_write(fd, (const char *)buf + done, len - done, off + (int64_t)done);
		if (n < 0)
			return n;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int zk_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
	if ((addr == NULL) != (addrlen == NULL))
		return zk__task_here() ? -EINVAL : -EPERM;
	struct zk__op op = {.opcode = ZK__OP_ACCEPT, .fd = fd, .addr = addr, .addrlen_p = addrlen};
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

ssize_t zk_recv_exact(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = zk_recv(fd, (char *)buf + done, len - done, 0);
		if (n < 0)
			return n;
		if (n == 0)
			return (ssize_t)done;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t zk_send_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = zk_send(fd, (const char *)buf + done, len - done, 0);
		if (n < 0)
			return n;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int zk_timeout_next(uint64_t ns)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	t->next_timeout_ns = ns;
	return 0;
}
