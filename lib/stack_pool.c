/* lib/stack_pool.c — task stacks: carved from slabs, pooled per worker.
 *
 * A task gets a stack when it first runs and gives it back when it returns,
 * to the pool of the worker it returned on; stacks are reused LIFO so a fresh
 * task usually lands on cache-hot memory. Stacks are carved from slabs of
 * SLAB_STACKS stacks, one mmap each (MAP_NORESERVE: only touched pages cost
 * memory), and go back to the kernel with the runtime.
 *
 * Guard pages: each guarded stack has a PROT_NONE page below it, which splits
 * the slab's mapping and so costs one more kernel mapping per stack. The
 * kernel caps mappings per process (vm.max_map_count, 65530 by default), so
 * in ZK_GUARD_AUTO mode stacks are guarded only while the number of guarded
 * stacks stays under a quarter of that cap; past it, slabs are carved without
 * guards (one mapping per slab). ZK_GUARD_ALWAYS keeps guarding and fails with
 * -ENOMEM at the kernel's limit; ZK_GUARD_NEVER never guards.
 * Linux 6.13+ installs guard pages without splitting the mapping
 * (madvise MADV_GUARD_INSTALL): where the kernel has it, every stack is
 * guarded at no mapping cost, so 100 000 tasks stay far below the cap.
 *
 * Each stack's descriptor (struct zk__stack) sits at the top of its own
 * memory, so pooling needs no allocation.
 *
 * Windows: a slab is one VirtualAlloc, committed whole (Windows has no
 * overcommit: commit is charged, but pages cost memory only once touched),
 * guard pages are PAGE_NOACCESS (a fault, not a silent overflow; the fiber
 * switch hands Windows each stack's bounds, see fiber_win64.S). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "internal.h"

#define SLAB_STACKS 16u

/* MADV_GUARD_INSTALL (Linux 6.13), newer than the libc headers here. */
#define ZK__MADV_GUARD_INSTALL 102
/* Whether the kernel has it: 0 unknown, 1 yes, 2 no (a process-wide
 * answer, probed by the first guarded slab). */
static _Atomic int light_guards;

static bool want_guard(zk_runtime_t *rt)
{
	if (rt->guard_mode == ZK_GUARD_NEVER)
		return false;
	if (rt->guard_mode == ZK_GUARD_ALWAYS ||
	    atomic_load_explicit(&light_guards, memory_order_relaxed) == 1)
		return true;
	return atomic_load_explicit(&rt->guarded_stacks, memory_order_relaxed) + SLAB_STACKS <=
	       rt->guard_budget;
}

static int carve_slab(zk_runtime_t *rt, struct zk__stack_pool *pool)
{
	size_t ps = rt->page_size;
	bool guard = want_guard(rt);
	size_t usable = rt->stack_size;
	size_t stride = usable + (guard ? ps : 0);
	size_t len = stride * SLAB_STACKS;
	bool costs_mapping = true; /* each guard splits the slab's mapping */
#ifdef _WIN32
	void *mem = VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	if (!mem)
		return -ENOMEM;
	struct zk__slab *slab = malloc(sizeof(*slab));
	if (!slab) {
		VirtualFree(mem, 0, MEM_RELEASE);
		return -ENOMEM;
	}
	if (guard) {
		for (unsigned i = 0; i < SLAB_STACKS; i++) {
			DWORD old;
			if (!VirtualProtect((char *)mem + i * stride, ps, PAGE_NOACCESS, &old)) {
				VirtualFree(mem, 0, MEM_RELEASE);
				free(slab);
				return -ENOMEM;
			}
		}
#else
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (mem == MAP_FAILED)
		return -ENOMEM;
	struct zk__slab *slab = malloc(sizeof(*slab));
	if (!slab) {
		munmap(mem, len);
		return -ENOMEM;
	}
	if (guard) {
		if (atomic_load_explicit(&light_guards, memory_order_relaxed) != 2) {
			int ok = madvise(mem, ps, ZK__MADV_GUARD_INSTALL) == 0;
			atomic_store_explicit(&light_guards, ok ? 1 : 2, memory_order_relaxed);
			costs_mapping = !ok;
		}
		for (unsigned i = 0; i < SLAB_STACKS; i++) {
			char *g = (char *)mem + i * stride;
			if (costs_mapping ? mprotect(g, ps, PROT_NONE) != 0
					  : i && madvise(g, ps, ZK__MADV_GUARD_INSTALL) != 0) {
				munmap(mem, len);
				free(slab);
				return -ENOMEM;
			}
		}
#endif
		if (costs_mapping)
			atomic_fetch_add_explicit(&rt->guarded_stacks, SLAB_STACKS,
						  memory_order_relaxed);
	}
	slab->addr = mem;
	slab->len = len;
	pthread_mutex_lock(&rt->slab_lock);
	slab->next = rt->slabs;
	rt->slabs = slab;
	pthread_mutex_unlock(&rt->slab_lock);
	for (unsigned i = 0; i < SLAB_STACKS; i++) {
		char *lo = (char *)mem + i * stride + (guard ? ps : 0);
		struct zk__stack *s = (struct zk__stack *)(lo + usable - sizeof(struct zk__stack));
		s->lo = lo;
		s->size = usable - sizeof(struct zk__stack);
		zk__stack_put(pool, s);
	}
	return 0;
}

struct zk__stack *zk__stack_get(zk_runtime_t *rt, struct zk__stack_pool *pool)
{
	if (!pool->free && carve_slab(rt, pool) != 0)
		return NULL;
	struct zk__stack *s = pool->free;
	pool->free = s->next;
	pool->nfree--;
	return s;
}

void zk__stack_put(struct zk__stack_pool *pool, struct zk__stack *s)
{
	s->next = pool->free;
	pool->free = s;
	pool->nfree++;
}

void zk__stack_free_all(zk_runtime_t *rt)
{
	struct zk__slab *slab = rt->slabs;
	while (slab) {
		struct zk__slab *next = slab->next;
#ifdef _WIN32
		VirtualFree(slab->addr, 0, MEM_RELEASE);
#else
		munmap(slab->addr, slab->len);
#endif
		free(slab);
		slab = next;
	}
	rt->slabs = NULL;
}
