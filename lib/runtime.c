/* lib/runtime.c — runtime life cycle: configuration, starting the workers,
 * block_on, shutdown and free. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "internal.h"

#define MIN_STACK (16u * 1024u)
#if defined(ZK_ASAN_BUILD) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DEFAULT_STACK (256u * 1024u)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DEFAULT_STACK (256u * 1024u)
#endif
#endif
#ifndef DEFAULT_STACK
#define DEFAULT_STACK (64u * 1024u)
#endif

static long read_max_map_count(void)
{
	long v = 65530;
#ifdef _WIN32
	return v; /* no such limit to respect; keeps the Linux default budget */
#endif
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 65530;
		fclose(f);
	}
	return v;
}

/* The fault-injection settings from ZK_FAULT_SEED (default 1), ZK_FAULT_RATE
 * (a probability per op, default 0.05), ZK_FAULT_KINDS ("transparent", the
 * default: faults the runtime must hide; "all"; or a comma list of eintr,
 * eagain, nomem, eio, short, delay, sqfull, cancel) and ZK_FAULT_INNER (the
 * backend wrapped: "io_uring", the default, or "epoll"). -EINVAL for a value
 * that does not parse. */
static int parse_fault_env(struct zk__fault_config *fc)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} kinds[] = {
		{"eintr", ZK__FAULT_EINTR}, {"eagain", ZK__FAULT_EAGAIN}, {"nomem", ZK__FAULT_NOMEM},
		{"eio", ZK__FAULT_EIO},     {"short", ZK__FAULT_SHORT},   {"delay", ZK__FAULT_DELAY},
		{"sqfull", ZK__FAULT_SQFULL}, {"cancel", ZK__FAULT_CANCEL},
	};
	const char *v;
	char *end;
	fc->seed = 1;
	fc->rate_ppm = 50000;
	fc->kinds = ZK__FAULTS_TRANSPARENT;
	fc->inner = &zk__backend_io_uring;
	if ((v = getenv("ZK_FAULT_SEED")) && *v) {
		errno = 0;
		unsigned long long seed = strtoull(v, &end, 0);
		if (errno || *end)
			return -EINVAL;
		fc->seed = seed;
	}
	if ((v = getenv("ZK_FAULT_RATE")) && *v) {
		double rate = strtod(v, &end);
		if (*end || !(rate >= 0.0 && rate <= 1.0))
			return -EINVAL;
		fc->rate_ppm = (uint32_t)(rate * 1e6 + 0.5);
	}
	if ((v = getenv("ZK_FAULT_KINDS")) && *v) {
		if (strcmp(v, "all") == 0) {
			fc->kinds = ZK__FAULTS_ALL;
		} else if (strcmp(v, "transparent") != 0) {
			fc->kinds = 0;
			for (const char *p = v; *p;) {
				size_t n = strcspn(p, ",");
				size_t i = 0;
				for (; i < sizeof(kinds) / sizeof(kinds[0]); i++)
					if (strlen(kinds[i].name) == n && strncmp(p, kinds[i].name, n) == 0)
						break;
				if (i == sizeof(kinds) / sizeof(kinds[0]))
					return -EINVAL;
				fc->kinds |= kinds[i].bit;
				p += n;
				if (*p == ',')
					p++;
			}
		}
	}
	if ((v = getenv("ZK_FAULT_INNER")) && *v) {
		if (strcmp(v, "epoll") == 0)
			fc->inner = &zk__backend_epoll;
		else if (strcmp(v, "io_uring") != 0)
			return -EINVAL;
	}
	return 0;
}

/* The backend: cfg->backend, else the ZK_BACKEND environment variable
 * ("io_uring", "epoll" or "faulty"), else io_uring, falling back to epoll
 * when io_uring cannot be set up at all (-ENOSYS: old kernel or
 * kernel.io_uring_disabled=2; -EPERM: io_uring_disabled=1 or a seccomp filter,
 * as Docker's default profile). The probe is one ring created and freed on
 * this thread: worker threads inherit its seccomp filters, so what fails here
 * would fail there. Not cached, so a process that installs a filter later
 * (or a forked child) is probed afresh. An explicit choice never falls back. */
static int pick_backend(const zk_config_t *cfg, const struct zk__backend_vtable **out,
			struct zk__fault_config *fault)
{
	zk_backend_kind_t kind = cfg ? cfg->backend : ZK_BACKEND_DEFAULT;
	bool chosen = kind != ZK_BACKEND_DEFAULT;
#ifdef _WIN32
	/* Windows has one backend: IOCP (ZK_BACKEND unset or "iocp"). */
	(void)fault;
	(void)parse_fault_env; /* the faulty backend is Linux only */
	const char *wenv = getenv("ZK_BACKEND");
	if (!chosen && wenv && *wenv && strcmp(wenv, "iocp") != 0)
		return -EINVAL;
	if (chosen && kind != ZK_BACKEND_IOCP)
		return -EINVAL;
	*out = &zk__backend_iocp;
	return 0;
#else
	if (!chosen) {
		const char *env = getenv("ZK_BACKEND");
		kind = ZK_BACKEND_IO_URING;
		if (env && *env) {
			if (strcmp(env, "io_uring") == 0)
				kind = ZK_BACKEND_IO_URING;
			else if (strcmp(env, "epoll") == 0)
				kind = ZK_BACKEND_EPOLL;
			else if (strcmp(env, "faulty") == 0)
				kind = ZK_BACKEND_FAULTY;
			else
				return -EINVAL;
			chosen = true;
		}
	}
	if (kind == ZK_BACKEND_EPOLL) {
		*out = &zk__backend_epoll;
		return 0;
	}
	if (kind == ZK_BACKEND_FAULTY) {
		int r = parse_fault_env(fault);
		if (r < 0)
			return r;
		/* One line per new setting, so a failing run can be replayed. */
		static _Atomic uint64_t told;
		uint64_t key = (fault->seed * 0x9e3779b97f4a7c15ull) ^
			       ((uint64_t)fault->rate_ppm << 32) ^ fault->kinds ^
			       (uintptr_t)fault->inner;
		if (atomic_exchange(&told, key) != key)
			fprintf(stderr,
				"zokio: fault injection on %s: ZK_FAULT_SEED=%llu ZK_FAULT_RATE=%g "
				"kinds=0x%x\n",
				fault->inner->name, (unsigned long long)fault->seed,
				fault->rate_ppm / 1e6, fault->kinds);
		*out = fault->inner == &zk__backend_io_uring ? &zk__backend_faulty_full
							      : &zk__backend_faulty;
		return 0;
	}
	if (kind != ZK_BACKEND_IO_URING)
		return -EINVAL;
	*out = &zk__backend_io_uring;
	if (!chosen) {
		struct zk__backend *probe;
		struct zk__backend_config bc = {.ring_entries = cfg ? cfg->ring_entries : 0};
		int r = zk__backend_io_uring.init(&probe, &bc);
		if (r == 0) {
			zk__backend_io_uring.fini(probe);
		} else if (r == -ENOSYS || r == -EPERM) {
			fprintf(stderr, "zokio: io_uring unavailable (%s); falling back to epoll\n",
				strerror(-r));
			*out = &zk__backend_epoll;
		}
	}
	return 0;
#endif
}

static void stop_workers(zk_runtime_t *rt, unsigned started)
{
	pthread_mutex_lock(&rt->start_lock);
	atomic_store_explicit(&rt->stop, true, memory_order_seq_cst);
	for (unsigned i = 0; i < started; i++)
		if (rt->workers[i].backend)
			zk__worker_wake(&rt->workers[i]);
	pthread_mutex_unlock(&rt->start_lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(rt->workers[i].thread, NULL);
}

static void rt_destroy(zk_runtime_t *rt)
{
	zk__signal_rt_free(rt);
	if (rt->shards) {
		zk__task_destroy_lists(rt);
		for (unsigned i = 0; i < rt->nshards; i++)
			pthread_mutex_destroy(&rt->shards[i].lock);
		zk__aligned_free(rt->shards);
	}
	if (rt->workers) {
		for (unsigned i = 0; i < rt->nworkers; i++)
			pthread_mutex_destroy(&rt->workers[i].inbox_lock);
		zk__aligned_free(rt->workers);
	}
	zk__stack_free_all(rt);
	zk__idle_destroy(&rt->idle);
	zk__inject_destroy(&rt->inject);
	pthread_mutex_destroy(&rt->done_lock);
	pthread_cond_destroy(&rt->done_cond);
	pthread_mutex_destroy(&rt->slab_lock);
	pthread_mutex_destroy(&rt->start_lock);
	pthread_cond_destroy(&rt->start_cond);
	pthread_mutex_destroy(&rt->sig_lock);
	free(rt);
}

int zk_runtime_create(zk_runtime_t **out, const zk_config_t *cfg)
{
	if (!out)
		return -EINVAL;
	zk_config_t c;
	memset(&c, 0, sizeof(c));
	if (cfg)
		c = *cfg;
	if (c.workers > ZK__MAX_WORKERS)
		return -EINVAL;
	if (c.ring_entries && ((c.ring_entries & (c.ring_entries - 1)) || c.ring_entries > 32768))
		return -EINVAL;
	if (c.stack_size && c.stack_size < MIN_STACK)
		return -EINVAL;
	if ((unsigned)c.stack_guard > ZK_GUARD_NEVER)
		return -EINVAL;
	const struct zk__backend_vtable *be;
	struct zk__fault_config fault = {0};
	int r = pick_backend(&c, &be, &fault);
	if (r < 0)
		return r;
	if (!c.workers) {
#ifdef _WIN32
		long n = zk__win_ncpus();
#else
		long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
		c.workers = n > 0 ? (unsigned)(n > ZK__MAX_WORKERS ? ZK__MAX_WORKERS : n) : 1;
	}
#ifdef _WIN32
	size_t ps = zk__win_page_size();
#else
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
#endif
	size_t stack = c.stack_size ? c.stack_size : DEFAULT_STACK;
	stack = (stack + ps - 1) & ~(ps - 1);

	zk_runtime_t *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->nworkers = c.workers;
	rt->backend = be;
	rt->fault = fault;
	rt->stack_size = stack;
	rt->page_size = ps;
	rt->guard_mode = (int)c.stack_guard;
	rt->guard_budget = read_max_map_count() / 4;
	rt->pin = c.pin_workers;
	rt->ring_entries = c.ring_entries ? c.ring_entries : 256;
	rt->sig_fd = -1;
	zk__inject_init(&rt->inject);
	pthread_mutex_init(&rt->done_lock, NULL);
	pthread_cond_init(&rt->done_cond, NULL);
	pthread_mutex_init(&rt->slab_lock, NULL);
	pthread_mutex_init(&rt->start_lock, NULL);
	pthread_cond_init(&rt->start_cond, NULL);
	pthread_mutex_init(&rt->sig_lock, NULL);
	r = zk__idle_init(&rt->idle, rt->nworkers);
	void *mem = NULL;
	if (r == 0 && posix_memalign(&mem, 64, sizeof(struct zk__worker) * rt->nworkers) != 0)
		r = -ENOMEM;
	rt->workers = mem;
	rt->nshards = 1;
	while (rt->nshards < rt->nworkers * ZK__SHARDS_PER_WORKER)
		rt->nshards <<= 1;
	mem = NULL;
	if (r == 0 && posix_memalign(&mem, 64, sizeof(*rt->shards) * rt->nshards) != 0)
		r = -ENOMEM;
	rt->shards = mem;
	if (rt->shards) {
		memset(rt->shards, 0, sizeof(*rt->shards) * rt->nshards);
		for (unsigned i = 0; i < rt->nshards; i++)
			pthread_mutex_init(&rt->shards[i].lock, NULL);
	}
	if (r == 0)
		r = zk__signal_rt_init(rt);
	if (r < 0) {
		if (!rt->workers) {
			rt->nworkers = 0;
		} else {
			for (unsigned i = 0; i < rt->nworkers; i++)
				pthread_mutex_init(&rt->workers[i].inbox_lock, NULL);
		}
		rt_destroy(rt);
		return r;
	}
	memset(rt->workers, 0, sizeof(struct zk__worker) * rt->nworkers);
	for (unsigned i = 0; i < rt->nworkers; i++) {
		struct zk__worker *w = &rt->workers[i];
		zk__runq_init(&w->runq);
		pthread_mutex_init(&w->inbox_lock, NULL);
		w->index = i;
		w->rt = rt;
	}
	unsigned started = 0;
	for (; started < rt->nworkers; started++) {
		r = -pthread_create(&rt->workers[started].thread, NULL, zk__worker_main,
				    &rt->workers[started]);
		if (r < 0)
			break;
	}
	pthread_mutex_lock(&rt->start_lock);
	while (rt->started < started)
		pthread_cond_wait(&rt->start_cond, &rt->start_lock);
	pthread_mutex_unlock(&rt->start_lock);
	for (unsigned i = 0; r == 0 && i < started; i++)
		if (rt->workers[i].init_res < 0)
			r = rt->workers[i].init_res;
	if (r < 0) {
		/* Threads never created count as exited for the workers' exit
		 * barrier. */
		pthread_mutex_lock(&rt->start_lock);
		rt->exited += rt->nworkers - started;
		pthread_mutex_unlock(&rt->start_lock);
		stop_workers(rt, started);
		rt_destroy(rt);
		return r;
	}
	*out = rt;
	return 0;
}

struct block_on_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void block_on_exit(struct zk_task *t)
{
	struct block_on_wait *b = t->on_exit_ctx;
	pthread_mutex_lock(&b->lock);
	b->done = true;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

int zk_block_on(zk_runtime_t *rt, zk_task_fn fn, void *arg, void **result)
{
	if (!rt || !fn)
		return -EINVAL;
	if (zk__worker_here())
		return -EPERM;
	struct block_on_wait b = {.done = false};
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	zk_task_t *t;
	int r = zk__spawn_with_exit(rt, &t, fn, arg, block_on_exit, &b);
	if (r == 0) {
		pthread_mutex_lock(&b.lock);
		while (!b.done)
			pthread_cond_wait(&b.cond, &b.lock);
		pthread_mutex_unlock(&b.lock);
		if (result)
			*result = t->result;
		r = t->exit_res;
		zk__task_release(t);
	}
	pthread_mutex_destroy(&b.lock);
	pthread_cond_destroy(&b.cond);
	return r;
}

uint64_t zk__live_tasks(zk_runtime_t *rt)
{
	/* Finished first, then spawned: a task counted as finished was spawned
	 * before, so its spawn is counted too and the result never goes below
	 * the true number. */
	uint64_t finished = 0, spawned = 0;
	for (unsigned i = 0; i < rt->nworkers; i++)
		finished += atomic_load_explicit(&rt->workers[i].n_finished, memory_order_seq_cst);
	for (unsigned i = 0; i < rt->nworkers; i++)
		spawned += atomic_load_explicit(&rt->workers[i].n_spawned, memory_order_seq_cst);
	spawned += atomic_load_explicit(&rt->foreign_spawned, memory_order_seq_cst);
	return spawned - finished;
}

int zk_runtime_shutdown(zk_runtime_t *rt)
{
	if (!rt)
		return -EINVAL;
	if (zk__worker_here())
		return -EPERM;
	if (rt->shut_down)
		return 0;
	atomic_store_explicit(&rt->closing, true, memory_order_seq_cst);
	zk__task_cancel_all(rt);
	pthread_mutex_lock(&rt->done_lock);
	while (zk__live_tasks(rt) > 0 ||
	       atomic_load_explicit(&rt->foreign_spawning, memory_order_seq_cst) > 0)
		pthread_cond_wait(&rt->done_cond, &rt->done_lock);
	pthread_mutex_unlock(&rt->done_lock);
	stop_workers(rt, rt->nworkers);
	rt->shut_down = true;
	return 0;
}

void zk_runtime_free(zk_runtime_t *rt)
{
	if (!rt || zk__worker_here())
		return;
	zk_runtime_shutdown(rt);
	rt_destroy(rt);
}

unsigned zk_runtime_workers(const zk_runtime_t *rt)
{
	return rt ? rt->nworkers : 0;
}

const char *zk_runtime_backend(const zk_runtime_t *rt)
{
	return rt ? rt->backend->name : NULL;
}

zk_runtime_t *zk_runtime_current(void)
{
	struct zk__worker *w = zk__worker_here();
	return w && w->current ? w->rt : NULL;
}

int zk_worker_index(void)
{
	struct zk__worker *w = zk__worker_here();
	return w && w->current ? (int)w->index : -EPERM;
}
