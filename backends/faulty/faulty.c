/* backends/faulty/faulty.c — the fault-injection backend: wraps a real
 * backend (io_uring or epoll) and, driven by a seed, makes it behave the way
 * a kernel under stress does.
 *
 * Owns, per worker: the inner backend instance, a seeded PRNG, one wrapper
 * record per op in flight (struct fop: the copy of the op the inner backend
 * sees), and the lists of ops this layer holds back: ops not yet handed to
 * the inner backend (a full SQ), cancels not yet forwarded, and completions
 * not yet delivered (delayed, then delivered in random order).
 *
 * The faults (ZK__FAULT_* in backend.h), each rolled per op at the rate:
 *   EINTR, EAGAIN  the op completes with that error without running (the
 *                  core retries: zk__op_run); EAGAIN only where a kernel
 *                  would return it (eagain_faithful);
 *   NOMEM, EIO     the op completes with -ENOMEM / -EIO without running
 *                  (the user sees the error; nothing was read or written);
 *   SHORT          a read/write/recv/send/readv/writev runs with a smaller
 *                  length (or fewer iovecs): a real short transfer (not
 *                  on datagram sockets, where it would lose data);
 *   DELAY          the completion is held for 1..4 more wait() calls and
 *                  then delivered in random order with the other held ones;
 *   SQFULL         the op reaches the inner backend only 1..4 wait() calls
 *                  later, as if the SQ had been full;
 *   CANCEL         a cancel() reaches the inner backend one wait() late, so
 *                  the op often completes with its real result first: the
 *                  cancel-vs-completion race every caller must handle.
 * Ops that must not be disturbed pass through untouched: background ops
 * (a lost signal read would lose signals), multishot ops (their completions
 * stay in order), and CLOSE / CONNECT (neither can be retried: a close that
 * "failed" would leak the fd, a retried connect returns -EALREADY).
 *
 * Determinism: the PRNG is seeded from the seed and the worker index and is
 * drawn in submission order, so a run on one worker with the same seed
 * makes the same decisions for the same sequence of ops. Nothing is
 * allocated on the inner backend's behalf: a failed wrapper allocation
 * completes the op with -ENOMEM, itself a fault the caller must handle.
 *
 * While anything is held back, wait() never blocks (timeout 0): held work
 * drains over the next few calls, so a worker never sleeps on it.
 *
 * Two vtables. zk__backend_faulty has none of the optional entries (the
 * core then takes its fallbacks). zk__backend_faulty_full, for an inner
 * backend that has them (io_uring), forwards provided buffers, registered
 * buffers and files and direct descriptors to it, so the ops that use them
 * (multishot buffer-select recv: untouched; ops on direct descriptors and
 * registered buffers: faults injected) run under fault injection too.
 * Kernel-linked chains are not forwarded: a chain must reach the ring
 * whole, which held-back and failed ops would break. An op on a direct
 * descriptor (op->fixed) names a ring slot, not an fd of the process: the
 * faults that inspect the fd (EAGAIN, SHORT) are not injected on it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../backend.h"

struct fop {
	struct zk__op inner;   /* what the inner backend sees */
	struct zk__op *outer;  /* the caller's op */
	struct fop *next;      /* in one of the backend's lists */
	unsigned countdown;    /* wait() calls left while held back */
	bool submitted;        /* inner handed to the inner backend */
	bool cancel_pending;   /* a cancel waits in the cancels list */
	bool delay;            /* hold the completion (DELAY) */
};

struct zk__backend {
	const struct zk__backend_vtable *in_vt;
	struct zk__backend *in;
	uint64_t rng;
	uint32_t rate_ppm;
	uint32_t kinds;
	unsigned inflight;    /* outer ops not yet completed */
	struct fop *deferred; /* not yet submitted (SQFULL) */
	struct fop *cancels;  /* cancels not yet forwarded (CANCEL) */
	struct fop *held;     /* completed, not yet delivered (DELAY) */
	/* Ops completed without running (injected errors, cancelled while
	 * deferred): delivered from the next wait(), never from submit or
	 * cancel, as the real backends do. Linked through b_next. */
	struct zk__op *done_head, *done_tail;
};

static uint64_t next_rand(struct zk__backend *b)
{
	/* splitmix64: every seed, including 0, gives a full-period stream. */
	uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rand_below(struct zk__backend *b, unsigned n)
{
	return (unsigned)(next_rand(b) % n);
}

/* True with probability rate_ppm / 1e6. Always draws, so the stream of
 * decisions does not depend on which kinds are enabled. */
static bool roll(struct zk__backend *b)
{
	return rand_below(b, 1000000u) < b->rate_ppm;
}

/* A fault kind among the enabled ones that applies to op, or 0. */
static uint32_t pick_fault(struct zk__backend *b, const struct zk__op *op)
{
	uint32_t k = b->kinds;
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_WRITE:
	case ZK__OP_RECV:
	case ZK__OP_SEND:
		if (op->len < 2)
			k &= ~ZK__FAULT_SHORT;
		break;
	case ZK__OP_READV:
	case ZK__OP_WRITEV:
		if (op->len < 2)
			k &= ~ZK__FAULT_SHORT;
		break;
	default:
		k &= ~ZK__FAULT_SHORT;
		break;
	}
	if (!k)
		return 0;
	unsigned n = (unsigned)__builtin_popcount(k);
	unsigned pick = rand_below(b, n);
	while (pick--)
		k &= k - 1;
	return k & -k;
}

/* The readiness an op needs, for the ops a kernel answers with -EAGAIN on
 * a non-blocking fd; 0 for the others. */
static short eagain_mask(const struct zk__op *op)
{
	switch (op->opcode) {
	case ZK__OP_READ:
	case ZK__OP_READV:
	case ZK__OP_RECV:
	case ZK__OP_RECVMSG:
	case ZK__OP_ACCEPT:
		return POLLIN;
	case ZK__OP_WRITE:
	case ZK__OP_WRITEV:
	case ZK__OP_SEND:
	case ZK__OP_SENDMSG:
		return POLLOUT;
	default:
		return 0;
	}
}

/* -EAGAIN is injected only where a kernel would return it: an op that
 * waits for readiness, on an O_NONBLOCK fd that is not ready now. A false
 * -EAGAIN on a ready fd would send the caller to wait for a readiness that
 * may never change (a Unix socket polls writable only below a quarter of
 * its buffer), and one on a wrong fd (accept on a pipe) would wait forever
 * for an error the kernel reports at once. */
static bool eagain_faithful(const struct zk__op *op)
{
	short mask = eagain_mask(op);
	if (!mask || op->fixed)
		return false;
	int fl = fcntl(op->fd, F_GETFL);
	if (fl < 0 || !(fl & O_NONBLOCK))
		return false;
	struct pollfd p = {.fd = op->fd, .events = mask};
	return poll(&p, 1, 0) == 0;
}

/* Short transfers only where the kernel makes them: files, pipes and
 * stream sockets. A datagram cut short would be a lost message. */
static bool short_faithful(const struct zk__op *op)
{
	int type;
	if (op->fixed)
		return false;
	socklen_t len = sizeof(type);
	if (getsockopt(op->fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return true; /* not a socket */
	return type == SOCK_STREAM;
}

static bool passes_through(const struct zk__op *op)
{
	return op->background || op->multishot || op->opcode == ZK__OP_CLOSE ||
	       op->opcode == ZK__OP_CONNECT;
}

static void done_push(struct zk__backend *b, struct zk__op *op)
{
	op->b_next = NULL;
	if (b->done_tail)
		b->done_tail->b_next = op;
	else
		b->done_head = op;
	b->done_tail = op;
}

static bool list_remove(struct fop **head, struct fop *f)
{
	for (struct fop **pp = head; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			f->next = NULL;
			return true;
		}
	}
	return false;
}

static void list_push(struct fop **head, struct fop *f)
{
	f->next = *head;
	*head = f;
}

/* Hands the outer op its result and frees the wrapper. The wrapper goes
 * first: complete() may submit the same op record again. */
static void deliver(struct zk__backend *b, struct fop *f)
{
	struct zk__op *outer = f->outer;
	outer->res = f->inner.res;
	outer->cflags = f->inner.cflags;
	outer->more = false;
	outer->b_scratch[0] = 0;
	free(f);
	b->inflight--;
	outer->complete(outer);
}

static void inner_complete(struct zk__op *iop)
{
	struct fop *f = (struct fop *)((char *)iop - offsetof(struct fop, inner));
	struct zk__backend *b = f->inner.ctx;
	struct zk__op *outer = f->outer;
	if (outer->multishot && iop->more) {
		outer->res = iop->res;
		outer->cflags = iop->cflags;
		outer->more = true;
		outer->complete(outer);
		return;
	}
	if (f->cancel_pending)
		list_remove(&b->cancels, f);
	if (f->delay) {
		f->countdown = 1 + rand_below(b, 4);
		list_push(&b->held, f);
		return;
	}
	deliver(b, f);
}

static int faulty_init(struct zk__backend **out, const struct zk__backend_config *cfg)
{
	const struct zk__fault_config *fc = cfg ? cfg->fault : NULL;
	if (!fc || !fc->inner || fc->inner == &zk__backend_faulty ||
	    fc->inner == &zk__backend_faulty_full)
		return -EINVAL;
	struct zk__backend *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->in_vt = fc->inner;
	b->rng = fc->seed ^ ((uint64_t)cfg->worker_index * 0xd1b54a32d192ed03ull);
	b->rate_ppm = fc->rate_ppm;
	b->kinds = fc->kinds;
	int r = b->in_vt->init(&b->in, cfg);
	if (r < 0) {
		free(b);
		return r;
	}
	*out = b;
	return 0;
}

static void faulty_submit(struct zk__backend *b, struct zk__op *op)
{
	b->inflight++;
	op->b_scratch[0] = 0;
	struct fop *f = calloc(1, sizeof(*f));
	if (!f) {
		op->res = -ENOMEM;
		done_push(b, op);
		return;
	}
	f->outer = op;
	f->inner = *op;
	f->inner.complete = inner_complete;
	f->inner.ctx = b;
	f->inner.b_next = NULL;
	op->b_scratch[0] = (uint64_t)(uintptr_t)f;

	uint32_t fault = 0;
	if (!passes_through(op) && roll(b))
		fault = pick_fault(b, op);
	if ((fault == ZK__FAULT_EAGAIN && !eagain_faithful(op)) ||
	    (fault == ZK__FAULT_SHORT && !short_faithful(op)))
		fault = 0;
	switch (fault) {
	case ZK__FAULT_EINTR:
	case ZK__FAULT_EAGAIN:
	case ZK__FAULT_NOMEM:
	case ZK__FAULT_EIO:
		op->res = fault == ZK__FAULT_EINTR    ? -EINTR
			  : fault == ZK__FAULT_EAGAIN ? -EAGAIN
			  : fault == ZK__FAULT_NOMEM  ? -ENOMEM
						      : -EIO;
		op->b_scratch[0] = 0;
		free(f);
		done_push(b, op);
		return;
	case ZK__FAULT_SHORT:
		f->inner.len = 1 + rand_below(b, op->len - 1);
		break;
	case ZK__FAULT_DELAY:
		f->delay = true;
		break;
	case ZK__FAULT_SQFULL:
		f->countdown = 1 + rand_below(b, 4);
		list_push(&b->deferred, f);
		return;
	default:
		break;
	}
	f->submitted = true;
	b->in_vt->submit(b->in, &f->inner);
}

static void faulty_cancel(struct zk__backend *b, struct zk__op *op)
{
	struct fop *f = (struct fop *)(uintptr_t)op->b_scratch[0];
	if (!f)
		return; /* completed without running; its result is on its way */
	if (!f->submitted) {
		if (list_remove(&b->deferred, f)) {
			op->res = -ECANCELED;
			op->b_scratch[0] = 0;
			free(f);
			done_push(b, op);
		}
		return;
	}
	if (f->cancel_pending)
		return;
	/* Held completions have their result already: the cancel lost the
	 * race, as it can on a real ring. */
	for (struct fop *h = b->held; h; h = h->next)
		if (h == f)
			return;
	if ((b->kinds & ZK__FAULT_CANCEL) && roll(b)) {
		f->cancel_pending = true;
		list_push(&b->cancels, f);
		return;
	}
	b->in_vt->cancel(b->in, &f->inner);
}

/* One tick of everything held back: deferred submissions whose time came
 * reach the inner backend, late cancels are forwarded. */
static void tick_before_wait(struct zk__backend *b)
{
	struct fop *late = b->cancels;
	b->cancels = NULL;
	while (late) {
		struct fop *f = late;
		late = f->next;
		f->next = NULL;
		f->cancel_pending = false;
		b->in_vt->cancel(b->in, &f->inner);
	}
	for (struct fop **pp = &b->deferred; *pp;) {
		struct fop *f = *pp;
		if (--f->countdown > 0) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		f->next = NULL;
		f->submitted = true;
		b->in_vt->submit(b->in, &f->inner);
	}
}

/* Delivers the held completions whose time came, in random order. */
static int release_held(struct zk__backend *b)
{
	struct fop *due = NULL;
	unsigned ndue = 0;
	for (struct fop **pp = &b->held; *pp;) {
		struct fop *f = *pp;
		if (--f->countdown > 0) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		f->next = due;
		due = f;
		ndue++;
	}
	int n = 0;
	while (due) {
		unsigned k = rand_below(b, ndue--);
		struct fop **pp = &due;
		while (k--)
			pp = &(*pp)->next;
		struct fop *f = *pp;
		*pp = f->next;
		deliver(b, f);
		n++;
	}
	return n;
}

static int run_done(struct zk__backend *b)
{
	int n = 0;
	struct zk__op *op;
	while ((op = b->done_head) != NULL) {
		b->done_head = op->b_next;
		if (!b->done_head)
			b->done_tail = NULL;
		op->b_next = NULL;
		op->more = false;
		b->inflight--;
		op->complete(op);
		n++;
	}
	return n;
}

static int faulty_wait(struct zk__backend *b, int64_t timeout_ns)
{
	tick_before_wait(b);
	if (b->done_head || b->held || b->deferred || b->cancels)
		timeout_ns = 0;
	int n = b->in_vt->wait(b->in, timeout_ns);
	n += release_held(b);
	n += run_done(b);
	return n;
}

static void faulty_wake(struct zk__backend *b)
{
	b->in_vt->wake(b->in);
}

static unsigned faulty_inflight(const struct zk__backend *b)
{
	return b->inflight;
}

static void faulty_fini(struct zk__backend *b)
{
	if (!b)
		return;
	/* Never reached the kernel: cancelled. Late cancels are dropped: the
	 * inner fini cancels everything anyway. */
	while (b->deferred) {
		struct fop *f = b->deferred;
		b->deferred = f->next;
		f->inner.res = -ECANCELED;
		deliver(b, f);
	}
	for (struct fop *f = b->cancels; f; f = f->next)
		f->cancel_pending = false;
	b->cancels = NULL;
	b->in_vt->fini(b->in);
	/* Completions the inner fini drained may have been held. */
	while (b->held) {
		struct fop *f = b->held;
		b->held = f->next;
		deliver(b, f);
	}
	run_done(b);
	free(b);
}

const struct zk__backend_vtable zk__backend_faulty = {
	.name = "faulty",
	.init = faulty_init,
	.fini = faulty_fini,
	.submit = faulty_submit,
	.cancel = faulty_cancel,
	.wait = faulty_wait,
	.wake = faulty_wake,
	.inflight = faulty_inflight,
};

/* ---- the optional entries, forwarded (zk__backend_faulty_full) ---------- */

static void *faulty_pbuf_data(struct zk__backend *b, uint32_t cflags)
{
	return b->in_vt->pbuf_data(b->in, cflags);
}

static void faulty_pbuf_put(struct zk__backend *b, uint32_t cflags)
{
	b->in_vt->pbuf_put(b->in, cflags);
}

static int faulty_register_buffers(struct zk__backend *b, const struct iovec *iov, unsigned n)
{
	return b->in_vt->register_buffers(b->in, iov, n);
}

static int faulty_register_files(struct zk__backend *b, const int *fds, unsigned n)
{
	return b->in_vt->register_files(b->in, fds, n);
}

static int faulty_register_buffers_later(struct zk__backend *b, struct zk__reg_snap *snap,
					 bool owner)
{
	return b->in_vt->register_buffers_later(b->in, snap, owner);
}

static int faulty_direct_files(struct zk__backend *b)
{
	return b->in_vt->direct_files(b->in);
}

static int faulty_direct_release(struct zk__backend *b, unsigned slot)
{
	return b->in_vt->direct_release(b->in, slot);
}

const struct zk__backend_vtable zk__backend_faulty_full = {
	.name = "faulty",
	.init = faulty_init,
	.fini = faulty_fini,
	.submit = faulty_submit,
	.cancel = faulty_cancel,
	.wait = faulty_wait,
	.wake = faulty_wake,
	.inflight = faulty_inflight,
	.pbuf_data = faulty_pbuf_data,
	.pbuf_put = faulty_pbuf_put,
	.register_buffers = faulty_register_buffers,
	.register_files = faulty_register_files,
	.register_buffers_later = faulty_register_buffers_later,
	.direct_files = faulty_direct_files,
	.direct_release = faulty_direct_release,
};
