/* lib/chan_mpsc.c — multi-producer single-consumer channels of void *.
 *
 * Bounded: Vyukov's array queue. Each slot carries a sequence number: a
 * slot at position p is free for the producer of p when seq == 2p, holds a
 * message for the consumer when seq == 2p + 1, and is handed back for
 * position p + cap when the consumer stores seq = 2(p + cap). (Vyukov uses
 * p, p + 1 and p + cap, which cannot tell "full" from "free" when cap is
 * 1; doubling keeps the two apart for every capacity.) Producers claim
 * a position with one compare-and-swap on the tail; the consumer (only one
 * at a time) needs no read-modify-write at all. The tail word also carries
 * the CLOSED bit, so "closed" and "the last position ever sent" are decided
 * by the same atomic word: a send either got a position before the close
 * (and will be received) or fails with -EPIPE.
 *
 * Unbounded: a ring under the channel's mutex that doubles when full.
 * Simple and still short critical sections; a lock-free segmented list
 * would cut the contention of many producers (future work).
 *
 * Waiting. The receiver that finds the channel empty publishes its waiter
 * in rx_waiter and re-checks; a producer, after storing a slot's sequence,
 * looks at rx_waiter. Each side stores, issues a seq_cst fence, then loads
 * the other side's word, so at least one of them sees the other (a
 * Dekker-style handshake): either the receiver's re-check sees the message
 * or the producer sees the waiter and wakes it. Producers of a full bounded
 * channel queue on send_q (FIFO) and count themselves in nsend_wait with
 * the same handshake against the consumer's freeing of slots: the consumer
 * wakes one waiting producer per slot it frees. A woken producer retries
 * its send; a producer that was not waiting may take the slot first (no
 * strict FIFO between a waiting producer and a newcomer), in which case
 * the woken one waits again.
 *
 * Cancel-safety: a receive that is cancelled or times out has taken no
 * message (messages are only removed by the receive that returns them); a
 * send that is cancelled or times out has not sent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "waitq.h"
#include "zokio/sync.h"

#define CLOSED_BIT 1u
#define INITIAL_UNBOUNDED_CAP 64u

struct slot {
	_Atomic uint64_t seq;
	void *value;
};

struct zk_chan {
	/* Producers' word: position << 1 | CLOSED_BIT (bounded). */
	_Alignas(64) _Atomic uint64_t tail;
	/* Consumer's position (bounded); one receiver at a time. */
	_Alignas(64) _Atomic uint64_t head;
	/* Read by every producer, written when the receiver parks. */
	_Alignas(64) _Atomic(struct zk__waiter *) rx_waiter;
	_Atomic size_t nsend_wait;     /* producers in send_q */
	_Atomic bool closed;
	_Atomic long senders;          /* zk_chan_sender_add/_drop count */
	pthread_mutex_t lock;          /* rx_waiter changes, send_q, unbounded ring */
	struct zk__waitq send_q;
	size_t cap;                    /* 0: unbounded */
	uint64_t mask;                 /* cap - 1 when cap is a power of two, else 0 */
	struct slot *slots;            /* bounded */
	/* Unbounded ring, under lock. */
	void **ubuf;
	size_t ucap, uhead, ulen;
	_Atomic size_t ulen_hint;      /* ulen, readable without the lock */
	void *raw;                     /* the allocation (aligned up to 64) */
};

static inline struct slot *slot_at(struct zk_chan *ch, uint64_t pos)
{
	return &ch->slots[ch->mask ? (pos & ch->mask) : (pos % ch->cap)];
}

int zk_chan_create(zk_chan_t **out, size_t capacity)
{
	if (!out || capacity > ((size_t)1 << 40))
		return -EINVAL;
	/* The allocator guarantees 16 bytes; the cache-line members want 64. */
	void *raw = zk__calloc(1, sizeof(struct zk_chan) + 63);
	if (!raw)
		return -ENOMEM;
	struct zk_chan *ch = (struct zk_chan *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
	ch->raw = raw;
	ch->cap = capacity;
	if (capacity) {
		ch->mask = (capacity & (capacity - 1)) == 0 ? capacity - 1 : 0;
		ch->slots = zk__calloc(capacity, sizeof(*ch->slots));
		if (!ch->slots) {
			zk__free(raw);
			return -ENOMEM;
		}
		for (size_t i = 0; i < capacity; i++)
			atomic_init(&ch->slots[i].seq, 2 * (uint64_t)i);
	} else {
		ch->ubuf = zk__alloc(INITIAL_UNBOUNDED_CAP * sizeof(void *));
		if (!ch->ubuf) {
			zk__free(raw);
			return -ENOMEM;
		}
		ch->ucap = INITIAL_UNBOUNDED_CAP;
	}
	atomic_init(&ch->tail, 0);
	atomic_init(&ch->head, 0);
	atomic_init(&ch->rx_waiter, NULL);
	atomic_init(&ch->nsend_wait, 0);
	atomic_init(&ch->closed, false);
	atomic_init(&ch->senders, 0);
	atomic_init(&ch->ulen_hint, 0);
	pthread_mutex_init(&ch->lock, NULL);
	*out = ch;
	return 0;
}

void zk_chan_free(zk_chan_t *ch)
{
	if (!ch)
		return;
	pthread_mutex_destroy(&ch->lock);
	zk__free(ch->slots);
	zk__free(ch->ubuf);
	zk__free(ch->raw);
}

size_t zk_chan_capacity(const zk_chan_t *ch)
{
	return ch ? ch->cap : 0;
}

size_t zk_chan_len(zk_chan_t *ch)
{
	if (!ch)
		return 0;
	if (!ch->cap)
		return atomic_load_explicit(&ch->ulen_hint, memory_order_acquire);
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire) >> 1;
	uint64_t h = atomic_load_explicit(&ch->head, memory_order_acquire);
	return t > h ? (size_t)(t - h) : 0;
}

bool zk_chan_is_closed(zk_chan_t *ch)
{
	return ch && atomic_load_explicit(&ch->closed, memory_order_acquire);
}

/* ---- waking ------------------------------------------------------------- */

static void wake_rx(struct zk_chan *ch)
{
	struct zk__sel *s = NULL;
	pthread_mutex_lock(&ch->lock);
	struct zk__waiter *w = atomic_load_explicit(&ch->rx_waiter, memory_order_relaxed);
	if (w) {
		atomic_store_explicit(&ch->rx_waiter, NULL, memory_order_relaxed);
		if (zk__waiter_claim(w))
			s = w->sel;
	}
	pthread_mutex_unlock(&ch->lock);
	if (s)
		zk__sel_wake(s);
}

/* Wakes up to n waiting producers (n slots were freed). */
static void wake_senders(struct zk_chan *ch, size_t n)
{
	struct zk__wakelist wl = {NULL, NULL};
	pthread_mutex_lock(&ch->lock);
	while (n > 0) {
		struct zk__waiter *w = zk__waitq_pop(&ch->send_q);
		if (!w)
			break;
		atomic_fetch_sub_explicit(&ch->nsend_wait, 1, memory_order_relaxed);
		if (zk__waiter_claim(w)) {
			zk__wakelist_add(&wl, w->sel);
			n--;
		}
	}
	pthread_mutex_unlock(&ch->lock);
	zk__wakelist_flush(&wl);
}

/* ---- the bounded queue -------------------------------------------------- */

/* 0, -EAGAIN (full) or -EPIPE (closed). */
static int b_push(struct zk_chan *ch, void *v)
{
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
	for (;;) {
		if (t & CLOSED_BIT)
			return -EPIPE;
		uint64_t pos = t >> 1;
		struct slot *s = slot_at(ch, pos);
		uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		int64_t dif = (int64_t)(seq - 2 * pos);
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&ch->tail, &t, t + 2,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				s->value = v;
				atomic_store_explicit(&s->seq, 2 * pos + 1, memory_order_release);
				/* Pairs with the receiver's fence after it publishes
				 * rx_waiter (see the top of this file). */
				atomic_thread_fence(memory_order_seq_cst);
				if (atomic_load_explicit(&ch->rx_waiter, memory_order_relaxed))
					wake_rx(ch);
				return 0;
			}
		} else if (dif < 0) {
			return -EAGAIN;
		} else {
			t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
		}
	}
}

static size_t b_pop_many(struct zk_chan *ch, void **buf, size_t max)
{
	uint64_t h = atomic_load_explicit(&ch->head, memory_order_relaxed);
	size_t k = 0;
	while (k < max) {
		struct slot *s = slot_at(ch, h);
		if (atomic_load_explicit(&s->seq, memory_order_acquire) != 2 * h + 1)
			break;
		buf[k++] = s->value;
		atomic_store_explicit(&s->seq, 2 * (h + ch->cap), memory_order_release);
		h++;
	}
	if (k) {
		atomic_store_explicit(&ch->head, h, memory_order_release);
		/* Pairs with a producer's fence after it counts itself in
		 * nsend_wait. */
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&ch->nsend_wait, memory_order_relaxed))
			wake_senders(ch, k);
	}
	return k;
}

/* The receiver can make progress: a message at head, or closed and every
 * position sent before the close already received. */
static bool b_rx_ready(struct zk_chan *ch)
{
	uint64_t h = atomic_load_explicit(&ch->head, memory_order_relaxed);
	if (atomic_load_explicit(&slot_at(ch, h)->seq, memory_order_acquire) == 2 * h + 1)
		return true;
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
	return (t & CLOSED_BIT) && (t >> 1) == h;
}

static bool b_tx_ready(struct zk_chan *ch)
{
	uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
	if (t & CLOSED_BIT)
		return true;
	uint64_t pos = t >> 1;
	uint64_t seq = atomic_load_explicit(&slot_at(ch, pos)->seq, memory_order_acquire);
	return (int64_t)(seq - 2 * pos) >= 0;
}

/* ---- the unbounded ring ---------------------------------------------------- */

static int u_push(struct zk_chan *ch, void *v)
{
	struct zk__sel *s = NULL;
	pthread_mutex_lock(&ch->lock);
	if (atomic_load_explicit(&ch->closed, memory_order_relaxed)) {
		pthread_mutex_unlock(&ch->lock);
		return -EPIPE;
	}
	if (ch->ulen == ch->ucap) {
		size_t ncap = ch->ucap * 2;
		void **nb = zk__alloc(ncap * sizeof(void *));
		if (!nb) {
			pthread_mutex_unlock(&ch->lock);
			return -ENOMEM;
		}
		for (size_t i = 0; i < ch->ulen; i++)
			nb[i] = ch->ubuf[(ch->uhead + i) % ch->ucap];
		zk__free(ch->ubuf);
		ch->ubuf = nb;
		ch->ucap = ncap;
		ch->uhead = 0;
	}
	ch->ubuf[(ch->uhead + ch->ulen) % ch->ucap] = v;
	ch->ulen++;
	atomic_store_explicit(&ch->ulen_hint, ch->ulen, memory_order_release);
	struct zk__waiter *w = atomic_load_explicit(&ch->rx_waiter, memory_order_relaxed);
	if (w) {
		atomic_store_explicit(&ch->rx_waiter, NULL, memory_order_relaxed);
		if (zk__waiter_claim(w))
			s = w->sel;
	}
	pthread_mutex_unlock(&ch->lock);
	if (s)
		zk__sel_wake(s);
	return 0;
}

static size_t u_pop_many(struct zk_chan *ch, void **buf, size_t max)
{
	if (atomic_load_explicit(&ch->ulen_hint, memory_order_acquire) == 0)
		return 0;
	pthread_mutex_lock(&ch->lock);
	size_t k = 0;
	while (k < max && ch->ulen) {
		buf[k++] = ch->ubuf[ch->uhead];
		ch->uhead = ch->uhead + 1 == ch->ucap ? 0 : ch->uhead + 1;
		ch->ulen--;
	}
	atomic_store_explicit(&ch->ulen_hint, ch->ulen, memory_order_release);
	pthread_mutex_unlock(&ch->lock);
	return k;
}

/* ---- common ------------------------------------------------------------------ */

static int push(struct zk_chan *ch, void *v)
{
	return ch->cap ? b_push(ch, v) : u_push(ch, v);
}

static size_t pop_many(struct zk_chan *ch, void **buf, size_t max)
{
	return ch->cap ? b_pop_many(ch, buf, max) : u_pop_many(ch, buf, max);
}

/* Closed and nothing left to receive. */
static bool drained(struct zk_chan *ch)
{
	if (ch->cap) {
		uint64_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
		if (!(t & CLOSED_BIT) ||
		    (t >> 1) != atomic_load_explicit(&ch->head, memory_order_relaxed))
			return false;
		/* Wait out a zk_chan_close() still inside its locked region. */
		pthread_mutex_lock(&ch->lock);
		pthread_mutex_unlock(&ch->lock);
		return true;
	}
	if (!atomic_load_explicit(&ch->closed, memory_order_acquire))
		return false;
	pthread_mutex_lock(&ch->lock);
	bool empty = ch->ulen == 0;
	pthread_mutex_unlock(&ch->lock);
	return empty;
}

/* ---- receive arm: a->value = void **buf, a->n = max, res = count ----------- */

static bool rx_try(struct zk__arm *a)
{
	struct zk_chan *ch = a->obj;
	size_t k = pop_many(ch, a->value, a->n);
	if (k) {
		a->res = k > INT32_MAX ? INT32_MAX : (int)k;
		return true;
	}
	if (drained(ch)) {
		a->res = -EPIPE;
		return true;
	}
	return false;
}

static int rx_reg(struct zk__arm *a)
{
	struct zk_chan *ch = a->obj;
	pthread_mutex_lock(&ch->lock);
	struct zk__waiter *cur = atomic_load_explicit(&ch->rx_waiter, memory_order_relaxed);
	if (cur && cur != &a->w) {
		pthread_mutex_unlock(&ch->lock);
		/* Another receiver waits: MPSC allows one. */
		if (!zk__waiter_claim(&a->w))
			return ZK__REG_LOST;
		a->res = -EBUSY;
		a->done = true;
		return ZK__REG_CLAIMED;
	}
	bool ready = false;
	if (!ch->cap)
		ready = ch->ulen > 0 || atomic_load_explicit(&ch->closed, memory_order_relaxed);
	if (!ready)
		atomic_store_explicit(&ch->rx_waiter, &a->w, memory_order_relaxed);
	pthread_mutex_unlock(&ch->lock);
	if (ch->cap && !ready) {
		/* Pairs with a producer's fence after it stores a slot. */
		atomic_thread_fence(memory_order_seq_cst);
		ready = b_rx_ready(ch);
	}
	if (!ready)
		return ZK__REG_WAIT;
	return zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
}

static void rx_unreg(struct zk__arm *a)
{
	struct zk_chan *ch = a->obj;
	/* Always under the lock: a producer that took our waiter out of
	 * rx_waiter may still be claiming it there. */
	pthread_mutex_lock(&ch->lock);
	if (atomic_load_explicit(&ch->rx_waiter, memory_order_relaxed) == &a->w)
		atomic_store_explicit(&ch->rx_waiter, NULL, memory_order_relaxed);
	pthread_mutex_unlock(&ch->lock);
}

const struct zk__arm_ops zk__chan_recv_arm = {
	.try_op = rx_try, .reg = rx_reg, .unreg = rx_unreg, .finish = rx_try,
};

/* ---- send arm: a->value = the message ----------------------------------------- */

static bool tx_try(struct zk__arm *a)
{
	int r = push(a->obj, a->value);
	if (r == -EAGAIN)
		return false;
	a->res = r;
	return true;
}

static int tx_reg(struct zk__arm *a)
{
	struct zk_chan *ch = a->obj;
	if (!ch->cap) /* never full: try_op only fails for bounded channels */
		return zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
	pthread_mutex_lock(&ch->lock);
	zk__waitq_push(&ch->send_q, &a->w);
	atomic_fetch_add_explicit(&ch->nsend_wait, 1, memory_order_relaxed);
	pthread_mutex_unlock(&ch->lock);
	/* Pairs with the consumer's fence after it frees slots. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!b_tx_ready(ch))
		return ZK__REG_WAIT;
	return zk__waiter_claim(&a->w) ? ZK__REG_CLAIMED : ZK__REG_LOST;
}

static void tx_unreg(struct zk__arm *a)
{
	struct zk_chan *ch = a->obj;
	if (!ch->cap)
		return;
	pthread_mutex_lock(&ch->lock);
	if (a->w.linked) {
		zk__waitq_remove(&ch->send_q, &a->w);
		atomic_fetch_sub_explicit(&ch->nsend_wait, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&ch->lock);
}

const struct zk__arm_ops zk__chan_send_arm = {
	.try_op = tx_try, .reg = tx_reg, .unreg = tx_unreg, .finish = tx_try,
};

/* ---- public API --------------------------------------------------------------- */

static int send_common(zk_chan_t *ch, void *value, uint64_t deadline)
{
	if (!ch)
		return -EINVAL;
	struct zk__arm a = {.ops = &zk__chan_send_arm, .obj = ch, .value = value};
	return zk__wait_one(&a, deadline, 0);
}

int zk_chan_send(zk_chan_t *ch, void *value)
{
	return send_common(ch, value, ZK__NO_DEADLINE);
}

int zk_chan_send_timeout(zk_chan_t *ch, void *value, uint64_t timeout_ns)
{
	return send_common(ch, value, zk__deadline_after(timeout_ns));
}

int zk_chan_try_send(zk_chan_t *ch, void *value)
{
	if (!ch)
		return -EINVAL;
	return push(ch, value);
}

static int recv_common(zk_chan_t *ch, void **buf, size_t max, uint64_t deadline)
{
	if (!ch || !buf || max == 0)
		return -EINVAL;
	struct zk__arm a = {.ops = &zk__chan_recv_arm, .obj = ch, .value = buf, .n = max};
	return zk__wait_one(&a, deadline, 0);
}

int zk_chan_recv(zk_chan_t *ch, void **value)
{
	void *dummy;
	int r = recv_common(ch, value ? value : &dummy, 1, ZK__NO_DEADLINE);
	return r > 0 ? 0 : r;
}

int zk_chan_recv_timeout(zk_chan_t *ch, void **value, uint64_t timeout_ns)
{
	void *dummy;
	int r = recv_common(ch, value ? value : &dummy, 1, zk__deadline_after(timeout_ns));
	return r > 0 ? 0 : r;
}

int zk_chan_try_recv(zk_chan_t *ch, void **value)
{
	void *dummy;
	int r = recv_common(ch, value ? value : &dummy, 1, ZK__DEADLINE_NOW);
	if (r == -ETIMEDOUT)
		return -EAGAIN;
	return r > 0 ? 0 : r;
}

int zk_chan_recv_many(zk_chan_t *ch, void **buf, size_t max)
{
	return recv_common(ch, buf, max, ZK__NO_DEADLINE);
}

int zk_chan_recv_many_timeout(zk_chan_t *ch, void **buf, size_t max, uint64_t timeout_ns)
{
	return recv_common(ch, buf, max, zk__deadline_after(timeout_ns));
}

int zk_chan_try_recv_many(zk_chan_t *ch, void **buf, size_t max)
{
	int r = recv_common(ch, buf, max, ZK__DEADLINE_NOW);
	return r == -ETIMEDOUT ? -EAGAIN : r;
}

int zk_chan_close(zk_chan_t *ch)
{
	if (!ch)
		return -EINVAL;
	bool was;
	/* Closing and waking happen in one locked region, and drained() takes
	 * the lock before it reports -EPIPE: a receiver that sees the channel
	 * closed and frees it cannot do so while we still use it. */
	pthread_mutex_lock(&ch->lock);
	if (ch->cap) {
		/* The CLOSED bit first: from here no send gets a position. */
		uint64_t t = atomic_fetch_or_explicit(&ch->tail, CLOSED_BIT, memory_order_acq_rel);
		was = t & CLOSED_BIT;
	} else {
		was = atomic_load_explicit(&ch->closed, memory_order_relaxed);
	}
	atomic_store_explicit(&ch->closed, true, memory_order_release);
	if (was) {
		pthread_mutex_unlock(&ch->lock);
		return -EALREADY;
	}
	struct zk__wakelist wl = {NULL, NULL};
	struct zk__waiter *w = atomic_load_explicit(&ch->rx_waiter, memory_order_relaxed);
	if (w) {
		atomic_store_explicit(&ch->rx_waiter, NULL, memory_order_relaxed);
		if (zk__waiter_claim(w))
			zk__wakelist_add(&wl, w->sel);
	}
	while ((w = zk__waitq_pop(&ch->send_q))) {
		atomic_fetch_sub_explicit(&ch->nsend_wait, 1, memory_order_relaxed);
		if (zk__waiter_claim(w))
			zk__wakelist_add(&wl, w->sel);
	}
	pthread_mutex_unlock(&ch->lock);
	zk__wakelist_flush(&wl);
	return 0;
}

int zk_chan_sender_add(zk_chan_t *ch)
{
	if (!ch)
		return -EINVAL;
	atomic_fetch_add_explicit(&ch->senders, 1, memory_order_relaxed);
	return 0;
}

int zk_chan_sender_drop(zk_chan_t *ch)
{
	if (!ch)
		return -EINVAL;
	long prev = atomic_fetch_sub_explicit(&ch->senders, 1, memory_order_acq_rel);
	if (prev <= 0) {
		atomic_fetch_add_explicit(&ch->senders, 1, memory_order_relaxed);
		return -EINVAL;
	}
	if (prev == 1)
		zk_chan_close(ch);
	return 0;
}
