/* lib/idle.c — which workers are parked and which are searching for work.
 *
 * Waking a parked worker costs a syscall (an eventfd write that ends its
 * io_uring_enter), so a worker that queues new work wakes another only when
 * nobody is searching already (zk__idle_should_notify). Searching is capped
 * at half the workers: with more searchers than that, stealers mostly steal
 * from each other. A searcher that finds work and was the last one searching
 * wakes one more worker, so a burst of spawns spreads like a chain reaction
 * without a thundering herd (Tokio's idle.rs works the same way).
 *
 * No lost wake-ups: a worker first marks itself parked here (under the lock,
 * with a seq_cst update of state) and then re-checks every queue before it
 * sleeps; a producer first publishes its task and then reads state. One of
 * the two always sees the other. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define UNPARK_MASK 0xffffu
#define SEARCH_ONE (1u << 16)

static inline unsigned num_searching(uint32_t s) { return s >> 16; }
static inline unsigned num_unparked(uint32_t s) { return s & UNPARK_MASK; }

int zk__idle_init(struct zk__idle *idle, unsigned nworkers)
{
	idle->sleepers = calloc(nworkers, sizeof(*idle->sleepers));
	if (!idle->sleepers)
		return -ENOMEM;
	atomic_init(&idle->state, nworkers);
	pthread_mutex_init(&idle->lock, NULL);
	idle->nsleepers = 0;
	idle->nworkers = nworkers;
	return 0;
}

void zk__idle_destroy(struct zk__idle *idle)
{
	pthread_mutex_destroy(&idle->lock);
	free(idle->sleepers);
	idle->sleepers = NULL;
}

bool zk__idle_should_notify(struct zk__idle *idle)
{
	uint32_t s = atomic_load_explicit(&idle->state, memory_order_seq_cst);
	return num_searching(s) == 0 && num_unparked(s) < idle->nworkers;
}

/* Picks a parked worker to wake and counts it as unparked and searching.
 * Returns its index, or -1 if no wake-up is needed. */
int zk__idle_worker_to_notify(struct zk__idle *idle)
{
	if (!zk__idle_should_notify(idle))
		return -1;
	pthread_mutex_lock(&idle->lock);
	int idx = -1;
	if (zk__idle_should_notify(idle) && idle->nsleepers > 0) {
		atomic_fetch_add_explicit(&idle->state, SEARCH_ONE + 1, memory_order_seq_cst);
		idx = idle->sleepers[--idle->nsleepers];
	}
	pthread_mutex_unlock(&idle->lock);
	return idx;
}

/* The worker goes to sleep. Returns true if it was the last searcher: then
 * it must look at every queue once more before sleeping. */
bool zk__idle_to_parked(struct zk__idle *idle, unsigned index, bool searching)
{
	pthread_mutex_lock(&idle->lock);
	uint32_t dec = 1 + (searching ? SEARCH_ONE : 0);
	uint32_t prev = atomic_fetch_sub_explicit(&idle->state, dec, memory_order_seq_cst);
	idle->sleepers[idle->nsleepers++] = (uint16_t)index;
	pthread_mutex_unlock(&idle->lock);
	return searching && num_searching(prev) == 1;
}

bool zk__idle_to_searching(struct zk__idle *idle)
{
	uint32_t s = atomic_load_explicit(&idle->state, memory_order_seq_cst);
	if (2 * num_searching(s) >= idle->nworkers)
		return false;
	atomic_fetch_add_explicit(&idle->state, SEARCH_ONE, memory_order_seq_cst);
	return true;
}

/* Returns true if the caller was the last searcher (and should wake one). */
bool zk__idle_from_searching(struct zk__idle *idle)
{
	uint32_t prev = atomic_fetch_sub_explicit(&idle->state, SEARCH_ONE, memory_order_seq_cst);
	return num_searching(prev) == 1;
}

/* A parked worker woke up: take it off the sleepers list if a notifier has
 * not already done so. Returns true if it was still listed (it woke on its
 * own: I/O, timer, inbox); false if a notifier took it off and counted it as
 * searching. */
bool zk__idle_unpark(struct zk__idle *idle, unsigned index)
{
	bool found = false;
	pthread_mutex_lock(&idle->lock);
	for (unsigned i = 0; i < idle->nsleepers; i++) {
		if (idle->sleepers[i] != index)
			continue;
		idle->sleepers[i] = idle->sleepers[--idle->nsleepers];
		atomic_fetch_add_explicit(&idle->state, 1, memory_order_seq_cst);
		found = true;
		break;
	}
	pthread_mutex_unlock(&idle->lock);
	return found;
}
