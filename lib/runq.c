/* lib/runq.c — the per-worker local run queue: bounded, lock-free, FIFO for
 * its owner, and stealable by other workers half at a time.
 *
 * The design follows Tokio's queue.rs. The owner pushes at tail and pops at
 * head; a stealer claims a range [head, head + n) by moving only the "real"
 * half of the packed head word, copies the tasks out, then moves the "steal"
 * half to match. While steal != real the owner keeps popping (it advances
 * real) but will not overwrite the slots being copied: push checks capacity
 * against the steal cursor. Only one stealer works on a queue at a time (a
 * second one sees steal != real and goes elsewhere), which keeps the protocol
 * to two CASes per steal.
 *
 * Slots are atomics accessed relaxed: their ordering comes from the release
 * store of tail (push) and the acq_rel CAS on head (pop/steal), but a stealer
 * may read a slot that the owner is about to reuse after the steal's CAS
 * failed; relaxed atomics make that benign read well-defined. */
#include "runq.h"

#include "internal.h"

static inline uint32_t unpack_steal(uint64_t h) { return (uint32_t)(h >> 32); }
static inline uint32_t unpack_real(uint64_t h) { return (uint32_t)h; }
static inline uint64_t pack(uint32_t steal, uint32_t real)
{
	return ((uint64_t)steal << 32) | real;
}

void zk__runq_init(struct zk__runq *q)
{
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	for (unsigned i = 0; i < ZK__RUNQ_CAP; i++)
		atomic_init(&q->buf[i], NULL);
}

/* Moves half of a full queue, plus t, to the global queue. False if a
 * stealer got there first (the queue is no longer full: retry the push). */
static bool push_overflow(struct zk__runq *q, struct zk_task *t, uint32_t head, uint32_t tail,
			  struct zk__inject *overflow)
{
	const uint32_t n = ZK__RUNQ_CAP / 2;
	uint64_t prev = pack(head, head);
	if (!atomic_compare_exchange_strong_explicit(&q->head, &prev, pack(head + n, head + n),
						     memory_order_release, memory_order_relaxed))
		return false;
	(void)tail;
	struct zk_task *first = atomic_load_explicit(&q->buf[head & ZK__RUNQ_MASK],
						     memory_order_relaxed);
	struct zk_task *last = first;
	for (uint32_t i = 1; i < n; i++) {
		struct zk_task *x =
		    atomic_load_explicit(&q->buf[(head + i) & ZK__RUNQ_MASK], memory_order_relaxed);
		last->next = x;
		last = x;
	}
	last->next = t;
	t->next = NULL;
	zk__inject_push_batch(overflow, first, t, n + 1);
	return true;
}

void zk__runq_push(struct zk__runq *q, struct zk_task *t, struct zk__inject *overflow)
{
	for (;;) {
		uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
		uint32_t steal = unpack_steal(h), real = unpack_real(h);
		uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
		if (tail - steal < ZK__RUNQ_CAP) {
			atomic_store_explicit(&q->buf[tail & ZK__RUNQ_MASK], t, memory_order_relaxed);
			atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
			return;
		}
		if (steal != real) {
			/* A stealer is about to free half the queue; do not wait
			 * for it, hand this one task to the global queue. */
			t->next = NULL;
			zk__inject_push(overflow, t);
			return;
		}
		if (push_overflow(q, t, real, tail, overflow))
			return;
	}
}

struct zk_task *zk__runq_pop(struct zk__runq *q)
{
	uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	for (;;) {
		uint32_t steal = unpack_steal(h), real = unpack_real(h);
		uint32_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
		if (real == tail)
			return NULL;
		uint32_t next_real = real + 1;
		uint64_t next = steal == real ? pack(next_real, next_real) : pack(steal, next_real);
		if (atomic_compare_exchange_weak_explicit(&q->head, &h, next, memory_order_acq_rel,
							  memory_order_acquire))
			return atomic_load_explicit(&q->buf[real & ZK__RUNQ_MASK],
						    memory_order_relaxed);
	}
}

/* Claims half of src's tasks and copies them into dst starting at dst_tail.
 * Returns how many were copied. */
static uint32_t steal_into(struct zk__runq *src, struct zk__runq *dst, uint32_t dst_tail)
{
	uint64_t prev = atomic_load_explicit(&src->head, memory_order_acquire);
	uint32_t n, first;
	for (;;) {
		uint32_t steal = unpack_steal(prev), real = unpack_real(prev);
		if (steal != real)
			return 0; /* another stealer is at work */
		uint32_t tail = atomic_load_explicit(&src->tail, memory_order_acquire);
		n = tail - real;
		n -= n / 2;
		if (n == 0)
			return 0;
		if (n > ZK__RUNQ_CAP / 2)
			n = ZK__RUNQ_CAP / 2;
		uint64_t next = pack(steal, real + n);
		if (atomic_compare_exchange_weak_explicit(&src->head, &prev, next,
							  memory_order_acq_rel,
							  memory_order_acquire)) {
			first = real;
			break;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct zk_task *t = atomic_load_explicit(&src->buf[(first + i) & ZK__RUNQ_MASK],
							 memory_order_relaxed);
		atomic_store_explicit(&dst->buf[(dst_tail + i) & ZK__RUNQ_MASK], t,
				      memory_order_relaxed);
	}
	/* Done copying: let the steal cursor catch up with real. */
	prev = atomic_load_explicit(&src->head, memory_order_acquire);
	for (;;) {
		uint32_t real = unpack_real(prev);
		if (atomic_compare_exchange_weak_explicit(&src->head, &prev, pack(real, real),
							  memory_order_acq_rel,
							  memory_order_acquire))
			break;
	}
	return n;
}

struct zk_task *zk__runq_steal(struct zk__runq *src, struct zk__runq *dst)
{
	uint32_t n;
	return zk__runq_steal_n(src, dst, &n);
}

struct zk_task *zk__runq_steal_n(struct zk__runq *src, struct zk__runq *dst, uint32_t *nout)
{
	*nout = 0;
	uint32_t dst_tail = atomic_load_explicit(&dst->tail, memory_order_relaxed);
	uint64_t dh = atomic_load_explicit(&dst->head, memory_order_acquire);
	/* Only steal into a queue with room for half a queue. */
	if (dst_tail - unpack_steal(dh) > ZK__RUNQ_CAP / 2)
		return NULL;
	uint32_t n = steal_into(src, dst, dst_tail);
	if (n == 0)
		return NULL;
	*nout = n;
	n--;
	struct zk_task *ret = atomic_load_explicit(&dst->buf[(dst_tail + n) & ZK__RUNQ_MASK],
						   memory_order_relaxed);
	if (n)
		atomic_store_explicit(&dst->tail, dst_tail + n, memory_order_release);
	return ret;
}

bool zk__runq_empty(struct zk__runq *q)
{
	uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	return unpack_real(h) == atomic_load_explicit(&q->tail, memory_order_acquire);
}

uint32_t zk__runq_len(struct zk__runq *q)
{
	uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	return atomic_load_explicit(&q->tail, memory_order_acquire) - unpack_real(h);
}
