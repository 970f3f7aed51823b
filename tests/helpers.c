/* tests/helpers.c — see helpers.h. */
#include "helpers.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double zt_scale(void)
{
	const char *s = getenv("ZK_TEST_SCALE");
	if (!s || !*s)
		return 1.0;
	double v = strtod(s, NULL);
	return v > 0 ? v : 1.0;
}

size_t zt_scaled(size_t n, size_t min)
{
	double v = (double)n * zt_scale();
	size_t r = (size_t)v;
	return r < min ? min : r;
}

zk_runtime_t *zt_runtime(unsigned workers)
{
	zk_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = workers;
	zk_runtime_t *rt = NULL;
	int r = zk_runtime_create(&rt, &cfg);
	cr_assert_eq(r, 0, "zk_runtime_create(workers=%u) = %d (%s)", workers, r, strerror(-r));
	cr_assert_not_null(rt);
	return rt;
}

void *zt_run(zk_runtime_t *rt, zk_task_fn fn, void *arg)
{
	void *res = NULL;
	int r = zk_block_on(rt, fn, arg, &res);
	cr_assert_eq(r, 0, "zk_block_on = %d (%s)", r, strerror(-r));
	zt_assert_no_failures();
	return res;
}

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int fail_count;
static char fail_first[512];

void zt_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s:%d: %s\n", file, line, msg);
	pthread_mutex_lock(&fail_lock);
	if (fail_count++ == 0)
		snprintf(fail_first, sizeof(fail_first), "%s:%d: %s", file, line, msg);
	pthread_mutex_unlock(&fail_lock);
}

int zt_failures(void)
{
	pthread_mutex_lock(&fail_lock);
	int n = fail_count;
	pthread_mutex_unlock(&fail_lock);
	return n;
}

void zt_assert_no_failures(void)
{
	pthread_mutex_lock(&fail_lock);
	int n = fail_count;
	char first[512];
	memcpy(first, fail_first, sizeof(first));
	pthread_mutex_unlock(&fail_lock);
	cr_assert_eq(n, 0, "%d check(s) failed in tasks/threads; first: %s", n, first);
}

void zt_msleep(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

bool zt_wait_at_least(atomic_long *v, long want, unsigned timeout_ms)
{
	uint64_t end = zk_now_ns() + (uint64_t)timeout_ms * ZK_NSEC_PER_MSEC;
	while (atomic_load(v) < want) {
		if (zk_now_ns() >= end)
			return false;
		zt_msleep(1);
	}
	return true;
}

bool zt_task_wait_at_least(atomic_long *v, long want, unsigned timeout_ms)
{
	uint64_t end = zk_now_ns() + (uint64_t)timeout_ms * ZK_NSEC_PER_MSEC;
	while (atomic_load(v) < want) {
		if (zk_now_ns() >= end)
			return false;
		if (zk_sleep_ms(1) != 0)
			return atomic_load(v) >= want;
	}
	return true;
}

double zt_ms_since(uint64_t t0)
{
	return (double)(zk_now_ns() - t0) / 1e6;
}

char *zt_tmpdir(void)
{
	char *d = strdup("/tmp/zokio-test-XXXXXX");
	cr_assert_not_null(d);
	cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
	return d;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void zt_rmtree(char *dir)
{
	if (!dir)
		return;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

static inline unsigned char pattern(unsigned seed, size_t i)
{
	uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull;
	return (unsigned char)(x >> 56);
}

void zt_fill(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(seed, i);
}

bool zt_check_fill(const void *buf, size_t len, unsigned seed, size_t offset)
{
	const unsigned char *p = buf;
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(seed, i + offset))
			return false;
	return true;
}


/* ThreadSanitizer builds: make Criterion start at all.
 *
 * Criterion (through BoxFort) maps an arena shared with its test processes
 * at a random base 0x200000000000 + (rand_r() & 0x3fffff) * 16 MiB, trying
 * 10 bases and skipping any already mapped. Under TSan on x86-64 nearly all
 * of that window is TSan's reserved shadow/meta memory, so the start-up fails
 * ("Could not initialize inheritable arena", Criterion issue #274) or maps
 * where TSan later faults. Only [0x550000000000, 0x568000000000), TSan's
 * application range for PIE binaries, is usable: this rand_r, which takes
 * the place of libc's for the whole process, draws bases from that range.
 * Nothing in Zokio or in the tests calls rand_r. */
#if defined(__SANITIZE_THREAD__)
#define ZT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZT_TSAN 1
#endif
#endif
#if defined(__x86_64__) && defined(ZT_TSAN)
int rand_r(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	/* (0x550000000000 - 0x200000000000) >> 24 = 0x350000, and the range
	 * is 0x18000 steps of 16 MiB wide. */
	return 0x350000 + (int)((*seed >> 8) % 0x18000u);
}
#endif

bool zt_uring_feature(const char *name)
{
	const char *env = getenv("ZK_URING_DISABLE");
	size_t n = strlen(name);
	while (env && *env) {
		size_t len = strcspn(env, ",");
		if ((len == 3 && strncmp(env, "all", 3) == 0) ||
		    (len == n && strncmp(env, name, n) == 0))
			return false;
		env += len + (env[len] == ',');
	}
	return true;
}

bool zt_backend_is_uring(void)
{
	const char *b = getenv("ZK_BACKEND");
	if (!b || !*b || strcmp(b, "io_uring") == 0)
		return true;
	const char *in = getenv("ZK_FAULT_INNER");
	return strcmp(b, "faulty") == 0 && (!in || !*in || strcmp(in, "io_uring") == 0);
}
