/* lib/internal.h — the runtime's internal types: task, worker, runtime.
 *
 * Each piece lives in its own file: the local run queue (runq.c), the global
 * injection queue (inject.c), who is idle or searching (idle.c), the worker
 * loop (worker.c), tasks and their states (task.c), stacks (stack_pool.c),
 * timers (timer_wheel.c), per-worker arenas (alloc.c). This header only
 * declares what they share. */
#ifndef ZOKIO_INTERNAL_H
#define ZOKIO_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../backends/backend.h"
#include "zokio/runtime.h"
#include "zokio/task.h"

#include "metrics_internal.h"
#include "runq.h"
#include "timer_wheel.h"

#define ZK__MAX_WORKERS 256

/* ---- tasks -------------------------------------------------------------- */

/* Task states. A task is in exactly one of these; NOTIFIED is a flag that a
 * wake sets on a RUNNING task so that the worker reschedules it as soon as it
 * has switched off the task's stack (the wake raced with the suspend). */
enum {
	ZK__T_IDLE = 0,      /* suspended, in no queue */
	ZK__T_SCHEDULED = 1, /* in a run queue (or about to be) */
	ZK__T_RUNNING = 2,   /* on a worker */
	ZK__T_NOTIFIED = 4,  /* flag on RUNNING: woken while running */
	ZK__T_DONE = 8,      /* returned; stack released */
};

/* Why a task switched back to its worker. */
enum { ZK__SW_PARK = 1, ZK__SW_YIELD, ZK__SW_EXIT };

struct zk__stack;
struct zk__worker;

/* What a suspended task waits for, on its own stack. The canceller calls
 * cancel() with the task's wait lock held, so the record stays valid; the
 * waker that wins the race stores the result in res. */
struct zk__wait {
	/* Makes the wait end now (idempotent). NULL: not cancellable. */
	void (*cancel)(struct zk_task *t, struct zk__wait *w);
	/* Worker whose thread alone may run cancel() (ring ops, timers), or
	 * NULL if any thread may (joins, channels). */
	struct zk__worker *owner;
	void *obj;      /* the op, timer or task waited on */
	int res;        /* result the waker hands over */
	int kind;       /* ZK__WAIT_* (metrics_internal.h), for task dumps */
	const void *what; /* SYNC: the struct zk__arm array waited on */
};

struct zk_task {
	_Atomic uint32_t state;      /* ZK__T_* */
	_Atomic uint32_t refs;       /* running task + handle + pending msgs */
	_Atomic bool cancel;         /* zk_cancel() was called */
	_Atomic bool cancel_queued;  /* on a worker's cancel inbox */
	bool started;                /* has run at least once */
	uint8_t switch_reason;       /* ZK__SW_*, set before switching out */
	bool obs_stamped;            /* metrics: obs.woken_ns holds a sampled wake */
	bool live_linked;            /* in its shard's live list (see live_link_once) */
	uint16_t pin;                /* 0, or 1 + the only worker that runs it
	                              * (zk_spawn_pinned, zk_task_pin) */
	void *sp;                    /* saved stack pointer while switched out */
	struct zk__stack *stack;     /* NULL until first run */
	zk_task_fn fn;
	void *arg;
	void *result;                /* fn's return value */
	int exit_res;                /* 0, or -ECANCELED if it never ran */
	uint64_t id;
	zk_runtime_t *rt;
	struct zk_task *next;        /* inject queue / cancel inbox link */
	struct zk_task *cancel_next; /* cancel inbox link */
	/* Join: the joining task, or ZK__JOIN_DONE once this task returned. */
	_Atomic(struct zk_task *) joiner;
	void (*on_exit)(struct zk_task *t); /* block_on's foreign waiter */
	void *on_exit_ctx;
	/* Current wait, published for cancellers (see task.c). */
	_Atomic(struct zk__wait *) wait;
	pthread_mutex_t wait_lock;
	uint64_t next_timeout_ns;    /* zk_timeout_next() for the next op */
	/* Live-task list of this task's shard (see zk__live_shard). */
	struct zk_task *live_prev, *live_next;
	uint32_t shard;              /* index in rt->shards */

	void *asan_fake;
	void *tsan_fiber;
	struct zk__task_obs obs;     /* metrics and task dump notes */
};

#define ZK__JOIN_DONE ((struct zk_task *)(uintptr_t)1)

/* ---- stacks ------------------------------------------------------------- */

struct zk__stack {
	struct zk__stack *next; /* pool free list */
	void *lo;               /* lowest usable address */
	size_t size;            /* usable bytes, the descriptor sits above */
};

struct zk__stack_pool {
	struct zk__stack *free;
	unsigned nfree;
};

/* ---- global injection queue ---------------------------------------------- */

struct zk__inject {
	pthread_mutex_t lock;
	struct zk_task *head, *tail;
	_Atomic size_t len;          /* read without the lock as a hint */
	bool closed;
};

/* ---- idle / searching ---------------------------------------------------- */

struct zk__idle {
	/* Low 16 bits: unparked workers; high 16 bits: searching workers. */
	_Atomic uint32_t state;
	pthread_mutex_t lock;
	unsigned nsleepers;
	uint16_t *sleepers;          /* stack of parked worker indexes */
	unsigned nworkers;
};

/* ---- worker --------------------------------------------------------------- */

/* Live tasks (for shutdown, and for freeing records nobody released): lists
 * sharded by task id, each under its own lock, as Tokio's OwnedTasks. A task
 * is linked by the thread that spawns it and unlinked by whichever thread
 * frees its record; with ZK__SHARDS_PER_WORKER shards per worker, consecutive
 * ids land on different shards and two workers rarely meet on one lock. A
 * per-worker list touched only by its owner was tried: records freed by a
 * stealing worker then had to travel back to the spawner, which during a
 * spawn burst could not recycle them and allocated fresh memory instead
 * (2x slower spawn_many). */
#define ZK__SHARDS_PER_WORKER 16u

struct zk__live_shard {
	_Alignas(64) pthread_mutex_t lock;
	struct zk_task *head;
};

struct zk__worker {
	/* Touched by other workers (stealing), on its own cache lines. */
	struct zk__runq runq;
	_Atomic bool parked;          /* in the sleepers list */
	/* LIFO slot: the task just woken or spawned by the running task. Other
	 * workers may take it (one exchange) when the rest of the queue is
	 * empty, so a task parked in the slot behind a worker stuck in a long
	 * computation or a blocking syscall still runs (Tokio's slot cannot be
	 * stolen, and that starvation is a known Tokio issue). */
	_Atomic(struct zk_task *) lifo;
	/* Tasks this worker spawned / finished. Each is written by this worker
	 * only, so counting costs no shared cache line; shutdown sums them. */
	_Alignas(64) _Atomic uint64_t n_spawned;
	_Atomic uint64_t n_finished;
	/* Cancel requests routed to this worker (see task.c). */
	pthread_mutex_t inbox_lock;
	struct zk_task *inbox;
	_Atomic bool inbox_nonempty;
	/* Pinned tasks that reached another worker (a wake there, a steal),
	 * sent home: FIFO under inbox_lock, linked by next. */
	struct zk_task *home_head, *home_tail;
	_Atomic bool home_nonempty;

	/* Owned by the worker thread. */
	unsigned index;
	zk_runtime_t *rt;
	pthread_t thread;
	struct zk__backend *backend;
	struct zk_task *current;      /* task running now, or NULL */
	struct zk_task *prev;         /* task that switched out, until the
	                               * switch ends (see finish_switch) */
	unsigned lifo_polls;          /* consecutive LIFO runs this tick */
	uint32_t tick;                /* scheduler iterations, for intervals */
	bool searching;
	uint64_t rng;                 /* xorshift state for steal victims */
	uint64_t next_task_id;
	void *sched_sp;               /* the worker loop's saved context */
	struct zk__timer_wheel wheel;
	struct zk__stack_pool stacks;
	unsigned arena;               /* jemalloc arena index */
	int arena_ok;
	struct zk_task *home_local;   /* pinned tasks taken from home_head, to
	                              * run (owner only, linked by next) */
	int direct;                   /* the ring's direct descriptor table:
	                               * 0 not set up yet, > 0 its slots,
	                               * < 0 why there is none (-errno) */
	struct zk_task *task_cache;   /* freed task records for reuse */
	unsigned task_cache_n;

	const void *thread_stack_lo;
	size_t thread_stack_size;
	void *asan_fake;
	void *tsan_fiber;
	int init_res;                 /* backend init result, for create() */
	struct zk__worker_stats stats; /* metrics (metrics_internal.h) */
};

/* ---- runtime ------------------------------------------------------------- */

struct zk__slab {
	struct zk__slab *next;
	void *addr;
	size_t len;
};

struct zk_runtime {
	unsigned nworkers;
	struct zk__worker *workers;
	const struct zk__backend_vtable *backend;
	struct zk__fault_config fault;   /* when backend is the faulty one */
	size_t stack_size;
	size_t page_size;
	int guard_mode;
	int pin;
	unsigned ring_entries;
	struct zk__inject inject;
	struct zk__idle idle;
	struct zk__live_shard *shards;   /* live-task lists, see zk__live_shard */
	unsigned nshards;                /* a power of two */
	_Atomic uint64_t foreign_spawned; /* tasks spawned from outside */
	_Atomic unsigned foreign_spawning; /* outside spawns and wakes in
	                                    * progress (zk__foreign_enter) */
	_Atomic bool closing;            /* shutdown started: no new tasks */
	_Atomic bool stop;               /* workers exit their loops */
	bool shut_down;
	pthread_mutex_t done_lock;       /* shutdown waits here for no live task */
	pthread_cond_t done_cond;
	_Atomic uint64_t foreign_ids;
	/* Stack slabs, freed with the runtime. */
	pthread_mutex_t slab_lock;
	struct zk__slab *slabs;
	_Atomic long guarded_stacks;
	long guard_budget;
	/* Signals (signal.c). */
	int sig_fd;
	struct zk__op *sig_ops;          /* one read per worker */
	uint64_t *sig_bufs;
	pthread_mutex_t sig_lock;
	struct zk__sigwaiter *sig_waiters;
	uint64_t sig_seen[65];
	_Atomic bool sig_used;
	pthread_mutex_t start_lock;      /* workers report init here */
	pthread_cond_t start_cond;
	unsigned started;
	unsigned exited;                 /* workers out of their loops */
	struct zk__rt_obs obs;           /* metrics (metrics_internal.h) */
};

/* ---- shared internal calls ----------------------------------------------- */

/* The worker running on this thread, or NULL. Only worker.c (whose loop
 * never changes thread) reads it directly; code that may run inside a task
 * goes through zk__worker_here(), because a task can resume on another
 * thread after any switch and the compiler would otherwise be free to reuse
 * a thread-local address computed before the switch. */
extern _Thread_local struct zk__worker *zk__tls_worker
    __attribute__((tls_model("initial-exec")));

struct zk__worker *zk__worker_here(void);
static inline struct zk_task *zk__task_here(void)
{
	struct zk__worker *w = zk__worker_here();
	return w ? w->current : NULL;
}

/* task.c */
int zk__task_new(zk_runtime_t *rt, struct zk__worker *w, zk_task_fn fn, void *arg,
		 struct zk_task **out);
void zk__task_release(struct zk_task *t);
void zk__task_wake(struct zk_task *t);
int zk__task_park(struct zk_task *t, struct zk__wait *w);
void zk__task_run(struct zk__worker *w, struct zk_task *t);
/* For a task switching out on w: the task to switch to directly, or NULL
 * when the loop must run first (ring poll due, shutdown, nothing queued). */
struct zk_task *zk__worker_direct_next(struct zk__worker *w);
void zk__task_cancel_inbox(struct zk__worker *w);
/* Queues t on owner's cancel inbox (once) and wakes owner, which then runs
 * t's published wait->cancel on its own thread. Call with t->wait_lock held
 * and the wait published. */
void zk__task_inbox_push(struct zk_task *t, struct zk__worker *owner);
/* Parks t on wt and runs wt->cancel at once, on wt->owner's thread: here if
 * this is the owner, else through the owner's cancel inbox. For a task that
 * must stop an op another worker owns (a multishot op) and wait for its
 * final completion. Returns as zk__task_park. */
int zk__task_park_cancelling(struct zk_task *t, struct zk__wait *wt);
void zk__task_free_cache(struct zk__worker *w);
void zk__task_cancel_all(zk_runtime_t *rt);
void zk__task_destroy_lists(zk_runtime_t *rt);
void zk__schedule(zk_runtime_t *rt, struct zk_task *t, bool lifo);
/* Queues the pinned task t (SCHEDULED) on its home worker's list and wakes
 * the home if it is parked. Any thread of the runtime. */
void zk__task_send_home(struct zk_task *t);
/* Moves the running task t to worker `worker` (< nworkers) and returns
 * there; t's pin is unchanged afterwards. Not cancellable. */
void zk__task_move(struct zk_task *t, unsigned worker);
/* Brackets a call from outside the runtime's workers that touches its
 * queues and workers: shutdown waits until none is in progress. */
void zk__foreign_enter(zk_runtime_t *rt);
void zk__foreign_leave(zk_runtime_t *rt);
int zk__spawn_with_exit(zk_runtime_t *rt, zk_task_t **handle, zk_task_fn fn, void *arg,
			void (*on_exit)(struct zk_task *), void *ctx);

/* runtime.c: tasks spawned and not yet returned (an upper bound while
 * tasks are being spawned). */
uint64_t zk__live_tasks(zk_runtime_t *rt);

/* worker.c */
void *zk__worker_main(void *arg);
void zk__notify_parked(zk_runtime_t *rt);
void zk__worker_wake(struct zk__worker *w);

/* inject.c */
void zk__inject_init(struct zk__inject *q);
void zk__inject_destroy(struct zk__inject *q);
void zk__inject_push(struct zk__inject *q, struct zk_task *t);
void zk__inject_push_batch(struct zk__inject *q, struct zk_task *head, struct zk_task *tail,
			   size_t n);
struct zk_task *zk__inject_pop(struct zk__inject *q);
/* Takes up to max tasks in FIFO order as a NULL-terminated list in *head;
 * returns how many. One lock round trip for the whole batch. */
size_t zk__inject_pop_batch(struct zk__inject *q, size_t max, struct zk_task **head);
static inline bool zk__inject_empty(struct zk__inject *q)
{
	return atomic_load_explicit(&q->len, memory_order_acquire) == 0;
}

/* idle.c */
int zk__idle_init(struct zk__idle *idle, unsigned nworkers);
void zk__idle_destroy(struct zk__idle *idle);
int zk__idle_worker_to_notify(struct zk__idle *idle);
bool zk__idle_to_parked(struct zk__idle *idle, unsigned index, bool searching);
bool zk__idle_to_searching(struct zk__idle *idle);
bool zk__idle_from_searching(struct zk__idle *idle);
bool zk__idle_unpark(struct zk__idle *idle, unsigned index);
bool zk__idle_should_notify(struct zk__idle *idle);

/* stack_pool.c */
struct zk__stack *zk__stack_get(zk_runtime_t *rt, struct zk__stack_pool *pool);
void zk__stack_put(struct zk__stack_pool *pool, struct zk__stack *s);
void zk__stack_free_all(zk_runtime_t *rt);

/* alloc.c: the runtime's own allocations, from the worker's arena. */
void zk__arena_init(struct zk__worker *w);
void *zk__alloc(size_t size);
void *zk__calloc(size_t n, size_t size);
void zk__free(void *p);
/* zk__free of a block whose zk__alloc size is known (faster). */
void zk__free_sized(void *p, size_t size);

/* io.c: submit an op for the calling task and suspend until it completes. */
int zk__op_run(struct zk__op *op);

/* Direct descriptors (net.h, ZK_FD_DIRECT): the fd a task sees is
 * ZK_FD_DIRECT | worker << 20 | slot, the slot in that worker's ring. */
#define ZK__DIRECT_WORKER_SHIFT 20
#define ZK__DIRECT_SLOT_MASK ((1u << ZK__DIRECT_WORKER_SHIFT) - 1)
#define ZK__FD_DIRECT 0x40000000 /* = ZK_FD_DIRECT (checked in io.c) */
static inline int zk__direct_fd(unsigned worker, unsigned slot)
{
	return (int)((unsigned)ZK__FD_DIRECT | (worker << ZK__DIRECT_WORKER_SHIFT) | slot);
}
/* The worker's direct table: sets it up on first use (owner thread). Its
 * size, or -errno (-EOPNOTSUPP: the backend has none). */
int zk__direct_table(struct zk__worker *w);
/* If op->fd is a direct descriptor: makes op name its slot in w's ring
 * (op->fixed). 0, or -EXDEV (it belongs to another worker's ring; only a
 * task pinned to that worker may use it), -EBADF (not a descriptor of any
 * ring). Ordinary fds pass unchanged. */
int zk__op_direct_slow(struct zk__worker *w, struct zk__op *op);
static inline int zk__op_direct(struct zk__worker *w, struct zk__op *op)
{
	return op->fd >= ZK__FD_DIRECT && !op->fixed ? zk__op_direct_slow(w, op) : 0;
}
/* For a task about to submit an op on fd: if fd is a direct descriptor of
 * another worker's ring, moves the task there (zk__task_move). Returns the
 * worker running the task afterwards, or NULL for a direct fd naming no
 * worker of the runtime (-EBADF). */
struct zk__worker *zk__direct_go(struct zk_task *t, int fd);

/* signal.c */
void zk__signal_worker_start(struct zk__worker *w);
int zk__signal_rt_init(zk_runtime_t *rt);
void zk__signal_rt_free(zk_runtime_t *rt);

#ifdef _WIN32
/* Windows ports of the few POSIX calls the core makes (backends/iocp/
 * win_port.c): sysconf, CPU pinning, posix_memalign. */
#include <errno.h>
#include <malloc.h>
long zk__win_ncpus(void);
size_t zk__win_page_size(void);
void zk__win_pin_thread(unsigned cpu);
#define posix_memalign(pp, align, size) \
	((*(pp) = _aligned_malloc((size), (align))) != NULL ? 0 : ENOMEM)
#define zk__aligned_free _aligned_free
#else
#define zk__aligned_free free /* for blocks from posix_memalign */
#endif

/* metrics: the park note, inline (needs the types above). */
#include "obs_park.h"

#endif
