/* tests/test_cov_fs.c — zk_fs_batch requests the batch suite leaves out:
 * a linked chain through every kind of request (nop, vectored write,
 * fallocate, sync_file_range, ftruncate, vectored read), a request that
 * cannot be prepared, a read on a non-blocking pipe that must wait for a
 * writer, and a batch started by a cancelled task. Each runs on the setup's
 * backend and on an explicit epoll runtime. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov_fs, .timeout = 60);

static void on_both(zk_task_fn fn, void *arg, unsigned workers)
{
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		zk_config_t cfg;
		memset(&cfg, 0, sizeof(cfg));
		cfg.workers = workers;
		cfg.backend = kinds[i];
		zk_runtime_t *rt = NULL;
		cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
		zt_run(rt, fn, arg);
		zk_runtime_free(rt);
	}
}

static int open_tmp(char **dir)
{
	*dir = zt_tmpdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/f", *dir);
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(fd >= 0);
	return fd;
}

struct done_count {
	unsigned calls;
};

static void count_done(struct zk_fs_req *r, void *ctx)
{
	(void)r;
	((struct done_count *)ctx)->calls++;
}

static void *chain_of_every_kind(void *arg)
{
	(void)arg;
	char *dir;
	int fd = open_tmp(&dir);
	char a[6] = "hello ", b[5] = "world";
	struct iovec wv[2] = {{a, 6}, {b, 5}};
	char r1[4] = {0}, r2[7] = {0};
	struct iovec rv[2] = {{r1, 4}, {r2, 7}};
	struct zk_fs_req q[6];
	q[0] = (struct zk_fs_req){.opcode = ZK_FS_NOP, .flags = ZK_FS_LINK};
	zk_fs_prep_writev(&q[1], fd, wv, 2, 0);
	q[1].flags = ZK_FS_LINK;
	q[2] = (struct zk_fs_req){.opcode = ZK_FS_FALLOCATE, .fd = fd, .flags = ZK_FS_LINK,
				  .len = 8192, .off = 0};
	q[3] = (struct zk_fs_req){.opcode = ZK_FS_SYNC_FILE_RANGE, .fd = fd, .flags = ZK_FS_LINK,
				  .op_flags = SYNC_FILE_RANGE_WRITE, .len = 8192, .off = 0};
	q[4] = (struct zk_fs_req){.opcode = ZK_FS_FTRUNCATE, .fd = fd, .flags = ZK_FS_LINK,
				  .len = 11};
	zk_fs_prep_readv(&q[5], fd, rv, 2, 0);
	struct done_count dc = {0};
	ZT_CHECK_EQ(zk_fs_batch(q, 6, count_done, &dc), 0);
	ZT_CHECK_EQ(dc.calls, 6);
	ZT_CHECK_EQ(q[0].res, 0);
	ZT_CHECK_EQ(q[1].res, 11);
	ZT_CHECK_EQ(q[2].res, 0);
	ZT_CHECK_EQ(q[3].res, 0);
	ZT_CHECK_EQ(q[4].res, 0);
	ZT_CHECK_EQ(q[5].res, 11);
	ZT_CHECK(memcmp(r1, "hell", 4) == 0 && memcmp(r2, "o world", 7) == 0);
	struct stat st;
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 11); /* fallocate grew it, ftruncate cut it back */

	/* A vectored read that comes back short breaks its chain: the next
	 * link is cancelled without running. */
	char big[32];
	struct iovec bv[2] = {{big, 16}, {big + 16, 16}};
	zk_fs_prep_readv(&q[0], fd, bv, 2, 0);
	q[0].flags = ZK_FS_LINK;
	q[1] = (struct zk_fs_req){.opcode = ZK_FS_FTRUNCATE, .fd = fd, .len = 0};
	ZT_CHECK_EQ(zk_fs_batch(q, 2, NULL, NULL), 0);
	ZT_CHECK_EQ(q[0].res, 11);
	ZT_CHECK_EQ(q[1].res, -ECANCELED);
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 11); /* the truncate never ran */

	/* A request whose arguments are invalid fails the whole batch with
	 * -EINVAL and nothing runs (fs.h): the write before it included. */
	const struct zk_fs_req bad[3] = {
		{.opcode = ZK_FS_SYNC_FILE_RANGE, .fd = fd, .len = 10, .off = -1},
		{.opcode = ZK_FS_FALLOCATE, .fd = fd, .len = 4096, .off = -1},
		{.opcode = ZK_FS_FTRUNCATE, .fd = fd, .len = (size_t)INT64_MAX + 1},
	};
	for (int i = 0; i < 3; i++) {
		zk_fs_prep_write(&q[0], fd, "ZZZZ", 4, 0);
		q[1] = bad[i];
		ZT_CHECK_EQ(zk_fs_batch(q, 2, NULL, NULL), -EINVAL);
	}
	ZT_CHECK_EQ(zk_pread(fd, r1, 4, 0), 4);
	ZT_CHECK(memcmp(r1, "hell", 4) == 0);
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 11);
	ZT_CHECK_EQ(zk_close(fd), 0);
	zt_rmtree(dir);
	return NULL;
}

Test(cov_fs, a_chain_through_every_request_kind_runs_in_order)
{
	on_both(chain_of_every_kind, NULL, 2);
}

/* ---- a non-blocking pipe in a batch ------------------------------------------------------- */

static void *write_later(void *arg)
{
	int fd = (int)(intptr_t)arg;
	zk_sleep_ms(20);
	return (void *)(intptr_t)zk_write(fd, "later", 5, -1);
}

static void *nonblocking_pipe(void *arg)
{
	(void)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, write_later, (void *)(intptr_t)p[1]), 0);
	/* Empty: the read waits for the writer instead of failing with
	 * -EAGAIN (the kernel's answer for a non-blocking pipe). */
	char buf[8] = {0};
	struct zk_fs_req q[2];
	zk_fs_prep_read(&q[0], p[0], buf, 5, -1);
	q[0].flags = ZK_FS_LINK;
	q[1] = (struct zk_fs_req){.opcode = ZK_FS_NOP};
	ZT_CHECK_EQ(zk_fs_batch(q, 2, NULL, NULL), 0);
	ZT_CHECK_EQ(q[0].res, 5);
	ZT_CHECK(memcmp(buf, "later", 5) == 0);
	ZT_CHECK_EQ(q[1].res, 0);
	void *res;
	ZT_CHECK_EQ(zk_join(t, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, 5);
	zk_close(p[0]);
	zk_close(p[1]);
	return NULL;
}

Test(cov_fs, a_batch_read_on_an_empty_nonblocking_pipe_waits_for_data)
{
	on_both(nonblocking_pipe, NULL, 2);
}

/* ---- a batch from a cancelled task --------------------------------------------------------- */

struct cancelled_batch {
	int fd;
	int ret;
	ssize_t res[2];
};

static void *batch_after_cancel(void *arg)
{
	struct cancelled_batch *c = arg;
	/* Wait to be cancelled (sticky: the sleep ends, the flag stays). */
	zk_sleep_ms(60000);
	struct zk_fs_req q[2];
	zk_fs_prep_write(&q[0], c->fd, "no", 2, 0);
	zk_fs_prep_fsync(&q[1], c->fd, 1);
	c->ret = zk_fs_batch(q, 2, NULL, NULL);
	c->res[0] = q[0].res;
	c->res[1] = q[1].res;
	return NULL;
}

static void *cancelled_task_batch(void *arg)
{
	(void)arg;
	char *dir;
	int fd = open_tmp(&dir);
	struct cancelled_batch c = {.fd = fd, .ret = 1};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, batch_after_cancel, &c), 0);
	zk_sleep_ms(5);
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(c.ret, -ECANCELED);
	ZT_CHECK_EQ(c.res[0], -ECANCELED);
	ZT_CHECK_EQ(c.res[1], -ECANCELED);
	struct stat st;
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 0); /* nothing was written */
	ZT_CHECK_EQ(zk_close(fd), 0);
	zt_rmtree(dir);
	return NULL;
}

Test(cov_fs, a_cancelled_task_runs_no_batch_request)
{
	on_both(cancelled_task_batch, NULL, 1);
}
