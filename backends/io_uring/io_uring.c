/* backends/io_uring/io_uring.c — the io_uring backend: one ring per worker.
 *
 * Owns the ring, the worker's wake eventfd, and three FIFOs:
 *   unqueued  ops that found the SQ full; they get SQEs first at the next
 *             flush, so nothing is dropped and nothing spins;
 *   cancels   cancel requests that found the SQ full;
 *   completed ops finished without the kernel (cancelled while unqueued);
 *             their complete() runs from wait(), never from submit/cancel,
 *             so callbacks never recurse into the caller.
 * A CQE's user_data is the op pointer with a tag in the low bits (ops are
 * 8-byte aligned): the op's own CQE, its linked timeout's CQE, or a CQE we
 * ignore (async-cancel results).
 *
 * Ring setup is probed once per ring: SINGLE_ISSUER|DEFER_TASKRUN (6.1+:
 * completions run only when the owning worker asks, so no IPI or task work
 * interrupts it), then COOP_TASKRUN (5.19+), then plain. Only the worker thread
 * that created the ring touches it. */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../backend.h"
#include "bufring.h"

#define TAG_OP 0u
#define TAG_TIMEOUT 1u
#define TAG_IGNORE 2u
#define TAG_MASK 7u

/* b_flags bits of an op while the backend owns it. */
#define OPF_LINKED 1u       /* has a linked timeout SQE */
#define OPF_TIMED_OUT 2u    /* the linked timeout fired (-ETIME) */
#define OPF_UNQUEUED 4u     /* waiting in the unqueued FIFO */
#define OPF_CANCEL_WAIT 8u  /* waiting in the cancels FIFO */

/* CQEs reaped per peek; bounds the stack array, not the work per wait. */
#define REAP_BATCH 64

/* IORING_OP_FTRUNCATE (kernel 6.9+), newer than liburing 2.3's header. */
#define URING_OP_FTRUNCATE 55
/* Whether the kernel has it: 0 unknown, 1 yes, 2 no. Probed by the first
 * ring (the answer is the kernel's, the same for every ring). */
static _Atomic int ftruncate_probe;

static void probe_ftruncate(struct io_uring *ring)
{
	if (atomic_load_explicit(&ftruncate_probe, memory_order_relaxed))
		return;
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	int ok = p && p->last_op >= URING_OP_FTRUNCATE &&
		 io_uring_opcode_supported(p, URING_OP_FTRUNCATE);
	if (p)
		io_uring_free_probe(p);
	atomic_store_explicit(&ftruncate_probe, ok ? 1 : 2, memory_order_relaxed);
}

/* ZK_URING_DISABLE (backend.h), parsed once: bit 31 set means parsed. */
static _Atomic unsigned uring_disabled;

unsigned zk__uring_disabled(void)
{
	unsigned v = atomic_load_explicit(&uring_disabled, memory_order_relaxed);
	if (v)
		return v & ~0x80000000u;
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{"defer_taskrun", ZK__URING_NO_DEFER},  {"coop_taskrun", ZK__URING_NO_COOP},
		{"multishot_accept", ZK__URING_NO_MS_ACCEPT}, {"pbuf", ZK__URING_NO_PBUF},
		{"multishot_recv", ZK__URING_NO_MS_RECV}, {"send_zc", ZK__URING_NO_SEND_ZC},
		{"direct", ZK__URING_NO_DIRECT},
	};
	const char *env = getenv("ZK_URING_DISABLE");
	v = 0;
	while (env && *env) {
		size_t len = strcspn(env, ",");
		if (len == 3 && strncmp(env, "all", 3) == 0)
			v = 0x7fu;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == len && strncmp(env, names[i].name, len) == 0)
				v |= names[i].bit;
		env += len + (env[len] == ',');
	}
	atomic_store_explicit(&uring_disabled, v | 0x80000000u, memory_order_relaxed);
	return v;
}

/* IORING_OP_SEND_ZC (6.0+): 0 unknown, 1 yes, 2 no; probed at first use. */
static _Atomic int send_zc_probe;

static bool send_zc_supported(struct io_uring *ring)
{
	if (zk__uring_disabled() & ZK__URING_NO_SEND_ZC)
		return false;
	int v = atomic_load_explicit(&send_zc_probe, memory_order_relaxed);
	if (!v) {
		struct io_uring_probe *p = io_uring_get_probe_ring(ring);
		v = p && p->last_op >= IORING_OP_SEND_ZC &&
			    io_uring_opcode_supported(p, IORING_OP_SEND_ZC)
			? 1
			: 2;
		if (p)
			io_uring_free_probe(p);
		atomic_store_explicit(&send_zc_probe, v, memory_order_relaxed);
	}
	return v == 1;
}

struct zk__backend {
	struct io_uring ring;
	int wake_fd;                /* eventfd written by wake() */
	uint64_t wake_buf;          /* target of the pending eventfd read */
	struct zk__op wake_op;      /* the internal read on wake_fd */
	bool closing;               /* fini(): stop re-arming wake_op */
	unsigned inflight;          /* ops submitted, not yet completed */
	unsigned background;        /* of which background ops */
	struct zk__op *unq_head, *unq_tail;
	struct zk__op *cancel_head, *cancel_tail;
	struct zk__op *done_head, *done_tail;
	struct zk__pbuf pbuf;       /* provided buffers (bufring.c), lazily */
	struct zk__backend_stats *stats; /* the worker's metrics, or NULL */
	uint64_t enters;            /* io_uring_enter calls made (dev_io) */
	uint8_t dev_async[64];      /* per fd slot: 0..3, how much positional
	                             * I/O on it completes after its submitting
	                             * enter (a device), not in it (page cache) */
	_Atomic(struct zk__reg_snap *) reg_pending; /* register_buffers_later */
	struct iovec *reg_bufs;     /* registered buffers (register_buffers) */
	unsigned nreg_bufs;
	int *reg_fds;               /* registered files: the fd in each slot */
	unsigned nreg_fds;
	unsigned ndirect;           /* slots of the direct descriptor table
	                             * (direct_files), 0: none yet */
};

/* Positional file I/O that goes to a device (O_DIRECT, pages not cached)
 * is submitted at once, in its own io_uring_enter, instead of waiting for
 * the worker's next wait(): measured on a virtio disk at queue depth 32,
 * reads handed over one per enter (as fio does by default) run ~20% more
 * IOPS than the same reads handed over 8-10 per enter at the end of a
 * scheduler pass (the device sees a steadier queue, not bursts). One more
 * syscall per I/O is nothing next to a device round trip. Page-cache I/O
 * completes inside its enter and keeps the batching, where it is what
 * pays. Alone in flight, an op waits for the wait() that follows anyway
 * (one enter, not two). Which kind an fd does is learned from its
 * completions: an op tagged with the enter count at prep that is reaped
 * after a later enter went to the device. A hint per fd slot (fd mod 64, a saturating
 * counter); a wrong guess costs a syscall or a batch, never a result. */
#define DEV_SLOTS_MASK 63
#define DEV_EAGER 2

static inline bool dev_io(const struct zk__op *op)
{
	return (op->opcode == ZK__OP_READ || op->opcode == ZK__OP_WRITE ||
		op->opcode == ZK__OP_READV || op->opcode == ZK__OP_WRITEV) &&
	       op->off >= 0 && !op->timeout_ns;
}

static void fifo_push(struct zk__op **head, struct zk__op **tail, struct zk__op *op)
{
	op->b_next = NULL;
	if (*tail)
		(*tail)->b_next = op;
	else
		*head = op;
	*tail = op;
}

static struct zk__op *fifo_pop(struct zk__op **head, struct zk__op **tail)
{
	struct zk__op *op = *head;
	if (op) {
		*head = op->b_next;
		if (!*head)
			*tail = NULL;
		op->b_next = NULL;
	}
	return op;
}

static bool fifo_remove(struct zk__op **head, struct zk__op **tail, struct zk__op *op)
{
	struct zk__op *prev = NULL;
	for (struct zk__op *it = *head; it; prev = it, it = it->b_next) {
		if (it != op)
			continue;
		if (prev)
			prev->b_next = it->b_next;
		else
			*head = it->b_next;
		if (*tail == it)
			*tail = prev;
		it->b_next = NULL;
		return true;
	}
	return false;
}

static void prep_sqe(struct io_uring_sqe *sqe, struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_READ:
		io_uring_prep_read(sqe, op->fd, op->buf, op->len, (uint64_t)op->off);
		break;
	case ZK__OP_WRITE:
		io_uring_prep_write(sqe, op->fd, op->cbuf, op->len, (uint64_t)op->off);
		break;
	case ZK__OP_READV:
		io_uring_prep_readv(sqe, op->fd, op->iov, op->len, (uint64_t)op->off);
		break;
	case ZK__OP_WRITEV:
		io_uring_prep_writev(sqe, op->fd, op->iov, op->len, (uint64_t)op->off);
		break;
	case ZK__OP_FSYNC:
		io_uring_prep_fsync(sqe, op->fd,
				    (op->flags & ZK__FSYNC_DATASYNC) ? IORING_FSYNC_DATASYNC : 0);
		break;
	case ZK__OP_OPENAT:
		io_uring_prep_openat(sqe, op->fd, op->path, (int)op->flags, op->mode);
		break;
	case ZK__OP_CLOSE:
		io_uring_prep_close(sqe, op->fd);
		break;
	case ZK__OP_ACCEPT:
		/* Multishot (5.19+): one SQE accepts until cancelled or an
		 * error; each connection is a CQE with IORING_CQE_F_MORE. */
		if (op->multishot)
			io_uring_prep_multishot_accept(sqe, op->fd, op->addr, op->addrlen_p,
						       (int)op->flags);
		else
			io_uring_prep_accept(sqe, op->fd, op->addr, op->addrlen_p, (int)op->flags);
		break;
	case ZK__OP_CONNECT:
		io_uring_prep_connect(sqe, op->fd, op->caddr, op->addrlen);
		break;
	case ZK__OP_RECV:
		io_uring_prep_recv(sqe, op->fd, op->buf, op->len, (int)op->flags);
		break;
	case ZK__OP_SEND:
		io_uring_prep_send(sqe, op->fd, op->cbuf, op->len, (int)(op->flags | MSG_NOSIGNAL));
		break;
	case ZK__OP_SHUTDOWN:
		io_uring_prep_shutdown(sqe, op->fd, (int)op->flags);
		break;
	case ZK__OP_POLL:
		io_uring_prep_poll_add(sqe, op->fd, op->flags);
		break;
	case ZK__OP_SPLICE:
		io_uring_prep_splice(sqe, op->fd2, op->off2, op->fd, op->off, op->len, op->flags);
		break;
	case ZK__OP_SENDMSG:
		io_uring_prep_sendmsg(sqe, op->fd, op->msg, op->flags | MSG_NOSIGNAL);
		break;
	case ZK__OP_RECVMSG:
		io_uring_prep_recvmsg(sqe, op->fd, op->msg, op->flags);
		break;
	case ZK__OP_SEND_ZC:
		io_uring_prep_send_zc(sqe, op->fd, op->cbuf, op->len, (int)(op->flags | MSG_NOSIGNAL),
				      0);
		break;
	case ZK__OP_RECV_PBUF:
		/* Buffer select (5.19+); multishot recv (6.0+). */
		io_uring_prep_recv(sqe, op->fd, NULL, 0, (int)op->flags);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = ZK__PBUF_GROUP;
		if (op->multishot)
			sqe->ioprio |= IORING_RECV_MULTISHOT;
		break;
	case ZK__OP_STATX:
		io_uring_prep_statx(sqe, op->fd, op->path, (int)op->flags, op->len, op->buf2);
		break;
	case ZK__OP_FALLOCATE:
		io_uring_prep_fallocate(sqe, op->fd, (int)op->flags, (off_t)op->off, (off_t)op->len64);
		break;
	case ZK__OP_FTRUNCATE:
		/* liburing 2.3 has no prep helper: the kernel reads the length
		 * from sqe->off and wants every other field zero. */
		io_uring_prep_rw(URING_OP_FTRUNCATE, sqe, op->fd, NULL, 0, op->len64);
		break;
	case ZK__OP_SYNC_FILE_RANGE:
		io_uring_prep_sync_file_range(sqe, op->fd, op->len, (uint64_t)op->off, (int)op->flags);
		break;
	case ZK__OP_RENAMEAT:
		io_uring_prep_renameat(sqe, op->fd, op->path, (int)op->off, op->path2, (int)op->flags);
		break;
	case ZK__OP_UNLINKAT:
		io_uring_prep_unlinkat(sqe, op->fd, op->path, (int)op->flags);
		break;
	case ZK__OP_MKDIRAT:
		io_uring_prep_mkdirat(sqe, op->fd, op->path, op->mode);
		break;
	default:
		io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | TAG_OP);
}

/* Registered buffers and files (register_buffers/register_files): the op
 * keeps its plain form; only its SQE changes. A linear scan: a storage
 * engine registers a handful of buffer arenas and files, and with nothing
 * registered this is two loads. */
static void apply_fixed(struct zk__backend *b, struct io_uring_sqe *sqe, const struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_WRITE:
		for (unsigned i = 0; i < b->nreg_bufs; i++) {
			uintptr_t lo = (uintptr_t)b->reg_bufs[i].iov_base;
			uintptr_t p = (uintptr_t)op->cbuf;
			if (p >= lo && p - lo <= b->reg_bufs[i].iov_len &&
			    op->len <= b->reg_bufs[i].iov_len - (p - lo)) {
				sqe->opcode = op->opcode == ZK__OP_READ ? IORING_OP_READ_FIXED
									: IORING_OP_WRITE_FIXED;
				sqe->buf_index = (uint16_t)i;
				break;
			}
		}
		break;
	case ZK__OP_READV:
	case ZK__OP_WRITEV:
	case ZK__OP_FSYNC:
	case ZK__OP_SYNC_FILE_RANGE:
	case ZK__OP_FALLOCATE:
		break;
	case ZK__OP_CLOSE:
		/* The ring's reference would keep the file open after the close,
		 * and the next file given this fd number would be mistaken for
		 * it: empty the slot first (synchronously, before the close). */
		for (unsigned i = 0; i < b->nreg_fds; i++) {
			if (b->reg_fds[i] == op->fd) {
				int none = -1;
				io_uring_register_files_update(&b->ring, i, &none, 1);
				b->reg_fds[i] = -1;
			}
		}
		return;
	default:
		return; /* no fixed file for these */
	}
	for (unsigned i = 0; i < b->nreg_fds; i++) {
		if (b->reg_fds[i] == op->fd) {
			sqe->fd = (int32_t)i;
			sqe->flags |= IOSQE_FIXED_FILE;
			break;
		}
	}
}

/* An op on a direct descriptor (op->fixed): op->fd is a slot of the
 * ring's table. An accept fills a free slot (the CQE's res names it), a
 * close empties one, every other op reads the file from its slot. */
static void apply_direct(struct io_uring_sqe *sqe, const struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_ACCEPT:
		/* A slot is no fd: close-on-exec means nothing, and the kernel
		 * refuses it (-EINVAL). */
		sqe->accept_flags &= ~(uint32_t)SOCK_CLOEXEC;
		__io_uring_set_target_fixed_file(sqe, IORING_FILE_INDEX_ALLOC - 1);
		break;
	case ZK__OP_CLOSE:
		sqe->fd = 0;
		__io_uring_set_target_fixed_file(sqe, (unsigned)op->fd);
		break;
	default:
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	}
}

/* Slots per ring at most: the kernel keeps a pointer per slot (512 KiB at
 * this size), and a ring rarely serves more connections than this. */
#define DIRECT_MAX 65536u

static int uring_direct_files(struct zk__backend *b)
{
	if (b->ndirect)
		return (int)b->ndirect;
	if (b->nreg_fds)
		return -EBUSY;
	if (zk__uring_disabled() & ZK__URING_NO_DIRECT)
		return -EINVAL; /* as before 5.19: no sparse tables */
	/* The kernel refuses a table larger than RLIMIT_NOFILE's soft limit;
	 * asking for no more keeps liburing from raising the limit for us. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	rlim_t n = rl.rlim_cur < DIRECT_MAX ? rl.rlim_cur : DIRECT_MAX;
	if (n == 0)
		return -EMFILE;
	int r = io_uring_register_files_sparse(&b->ring, (unsigned)n);
	if (r < 0)
		return r;
	b->ndirect = (unsigned)n;
	return (int)n;
}

static int uring_direct_release(struct zk__backend *b, unsigned slot)
{
	if (slot >= b->ndirect)
		return -EBADF;
	int none = -1;
	int r = io_uring_register_files_update(&b->ring, slot, &none, 1);
	return r < 0 ? r : 0;
}

static int uring_register_buffers(struct zk__backend *b, const struct iovec *iov, unsigned n)
{
	if (n > UINT16_MAX || (n && !iov))
		return -EINVAL;
	struct iovec *copy = NULL;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, iov, n * sizeof(*copy));
	}
	if (b->nreg_bufs)
		io_uring_unregister_buffers(&b->ring);
	free(b->reg_bufs);
	b->reg_bufs = NULL;
	b->nreg_bufs = 0;
	if (!n)
		return 0;
	int r = io_uring_register_buffers(&b->ring, copy, n);
	if (r < 0) {
		free(copy);
		return r;
	}
	b->reg_bufs = copy;
	b->nreg_bufs = n;
	return 0;
}

static int uring_register_files(struct zk__backend *b, const int *fds, unsigned n)
{
	if (n && !fds)
		return -EINVAL;
	if (b->ndirect)
		return -EBUSY; /* one file table per ring: the direct slots' */
	int *copy = NULL;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, fds, n * sizeof(*copy));
	}
	if (b->nreg_fds)
		io_uring_unregister_files(&b->ring);
	free(b->reg_fds);
	b->reg_fds = NULL;
	b->nreg_fds = 0;
	if (!n)
		return 0;
	int r = io_uring_register_files(&b->ring, copy, n);
	if (r < 0) {
		free(copy);
		return r;
	}
	b->reg_fds = copy;
	b->nreg_fds = n;
	return 0;
}

static void snap_put(struct zk__reg_snap *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s);
}

static int enter_submit(struct zk__backend *b);

/* Applies a registration queued by register_buffers_later (owner only).
 * SQEs already prepared name buffers by index in the old table: they go to
 * the kernel first, which resolves them at submission. */
static int apply_pending_reg(struct zk__backend *b)
{
	struct zk__reg_snap *s = atomic_exchange_explicit(&b->reg_pending, NULL,
							  memory_order_acq_rel);
	if (!s)
		return 0;
	if (io_uring_sq_ready(&b->ring))
		enter_submit(b);
	int r = uring_register_buffers(b, s->iov, s->n);
	snap_put(s);
	return r;
}

static inline void check_pending_reg(struct zk__backend *b)
{
	if (atomic_load_explicit(&b->reg_pending, memory_order_acquire))
		apply_pending_reg(b);
}

static int uring_register_buffers_later(struct zk__backend *b, struct zk__reg_snap *snap,
					bool owner)
{
	snap_put(atomic_exchange_explicit(&b->reg_pending, snap, memory_order_acq_rel));
	return owner ? apply_pending_reg(b) : 0;
}

/* Puts op (and its linked timeout) into the SQ. False if there is no room:
 * both SQEs of a linked pair must be adjacent, so we ask for both at once. */
static bool try_prep(struct zk__backend *b, struct zk__op *op)
{
	if (op->multishot)
		op->timeout_ns = 0; /* a linked timeout cannot follow a multishot op */
	unsigned need = op->timeout_ns ? 2 : 1;
	if (io_uring_sq_space_left(&b->ring) < need)
		return false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	prep_sqe(sqe, op);
	if (op->fixed)
		apply_direct(sqe, op);
	else if (b->nreg_bufs | b->nreg_fds)
		apply_fixed(b, sqe, op);
	op->b_pending = 1;
	op->b_flags &= ~(OPF_LINKED | OPF_TIMED_OUT);
	if (dev_io(op))
		op->b_scratch[1] = b->enters; /* (the timespec's slot: no timeout here) */
	if (op->timeout_ns) {
		struct __kernel_timespec *ts = (struct __kernel_timespec *)op->b_scratch;
		ts->tv_sec = (long long)(op->timeout_ns / 1000000000ull);
		ts->tv_nsec = (long long)(op->timeout_ns % 1000000000ull);
		sqe->flags |= IOSQE_IO_LINK;
		struct io_uring_sqe *t = io_uring_get_sqe(&b->ring);
		io_uring_prep_link_timeout(t, ts, 0);
		io_uring_sqe_set_data64(t, (uint64_t)(uintptr_t)op | TAG_TIMEOUT);
		op->b_pending = 2;
		op->b_flags |= OPF_LINKED;
	}
	return true;
}

static bool try_prep_cancel(struct zk__backend *b, struct zk__op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	if (!sqe)
		return false;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op | TAG_OP, 0);
	io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	return true;
}

/* Hands the SQ to the kernel. -EBUSY/-EAGAIN mean the kernel wants us to
 * reap first (CQ overflow backlog); the caller reaps and flushes again. */
static int enter_submit(struct zk__backend *b)
{
	ZK__BSTAT(b->stats, enters);
	int ret = io_uring_submit(&b->ring);
	b->enters++;
	return ret < 0 ? ret : 0;
}

/* Moves the unqueued and cancel FIFOs into the SQ, submitting whenever the
 * SQ fills, until both are empty or the kernel refuses more for now. */
static void flush_fifos(struct zk__backend *b)
{
	for (;;) {
		while (b->unq_head && try_prep(b, b->unq_head)) {
			struct zk__op *op = fifo_pop(&b->unq_head, &b->unq_tail);
			op->b_flags &= ~OPF_UNQUEUED;
		}
		while (b->cancel_head && try_prep_cancel(b, b->cancel_head)) {
			struct zk__op *op = fifo_pop(&b->cancel_head, &b->cancel_tail);
			op->b_flags &= ~OPF_CANCEL_WAIT;
		}
		if (!b->unq_head && !b->cancel_head)
			return;
		if (enter_submit(b) < 0 || io_uring_sq_space_left(&b->ring) == 0)
			return; /* try again after reaping */
	}
}

static void finish_op(struct zk__backend *b, struct zk__op *op)
{
	if (op != &b->wake_op) {
		ZK__BSTAT(b->stats, completed);
		b->inflight--;
		b->background -= op->background;
	}
	op->complete(op);
}

static void handle_cqe(struct zk__backend *b, uint64_t data, int32_t res, uint32_t cflags)
{
	unsigned tag = (unsigned)(data & TAG_MASK);
	if (tag == TAG_IGNORE)
		return;
	struct zk__op *op = (struct zk__op *)(uintptr_t)(data & ~(uint64_t)TAG_MASK);
	if (tag == TAG_OP && op->opcode == ZK__OP_SEND_ZC) {
		/* Two CQEs: the send's result (with F_MORE when a notification
		 * follows), then the notification (F_NOTIF) once the kernel no
		 * longer reads the buffer. The op completes at the second. */
		if (cflags & IORING_CQE_F_NOTIF) {
			res = op->res;
		} else if (cflags & IORING_CQE_F_MORE) {
			op->res = res;
			return;
		}
	}
	if (tag == TAG_OP) {
		op->cflags = cflags;
		op->more = op->multishot && (cflags & IORING_CQE_F_MORE);
		if (op->more) {
			/* One of many completions: the op stays in flight. */
			op->res = res;
			ZK__BSTAT(b->stats, completed);
			op->complete(op);
			return;
		}
	}
	if (tag == TAG_TIMEOUT) {
		if (res == -ETIME)
			op->b_flags |= OPF_TIMED_OUT;
	} else {
		op->res = res;
	}
	if (--op->b_pending)
		return; /* wait for the other CQE of a linked pair */
	if ((op->b_flags & OPF_TIMED_OUT) && op->res == -ECANCELED)
		op->res = -ETIMEDOUT;
	if (tag == TAG_OP && dev_io(op) && !(op->b_flags & OPF_LINKED)) {
		uint8_t *c = &b->dev_async[op->fd & DEV_SLOTS_MASK];
		if (b->enters > op->b_scratch[1] + 1)
			*c += *c < 3; /* completed after a later enter: a device */
		else
			*c -= *c > 0; /* completed in the enter that submitted it */
	}
	finish_op(b, op);
}

static int reap(struct zk__backend *b)
{
	int total = 0;
	for (;;) {
		struct io_uring_cqe *cqes[REAP_BATCH];
		unsigned n = io_uring_peek_batch_cqe(&b->ring, cqes, REAP_BATCH);
		if (n == 0) {
			/* With NODROP the kernel parks CQEs that did not fit;
			 * ask it to flush them into the ring and go on. */
			if (io_uring_cq_has_overflow(&b->ring) && (ZK__BSTAT(b->stats, cq_overflows), 1) &&
			    io_uring_get_events(&b->ring) >= 0 &&
			    io_uring_cq_ready(&b->ring))
				continue;
			break;
		}
		uint64_t data[REAP_BATCH];
		int32_t res[REAP_BATCH];
		uint32_t flags[REAP_BATCH];
		for (unsigned i = 0; i < n; i++) {
			data[i] = cqes[i]->user_data;
			res[i] = cqes[i]->res;
			flags[i] = cqes[i]->flags;
		}
		/* Release the CQ slots before running callbacks: a callback may
		 * submit, and the kernel may need the room. */
		io_uring_cq_advance(&b->ring, n);
		for (unsigned i = 0; i < n; i++) {
			handle_cqe(b, data[i], res[i], flags[i]);
			total++;
		}
	}
	return total;
}

static int run_done(struct zk__backend *b)
{
	int n = 0;
	struct zk__op *op;
	while ((op = fifo_pop(&b->done_head, &b->done_tail))) {
		finish_op(b, op);
		n++;
	}
	return n;
}

static void wake_complete(struct zk__op *op)
{
	struct zk__backend *b = op->ctx;
	if (b->closing)
		return;
	/* Re-arm: the eventfd read is how a sleeping ring is woken. */
	op->timeout_ns = 0;
	if (!try_prep(b, op))
		fifo_push(&b->unq_head, &b->unq_tail, op), op->b_flags |= OPF_UNQUEUED;
}

static int uring_init(struct zk__backend **out, const struct zk__backend_config *cfg)
{
	struct zk__backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	unsigned entries = cfg && cfg->ring_entries ? cfg->ring_entries : 256;
	/* A linked timeout needs two adjacent SQEs, and a cancel may need one
	 * more beside them: a smaller SQ could never take such a group. */
	if (entries < 8)
		entries = 8;
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -ENOSYS;
	unsigned off = zk__uring_disabled();
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		if ((i == 0 && (off & ZK__URING_NO_DEFER)) ||
		    (i == 1 && (off & ZK__URING_NO_COOP)))
			continue;
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		/* A CQ four times the SQ: completions of long-lived ops (accepts,
		 * recvs, polls) pile up beyond one SQ's worth. */
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = entries * 4;
		ret = io_uring_queue_init_params(entries, &b->ring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret < 0) {
		free(b);
		return ret;
	}
	probe_ftruncate(&b->ring);
	b->stats = cfg ? cfg->stats : NULL;
	b->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (b->wake_fd < 0) {
		ret = -errno;
		io_uring_queue_exit(&b->ring);
		free(b);
		return ret;
	}
	b->wake_op.opcode = ZK__OP_READ;
	b->wake_op.fd = b->wake_fd;
	b->wake_op.buf = &b->wake_buf;
	b->wake_op.len = sizeof(b->wake_buf);
	b->wake_op.off = -1;
	b->wake_op.complete = wake_complete;
	b->wake_op.ctx = b;
	try_prep(b, &b->wake_op);
	*out = b;
	return 0;
}

static void uring_submit(struct zk__backend *b, struct zk__op *op)
{
	check_pending_reg(b);
	ZK__BSTAT(b->stats, submitted);
	b->inflight++;
	b->background += op->background;
	op->b_flags = 0;
	if (op->opcode == ZK__OP_FTRUNCATE &&
	    atomic_load_explicit(&ftruncate_probe, memory_order_relaxed) != 1) {
		/* Kernel before 6.9: the caller gets a clear error, not a
		 * blocking ftruncate on this worker. */
		op->res = -EOPNOTSUPP;
		fifo_push(&b->done_head, &b->done_tail, op);
		return;
	}
	if (op->opcode == ZK__OP_SEND_ZC && !send_zc_supported(&b->ring)) {
		op->res = -EOPNOTSUPP;
		fifo_push(&b->done_head, &b->done_tail, op);
		return;
	}
	if (op->opcode == ZK__OP_RECV_PBUF) {
		int r = zk__pbuf_setup(&b->pbuf, &b->ring);
		if (r < 0) {
			op->res = r == -EINVAL || r == -ENOSYS ? -EOPNOTSUPP : r;
			fifo_push(&b->done_head, &b->done_tail, op);
			return;
		}
	}
	if (!b->unq_head && try_prep(b, op)) {
		if (dev_io(op) && b->dev_async[op->fd & DEV_SLOTS_MASK] >= DEV_EAGER &&
		    b->inflight - b->background > 1)
			enter_submit(b); /* goes to a device: send it now (see dev_io) */
		return;
	}
	/* SQ full: hand what we have to the kernel and try once more. */
	if (!b->unq_head && enter_submit(b) == 0 && try_prep(b, op))
		return;
	op->b_flags |= OPF_UNQUEUED;
	fifo_push(&b->unq_head, &b->unq_tail, op);
}

/* A chain must sit in one submission with its SQEs adjacent, so it goes in
 * whole or not at all: never behind the unqueued FIFO (whose flush could
 * split it across two io_uring_enter calls, and a chain cut at a submit
 * boundary would run its tail unlinked). */
static bool uring_submit_chain(struct zk__backend *b, struct zk__op *const *ops, unsigned n)
{
	check_pending_reg(b);
	if (n == 0 || b->unq_head)
		return false;
	for (unsigned i = 0; i < n; i++) {
		const struct zk__op *op = ops[i];
		if (op->timeout_ns || op->multishot || op->opcode == ZK__OP_RECV_PBUF ||
		    op->opcode == ZK__OP_SEND_ZC ||
		    (op->opcode == ZK__OP_FTRUNCATE &&
		     atomic_load_explicit(&ftruncate_probe, memory_order_relaxed) != 1))
			return false;
	}
	if (io_uring_sq_space_left(&b->ring) < n &&
	    (enter_submit(b) < 0 || io_uring_sq_space_left(&b->ring) < n))
		return false;
	for (unsigned i = 0; i < n; i++) {
		struct zk__op *op = ops[i];
		ZK__BSTAT(b->stats, submitted);
		b->inflight++;
		b->background += op->background;
		op->b_flags = 0;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
		prep_sqe(sqe, op);
		if (op->fixed)
			apply_direct(sqe, op);
		else if (b->nreg_bufs | b->nreg_fds)
			apply_fixed(b, sqe, op);
		if (i + 1 < n)
			sqe->flags |= IOSQE_IO_LINK;
		op->b_pending = 1;
		op->b_scratch[1] = b->enters; /* (dev_io) */
	}
	return true;
}

static void uring_cancel(struct zk__backend *b, struct zk__op *op)
{
	if (op->b_flags & OPF_UNQUEUED) {
		/* The kernel never saw it: finish it ourselves. */
		fifo_remove(&b->unq_head, &b->unq_tail, op);
		op->b_flags &= ~OPF_UNQUEUED;
		op->res = -ECANCELED;
		fifo_push(&b->done_head, &b->done_tail, op);
		return;
	}
	if (op->b_flags & OPF_CANCEL_WAIT)
		return;
	if (!b->cancel_head && try_prep_cancel(b, op))
		return;
	op->b_flags |= OPF_CANCEL_WAIT;
	fifo_push(&b->cancel_head, &b->cancel_tail, op);
}

static int uring_wait(struct zk__backend *b, int64_t timeout_ns)
{
	check_pending_reg(b);
	int n = run_done(b);
	flush_fifos(b);
	if (timeout_ns == 0 && b->inflight == b->background && !io_uring_sq_ready(&b->ring) &&
	    !io_uring_cq_ready(&b->ring))
		return n; /* nothing the caller is waiting for: skip the syscall */
	if (n > 0 || io_uring_cq_ready(&b->ring))
		timeout_ns = 0; /* work is already here: do not sleep */
	int ret;
	ZK__BSTAT(b->stats, enters);
	if (timeout_ns == 0) {
		ret = io_uring_submit_and_get_events(&b->ring);
	} else {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts, *tsp = NULL;
		if (timeout_ns > 0) {
			ts.tv_sec = timeout_ns / 1000000000;
			ts.tv_nsec = timeout_ns % 1000000000;
			tsp = &ts;
		}
		ret = io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, tsp, NULL);
	}
	b->enters++;
	(void)ret; /* -ETIME, -EINTR, -EBUSY: all mean "reap what is there" */
	n += reap(b);
	if (b->unq_head || b->cancel_head)
		flush_fifos(b);
	return n;
}

static void uring_wake(struct zk__backend *b)
{
	uint64_t one = 1;
	/* A failed write means the counter is saturated: the reader is
	 * already due to wake, which is all we want. */
	ssize_t r = write(b->wake_fd, &one, sizeof(one));
	(void)r;
}

static unsigned uring_inflight(const struct zk__backend *b)
{
	return b->inflight;
}

static void uring_fini(struct zk__backend *b)
{
	if (!b)
		return;
	b->closing = true;
	/* Cancel everything, including the wake read, and drain. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	if (!sqe) {
		io_uring_submit(&b->ring);
		sqe = io_uring_get_sqe(&b->ring);
	}
	if (sqe) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	while (b->unq_head) {
		struct zk__op *op = fifo_pop(&b->unq_head, &b->unq_tail);
		op->res = -ECANCELED;
		if (op != &b->wake_op)
			finish_op(b, op);
	}
	b->cancel_head = b->cancel_tail = NULL;
	run_done(b);
	/* The wake read is always in flight until cancelled; wait for it and
	 * any user op the core left behind. */
	unsigned guard = 0;
	while ((b->inflight > 0 || b->wake_op.b_pending) && guard++ < 1000) {
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, &ts, NULL);
		reap(b);
	}
	zk__pbuf_fini(&b->pbuf, &b->ring);
	io_uring_queue_exit(&b->ring); /* also drops registered buffers/files */
	snap_put(atomic_exchange_explicit(&b->reg_pending, NULL, memory_order_acq_rel));
	close(b->wake_fd);
	free(b->reg_bufs);
	free(b->reg_fds);
	free(b);
}

static void *uring_pbuf_data(struct zk__backend *b, uint32_t cflags)
{
	return zk__pbuf_data(&b->pbuf, cflags);
}

static void uring_pbuf_put(struct zk__backend *b, uint32_t cflags)
{
	zk__pbuf_put(&b->pbuf, cflags);
}

const struct zk__backend_vtable zk__backend_io_uring = {
	.name = "io_uring",
	.init = uring_init,
	.fini = uring_fini,
	.submit = uring_submit,
	.cancel = uring_cancel,
	.wait = uring_wait,
	.wake = uring_wake,
	.inflight = uring_inflight,
	.pbuf_data = uring_pbuf_data,
	.pbuf_put = uring_pbuf_put,
	.register_buffers = uring_register_buffers,
	.register_files = uring_register_files,
	.register_buffers_later = uring_register_buffers_later,
	.submit_chain = uring_submit_chain,
	.direct_files = uring_direct_files,
	.direct_release = uring_direct_release,
};
