/* lib/waitq.h — waiting for the first of several events: the core under
 * every primitive of sync.h and select.h (see waitq.c for the protocol).
 *
 * Vocabulary.
 *   selection (struct zk__sel)  one wait of one task (or foreign thread): a
 *       claim word, an optional deadline timer, and the struct zk__wait the
 *       task publishes. Lives on the waiter's stack.
 *   arm (struct zk__arm)        one operation the selection waits for (a
 *       receive on a channel, a semaphore acquire, ...) with its waiter
 *       record, registered with that primitive.
 *   claim                       the first party to move the claim word from
 *       ZK__SEL_OPEN to an arm index (a waker, or the waiter itself), to
 *       ZK__SEL_TIMEDOUT (the timer) or to ZK__SEL_CANCELED (zk_cancel) wins;
 *       the winner, and only the winner, wakes the waiter, exactly once.
 *
 * A primitive keeps its waiters in a struct zk__waitq under its own lock.
 * A waker pops a waiter and tries to claim its selection; if the claim
 * fails (the selection was won elsewhere, timed out or was cancelled) the
 * waiter is stale and the waker moves on to the next one, so nothing the
 * waker hands out is lost. The waiter removes its stale registrations itself
 * after it wakes, under each primitive's lock. */
#ifndef ZOKIO_WAITQ_H
#define ZOKIO_WAITQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "zokio/sync.h"

/* Claim values other than an arm index (>= 0). */
#define ZK__SEL_OPEN (-1)
#define ZK__SEL_CANCELED (-2)
#define ZK__SEL_TIMEDOUT (-3)

/* Deadlines are absolute zk_now_ns() values. */
#define ZK__NO_DEADLINE UINT64_MAX
/* Deadline meaning "do not wait at all" (a zero timeout). */
#define ZK__DEADLINE_NOW 0u

struct zk__sel {
	struct zk__wait wait;      /* first member: published in task->wait */
	struct zk_task *task;      /* the waiter, or NULL for a foreign thread */
	_Atomic int claim;         /* ZK__SEL_OPEN until claimed */
	bool self_claimed;         /* the waiter won its own claim: no wake */
	bool published;            /* task->wait points here */
	bool parked;               /* zk__task_park ran (it unpublished) */
	uint64_t deadline;         /* absolute, or ZK__NO_DEADLINE */
	/* Deadline timer of a task: on the wheel of worker tw, which owns the
	 * wait while it is armed (only tw's thread may touch its wheel). */
	struct zk__worker *tw;     /* NULL: no timer armed */
	struct zk__timer tm;
	uint64_t tick;             /* the deadline's tick (the wheel clamps far
	                            * deadlines: tm.when may be earlier) */
	_Atomic bool timer_done;   /* tw is done with tm (fired or removed) */
	bool disarm_done;          /* disarm callback ran (under wait_lock) */
	/* Foreign thread: blocks on a condition variable instead. */
	pthread_mutex_t fmu;
	pthread_cond_t fcond;
	bool fdone;                /* woken (under fmu) */
	struct zk__sel *wake_next; /* zk__wakelist link */
};

/* A registration of one arm with one primitive (intrusive FIFO node). */
struct zk__waiter {
	struct zk__waiter *prev, *next;
	struct zk__sel *sel;
	int arm;                   /* this arm's index in the selection */
	bool linked;               /* in a zk__waitq */
	uint64_t want;             /* request (permits, ...) */
	void *item;                /* hand-over slot (a finished join, ...) */
	int res;                   /* hand-over result */
};

/* struct zk__waitq { head, tail } is declared in zokio/sync.h, where the
 * caller-owned primitives embed it. */

static inline void zk__waitq_push(struct zk__waitq *q, struct zk__waiter *w)
{
	w->next = NULL;
	w->prev = q->tail;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	w->linked = true;
}

static inline void zk__waitq_remove(struct zk__waitq *q, struct zk__waiter *w)
{
	if (!w->linked)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->prev = w->next = NULL;
	w->linked = false;
}

static inline struct zk__waiter *zk__waitq_pop(struct zk__waitq *q)
{
	struct zk__waiter *w = q->head;
	if (w)
		zk__waitq_remove(q, w);
	return w;
}

static inline bool zk__waitq_empty(const struct zk__waitq *q)
{
	return q->head == NULL;
}

/* Wakes collected under a primitive's lock and delivered after it is
 * released (a wake may write an eventfd; no need to hold the lock for it). */
struct zk__wakelist {
	struct zk__sel *head, *tail; /* FIFO: woken in the order claimed */
};

/* Tries to claim w's selection for w's arm. On success the caller owns the
 * wake: it hands over whatever it promised (w->res, w->item) and then wakes
 * the selection with zk__sel_wake (or zk__wakelist_add), exactly once. */
static inline bool zk__waiter_claim(struct zk__waiter *w)
{
	int open = ZK__SEL_OPEN;
	return atomic_compare_exchange_strong_explicit(&w->sel->claim, &open, w->arm,
						       memory_order_acq_rel, memory_order_acquire);
}

void zk__sel_wake(struct zk__sel *s);

static inline void zk__wakelist_add(struct zk__wakelist *l, struct zk__sel *s)
{
	s->wake_next = NULL;
	if (l->tail)
		l->tail->wake_next = s;
	else
		l->head = s;
	l->tail = s;
}

static inline void zk__wakelist_flush(struct zk__wakelist *l)
{
	struct zk__sel *s = l->head;
	l->head = l->tail = NULL;
	while (s) {
		/* Read the link first: the wake may let the waiter return. */
		struct zk__sel *next = s->wake_next;
		zk__sel_wake(s);
		s = next;
	}
}

/* ---- arms -------------------------------------------------------------- */

struct zk__arm;

/* What reg() reports. */
enum {
	ZK__REG_WAIT = 0,    /* registered; a waker will claim it */
	ZK__REG_CLAIMED = 1, /* ready: the caller claimed the selection for this
	                      * arm (it may still be registered: unreg is called) */
	ZK__REG_LOST = 2,    /* ready, but the selection was already claimed */
};

/* The finish() of every arm whose result is just the waker's w.res. */
struct zk__arm;
bool zk__arm_finish_res(struct zk__arm *a);

struct zk__arm_ops {
	/* Performs the operation if it can complete without waiting: returns
	 * true with a->res set, else false. Never registers anything. */
	bool (*try_op)(struct zk__arm *a);
	/* Registers a->w (a->w.sel and a->w.arm are set) and re-checks
	 * readiness; returns ZK__REG_*. An arm that hands its result over in
	 * reg sets a->done. */
	int (*reg)(struct zk__arm *a);
	/* Removes a->w if still registered. Idempotent. */
	void (*unreg)(struct zk__arm *a);
	/* The selection was claimed for this arm: completes the operation.
	 * Returns true with a->res set, or false if it is not ready after all
	 * (the whole wait is retried). NULL: the result was handed over in
	 * a->w.res / a->w.item and copied by the arm's caller. */
	bool (*finish)(struct zk__arm *a);
};

struct zk__arm {
	const struct zk__arm_ops *ops;
	void *obj;           /* the primitive */
	void *value;         /* operation argument / result slot */
	uint64_t n;          /* operation count (permits, batch size, ...) */
	uint64_t aux;        /* second output (task id, missed messages) */
	int res;             /* result once done */
	bool done;           /* res is final (set by reg/try) */
	bool registered;
	struct zk__waiter w;
};

/* Flags of zk__select. */
#define ZK__SEL_NOCANCEL 1u /* ignore cancellation (joining children) */

/* Waits until one of the n arms completes and returns its index (its res
 * set), trying them from index `start` on. Returns -ETIMEDOUT when the
 * deadline passes first (ZK__DEADLINE_NOW: only try), -ECANCELED when the
 * calling task is cancelled (before or during), -EPERM on a worker thread
 * outside a task. From a foreign thread it blocks the thread. */
int zk__select(struct zk__arm *arms, size_t n, size_t start, uint64_t deadline, unsigned flags);

/* Single-arm convenience: returns a->res, or -ETIMEDOUT/-ECANCELED/-EPERM. */
int zk__wait_one(struct zk__arm *a, uint64_t deadline, unsigned flags);

/* timeout (ns from now; UINT64_MAX = none; 0 = do not wait) -> deadline. */
uint64_t zk__deadline_after(uint64_t timeout_ns);

/* A pseudo-random start index in [0, n) for fair selection. */
size_t zk__sel_start(size_t n);

#endif
