/* lib/timer_wheel.c — the hierarchical timer wheel each worker owns.
 *
 * Six levels of 64 slots; a slot at level L spans 64^L ticks of 1 ms, so the
 * wheel reaches 64^6 ms (about 2.2 years) ahead; a later deadline is clamped
 * and the sleeper simply sleeps again. A timer goes to the level of the
 * highest bit in which its deadline differs from the current tick, so the
 * slot it lands in is never the current slot of that level and the lowest
 * non-empty level always holds the earliest deadline. When time reaches a
 * slot of level L > 0 its timers cascade to lower levels. Insert and remove
 * are O(1); finding the next deadline scans at most six 64-bit masks.
 *
 * Timer records are intrusive and owned by the caller (a sleeping task keeps
 * its record on its own stack): the wheel never allocates. */
#include "timer_wheel.h"

#include <string.h>

#define TICK_NS 1000000ull
#define LEVEL_BITS 6u
#define MAX_TICKS ((1ull << (LEVEL_BITS * ZK__WHEEL_LEVELS)) - 1)

void zk__wheel_init(struct zk__timer_wheel *w, uint64_t now_ns)
{
	memset(w, 0, sizeof(*w));
	w->start_ns = now_ns;
}

uint64_t zk__wheel_tick_for(const struct zk__timer_wheel *w, uint64_t deadline_ns)
{
	if (deadline_ns <= w->start_ns)
		return 0;
	uint64_t d = deadline_ns - w->start_ns;
	return d / TICK_NS + (d % TICK_NS != 0);
}

static inline uint64_t slot_range(unsigned level)
{
	return 1ull << (LEVEL_BITS * level);
}

static inline uint64_t level_range(unsigned level)
{
	return 1ull << (LEVEL_BITS * (level + 1));
}

static void link_timer(struct zk__timer_wheel *w, struct zk__timer *t)
{
	uint64_t masked = (w->elapsed ^ t->when) | (ZK__WHEEL_SLOTS - 1);
	unsigned significant = 63u - (unsigned)__builtin_clzll(masked);
	unsigned level = significant / LEVEL_BITS;
	if (level >= ZK__WHEEL_LEVELS)
		level = ZK__WHEEL_LEVELS - 1;
	unsigned slot = (unsigned)((t->when >> (level * LEVEL_BITS)) & (ZK__WHEEL_SLOTS - 1));
	t->level = (uint8_t)level;
	t->slot = (uint8_t)slot;
	t->prev = NULL;
	t->next = w->slots[level][slot];
	if (t->next)
		t->next->prev = t;
	w->slots[level][slot] = t;
	w->occupied[level] |= 1ull << slot;
	t->linked = true;
	w->count++;
}

bool zk__wheel_insert(struct zk__timer_wheel *w, struct zk__timer *t)
{
	if (t->when <= w->elapsed)
		return false;
	if (t->when - w->elapsed > MAX_TICKS)
		t->when = w->elapsed + MAX_TICKS;
	link_timer(w, t);
	return true;
}

bool zk__wheel_remove(struct zk__timer_wheel *w, struct zk__timer *t)
{
	if (!t->linked)
		return false;
	if (t->prev)
		t->prev->next = t->next;
	else
		w->slots[t->level][t->slot] = t->next;
	if (t->next)
		t->next->prev = t->prev;
	if (!w->slots[t->level][t->slot])
		w->occupied[t->level] &= ~(1ull << t->slot);
	t->linked = false;
	t->prev = t->next = NULL;
	w->count--;
	return true;
}

/* The earliest non-empty slot: its level, slot and the tick it starts at. */
static bool next_expiration(const struct zk__timer_wheel *w, unsigned *level_out,
			    unsigned *slot_out, uint64_t *deadline_out)
{
	for (unsigned level = 0; level < ZK__WHEEL_LEVELS; level++) {
		uint64_t occ = w->occupied[level];
		if (!occ)
			continue;
		unsigned now_slot = (unsigned)((w->elapsed / slot_range(level)) % ZK__WHEEL_SLOTS);
		uint64_t rotated = (occ >> now_slot) | (now_slot ? occ << (64 - now_slot) : 0);
		unsigned slot = (now_slot + (unsigned)__builtin_ctzll(rotated)) % ZK__WHEEL_SLOTS;
		uint64_t level_start = w->elapsed & ~(level_range(level) - 1);
		uint64_t deadline = level_start + slot * slot_range(level);
		/* Only the top level wraps: its slots act as a ring. */
		if (deadline <= w->elapsed && level + 1 == ZK__WHEEL_LEVELS)
			deadline += level_range(level);
		*level_out = level;
		*slot_out = slot;
		*deadline_out = deadline;
		return true;
	}
	return false;
}

unsigned zk__wheel_advance(struct zk__timer_wheel *w, uint64_t now_ns)
{
	uint64_t now = now_ns <= w->start_ns ? 0 : (now_ns - w->start_ns) / TICK_NS;
	unsigned fired = 0;
	unsigned level, slot;
	uint64_t deadline;
	while (next_expiration(w, &level, &slot, &deadline) && deadline <= now) {
		struct zk__timer *list = w->slots[level][slot];
		w->slots[level][slot] = NULL;
		w->occupied[level] &= ~(1ull << slot);
		if (deadline > w->elapsed)
			w->elapsed = deadline;
		while (list) {
			struct zk__timer *t = list;
			list = t->next;
			t->linked = false;
			t->prev = t->next = NULL;
			w->count--;
			if (t->when <= now) {
				fired++;
				t->fire(t);
			} else {
				link_timer(w, t); /* cascade to a lower level */
			}
		}
	}
	if (now > w->elapsed)
		w->elapsed = now;
	return fired;
}

int64_t zk__wheel_timeout(const struct zk__timer_wheel *w, uint64_t now_ns)
{
	unsigned level, slot;
	uint64_t deadline;
	if (!next_expiration(w, &level, &slot, &deadline))
		return -1;
	/* For a higher-level slot this is when it cascades, which is no later
	 * than its earliest timer: waking then is correct, merely early. */
	uint64_t at = w->start_ns + deadline * TICK_NS;
	return at <= now_ns ? 0 : (int64_t)(at - now_ns);
}
