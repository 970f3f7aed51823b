/* backends/op_syscall.c — one op as a plain blocking syscall on the calling
 * thread.
 *
 * Shared by what must run an op without a ring: the epoll backend's
 * blocking pool (regular files, fsync, openat, ...) and a foreign thread of
 * the storage layer when io_uring is unavailable (lib/fs_foreign.c). The
 * op's fields mean what backend.h says for each opcode. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend.h"

int32_t zk__op_syscall(const struct zk__op *op)
{
	ssize_t r;
	/* EINTR: retried (a stopped and continued process interrupts a
	 * blocking syscall even with signals blocked). */
	for (;;) {
		switch (op->opcode) {
		case ZK__OP_NOP:
			return 0;
		case ZK__OP_READ:
			r = op->off == -1 ? read(op->fd, op->buf, op->len)
					  : pread(op->fd, op->buf, op->len, (off_t)op->off);
			break;
		case ZK__OP_WRITE:
			r = op->off == -1 ? write(op->fd, op->cbuf, op->len)
					  : pwrite(op->fd, op->cbuf, op->len, (off_t)op->off);
			break;
		case ZK__OP_READV:
			r = op->off == -1 ? readv(op->fd, op->iov, (int)op->len)
					  : preadv(op->fd, op->iov, (int)op->len, (off_t)op->off);
			break;
		case ZK__OP_WRITEV:
			r = op->off == -1 ? writev(op->fd, op->iov, (int)op->len)
					  : pwritev(op->fd, op->iov, (int)op->len, (off_t)op->off);
			break;
		case ZK__OP_FSYNC:
			r = (op->flags & ZK__FSYNC_DATASYNC) ? fdatasync(op->fd) : fsync(op->fd);
			break;
		case ZK__OP_OPENAT:
			r = openat(op->fd, op->path, (int)op->flags, op->mode);
			break;
		case ZK__OP_CLOSE:
			/* Never retried: on Linux the fd is gone even on EINTR. */
			return close(op->fd) == 0 ? 0 : -errno;
		case ZK__OP_POLL: {
			struct pollfd p = {.fd = op->fd, .events = (short)op->flags};
			r = poll(&p, 1, -1);
			if (r > 0)
				r = p.revents;
			break;
		}
		case ZK__OP_STATX:
			r = statx(op->fd, op->path, (int)op->flags, op->len, op->buf2);
			break;
		case ZK__OP_FALLOCATE:
			r = fallocate(op->fd, (int)op->flags, (off_t)op->off, (off_t)op->len64);
			break;
		case ZK__OP_FTRUNCATE:
			r = ftruncate(op->fd, (off_t)op->len64);
			break;
		case ZK__OP_SYNC_FILE_RANGE:
			r = sync_file_range(op->fd, (off_t)op->off, (off_t)op->len, op->flags);
			break;
		case ZK__OP_RENAMEAT:
			r = renameat2(op->fd, op->path, (int)op->off, op->path2, op->flags);
			break;
		case ZK__OP_UNLINKAT:
			r = unlinkat(op->fd, op->path, (int)op->flags);
			break;
		case ZK__OP_MKDIRAT:
			r = mkdirat(op->fd, op->path, op->mode);
			break;
		default:
			return -EINVAL;
		}
		if (r >= 0)
			return (int32_t)r;
		if (errno != EINTR)
			return -errno;
	}
}
