/* tests/test_metrics.c — metrics.h: counters on known workloads, histogram
 * percentiles on known inputs, JSON, the task dump naming each kind of wait,
 * and the metrics socket. (zk-top itself: the scripts in tests/metrics/.) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(histogram, .timeout = 60);
TestSuite(metrics, .timeout = 120);
TestSuite(dump, .timeout = 120);

static void need_metrics(void)
{
	if (!zk_metrics_enabled())
		cr_skip_test("built with -Dmetrics=false");
}

/* ---- histograms ------------------------------------------------------------ */

Test(histogram, buckets_tile_the_value_range_without_gaps)
{
	cr_assert_eq(zk_histogram_bucket_low(0), 0);
	for (unsigned i = 1; i < ZK_HIST_BUCKETS; i++) {
		cr_assert_eq(zk_histogram_bucket_low(i), zk_histogram_bucket_high(i - 1) + 1,
			     "bucket %u", i);
		/* A bucket is at most 1/8 of its lowest value wide. */
		if (i >= 8 && i < ZK_HIST_BUCKETS - 1)
			cr_assert_leq(zk_histogram_bucket_high(i) - zk_histogram_bucket_low(i) + 1,
				      zk_histogram_bucket_low(i) / 8, "bucket %u", i);
	}
	uint64_t probes[] = {0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 123456789, 1ull << 39,
			     (1ull << 40) - 1};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		unsigned b = zk_histogram_bucket(probes[i]);
		cr_assert_leq(zk_histogram_bucket_low(b), probes[i]);
		cr_assert_geq(zk_histogram_bucket_high(b), probes[i]);
	}
	cr_assert_eq(zk_histogram_bucket(UINT64_MAX), ZK_HIST_BUCKETS - 1);
}

Test(histogram, small_values_are_exact)
{
	zk_histogram_t h;
	memset(&h, 0, sizeof(h));
	for (uint64_t v = 0; v < 8; v++)
		zk_histogram_record(&h, v);
	cr_assert_eq(h.count, 8);
	cr_assert_eq(h.min, 0);
	cr_assert_eq(h.max, 7);
	cr_assert_eq(h.sum, 28);
	/* Rank ceil(p% * 8): p50 -> 4th smallest = 3, p100 -> 7. */
	cr_assert_eq(zk_histogram_percentile(&h, 50), 3);
	cr_assert_eq(zk_histogram_percentile(&h, 12.5), 0);
	cr_assert_eq(zk_histogram_percentile(&h, 12.6), 1);
	cr_assert_eq(zk_histogram_percentile(&h, 100), 7);
	cr_assert_eq(zk_histogram_percentile(&h, 0), 0);
}

/* Percentile of 1..n: the exact answer is ceil(p% * n); the histogram's is
 * its bucket's highest value, so within 1/8 above. */
static void check_uniform(const zk_histogram_t *h, uint64_t n, double p)
{
	double r = p / 100.0 * (double)n;
	uint64_t exact = (uint64_t)r;
	if ((double)exact < r)
		exact++;
	uint64_t got = zk_histogram_percentile(h, p);
	cr_assert_geq(got, exact, "p%g: %llu < exact %llu", p, (unsigned long long)got,
		      (unsigned long long)exact);
	cr_assert_leq(got, exact + exact / 8, "p%g: %llu vs exact %llu", p,
		      (unsigned long long)got, (unsigned long long)exact);
}

Test(histogram, percentiles_of_a_uniform_range_are_within_an_eighth)
{
	zk_histogram_t *h = calloc(1, sizeof(*h));
	const uint64_t n = 100000;
	for (uint64_t v = 1; v <= n; v++)
		zk_histogram_record(h, v);
	cr_assert_eq(h->count, n);
	cr_assert_eq(h->min, 1);
	cr_assert_eq(h->max, n);
	cr_assert_float_eq(zk_histogram_mean(h), (n + 1) / 2.0, 1e-9);
	double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		check_uniform(h, n, ps[i]);
	cr_assert_eq(zk_histogram_percentile(h, 100), n);
	free(h);
}

Test(histogram, a_bimodal_distribution_puts_p99_in_the_slow_mode)
{
	zk_histogram_t h;
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 980; i++)
		zk_histogram_record(&h, 1000);       /* 1 us */
	for (int i = 0; i < 20; i++)
		zk_histogram_record(&h, 5000000);    /* 5 ms */
	uint64_t p50 = zk_histogram_percentile(&h, 50);
	uint64_t p98 = zk_histogram_percentile(&h, 98);
	uint64_t p99 = zk_histogram_percentile(&h, 99);
	cr_assert(p50 >= 1000 && p50 <= 1125, "p50 %llu", (unsigned long long)p50);
	cr_assert(p98 >= 1000 && p98 <= 1125, "p98 %llu", (unsigned long long)p98);
	cr_assert_eq(p99, 5000000, "p99 %llu (clamped to max)", (unsigned long long)p99);
}

Test(histogram, merging_two_halves_equals_recording_the_whole)
{
	zk_histogram_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)),
		       *all = calloc(1, sizeof(*all));
	for (uint64_t v = 1; v <= 5000; v++) {
		zk_histogram_record(v % 2 ? a : b, v * 37);
		zk_histogram_record(all, v * 37);
	}
	zk_histogram_merge(a, b);
	cr_assert_eq(memcmp(a, all, sizeof(*a)), 0);
	/* Merging into an empty histogram copies min. */
	zk_histogram_t *e = calloc(1, sizeof(*e));
	zk_histogram_merge(e, all);
	cr_assert_eq(e->min, 37);
	cr_assert_eq(zk_histogram_percentile(NULL, 50), 0);
	free(a);
	free(b);
	free(all);
	free(e);
}

/* ---- counters ---------------------------------------------------------------- */

static void snap(zk_runtime_t *rt, zk_metrics_t *m)
{
	cr_assert_eq(zk_metrics_snapshot(rt, m), 0);
	cr_assert_not_null(m->total);
	cr_assert_not_null(m->per_worker);
}

/* A snapshot once the runtime is idle: block_on returns as its task ends,
 * a moment before the worker is back in its loop, and a worker brings its
 * resume count up to date when it next polls for events (always before it
 * parks). Waits, on this plain thread, for two equal snapshots. */
static void snap_idle(zk_runtime_t *rt, zk_metrics_t *m)
{
	snap(rt, m);
	for (int i = 0; i < 2000; i++) {
		zt_msleep(2);
		zk_metrics_t n;
		snap(rt, &n);
		bool same = n.total->polls == m->total->polls && n.live_tasks == 0;
		zk_metrics_free(m);
		*m = n;
		if (same)
			return;
	}
	cr_assert_fail("the runtime never went idle");
}

static void *nothing(void *arg)
{
	return arg;
}

struct spawn_n {
	unsigned n;
};

static void *spawn_n_and_join(void *arg)
{
	struct spawn_n *s = arg;
	zk_task_t **h = calloc(s->n, sizeof(*h));
	for (unsigned i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], nothing, NULL), 0);
	for (unsigned i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	free(h);
	return NULL;
}

Test(metrics, spawning_n_tasks_counts_n_spawned_and_one_foreign)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(2);
	zk_metrics_t a, b;
	snap(rt, &a);
	struct spawn_n s = {.n = 1000};
	zt_run(rt, spawn_n_and_join, &s);
	snap_idle(rt, &b);
	cr_assert_eq(b.total->spawned - a.total->spawned, 1000);
	cr_assert_eq(b.foreign_spawned - a.foreign_spawned, 1); /* the block_on task */
	/* Every task ran at least once: 1000 + the block_on task. */
	cr_assert_geq(b.total->polls - a.total->polls, 1001);
	cr_assert_eq(b.live_tasks, 0);
	cr_assert_eq(b.workers, 2);
	uint64_t sum = 0;
	for (unsigned i = 0; i < b.workers; i++)
		sum += b.per_worker[i].spawned;
	cr_assert_eq(sum, b.total->spawned);
	zk_metrics_free(&a);
	zk_metrics_free(&b);
	zk_runtime_free(rt);
}

struct yields {
	unsigned n;
};

static void *yield_n(void *arg)
{
	struct yields *y = arg;
	for (unsigned i = 0; i < y->n; i++)
		ZT_CHECK_EQ(zk_yield(), 0);
	return NULL;
}

Test(metrics, a_task_that_yields_k_times_is_polled_k_plus_one_times)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	zk_metrics_t a, b;
	snap(rt, &a);
	struct yields y = {.n = 5000};
	zt_run(rt, yield_n, &y);
	snap_idle(rt, &b);
	cr_assert_eq(b.total->polls - a.total->polls, 5001);
	/* One worker: run time was sampled once every ZK_METRICS_SAMPLE_EVERY. */
	uint64_t runs = b.total->run_ns.count - a.total->run_ns.count;
	cr_assert_geq(runs, 5001 / ZK_METRICS_SAMPLE_EVERY - 1);
	cr_assert_leq(runs, 5001 / ZK_METRICS_SAMPLE_EVERY + 1);
	cr_assert_gt(b.total->run_ns.max, 0);
	zk_metrics_free(&a);
	zk_metrics_free(&b);
	zk_runtime_free(rt);
}

static void *sleep_n(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;
	for (unsigned i = 0; i < n; i++)
		ZT_CHECK_EQ(zk_sleep_ms(1), 0);
	return NULL;
}

Test(metrics, each_sleep_fires_one_timer)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	zk_metrics_t a, b;
	snap(rt, &a);
	zt_run(rt, sleep_n, (void *)(uintptr_t)20);
	snap(rt, &b);
	cr_assert_eq(b.total->timers_fired - a.total->timers_fired, 20);
	/* Each sleep parks the only task with nothing else to run. */
	cr_assert_geq(b.total->parks - a.total->parks, 1);
	zk_metrics_free(&a);
	zk_metrics_free(&b);
	zk_runtime_free(rt);
}

/* Busy work that cannot finish before an idle worker wakes up and looks:
 * 200 tasks of about 1 ms each, all queued on the spawning worker. */
static void *spin_1ms(void *arg)
{
	(void)arg;
	uint64_t t0 = zk_now_ns();
	volatile uint64_t x = 0;
	while (zk_now_ns() - t0 < 1000000)
		x++;
	return NULL;
}

static void *spawn_spinners(void *arg)
{
	(void)arg;
	enum { N = 200 };
	zk_task_t *h[N];
	for (int i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], spin_1ms, NULL), 0);
	for (int i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(metrics, an_idle_worker_steals_from_a_busy_one)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(2);
	zk_metrics_t a, b;
	snap(rt, &a);
	zt_run(rt, spawn_spinners, NULL);
	snap(rt, &b);
	uint64_t in = b.total->stolen_in - a.total->stolen_in;
	uint64_t out = b.total->stolen_out - a.total->stolen_out;
	cr_assert_gt(in, 0, "no steal in 200 ms of queued work");
	cr_assert_eq(in, out, "stolen in %llu != stolen out %llu", (unsigned long long)in,
		     (unsigned long long)out);
	cr_assert_geq(b.total->steal_attempts - a.total->steal_attempts, 1);
	/* Each worker's stolen_in is the other's stolen_out. */
	cr_assert_eq(b.per_worker[0].stolen_in - a.per_worker[0].stolen_in,
		     b.per_worker[1].stolen_out - a.per_worker[1].stolen_out);
	zk_metrics_free(&a);
	zk_metrics_free(&b);
	zk_runtime_free(rt);
}

static void *pipe_io(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	char c = 'x';
	for (unsigned i = 0; i < n; i++) {
		ZT_CHECK_EQ(zk_write(p[1], &c, 1, -1), 1);
		ZT_CHECK_EQ(zk_read(p[0], &c, 1, -1), 1);
	}
	close(p[0]);
	close(p[1]);
	return NULL;
}

Test(metrics, io_is_counted_and_its_latency_sampled_per_opcode)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	zk_metrics_t a, b;
	snap(rt, &a);
	zt_run(rt, pipe_io, (void *)(uintptr_t)64);
	snap(rt, &b);
	cr_assert_geq(b.total->submissions - a.total->submissions, 128);
	cr_assert_geq(b.total->completions - a.total->completions, 128);
	/* io_uring enters the kernel to submit; epoll runs a pipe op inline
	 * when it can, with no epoll_wait at all. */
	if (strcmp(zk_runtime_backend(rt), "io_uring") == 0)
		cr_assert_gt(b.total->enters - a.total->enters, 0);
	unsigned rd = 0, wr = 0;
	for (unsigned i = 0; zk_metrics_io_name(i); i++) {
		if (strcmp(zk_metrics_io_name(i), "read") == 0)
			rd = i;
		if (strcmp(zk_metrics_io_name(i), "write") == 0)
			wr = i;
	}
	cr_assert(rd && wr);
	/* 128 ops, one in ZK_METRICS_IO_SAMPLE_EVERY timed, alternating. */
	uint64_t timed = b.total->io_ns[rd].count + b.total->io_ns[wr].count -
			 a.total->io_ns[rd].count - a.total->io_ns[wr].count;
	cr_assert_geq(timed, 128 / ZK_METRICS_IO_SAMPLE_EVERY - 1);
	/* The fault-injection backend makes the runtime resubmit some ops:
	 * more submissions, so more samples. */
	if (strcmp(zk_runtime_backend(rt), "faulty") != 0)
		cr_assert_leq(timed, 128 / ZK_METRICS_IO_SAMPLE_EVERY + 1);
	zk_metrics_free(&a);
	zk_metrics_free(&b);
	zk_runtime_free(rt);
}

/* A message ping-pong: every wake of the receiver is a scheduling delay. */
static void *echo_back(void *arg)
{
	zk_chan_t **ch = arg;
	void *v;
	while (zk_chan_recv(ch[0], &v) == 0)
		if (zk_chan_send(ch[1], v) < 0)
			break;
	return NULL;
}

static void *ping_many(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;
	zk_chan_t *ch[2];
	ZT_CHECK_EQ(zk_chan_create(&ch[0], 1), 0);
	ZT_CHECK_EQ(zk_chan_create(&ch[1], 1), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, echo_back, ch), 0);
	for (unsigned i = 0; i < n; i++) {
		void *v;
		ZT_CHECK_EQ(zk_chan_send(ch[0], (void *)(uintptr_t)(i + 1)), 0);
		ZT_CHECK_EQ(zk_chan_recv(ch[1], &v), 0);
		ZT_CHECK_EQ((uintptr_t)v, i + 1);
	}
	zk_chan_close(ch[0]);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	zk_chan_free(ch[0]);
	zk_chan_free(ch[1]);
	return NULL;
}

Test(metrics, wakes_record_scheduling_delay_samples)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	zk_metrics_t a, b;
	snap(rt, &a);
	zt_run(rt, ping_many, (void *)(uintptr_t)4096);
	snap(rt, &b);
	/* At least 8192 wakes, one in ZK_METRICS_SAMPLE_EVERY stamped. */
	uint64_t d = b.total->sched_delay_ns.count - a.total->sched_delay_ns.count;
	cr_assert_geq(d, 8192 / ZK_METRICS_SAMPLE_EVERY - 1, "%llu samples",
		      (unsigned long long)d);
	cr_assert_geq(b.total->lifo_hits - a.total->lifo_hits, 1);
	zk_metrics_free(&a);
	zk_metrics_free(&b);
	zk_runtime_free(rt);
}

Test(metrics, json_has_every_counter_and_is_balanced)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct spawn_n s = {.n = 10};
	zt_run(rt, spawn_n_and_join, &s);
	zk_metrics_t m;
	snap(rt, &m);
	char *js = NULL;
	size_t len = 0;
	cr_assert_eq(zk_metrics_json(&m, true, &js, &len), 0);
	cr_assert_eq(strlen(js), len);
	const char *keys[] = {"\"polls\":", "\"spawned\":", "\"stolen_in\":", "\"stolen_out\":",
			      "\"steal_attempts\":", "\"parks\":", "\"unparks\":",
			      "\"lifo_hits\":", "\"global_pulls\":", "\"submissions\":",
			      "\"enters\":", "\"completions\":", "\"cq_overflows\":",
			      "\"timers_fired\":", "\"local_queue_depth\":", "\"run_ns\":",
			      "\"sched_delay_ns\":", "\"io_ns\":", "\"per_worker\":[",
			      "\"live_tasks\":", "\"workers\":2", "\"blocking_threads\":"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert_not_null(strstr(js, keys[i]), "missing %s in %s", keys[i], js);
	if (zk_metrics_enabled())
		cr_assert_not_null(strstr(js, "\"spawned\":10"), "%s", js);
	int depth = 0;
	for (const char *c = js; *c; c++) {
		depth += (*c == '{' || *c == '[') - (*c == '}' || *c == ']');
		cr_assert_geq(depth, 0);
	}
	cr_assert_eq(depth, 0);
	free(js);
	cr_assert_eq(zk_metrics_json(NULL, true, &js, NULL), -EINVAL);
	cr_assert_eq(zk_metrics_snapshot(NULL, &m), -EINVAL);
	zk_metrics_free(&m);
	zk_metrics_free(NULL);
	zk_runtime_free(rt);
}

/* ---- task dump ------------------------------------------------------------- */

struct dumpee {
	int fds[2];           /* socketpair: a recv on fds[0] waits */
	zk_chan_t *ch;        /* nobody sends */
	zk_mutex_t mu;        /* held by the test task */
	zk_sem_t sem;         /* no permits */
	zk_task_t *sleeper;   /* joined by the joiner */
	atomic_long started;
	int recv_line, sleep_line, join_line, chan_line, mutex_line, sem_line;
};

static void *blocked_recv(void *arg)
{
	struct dumpee *d = arg;
	char c;
	atomic_fetch_add(&d->started, 1);
	zk_recv(d->fds[0], &c, 1, 0);
	return NULL;
}

static void *blocked_sleep(void *arg)
{
	struct dumpee *d = arg;
	atomic_fetch_add(&d->started, 1);
	zk_sleep_ms(600000);
	return NULL;
}

static void *blocked_join(void *arg)
{
	struct dumpee *d = arg;
	atomic_fetch_add(&d->started, 1);
	zk_join(d->sleeper, NULL);
	return NULL;
}

static void *blocked_chan(void *arg)
{
	struct dumpee *d = arg;
	void *v;
	atomic_fetch_add(&d->started, 1);
	zk_chan_recv(d->ch, &v);
	return NULL;
}

static void *blocked_mutex(void *arg)
{
	struct dumpee *d = arg;
	atomic_fetch_add(&d->started, 1);
	if (zk_mutex_lock(&d->mu) == 0)
		zk_mutex_unlock(&d->mu);
	return NULL;
}

static void *blocked_sem(void *arg)
{
	struct dumpee *d = arg;
	atomic_fetch_add(&d->started, 1);
	zk_sem_acquire(&d->sem, 1);
	return NULL;
}

/* The dump's entry for task id, or NULL. Points into js. */
static char *entry_of(char *js, uint64_t id)
{
	char key[64];
	snprintf(key, sizeof(key), "{\"id\":%llu,", (unsigned long long)id);
	return strstr(js, key);
}

/* True when every one of the n tasks shows as suspended in the dump. */
static bool all_suspended(zk_runtime_t *rt, zk_task_t **h, int n)
{
	char *js = NULL;
	if (zk_task_dump_json(rt, &js, NULL) != 0)
		return false;
	bool ok = true;
	for (int i = 0; i < n && ok; i++) {
		char *e = entry_of(js, zk_task_handle_id(h[i]));
		ok = e && strncmp(strstr(e, "\"state\":"), "\"state\":\"suspended\"", 19) == 0;
	}
	free(js);
	return ok;
}

static void expect_entry(char *js, zk_task_t *h, const char *wait_prefix, int line)
{
	char *e = entry_of(js, zk_task_handle_id(h));
	if (!e) {
		zt_fail(__FILE__, line, "task %llu not in the dump: %s",
			(unsigned long long)zk_task_handle_id(h), js);
		return;
	}
	char *w = strstr(e, "\"wait\":");
	if (!w || strncmp(w + 7, wait_prefix, strlen(wait_prefix)) != 0)
		zt_fail(__FILE__, line, "wait: want %s in %.300s", wait_prefix, e);
	/* "spawn":"<path>/test_metrics.c:<line>" closes the entry. */
	char *s = strstr(e, "\"spawn\":\"");
	char *q = s ? strchr(s + 9, '"') : NULL;
	char site[64];
	int n = snprintf(site, sizeof(site), "test_metrics.c:%d", line);
	if (!q || q - (s + 9) < n || strncmp(q - n, site, (size_t)n) != 0)
		zt_fail(__FILE__, line, "spawn site %s missing in %.300s", site, e);
}

static void *dump_scenario(void *arg)
{
	struct dumpee *d = arg;
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d->fds), 0);
	ZT_CHECK_EQ(zk_chan_create(&d->ch, 4), 0);
	ZT_CHECK_EQ(zk_mutex_init(&d->mu), 0);
	ZT_CHECK_EQ(zk_sem_init(&d->sem, 0), 0);
	ZT_CHECK_EQ(zk_mutex_lock(&d->mu), 0);
	zk_task_t *h[6];
	zk_runtime_t *rt = zk_runtime_current();
	d->recv_line = __LINE__ + 1;
	ZT_CHECK_EQ(ZK_SPAWN(&h[0], blocked_recv, d), 0);
	d->sleep_line = __LINE__ + 1;
	ZT_CHECK_EQ(ZK_SPAWN(&h[1], blocked_sleep, d), 0);
	d->sleeper = h[1];
	/* The joiner takes over the sleeper's handle: keep our own id. */
	uint64_t sleeper_id = zk_task_handle_id(h[1]);
	d->join_line = __LINE__ + 1;
	ZT_CHECK_EQ(ZK_SPAWN(&h[2], blocked_join, d), 0);
	d->chan_line = __LINE__ + 1;
	ZT_CHECK_EQ(ZK_SPAWN(&h[3], blocked_chan, d), 0);
	d->mutex_line = __LINE__ + 1;
	ZT_CHECK_EQ(ZK_SPAWN(&h[4], blocked_mutex, d), 0);
	d->sem_line = __LINE__ + 1;
	ZT_CHECK_EQ(ZK_SPAWN_ON(rt, &h[5], blocked_sem, d), 0);
	/* Wait (suspended, never spinning) until every task is parked. */
	zk_task_t *look[6] = {h[0], h[1], h[2], h[3], h[4], h[5]};
	bool ok = false;
	for (int i = 0; i < 10000 && !ok; i++) {
		zk_sleep_ms(1);
		ok = atomic_load(&d->started) == 6 && all_suspended(rt, look, 6);
	}
	ZT_CHECK(ok);
	char *js = NULL;
	ZT_CHECK_EQ(zk_task_dump_json(rt, &js, NULL), 0);
	char want[96];
	snprintf(want, sizeof(want), "{\"kind\":\"io\",\"op\":\"recv\",\"fd\":%d}", d->fds[0]);
	expect_entry(js, h[0], want, d->recv_line);
	expect_entry(js, h[1], "{\"kind\":\"timer\",\"deadline_ns\":", d->sleep_line);
	snprintf(want, sizeof(want), "{\"kind\":\"join\",\"task\":%llu}",
		 (unsigned long long)sleeper_id);
	expect_entry(js, h[2], want, d->join_line);
	expect_entry(js, h[3], "{\"kind\":\"channel_recv\",\"object\":", d->chan_line);
	expect_entry(js, h[4], "{\"kind\":\"mutex\",\"object\":", d->mutex_line);
	expect_entry(js, h[5], "{\"kind\":\"semaphore\",\"object\":", d->sem_line);
	/* The timer's deadline is about ten minutes away. */
	char *e = entry_of(js, sleeper_id);
	char *dl = e ? strstr(e, "\"in_ms\":") : NULL;
	long long in_ms = dl ? atoll(dl + 8) : -1;
	ZT_CHECK(in_ms > 590000 && in_ms <= 600001);
	/* The calling task is running, spawned by block_on (no site). */
	e = entry_of(js, zk_task_id());
	ZT_CHECK(e && strncmp(strstr(e, "\"state\":"), "\"state\":\"running\"", 17) == 0);
	ZT_CHECK(e && strstr(e, "\"spawn\":\"?\"") != NULL);
	free(js);
	/* The text form names the same waits. */
	char *txt = NULL;
	size_t tlen = 0;
	FILE *f = open_memstream(&txt, &tlen);
	ZT_CHECK_EQ(zk_task_dump(rt, f), 7);
	fclose(f);
	ZT_CHECK(strstr(txt, "io recv fd=") != NULL);
	ZT_CHECK(strstr(txt, "on mutex object=") != NULL);
	free(txt);
	/* Release everyone. */
	zk_mutex_unlock(&d->mu);
	zk_sem_release(&d->sem, 1);
	zk_chan_close(d->ch);
	ZT_CHECK_EQ(write(d->fds[1], "x", 1), 1);
	zk_cancel(h[1]);
	for (int i = 0; i < 6; i++)
		if (i != 1) /* the joiner joins the sleeper */
			ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	close(d->fds[0]);
	close(d->fds[1]);
	zk_chan_free(d->ch);
	zk_mutex_destroy(&d->mu);
	zk_sem_destroy(&d->sem);
	return NULL;
}

Test(dump, names_the_wait_of_tasks_blocked_on_each_kind_of_operation)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(2);
	struct dumpee *d = calloc(1, sizeof(*d));
	zt_run(rt, dump_scenario, d);
	free(d);
	zk_runtime_free(rt);
}

Test(dump, dumping_a_runtime_with_no_task_lists_nothing)
{
	zk_runtime_t *rt = zt_runtime(1);
	char *js = NULL;
	cr_assert_eq(zk_task_dump_json(rt, &js, NULL), 0);
	cr_assert_str_eq(js, "{\"tasks\":[]}");
	free(js);
	cr_assert_eq(zk_task_dump_json(NULL, &js, NULL), -EINVAL);
	cr_assert_eq(zk_task_dump(rt, NULL), -EINVAL);
	zk_runtime_free(rt);
}

static void *sleep_forever(void *arg)
{
	(void)arg;
	zk_sleep_ms(600000);
	return NULL;
}

Test(dump, shutdown_lists_tasks_still_alive_when_asked)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	int line = __LINE__ + 1;
	cr_assert_eq(ZK_SPAWN_ON(rt, NULL, sleep_forever, NULL), 0);
	/* Parked in its sleep: wait on the plain thread for the dump to say so. */
	bool parked = false;
	for (int i = 0; i < 5000 && !parked; i++) {
		char *js = NULL;
		cr_assert_eq(zk_task_dump_json(rt, &js, NULL), 0);
		parked = strstr(js, "\"kind\":\"timer\"") != NULL;
		free(js);
		if (!parked)
			zt_msleep(1);
	}
	cr_assert(parked);
	char path[] = "/tmp/zk-dump-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	setenv("ZK_TASK_DUMP_AT_EXIT", "1", 1);
	zk_runtime_free(rt);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char buf[4096] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	cr_assert_gt(n, 0);
	cr_assert_not_null(strstr(buf, "1 task(s) alive at shutdown"), "%s", buf);
	cr_assert_not_null(strstr(buf, " suspended "), "%s", buf);
	cr_assert_not_null(strstr(buf, "on timer deadline="), "%s", buf);
	char site[64];
	snprintf(site, sizeof(site), "test_metrics.c:%d\n", line);
	cr_assert_not_null(strstr(buf, site), "%s", buf);
}

/* ---- the metrics socket -------------------------------------------------------- */

/* Plain-thread client: sends req, reads one line into a malloc'ed string. */
static char *ask(const char *path, const char *req)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		     strerror(errno));
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	size_t cap = 1 << 16, have = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (have + 1 == cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + have, cap - have - 1);
		cr_assert_gt(n, 0, "server closed before a full answer");
		have += (size_t)n;
		buf[have] = '\0';
		if (memchr(buf, '\n', have))
			break;
	}
	close(fd);
	return buf;
}

Test(metrics, the_socket_answers_json_and_dump_requests)
{
	need_metrics();
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/m.sock", dir);
	zk_runtime_t *rt = zt_runtime(2);
	cr_assert_eq(zk_metrics_serve(rt, path), 0);
	cr_assert_eq(zk_metrics_serve(rt, path), -EBUSY);
	struct spawn_n s = {.n = 100};
	zt_run(rt, spawn_n_and_join, &s);
	char *js = ask(path, "json\n");
	cr_assert_not_null(strstr(js, "\"workers\":2"), "%s", js);
	cr_assert_not_null(strstr(js, "\"per_worker\":["), "%s", js);
	/* 100 spawned by the test task; the server's connection task is the
	 * one more (the server itself came from this thread: foreign). */
	cr_assert_not_null(strstr(js, "\"total\":{\"polls\":"), "%s", js);
	free(js);
	js = ask(path, "dump\n");
	cr_assert_eq(strncmp(js, "{\"tasks\":[", 10), 0, "%s", js);
	/* At least the server's accept task, suspended in accept. */
	cr_assert_not_null(strstr(js, "\"op\":\"accept\""), "%s", js);
	free(js);
	js = ask(path, "nonsense\n");
	cr_assert_not_null(strstr(js, "\"error\""), "%s", js);
	free(js);
	zk_runtime_free(rt);
	/* The server removed its socket when shutdown cancelled it. */
	cr_assert_neq(access(path, F_OK), 0);
	zt_rmtree(dir);
}
