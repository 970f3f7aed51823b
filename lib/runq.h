/* lib/runq.h — a worker's bounded local run queue (see runq.c). */
#ifndef ZOKIO_RUNQ_H
#define ZOKIO_RUNQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* 256 slots, as in Tokio: large enough that a burst of spawns rarely spills
 * to the global queue, small enough that a steal of half stays cheap. */
#define ZK__RUNQ_CAP 256u
#define ZK__RUNQ_MASK (ZK__RUNQ_CAP - 1)

struct zk_task;

struct zk__runq {
	/* Two u32 cursors packed in one word: high = steal, low = real head.
	 * They differ only while a stealer is copying tasks out. */
	_Alignas(64) _Atomic uint64_t head;
	/* Written by the owner only. */
	_Alignas(64) _Atomic uint32_t tail;
	_Alignas(64) _Atomic(struct zk_task *) buf[ZK__RUNQ_CAP];
};

struct zk__inject;

void zk__runq_init(struct zk__runq *q);
/* Owner only. Pushes t; if the queue is full, moves half of it plus t to
 * the global queue in one batch. */
void zk__runq_push(struct zk__runq *q, struct zk_task *t, struct zk__inject *overflow);
/* Owner only: FIFO pop. */
struct zk_task *zk__runq_pop(struct zk__runq *q);
/* Any worker: steal half of src into dst (dst's owner calls) and return one
 * of the stolen tasks to run, or NULL. */
struct zk_task *zk__runq_steal(struct zk__runq *src, struct zk__runq *dst);
/* The same, storing in *n how many tasks moved (the one returned included). */
struct zk_task *zk__runq_steal_n(struct zk__runq *src, struct zk__runq *dst, uint32_t *n);
bool zk__runq_empty(struct zk__runq *q);
uint32_t zk__runq_len(struct zk__runq *q);

#endif
