/* tests/test_stress.c — volume and concurrency: a million spawns, a hundred
 * thousand sleepers, wake/spawn/cancel storms from plain threads, work
 * stealing, and a worker stuck in a blocking syscall.
 *
 * Sizes shrink with ZK_TEST_SCALE (sanitizer runs use 0.1). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(stress, .timeout = 300);

#define MS ZK_NSEC_PER_MSEC

static void atomic_max(atomic_long *m, long v)
{
	long cur = atomic_load(m);
	while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
		;
}

/* Timing bounds are looser under sanitizers (everything is 5-10x slower). */
static uint64_t lateness_bound_ns(void)
{
	return zt_scale() < 1.0 ? 3 * ZK_NSEC_PER_SEC : ZK_NSEC_PER_SEC;
}

/* ---- a million spawns and joins ---------------------------------------------------- */

static void *plus_one(void *arg)
{
	return (void *)((uintptr_t)arg + 1);
}

struct spawner {
	size_t n;
	uint64_t sum;
};

static void *spawn_join_batches(void *arg)
{
	struct spawner *s = arg;
	enum { BATCH = 512 };
	zk_task_t *h[BATCH];
	size_t done = 0;
	while (done < s->n) {
		size_t b = s->n - done < BATCH ? s->n - done : BATCH;
		for (size_t i = 0; i < b; i++) {
			int r = zk_spawn(&h[i], plus_one, (void *)(uintptr_t)(done + i));
			if (r != 0) {
				zt_fail(__FILE__, __LINE__, "spawn %zu: %d", done + i, r);
				return NULL;
			}
		}
		for (size_t i = 0; i < b; i++) {
			void *res = NULL;
			int r = zk_join(h[i], &res);
			if (r != 0 || (uintptr_t)res != done + i + 1)
				zt_fail(__FILE__, __LINE__, "join %zu: %d, %p", done + i, r, res);
			s->sum += (uintptr_t)res;
		}
		done += b;
	}
	return NULL;
}

static void *four_spawners(void *arg)
{
	struct spawner *s = arg;
	zk_task_t *h[4];
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], spawn_join_batches, &s[i]), 0);
	for (int i = 0; i < 4; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(stress, a_million_spawns_and_joins_all_complete_with_their_results, .timeout = 240)
{
	zk_runtime_t *rt = zt_runtime(0);
	size_t total = zt_scaled(1000000, 20000);
	struct spawner s[4];
	for (int i = 0; i < 4; i++)
		s[i] = (struct spawner){.n = total / 4};
	uint64_t t0 = zk_now_ns();
	zt_run(rt, four_spawners, s);
	double ms = zt_ms_since(t0);
	for (int i = 0; i < 4; i++) {
		uint64_t n = s[i].n;
		cr_assert_eq(s[i].sum, n * (n + 1) / 2, "spawner %d sum", i);
	}
	cr_log_info("%zu spawn+join in %.0f ms (%.0f/s)", total, ms, total / (ms / 1000));
	zk_runtime_free(rt);
}

/* ---- a hundred thousand sleepers ----------------------------------------------------- */

struct sleepers {
	uint64_t deadline;      /* common deadline, or 0 for own durations */
	atomic_long started_late;
	atomic_long early;
	atomic_long max_late_ns;
	atomic_long finished;
	atomic_long failed;
};

struct sleeper_arg {
	struct sleepers *s;
	unsigned ms;
};

static void *sleep_until_common(void *arg)
{
	struct sleepers *s = arg;
	if (zk_now_ns() >= s->deadline)
		atomic_fetch_add(&s->started_late, 1);
	if (zk_sleep_until(s->deadline) != 0)
		atomic_fetch_add(&s->failed, 1);
	uint64_t now = zk_now_ns();
	if (now < s->deadline)
		atomic_fetch_add(&s->early, 1);
	else
		atomic_max(&s->max_late_ns, (long)(now - s->deadline));
	atomic_fetch_add(&s->finished, 1);
	return NULL;
}

static void *spawn_sleepers(void *arg)
{
	struct sleepers *s = arg;
	size_t n = (size_t)atomic_load(&s->finished);
	atomic_store(&s->finished, 0);
	zk_task_t **h = malloc(n * sizeof(*h));
	for (size_t i = 0; i < n; i++) {
		int r = zk_spawn(&h[i], sleep_until_common, s);
		if (r != 0) {
			zt_fail(__FILE__, __LINE__, "spawn %zu: %d", i, r);
			n = i;
			break;
		}
	}
	for (size_t i = 0; i < n; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	free(h);
	return NULL;
}

Test(stress, a_hundred_thousand_sleepers_all_wake_on_time, .timeout = 240)
{
	zk_runtime_t *rt = zt_runtime(0);
	size_t n = zt_scaled(100000, 5000);
	struct sleepers s = {0};
	/* Long enough for every task to be asleep before the deadline. */
	s.deadline = zk_now_ns() + (zt_scale() < 1.0 ? 4000 : 2000) * MS;
	atomic_store(&s.finished, (long)n);
	zt_run(rt, spawn_sleepers, &s);
	cr_assert_eq(atomic_load(&s.finished), (long)n);
	cr_assert_eq(atomic_load(&s.failed), 0, "sleeps returning an error");
	cr_assert_eq(atomic_load(&s.early), 0, "%ld sleeps ended early", atomic_load(&s.early));
	/* How late, and how many started after the deadline (a busy shared
	 * machine decides both): reported, not asserted (no timing asserts;
	 * benchmarks/ measures timer accuracy). */
	long late = atomic_load(&s.max_late_ns);
	cr_log_info("%zu sleepers, %ld started after the deadline, max lateness %.1f ms", n,
		    atomic_load(&s.started_late), late / 1e6);
	zk_runtime_free(rt);
}

/* Every task first waits for a common start (so all are started and asleep
 * at once, and the spawn burst is over), then sleeps its own duration. */
static void *sleep_own_duration(void *arg)
{
	struct sleeper_arg *a = arg;
	struct sleepers *s = a->s;
	if (zk_sleep_until(s->deadline) != 0)
		atomic_fetch_add(&s->failed, 1);
	uint64_t t0 = zk_now_ns();
	if (zk_sleep_ms(a->ms) != 0)
		atomic_fetch_add(&s->failed, 1);
	uint64_t el = zk_now_ns() - t0;
	uint64_t want = (uint64_t)a->ms * MS;
	if (el < want)
		atomic_fetch_add(&s->early, 1);
	else
		atomic_max(&s->max_late_ns, (long)(el - want));
	atomic_fetch_add(&s->finished, 1);
	return NULL;
}

struct staggered {
	struct sleepers s;
	size_t n;
};

static void *spawn_staggered(void *arg)
{
	struct staggered *st = arg;
	struct sleeper_arg *a = malloc(st->n * sizeof(*a));
	zk_task_t **h = malloc(st->n * sizeof(*h));
	for (size_t i = 0; i < st->n; i++) {
		a[i] = (struct sleeper_arg){&st->s, 10 + (unsigned)(i % 97)};
		ZT_CHECK_EQ(zk_spawn(&h[i], sleep_own_duration, &a[i]), 0);
	}
	for (size_t i = 0; i < st->n; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	free(h);
	free(a);
	return NULL;
}

Test(stress, a_hundred_thousand_staggered_sleeps_are_never_early_and_never_very_late,
     .timeout = 240)
{
	zk_runtime_t *rt = zt_runtime(0);
	struct staggered st = {.n = zt_scaled(100000, 5000)};
	st.s.deadline = zk_now_ns() + (zt_scale() < 1.0 ? 4000 : 2000) * MS;
	zt_run(rt, spawn_staggered, &st);
	cr_assert_eq(atomic_load(&st.s.finished), (long)st.n);
	cr_assert_eq(atomic_load(&st.s.failed), 0);
	cr_assert_eq(atomic_load(&st.s.early), 0, "%ld sleeps ended early",
		     atomic_load(&st.s.early));
	long late = atomic_load(&st.s.max_late_ns);
	cr_log_info("%zu staggered sleepers, max lateness %.1f ms", st.n, late / 1e6);
	cr_assert_lt((uint64_t)late, lateness_bound_ns(), "a sleep ended %.1f ms late",
		     late / 1e6);
	zk_runtime_free(rt);
}

/* ---- storms from plain threads --------------------------------------------------------- */

#define STORM_THREADS 8

struct wake_storm {
	size_t n;
	zk_oneshot_t *os;
	atomic_long go;
	unsigned tid_next;
	pthread_mutex_t lock;
};

static void *storm_receiver(void *arg)
{
	zk_oneshot_t *o = arg;
	void *v = NULL;
	int r = zk_oneshot_recv(o, &v);
	if (r != 0)
		zt_fail(__FILE__, __LINE__, "recv: %d", r);
	return v;
}

static void *storm_sender(void *arg)
{
	struct wake_storm *ws = arg;
	pthread_mutex_lock(&ws->lock);
	unsigned tid = ws->tid_next++;
	pthread_mutex_unlock(&ws->lock);
	if (!zt_wait_at_least(&ws->go, 1, 60000))
		return NULL;
	/* Back to front, so some receivers are still being spawned or have
	 * not started when their value arrives. */
	for (size_t i = ws->n; i-- > 0;)
		if (i % STORM_THREADS == tid) {
			int r = zk_oneshot_send(&ws->os[i], (void *)(i + 1));
			if (r != 0)
				zt_fail(__FILE__, __LINE__, "send %zu: %d", i, r);
		}
	return NULL;
}

static void *wake_storm_driver(void *arg)
{
	struct wake_storm *ws = arg;
	zk_task_t **h = malloc(ws->n * sizeof(*h));
	for (size_t i = 0; i < ws->n; i++) {
		ZT_CHECK_EQ(zk_spawn(&h[i], storm_receiver, &ws->os[i]), 0);
		if (i == ws->n / 2)
			atomic_store(&ws->go, 1);
	}
	for (size_t i = 0; i < ws->n; i++) {
		void *v = NULL;
		ZT_CHECK_EQ(zk_join(h[i], &v), 0);
		if ((uintptr_t)v != i + 1)
			zt_fail(__FILE__, __LINE__, "receiver %zu got %p", i, v);
	}
	free(h);
	return NULL;
}

Test(stress, oneshot_sends_from_many_plain_threads_wake_every_receiver, .timeout = 120)
{
	zk_runtime_t *rt = zt_runtime(0);
	struct wake_storm ws = {.n = zt_scaled(80000, 8000)};
	pthread_mutex_init(&ws.lock, NULL);
	ws.os = malloc(ws.n * sizeof(*ws.os));
	for (size_t i = 0; i < ws.n; i++)
		zk_oneshot_init(&ws.os[i]);
	pthread_t th[STORM_THREADS];
	for (int i = 0; i < STORM_THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, storm_sender, &ws), 0);
	zt_run(rt, wake_storm_driver, &ws);
	for (int i = 0; i < STORM_THREADS; i++)
		pthread_join(th[i], NULL);
	zt_assert_no_failures();
	zk_runtime_free(rt);
	free(ws.os);
	pthread_mutex_destroy(&ws.lock);
}

struct spawn_storm {
	zk_runtime_t *rt;
	size_t per_thread;
	atomic_long ran;
	atomic_long spawned;
};

static void *storm_task(void *arg)
{
	struct spawn_storm *ss = arg;
	if (atomic_fetch_add(&ss->ran, 1) % 7 == 0)
		zk_yield();
	return NULL;
}

static void *storm_spawner(void *arg)
{
	struct spawn_storm *ss = arg;
	for (size_t i = 0; i < ss->per_thread; i++) {
		int r;
		if (i % 2) {
			zk_task_t *h;
			r = zk_spawn_on(ss->rt, &h, storm_task, ss);
			if (r == 0)
				ZT_CHECK_EQ(zk_detach(h), 0); /* races with the task's end */
		} else {
			r = zk_spawn_on(ss->rt, NULL, storm_task, ss);
		}
		if (r != 0) {
			zt_fail(__FILE__, __LINE__, "spawn_on: %d", r);
			break;
		}
		atomic_fetch_add(&ss->spawned, 1);
	}
	return NULL;
}

Test(stress, spawns_from_many_plain_threads_all_run, .timeout = 120)
{
	struct spawn_storm ss = {.rt = zt_runtime(0), .per_thread = zt_scaled(40000, 2000)};
	pthread_t th[STORM_THREADS];
	for (int i = 0; i < STORM_THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, storm_spawner, &ss), 0);
	for (int i = 0; i < STORM_THREADS; i++)
		pthread_join(th[i], NULL);
	zt_assert_no_failures();
	long want = (long)(ss.per_thread * STORM_THREADS);
	cr_assert_eq(atomic_load(&ss.spawned), want);
	cr_assert(zt_wait_at_least(&ss.ran, want, 60000), "%ld of %ld tasks ran",
		  atomic_load(&ss.ran), want);
	zk_runtime_free(ss.rt);
	cr_assert_eq(atomic_load(&ss.ran), want);
}

struct cancel_storm {
	size_t n;
	zk_task_t **h;
	atomic_long published;
	atomic_long asleep;
	unsigned tid_next;
	pthread_mutex_t lock;
};

static void *storm_sleeper(void *arg)
{
	struct cancel_storm *cs = arg;
	atomic_fetch_add(&cs->asleep, 1);
	return (void *)(intptr_t)zk_sleep_ms(60000);
}

static void *storm_canceller(void *arg)
{
	struct cancel_storm *cs = arg;
	pthread_mutex_lock(&cs->lock);
	unsigned tid = cs->tid_next++;
	pthread_mutex_unlock(&cs->lock);
	if (!zt_wait_at_least(&cs->published, 1, 60000))
		return NULL;
	for (size_t i = tid; i < cs->n; i += STORM_THREADS)
		ZT_CHECK_EQ(zk_cancel(cs->h[i]), 0);
	return NULL;
}

static void *cancel_storm_driver(void *arg)
{
	struct cancel_storm *cs = arg;
	for (size_t i = 0; i < cs->n; i++)
		ZT_CHECK_EQ(zk_spawn(&cs->h[i], storm_sleeper, cs), 0);
	/* Most are asleep, some have not started yet. */
	zt_task_wait_at_least(&cs->asleep, (long)(cs->n / 2), 30000);
	atomic_store(&cs->published, 1);
	uint64_t t0 = zk_now_ns();
	size_t never_started = 0;
	for (size_t i = 0; i < cs->n; i++) {
		void *res = NULL;
		int r = zk_join(cs->h[i], &res);
		if (r == -ECANCELED)
			never_started++;
		else if (r != 0 || (intptr_t)res != -ECANCELED)
			zt_fail(__FILE__, __LINE__, "task %zu: join %d, sleep %ld", i, r,
				(long)(intptr_t)res);
	}
	double ms = zt_ms_since(t0);
	if (ms > 30000)
		zt_fail(__FILE__, __LINE__, "cancel storm took %.0f ms", ms);
	return (void *)never_started;
}

Test(stress, cancels_from_many_plain_threads_wake_every_sleeper, .timeout = 120)
{
	zk_runtime_t *rt = zt_runtime(0);
	struct cancel_storm cs = {.n = zt_scaled(40000, 4000)};
	pthread_mutex_init(&cs.lock, NULL);
	cs.h = malloc(cs.n * sizeof(*cs.h));
	pthread_t th[STORM_THREADS];
	for (int i = 0; i < STORM_THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, storm_canceller, &cs), 0);
	zt_run(rt, cancel_storm_driver, &cs);
	for (int i = 0; i < STORM_THREADS; i++)
		pthread_join(th[i], NULL);
	zt_assert_no_failures();
	zk_runtime_free(rt);
	free(cs.h);
	pthread_mutex_destroy(&cs.lock);
}

/* Two tasks bounce a counter through fresh oneshots as fast as they can:
 * every wake races with the receiver still switching out. */
struct pingpong {
	zk_oneshot_t *ab, *ba;
	size_t rounds;
};

static void *ping(void *arg)
{
	struct pingpong *p = arg;
	for (size_t i = 0; i < p->rounds; i++) {
		ZT_CHECK_EQ(zk_oneshot_send(&p->ab[i], (void *)(i * 2)), 0);
		void *v = NULL;
		ZT_CHECK_EQ(zk_oneshot_recv(&p->ba[i], &v), 0);
		if ((uintptr_t)v != i * 2 + 1) {
			zt_fail(__FILE__, __LINE__, "round %zu: %p", i, v);
			break;
		}
	}
	return NULL;
}

static void *pong(void *arg)
{
	struct pingpong *p = arg;
	for (size_t i = 0; i < p->rounds; i++) {
		void *v = NULL;
		ZT_CHECK_EQ(zk_oneshot_recv(&p->ab[i], &v), 0);
		ZT_CHECK_EQ(zk_oneshot_send(&p->ba[i], (void *)((uintptr_t)v + 1)), 0);
	}
	return NULL;
}

static void *pingpong_driver(void *arg)
{
	struct pingpong *p = arg;
	zk_task_t *a, *b;
	ZT_CHECK_EQ(zk_spawn(&b, pong, p), 0);
	ZT_CHECK_EQ(zk_spawn(&a, ping, p), 0);
	ZT_CHECK_EQ(zk_join(a, NULL), 0);
	ZT_CHECK_EQ(zk_join(b, NULL), 0);
	return NULL;
}

Test(stress, two_tasks_ping_pong_a_hundred_thousand_times_without_a_lost_wake, .timeout = 120)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct pingpong p = {.rounds = zt_scaled(100000, 10000)};
	p.ab = malloc(p.rounds * sizeof(zk_oneshot_t));
	p.ba = malloc(p.rounds * sizeof(zk_oneshot_t));
	for (size_t i = 0; i < p.rounds; i++) {
		zk_oneshot_init(&p.ab[i]);
		zk_oneshot_init(&p.ba[i]);
	}
	zt_run(rt, pingpong_driver, &p);
	zk_runtime_free(rt);
	free(p.ab);
	free(p.ba);
}

/* ---- work stealing ------------------------------------------------------------------------- */

struct child_arg {
	struct steal *s;
	size_t i;
};

/* Owned by the test, freed after the runtime: a child stranded past the
 * spinner's deadline still finds its records. */
struct steal {
	size_t n;
	int *where;
	struct child_arg *ca;
	atomic_long done;
	int pipefd[2];
	atomic_long blocked_in_read;
};

static void steal_init(struct steal *s, size_t n)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->where = malloc(n * sizeof(int));
	s->ca = malloc(n * sizeof(*s->ca));
	for (size_t i = 0; i < n; i++) {
		s->where[i] = -1;
		s->ca[i] = (struct child_arg){s, i};
	}
	s->pipefd[0] = s->pipefd[1] = -1;
}

static void steal_free(struct steal *s)
{
	free(s->where);
	free(s->ca);
}

static void *child_records_worker(void *arg)
{
	struct child_arg *c = arg;
	c->s->where[c->i] = zk_worker_index();
	/* A little work each, so the queue does not drain in one steal. */
	volatile uint64_t acc = 0;
	for (int k = 0; k < 2000; k++)
		acc = acc + (uint64_t)k;
	(void)acc;
	if ((size_t)atomic_fetch_add(&c->s->done, 1) + 1 == c->s->n && c->s->pipefd[1] >= 0) {
		ssize_t w = write(c->s->pipefd[1], "x", 1);
		(void)w;
	}
	return NULL;
}

static void *spawn_then_spin(void *arg)
{
	struct steal *s = arg;
	for (size_t i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_spawn(NULL, child_records_worker, &s->ca[i]), 0);
	int me = zk_worker_index();
	/* Never suspends: the children can only run where they are stolen. */
	uint64_t t0 = zk_now_ns();
	while (atomic_load(&s->done) < (long)s->n && zk_now_ns() - t0 < 10 * ZK_NSEC_PER_SEC)
		;
	ZT_CHECK_EQ(zk_worker_index(), me);
	ZT_CHECK_EQ(atomic_load(&s->done), (long)s->n);
	return (void *)(intptr_t)me;
}

Test(stress, tasks_queued_behind_a_busy_task_are_stolen_by_the_other_worker, .timeout = 120)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct steal s;
	steal_init(&s, zt_scaled(5000, 1000));
	void *res = NULL;
	int r = zk_block_on(rt, spawn_then_spin, &s, &res);
	zk_runtime_free(rt); /* waits for stranded children, if any */
	cr_assert_eq(r, 0);
	zt_assert_no_failures();
	int spinner = (int)(intptr_t)res;
	cr_assert(spinner == 0 || spinner == 1);
	size_t other = 0;
	for (size_t i = 0; i < s.n; i++)
		other += s.where[i] == 1 - spinner;
	cr_assert_eq(other, s.n, "only %zu of %zu children ran on the other worker", other, s.n);
	steal_free(&s);
}

struct watchdog {
	int fd;
	unsigned ms;
	atomic_long cancel;
	atomic_long fired;
};

static void *watchdog_main(void *arg)
{
	struct watchdog *wd = arg;
	uint64_t t0 = zk_now_ns();
	while (!atomic_load(&wd->cancel)) {
		if (zt_ms_since(t0) > wd->ms) {
			atomic_store(&wd->fired, 1);
			ssize_t w = write(wd->fd, "w", 1);
			(void)w;
			return NULL;
		}
		zt_msleep(5);
	}
	return NULL;
}

static void *spawn_then_block_in_read(void *arg)
{
	struct steal *s = arg;
	for (size_t i = 0; i < s->n; i++)
		ZT_CHECK_EQ(zk_spawn(NULL, child_records_worker, &s->ca[i]), 0);
	int me = zk_worker_index();
	atomic_store(&s->blocked_in_read, 1);
	char c;
	/* A plain blocking read: this worker thread is stuck until the last
	 * child (which must run elsewhere) writes the pipe. */
	ZT_CHECK_EQ(read(s->pipefd[0], &c, 1), 1);
	ZT_CHECK_EQ(atomic_load(&s->done), (long)s->n);
	return (void *)(intptr_t)me;
}

Test(stress, tasks_queued_behind_a_worker_blocked_in_a_syscall_are_stolen, .timeout = 120)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct steal s;
	steal_init(&s, zt_scaled(5000, 1000));
	cr_assert_eq(pipe2(s.pipefd, O_CLOEXEC), 0);
	struct watchdog wd = {.fd = s.pipefd[1], .ms = 10000};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, watchdog_main, &wd), 0);
	void *res = NULL;
	int r = zk_block_on(rt, spawn_then_block_in_read, &s, &res);
	atomic_store(&wd.cancel, 1);
	pthread_join(th, NULL);
	long done_then = atomic_load(&s.done);
	zk_runtime_free(rt); /* waits for stranded children, if any */
	cr_assert_eq(r, 0);
	cr_assert_eq(atomic_load(&wd.fired), 0,
		     "the blocked worker's queued children did not all run elsewhere: "
		     "%ld of %zu done after 10 s",
		     done_then, s.n);
	zt_assert_no_failures();
	int blocked = (int)(intptr_t)res;
	size_t other = 0;
	for (size_t i = 0; i < s.n; i++)
		other += s.where[i] == 1 - blocked;
	cr_assert_eq(other, s.n, "only %zu of %zu children ran on the other worker", other, s.n);
	steal_free(&s);
	close(s.pipefd[0]);
	close(s.pipefd[1]);
}

/* ---- a worker stuck in a blocking syscall does not stop the other ------------------------ */

struct stuck {
	int pipefd[2];
	atomic_long blocked;
	atomic_long released;
	char *dir;
};

static void *block_worker_in_read(void *arg)
{
	struct stuck *st = arg;
	atomic_store(&st->blocked, 1);
	char c;
	ssize_t r = read(st->pipefd[0], &c, 1); /* deliberately not zk_read */
	ZT_CHECK_EQ(r, 1);
	atomic_store(&st->released, 1);
	return NULL;
}

static void *echo_once(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16];
	ssize_t n = zk_recv(fd, buf, sizeof(buf), 0);
	ZT_CHECK(n > 0);
	if (n > 0)
		ZT_CHECK_EQ(zk_send(fd, buf, (size_t)n, 0), n);
	return NULL;
}

static void *make_progress(void *arg)
{
	struct stuck *st = arg;
	/* Timers. */
	for (int i = 0; i < 20; i++) {
		uint64_t t0 = zk_now_ns();
		ZT_CHECK_EQ(zk_sleep_ms(2), 0);
		ZT_CHECK(zk_now_ns() - t0 >= 2 * MS);
	}
	/* Spawn and join. */
	for (uintptr_t i = 0; i < 1000; i++) {
		zk_task_t *h;
		void *res = NULL;
		ZT_CHECK_EQ(zk_spawn(&h, plus_one, (void *)i), 0);
		ZT_CHECK_EQ(zk_join(h, &res), 0);
		ZT_CHECK_EQ((uintptr_t)res, i + 1);
	}
	/* Socket I/O between two tasks. */
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, echo_once, (void *)(intptr_t)sv[1]), 0);
	ZT_CHECK_EQ(zk_send(sv[0], "alive", 5, 0), 5);
	char buf[8] = {0};
	ZT_CHECK_EQ(zk_recv(sv[0], buf, 5, MSG_WAITALL), 5);
	ZT_CHECK(memcmp(buf, "alive", 5) == 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	ZT_CHECK_EQ(zk_close(sv[0]), 0);
	ZT_CHECK_EQ(zk_close(sv[1]), 0);
	/* File I/O. */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/f", st->dir);
	int fd = zk_open(path, O_RDWR | O_CREAT, 0600);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_write(fd, "data", 4, 0), 4);
	ZT_CHECK_EQ(zk_fsync(fd), 0);
	ZT_CHECK_EQ(zk_read(fd, buf, 4, 0), 4);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* The stuck worker is still stuck: all of that ran elsewhere. */
	ZT_CHECK_EQ(atomic_load(&st->released), 0);
	/* Release it. */
	ZT_CHECK_EQ(write(st->pipefd[1], "x", 1), 1);
	return (void *)1;
}

Test(stress, a_worker_blocked_in_a_plain_syscall_does_not_stop_the_other_worker,
     .timeout = 120)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct stuck st = {.dir = zt_tmpdir()};
	cr_assert_eq(pipe2(st.pipefd, O_CLOEXEC), 0);
	cr_assert_eq(zk_spawn_on(rt, NULL, block_worker_in_read, &st), 0);
	cr_assert(zt_wait_at_least(&st.blocked, 1, 10000));
	zt_msleep(20);
	struct watchdog wd = {.fd = st.pipefd[1], .ms = 30000};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, watchdog_main, &wd), 0);
	void *res = zt_run(rt, make_progress, &st);
	atomic_store(&wd.cancel, 1);
	pthread_join(th, NULL);
	cr_assert_eq(atomic_load(&wd.fired), 0, "no progress while one worker was blocked");
	cr_assert_eq(res, (void *)1);
	cr_assert(zt_wait_at_least(&st.released, 1, 10000));
	zk_runtime_free(rt);
	close(st.pipefd[0]);
	close(st.pipefd[1]);
	zt_rmtree(st.dir);
}
