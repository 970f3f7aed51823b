/* backends/backend.h — the submission interface every I/O backend implements.
 *
 * The core (lib/) sees only this header. A backend instance belongs to one
 * worker thread: every call except wake() is made from that thread.
 *
 * Operations are caller-owned records (struct zk__op): the core fills one in
 * (usually on the suspended task's own stack), hands it to submit(), and the
 * backend calls op->complete(op) on the owning worker thread, from inside
 * wait(), exactly once, after the kernel is done with every buffer the op
 * names. Nothing is allocated per operation. */
#ifndef ZOKIO_BACKEND_H
#define ZOKIO_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#ifdef _WIN32
#include "iocp/win_compat.h" /* sockaddr, socklen_t, iovec, msghdr */
#else
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#endif

enum zk__opcode {
	ZK__OP_NOP = 0,
	ZK__OP_READ,     /* fd, buf, len, off (off == -1: file position) */
	ZK__OP_WRITE,    /* fd, buf, len, off */
	ZK__OP_READV,    /* fd, iov, len = iovcnt, off */
	ZK__OP_WRITEV,   /* fd, iov, len = iovcnt, off */
	ZK__OP_FSYNC,    /* fd, flags: 0 or ZK__FSYNC_DATASYNC */
	ZK__OP_OPENAT,   /* fd = dirfd, path, flags, mode */
	ZK__OP_CLOSE,    /* fd */
	ZK__OP_ACCEPT,   /* fd, addr, addrlen_p, flags (accept4 flags);
	                  * multishot: io_uring keeps accepting (5.19+), one
	                  * completion per connection; epoll completes once
	                  * (more == false) and the caller re-arms */
	ZK__OP_CONNECT,  /* fd, addr, addrlen */
	ZK__OP_RECV,     /* fd, buf, len, flags (MSG_*) */
	ZK__OP_SEND,     /* fd, buf, len, flags (MSG_*) */
	ZK__OP_SHUTDOWN, /* fd, flags = how */
	ZK__OP_POLL,     /* fd, flags = poll mask */
	ZK__OP_SENDMSG,  /* fd, msg, flags (MSG_*; MSG_NOSIGNAL is added) */
	ZK__OP_RECVMSG,  /* fd, msg, flags (MSG_*); msg_namelen, msg_controllen
	                  * and msg_flags are updated as by recvmsg(2) */
	/* File and directory ops of the storage-engine layer (fs.h). */
	ZK__OP_STATX,    /* fd = dirfd, path, flags = AT_* flags, len = mask,
	                  * buf2 = struct statx out */
	ZK__OP_FALLOCATE, /* fd, flags = mode, off, len64 */
	ZK__OP_FTRUNCATE, /* fd, len64 = length. io_uring runs it as
	                  * IORING_OP_FTRUNCATE (6.9+); before that it completes
	                  * with -EOPNOTSUPP (lib/fs_ops.c then says so) */
	ZK__OP_SYNC_FILE_RANGE, /* fd, off, len (0: to end of file), flags =
	                  * SYNC_FILE_RANGE_* */
	ZK__OP_RENAMEAT, /* fd = olddirfd, path = old, path2 = new,
	                  * off = newdirfd, flags = RENAME_* */
	ZK__OP_UNLINKAT, /* fd = dirfd, path, flags = 0 or AT_REMOVEDIR */
	ZK__OP_MKDIRAT,  /* fd = dirfd, path, mode */
	ZK__OP_SPLICE,   /* splice(fd2, off2, fd, off, len, flags): fd = the
	                  * output, off = its offset (-1: none, a pipe or a
	                  * socket), fd2 = the input, off2 = its offset (-1:
	                  * none), flags = SPLICE_F_*. One side must be a pipe.
	                  * (lib/http/sendfile.c) */
	ZK__OP_RECV_PBUF, /* fd, flags (MSG_*), multishot: a recv into a buffer
	                  * the backend picks from its provided-buffer ring
	                  * when data arrives (buf/len unused); cflags name it
	                  * for pbuf_data/pbuf_put. Submitted only to a backend
	                  * whose pbuf_data is not NULL. -ENOBUFS: every buffer
	                  * is out (nothing was read; the multishot ends) */
	ZK__OP_SEND_ZC,  /* fd, cbuf, len, flags (MSG_*; MSG_NOSIGNAL added):
	                  * a zero-copy send (io_uring 6.0+). complete() runs
	                  * once, after the kernel's notification that it no
	                  * longer reads cbuf; res is the byte count. Without
	                  * SEND_ZC in the kernel: -EOPNOTSUPP. epoll: a SEND */
	ZK__OP_COUNT_,
};

#define ZK__FSYNC_DATASYNC 1u

struct zk__op;
typedef void (*zk__op_complete_fn)(struct zk__op *op);

struct zk__op {
	uint8_t opcode;            /* enum zk__opcode */
	int32_t fd;                /* target fd (dirfd for OPENAT) */
	uint32_t len;              /* byte count, or iovcnt for READV/WRITEV */
	uint32_t flags;            /* per-opcode flags, see enum zk__opcode */
	int64_t off;               /* file offset, -1 = current position */
	int32_t fd2;               /* SPLICE: the input fd */
	int64_t off2;              /* SPLICE: the input offset, -1 = none */
	union {
		void *buf;
		const void *cbuf;
		const struct iovec *iov;
		const char *path;
		struct sockaddr *addr;
		const struct sockaddr *caddr;
		struct msghdr *msg;   /* SENDMSG, RECVMSG */
	};
	union {
		socklen_t *addrlen_p; /* ACCEPT */
		socklen_t addrlen;    /* CONNECT */
		mode_t mode;          /* OPENAT, MKDIRAT */
		void *buf2;           /* STATX: the struct statx filled in */
		const char *path2;    /* RENAMEAT: the new path */
		uint64_t len64;       /* FALLOCATE, FTRUNCATE: 64-bit length */
	};
	uint64_t timeout_ns;       /* > 0: cancel the op after this long; it then
	                            * completes with -ETIMEDOUT */
	bool background;           /* long-lived internal op (signal read): a
	                            * non-blocking wait() need not poll for it */
	bool multishot;            /* (reserved for multishot ops) complete() may
	                            * run more than once; see `more` */
	bool more;                 /* set by the backend before complete(): more
	                            * completions of this op follow */
	bool fixed;                /* fd is a slot of the instance's direct
	                            * descriptor table (direct_files), not an
	                            * fd; ACCEPT: the connection goes into a free
	                            * slot of that table and res is the slot;
	                            * CLOSE: empties the slot. Only for ops
	                            * submitted to a backend whose direct_files
	                            * succeeded */
	uint32_t cflags;           /* set by the backend before complete(): the
	                            * completion's flags (e.g. the provided-buffer
	                            * id of a buffer-select recv) */
	int32_t res;               /* result, valid in complete() */
	zk__op_complete_fn complete; /* called once, on the owning worker */
	void *ctx;                 /* the submitter's context (e.g. its task) */
	/* Backend scratch: the backend may use these between submit() and
	 * complete(); the core never reads them. */
	struct zk__op *b_next;
	uint32_t b_pending;
	uint32_t b_flags;
	uint64_t b_scratch[2];
};

/* Fault kinds of the fault-injection backend (backends/faulty/). */
#define ZK__FAULT_EINTR 0x01u  /* -EINTR without running (core retries) */
#define ZK__FAULT_EAGAIN 0x02u /* -EAGAIN without running (core retries) */
#define ZK__FAULT_NOMEM 0x04u  /* -ENOMEM without running (user sees it) */
#define ZK__FAULT_EIO 0x08u    /* -EIO without running (user sees it) */
#define ZK__FAULT_SHORT 0x10u  /* short read/write (user sees it) */
#define ZK__FAULT_DELAY 0x20u  /* completion delayed and reordered */
#define ZK__FAULT_SQFULL 0x40u /* submission deferred, as on a full SQ */
#define ZK__FAULT_CANCEL 0x80u /* cancel arrives late: races completion */
/* What the runtime must absorb without the user seeing a difference. */
#define ZK__FAULTS_TRANSPARENT                                                    \
	(ZK__FAULT_EINTR | ZK__FAULT_EAGAIN | ZK__FAULT_DELAY | ZK__FAULT_SQFULL | \
	 ZK__FAULT_CANCEL)
#define ZK__FAULTS_ALL (ZK__FAULTS_TRANSPARENT | ZK__FAULT_NOMEM | ZK__FAULT_EIO | ZK__FAULT_SHORT)

struct zk__backend_vtable;

struct zk__fault_config {
	const struct zk__backend_vtable *inner; /* the real backend wrapped */
	uint64_t seed;
	uint32_t rate_ppm; /* per-op fault probability, parts per million */
	uint32_t kinds;    /* ZK__FAULT_* bits */
};

/* Counters a backend updates when given them (config.stats not NULL): the
 * worker's metrics. Written only by the backend's own worker thread, with a
 * relaxed load and store (ZK__BSTAT), read by snapshots on other threads. */
struct zk__backend_stats {
	_Atomic uint64_t submitted;    /* ops given to submit() */
	_Atomic uint64_t enters;       /* io_uring_enter / epoll_wait calls */
	_Atomic uint64_t completed;    /* complete() calls */
	_Atomic uint64_t cq_overflows; /* reaps that found the CQ overflowed */
};
#define ZK__BSTAT(stats, field)                                                     \
	((stats) ? atomic_store_explicit(&(stats)->field,                           \
					 atomic_load_explicit(&(stats)->field,      \
							      memory_order_relaxed) + 1, \
					 memory_order_relaxed)                      \
		 : (void)0)

/* Process-wide gauges of the epoll backend's blocking pool (threads alive,
 * jobs queued); zeros when it never started. Any thread. */
void zk__backend_pool_gauges(unsigned *threads, unsigned *queued);

struct zk__backend_config {
	unsigned ring_entries; /* SQ entries (power of two) */
	unsigned worker_index; /* the owning worker's index */
	const struct zk__fault_config *fault; /* faulty backend only */
	struct zk__backend_stats *stats; /* counters to update, or NULL */
};

struct zk__backend; /* opaque: each backend defines it */

/* A set of buffers to register, shared by several backend instances (a
 * runtime's worker rings: register_buffers_later). refs counts the holders;
 * the last one to let go frees it with free(). Immutable once published. */
struct zk__reg_snap {
	_Atomic unsigned refs;
	unsigned n;
	struct iovec iov[];
};

struct zk__backend_vtable {
	const char *name;
	/* Creates a backend instance for the calling worker thread.
	 * Returns 0 or -errno (-ENOSYS/-EPERM: the mechanism is unavailable). */
	int (*init)(struct zk__backend **out, const struct zk__backend_config *cfg);
	/* Frees the instance. Operations still in flight are cancelled and
	 * drained first (their complete() runs). */
	void (*fini)(struct zk__backend *b);
	/* Queues op; it reaches the kernel at the next wait(). Never fails: an
	 * op that does not fit the submission queue waits in a FIFO and goes
	 * first at the next flush. Invalid arguments complete with -errno. */
	void (*submit)(struct zk__backend *b, struct zk__op *op);
	/* Asks the kernel to cancel op. op still completes exactly once: with
	 * -ECANCELED, or with its real result if it finished first. */
	void (*cancel)(struct zk__backend *b, struct zk__op *op);
	/* Submits everything queued, then waits up to timeout_ns for at least
	 * one completion (timeout_ns < 0: no limit; 0: do not block), and
	 * calls complete() for every completion reaped. A wake() ends the wait
	 * early. Returns the number of ops completed (>= 0). With timeout 0 and
	 * nothing queued and no foreground op in flight it makes no syscall. */
	int (*wait)(struct zk__backend *b, int64_t timeout_ns);
	/* Callable from any thread: makes the current or next wait() return. */
	void (*wake)(struct zk__backend *b);
	/* Ops submitted and not yet completed (for shutdown checks). */
	unsigned (*inflight)(const struct zk__backend *b);
	/* Provided buffers (optional: NULL when the backend has none, e.g.
	 * epoll, or a wrapper that does not forward them). pbuf_data: the
	 * buffer a RECV_PBUF completion's cflags name (NULL: none); called on
	 * the owning worker in complete(). pbuf_put: gives that buffer back;
	 * any thread, while the backend lives. */
	void *(*pbuf_data)(struct zk__backend *b, uint32_t cflags);
	void (*pbuf_put)(struct zk__backend *b, uint32_t cflags);
	/* Registered buffers and files (optional: NULL when the backend has
	 * none). Each call replaces the instance's set (n == 0 drops it).
	 * Afterwards a READ or WRITE whose [buf, buf + len) lies inside a
	 * registered buffer runs as READ_FIXED/WRITE_FIXED, and READ, WRITE,
	 * READV, WRITEV, FSYNC, SYNC_FILE_RANGE and FALLOCATE on a registered
	 * fd use the fixed file: the caller's ops do not change. Owning thread
	 * only, with no op in flight on the fds or buffers being replaced.
	 * Returns 0 or -errno (-ENOMEM, -EFAULT, -EBADF, -EINVAL, -EMFILE). */
	int (*register_buffers)(struct zk__backend *b, const struct iovec *iov, unsigned n);
	int (*register_files)(struct zk__backend *b, const int *fds, unsigned n);
	/* Optional (NULL: none). Any thread; takes over one reference of snap.
	 * The instance's registered buffers become snap's: owner == true (the
	 * caller is b's owning thread) applies it at once and returns
	 * register_buffers' result; otherwise it is queued (replacing a queued
	 * one not yet applied) and returns 0, and the owner applies it before
	 * it prepares its next op in submit(), submit_chain() or wait(), so
	 * nothing submitted after this call returns uses the old set. Ops
	 * already prepared are handed to the kernel first. */
	int (*register_buffers_later)(struct zk__backend *b, struct zk__reg_snap *snap, bool owner);
	/* Optional (NULL: the caller chains ops itself). Submits the n ops as
	 * one kernel-linked chain (io_uring IOSQE_IO_LINK): each starts only
	 * after the previous one succeeded (a read or write must move its whole
	 * length), and the rest of a broken chain completes with -ECANCELED,
	 * each op with its own complete(). Returns false, having submitted
	 * nothing, when the chain cannot go in as one unit now (SQ too full for
	 * it, ops already queued ahead, an op with timeout_ns or multishot, or
	 * one the backend would finish itself); the caller then submits the ops
	 * one by one. Owning thread only. */
	bool (*submit_chain)(struct zk__backend *b, struct zk__op *const *ops, unsigned n);
	/* Direct descriptors (optional: NULL when the backend has none, e.g.
	 * epoll, or a wrapper that does not forward them; io_uring 5.19+). A
	 * sparse table of files held by the instance (the kernel's ring), not
	 * by the process's fd table, so a process can keep more sockets than
	 * RLIMIT_NOFILE allows fds: each instance's table has RLIMIT_NOFILE
	 * (soft, at the first call) slots. direct_files sets the table up on
	 * the first call and returns its size, or -errno (-EBUSY: the instance
	 * has registered files (register_files); -EMFILE, -ENOMEM, -EINVAL).
	 * Ops then use slots with `fixed`. direct_release empties one slot at
	 * once, closing the file unless an op in flight still holds it (then
	 * at that op's end); 0 or -errno (-EBADF: no such slot). Owning thread
	 * only. */
	int (*direct_files)(struct zk__backend *b);
	int (*direct_release)(struct zk__backend *b, unsigned slot);
};

extern const struct zk__backend_vtable zk__backend_io_uring;

/* io_uring features the runtime treats as missing, as on an older kernel,
 * so that their fallbacks run (and are tested) on a new one: the
 * environment variable ZK_URING_DISABLE, a comma-separated list of
 * "defer_taskrun" (ring set up without SINGLE_ISSUER|DEFER_TASKRUN, as
 * before 6.1), "coop_taskrun" (nor COOP_TASKRUN, as before 5.19),
 * "multishot_accept" (5.19), "pbuf" (provided-buffer rings, 5.19),
 * "multishot_recv" (6.0), "send_zc" (6.0), "direct" (direct descriptors,
 * 5.19), or "all". Read once per process; unknown names are ignored. */
#define ZK__URING_NO_DEFER 0x01u
#define ZK__URING_NO_COOP 0x02u
#define ZK__URING_NO_MS_ACCEPT 0x04u
#define ZK__URING_NO_PBUF 0x08u
#define ZK__URING_NO_MS_RECV 0x10u
#define ZK__URING_NO_SEND_ZC 0x20u
#define ZK__URING_NO_DIRECT 0x40u
unsigned zk__uring_disabled(void);

/* Runs op as one plain blocking syscall on the calling thread, retrying
 * EINTR (except CLOSE), and returns its result or -errno (-EINVAL for an
 * opcode it does not run: the socket ops). For threads that may block: the
 * blocking pool and foreign threads without a ring (backends/op_syscall.c). */
int32_t zk__op_syscall(const struct zk__op *op);

/* The epoll backend (backends/epoll/): completions emulated on readiness,
 * regular-file I/O, fsync and openat on a blocking thread pool. Same
 * results as io_uring, except:
 *   - cancel() or an expired timeout_ns cannot stop an op a pool thread is
 *     already running (a blocking syscall on a regular file): it completes
 *     with its real result. A queued pool op, and every op waiting for
 *     readiness, completes with -ECANCELED / -ETIMEDOUT as on io_uring.
 *   - An op waiting on an fd that another thread closes meanwhile keeps
 *     waiting until cancelled or timed out, as on io_uring; but where
 *     io_uring's op holds the file and still completes if the file becomes
 *     ready, on epoll a close that drops the file's last reference also
 *     drops the readiness registration.
 *   - An fd closed with close(2) whose number is reused: the first op that
 *     waits on the new file is sure to see its readiness only once the
 *     worker verifies the registration (before it next sleeps, or within
 *     64 polls while busy). A zk_close() run on the same worker avoids
 *     even that delay.
 *   - CONNECT on a Unix socket whose listener's backlog is full returns
 *     -EAGAIN (io_uring waits).
 *   - A write to a pipe with no reader returns -EPIPE and raises no
 *     SIGPIPE; on sockets neither backend raises it.
 *   - Multishot ops complete once (more == false); the caller re-arms.
 *     RECVMSG with MSG_WAITALL returns what one recvmsg got (io_uring
 *     keeps filling a stream socket's buffers). SEND_ZC is a plain SEND.
 *     No provided buffers (pbuf_data is NULL): RECV_PBUF is never sent.
 *   - SPLICE runs inline (non-blocking) and on EAGAIN waits only for its
 *     output to become writable: its input must be a regular file or a
 *     pipe holding data (as zk_sendfile uses it). A regular-file input is
 *     read inline, so pages not cached make that call wait for the disk. */
extern const struct zk__backend_vtable zk__backend_epoll;

/* The fault-injection backend (backends/faulty/): wraps cfg->fault->inner
 * and injects the faults cfg->fault->kinds names (see faulty.c). Testing
 * only; selected with ZK_BACKEND=faulty. */
extern const struct zk__backend_vtable zk__backend_faulty;
/* The same, for an inner backend that has every optional entry (io_uring):
 * forwards them to it (see faulty.c). */
extern const struct zk__backend_vtable zk__backend_faulty_full;

#ifdef _WIN32
/* The IOCP backend (backends/iocp/iocp.c): one I/O completion port per
 * worker; the differences from io_uring are listed at the top of iocp.c. */
extern const struct zk__backend_vtable zk__backend_iocp;
#endif

#endif
