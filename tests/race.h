/* tests/race.h — two actions at the same instant, for the "cancel vs
 * wake" race tests: each runs on its own plain thread, and both threads
 * spin until the other is there too, so the two calls overlap as closely as
 * the machine allows. Test code only (the runtime itself never spins). */
#ifndef ZOKIO_TESTS_RACE_H
#define ZOKIO_TESTS_RACE_H

#include <pthread.h>
#include <stdatomic.h>

struct zt_racer {
	void (*fn)(void *);
	void *arg;
	atomic_int *arrived;
};

static void *zt_racer_main(void *p)
{
	struct zt_racer *r = p;
	atomic_fetch_add(r->arrived, 1);
	while (atomic_load(r->arrived) < 2)
		;
	r->fn(r->arg);
	return NULL;
}

/* Runs a(arg) and b(arg) at once on two threads; returns when both ran.
 * Blocks the calling thread (from a task: its worker) meanwhile. */
static inline void zt_race2(void (*a)(void *), void (*b)(void *), void *arg)
{
	atomic_int arrived = 0;
	struct zt_racer ra = {a, arg, &arrived}, rb = {b, arg, &arrived};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, zt_racer_main, &ra);
	pthread_create(&tb, NULL, zt_racer_main, &rb);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
}

#endif
