/* tests/test_runtime.c — runtime.h: create, config validation, block_on,
 * shutdown with suspended tasks, free, current runtime and worker index. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(runtime, .timeout = 60);

/* ---- create ---------------------------------------------------------------- */

static void *return_arg(void *arg)
{
	return arg;
}

Test(runtime, create_with_null_config_uses_one_worker_per_cpu)
{
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, NULL), 0);
	cr_assert_not_null(rt);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned want = ncpu > 256 ? 256 : (unsigned)ncpu;
	cr_assert_eq(zk_runtime_workers(rt), want);
	/* The default is io_uring unless ZK_BACKEND picks another (the suite
	 * runs once per backend). */
	const char *env = getenv("ZK_BACKEND");
	cr_assert_str_eq(zk_runtime_backend(rt), env && *env ? env : "io_uring");
	cr_assert_eq(zt_run(rt, return_arg, (void *)0x5a), (void *)0x5a);
	zk_runtime_free(rt);
}

Test(runtime, create_with_config_honours_every_field)
{
	zk_config_t cfg = {.workers = 3, .ring_entries = 64, .stack_size = 32 * 1024,
			   .stack_guard = ZK_GUARD_ALWAYS, .backend = ZK_BACKEND_IO_URING,
			   .pin_workers = 1};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	cr_assert_eq(zk_runtime_workers(rt), 3);
	cr_assert_str_eq(zk_runtime_backend(rt), "io_uring");
	cr_assert_eq(zt_run(rt, return_arg, (void *)7), (void *)7);
	zk_runtime_free(rt);
}

/* A deep-ish frame: proves the configured stack size is usable. */
static void *use_stack(void *arg)
{
	size_t n = (size_t)(uintptr_t)arg;
	volatile char buf[n];
	for (size_t i = 0; i < n; i += 512)
		buf[i] = (char)i;
	buf[n - 1] = 1;
	return (void *)(uintptr_t)(buf[0] + buf[n - 1]);
}

Test(runtime, minimum_stack_size_is_accepted_and_usable)
{
	zk_config_t cfg = {.workers = 1, .stack_size = 16 * 1024};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	/* Half the minimum stack in one frame. */
	cr_assert_eq(zt_run(rt, use_stack, (void *)(uintptr_t)(8 * 1024)), (void *)1);
	zk_runtime_free(rt);
}

Test(runtime, guard_modes_auto_and_never_run_tasks)
{
	for (int mode = ZK_GUARD_AUTO; mode <= ZK_GUARD_NEVER; mode++) {
		zk_config_t cfg = {.workers = 1};
		cfg.stack_guard = mode;
		zk_runtime_t *rt = NULL;
		cr_assert_eq(zk_runtime_create(&rt, &cfg), 0, "guard mode %d", mode);
		cr_assert_eq(zt_run(rt, return_arg, (void *)3), (void *)3);
		zk_runtime_free(rt);
	}
}

Test(runtime, create_rejects_null_out)
{
	cr_assert_eq(zk_runtime_create(NULL, NULL), -EINVAL);
	zk_config_t cfg = {.workers = 1};
	cr_assert_eq(zk_runtime_create(NULL, &cfg), -EINVAL);
}

static void expect_einval(zk_config_t cfg, const char *what)
{
	zk_runtime_t *rt = (zk_runtime_t *)(uintptr_t)0x1;
	int r = zk_runtime_create(&rt, &cfg);
	cr_assert_eq(r, -EINVAL, "%s: got %d", what, r);
}

Test(runtime, create_rejects_more_than_256_workers)
{
	expect_einval((zk_config_t){.workers = 257}, "workers=257");
	expect_einval((zk_config_t){.workers = 100000}, "workers=100000");
}

Test(runtime, create_accepts_256_workers)
{
	zk_config_t cfg = {.workers = 256, .ring_entries = 8};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	cr_assert_eq(zk_runtime_workers(rt), 256);
	cr_assert_eq(zt_run(rt, return_arg, (void *)9), (void *)9);
	zk_runtime_free(rt);
}

Test(runtime, create_rejects_ring_entries_not_a_power_of_two)
{
	expect_einval((zk_config_t){.workers = 1, .ring_entries = 3}, "ring_entries=3");
	expect_einval((zk_config_t){.workers = 1, .ring_entries = 100}, "ring_entries=100");
	expect_einval((zk_config_t){.workers = 1, .ring_entries = 255}, "ring_entries=255");
}

Test(runtime, create_rejects_ring_entries_above_32768)
{
	expect_einval((zk_config_t){.workers = 1, .ring_entries = 65536}, "ring_entries=65536");
}

Test(runtime, create_rejects_stack_size_below_16k)
{
	expect_einval((zk_config_t){.workers = 1, .stack_size = 16 * 1024 - 1}, "16K-1");
	expect_einval((zk_config_t){.workers = 1, .stack_size = 4096}, "4096");
	expect_einval((zk_config_t){.workers = 1, .stack_size = 1}, "1");
}

Test(runtime, rejected_config_starts_no_threads_and_leaves_out_untouched)
{
	zk_runtime_t *rt = (zk_runtime_t *)(uintptr_t)0x1;
	cr_assert_eq(zk_runtime_create(&rt, &(zk_config_t){.workers = 1, .ring_entries = 7}),
		     -EINVAL);
	cr_assert_eq(rt, (zk_runtime_t *)(uintptr_t)0x1);
}

/* Power-of-two edge sizes of the ring must work, including with I/O that
 * needs two SQEs (an op plus its linked timeout). */
struct small_ring_arg {
	int sv[2];
};

static void *small_ring_io(void *arg)
{
	struct small_ring_arg *a = arg;
	char c = 'x';
	ZT_CHECK_EQ(zk_send(a->sv[0], &c, 1, 0), 1);
	char got = 0;
	ZT_CHECK_EQ(zk_timeout_next(2 * ZK_NSEC_PER_SEC), 0);
	ZT_CHECK_EQ(zk_recv(a->sv[1], &got, 1, 0), 1);
	ZT_CHECK_EQ(got, 'x');
	ZT_CHECK_EQ(zk_timeout_next(20 * ZK_NSEC_PER_MSEC), 0);
	ZT_CHECK_EQ(zk_recv(a->sv[1], &got, 1, 0), -ETIMEDOUT);
	ZT_CHECK_EQ(zk_sleep_ms(1), 0);
	return NULL;
}

Test(runtime, smallest_rings_still_run_timed_io, .timeout = 30)
{
	unsigned sizes[] = {1, 2, 4};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		zk_config_t cfg = {.workers = 1, .ring_entries = sizes[i]};
		zk_runtime_t *rt = NULL;
		cr_assert_eq(zk_runtime_create(&rt, &cfg), 0, "ring_entries=%u", sizes[i]);
		struct small_ring_arg a;
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a.sv), 0);
		zt_run(rt, small_ring_io, &a);
		close(a.sv[0]);
		close(a.sv[1]);
		zk_runtime_free(rt);
	}
}

Test(runtime, create_accepts_32768_ring_entries)
{
	zk_config_t cfg = {.workers = 1, .ring_entries = 32768};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	cr_assert_eq(zt_run(rt, return_arg, (void *)1), (void *)1);
	zk_runtime_free(rt);
}

/* ---- block_on --------------------------------------------------------------- */

static void *sleep_then_return(void *arg)
{
	ZT_CHECK_EQ(zk_sleep_ms(5), 0);
	return arg;
}

Test(runtime, block_on_returns_the_task_result)
{
	zk_runtime_t *rt = zt_runtime(2);
	void *res = NULL;
	cr_assert_eq(zk_block_on(rt, sleep_then_return, (void *)0xbeef, &res), 0);
	cr_assert_eq(res, (void *)0xbeef);
	/* result may be NULL. */
	cr_assert_eq(zk_block_on(rt, sleep_then_return, (void *)1, NULL), 0);
	zt_assert_no_failures();
	zk_runtime_free(rt);
}

Test(runtime, block_on_rejects_null_runtime_or_fn)
{
	zk_runtime_t *rt = zt_runtime(1);
	void *res = (void *)1;
	cr_assert_eq(zk_block_on(NULL, return_arg, NULL, &res), -EINVAL);
	cr_assert_eq(zk_block_on(rt, NULL, NULL, &res), -EINVAL);
	cr_assert_eq(res, (void *)1);
	zk_runtime_free(rt);
}

static atomic_int inner_ran;

static void *inner(void *arg)
{
	(void)arg;
	atomic_store(&inner_ran, 1);
	return NULL;
}

static void *block_on_inside(void *arg)
{
	zk_runtime_t *rt = arg;
	void *res = (void *)1;
	ZT_CHECK_EQ(zk_block_on(rt, inner, NULL, &res), -EPERM);
	ZT_CHECK(res == (void *)1);
	/* Also with another runtime: it would still block this worker. */
	return NULL;
}

Test(runtime, block_on_from_inside_a_task_returns_eperm)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, block_on_inside, rt);
	zk_runtime_t *other = zt_runtime(1);
	zt_run(rt, block_on_inside, other);
	zk_runtime_free(other);
	zk_runtime_free(rt);
	cr_assert_eq(atomic_load(&inner_ran), 0, "the inner task must not have been run");
}

/* Other tasks keep running while block_on waits. */
static atomic_long bg_ticks;

static void *background_ticker(void *arg)
{
	(void)arg;
	while (zk_sleep_ms(1) == 0)
		atomic_fetch_add(&bg_ticks, 1);
	return NULL;
}

static void *wait_for_ticks(void *arg)
{
	(void)arg;
	ZT_CHECK(zt_task_wait_at_least(&bg_ticks, 20, 10000));
	return NULL;
}

Test(runtime, other_tasks_run_while_block_on_waits)
{
	zk_runtime_t *rt = zt_runtime(1);
	cr_assert_eq(zk_spawn_on(rt, NULL, background_ticker, NULL), 0);
	zt_run(rt, wait_for_ticks, NULL);
	zk_runtime_free(rt); /* cancels the ticker */
	cr_assert_geq(atomic_load(&bg_ticks), 20);
}

struct two_rt {
	zk_runtime_t *a, *b;
};

static void *report_runtime(void *arg)
{
	(void)arg;
	return zk_runtime_current();
}

Test(runtime, two_runtimes_run_side_by_side)
{
	zk_runtime_t *a = zt_runtime(1), *b = zt_runtime(2);
	cr_assert_eq(zt_run(a, report_runtime, NULL), a);
	cr_assert_eq(zt_run(b, report_runtime, NULL), b);
	cr_assert_eq(zt_run(a, report_runtime, NULL), a);
	zk_runtime_free(a);
	cr_assert_eq(zt_run(b, report_runtime, NULL), b);
	zk_runtime_free(b);
}

/* ---- shutdown with suspended tasks ------------------------------------------ */

enum { K_RECV, K_SLEEP, K_JOIN, K_ONESHOT, K_ACCEPT, K_PIPE, K_SIGNAL, K_COUNT };
static const char *kind_name[K_COUNT] = {"recv", "sleep", "join", "oneshot_recv",
					 "accept", "pipe read", "signal_wait"};

struct sd_state {
	int sv[2];
	int pipefd[2];
	int lfd;
	zk_oneshot_t os;
	zk_task_t *sleeper;    /* joined by the K_JOIN task */
	atomic_long ready;
	atomic_long result[K_COUNT];
	atomic_long after[K_COUNT];  /* a later zk_sleep_ms(1) */
	atomic_long closed[K_COUNT]; /* zk_close of its fd */
	atomic_long done[K_COUNT];
	atomic_long sleeper_exited;
};

struct sd_arg {
	struct sd_state *s;
	int kind;
};

/* Keeps running (without suspending: it cannot) for a while after its sleep
 * is cancelled, so the task joining it is certainly cancelled first. */
static void *stubborn_sleeper(void *arg)
{
	struct sd_state *s = arg;
	atomic_fetch_add(&s->ready, 1);
	int r = zk_sleep_ms(60000);
	uint64_t t0 = zk_now_ns();
	while (zk_now_ns() - t0 < 200 * ZK_NSEC_PER_MSEC)
		;
	atomic_store(&s->sleeper_exited, r == -ECANCELED ? 1 : 2);
	return NULL;
}

static void *blocked_task(void *arg)
{
	struct sd_arg *a = arg;
	struct sd_state *s = a->s;
	char buf[8];
	long r = 0;
	int fd = -1;
	atomic_fetch_add(&s->ready, 1);
	switch (a->kind) {
	case K_RECV:
		r = zk_recv(s->sv[0], buf, sizeof(buf), 0);
		fd = s->sv[0];
		break;
	case K_SLEEP:
		r = zk_sleep_ms(60000);
		break;
	case K_JOIN:
		r = zk_join(s->sleeper, NULL);
		break;
	case K_ONESHOT:
		r = zk_oneshot_recv(&s->os, NULL);
		break;
	case K_ACCEPT:
		r = zk_accept(s->lfd, NULL, NULL);
		fd = s->lfd;
		break;
	case K_PIPE:
		r = zk_read(s->pipefd[0], buf, sizeof(buf), -1);
		fd = s->pipefd[0];
		break;
	case K_SIGNAL:
		r = zk_signal_wait(SIGUSR2);
		break;
	}
	atomic_store(&s->result[a->kind], r);
	atomic_store(&s->after[a->kind], zk_sleep_ms(1));
	atomic_store(&s->closed[a->kind], fd >= 0 ? zk_close(fd) : 0);
	atomic_store(&s->done[a->kind], 1);
	return NULL;
}

static void shutdown_with_blocked_tasks(unsigned workers)
{
	zk_runtime_t *rt = zt_runtime(workers);
	struct sd_state *s = calloc(1, sizeof(*s));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->sv), 0);
	cr_assert_eq(pipe2(s->pipefd, O_CLOEXEC), 0);
	s->lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	cr_assert_geq(s->lfd, 0);
	zk_oneshot_init(&s->os);
	cr_assert_eq(zk_spawn_on(rt, &s->sleeper, stubborn_sleeper, s), 0);
	struct sd_arg args[K_COUNT];
	zk_task_t *handles[K_COUNT];
	for (int k = 0; k < K_COUNT; k++) {
		args[k] = (struct sd_arg){.s = s, .kind = k};
		/* Half keep a handle nobody joins, half are detached. */
		cr_assert_eq(zk_spawn_on(rt, k % 2 ? &handles[k] : NULL, blocked_task, &args[k]), 0);
	}
	cr_assert(zt_wait_at_least(&s->ready, K_COUNT + 1, 10000));
	zt_msleep(50); /* let them reach their waits */
	for (int k = 0; k < K_COUNT; k++)
		cr_assert_eq(atomic_load(&s->done[k]), 0, "%s task ended before shutdown",
			     kind_name[k]);
	uint64_t t0 = zk_now_ns();
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	double ms = zt_ms_since(t0);
	cr_assert_lt(ms, 10000.0, "shutdown took %.0f ms", ms);
	for (int k = 0; k < K_COUNT; k++) {
		cr_assert_eq(atomic_load(&s->done[k]), 1, "%s task did not return", kind_name[k]);
		cr_assert_eq(atomic_load(&s->result[k]), -ECANCELED, "%s returned %ld",
			     kind_name[k], atomic_load(&s->result[k]));
		cr_assert_eq(atomic_load(&s->after[k]), -ECANCELED,
			     "%s: a later sleep returned %ld", kind_name[k],
			     atomic_load(&s->after[k]));
		cr_assert_eq(atomic_load(&s->closed[k]), 0, "%s: zk_close after cancel = %ld",
			     kind_name[k], atomic_load(&s->closed[k]));
	}
	cr_assert_eq(atomic_load(&s->sleeper_exited), 1);
	/* zk_close really closed them. */
	cr_assert_eq(fcntl(s->sv[0], F_GETFD), -1);
	cr_assert_eq(fcntl(s->pipefd[0], F_GETFD), -1);
	cr_assert_eq(fcntl(s->lfd, F_GETFD), -1);
	/* Idempotent. */
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	zk_runtime_free(rt);
	close(s->sv[1]);
	close(s->pipefd[1]);
	free(s);
}

Test(runtime, shutdown_cancels_tasks_suspended_in_io_sleep_join_and_channels, .timeout = 60)
{
	shutdown_with_blocked_tasks(2);
}

Test(runtime, shutdown_cancels_suspended_tasks_on_a_single_worker, .timeout = 60)
{
	shutdown_with_blocked_tasks(1);
}

Test(runtime, free_without_shutdown_cancels_and_releases_everything, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct sd_state *s = calloc(1, sizeof(*s));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->sv), 0);
	struct sd_arg a = {.s = s, .kind = K_RECV}, b = {.s = s, .kind = K_SLEEP};
	zk_task_t *h;
	cr_assert_eq(zk_spawn_on(rt, &h, blocked_task, &a), 0); /* never joined */
	cr_assert_eq(zk_spawn_on(rt, NULL, blocked_task, &b), 0);
	cr_assert(zt_wait_at_least(&s->ready, 2, 10000));
	zt_msleep(20);
	zk_runtime_free(rt);
	cr_assert_eq(atomic_load(&s->result[K_RECV]), -ECANCELED);
	cr_assert_eq(atomic_load(&s->result[K_SLEEP]), -ECANCELED);
	close(s->sv[1]);
	free(s);
}

Test(runtime, shutdown_of_an_idle_runtime_is_prompt)
{
	zk_runtime_t *rt = zt_runtime(4);
	uint64_t t0 = zk_now_ns();
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	cr_assert_lt(zt_ms_since(t0), 5000.0);
	zk_runtime_free(rt);
}

Test(runtime, shutdown_rejects_null)
{
	cr_assert_eq(zk_runtime_shutdown(NULL), -EINVAL);
}

static void *shutdown_inside(void *arg)
{
	ZT_CHECK_EQ(zk_runtime_shutdown(arg), -EPERM);
	return NULL;
}

Test(runtime, shutdown_from_a_task_returns_eperm)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, shutdown_inside, rt);
	/* The runtime still works. */
	cr_assert_eq(zt_run(rt, return_arg, (void *)4), (void *)4);
	zk_runtime_free(rt);
}

Test(runtime, spawn_and_block_on_after_shutdown_return_ecanceled)
{
	zk_runtime_t *rt = zt_runtime(2);
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	zk_task_t *h = NULL;
	cr_assert_eq(zk_spawn_on(rt, &h, return_arg, NULL), -ECANCELED);
	cr_assert_eq(zk_block_on(rt, return_arg, NULL, NULL), -ECANCELED);
	zk_runtime_free(rt);
}

/* block_on waiting in another thread when the runtime shuts down: its task
 * is cancelled, returns, and block_on hands back its result. */
struct bo_thread {
	zk_runtime_t *rt;
	atomic_long started;
	int ret;
	void *res;
	atomic_long sleep_res;
};

static void *sleep_long_record(void *arg)
{
	struct bo_thread *b = arg;
	atomic_store(&b->started, 1);
	atomic_store(&b->sleep_res, zk_sleep_ms(60000));
	return (void *)0xfeed;
}

static void *bo_thread_main(void *arg)
{
	struct bo_thread *b = arg;
	b->ret = zk_block_on(b->rt, sleep_long_record, b, &b->res);
	return NULL;
}

Test(runtime, shutdown_ends_a_block_on_in_another_thread, .timeout = 60)
{
	struct bo_thread b = {.rt = zt_runtime(2)};
	atomic_init(&b.sleep_res, 1);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, bo_thread_main, &b), 0);
	cr_assert(zt_wait_at_least(&b.started, 1, 10000));
	zt_msleep(20);
	cr_assert_eq(zk_runtime_shutdown(b.rt), 0);
	pthread_join(th, NULL);
	cr_assert_eq(b.ret, 0);
	cr_assert_eq(b.res, (void *)0xfeed);
	cr_assert_eq(atomic_load(&b.sleep_res), -ECANCELED);
	zk_runtime_free(b.rt);
}

/* Tasks a cancelled task spawns while the runtime shuts down are refused or
 * never start, and shutdown still completes. */
static atomic_long late_children_ran;

static void *late_child(void *arg)
{
	(void)arg;
	atomic_fetch_add(&late_children_ran, 1);
	return NULL;
}

static atomic_long spawner_ready;

static void *spawn_after_cancel(void *arg)
{
	(void)arg;
	atomic_store(&spawner_ready, 1);
	int r = zk_sleep_ms(60000);
	ZT_CHECK_EQ(r, -ECANCELED);
	for (int i = 0; i < 100; i++) {
		int s = zk_spawn(NULL, late_child, NULL);
		ZT_CHECK(s == 0 || s == -ECANCELED);
	}
	return NULL;
}

Test(runtime, tasks_spawned_during_shutdown_do_not_run, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	cr_assert_eq(zk_spawn_on(rt, NULL, spawn_after_cancel, NULL), 0);
	cr_assert(zt_wait_at_least(&spawner_ready, 1, 10000));
	zt_msleep(20);
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	cr_assert_eq(atomic_load(&late_children_ran), 0);
	zt_assert_no_failures();
	zk_runtime_free(rt);
}

Test(runtime, free_null_is_a_no_op)
{
	zk_runtime_free(NULL);
	cr_assert_eq(zk_runtime_workers(NULL), 0);
	cr_assert_null(zk_runtime_backend(NULL));
}

/* ---- current runtime / worker index ---------------------------------------- */

struct where {
	zk_runtime_t *rt;
	int index;
};

static void *report_where(void *arg)
{
	struct where *w = arg;
	w->rt = zk_runtime_current();
	w->index = zk_worker_index();
	return NULL;
}

static void *foreign_where(void *arg)
{
	report_where(arg);
	return NULL;
}

Test(runtime, current_runtime_and_worker_index_inside_and_outside)
{
	cr_assert_null(zk_runtime_current());
	cr_assert_eq(zk_worker_index(), -EPERM);
	zk_runtime_t *rt = zt_runtime(3);
	cr_assert_null(zk_runtime_current());
	cr_assert_eq(zk_worker_index(), -EPERM);
	for (int i = 0; i < 20; i++) {
		struct where w = {.rt = NULL, .index = -1};
		zt_run(rt, report_where, &w);
		cr_assert_eq(w.rt, rt);
		cr_assert(w.index >= 0 && w.index < 3, "worker index %d", w.index);
	}
	/* A plain thread is outside any runtime. */
	struct where w = {.rt = (zk_runtime_t *)(uintptr_t)1, .index = 99};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, foreign_where, &w), 0);
	pthread_join(th, NULL);
	cr_assert_null(w.rt);
	cr_assert_eq(w.index, -EPERM);
	zk_runtime_free(rt);
	cr_assert_null(zk_runtime_current());
}

/* Every worker index shows up when enough concurrent busy tasks run. */
static atomic_long seen_mask;
static atomic_long busy_running;

static void *busy_until_all_seen(void *arg)
{
	long want = (long)(uintptr_t)arg;
	int idx = zk_worker_index();
	atomic_fetch_or(&seen_mask, 1L << idx);
	atomic_fetch_add(&busy_running, 1);
	uint64_t t0 = zk_now_ns();
	/* Busy without suspending, so the other workers must take the rest. */
	while (atomic_load(&seen_mask) != want && zk_now_ns() - t0 < 5 * ZK_NSEC_PER_SEC)
		;
	return NULL;
}

static void *spawn_busy(void *arg)
{
	(void)arg;
	long want = (1L << 3) - 1;
	zk_task_t *h[12];
	for (int i = 0; i < 12; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], busy_until_all_seen, (void *)(uintptr_t)want), 0);
	for (int i = 0; i < 12; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	return NULL;
}

Test(runtime, every_worker_runs_tasks, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(3);
	zt_run(rt, spawn_busy, NULL);
	cr_assert_eq(atomic_load(&seen_mask), 7, "workers seen: mask %lx",
		     atomic_load(&seen_mask));
	zk_runtime_free(rt);
}

/* ---- more threads, more runtimes, backends ------------------------------------------- */

struct bo_many {
	zk_runtime_t *rt;
	unsigned seed;
	long bad;
};

static void *maybe_sleep_and_return(void *arg)
{
	uintptr_t v = (uintptr_t)arg;
	if (v % 3 == 0)
		zk_sleep_ms(0);
	else if (v % 3 == 1)
		zk_yield();
	return (void *)(v * 3);
}

static void *block_on_loop(void *arg)
{
	struct bo_many *b = arg;
	size_t n = zt_scaled(2000, 200);
	for (uintptr_t i = 0; i < n; i++) {
		void *res = NULL;
		uintptr_t v = (uintptr_t)b->seed * 100000 + i;
		if (zk_block_on(b->rt, maybe_sleep_and_return, (void *)v, &res) != 0 ||
		    (uintptr_t)res != v * 3)
			b->bad++;
	}
	return NULL;
}

Test(runtime, block_on_from_many_plain_threads_at_once, .timeout = 60)
{
	zk_runtime_t *rt = zt_runtime(2);
	enum { T = 8 };
	struct bo_many b[T];
	pthread_t th[T];
	for (unsigned i = 0; i < T; i++) {
		b[i] = (struct bo_many){.rt = rt, .seed = i};
		cr_assert_eq(pthread_create(&th[i], NULL, block_on_loop, &b[i]), 0);
	}
	for (unsigned i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(b[i].bad, 0, "thread %u: %ld wrong block_on results", i, b[i].bad);
	}
	zk_runtime_free(rt);
}

/* Plain threads keep spawning while the runtime shuts down: every spawn
 * either succeeds or says -ECANCELED, shutdown completes, and nothing runs
 * after it returned. */
struct spawn_race {
	zk_runtime_t *rt;
	atomic_long stop;
	atomic_long ok, refused, other;
	atomic_long ran;
};

static void *count_run(void *arg)
{
	struct spawn_race *s = arg;
	atomic_fetch_add(&s->ran, 1);
	zk_yield();
	return NULL;
}

static void *spawn_until_refused(void *arg)
{
	struct spawn_race *s = arg;
	while (!atomic_load(&s->stop)) {
		zk_task_t *h;
		int r = zk_spawn_on(s->rt, &h, count_run, s);
		if (r == 0) {
			atomic_fetch_add(&s->ok, 1);
			zk_detach(h);
		} else if (r == -ECANCELED) {
			atomic_fetch_add(&s->refused, 1);
			break;
		} else {
			atomic_fetch_add(&s->other, 1);
			break;
		}
	}
	return NULL;
}

Test(runtime, spawning_from_plain_threads_during_shutdown_is_safe, .timeout = 60)
{
	struct spawn_race s = {.rt = zt_runtime(2)};
	enum { T = 4 };
	pthread_t th[T];
	for (int i = 0; i < T; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, spawn_until_refused, &s), 0);
	cr_assert(zt_wait_at_least(&s.ok, 2000, 10000));
	cr_assert_eq(zk_runtime_shutdown(s.rt), 0);
	long ran = atomic_load(&s.ran);
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&s.other), 0);
	cr_assert_eq(atomic_load(&s.refused), T, "every spawner is refused after shutdown");
	zt_msleep(20);
	cr_assert_eq(atomic_load(&s.ran), ran, "a task ran after shutdown returned");
	cr_assert_leq(ran, atomic_load(&s.ok));
	zk_runtime_free(s.rt);
}

Test(runtime, backend_env_var_io_uring_selects_io_uring)
{
	cr_assert_eq(setenv("ZK_BACKEND", "io_uring", 1), 0);
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &(zk_config_t){.workers = 1}), 0);
	cr_assert_str_eq(zk_runtime_backend(rt), "io_uring");
	cr_assert_eq(zt_run(rt, return_arg, (void *)2), (void *)2);
	zk_runtime_free(rt);
	/* An explicit backend in the config wins over the variable. */
	cr_assert_eq(setenv("ZK_BACKEND", "", 1), 0);
	cr_assert_eq(zk_runtime_create(&rt, &(zk_config_t){.workers = 1,
							   .backend = ZK_BACKEND_IO_URING}),
		     0);
	cr_assert_str_eq(zk_runtime_backend(rt), "io_uring");
	zk_runtime_free(rt);
}

/* ---- guard pages -------------------------------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ZT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ZT_SANITIZED 1
#endif
#endif

static __attribute__((noinline)) int recurse(int depth)
{
	volatile char frame[1024];
	for (size_t i = 0; i < sizeof(frame); i += 256)
		frame[i] = (char)depth;
	if (depth == 0)
		return frame[0];
	return recurse(depth - 1) + frame[512];
}

static void *overflow_stack(void *arg)
{
	(void)arg;
	/* ~1 KiB per frame, 256 frames: four times the 64 KiB stack. */
	return (void *)(intptr_t)recurse(256);
}

#ifndef ZT_SANITIZED
/* The sanitizers turn the fault into their own report and exit. */
Test(runtime, stack_overflow_faults_on_the_guard_page, .signal = SIGSEGV)
{
	zk_config_t cfg = {.workers = 1, .stack_size = 64 * 1024, .stack_guard = ZK_GUARD_ALWAYS};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	zk_block_on(rt, overflow_stack, NULL, NULL);
	/* Not reached: without a guard the overflow would silently run into
	 * the neighbouring stack of the slab. */
	cr_assert_fail("stack overflow went undetected");
}
#else
Test(runtime, stack_overflow_faults_on_the_guard_page)
{
	(void)overflow_stack;
	cr_skip_test("the sanitizers handle SIGSEGV themselves");
}
#endif
