/* backends/kqueue/op_bsd.c — zk__op_syscall (backend.h) for FreeBSD and
 * macOS: one op as a plain blocking syscall on the calling thread.
 *
 * Owns the mapping of Zokio's file opcodes onto these systems' calls. It
 * replaces backends/op_syscall.c there, which is written against Linux
 * (statx, fallocate, sync_file_range, renameat2, fdatasync). Used by the
 * blocking pool (pool.c) and, in a port of lib/, by foreign threads.
 *
 * Where a call has no equivalent the op fails with -EOPNOTSUPP rather than
 * doing something weaker in silence; where the equivalent is stronger
 * (SYNC_FILE_RANGE), the stronger call runs. See the list at the top of
 * kqueue.c for what each opcode becomes.
 *
 * Linux builds compile this file to nothing. */
#if defined(__FreeBSD__) || defined(__APPLE__)

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h> /* renameat */
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../backend.h"

/* fsync that also empties the drive's write cache, which is what fsync
 * means on Linux. macOS fsync stops at the drive (its man page says so);
 * F_FULLFSYNC goes to the media, but some filesystems (network, FAT) do
 * not support it, and plain fsync is then the most there is. */
#ifdef __APPLE__
static int full_fsync(int fd)
{
	if (fcntl(fd, F_FULLFSYNC) == 0)
		return 0;
	if (errno == EINTR)
		return -1;
	return fsync(fd);
}
#endif

/* fallocate mode 0: reserve [off, off + len) and extend the file size to
 * cover it. Other modes (KEEP_SIZE, PUNCH_HOLE...) have no portable
 * equivalent here. Returns 0 or -1 with errno set. */
static int do_fallocate(int fd, unsigned mode, int64_t off, uint64_t len)
{
	if (mode != 0) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if (off < 0 || len > (uint64_t)INT64_MAX - (uint64_t)off) {
		errno = EINVAL;
		return -1;
	}
	off_t end = (off_t)((uint64_t)off + len);
#ifdef __FreeBSD__
	/* posix_fallocate returns the error number instead of setting errno. */
	int e = posix_fallocate(fd, (off_t)off, (off_t)len);
	if (e != 0) {
		errno = e;
		return -1;
	}
	(void)end;
	return 0;
#else
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -1;
	if (end <= st.st_size)
		return 0; /* inside the file: its blocks exist (or are sparse) */
	/* F_PEOFPOSMODE counts from the physical end of file, which is at or
	 * past st_size: at worst this reserves a little more than asked. */
	fstore_t fs = {
		.fst_flags = F_ALLOCATECONTIG | F_ALLOCATEALL,
		.fst_posmode = F_PEOFPOSMODE,
		.fst_offset = 0,
		.fst_length = end - st.st_size,
	};
	if (fcntl(fd, F_PREALLOCATE, &fs) != 0) {
		fs.fst_flags = F_ALLOCATEALL; /* no contiguous run: any blocks */
		if (fcntl(fd, F_PREALLOCATE, &fs) != 0)
			return -1;
	}
	return ftruncate(fd, end);
#endif
}

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
#ifdef __FreeBSD__
			r = (op->flags & ZK__FSYNC_DATASYNC) ? fdatasync(op->fd) : fsync(op->fd);
#else
			/* macOS declares no fdatasync; the full flush covers it. */
			r = full_fsync(op->fd);
#endif
			break;
		case ZK__OP_OPENAT:
			r = openat(op->fd, op->path, (int)op->flags, op->mode);
			break;
		case ZK__OP_CLOSE:
			/* Never retried: after EINTR both systems have released
			 * the descriptor, and a retry could close a reused one. */
			return close(op->fd) == 0 ? 0 : -errno;
		case ZK__OP_POLL: {
			struct pollfd p = {.fd = op->fd, .events = (short)op->flags};
			r = poll(&p, 1, -1);
			if (r > 0)
				r = p.revents;
			break;
		}
		case ZK__OP_STATX:
			/* struct statx is Linux's; no equivalent is filled in. */
			return -EOPNOTSUPP;
		case ZK__OP_FALLOCATE:
			r = do_fallocate(op->fd, op->flags, op->off, op->len64);
			break;
		case ZK__OP_FTRUNCATE:
			r = ftruncate(op->fd, (off_t)op->len64);
			break;
		case ZK__OP_SYNC_FILE_RANGE:
			/* No ranged writeback call: syncing the whole file's data
			 * is a superset of what any SYNC_FILE_RANGE_* mix asks
			 * (and, like it, does not flush the drive's cache). */
#ifdef __FreeBSD__
			r = fdatasync(op->fd);
#else
			r = fsync(op->fd);
#endif
			break;
		case ZK__OP_RENAMEAT:
			/* RENAME_NOREPLACE / RENAME_EXCHANGE: no renameat2 here. */
			if (op->flags != 0)
				return -EOPNOTSUPP;
			r = renameat(op->fd, op->path, (int)op->off, op->path2);
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

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int zk__kqueue_op_unused;
#endif
