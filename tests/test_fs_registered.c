/* tests/test_fs_registered.c — registered buffers and files on a foreign
 * thread's ring, and buffers registered from a task on every worker ring (zk_fs_register_buffers/files): reads and writes inside a
 * registered buffer go through it (proved by remapping the memory under
 * it: a fixed read lands in the pages the ring pinned), registered fds go
 * through the fixed file (proved by closing the fd behind the ring's back),
 * zk_close empties a registered slot, and the errors and the fallback
 * without a ring. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(fs_registered, .timeout = 60);

struct rctx {
	char *dir;
	char path[PATH_MAX];
	int fd;
};

/* A file of 4 KiB blocks, block i filled with 'a' + i; the thread on its
 * ring (io_uring needed: skipped without). */
static void setup(struct rctx *c)
{
	int m = zk_fs_thread_mode(ZK_FS_RING);
	if (m != ZK_FS_RING)
		cr_skip_test("no io_uring ring on this thread (%d)", m);
	c->dir = zt_tmpdir();
	snprintf(c->path, sizeof(c->path), "%s/f", c->dir);
	c->fd = open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(c->fd, 0);
	char b[4096];
	for (int i = 0; i < 4; i++) {
		memset(b, 'a' + i, sizeof(b));
		cr_assert_eq(pwrite(c->fd, b, sizeof(b), i * 4096), 4096);
	}
}

static void teardown(struct rctx *c)
{
	zk_fs_register_buffers(NULL, 0);
	zk_fs_register_files(NULL, 0);
	zk_fs_thread_release();
	zk_fs_thread_mode(ZK_FS_AUTO);
	if (c->fd >= 0)
		close(c->fd);
	zt_rmtree(c->dir);
}

static bool all(const char *p, size_t n, char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

Test(fs_registered, io_inside_a_registered_buffer_uses_the_pinned_pages)
{
	struct rctx c;
	setup(&c);
	size_t len = 64 * 1024;
	char *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(region, MAP_FAILED);
	struct iovec iov = {region, len};
	cr_assert_eq(zk_fs_register_buffers(&iov, 1), 0);
	/* Reads and writes through it are correct. */
	cr_assert_eq(zk_pread(c.fd, region + 4096, 4096, 4096), 4096);
	cr_assert(all(region + 4096, 4096, 'b'));
	memset(region, 'z', 4096);
	cr_assert_eq(zk_pwrite(c.fd, region, 4096, 3 * 4096), 4096);
	char chk[4096];
	cr_assert_eq(pread(c.fd, chk, sizeof(chk), 3 * 4096), 4096);
	cr_assert(all(chk, sizeof(chk), 'z'));
	/* A buffer outside every registered one works as before. */
	char *other = malloc(4096);
	cr_assert_eq(zk_pread(c.fd, other, 4096, 0), 4096);
	cr_assert(all(other, 4096, 'a'));
	free(other);
	/* Proof that the fixed path is taken: replace the memory under the
	 * registration. A READ_FIXED lands in the pages the ring pinned, not
	 * in the new mapping; a plain read would fill the new mapping. */
	char *again = mmap(region, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	cr_assert_eq(again, region);
	cr_assert_eq(zk_pread(c.fd, region, 4096, 0), 4096);
	cr_assert(all(region, 4096, 0), "the read went to the new mapping: not READ_FIXED");
	/* Unregistered, the same read fills the new mapping. */
	cr_assert_eq(zk_fs_register_buffers(NULL, 0), 0);
	cr_assert_eq(zk_pread(c.fd, region, 4096, 0), 4096);
	cr_assert(all(region, 4096, 'a'));
	munmap(region, len);
	teardown(&c);
}

Test(fs_registered, registered_fds_use_the_fixed_file_and_zk_close_empties_the_slot)
{
	struct rctx c;
	setup(&c);
	char b[4096];
	int fds[2] = {c.fd, dup(c.fd)};
	cr_assert_geq(fds[1], 0);
	cr_assert_eq(zk_fs_register_files(fds, 2), 0);
	cr_assert_eq(zk_pread(fds[1], b, sizeof(b), 4096), 4096);
	cr_assert(all(b, sizeof(b), 'b'));
	cr_assert_eq(zk_fdatasync(fds[1]), 0);
	/* Closed behind the ring's back, the fd still reaches the file through
	 * its registered slot: the proof that the fixed file is used. */
	cr_assert_eq(close(fds[1]), 0);
	cr_assert_eq(zk_pread(fds[1], b, sizeof(b), 2 * 4096), 4096);
	cr_assert(all(b, sizeof(b), 'c'));
	/* Unregistered: the fd is gone for good. */
	cr_assert_eq(zk_fs_register_files(NULL, 0), 0);
	cr_assert_eq(zk_pread(fds[1], b, sizeof(b), 0), -EBADF);

	/* zk_close of a registered fd empties the slot: a new file given the
	 * same number is the new file, not the old one. */
	int fd2 = dup(c.fd);
	cr_assert_eq(zk_fs_register_files(&fd2, 1), 0);
	cr_assert_eq(zk_close(fd2), 0);
	char p2[PATH_MAX + 8];
	snprintf(p2, sizeof(p2), "%s/g", c.dir);
	int nfd = open(p2, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_eq(nfd, fd2, "the kernel reuses the lowest free fd number");
	cr_assert_eq(zk_pwrite(nfd, "new", 3, 0), 3);
	cr_assert_eq(zk_pread(nfd, b, sizeof(b), 0), 3);
	cr_assert(memcmp(b, "new", 3) == 0);
	close(nfd);
	teardown(&c);
}

static void *in_task(void *arg)
{
	(void)arg;
	char b[16];
	struct iovec iov = {b, sizeof(b)};
	int fd = 0;
	/* Buffers register with the worker rings (or -EOPNOTSUPP on a backend
	 * without registration); files are for foreign threads only. */
	int r = zk_fs_register_buffers(&iov, 1);
	ZT_CHECK(r == 0 || r == -EOPNOTSUPP);
	ZT_CHECK_EQ(zk_fs_register_buffers(NULL, 1), -EINVAL);
	ZT_CHECK_EQ(zk_fs_register_buffers(NULL, 0), r);
	ZT_CHECK_EQ(zk_fs_register_files(&fd, 1), -EPERM);
	return NULL;
}

/* ---- worker rings: registration from a task ---------------------------------- */

#define WTASKS 24

struct wctx {
	int fd;
	char *region; /* WTASKS blocks */
	int expect;   /* 0: the read must land elsewhere (fixed), 1: here */
	_Atomic unsigned on_worker[8];
	bool unsupported;
};

struct wjob {
	struct wctx *c;
	unsigned i;
};

static void *w_reader(void *arg)
{
	struct wjob *j = arg;
	struct wctx *c = j->c;
	zk_sleep_ms(1); /* woken together: the idle worker steals some */
	char *dst = c->region + (size_t)j->i * 4096;
	char want = (char)('a' + j->i % 4);
	int wi = zk_worker_index();
	ZT_CHECK_EQ(zk_pread(c->fd, dst, 4096, (off_t)(j->i % 4) * 4096), 4096);
	if (wi >= 0 && wi < 8)
		atomic_fetch_add(&c->on_worker[wi], 1);
	if (c->expect)
		ZT_CHECK(all(dst, 4096, want));
	else
		ZT_CHECK(all(dst, 4096, 0)); /* READ_FIXED: into the pinned pages */
	return NULL;
}

/* Rounds of WTASKS readers until both workers' rings have served reads
 * (bounded; the scheduler decides where a task runs). */
static void run_readers(struct wctx *c)
{
	for (unsigned i = 0; i < 2; i++)
		atomic_store(&c->on_worker[i], 0);
	for (unsigned round = 0; round < 200; round++) {
		struct wjob jobs[WTASKS];
		zk_task_t *h[WTASKS];
		for (unsigned i = 0; i < WTASKS; i++) {
			jobs[i] = (struct wjob){c, i};
			ZT_CHECK_EQ(zk_spawn(&h[i], w_reader, &jobs[i]), 0);
		}
		for (unsigned i = 0; i < WTASKS; i++)
			zk_join(h[i], NULL);
		if (atomic_load(&c->on_worker[0]) && atomic_load(&c->on_worker[1]))
			return;
	}
	ZT_CHECK(!"the readers never ran on both workers");
}

static void *w_driver(void *arg)
{
	struct wctx *c = arg;
	size_t len = (size_t)WTASKS * 4096;
	struct iovec iov = {c->region, len};
	int r = zk_fs_register_buffers(&iov, 1);
	if (r == -EOPNOTSUPP) {
		c->unsupported = true;
		return NULL;
	}
	ZT_CHECK_EQ(r, 0);
	/* Correct through the registration, on whichever worker. */
	c->expect = 1;
	run_readers(c);
	/* Proof of READ_FIXED on every ring: new memory under the
	 * registration; fixed reads land in the pages the rings pinned. */
	char *again = mmap(c->region, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ZT_CHECK(again == c->region);
	c->expect = 0;
	run_readers(c);
	/* Dropped from a task: no ring uses it for an op submitted after. */
	ZT_CHECK_EQ(zk_fs_register_buffers(NULL, 0), 0);
	c->expect = 1;
	run_readers(c);
	return NULL;
}

Test(fs_registered, buffers_registered_from_a_task_are_used_by_every_worker_ring)
{
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/w", dir);
	struct wctx c = {.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)};
	cr_assert_geq(c.fd, 0);
	char b[4096];
	for (int i = 0; i < 4; i++) {
		memset(b, 'a' + i, sizeof(b));
		cr_assert_eq(pwrite(c.fd, b, sizeof(b), i * 4096), 4096);
	}
	size_t len = (size_t)WTASKS * 4096;
	c.region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(c.region, MAP_FAILED);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, w_driver, &c);
	zk_runtime_free(rt);
	munmap(c.region, len);
	close(c.fd);
	zt_rmtree(dir);
	if (c.unsupported)
		cr_skip_test("no registration on this backend");
}

Test(fs_registered, errors_and_the_fallback_without_a_ring)
{
	char b[16];
	struct iovec iov = {b, sizeof(b)}, zero = {b, 0};
	cr_assert_eq(zk_fs_register_buffers(NULL, 1), -EINVAL);
	cr_assert_eq(zk_fs_register_buffers(&zero, 1), -EINVAL);
	cr_assert_eq(zk_fs_register_files(NULL, 1), -EINVAL);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, in_task, NULL);
	zk_runtime_free(rt);
	if (zk_fs_thread_mode(ZK_FS_RING) == ZK_FS_RING) {
		int bad = 1000000;
		cr_assert_eq(zk_fs_register_files(&bad, 1), -EBADF);
		cr_assert_eq(zk_fs_register_buffers(&iov, 1), 0);
		cr_assert_eq(zk_fs_register_buffers(NULL, 0), 0);
		zk_fs_thread_release();
	}
	/* Syscall mode (even with a ring made earlier): nothing to register
	 * with; the calls still work. */
	zk_fs_thread_mode(ZK_FS_RING); /* makes a ring where io_uring works */
	cr_assert_eq(zk_fs_thread_mode(ZK_FS_SYSCALL), ZK_FS_SYSCALL);
	cr_assert_eq(zk_fs_register_buffers(&iov, 1), -EOPNOTSUPP);
	int fd = 0;
	cr_assert_eq(zk_fs_register_files(&fd, 1), -EOPNOTSUPP);
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/s", dir);
	int f = zk_open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(f, 0);
	cr_assert_eq(zk_pwrite(f, b, sizeof(b), 0), (ssize_t)sizeof(b));
	cr_assert_eq(zk_close(f), 0);
	zk_fs_thread_release();
	zk_fs_thread_mode(ZK_FS_AUTO);
	zt_rmtree(dir);
}
