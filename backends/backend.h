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

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

enum zk__opcode {
	ZK__OP_NOP = 0,
	ZK__OP_READ,     /* fd, buf, len, off (off == -1: file position) */
	ZK__OP_WRITE,    /* fd, buf, len, off */
	ZK__OP_READV,    /* fd, iov, len = iovcnt, off */
	ZK__OP_WRITEV,   /* fd, iov, len = iovcnt, off */
	ZK__OP_FSYNC,    /* fd, flags: 0 or ZK__FSYNC_DATASYNC */
	ZK__OP_OPENAT,   /* fd = dirfd, path, flags, mode */
	ZK__OP_CLOSE,    /* fd */
	ZK__OP_ACCEPT,   /* fd, addr, addrlen_p, flags (accept4 flags) */
	ZK__OP_CONNECT,  /* fd, addr, addrlen */
	ZK__OP_RECV,     /* fd, buf, len, flags (MSG_*) */
	ZK__OP_SEND,     /* fd, buf, len, flags (MSG_*) */
	ZK__OP_SHUTDOWN, /* fd, flags = how */
	ZK__OP_POLL,     /* fd, flags = poll mask */
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
	union {
		void *buf;
		const void *cbuf;
		const struct iovec *iov;
		const char *path;
		struct sockaddr *addr;
		const struct sockaddr *caddr;
	};
	union {
		socklen_t *addrlen_p; /* ACCEPT */
		socklen_t addrlen;    /* CONNECT */
		mode_t mode;          /* OPENAT */
	};
	uint64_t timeout_ns;       /* > 0: cancel the op after this long; it then
	                            * completes with -ETIMEDOUT */
	bool background;           /* long-lived internal op (signal read): a
	                            * non-blocking wait() need not poll for it */
	bool multishot;            /* (reserved for multishot ops) complete() may
	                            * run more than once; see `more` */
	bool more;                 /* set by the backend before complete(): more
	                            * completions of this op follow */
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

struct zk__backend_config {
	unsigned ring_entries; /* SQ entries (power of two) */
	unsigned worker_index; /* the owning worker's index */
	const struct zk__fault_config *fault; /* faulty backend only */
};

struct zk__backend; /* opaque: each backend defines it */

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
};

extern const struct zk__backend_vtable zk__backend_io_uring;

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
 *     SIGPIPE; on sockets neither backend raises it. */
extern const struct zk__backend_vtable zk__backend_epoll;

/* The fault-injection backend (backends/faulty/): wraps cfg->fault->inner
 * and injects the faults cfg->fault->kinds names (see faulty.c). Testing
 * only; selected with ZK_BACKEND=faulty. */
extern const struct zk__backend_vtable zk__backend_faulty;

#endif
