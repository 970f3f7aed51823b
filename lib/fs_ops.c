/* lib/fs_ops.c — the storage-engine file calls of fs.h (pread/pwrite with
 * POSIX arguments, sync_file_range, fallocate, ftruncate, statx, renameat,
 * unlinkat, mkdirat) and zk__fs_run, the one place that decides where a
 * file call runs: the calling task's worker ring, the calling foreign
 * thread's ring or syscall (fs_foreign.c), or nowhere (-EPERM on a worker
 * thread outside a task). The older file calls in io.c go through it too. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>

#include "fs_internal.h"
#include "zokio/fs.h"

int zk__fs_run(struct zk__op *op)
{
	switch (zk__fs_where()) {
	case ZK__FS_IN_TASK:
		return zk__op_run(op);
	case ZK__FS_FOREIGN:
		return zk__fs_foreign_run(op);
	default:
		return -EPERM;
	}
}

/* An argument error: -EPERM where nothing may run, else err. */
static int arg_error(int err)
{
	return zk__fs_where() == ZK__FS_ON_WORKER ? -EPERM : err;
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
	if (off < 0)
		return arg_error(-EINVAL);
	return zk_readv(fd, iov, iovcnt, off);
}

ssize_t zk_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	if (off < 0)
		return arg_error(-EINVAL);
	return zk_writev(fd, iov, iovcnt, off);
}

/* io_uring's SYNC_FILE_RANGE carries a 32-bit length: a longer range is
 * synced in pieces of SFR_CHUNK (a multiple of every page size), one after
 * another, stopping at the first error. */
#define SFR_CHUNK ((off_t)1 << 30)

int zk_sync_file_range(int fd, off_t off, off_t nbytes, unsigned flags)
{
	if (off < 0 || nbytes < 0)
		return arg_error(-EINVAL);
	for (;;) {
		off_t piece = nbytes > SFR_CHUNK ? SFR_CHUNK : nbytes;
		struct zk__op op = {.opcode = ZK__OP_SYNC_FILE_RANGE, .fd = fd, .off = off,
				    .len = (uint32_t)piece, .flags = flags};
		int r = zk__fs_run(&op);
		if (r < 0 || nbytes <= SFR_CHUNK)
			return r;
		off += piece;
		nbytes -= piece;
	}
}

int zk_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (off < 0 || len <= 0)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_FALLOCATE, .fd = fd, .flags = (uint32_t)mode,
			    .off = off, .len64 = (uint64_t)len};
	return zk__fs_run(&op);
}

int zk_ftruncate(int fd, off_t length)
{
	if (length < 0)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_FTRUNCATE, .fd = fd, .len64 = (uint64_t)length};
	return zk__fs_run(&op);
}

int zk_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
	if (!path || !out)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_STATX, .fd = dirfd, .path = path,
			    .flags = (uint32_t)flags, .len = mask, .buf2 = out};
	return zk__fs_run(&op);
}

int zk_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
		 unsigned flags)
{
	if (!oldpath || !newpath)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_RENAMEAT, .fd = olddirfd, .path = oldpath,
			    .path2 = newpath, .off = newdirfd, .flags = flags};
	return zk__fs_run(&op);
}

int zk_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	return zk_renameat2(olddirfd, oldpath, newdirfd, newpath, 0);
}

int zk_unlinkat(int dirfd, const char *path, int flags)
{
	if (!path)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_UNLINKAT, .fd = dirfd, .path = path,
			    .flags = (uint32_t)flags};
	return zk__fs_run(&op);
}

int zk_mkdirat(int dirfd, const char *path, mode_t mode)
{
	if (!path)
		return arg_error(-EINVAL);
	struct zk__op op = {.opcode = ZK__OP_MKDIRAT, .fd = dirfd, .path = path, .mode = mode};
	return zk__fs_run(&op);
}
