/* lib/alloc.c — the runtime's own allocations, from a jemalloc arena per
 * worker.
 *
 * Each worker creates its own arena (arenas.create) at start, so task records
 * and runtime structures allocated on different workers never contend on one
 * arena's locks and stay on the memory of the worker that uses them. Any
 * thread may free any block: jemalloc finds the owning arena from the
 * pointer. Code outside a worker allocates from the default arenas. */
#include <stdlib.h>
#include <string.h>
#ifdef ZK_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "internal.h"

#ifdef ZK_HAVE_JEMALLOC

/* jemalloc's start-up options (read once, at its first allocation). By
 * default it will not carve a slab out of a free extent more than 2^6
 * times the slab's size, to keep big free extents whole; but when a burst
 * of tasks ends, its freed records coalesce into one extent of tens of MiB,
 * so the next burst was served from fresh pages (a page fault per 4 KiB)
 * while that extent sat unused (or was purged): spawn_many ran at less than
 * half the speed of the same code on glibc's malloc. With no limit the
 * freed memory is reused. An application that defines malloc_conf itself
 * overrides this one (the executable's symbol comes first), as does the
 * MALLOC_CONF environment variable for the options it names. */
const char *malloc_conf = "lg_extent_max_active_fit:30";

/* The worker thread is bound to its arena (thread.arena), so a plain
 * mallocx(size, 0) on it allocates from that arena through the thread's
 * cache: an explicit MALLOCX_ARENA flag would take jemalloc's slower path
 * on every call (about 20% more instructions per allocation and free).
 * Threads outside the runtime use their default arena either way. */
void zk__arena_init(struct zk__worker *w)
{
	unsigned idx = 0;
	size_t sz = sizeof(idx);
	w->arena_ok = mallctl("arenas.create", &idx, &sz, NULL, 0) == 0 &&
		      mallctl("thread.arena", NULL, NULL, &idx, sizeof(idx)) == 0;
	w->arena = idx;
}

void *zk__alloc(size_t size)
{
	return mallocx(size, 0);
}

void *zk__calloc(size_t n, size_t size)
{
	if (n && size > SIZE_MAX / n)
		return NULL;
	return mallocx(n * size, MALLOCX_ZERO);
}

/* dallocx, not free: when libjemalloc is not first in the symbol lookup
 * order, free() is glibc's and must not see jemalloc's blocks. */
void zk__free(void *p)
{
	if (p)
		dallocx(p, 0);
}

/* The size known: no lookup of the block's size class (sdallocx). */
void zk__free_sized(void *p, size_t size)
{
	if (p)
		sdallocx(p, size, 0);
}
#else
/* Built without jemalloc (sanitizer builds: ASan and TSan replace malloc
 * themselves): plain malloc. */
void zk__arena_init(struct zk__worker *w)
{
	w->arena_ok = 0;
}

void *zk__alloc(size_t size)
{
	return malloc(size);
}

void *zk__calloc(size_t n, size_t size)
{
	return calloc(n, size);
}

void zk__free(void *p)
{
	free(p);
}

void zk__free_sized(void *p, size_t size)
{
	(void)size;
	free(p);
}
#endif
