/* lib/io.c — file and socket calls that suspend the calling task.
 *
 * Each call fills a struct zk__op on the task's own stack, submits it to the
 * ring of the worker running the task, and parks the task until the backend
 * calls op_complete() on that worker. The op record needs no allocation and
 * lives exactly as long as the kernel needs it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/time.h"

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

static int op_submit_and_park(struct zk_task *t, struct zk__op *op, bool cancellable)
{
	struct zk__worker *w = zk__worker_here();
	op->complete = op_complete;
	op->ctx = t;
	op->timeout_ns = t->next_timeout_ns;
	t->next_timeout_ns = 0;
	struct zk__wait wt = {.cancel = cancellable ? op_cancel : NULL, .owner = w, .obj = op};
	w->rt->backend->submit(w->backend, op);
	zk__task_park(t, &wt);
	return op->res;
}

int zk__op_run(struct zk__op *op)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
		t->next_timeout_ns = 0;
		return -ECANCELED;
	}
	return op_submit_and_park(t, op, true);
}

static inline uint32_t cap_len(size_t len)
{
	return len > INT_MAX ? INT_MAX : (uint32_t)len;
}

int zk_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (!path)
		return zk__task_here() ? -EINVAL : -EPERM;
	struct zk__op op = {.opcode = ZK__OP_OPENAT, .fd = dirfd, .path = path,
			    .flags = (uint32_t)(flags | O_CLOEXEC), .mode = mode};
	return zk__op_run(&op);
}

int zk_open(const char *path, int flags, mode_t mode)
{
	return zk_openat(AT_FDCWD, path, flags, mode);
}

int zk_close(int fd)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	struct zk__op op = {.opcode = ZK__OP_CLOSE, .fd = fd};
	/* Not cancellable and not refused when cancelled: a cancelled task
	 * must still be able to release its fds. */
	uint64_t saved = t->next_timeout_ns;
	t->next_timeout_ns = 0;
	int r = op_submit_and_park(t, &op, false);
	t->next_timeout_ns = saved;
	return r;
}

ssize_t zk_read(int fd, void *buf, size_t len, int64_t off)
{
	struct zk__op op = {.opcode = ZK__OP_READ, .fd = fd, .buf = buf, .len = cap_len(len),
			    .off = off};
	return zk__op_run(&op);
}

ssize_t zk_write(int fd, const void *buf, size_t len, int64_t off)
{
	struct zk__op op = {.opcode = ZK__OP_WRITE, .fd = fd, .cbuf = buf, .len = cap_len(len),
			    .off = off};
	return zk__op_run(&op);
}

static ssize_t vec_op(uint8_t opcode, int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
	if (!zk__task_here())
		return -EPERM;
	if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	struct zk__op op = {.opcode = opcode, .fd = fd, .iov = iov, .len = (uint32_t)iovcnt,
			    .off = off};
	return zk__op_run(&op);
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
	return zk__op_run(&op);
}

int zk_fdatasync(int fd)
{
	struct zk__op op = {.opcode = ZK__OP_FSYNC, .fd = fd, .flags = ZK__FSYNC_DATASYNC};
	return zk__op_run(&op);
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
