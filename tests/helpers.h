/* tests/helpers.h — what every test file shares: runtimes, scaling, checks
 * made inside tasks, waiting helpers, temp dirs.
 *
 * Criterion's assertions unwind with longjmp, which must not cross a fiber
 * or a foreign thread; code that runs in a task or a helper thread records
 * failures with ZT_CHECK* instead, and the test's main thread turns them
 * into Criterion failures (zt_run() and zt_assert_no_failures() do). */
#ifndef ZOKIO_TESTS_HELPERS_H
#define ZOKIO_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zokio/zokio.h>

/* ZK_TEST_SCALE (e.g. "0.1" in sanitizer runs), default 1. */
double zt_scale(void);
/* n scaled by ZK_TEST_SCALE, at least min. */
size_t zt_scaled(size_t n, size_t min);

/* A runtime with `workers` workers (0: default), asserting success. */
zk_runtime_t *zt_runtime(unsigned workers);
/* zk_block_on(rt, fn, arg) asserting it returns 0, then asserts that no
 * ZT_CHECK failed; returns the task's result. */
void *zt_run(zk_runtime_t *rt, zk_task_fn fn, void *arg);

/* Failure recording usable from any thread or task. */
void zt_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int zt_failures(void);
void zt_assert_no_failures(void);

#define ZT_CHECK(cond)                                                       \
	do {                                                                 \
		if (!(cond))                                                 \
			zt_fail(__FILE__, __LINE__, "check failed: %s", #cond); \
	} while (0)

#define ZT_CHECK_EQ(a, b)                                                        \
	do {                                                                     \
		long long zt_a_ = (long long)(a), zt_b_ = (long long)(b);        \
		if (zt_a_ != zt_b_)                                              \
			zt_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, \
				zt_a_, zt_b_);                                   \
	} while (0)

/* False when ZK_URING_DISABLE (the `olduring` test setup: io_uring as on
 * an old kernel, see backends/backend.h) names the io_uring feature `name`
 * ("send_zc", "pbuf", "direct", ...) or says "all". */
bool zt_uring_feature(const char *name);
/* True when the runtimes the tests create run on io_uring: ZK_BACKEND
 * unset or "io_uring", or the fault-injection wrapper around io_uring
 * (which forwards provided buffers, registered buffers and files and
 * direct descriptors to it). */
bool zt_backend_is_uring(void);

/* Plain-thread helpers (never called by a task: they block the thread). */
void zt_msleep(unsigned ms);
/* Polls *v until it is >= want or timeout_ms passes; true if reached. */
bool zt_wait_at_least(atomic_long *v, long want, unsigned timeout_ms);

/* Task helper: polls *v with zk_sleep_ms(1) until it is >= want or
 * timeout_ms passes; true if reached. */
bool zt_task_wait_at_least(atomic_long *v, long want, unsigned timeout_ms);

/* Milliseconds elapsed since t0 (a zk_now_ns() value). */
double zt_ms_since(uint64_t t0);

/* A fresh directory under /tmp; zt_rmtree removes it and its contents. */
char *zt_tmpdir(void);
void zt_rmtree(char *dir);

/* Sets every byte of buf from a seed so data can be verified. */
void zt_fill(void *buf, size_t len, unsigned seed);
bool zt_check_fill(const void *buf, size_t len, unsigned seed, size_t offset);

#endif
