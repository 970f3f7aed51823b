/* zokio/fs.h — file I/O that suspends the calling task.
 *
 * Each call is submitted to the ring of the worker running the task and the
 * task is suspended until the kernel completes it; the worker runs other
 * tasks meanwhile. Submissions are batched: one io_uring_enter per worker
 * loop iteration, not one per call; except positional reads and writes on
 * an fd whose I/O the ring has seen go to the device (O_DIRECT, uncached
 * pages) while others are in flight: those are handed to the kernel at
 * once, one enter each, as fio does (a disk kept evenly fed, measured
 * ~20% more IOPS at queue depth 32 on a virtio disk than bursts).
 *
 * Results are those of the matching POSIX call, with a negative errno instead
 * of -1/errno. Inside a task every call may also return
 *   -ECANCELED  when the calling task was cancelled (before or during the
 *               call; an operation the kernel already completed keeps its
 *               result),
 *   -ETIMEDOUT  when a timeout armed with zk_timeout_next() expired first.
 * Short reads and writes are returned as they are, like pread/pwrite.
 * -EINTR and -EAGAIN never reach the caller: an interrupted call is made
 * again, and one that would block on a non-blocking fd waits for readiness
 * (POLLIN/POLLOUT) and is made again.
 *
 * Calling from any thread. The file calls (every call below except zk_poll)
 * work on three kinds of thread:
 *   - in a runtime task: the task is suspended, as described above;
 *   - on a foreign thread (one that is not a runtime worker: a storage
 *     engine's own threads, main() before or without any runtime): the call
 *     goes to a small io_uring ring owned by the calling thread (created at
 *     its first call; 64 SQEs; freed at thread exit or by
 *     zk_fs_thread_release()) and blocks only that thread until the kernel
 *     completes it. No runtime is needed and no worker is involved. In the
 *     default ZK_FS_AUTO mode some single calls skip the ring: a read at an
 *     offset is first tried as preadv2(RWF_NOWAIT), which only succeeds
 *     when it need not wait (data in the page cache; on an O_DIRECT fd, the
 *     device read itself) and costs what pread costs; and the calls that
 *     io_uring always hands to a kernel worker thread (fsync, fdatasync,
 *     sync_file_range, fallocate, ftruncate, statx, renameat, unlinkat,
 *     mkdirat) are the plain syscall, which blocks the thread just the same
 *     without the hand-off. Batches always use the ring (zk_fs_batch).
 *     Where io_uring is unavailable (kernel, seccomp), when
 *     ZK_BACKEND=epoll is set in the environment, or after
 *     zk_fs_thread_mode(ZK_FS_SYSCALL), the plain syscall is made instead.
 *     -ECANCELED and -ETIMEDOUT do not occur.
 *   - on a worker thread outside any task (e.g. a completion callback):
 *     -EPERM, nothing is done (blocking there would stall the worker).
 * zk_poll is for tasks only and returns -EPERM anywhere else. */
#ifndef ZOKIO_FS_H
#define ZOKIO_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#ifdef _WIN32
/* Windows (mingw-w64 build, IOCP backend): an "fd" is a file HANDLE
 * carried in the int (Windows keeps handle values within 32 bits). The
 * Windows build has zk_open, zk_openat (dirfd AT_FDCWD, i.e. -100, only;
 * else -EOPNOTSUPP), zk_close, zk_read/zk_write, zk_readv/zk_writev,
 * zk_pread/pwrite/preadv/pwritev, zk_fsync, zk_fdatasync (= fsync),
 * zk_ftruncate, and zk_poll returning -EOPNOTSUPP (backends/iocp/io_win.c).
 * Differences: a file read or write needs an offset >= 0 (-EINVAL for -1:
 * overlapped handles have no position); open's mode is ignored; every call
 * outside a runtime task returns -EPERM. The other calls of this header
 * are Linux only. Windows has no sys/uio.h: struct iovec is defined here. */
#ifndef ZK_IOVEC_DEFINED
#define ZK_IOVEC_DEFINED 1
struct iovec {
	void *iov_base;
	size_t iov_len;
};
#endif
#else
#include <sys/uio.h>
#endif

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
 * POLLOUT, ...). Returns the ready events (> 0) or -errno. Tasks only:
 * -EPERM on any other thread. */
int zk_poll(int fd, unsigned mask);

/* ---- the storage-engine calls (POSIX names and arguments) ----------------- */

struct statx;

/* pread/pwrite/preadv/pwritev with POSIX arguments: off must be >= 0
 * (-EINVAL otherwise, as pread). Same results and errors as zk_read,
 * zk_write, zk_readv, zk_writev. */
ssize_t zk_pread(int fd, void *buf, size_t len, off_t off);
ssize_t zk_pwrite(int fd, const void *buf, size_t len, off_t off);
ssize_t zk_preadv(int fd, const struct iovec *iov, int iovcnt, off_t off);
ssize_t zk_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off);

/* sync_file_range(fd, off, nbytes, flags) (SYNC_FILE_RANGE_WAIT_BEFORE,
 * _WRITE, _WAIT_AFTER). nbytes 0 means up to the end of the file. Returns 0
 * or -errno (-EBADF, -EINVAL for negative off/nbytes or unknown flags,
 * -ESPIPE on a pipe, -EIO). */
int zk_sync_file_range(int fd, off_t off, off_t nbytes, unsigned flags);

/* fallocate(fd, mode, off, len): mode 0 allocates (the file grows unless
 * FALLOC_FL_KEEP_SIZE), FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE frees.
 * Returns 0 or -errno (-EBADF, -EINVAL for len <= 0 or off < 0, -ENOSPC,
 * -EOPNOTSUPP when the filesystem cannot, -ENODEV/-ESPIPE on a
 * non-regular file, -EFBIG). */
int zk_fallocate(int fd, int mode, off_t off, off_t len);

/* ftruncate(fd, length). Returns 0 or -errno (-EBADF, -EINVAL for a
 * negative length or an fd not open for writing, -EFBIG, -EPERM/-EROFS).
 * In a task on the io_uring backend it needs kernel 6.9
 * (IORING_OP_FTRUNCATE); on older kernels it returns -EOPNOTSUPP there
 * (foreign threads and the epoll backend always work). */
int zk_ftruncate(int fd, off_t length);

/* statx(dirfd, path, flags, mask, out): flags AT_EMPTY_PATH (with path ""
 * for dirfd itself), AT_SYMLINK_NOFOLLOW, AT_STATX_*; mask STATX_*. out must
 * point to a struct statx (<sys/stat.h>). Returns 0 or -errno (-ENOENT,
 * -EBADF, -ENOTDIR, -EFAULT/-EINVAL for a NULL path or out). */
int zk_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out);

/* renameat2(olddirfd, oldpath, newdirfd, newpath, flags); flags 0,
 * RENAME_NOREPLACE or RENAME_EXCHANGE. zk_renameat is flags 0. Returns 0 or
 * -errno (-ENOENT, -EEXIST with RENAME_NOREPLACE, -EISDIR, -ENOTDIR,
 * -ENOTEMPTY, -EXDEV, -EINVAL for a NULL path). */
int zk_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int zk_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
		 unsigned flags);

/* unlinkat(dirfd, path, flags); flags 0 or AT_REMOVEDIR. Returns 0 or
 * -errno (-ENOENT, -EISDIR for a directory without AT_REMOVEDIR,
 * -ENOTDIR, -ENOTEMPTY, -EINVAL for a NULL path). */
int zk_unlinkat(int dirfd, const char *path, int flags);

/* mkdirat(dirfd, path, mode). Returns 0 or -errno (-EEXIST, -ENOENT,
 * -ENOTDIR, -EINVAL for a NULL path). */
int zk_mkdirat(int dirfd, const char *path, mode_t mode);

/* ---- foreign threads ------------------------------------------------------ */

enum {
	ZK_FS_AUTO = 0,    /* the thread's ring if io_uring works, else syscalls */
	ZK_FS_RING = 1,    /* the thread's io_uring ring, for every call (no
	                    * RWF_NOWAIT read shortcut, no syscalls) */
	ZK_FS_SYSCALL = 2, /* plain syscalls */
};

/* Chooses how the calling foreign thread runs file calls (default
 * ZK_FS_AUTO). Returns the mode now in effect (ZK_FS_RING or
 * ZK_FS_SYSCALL), or -ENOSYS/-EPERM/-ENOMEM when ZK_FS_RING was asked and
 * the ring cannot be created (the mode is then unchanged), -EINVAL for an
 * unknown mode, -EPERM on a worker thread. */
int zk_fs_thread_mode(int mode);

/* Frees the calling thread's ring now (it is freed at thread exit anyway;
 * the next call creates a new one). No-op on a thread without one. */
void zk_fs_thread_release(void);

/* ---- registered buffers and files ------------------------------------------ */

/* Registers n buffers (io_uring_register_buffers), replacing any earlier
 * set; n == 0 drops it. Nothing else changes for the caller: a later
 * zk_read/zk_write/zk_pread/zk_pwrite (or batch READ/WRITE) whose buffer
 * lies inside a registered one runs as READ_FIXED/WRITE_FIXED (its pages
 * are not pinned and unpinned per I/O); any other buffer works as before.
 * The memory must stay allocated, at the same address, until it is
 * unregistered (or the ring released).
 *
 * Which ring takes the set:
 *   - on a foreign thread: the calling thread's own ring, for its calls;
 *   - in a task: EVERY worker ring of the runtime, since a task's ops go to
 *     the ring of whichever worker runs it and tasks move between workers.
 *     Each ring holds its own registration (the kernel pins the pages once
 *     per ring: RLIMIT_MEMLOCK counts each). The calling worker's ring
 *     registers before the call returns, and the result is its; every
 *     other ring applies the set before it prepares its next op (a shared
 *     snapshot handed over with one atomic exchange per ring, no lock and
 *     no cross-worker round trip), so no op submitted after the call
 *     returns, on any worker, uses the previous set: after
 *     zk_fs_register_buffers(NULL, 0) returns, the old memory may be freed.
 *     A ring that fails to apply it (-ENOMEM, RLIMIT_MEMLOCK) runs with no
 *     registered buffers: its I/O is correct, just not fixed. Concurrent
 *     registrations from several tasks race (each ring keeps whichever
 *     reached it last): make them from one task at a time. On the epoll
 *     backend (and the fault-injection one wrapping epoll; wrapping
 *     io_uring it forwards the registration) it returns -EOPNOTSUPP and
 *     calls work unregistered.
 * Returns 0 or -errno: -EOPNOTSUPP when there is no ring to register with
 * (foreign thread in syscall mode or without io_uring; a runtime on a
 * backend without registration), -EPERM on a worker outside a task,
 * -EINVAL (iov NULL with n > 0, n > 65535, a zero-length buffer),
 * -ENOMEM (RLIMIT_MEMLOCK), -EFAULT, -EBUSY. */
int zk_fs_register_buffers(const struct iovec *iov, unsigned n);

/* Foreign threads only (-EPERM in a task, see below).
 * Registers n open fds with the calling foreign thread's ring
 * (io_uring_register_files), replacing any earlier set; n == 0 drops it.
 * Later reads, writes (plain and vectored), fsync, fdatasync,
 * sync_file_range and fallocate on these fds from this thread use the
 * fixed file (no fd table lookup and reference count per I/O). zk_close()
 * of a registered fd from this thread empties its slot first. An fd closed
 * any other way must be unregistered before its number is reused (else the
 * ring keeps the old file open and calls on the new one reach the old).
 * Not on worker rings: a zk_close() runs on one worker's ring, and the
 * other rings would keep the closed file under a number the process may
 * reuse (each would need its slot emptied before the close returns).
 * Returns 0 or -errno: -EOPNOTSUPP (no ring), -EPERM (task or worker),
 * -EINVAL, -EBADF (a bad fd in the set), -EMFILE, -ENOMEM. */
int zk_fs_register_files(const int *fds, unsigned n);

/* ---- batches --------------------------------------------------------------- */

/* One request of a batch. Fill it with a zk_fs_prep_* helper (or by hand);
 * res holds the result after zk_fs_batch(). */
enum {
	ZK_FS_NOP = 0,
	ZK_FS_READ,            /* pread(fd, buf, len, off) */
	ZK_FS_WRITE,           /* pwrite(fd, cbuf, len, off) */
	ZK_FS_READV,           /* preadv(fd, iov, len = iovcnt, off) */
	ZK_FS_WRITEV,          /* pwritev(fd, iov, len = iovcnt, off) */
	ZK_FS_FSYNC,           /* fsync(fd) */
	ZK_FS_FDATASYNC,       /* fdatasync(fd) */
	ZK_FS_SYNC_FILE_RANGE, /* sync_file_range(fd, off, len, op_flags) */
	ZK_FS_FALLOCATE,       /* fallocate(fd, op_flags = mode, off, len) */
	ZK_FS_FTRUNCATE,       /* ftruncate(fd, len) */
};

/* req.flags: the next request of the array runs only if this one succeeds
 * (res >= 0, and for reads and writes the whole length): a chain of linked
 * requests ends at the first one without ZK_FS_LINK. A request whose chain
 * broke before it completes with -ECANCELED without running. */
#define ZK_FS_LINK 1u

struct zk_fs_req {
	int opcode;          /* ZK_FS_* */
	int fd;
	unsigned flags;      /* ZK_FS_LINK */
	unsigned op_flags;   /* fallocate mode, sync_file_range flags */
	union {
		void *buf;
		const void *cbuf;
		const struct iovec *iov;
	};
	size_t len;          /* bytes, or iovcnt for READV/WRITEV, or the
	                      * length for FALLOCATE/FTRUNCATE/SYNC_FILE_RANGE */
	int64_t off;         /* file offset; for reads and writes -1 means the
	                      * file position (pipes), as for zk_read */
	ssize_t res;         /* out: the result, as the single call returns it */
	void *user;          /* the caller's; untouched */
};

static inline void zk_fs_prep_read(struct zk_fs_req *r, int fd, void *buf, size_t len,
				   int64_t off)
{
	*r = (struct zk_fs_req){.opcode = ZK_FS_READ, .fd = fd, .buf = buf, .len = len, .off = off};
}
static inline void zk_fs_prep_write(struct zk_fs_req *r, int fd, const void *buf, size_t len,
				    int64_t off)
{
	*r = (struct zk_fs_req){.opcode = ZK_FS_WRITE, .fd = fd, .cbuf = buf, .len = len, .off = off};
}
static inline void zk_fs_prep_readv(struct zk_fs_req *r, int fd, const struct iovec *iov,
				    int iovcnt, int64_t off)
{
	*r = (struct zk_fs_req){.opcode = ZK_FS_READV, .fd = fd, .iov = iov,
				.len = (size_t)iovcnt, .off = off};
}
static inline void zk_fs_prep_writev(struct zk_fs_req *r, int fd, const struct iovec *iov,
				     int iovcnt, int64_t off)
{
	*r = (struct zk_fs_req){.opcode = ZK_FS_WRITEV, .fd = fd, .iov = iov,
				.len = (size_t)iovcnt, .off = off};
}
static inline void zk_fs_prep_fsync(struct zk_fs_req *r, int fd, int datasync)
{
	*r = (struct zk_fs_req){.opcode = datasync ? ZK_FS_FDATASYNC : ZK_FS_FSYNC, .fd = fd};
}

/* Called for each request as it completes, in completion order, on the
 * calling thread (in the calling task), with req->res set. */
typedef void (*zk_fs_done_fn)(struct zk_fs_req *req, void *ctx);

/* Most requests in one zk_fs_batch() call. */
#define ZK_FS_BATCH_MAX 4096u

/* Runs the n requests of reqs and returns when every one has completed.
 * Requests that are not linked to a previous one are all submitted at once
 * (one io_uring_enter for the batch), run concurrently and complete in any
 * order; a chain's requests run one after another. done (optional) is
 * called as each completes. Works in tasks and on foreign threads like the
 * single calls. On io_uring a chain of up to 32 requests goes to the
 * kernel as one IOSQE_IO_LINK chain when the SQ has room for it; otherwise
 * (epoll, a longer chain, a full SQ) the chain is emulated: each link is
 * submitted from the previous one's completion, on the ring's thread,
 * without a round trip through the task. Results are the same either
 * way. On foreign threads in ZK_FS_SYSCALL mode every request runs in
 * order.
 * Returns 0 when all requests ran (each res holds its own result, -errno
 * included), or -errno: -EINVAL (reqs NULL, n == 0 or n > ZK_FS_BATCH_MAX,
 * an unknown opcode, an off below -1 (below 0 for FALLOCATE and
 * SYNC_FILE_RANGE), a NULL iov or iovcnt outside 1..IOV_MAX: nothing
 * was run), -ENOMEM, -EPERM (on a worker thread outside a task),
 * -ECANCELED (the task was cancelled: requests still in flight were
 * cancelled and every res is set, -ECANCELED for those that did not run).
 * zk_timeout_next() does not apply to a batch (it is left for the next
 * single call). */
int zk_fs_batch(struct zk_fs_req *reqs, unsigned n, zk_fs_done_fn done, void *ctx);

/* ---- O_DIRECT --------------------------------------------------------------- */

/* Alignment that O_DIRECT I/O on fd needs: *mem_align for buffer addresses,
 * *io_align for offsets and lengths. Taken from statx STATX_DIOALIGN (Linux
 * 6.1+, where the filesystem reports it); otherwise the device's logical
 * block size for a block device, else 512/st_blksize-based defaults (4096).
 * Either pointer may be NULL. Returns 0, -EOPNOTSUPP when the filesystem
 * reports that it does not support O_DIRECT on this file, or -errno from
 * statx (-EBADF). A plain syscall on any thread (no suspension). */
int zk_direct_align(int fd, size_t *mem_align, size_t *io_align);

/* Allocates len bytes aligned to align (a power of two >= sizeof(void *);
 * 0 means 4096) for O_DIRECT buffers; len is rounded up to a multiple of
 * align. Returns NULL on failure (align not a power of two, no memory).
 * Free with zk_direct_free(). */
void *zk_direct_alloc(size_t len, size_t align);
void zk_direct_free(void *p);

/* Checks an O_DIRECT request against the alignment of fd (as found by
 * zk_direct_align): 0 if buf, len and off are aligned, -EINVAL if one is
 * not (the kernel would fail the I/O with the same -EINVAL, later and
 * without saying which), or the error of zk_direct_align. */
int zk_direct_check(int fd, const void *buf, size_t len, int64_t off);

#ifdef __cplusplus
}
#endif
#endif
