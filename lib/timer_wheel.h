/* lib/timer_wheel.h — a worker's hierarchical timer wheel (see timer_wheel.c). */
#ifndef ZOKIO_TIMER_WHEEL_H
#define ZOKIO_TIMER_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#define ZK__WHEEL_LEVELS 6
#define ZK__WHEEL_SLOTS 64

struct zk__timer {
	struct zk__timer *prev, *next;
	uint64_t when;           /* deadline in wheel ticks (ms since start) */
	uint8_t level, slot;
	bool linked;             /* in a slot list */
	void (*fire)(struct zk__timer *t);
	void *ctx;
};

struct zk__timer_wheel {
	uint64_t start_ns;       /* zk_now_ns() at tick 0 */
	uint64_t elapsed;        /* ticks processed */
	uint64_t occupied[ZK__WHEEL_LEVELS];
	struct zk__timer *slots[ZK__WHEEL_LEVELS][ZK__WHEEL_SLOTS];
	unsigned count;          /* timers in the wheel */
};

void zk__wheel_init(struct zk__timer_wheel *w, uint64_t now_ns);
/* Converts an absolute deadline to a tick, rounding up: never early. */
uint64_t zk__wheel_tick_for(const struct zk__timer_wheel *w, uint64_t deadline_ns);
/* Inserts t to fire at tick t->when. Returns false (and does not insert)
 * if that tick has already been processed: the caller treats it as fired. */
bool zk__wheel_insert(struct zk__timer_wheel *w, struct zk__timer *t);
/* Removes t if it is still in the wheel; returns true if it was. */
bool zk__wheel_remove(struct zk__timer_wheel *w, struct zk__timer *t);
/* Fires every timer due at or before now_ns. Returns how many fired. */
unsigned zk__wheel_advance(struct zk__timer_wheel *w, uint64_t now_ns);
/* Nanoseconds from now_ns until the next timer is due (0 if one is due
 * now), or -1 if the wheel is empty. */
int64_t zk__wheel_timeout(const struct zk__timer_wheel *w, uint64_t now_ns);

#endif
