/* lib/net_stream.c — zk_stream: receiving without a buffer per connection.
 *
 * On io_uring, zk_stream_recv() arms one multishot RECV_PBUF op (kernel
 * 6.0+; buffer select alone, 5.19+, without multishot): the kernel takes a
 * buffer from the worker's provided-buffer ring (backends/io_uring/
 * bufring.c) only when data arrives, and each arrival is a completion that
 * runs st_complete() on the worker that armed the op (its owner), which
 * queues it here and wakes the receiving task. The task reads the data in
 * place and gives the buffer back with zk_rbuf_release() from any worker.
 * A connection that waits for data therefore holds no receive buffer.
 *
 * -ENOBUFS (every buffer of that ring is out) ends the multishot; the data
 * stays in the socket. The next zk_stream_recv() then receives once into a
 * pooled heap buffer, so a receiver that holds many buffers still makes
 * progress without spinning, and the one after re-arms the multishot on
 * buffers returned meanwhile: nothing is lost, nothing is reordered (the
 * queue is empty when the multishot has ended).
 *
 * Elsewhere (epoll, a backend without provided buffers, a kernel before
 * 5.19) each zk_stream_recv() waits for readability with zk_poll and only
 * then takes a pooled heap buffer for a non-blocking receive: idle
 * connections hold no buffer there either.
 *
 * Ownership and stopping work as for zk_acceptor (net_accept.c): the op
 * lives in the stream, is cancelled on its owner's thread, and
 * zk_stream_close() waits for its final completion.
 *
 * What it saves (2026-11-24, 9 000 idle Unix stream connections, one task
 * each, RSS after every connection got one message and waits again):
 * 16 KiB messages read into a 16 KiB heap buffer per connection 24.4 KiB
 * per connection, with zk_stream 9.3 KiB (io_uring and epoll alike); 1400
 * byte messages into a 4 KiB stack buffer 8.3 KiB, with zk_stream 9.1 KiB:
 * there the buffer shares the stack pages the task touches anyway, and
 * the task's stack is what an idle connection costs.
 *
 * Registered (fixed) files are not used: a fixed file belongs to one ring,
 * while a connection's ops go to the ring of whichever worker runs its task
 * (work stealing moves tasks). The ops that stay on one ring are the
 * multishot ones, which take their file reference once per arm, so a fixed
 * file would save nothing there. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"

/* Heap buffers for the copy path, and how many are cached for reuse. */
#define HEAP_BUF_SIZE 16384u
#define HEAP_CACHE_MAX 1024u

enum { CAP_UNKNOWN = 0, CAP_YES, CAP_NO };
static _Atomic int ms_recv = CAP_UNKNOWN;   /* multishot recv */
static _Atomic int pbuf_ok = CAP_UNKNOWN;   /* provided buffers */

/* ---- the heap buffer cache ------------------------------------------------ */

struct heap_buf {
	struct heap_buf *next;
};
static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct heap_buf *heap_free;
static unsigned heap_nfree;

static void *heap_get(void)
{
	pthread_mutex_lock(&heap_lock);
	struct heap_buf *h = heap_free;
	if (h) {
		heap_free = h->next;
		heap_nfree--;
	}
	pthread_mutex_unlock(&heap_lock);
	return h ? (void *)h : malloc(HEAP_BUF_SIZE);
}

static void heap_put(void *p)
{
	pthread_mutex_lock(&heap_lock);
	if (heap_nfree < HEAP_CACHE_MAX) {
		struct heap_buf *h = p;
		h->next = heap_free;
		heap_free = h;
		heap_nfree++;
		p = NULL;
	}
	pthread_mutex_unlock(&heap_lock);
	free(p);
}

/* ---- the stream ------------------------------------------------------------ */

struct ent {
	int32_t res;
	uint32_t cflags;
	char *data;
	struct zk__backend *b;
	const struct zk__backend_vtable *vt;
};

struct zk_stream {
	pthread_mutex_t lock;
	int fd;
	struct zk__op op;          /* the RECV_PBUF while armed */
	struct zk__worker *owner;  /* whose ring holds op, while armed */
	bool armed, closing, busy, want_final;
	bool eof;                  /* 0 received: every later recv is 0 */
	bool starved;              /* the last multishot ended in -ENOBUFS */
	int err;                   /* sticky: data was dropped (-ENOMEM) */
	struct zk_task *waiter;
	struct ent *q;             /* completions not taken yet, a ring */
	unsigned qhead, qlen, qcap;
	struct zk_stream_stats st;
};

static bool q_push(struct zk_stream *s, struct ent e)
{
	if (s->qlen == s->qcap) {
		unsigned cap = s->qcap ? s->qcap * 2 : 8;
		struct ent *n = malloc(cap * sizeof(*n));
		if (!n)
			return false;
		for (unsigned i = 0; i < s->qlen; i++)
			n[i] = s->q[(s->qhead + i) % s->qcap];
		free(s->q);
		s->q = n;
		s->qhead = 0;
		s->qcap = cap;
	}
	s->q[(s->qhead + s->qlen) % s->qcap] = e;
	s->qlen++;
	return true;
}

static struct ent q_pop(struct zk_stream *s)
{
	struct ent e = s->q[s->qhead];
	s->qhead = (s->qhead + 1) % s->qcap;
	s->qlen--;
	return e;
}

/* Runs on the owner worker for each completion of the op. */
static void st_complete(struct zk__op *op)
{
	struct zk_stream *s = op->ctx;
	/* The owner, not zk__worker_here(): this also runs from the
	 * backend's fini, when the runtime drains what is left. */
	pthread_mutex_lock(&s->lock);
	struct zk__worker *w = s->owner;
	pthread_mutex_unlock(&s->lock);
	const struct zk__backend_vtable *vt = w->rt->backend;
	struct ent e = {.res = op->res, .cflags = op->cflags, .b = w->backend, .vt = vt};
	if (e.res > 0) {
		e.data = vt->pbuf_data(w->backend, e.cflags);
		if (!e.data)
			e.res = -EIO; /* a completion without its buffer: cannot be */
		atomic_store_explicit(&pbuf_ok, CAP_YES, memory_order_relaxed);
		if (op->multishot)
			atomic_store_explicit(&ms_recv, CAP_YES, memory_order_relaxed);
	}
	pthread_mutex_lock(&s->lock);
	if (!q_push(s, e)) {
		/* No room to queue it: the bytes cannot be kept, so the stream
		 * fails for good rather than silently skip them. */
		if (e.data)
			vt->pbuf_put(w->backend, e.cflags);
		s->err = -ENOMEM;
	}
	if (!op->more) {
		s->armed = false;
		s->owner = NULL;
	}
	struct zk_task *t = s->waiter;
	bool wake = t && (s->want_final ? !s->armed : true);
	if (wake)
		s->waiter = NULL;
	pthread_mutex_unlock(&s->lock);
	if (wake)
		zk__task_wake(t);
}

static void st_cancel(struct zk_task *t, struct zk__wait *wt)
{
	(void)t;
	struct zk_stream *s = wt->obj;
	pthread_mutex_lock(&s->lock);
	bool armed = s->armed && s->owner == wt->owner;
	pthread_mutex_unlock(&s->lock);
	if (armed)
		wt->owner->rt->backend->cancel(wt->owner->backend, &s->op);
}

/* Arms the recv on w, which (direct descriptor) owns s->fd. 0 or -EBADF. */
static int arm(struct zk_stream *s, struct zk__worker *w)
{
	memset(&s->op, 0, sizeof(s->op));
	s->op.opcode = ZK__OP_RECV_PBUF;
	s->op.fd = s->fd;
	int r = zk__op_direct(w, &s->op);
	if (r < 0)
		return r;
	s->op.multishot = atomic_load_explicit(&ms_recv, memory_order_relaxed) != CAP_NO &&
			  !(zk__uring_disabled() & ZK__URING_NO_MS_RECV);
	s->op.complete = st_complete;
	s->op.ctx = s;
	s->armed = true;
	s->owner = w;
	w->rt->backend->submit(w->backend, &s->op);
	return 0;
}

/* The copy path: wait for readability, then receive into a heap buffer. */
static ssize_t recv_copy(struct zk_stream *s, zk_rbuf_t *rb)
{
	for (;;) {
		int ev = zk_poll(s->fd, POLLIN | POLLRDHUP);
		if (ev < 0)
			return ev;
		char *buf = heap_get();
		if (!buf)
			return -ENOMEM;
		ssize_t n = zk_recv(s->fd, buf, HEAP_BUF_SIZE, MSG_DONTWAIT);
		if (n > 0) {
			rb->data = buf;
			rb->len = (size_t)n;
			rb->priv_[0] = buf;
			rb->priv_[1] = NULL;
			rb->priv_[2] = NULL;
			rb->priv_flags_ = 0;
			pthread_mutex_lock(&s->lock);
			s->st.copied++;
			pthread_mutex_unlock(&s->lock);
			return n;
		}
		heap_put(buf);
		if (n != -EAGAIN)
			return n;
	}
}

int zk_stream_open(zk_stream_t **out, int fd)
{
	if (!zk__task_here())
		return -EPERM;
	if (!out || fd < 0)
		return -EINVAL;
	struct zk_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->fd = fd;
	*out = s;
	return 0;
}

ssize_t zk_stream_recv(zk_stream_t *s, zk_rbuf_t *rb)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	if (!s || !rb)
		return -EINVAL;
	memset(rb, 0, sizeof(*rb));
	t->next_timeout_ns = 0; /* not supported here (see net.h) */
	pthread_mutex_lock(&s->lock);
	if (s->busy || s->closing) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	s->busy = true;
	ssize_t r;
	for (;;) {
		if (s->qlen) {
			struct ent e = q_pop(s);
			if (e.res > 0) {
				rb->data = e.data;
				rb->len = (size_t)e.res;
				rb->priv_[0] = NULL;
				rb->priv_[1] = e.b;
				rb->priv_[2] = (void *)(uintptr_t)e.vt;
				rb->priv_flags_ = e.cflags;
				s->starved = false;
				s->st.pbuf++;
				r = e.res;
				break;
			}
			if (e.res == 0) {
				s->eof = true;
				r = 0;
				break;
			}
			if (e.res == -ENOBUFS) {
				s->starved = true;
				s->st.enobufs++;
				continue;
			}
			if (e.res == -EOPNOTSUPP) {
				atomic_store_explicit(&pbuf_ok, CAP_NO, memory_order_relaxed);
				continue;
			}
			if (e.res == -EINVAL && s->op.multishot &&
			    atomic_load_explicit(&ms_recv, memory_order_relaxed) == CAP_UNKNOWN) {
				/* Buffer select without multishot recv (5.19):
				 * re-arm one at a time. */
				atomic_store_explicit(&ms_recv, CAP_NO, memory_order_relaxed);
				continue;
			}
			r = e.res;
			break;
		}
		if (s->err) {
			r = s->err;
			break;
		}
		if (s->eof) {
			r = 0;
			break;
		}
		if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
			r = -ECANCELED;
			break;
		}
		struct zk__worker *w = zk__worker_here();
		bool copy = !w->rt->backend->pbuf_data ||
			    atomic_load_explicit(&pbuf_ok, memory_order_relaxed) == CAP_NO ||
			    (zk__uring_disabled() & ZK__URING_NO_PBUF);
		if (!s->armed && (copy || s->starved)) {
			s->starved = false;
			pthread_mutex_unlock(&s->lock);
			r = recv_copy(s, rb);
			pthread_mutex_lock(&s->lock);
			if (r == 0)
				s->eof = true;
			break;
		}
		if (!s->armed && s->fd >= ZK__FD_DIRECT) {
			/* The recv must go to the ring holding the file. */
			pthread_mutex_unlock(&s->lock);
			w = zk__direct_go(t, s->fd);
			pthread_mutex_lock(&s->lock);
			if (!w) {
				r = -EBADF;
				break;
			}
		}
		if (!s->armed) {
			int ar = arm(s, w);
			if (ar < 0) {
				r = ar;
				break;
			}
		}
		s->waiter = t;
		s->want_final = false;
		struct zk__wait wt = {.cancel = st_cancel, .owner = s->owner, .obj = s};
		pthread_mutex_unlock(&s->lock);
		zk__task_park(t, &wt);
		pthread_mutex_lock(&s->lock);
		s->waiter = NULL;
	}
	s->busy = false;
	pthread_mutex_unlock(&s->lock);
	return r;
}

void zk_rbuf_release(zk_rbuf_t *rb)
{
	if (!rb)
		return;
	if (rb->priv_[0]) {
		heap_put(rb->priv_[0]);
	} else if (rb->priv_[1]) {
		const struct zk__backend_vtable *vt = rb->priv_[2];
		vt->pbuf_put(rb->priv_[1], rb->priv_flags_);
	}
	memset(rb, 0, sizeof(*rb));
}

int zk_stream_stats(zk_stream_t *s, struct zk_stream_stats *st)
{
	if (!s || !st)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int zk_stream_close(zk_stream_t *s)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (s->busy) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	s->busy = true;
	s->closing = true;
	while (s->armed) {
		struct zk__worker *owner = s->owner;
		s->waiter = t;
		s->want_final = true;
		struct zk__wait wt = {.cancel = st_cancel, .owner = owner, .obj = s};
		pthread_mutex_unlock(&s->lock);
		zk__task_park_cancelling(t, &wt);
		pthread_mutex_lock(&s->lock);
		s->waiter = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	/* Data nobody took: its buffers go back to their rings. */
	while (s->qlen) {
		struct ent e = q_pop(s);
		if (e.res > 0 && e.data)
			e.vt->pbuf_put(e.b, e.cflags);
	}
	free(s->q);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return 0;
}
