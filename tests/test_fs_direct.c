/* tests/test_fs_direct.c — O_DIRECT: the alignment helpers, aligned
 * buffers, the up-front -EINVAL for misaligned requests, and O_DIRECT reads
 * and writes through tasks, batches and foreign threads. Skips cleanly when
 * the temp dir's filesystem has no O_DIRECT (tmpfs before 6.6). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(fs_direct, .timeout = 60);

struct dctx {
	char *dir;
	char path[PATH_MAX];
	int fd;
	size_t mem, io;
};

/* Opens a fresh O_DIRECT file, or skips the test. */
static void direct_setup(struct dctx *c)
{
	c->dir = zt_tmpdir();
	snprintf(c->path, sizeof(c->path), "%s/d", c->dir);
	c->fd = open(c->path, O_RDWR | O_CREAT | O_DIRECT, 0600);
	if (c->fd < 0) {
		zt_rmtree(c->dir);
		cr_skip_test("no O_DIRECT on this filesystem");
	}
	int r = zk_direct_align(c->fd, &c->mem, &c->io);
	if (r == -EOPNOTSUPP) {
		close(c->fd);
		zt_rmtree(c->dir);
		cr_skip_test("filesystem reports no O_DIRECT support");
	}
	cr_assert_eq(r, 0);
}

static void direct_teardown(struct dctx *c)
{
	close(c->fd);
	zt_rmtree(c->dir);
}

Test(fs_direct, alignment_is_a_power_of_two_and_bad_fds_fail)
{
	struct dctx c;
	direct_setup(&c);
	cr_assert(c.mem >= 1 && (c.mem & (c.mem - 1)) == 0);
	cr_assert(c.io >= 1 && (c.io & (c.io - 1)) == 0);
	cr_assert_leq(c.io, 4096);
	cr_assert_eq(zk_direct_align(-1, NULL, NULL), -EBADF);
	size_t m = 0;
	cr_assert_eq(zk_direct_align(c.fd, &m, NULL), 0);
	cr_assert_eq(m, c.mem);
	direct_teardown(&c);
}

Test(fs_direct, aligned_allocation_honours_the_alignment)
{
	for (size_t a = sizeof(void *); a <= 65536; a <<= 1) {
		void *p = zk_direct_alloc(1000, a);
		cr_assert_not_null(p);
		cr_assert_eq((uintptr_t)p % a, 0);
		memset(p, 1, 1000);
		zk_direct_free(p);
	}
	void *p = zk_direct_alloc(10, 0);
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % 4096, 0);
	memset(p, 0, 4096); /* rounded up to the alignment */
	zk_direct_free(p);
	cr_assert_null(zk_direct_alloc(100, 3000));
	cr_assert_null(zk_direct_alloc(100, 2));
	cr_assert_null(zk_direct_alloc(SIZE_MAX - 10, 4096));
	zk_direct_free(NULL);
}

Test(fs_direct, misaligned_requests_are_einval_before_and_from_the_kernel)
{
	struct dctx c;
	direct_setup(&c);
	char *buf = zk_direct_alloc(2 * 4096, 4096);
	cr_assert_not_null(buf);
	cr_assert_eq(zk_direct_check(c.fd, buf, 4096, 0), 0);
	cr_assert_eq(zk_direct_check(c.fd, buf, 4096, 4096), 0);
	cr_assert_eq(zk_direct_check(c.fd, buf, 4096, -4096), -EINVAL);
	if (c.io > 1) {
		cr_assert_eq(zk_direct_check(c.fd, buf, c.io + 1, 0), -EINVAL);
		cr_assert_eq(zk_direct_check(c.fd, buf, 4096, 1), -EINVAL);
	}
	if (c.mem > 1)
		cr_assert_eq(zk_direct_check(c.fd, buf + 1, 4096, 0), -EINVAL);
	cr_assert_eq(zk_direct_check(-1, buf, 4096, 0), -EBADF);
	/* The kernel agrees: a misaligned offset fails with -EINVAL (here
	 * from this foreign thread's ring). */
	memset(buf, 7, 4096);
	cr_assert_eq(zk_pwrite(c.fd, buf, 4096, 0), 4096);
	if (c.io > 1)
		cr_assert_eq(zk_pread(c.fd, buf, 4096, 1), -EINVAL);
	if (c.mem > 1)
		cr_assert_eq(zk_pread(c.fd, buf + 1, 4096, 0), -EINVAL);
	zk_direct_free(buf);
	zk_fs_thread_release();
	direct_teardown(&c);
}

/* O_DIRECT data round-trips through a task (one op per block) and a batch
 * at queue depth 32, and reads back through a plain buffered fd. */
static void *direct_task(void *arg)
{
	struct dctx *c = arg;
	enum { BS = 4096, QD = 32 };
	size_t blocks = zt_scaled(256, 64);
	char *out = zk_direct_alloc(blocks * BS, 4096), *in = zk_direct_alloc(blocks * BS, 4096);
	ZT_CHECK(out && in);
	zt_fill(out, blocks * BS, 11);
	for (size_t b = 0; b < blocks / 2; b++)
		ZT_CHECK_EQ(zk_pwrite(c->fd, out + b * BS, BS, (off_t)(b * BS)), BS);
	struct zk_fs_req r[QD];
	for (size_t b = blocks / 2; b < blocks; b += QD) {
		unsigned n = 0;
		for (; n < QD && b + n < blocks; n++)
			zk_fs_prep_write(&r[n], c->fd, out + (b + n) * BS, BS, (int64_t)((b + n) * BS));
		ZT_CHECK_EQ(zk_fs_batch(r, n, NULL, NULL), 0);
		for (unsigned i = 0; i < n; i++)
			ZT_CHECK_EQ(r[i].res, BS);
	}
	ZT_CHECK_EQ(zk_fdatasync(c->fd), 0);
	for (size_t b = 0; b < blocks; b += QD) {
		unsigned n = 0;
		for (; n < QD && b + n < blocks; n++)
			zk_fs_prep_read(&r[n], c->fd, in + (b + n) * BS, BS, (int64_t)((b + n) * BS));
		ZT_CHECK_EQ(zk_fs_batch(r, n, NULL, NULL), 0);
	}
	ZT_CHECK(memcmp(in, out, blocks * BS) == 0);
	zk_direct_free(out);
	zk_direct_free(in);
	return NULL;
}

Test(fs_direct, o_direct_io_round_trips_in_a_task_and_in_batches)
{
	struct dctx c;
	direct_setup(&c);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, direct_task, &c);
	zk_runtime_free(rt);
	int fd = open(c.path, O_RDONLY);
	char b[4096], want[4096];
	zt_fill(want, sizeof(want), 11);
	cr_assert_eq(pread(fd, b, sizeof(b), 0), 4096);
	cr_assert(memcmp(b, want, sizeof(b)) == 0);
	close(fd);
	direct_teardown(&c);
}

static void *direct_thread(void *arg)
{
	direct_task(arg);
	zk_fs_thread_release();
	return NULL;
}

Test(fs_direct, o_direct_io_round_trips_on_a_foreign_thread)
{
	struct dctx c;
	direct_setup(&c);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, direct_thread, &c), 0);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	direct_teardown(&c);
}
