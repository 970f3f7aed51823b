/* tests/test_fs_batch.c — zk_fs_batch: many requests in one call, done()
 * per completion, linked chains (write then fsync, the rest of a chain
 * skipped after a failure or a short transfer), argument errors,
 * cancellation, -EAGAIN on non-blocking pipes never surfacing, batches
 * larger than the ring, and concurrent batches from many foreign threads.
 * Each scenario runs in a task and on foreign threads (ring and syscalls). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(fs_batch, .timeout = 60);

enum how { IN_TASK, FOREIGN_RING, FOREIGN_SYSCALL };

struct bctx {
	char *dir;
	int dfd;
	void (*body)(struct bctx *);
};

static void *task_body(void *arg)
{
	struct bctx *c = arg;
	c->body(c);
	return NULL;
}

static void *thread_body(void *arg)
{
	struct bctx *c = arg;
	c->body(c);
	zk_fs_thread_release();
	return NULL;
}

static void *thread_ring(void *arg)
{
	ZT_CHECK_EQ(zk_fs_thread_mode(ZK_FS_RING), ZK_FS_RING);
	return thread_body(arg);
}

static void *thread_syscall(void *arg)
{
	ZT_CHECK_EQ(zk_fs_thread_mode(ZK_FS_SYSCALL), ZK_FS_SYSCALL);
	return thread_body(arg);
}

static void run_how(void (*body)(struct bctx *), enum how how)
{
	struct bctx c = {.dir = zt_tmpdir(), .body = body};
	c.dfd = open(c.dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(c.dfd, 0);
	if (how == IN_TASK) {
		zk_runtime_t *rt = zt_runtime(2);
		zt_run(rt, task_body, &c);
		zk_runtime_free(rt);
	} else {
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL,
					    how == FOREIGN_RING ? thread_ring : thread_syscall, &c),
			     0);
		pthread_join(th, NULL);
		zt_assert_no_failures();
	}
	close(c.dfd);
	zt_rmtree(c.dir);
}

#define THREE_WAYS(name, body)                                                   \
	Test(fs_batch, name##_in_a_task) { run_how(body, IN_TASK); }             \
	Test(fs_batch, name##_on_a_foreign_ring) { run_how(body, FOREIGN_RING); } \
	Test(fs_batch, name##_on_a_foreign_thread_with_syscalls) { run_how(body, FOREIGN_SYSCALL); }

static int open_in(struct bctx *c, const char *name)
{
	int fd = zk_openat(c->dfd, name, O_RDWR | O_CREAT, 0600);
	ZT_CHECK(fd >= 0);
	return fd;
}

/* ---- many requests, each completion reported once ------------------------------------ */

struct seen {
	unsigned calls;
	unsigned char *hit;
	struct zk_fs_req *base;
};

static void count_done(struct zk_fs_req *r, void *ctx)
{
	struct seen *s = ctx;
	s->calls++;
	s->hit[r - s->base]++;
	ZT_CHECK(r->res != -EINTR && r->res != -EAGAIN);
}

static void many(struct bctx *c)
{
	int fd = open_in(c, "many");
	enum { BS = 4096 };
	unsigned n = (unsigned)zt_scaled(512, 64);
	char *out = malloc((size_t)n * BS), *in = calloc(n, BS);
	struct zk_fs_req *reqs = calloc(n, sizeof(*reqs));
	unsigned char *hit = calloc(n, 1);
	zt_fill(out, (size_t)n * BS, 3);
	/* Written in a scattered order, read back in another. */
	for (unsigned i = 0; i < n; i++) {
		unsigned blk = (i * 7919u) % n;
		zk_fs_prep_write(&reqs[i], fd, out + (size_t)blk * BS, BS, (int64_t)blk * BS);
	}
	struct seen s = {.hit = hit, .base = reqs};
	ZT_CHECK_EQ(zk_fs_batch(reqs, n, count_done, &s), 0);
	ZT_CHECK_EQ(s.calls, n);
	for (unsigned i = 0; i < n; i++) {
		ZT_CHECK_EQ(reqs[i].res, BS);
		ZT_CHECK_EQ(hit[i], 1);
	}
	for (unsigned i = 0; i < n; i++)
		zk_fs_prep_read(&reqs[i], fd, in + (size_t)i * BS, BS, (int64_t)i * BS);
	ZT_CHECK_EQ(zk_fs_batch(reqs, n, NULL, NULL), 0);
	for (unsigned i = 0; i < n; i++)
		ZT_CHECK_EQ(reqs[i].res, BS);
	ZT_CHECK(memcmp(in, out, (size_t)n * BS) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	free(out);
	free(in);
	free(reqs);
	free(hit);
}
THREE_WAYS(every_request_runs_and_is_reported_once, many)

/* ---- linked chains ------------------------------------------------------------------- */

static void links(struct bctx *c)
{
	int fd = open_in(c, "links");
	char data[4096], back[4096];
	zt_fill(data, sizeof(data), 9);
	struct zk_fs_req r[8];

	/* write -> fdatasync -> read: all run, in order. */
	zk_fs_prep_write(&r[0], fd, data, sizeof(data), 0);
	r[0].flags = ZK_FS_LINK;
	zk_fs_prep_fsync(&r[1], fd, 1);
	r[1].flags = ZK_FS_LINK;
	zk_fs_prep_read(&r[2], fd, back, sizeof(back), 0);
	ZT_CHECK_EQ(zk_fs_batch(r, 3, NULL, NULL), 0);
	ZT_CHECK_EQ(r[0].res, 4096);
	ZT_CHECK_EQ(r[1].res, 0);
	ZT_CHECK_EQ(r[2].res, 4096);
	ZT_CHECK(memcmp(back, data, sizeof(data)) == 0);

	/* A failed write: its fsync does not run; an unlinked request after
	 * the chain still runs. */
	zk_fs_prep_write(&r[0], -1, data, sizeof(data), 0);
	r[0].flags = ZK_FS_LINK;
	zk_fs_prep_fsync(&r[1], fd, 0);
	zk_fs_prep_write(&r[2], fd, data, 10, 4096);
	ZT_CHECK_EQ(zk_fs_batch(r, 3, NULL, NULL), 0);
	ZT_CHECK_EQ(r[0].res, -EBADF);
	ZT_CHECK_EQ(r[1].res, -ECANCELED);
	ZT_CHECK_EQ(r[2].res, 10);

	/* A short read breaks the chain too (read past EOF, then a write that
	 * must not happen). */
	struct stat st;
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	zk_fs_prep_read(&r[0], fd, back, sizeof(back), st.st_size - 100);
	r[0].flags = ZK_FS_LINK;
	zk_fs_prep_write(&r[1], fd, data, 4096, 1 << 20);
	r[1].flags = ZK_FS_LINK;
	zk_fs_prep_fsync(&r[2], fd, 0);
	ZT_CHECK_EQ(zk_fs_batch(r, 3, NULL, NULL), 0);
	ZT_CHECK_EQ(r[0].res, 100);
	ZT_CHECK_EQ(r[1].res, -ECANCELED);
	ZT_CHECK_EQ(r[2].res, -ECANCELED);
	struct stat st2;
	ZT_CHECK_EQ(fstat(fd, &st2), 0);
	ZT_CHECK_EQ(st2.st_size, st.st_size);

	/* Two chains and singles side by side; the last request's LINK flag
	 * links to nothing. */
	for (int i = 0; i < 8; i++) {
		zk_fs_prep_write(&r[i], fd, data + i, 1, 8192 + i);
		r[i].flags = (i == 1 || i == 2 || i == 5 || i == 7) ? ZK_FS_LINK : 0;
	}
	r[3].fd = -1; /* fails: the chain 1-2-3 ends with it, 4 is separate */
	ZT_CHECK_EQ(zk_fs_batch(r, 8, NULL, NULL), 0);
	ZT_CHECK_EQ(r[0].res, 1);
	ZT_CHECK_EQ(r[1].res, 1);
	ZT_CHECK_EQ(r[2].res, 1);
	ZT_CHECK_EQ(r[3].res, -EBADF);
	ZT_CHECK_EQ(r[4].res, 1);
	ZT_CHECK_EQ(r[5].res, 1);
	ZT_CHECK_EQ(r[6].res, 1);
	ZT_CHECK_EQ(r[7].res, 1);
	ZT_CHECK_EQ(zk_close(fd), 0);
}
THREE_WAYS(a_chain_runs_in_order_and_stops_at_a_failure_or_short_transfer, links)

/* ---- argument errors ------------------------------------------------------------------- */

static void bad_args(struct bctx *c)
{
	int fd = open_in(c, "bad");
	char b[16];
	struct zk_fs_req r[2];
	zk_fs_prep_write(&r[0], fd, b, sizeof(b), 0);
	zk_fs_prep_write(&r[1], fd, b, sizeof(b), 0);
	ZT_CHECK_EQ(zk_fs_batch(NULL, 1, NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_fs_batch(r, 0, NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_fs_batch(r, ZK_FS_BATCH_MAX + 1, NULL, NULL), -EINVAL);
	r[1].opcode = 999;
	ZT_CHECK_EQ(zk_fs_batch(r, 2, NULL, NULL), -EINVAL);
	zk_fs_prep_write(&r[1], fd, b, sizeof(b), -2);
	ZT_CHECK_EQ(zk_fs_batch(r, 2, NULL, NULL), -EINVAL);
	zk_fs_prep_readv(&r[1], fd, NULL, 1, 0);
	ZT_CHECK_EQ(zk_fs_batch(r, 2, NULL, NULL), -EINVAL);
	/* Nothing ran: the file is still empty. */
	struct stat st;
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
}
THREE_WAYS(bad_arguments_are_einval_and_run_nothing, bad_args)

/* ---- -EAGAIN never reaches the caller --------------------------------------------------- */

struct later {
	int fd;
	unsigned ms;
};

static void *write_later(void *arg)
{
	struct later *l = arg;
	zt_msleep(l->ms);
	ssize_t w = write(l->fd, "ping", 4);
	ZT_CHECK_EQ(w, 4);
	return NULL;
}

static void nonblocking(struct bctx *c)
{
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	pthread_t th;
	struct later l = {.fd = p[1], .ms = 50};
	pthread_create(&th, NULL, write_later, &l);
	char buf[8] = {0};
	struct zk_fs_req r;
	zk_fs_prep_read(&r, p[0], buf, sizeof(buf), -1); /* -1: a pipe has no offset */
	r.off = -2;
	ZT_CHECK_EQ(zk_fs_batch(&r, 1, NULL, NULL), -EINVAL);
	r.off = -1;
	ZT_CHECK_EQ(zk_fs_batch(&r, 1, NULL, NULL), 0);
	ZT_CHECK_EQ(r.res, 4);
	ZT_CHECK(memcmp(buf, "ping", 4) == 0);
	pthread_join(th, NULL);
	/* The same in a chain: the read that would block (EAGAIN, which
	 * breaks a kernel-linked chain) is retried, and the write linked
	 * behind it still runs once the data is there. */
	int fd = zk_openat(c->dfd, "after", O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	pthread_create(&th, NULL, write_later, &l);
	struct zk_fs_req ch[3];
	memset(buf, 0, sizeof(buf));
	zk_fs_prep_read(&ch[0], p[0], buf, 4, -1);
	ch[0].flags = ZK_FS_LINK;
	zk_fs_prep_write(&ch[1], fd, "done", 4, 0);
	ch[1].flags = ZK_FS_LINK;
	zk_fs_prep_fsync(&ch[2], fd, 1);
	ZT_CHECK_EQ(zk_fs_batch(ch, 3, NULL, NULL), 0);
	ZT_CHECK_EQ(ch[0].res, 4);
	ZT_CHECK_EQ(ch[1].res, 4);
	ZT_CHECK_EQ(ch[2].res, 0);
	char back[4];
	ZT_CHECK_EQ(pread(fd, back, 4, 0), 4);
	ZT_CHECK(memcmp(back, "done", 4) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	pthread_join(th, NULL);
	close(p[0]);
	close(p[1]);
}
THREE_WAYS(a_read_on_an_empty_nonblocking_pipe_waits_instead_of_eagain, nonblocking)

/* ---- cancellation ---------------------------------------------------------------------- */

struct cancel_ctx {
	int p[2];
	int fd;
	atomic_long started;
	int ret;
	struct zk_fs_req r[3];
	char buf[8];
};

static void *batch_blocked(void *arg)
{
	struct cancel_ctx *cc = arg;
	/* A pipe read at "offset 0" is a plain read on a pipe: it never
	 * completes until written. */
	zk_fs_prep_read(&cc->r[0], cc->p[0], cc->buf, sizeof(cc->buf), 0);
	zk_fs_prep_write(&cc->r[1], cc->fd, "abc", 3, 0);
	zk_fs_prep_read(&cc->r[2], cc->p[0], cc->buf, sizeof(cc->buf), 0);
	cc->r[0].flags = ZK_FS_LINK;
	atomic_store(&cc->started, 1);
	cc->ret = zk_fs_batch(cc->r, 3, NULL, NULL);
	return NULL;
}

static void *cancel_main(void *arg)
{
	struct cancel_ctx *cc = arg;
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, batch_blocked, cc), 0);
	ZT_CHECK(zt_task_wait_at_least(&cc->started, 1, 5000));
	zk_sleep_ms(20);
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	return NULL;
}

Test(fs_batch, cancelling_the_task_cancels_the_requests_in_flight)
{
	struct cancel_ctx cc = {.ret = 1};
	cr_assert_eq(pipe(cc.p), 0);
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/f", dir);
	cc.fd = open(path, O_RDWR | O_CREAT, 0600);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, cancel_main, &cc);
	zk_runtime_free(rt);
	cr_assert_eq(cc.ret, -ECANCELED);
	cr_assert_eq(cc.r[0].res, -ECANCELED);
	cr_assert_eq(cc.r[1].res, -ECANCELED, "linked after a cancelled read: never ran");
	cr_assert_eq(cc.r[2].res, -ECANCELED);
	struct stat st;
	cr_assert_eq(fstat(cc.fd, &st), 0);
	cr_assert_eq(st.st_size, 0);
	close(cc.fd);
	close(cc.p[0]);
	close(cc.p[1]);
	zt_rmtree(dir);
}

/* ---- bigger than the ring; many threads at once ----------------------------------------- */

static void *hammer(void *arg)
{
	struct bctx *c = arg;
	char name[32];
	snprintf(name, sizeof(name), "h%lx", (unsigned long)pthread_self());
	int fd = open_in(c, name);
	unsigned n = (unsigned)zt_scaled(ZK_FS_BATCH_MAX, 300);
	struct zk_fs_req *r = calloc(n, sizeof(*r));
	uint32_t *vals = calloc(n, sizeof(*vals));
	for (unsigned i = 0; i < n; i++) {
		vals[i] = i * 2654435761u;
		zk_fs_prep_write(&r[i], fd, &vals[i], 4, (int64_t)i * 4);
	}
	ZT_CHECK_EQ(zk_fs_batch(r, n, NULL, NULL), 0);
	for (unsigned i = 0; i < n; i++)
		ZT_CHECK_EQ(r[i].res, 4);
	uint32_t *back = calloc(n, sizeof(*back));
	ZT_CHECK_EQ(zk_pread(fd, back, (size_t)n * 4, 0), (ssize_t)n * 4);
	ZT_CHECK(memcmp(back, vals, (size_t)n * 4) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	free(r);
	free(vals);
	free(back);
	zk_fs_thread_release();
	return NULL;
}

Test(fs_batch, batches_larger_than_the_ring_from_four_threads_at_once)
{
	struct bctx c = {.dir = zt_tmpdir()};
	c.dfd = open(c.dir, O_RDONLY | O_DIRECTORY);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, hammer, &c), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	zt_assert_no_failures();
	close(c.dfd);
	zt_rmtree(c.dir);
}
