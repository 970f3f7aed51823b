/* zokio/fs.h — file I/O that suspends the calling task.
 *
 * Each call is submitted to the ring of the worker running the task and the
 * task is suspended until the kernel completes it; the worker runs other
 * tasks meanwhile. Submissions are batched: one io_uring_enter per worker
 * loop iteration, not one per call.
 *
 * Results are those of the matching POSIX call, with a negative errno instead
 * of -1/errno. Every call also returns
 *   -EPERM      when called outside a runtime task (nothing is done),
 *   -ECANCELED  when the calling task was cancelled (before or during the
 *               call; an operation the kernel already completed keeps its
 *               result),
 *   -ETIMEDOUT  when a timeout armed with zk_timeout_next() expired first.
 * Short reads and writes are returned as they are, like pread/pwrite. */
#ifndef ZOKIO_FS_H
#define ZOKIO_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* openat(dirfd, path, flags, mode). Returns the new fd, or -errno
 * (-ENOENT, -EACCES, -EINVAL for a NULL path, ...). */
int zk_openat(int dirfd, const char *path, int flags, mode_t mode);

/* zk_openat(AT_FDCWD, path, flags, mode). */
int zk_open(const char *path, int flags, mode_t mode);

/* close(fd). Not cancellable: closes even in a cancelled task.
 * Returns 0 or -EBADF. */
int zk_close(int fd);

/* pread(fd, buf, len, off); off == -1 reads at the file position (for pipes
 * and sockets too). Returns bytes read (0 at EOF) or -errno
 * (-EBADF, -EFAULT, -EINVAL, -EISDIR, ...). len is capped at 2^31-1. */
ssize_t zk_read(int fd, void *buf, size_t len, int64_t off);

/* pwrite(fd, buf, len, off); off == -1 writes at the file position.
 * Returns bytes written or -errno (-EBADF, -ENOSPC, -EPIPE, ...). */
ssize_t zk_write(int fd, const void *buf, size_t len, int64_t off);

/* preadv / pwritev. iovcnt must be 1..IOV_MAX (else -EINVAL). The iovec
 * array must stay valid until the call returns (it does: the call suspends). */
ssize_t zk_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off);
ssize_t zk_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off);

/* fsync(fd) / fdatasync(fd). Returns 0 or -errno (-EBADF, -EINVAL, -EIO). */
int zk_fsync(int fd);
int zk_fdatasync(int fd);

/* Waits until fd is ready for any of the poll(2) events in mask (POLLIN,
 * POLLOUT, ...). Returns the ready events (> 0) or -errno. */
int zk_poll(int fd, unsigned mask);

#ifdef __cplusplus
}
#endif
#endif
