/* backends/epoll/blocking_pool.c — the blocking pool (see blocking_pool.h).
 *
 * Owns the pool threads and one FIFO of jobs. Design:
 *   - One pool per process, not one per worker: blocking work is bursty and
 *     the cap (POOL_MAX_THREADS) is about how many blocking syscalls the
 *     machine should have in flight, not about how many workers there are.
 *     Backends take a reference in init() and drop it in fini(); the last
 *     reference stops and joins every thread, so nothing outlives the last
 *     runtime (ASan/valgrind see no thread or leak).
 *   - Jobs are the callers' op records, linked through b_next with the
 *     previous job in b_scratch[1] (PREV_HEAD marks the first). A doubly
 *     linked queue makes cancelling a queued job O(1): a shutdown cancels
 *     every queued job, and 100 000 of them must not cost a quadratic scan.
 *     b_scratch[1] == 0 means "not queued" (taken by a thread, or never
 *     queued), which is how cancel tells a queued job from a running one.
 *   - Threads start on demand: when a job is queued and fewer threads are
 *     idle or starting than jobs wait, one more starts (up to the cap). A
 *     thread with nothing to do for POOL_IDLE_NS exits. Waiting on a
 *     condition variable with a timeout is how a pool thread parks; this is
 *     the only timed wait in the backend and it never runs on a worker.
 *   - Pool threads block every asynchronous signal: they run only syscalls
 *     on regular files, and a process-directed signal (SIGINT, the runtime's
 *     zk_signal_wait signals) should be delivered to a thread the user owns
 *     or to a worker, never interrupt a pool thread's pwrite.
 *   - A thread that exited after idling is joined by the next thread start
 *     that reuses its slot, or by the last release. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blocking_pool.h"

/* Most blocking syscalls in flight at once, process-wide. Regular-file I/O
 * on local disks gains nothing from more; what it bounds is the damage of a
 * slow device (NFS, a dying disk): at most this many threads stuck. */
#define POOL_MAX_THREADS 64
/* A thread idle this long exits: a burst of file I/O does not leave 64
 * threads behind, while a steady trickle keeps its threads warm. */
#define POOL_IDLE_NS (10ull * 1000000000ull)
/* Pool threads only run one syscall at a time; they need little stack
 * (sanitizer builds need more for their instrumentation). */
#define POOL_STACK (256u * 1024u)

#define PREV_HEAD ((uint64_t)1)

enum { SLOT_EMPTY = 0, SLOT_LIVE, SLOT_EXITED };

struct pool {
	pthread_mutex_t lock;        /* everything below */
	pthread_cond_t cond;         /* jobs queued, or stopping */
	bool cond_ready;             /* cond initialised (with CLOCK_MONOTONIC) */
	unsigned refs;               /* backends holding the pool */
	bool stopping;               /* last release: threads exit */
	struct zk__op *head, *tail;  /* queued jobs */
	unsigned queued;
	unsigned nthreads;           /* live threads (starting, idle or busy) */
	unsigned idle;               /* threads waiting for a job */
	unsigned starting;           /* threads created, not yet looking for jobs */
	pthread_t threads[POOL_MAX_THREADS];
	unsigned char slot[POOL_MAX_THREADS]; /* SLOT_* */
};

static struct pool pool = {.lock = PTHREAD_MUTEX_INITIALIZER};
/* Serialises acquire/release, so a runtime starting while the last one
 * stops the threads waits for them to be joined instead of racing it. */
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;

static struct zk__op *prev_of(const struct zk__op *op)
{
	return op->b_scratch[1] == PREV_HEAD ? NULL : (struct zk__op *)(uintptr_t)op->b_scratch[1];
}

static void set_prev(struct zk__op *op, struct zk__op *prev)
{
	op->b_scratch[1] = prev ? (uint64_t)(uintptr_t)prev : PREV_HEAD;
}

/* Caller holds pool.lock; op is queued. */
static void unlink_job(struct zk__op *op)
{
	struct zk__op *prev = prev_of(op), *next = op->b_next;
	if (prev)
		prev->b_next = next;
	else
		pool.head = next;
	if (next)
		set_prev(next, prev);
	else
		pool.tail = prev;
	op->b_next = NULL;
	op->b_scratch[1] = 0;
	pool.queued--;
}

static void abs_deadline(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	uint64_t t = (uint64_t)ts->tv_nsec + ns % 1000000000ull;
	ts->tv_sec += (time_t)(ns / 1000000000ull + t / 1000000000ull);
	ts->tv_nsec = (long)(t % 1000000000ull);
}

static void *pool_main(void *arg)
{
	unsigned slot = (unsigned)(uintptr_t)arg;
	sigset_t all;
	sigfillset(&all);
	/* Synchronous faults must stay deliverable (blocking them makes the
	 * kernel kill the process with no handler run). */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	pthread_mutex_lock(&pool.lock);
	pool.starting--;
	for (;;) {
		bool timed_out = false;
		while (!pool.head && !pool.stopping && !timed_out) {
			struct timespec ts;
			abs_deadline(&ts, POOL_IDLE_NS);
			pool.idle++;
			int r = pthread_cond_timedwait(&pool.cond, &pool.lock, &ts);
			pool.idle--;
			timed_out = r == ETIMEDOUT;
		}
		if (!pool.head)
			break; /* stopping, or idle for POOL_IDLE_NS */
		struct zk__op *op = pool.head;
		unlink_job(op);
		pthread_mutex_unlock(&pool.lock);
		struct zk__pool_sink *sink = (struct zk__pool_sink *)(uintptr_t)op->b_scratch[0];
		op->res = zk__op_syscall(op);
		/* After deliver() the op belongs to its owner again. */
		sink->deliver(sink, op);
		pthread_mutex_lock(&pool.lock);
	}
	pool.nthreads--;
	/* When stopping, the last release already took our handle to join
	 * (and emptied the slot); marking it would make a later start join
	 * us a second time. */
	if (pool.slot[slot] == SLOT_LIVE)
		pool.slot[slot] = SLOT_EXITED;
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/* Caller holds pool.lock. Starts one thread; false if it could not. */
static bool start_thread(void)
{
	unsigned slot = POOL_MAX_THREADS;
	for (unsigned i = 0; i < POOL_MAX_THREADS; i++) {
		if (pool.slot[i] == SLOT_EMPTY) {
			slot = i;
			break;
		}
		if (pool.slot[i] == SLOT_EXITED && slot == POOL_MAX_THREADS)
			slot = i;
	}
	if (slot == POOL_MAX_THREADS)
		return false;
	if (pool.slot[slot] == SLOT_EXITED) {
		/* It marked itself exited under the lock and only has to return:
		 * this join does not wait for anything that needs the lock. */
		pthread_join(pool.threads[slot], NULL);
		pool.slot[slot] = SLOT_EMPTY;
	}
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0)
		return false;
	pthread_attr_setstacksize(&attr, POOL_STACK);
	int r = pthread_create(&pool.threads[slot], &attr, pool_main, (void *)(uintptr_t)slot);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return false;
	pool.slot[slot] = SLOT_LIVE;
	pool.nthreads++;
	pool.starting++;
	return true;
}

int zk__pool_acquire(void)
{
	int r = 0;
	pthread_mutex_lock(&life_lock);
	if (pool.refs == 0) {
		/* CLOCK_MONOTONIC: the idle timeout must not jump with the wall
		 * clock. */
		pthread_condattr_t ca;
		if (pthread_condattr_init(&ca) != 0) {
			r = -ENOMEM;
		} else {
			pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
			if (pthread_cond_init(&pool.cond, &ca) != 0)
				r = -ENOMEM;
			pthread_condattr_destroy(&ca);
		}
		if (r == 0) {
			pthread_mutex_lock(&pool.lock);
			pool.cond_ready = true;
			pool.stopping = false;
			pthread_mutex_unlock(&pool.lock);
		}
	}
	if (r == 0)
		pool.refs++;
	pthread_mutex_unlock(&life_lock);
	return r;
}

void zk__pool_release(void)
{
	pthread_mutex_lock(&life_lock);
	if (pool.refs == 0 || --pool.refs > 0) {
		pthread_mutex_unlock(&life_lock);
		return;
	}
	pthread_t joinable[POOL_MAX_THREADS];
	unsigned n = 0;
	pthread_mutex_lock(&pool.lock);
	pool.stopping = true;
	pthread_cond_broadcast(&pool.cond);
	for (unsigned i = 0; i < POOL_MAX_THREADS; i++) {
		if (pool.slot[i] != SLOT_EMPTY) {
			joinable[n++] = pool.threads[i];
			pool.slot[i] = SLOT_EMPTY;
		}
	}
	pthread_mutex_unlock(&pool.lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(joinable[i], NULL);
	pthread_mutex_lock(&pool.lock);
	pool.cond_ready = false;
	pthread_mutex_unlock(&pool.lock);
	pthread_cond_destroy(&pool.cond);
	pthread_mutex_unlock(&life_lock);
}

int zk__pool_submit(struct zk__op *head, unsigned n, struct zk__pool_sink *sink)
{
	if (!head)
		return 0;
	pthread_mutex_lock(&pool.lock);
	if (!pool.cond_ready || pool.stopping) {
		pthread_mutex_unlock(&pool.lock);
		return -EAGAIN;
	}
	/* Start threads for what the idle and starting ones cannot take. */
	while (pool.queued + n > pool.idle + pool.starting && pool.nthreads < POOL_MAX_THREADS)
		if (!start_thread())
			break;
	if (pool.nthreads == 0) {
		/* No thread to ever run them: refuse rather than strand them. */
		pthread_mutex_unlock(&pool.lock);
		return -EAGAIN;
	}
	struct zk__op *tail = pool.tail;
	for (struct zk__op *op = head; op; op = op->b_next) {
		op->b_scratch[0] = (uint64_t)(uintptr_t)sink;
		set_prev(op, tail);
		tail = op;
	}
	if (pool.tail)
		pool.tail->b_next = head;
	else
		pool.head = head;
	pool.tail = tail;
	pool.queued += n;
	/* One signal per job up to the idle count: a broadcast would wake
	 * threads for jobs others already took. */
	unsigned wake = n < pool.idle ? n : pool.idle;
	for (unsigned i = 0; i < wake; i++)
		pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	return 0;
}

bool zk__pool_cancel(struct zk__op *op)
{
	pthread_mutex_lock(&pool.lock);
	bool queued = op->b_scratch[1] != 0;
	if (queued)
		unlink_job(op);
	pthread_mutex_unlock(&pool.lock);
	return queued;
}

struct zk__op *zk__pool_cancel_sink(struct zk__pool_sink *sink)
{
	struct zk__op *out = NULL, **tailp = &out;
	pthread_mutex_lock(&pool.lock);
	struct zk__op *op = pool.head;
	while (op) {
		struct zk__op *next = op->b_next;
		if ((struct zk__pool_sink *)(uintptr_t)op->b_scratch[0] == sink) {
			unlink_job(op);
			*tailp = op;
			tailp = &op->b_next;
		}
		op = next;
	}
	pthread_mutex_unlock(&pool.lock);
	return out;
}

/* Gauges for the runtime's metrics (backend.h); taken under the pool lock,
 * only when a snapshot asks. */
void zk__backend_pool_gauges(unsigned *threads, unsigned *queued)
{
	pthread_mutex_lock(&pool.lock);
	*threads = pool.nthreads;
	*queued = pool.queued;
	pthread_mutex_unlock(&pool.lock);
}
