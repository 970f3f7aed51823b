/* benchmarks/rt_bench.c — Zokio's side of the side-by-side scheduler
 * benchmarks (zk-rt-bench). benchmarks/tokio/src/main.rs does the same work
 * on Tokio and prints the same lines; benchmarks/run runs both and compares.
 *
 * The workloads follow Tokio's benches/rt_multi_threaded.rs. Each benchmark
 * gets a fresh runtime, runs --warmup untimed iterations (they fill the
 * stack and task pools, as a long-running program would have them), then
 * --iters timed ones, and prints the median wall time of one iteration:
 *
 *   bench=<name> runtime=zokio workers=<W> median_ns=<n> ops_per_sec=<x>
 *
 * An iteration is timed on the main thread around the call that starts the
 * work and waits for it (zk_block_on, or the spawns plus a latch for the
 * remote benchmark), so both runtimes pay the same entry and exit costs.
 * Notes go to stderr prefixed with '#', so stdout stays machine-readable.
 * The sync benchmarks (mpsc_*, mutex_contended, notify_pingpong) check
 * their results and exit 1 on a wrong one. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zokio/zokio.h"

/* Sizes, as in the Tokio crate (keep the two in step). */
#define SPAWN_MANY_N 100000u
#define CHAIN_DEPTH 1000u
#define PING_PONG_PAIRS 1000u
#define YIELD_TASKS 200u
#define YIELD_COUNT 1000u
#define SLEEPERS_N 100000u
#define SLEEP_MS 10u
#define CHURN_TASKS 100u
#define CHURN_ROUNDS 100u
/* Far enough that a churned sleeper never fires on its own. */
#define CHURN_SLEEP_MS 60000u
#define MPSC_MSGS 1000000u
#define MPSC_CAP 1024u
#define MPSC_PRODUCERS 4u
#define MPSC_BATCH 64u
#define MUTEX_TASKS 4u
#define MUTEX_ITERS 100000u
#define NOTIFY_ROUNDS 100000u

#define CHECK(expr)                                                                        \
	do {                                                                               \
		int check_r_ = (expr);                                                     \
		if (check_r_ < 0) {                                                        \
			fprintf(stderr, "zk-rt-bench: %s failed: %s (%s:%d)\n", #expr,    \
				strerror(-check_r_), __FILE__, __LINE__);                  \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* A wrong result (a lost message, a lost increment): say so and exit 1. */
#define VERIFY(cond, ...)                                                                  \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "zk-rt-bench: check failed: " __VA_ARGS__);        \
			fputc('\n', stderr);                                               \
			fflush(NULL);                                                      \
			_exit(1);                                                          \
		}                                                                          \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- shared completion state ---------------------------------------------- */

/* One benchmark runs at a time, so its tasks share these globals instead of
 * carrying a context pointer each (Tokio's closures capture an Arc). */
static _Atomic long remaining;
static zk_oneshot_t done;

/* The counting is relaxed, as in Tokio's benches: the oneshot (or latch)
 * that the last task signals is what orders everything before it. */
static void count_down(void)
{
	if (atomic_fetch_sub_explicit(&remaining, 1, memory_order_relaxed) == 1)
		CHECK(zk_oneshot_send(&done, NULL));
}

static void arm(long n)
{
	atomic_store_explicit(&remaining, n, memory_order_relaxed);
	zk_oneshot_init(&done);
}

/* A driver task spawns the work, then suspends until the last task is done. */
static void wait_done(void)
{
	CHECK(zk_oneshot_recv(&done, NULL));
}

/* ---- spawn_many_local --------------------------------------------------------- */

static void *leaf(void *arg)
{
	(void)arg;
	count_down();
	return NULL;
}

static void *spawn_many_local_driver(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < SPAWN_MANY_N; i++)
		CHECK(zk_spawn(NULL, leaf, NULL));
	wait_done();
	return NULL;
}

static void spawn_many_local(zk_runtime_t *rt)
{
	arm(SPAWN_MANY_N);
	CHECK(zk_block_on(rt, spawn_many_local_driver, NULL, NULL));
}

/* ---- spawn_many_remote -------------------------------------------------------- */

/* The main thread is not a task and cannot receive on a oneshot, so the
 * last task signals a condvar; Tokio's side uses std's Mutex + Condvar. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool set;
} latch = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};

static void *remote_leaf(void *arg)
{
	(void)arg;
	if (atomic_fetch_sub_explicit(&remaining, 1, memory_order_relaxed) == 1) {
		pthread_mutex_lock(&latch.lock);
		latch.set = true;
		pthread_cond_signal(&latch.cond);
		pthread_mutex_unlock(&latch.lock);
	}
	return NULL;
}

static void spawn_many_remote(zk_runtime_t *rt)
{
	atomic_store_explicit(&remaining, SPAWN_MANY_N, memory_order_relaxed);
	latch.set = false;
	for (unsigned i = 0; i < SPAWN_MANY_N; i++)
		CHECK(zk_spawn_on(rt, NULL, remote_leaf, NULL));
	pthread_mutex_lock(&latch.lock);
	while (!latch.set)
		pthread_cond_wait(&latch.cond, &latch.lock);
	pthread_mutex_unlock(&latch.lock);
}

/* ---- chained_spawn ------------------------------------------------------------ */

static void *chain_step(void *arg)
{
	uintptr_t n = (uintptr_t)arg;
	if (n == 0)
		CHECK(zk_oneshot_send(&done, NULL));
	else
		CHECK(zk_spawn(NULL, chain_step, (void *)(n - 1)));
	return NULL;
}

static void *chained_spawn_driver(void *arg)
{
	(void)arg;
	CHECK(zk_spawn(NULL, chain_step, (void *)(uintptr_t)CHAIN_DEPTH));
	wait_done();
	return NULL;
}

static void chained_spawn(zk_runtime_t *rt)
{
	arm(1);
	CHECK(zk_block_on(rt, chained_spawn_driver, NULL, NULL));
}

/* ---- ping_pong ------------------------------------------------------------------ */

struct pp_pair {
	zk_oneshot_t ping, pong;
};

static void *pp_partner(void *arg)
{
	struct pp_pair *p = arg;
	CHECK(zk_oneshot_recv(&p->ping, NULL));
	/* The last touch of *p: send does not read the channel again after it
	 * publishes the value, so the pair may return (and drop its stack)
	 * as soon as it sees it. */
	CHECK(zk_oneshot_send(&p->pong, NULL));
	return NULL;
}

static void *pp_task(void *arg)
{
	(void)arg;
	struct pp_pair p;
	zk_oneshot_init(&p.ping);
	zk_oneshot_init(&p.pong);
	CHECK(zk_spawn(NULL, pp_partner, &p));
	CHECK(zk_oneshot_send(&p.ping, NULL));
	CHECK(zk_oneshot_recv(&p.pong, NULL));
	count_down();
	return NULL;
}

static void *ping_pong_driver(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < PING_PONG_PAIRS; i++)
		CHECK(zk_spawn(NULL, pp_task, NULL));
	wait_done();
	return NULL;
}

static void ping_pong(zk_runtime_t *rt)
{
	arm(PING_PONG_PAIRS);
	CHECK(zk_block_on(rt, ping_pong_driver, NULL, NULL));
}

/* ---- yield_many ------------------------------------------------------------------ */

static void *yielder(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < YIELD_COUNT; i++)
		CHECK(zk_yield());
	count_down();
	return NULL;
}

static void *yield_many_driver(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < YIELD_TASKS; i++)
		CHECK(zk_spawn(NULL, yielder, NULL));
	wait_done();
	return NULL;
}

static void yield_many(zk_runtime_t *rt)
{
	arm(YIELD_TASKS);
	CHECK(zk_block_on(rt, yield_many_driver, NULL, NULL));
}

/* ---- sleepers ---------------------------------------------------------------------- */

static void *sleeper(void *arg)
{
	(void)arg;
	CHECK(zk_sleep_ms(SLEEP_MS));
	count_down();
	return NULL;
}

static void *sleepers_driver(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < SLEEPERS_N; i++)
		CHECK(zk_spawn(NULL, sleeper, NULL));
	wait_done();
	return NULL;
}

static void sleepers(zk_runtime_t *rt)
{
	arm(SLEEPERS_N);
	CHECK(zk_block_on(rt, sleepers_driver, NULL, NULL));
}

/* ---- timer_churn --------------------------------------------------------------------- */

/* Sleepers that had armed their timer when the cancel came (the rest were
 * cancelled before they first ran). Reported on stderr: a churn in which few
 * timers were armed measures spawn/cancel, not the timer wheel. */
static _Atomic long churn_armed;

static void *churn_sleeper(void *arg)
{
	(void)arg;
	int r = zk_sleep_ms(CHURN_SLEEP_MS);
	if (r != -ECANCELED) {
		fprintf(stderr, "zk-rt-bench: churned sleep returned %d, not -ECANCELED\n", r);
		abort();
	}
	atomic_fetch_add_explicit(&churn_armed, 1, memory_order_relaxed);
	return NULL;
}

static void *churner(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < CHURN_ROUNDS; i++) {
		zk_task_t *h;
		CHECK(zk_spawn(&h, churn_sleeper, NULL));
		/* Let the sleeper run and arm its timer before it is cancelled
		 * (Tokio's side does yield_now() for the same reason). */
		CHECK(zk_yield());
		CHECK(zk_cancel(h));
		int r = zk_join(h, NULL);
		/* -ECANCELED: cancelled before it started; that is allowed. */
		if (r < 0 && r != -ECANCELED)
			CHECK(r);
	}
	count_down();
	return NULL;
}

static void *timer_churn_driver(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < CHURN_TASKS; i++)
		CHECK(zk_spawn(NULL, churner, NULL));
	wait_done();
	return NULL;
}

static void timer_churn(zk_runtime_t *rt)
{
	arm(CHURN_TASKS);
	CHECK(zk_block_on(rt, timer_churn_driver, NULL, NULL));
}

/* ---- mpsc_1to1, mpsc_1to1_batch, mpsc_4to1 ------------------------------------------ */

/* Producers send MPSC_MSGS messages in all into a bounded channel of
 * MPSC_CAP; the driver task is the consumer. Each producer registers as a
 * sender and drops when done, so the channel closes after the last message
 * (Tokio: the Senders are dropped) and the consumer receives until -EPIPE.
 * A message is (producer << 32 | sequence from 1): the consumer checks each
 * producer's FIFO order, the count and the sum. */
static zk_chan_t *mpsc_ch;
static unsigned mpsc_producers;
static bool mpsc_batch;

static void *mpsc_producer(void *arg)
{
	uintptr_t p = (uintptr_t)arg;
	uintptr_t n = MPSC_MSGS / mpsc_producers;
	for (uintptr_t i = 1; i <= n; i++)
		CHECK(zk_chan_send(mpsc_ch, (void *)(p << 32 | i)));
	CHECK(zk_chan_sender_drop(mpsc_ch));
	return NULL;
}

static void mpsc_take(uint64_t v, uint64_t *last, uint64_t *count, uint64_t *sum)
{
	uint64_t p = v >> 32, seq = v & 0xffffffffu;
	VERIFY(p < mpsc_producers && seq == last[p] + 1,
	       "mpsc: producer %" PRIu64 " message %" PRIu64 " out of order", p, seq);
	last[p] = seq;
	(*count)++;
	*sum += seq;
}

static void *mpsc_driver(void *arg)
{
	(void)arg;
	CHECK(zk_chan_create(&mpsc_ch, MPSC_CAP));
	for (unsigned p = 0; p < mpsc_producers; p++) {
		CHECK(zk_chan_sender_add(mpsc_ch));
		CHECK(zk_spawn(NULL, mpsc_producer, (void *)(uintptr_t)p));
	}
	uint64_t last[MPSC_PRODUCERS] = {0}, count = 0, sum = 0;
	int r;
	if (mpsc_batch) {
		void *buf[MPSC_BATCH];
		while ((r = zk_chan_recv_many(mpsc_ch, buf, MPSC_BATCH)) > 0)
			for (int i = 0; i < r; i++)
				mpsc_take((uintptr_t)buf[i], last, &count, &sum);
	} else {
		void *v;
		while ((r = zk_chan_recv(mpsc_ch, &v)) == 0)
			mpsc_take((uintptr_t)v, last, &count, &sum);
	}
	VERIFY(r == -EPIPE, "mpsc: receive ended with %d, not -EPIPE", r);
	uint64_t n = MPSC_MSGS / mpsc_producers;
	VERIFY(count == MPSC_MSGS && sum == mpsc_producers * (n * (n + 1) / 2),
	       "mpsc: received %" PRIu64 " messages (sum %" PRIu64 "), expected %u", count, sum,
	       MPSC_MSGS);
	zk_chan_free(mpsc_ch);
	return NULL;
}

static void mpsc_run(zk_runtime_t *rt, unsigned producers, bool batch)
{
	mpsc_producers = producers;
	mpsc_batch = batch;
	CHECK(zk_block_on(rt, mpsc_driver, NULL, NULL));
}

static void mpsc_1to1(zk_runtime_t *rt)
{
	mpsc_run(rt, 1, false);
}

static void mpsc_1to1_batch(zk_runtime_t *rt)
{
	mpsc_run(rt, 1, true);
}

static void mpsc_4to1(zk_runtime_t *rt)
{
	mpsc_run(rt, MPSC_PRODUCERS, false);
}

/* ---- mutex_contended ----------------------------------------------------------------- */

/* MUTEX_TASKS tasks each lock one async mutex MUTEX_ITERS times and bump a
 * plain counter under it; the driver joins them and checks the count. */
static zk_mutex_t mutex_m = ZK_MUTEX_INITIALIZER;
static uint64_t mutex_counter;

static void *mutex_task(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < MUTEX_ITERS; i++) {
		CHECK(zk_mutex_lock(&mutex_m));
		mutex_counter++;
		CHECK(zk_mutex_unlock(&mutex_m));
	}
	return NULL;
}

static void *mutex_driver(void *arg)
{
	(void)arg;
	zk_task_t *h[MUTEX_TASKS];
	mutex_counter = 0;
	for (unsigned i = 0; i < MUTEX_TASKS; i++)
		CHECK(zk_spawn(&h[i], mutex_task, NULL));
	for (unsigned i = 0; i < MUTEX_TASKS; i++)
		CHECK(zk_join(h[i], NULL));
	VERIFY(mutex_counter == (uint64_t)MUTEX_TASKS * MUTEX_ITERS,
	       "mutex: counter %" PRIu64 ", expected %u", mutex_counter,
	       MUTEX_TASKS * MUTEX_ITERS);
	return NULL;
}

static void mutex_contended(zk_runtime_t *rt)
{
	CHECK(zk_block_on(rt, mutex_driver, NULL, NULL));
}

/* ---- notify_pingpong ------------------------------------------------------------------ */

/* The driver notifies `ping` and waits on `pong`; a partner task waits on
 * `ping`, counts, and notifies `pong`: NOTIFY_ROUNDS round trips. */
static zk_notify_t notify_ping, notify_pong;
static uint64_t notify_count;

static void *notify_partner(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < NOTIFY_ROUNDS; i++) {
		CHECK(zk_notify_wait(&notify_ping));
		notify_count++;
		CHECK(zk_notify_one(&notify_pong));
	}
	return NULL;
}

static void *notify_driver(void *arg)
{
	(void)arg;
	zk_task_t *h;
	notify_count = 0;
	CHECK(zk_spawn(&h, notify_partner, NULL));
	for (unsigned i = 0; i < NOTIFY_ROUNDS; i++) {
		CHECK(zk_notify_one(&notify_ping));
		CHECK(zk_notify_wait(&notify_pong));
	}
	CHECK(zk_join(h, NULL));
	VERIFY(notify_count == NOTIFY_ROUNDS, "notify: %" PRIu64 " round trips, expected %u",
	       notify_count, NOTIFY_ROUNDS);
	return NULL;
}

static void notify_pingpong(zk_runtime_t *rt)
{
	CHECK(zk_notify_init(&notify_ping));
	CHECK(zk_notify_init(&notify_pong));
	CHECK(zk_block_on(rt, notify_driver, NULL, NULL));
	CHECK(zk_notify_destroy(&notify_ping));
	CHECK(zk_notify_destroy(&notify_pong));
}

/* ---- driver ------------------------------------------------------------------------- */

struct bench {
	const char *name;
	void (*run)(zk_runtime_t *rt);
	double ops; /* units of work in one iteration, for ops_per_sec */
};

static const struct bench benches[] = {
	{"spawn_many_local", spawn_many_local, SPAWN_MANY_N},
	{"spawn_many_remote", spawn_many_remote, SPAWN_MANY_N},
	{"chained_spawn", chained_spawn, CHAIN_DEPTH},
	{"ping_pong", ping_pong, PING_PONG_PAIRS},
	{"yield_many", yield_many, (double)YIELD_TASKS * YIELD_COUNT},
	{"sleepers", sleepers, SLEEPERS_N},
	{"timer_churn", timer_churn, (double)CHURN_TASKS * CHURN_ROUNDS},
	{"mpsc_1to1", mpsc_1to1, MPSC_MSGS},
	{"mpsc_1to1_batch", mpsc_1to1_batch, MPSC_MSGS},
	{"mpsc_4to1", mpsc_4to1, MPSC_MSGS},
	{"mutex_contended", mutex_contended, (double)MUTEX_TASKS * MUTEX_ITERS},
	{"notify_pingpong", notify_pingpong, NOTIFY_ROUNDS},
};
#define NBENCH (sizeof(benches) / sizeof(benches[0]))

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --samples: every iteration's time as a '#' note, to see warm-up and noise. */
static bool show_samples;

static void run_bench(const struct bench *b, unsigned workers, unsigned warmup, unsigned iters)
{
	zk_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = workers;
	zk_runtime_t *rt;
	CHECK(zk_runtime_create(&rt, &cfg));
	for (unsigned i = 0; i < warmup; i++)
		b->run(rt);
	uint64_t *samples = calloc(iters, sizeof(*samples));
	if (!samples)
		abort();
	atomic_store(&churn_armed, 0);
	for (unsigned i = 0; i < iters; i++) {
		uint64_t t0 = now_ns();
		b->run(rt);
		samples[i] = now_ns() - t0;
	}
	if (b->run == timer_churn)
		fprintf(stderr, "# zokio timer_churn: %ld of %u sleepers armed before cancel\n",
			atomic_load(&churn_armed), iters * CHURN_TASKS * CHURN_ROUNDS);
	zk_runtime_free(rt);
	if (show_samples) {
		fprintf(stderr, "# zokio %s samples_ns:", b->name);
		for (unsigned i = 0; i < iters; i++)
			fprintf(stderr, " %" PRIu64, samples[i]);
		fputc('\n', stderr);
	}
	uint64_t med = median(samples, iters);
	free(samples);
	printf("bench=%s runtime=zokio workers=%u median_ns=%" PRIu64 " ops_per_sec=%.0f\n",
	       b->name, workers, med, b->ops * 1e9 / (double)(med ? med : 1));
	fflush(stdout);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zk-rt-bench [--workers N] [--iters N] [--warmup N] [--bench NAME[,NAME...]]"
		" [--samples] [--list]\n"
		"  --workers N  worker threads (default 2)\n"
		"  --iters N    timed iterations per benchmark; the median is reported (default 10)\n"
		"  --warmup N   untimed iterations first (default 1)\n"
		"  --bench L    comma-separated benchmarks to run (default: all)\n"
		"  --samples    print every iteration's time to stderr\n"
		"  --list       print the benchmark names and exit\n");
}

static unsigned parse_count(const char *flag, const char *s, unsigned min)
{
	char *end;
	unsigned long v = s ? strtoul(s, &end, 10) : 0;
	if (!s || *end || v < min || v > 1000000) {
		fprintf(stderr, "zk-rt-bench: bad value for %s\n", flag);
		usage(stderr);
		exit(2);
	}
	return (unsigned)v;
}

static bool selected(const char *list, const char *name)
{
	if (!list)
		return true;
	size_t len = strlen(name);
	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		if (n == len && strncmp(p, name, n) == 0)
			return true;
		p += n + (comma ? 1 : 0);
	}
	return false;
}

int main(int argc, char **argv)
{
	unsigned workers = 2, iters = 10, warmup = 1;
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--workers") == 0) {
			workers = parse_count(a, v, 1), i++;
		} else if (strcmp(a, "--iters") == 0) {
			iters = parse_count(a, v, 1), i++;
		} else if (strcmp(a, "--warmup") == 0) {
			warmup = parse_count(a, v, 0), i++;
		} else if (strcmp(a, "--bench") == 0 && v) {
			only = v, i++;
		} else if (strcmp(a, "--samples") == 0) {
			show_samples = true;
		} else if (strcmp(a, "--list") == 0) {
			for (size_t b = 0; b < NBENCH; b++)
				puts(benches[b].name);
			return 0;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "zk-rt-bench: unknown argument %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (only) {
		/* An unknown name is a typo, not an empty run. */
		for (const char *p = only; *p;) {
			const char *comma = strchr(p, ',');
			size_t n = comma ? (size_t)(comma - p) : strlen(p);
			bool found = false;
			for (size_t b = 0; b < NBENCH; b++)
				found |= strlen(benches[b].name) == n &&
					 strncmp(benches[b].name, p, n) == 0;
			if (!found) {
				fprintf(stderr, "zk-rt-bench: unknown benchmark %.*s\n", (int)n, p);
				return 2;
			}
			p += n + (comma ? 1 : 0);
		}
	}
	for (size_t b = 0; b < NBENCH; b++)
		if (selected(only, benches[b].name))
			run_bench(&benches[b], workers, warmup, iters);
	return 0;
}
