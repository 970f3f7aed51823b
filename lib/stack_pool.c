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
 *
 * Each stack's descriptor (struct zk__stack) sits at the top of its own
 * memory, so pooling needs no allocation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define SLAB_STACKS 16u

static bool want_guard(zk_runtime_t *rt)
{
	if (rt->guard_mode == ZK_GUARD_NEVER)
		return false;
	if (rt->guard_mode == ZK_GUARD_ALWAYS)
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
		for (unsigned i = 0; i < SLAB_STACKS; i++) {
			if (mprotect((char *)mem + i * stride, ps, PROT_NONE) != 0) {
				munmap(mem, len);
				free(slab);
				return -ENOMEM;
			}
		}
		atomic_fetch_add_explicit(&rt->guarded_stacks, SLAB_STACKS, memory_order_relaxed);
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
		munmap(slab->addr, slab->len);
		free(slab);
		slab = next;
	}
	rt->slabs = NULL;
}
