/* lib/metrics.c — the metrics hooks the scheduler calls when it samples
 * (see metrics_internal.h), snapshots of every worker's counters and
 * histograms, and their JSON rendering.
 *
 * The hot hooks are macros in metrics_internal.h: a counter is a relaxed
 * load and store of the worker's own memory. Only the sampled paths land
 * here, where the clock is read: a clock read costs about as much as a whole
 * yield on this runtime, so timing every resume would double its cost. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "zokio/metrics.h"
#include "zokio/time.h"

_Static_assert(ZK__OP_COUNT_ <= ZK_METRICS_IO_OPS, "raise ZK_METRICS_IO_OPS");
_Static_assert(ZK__SAMPLE_EVERY == ZK_METRICS_SAMPLE_EVERY, "sampling");
_Static_assert(ZK__IO_SAMPLE_EVERY == ZK_METRICS_IO_SAMPLE_EVERY, "sampling");

uint64_t zk__coarse_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * ZK_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

bool zk_metrics_enabled(void)
{
#ifdef ZK_METRICS
	return true;
#else
	return false;
#endif
}

/* ---- sampled hooks --------------------------------------------------------- */

void zk__obs_worker_start(struct zk__worker *w)
{
	w->stats.run_left = ZK__SAMPLE_EVERY;
	w->stats.run_from = ZK__SAMPLE_EVERY;
	w->stats.wake_left = ZK__SAMPLE_EVERY;
	w->stats.io_left = ZK__IO_SAMPLE_EVERY;
	atomic_store_explicit(&w->stats.now_coarse, zk__coarse_now(), memory_order_relaxed);
	if (w->index == 0) {
		atomic_store_explicit(&w->rt->obs.start_ns, zk_now_ns(), memory_order_relaxed);
		zk__metrics_server_autostart(w->rt);
	}
}

/* A resume with run_left at 0 or a stamped wake lands here. A timed run
 * starts with run_left = 1, so the next resume on this worker lands here
 * too and ends it: with direct task-to-task switches the next resume comes
 * right after the switch-out, and the worker loop (or a switch back to it)
 * ends a timed run itself (ZK__OBS_RUN_END). */
void zk__obs_run_timed_begin(struct zk__worker *w, struct zk_task *t)
{
	uint64_t now = zk_now_ns();
	ZK__POLLS_FLUSH(&w->stats);
	if (w->stats.run_t0) {
		zk__hist_record(&w->stats.run_ns, now > w->stats.run_t0 ? now - w->stats.run_t0 : 0);
		w->stats.run_t0 = 0;
		if (w->stats.run_left == 0)
			w->stats.run_left = ZK__SAMPLE_EVERY;
	} else if (w->stats.run_left == 0) {
		w->stats.run_t0 = now;
		w->stats.run_left = 1;
	}
	w->stats.run_from = w->stats.run_left;
	if (t->obs_stamped) {
		uint64_t woken = t->obs.woken_ns;
		t->obs_stamped = false;
		zk__hist_record(&w->stats.delay_ns, now > woken ? now - woken : 0);
	}
}

void zk__obs_run_timed_end(struct zk__worker *w)
{
	uint64_t now = zk_now_ns();
	uint64_t t0 = w->stats.run_t0;
	w->stats.run_t0 = 0;
	ZK__POLLS_FLUSH(&w->stats);
	w->stats.run_left = ZK__SAMPLE_EVERY;
	w->stats.run_from = ZK__SAMPLE_EVERY;
	zk__hist_record(&w->stats.run_ns, now > t0 ? now - t0 : 0);
}

void zk__obs_wake_stamp(struct zk__worker *w, struct zk_task *t)
{
	w->stats.wake_left = ZK__SAMPLE_EVERY;
	t->obs.woken_ns = zk_now_ns();
	t->obs_stamped = true;
}

void zk__obs_drive(struct zk__worker *w)
{
	ZK__POLLS_FLUSH(&w->stats);
	atomic_store_explicit(&w->stats.now_coarse, zk__coarse_now(), memory_order_relaxed);
}

uint64_t zk__obs_io_begin(struct zk__worker *w)
{
	w->stats.io_left = ZK__IO_SAMPLE_EVERY;
	return zk_now_ns();
}

void zk__obs_io_end(struct zk__op *op, uint64_t t0)
{
	/* The task may have moved: the worker running it now records. */
	struct zk__worker *w = zk__worker_here();
	uint64_t now = zk_now_ns();
	if (w && op->opcode < ZK__OP_COUNT_)
		zk__hist_record(&w->stats.io_ns[op->opcode], now > t0 ? now - t0 : 0);
}

/* ---- snapshots ------------------------------------------------------------- */

static const char *const io_names[ZK__OP_COUNT_] = {
	[ZK__OP_NOP] = "nop",
	[ZK__OP_READ] = "read",
	[ZK__OP_WRITE] = "write",
	[ZK__OP_READV] = "readv",
	[ZK__OP_WRITEV] = "writev",
	[ZK__OP_FSYNC] = "fsync",
	[ZK__OP_OPENAT] = "openat",
	[ZK__OP_CLOSE] = "close",
	[ZK__OP_ACCEPT] = "accept",
	[ZK__OP_CONNECT] = "connect",
	[ZK__OP_RECV] = "recv",
	[ZK__OP_SEND] = "send",
	[ZK__OP_SHUTDOWN] = "shutdown",
	[ZK__OP_POLL] = "poll",
	[ZK__OP_SENDMSG] = "sendmsg",
	[ZK__OP_RECVMSG] = "recvmsg",
	[ZK__OP_STATX] = "statx",
	[ZK__OP_FALLOCATE] = "fallocate",
	[ZK__OP_FTRUNCATE] = "ftruncate",
	[ZK__OP_SYNC_FILE_RANGE] = "sync_file_range",
	[ZK__OP_RENAMEAT] = "renameat",
	[ZK__OP_UNLINKAT] = "unlinkat",
	[ZK__OP_MKDIRAT] = "mkdirat",
	[ZK__OP_SPLICE] = "splice",
	[ZK__OP_RECV_PBUF] = "recv_pbuf",
	[ZK__OP_SEND_ZC] = "send_zc",
	/* An opcode added without a name here shows as "op". */
};

const char *zk_metrics_io_name(unsigned i)
{
	if (i >= ZK__OP_COUNT_)
		return NULL;
	return io_names[i] ? io_names[i] : "op";
}

static uint64_t rd(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void read_worker(struct zk__worker *w, zk_worker_metrics_t *m)
{
	const struct zk__worker_stats *s = &w->stats;
	m->polls = rd(&s->polls);
	m->spawned = atomic_load_explicit(&w->n_spawned, memory_order_relaxed);
	m->stolen_in = rd(&s->stolen_in);
	m->stolen_out = rd(&s->stolen_out);
	m->steal_attempts = rd(&s->steal_attempts);
	m->parks = rd(&s->parks);
	m->unparks = rd(&s->unparks);
	m->lifo_hits = rd(&s->lifo_hits);
	m->global_pulls = rd(&s->global_pulls);
	m->timers_fired = rd(&s->timers_fired);
	m->submissions = rd(&s->be.submitted);
	m->enters = rd(&s->be.enters);
	m->completions = rd(&s->be.completed);
	m->cq_overflows = rd(&s->be.cq_overflows);
	m->local_queue_depth = zk__runq_len(&w->runq) +
			       (atomic_load_explicit(&w->lifo, memory_order_relaxed) != NULL);
	zk__hist_read(&s->run_ns, &m->run_ns);
	zk__hist_read(&s->delay_ns, &m->sched_delay_ns);
	for (unsigned i = 0; i < ZK__OP_COUNT_; i++)
		zk__hist_read(&s->io_ns[i], &m->io_ns[i]);
}

static void add_worker(zk_worker_metrics_t *t, const zk_worker_metrics_t *m)
{
	t->polls += m->polls;
	t->spawned += m->spawned;
	t->stolen_in += m->stolen_in;
	t->stolen_out += m->stolen_out;
	t->steal_attempts += m->steal_attempts;
	t->parks += m->parks;
	t->unparks += m->unparks;
	t->lifo_hits += m->lifo_hits;
	t->global_pulls += m->global_pulls;
	t->submissions += m->submissions;
	t->enters += m->enters;
	t->completions += m->completions;
	t->cq_overflows += m->cq_overflows;
	t->timers_fired += m->timers_fired;
	t->local_queue_depth += m->local_queue_depth;
	zk_histogram_merge(&t->run_ns, &m->run_ns);
	zk_histogram_merge(&t->sched_delay_ns, &m->sched_delay_ns);
	for (unsigned i = 0; i < ZK_METRICS_IO_OPS; i++)
		zk_histogram_merge(&t->io_ns[i], &m->io_ns[i]);
}

int zk_metrics_snapshot(zk_runtime_t *rt, zk_metrics_t *out)
{
	if (!rt || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->per_worker = calloc(rt->nworkers ? rt->nworkers : 1, sizeof(*out->per_worker));
	out->total = calloc(1, sizeof(*out->total));
	if (!out->per_worker || !out->total) {
		zk_metrics_free(out);
		return -ENOMEM;
	}
	out->enabled = zk_metrics_enabled();
	out->workers = rt->nworkers;
	out->backend = rt->backend->name;
	uint64_t start = atomic_load_explicit(&rt->obs.start_ns, memory_order_relaxed);
	uint64_t now = zk_now_ns();
	out->uptime_ns = start && now > start ? now - start : 0;
	out->foreign_spawned = atomic_load_explicit(&rt->foreign_spawned, memory_order_relaxed);
	out->live_tasks = zk__live_tasks(rt);
	out->global_queue_depth = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
	unsigned threads = 0, queued = 0;
	zk__backend_pool_gauges(&threads, &queued);
	out->blocking_threads = threads;
	out->blocking_queued = queued;
	for (unsigned i = 0; i < rt->nworkers; i++) {
		read_worker(&rt->workers[i], &out->per_worker[i]);
		add_worker(out->total, &out->per_worker[i]);
	}
	return 0;
}

void zk_metrics_free(zk_metrics_t *m)
{
	if (!m)
		return;
	free(m->per_worker);
	free(m->total);
	m->per_worker = NULL;
	m->total = NULL;
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_hist(FILE *f, const char *name, const zk_histogram_t *h)
{
	fprintf(f,
		"\"%s\":{\"count\":%llu,\"mean\":%.1f,\"min\":%llu,\"max\":%llu,\"p50\":%llu,"
		"\"p90\":%llu,\"p99\":%llu,\"p999\":%llu}",
		name, (unsigned long long)h->count, zk_histogram_mean(h), (unsigned long long)h->min,
		(unsigned long long)h->max, (unsigned long long)zk_histogram_percentile(h, 50),
		(unsigned long long)zk_histogram_percentile(h, 90),
		(unsigned long long)zk_histogram_percentile(h, 99),
		(unsigned long long)zk_histogram_percentile(h, 99.9));
}

static void json_worker(FILE *f, const zk_worker_metrics_t *m)
{
#define U(x) (unsigned long long)(m->x)
	fprintf(f,
		"{\"polls\":%llu,\"spawned\":%llu,\"stolen_in\":%llu,\"stolen_out\":%llu,"
		"\"steal_attempts\":%llu,\"parks\":%llu,\"unparks\":%llu,\"lifo_hits\":%llu,"
		"\"global_pulls\":%llu,\"submissions\":%llu,\"enters\":%llu,\"completions\":%llu,"
		"\"cq_overflows\":%llu,\"timers_fired\":%llu,\"local_queue_depth\":%llu,",
		U(polls), U(spawned), U(stolen_in), U(stolen_out), U(steal_attempts), U(parks),
		U(unparks), U(lifo_hits), U(global_pulls), U(submissions), U(enters), U(completions),
		U(cq_overflows), U(timers_fired), U(local_queue_depth));
#undef U
	json_hist(f, "run_ns", &m->run_ns);
	fputc(',', f);
	json_hist(f, "sched_delay_ns", &m->sched_delay_ns);
	fputs(",\"io_ns\":{", f);
	bool first = true;
	for (unsigned i = 0; i < ZK__OP_COUNT_; i++) {
		if (!m->io_ns[i].count)
			continue;
		if (!first)
			fputc(',', f);
		first = false;
		json_hist(f, zk_metrics_io_name(i), &m->io_ns[i]);
	}
	fputs("}}", f);
}

int zk_metrics_json(const zk_metrics_t *m, bool per_worker, char **out, size_t *len)
{
	if (!m || !out || !m->total)
		return -EINVAL;
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return -ENOMEM;
	fprintf(f,
		"{\"enabled\":%s,\"backend\":\"%s\",\"workers\":%u,\"uptime_ns\":%llu,"
		"\"foreign_spawned\":%llu,\"live_tasks\":%llu,\"global_queue_depth\":%llu,"
		"\"blocking_threads\":%llu,\"blocking_queued\":%llu,\"sample_every\":%u,"
		"\"io_sample_every\":%u,\"total\":",
		m->enabled ? "true" : "false", m->backend ? m->backend : "", m->workers,
		(unsigned long long)m->uptime_ns, (unsigned long long)m->foreign_spawned,
		(unsigned long long)m->live_tasks, (unsigned long long)m->global_queue_depth,
		(unsigned long long)m->blocking_threads, (unsigned long long)m->blocking_queued,
		ZK_METRICS_SAMPLE_EVERY, ZK_METRICS_IO_SAMPLE_EVERY);
	json_worker(f, m->total);
	if (per_worker && m->per_worker) {
		fputs(",\"per_worker\":[", f);
		for (unsigned i = 0; i < m->workers; i++) {
			if (i)
				fputc(',', f);
			json_worker(f, &m->per_worker[i]);
		}
		fputc(']', f);
	}
	fputc('}', f);
	if (fclose(f) != 0 || !buf) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	if (len)
		*len = n;
	return 0;
}
