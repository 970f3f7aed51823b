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

void zk__arena_init(struct zk__worker *w)
{
	unsigned idx = 0;
	size_t sz = sizeof(idx);
	w->arena_ok = mallctl("arenas.create", &idx, &sz, NULL, 0) == 0;
	w->arena = idx;
}

void *zk__alloc(size_t size)
{
	struct zk__worker *w = zk__worker_here();
	if (w && w->arena_ok)
		return mallocx(size, MALLOCX_ARENA(w->arena));
	return mallocx(size, 0);
}

void *zk__calloc(size_t n, size_t size)
{
	struct zk__worker *w = zk__worker_here();
	if (n && size > SIZE_MAX / n)
		return NULL;
	if (w && w->arena_ok)
		return mallocx(n * size, MALLOCX_ARENA(w->arena) | MALLOCX_ZERO);
	return mallocx(n * size, MALLOCX_ZERO);
}

/* dallocx, not free: when libjemalloc is not first in the symbol lookup
 * order, free() is glibc's and must not see jemalloc's blocks. */
void zk__free(void *p)
{
	if (p)
		dallocx(p, 0);
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
#endif
