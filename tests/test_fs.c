/* tests/test_fs.c — fs.h: open, read/write at offsets, vectored I/O, fsync,
 * close, poll, and every documented error, on real files in a temp dir. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(fs, .timeout = 60);

struct fsctx {
	char *dir;
	char path[PATH_MAX];
};

static void fs_setup(struct fsctx *c, const char *name)
{
	c->dir = zt_tmpdir();
	snprintf(c->path, sizeof(c->path), "%s/%s", c->dir, name);
}

static void run_fs(zk_task_fn fn, struct fsctx *c, unsigned workers)
{
	zk_runtime_t *rt = zt_runtime(workers);
	zt_run(rt, fn, c);
	zk_runtime_free(rt);
}

/* ---- round trips ------------------------------------------------------------------ */

static void *write_read_offsets(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	enum { LEN = 256 * 1024 };
	char *out = malloc(LEN), *in = malloc(LEN);
	zt_fill(out, LEN, 1);
	/* Written back to front in 4 KiB pieces at explicit offsets. */
	for (long off = LEN - 4096; off >= 0; off -= 4096)
		ZT_CHECK_EQ(zk_write(fd, out + off, 4096, off), 4096);
	struct stat st;
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, LEN);
	memset(in, 0, LEN);
	ZT_CHECK_EQ(zk_read(fd, in, LEN, 0), LEN);
	ZT_CHECK(memcmp(in, out, LEN) == 0);
	/* A read in the middle. */
	memset(in, 0, LEN);
	ZT_CHECK_EQ(zk_read(fd, in, 1000, 12345), 1000);
	ZT_CHECK(zt_check_fill(in, 1000, 1, 12345));
	/* Explicit offsets do not move the file position. */
	ZT_CHECK_EQ(lseek(fd, 0, SEEK_CUR), 0);
	ZT_CHECK_EQ(zk_fsync(fd), 0);
	ZT_CHECK_EQ(zk_fdatasync(fd), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* Independent check through plain POSIX. */
	int pfd = open(c->path, O_RDONLY);
	ZT_CHECK(pfd >= 0);
	memset(in, 0, LEN);
	ZT_CHECK_EQ(pread(pfd, in, LEN, 0), LEN);
	ZT_CHECK(zt_check_fill(in, LEN, 1, 0));
	close(pfd);
	free(out);
	free(in);
	return NULL;
}

Test(fs, write_then_read_at_offsets_round_trips_the_data)
{
	struct fsctx c;
	fs_setup(&c, "data");
	run_fs(write_read_offsets, &c, 2);
	zt_rmtree(c.dir);
}

static void *file_position_io(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_write(fd, "hello ", 6, -1), 6);
	ZT_CHECK_EQ(zk_write(fd, "world", 5, -1), 5);
	ZT_CHECK_EQ(lseek(fd, 0, SEEK_CUR), 11);
	ZT_CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
	char buf[16] = {0};
	ZT_CHECK_EQ(zk_read(fd, buf, 6, -1), 6);
	ZT_CHECK_EQ(zk_read(fd, buf + 6, 10, -1), 5);
	ZT_CHECK(strcmp(buf, "hello world") == 0);
	ZT_CHECK_EQ(zk_read(fd, buf, 10, -1), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(fs, offset_minus_one_uses_and_advances_the_file_position)
{
	struct fsctx c;
	fs_setup(&c, "pos");
	run_fs(file_position_io, &c, 1);
	zt_rmtree(c.dir);
}

static void *vectored_io(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	char a[100], b[3000], d[7];
	zt_fill(a, sizeof(a), 2);
	zt_fill(b, sizeof(b), 3);
	zt_fill(d, sizeof(d), 4);
	struct iovec wv[3] = {{a, sizeof(a)}, {b, sizeof(b)}, {d, sizeof(d)}};
	ZT_CHECK_EQ(zk_writev(fd, wv, 3, 10), sizeof(a) + sizeof(b) + sizeof(d));
	/* Read back with a different split. */
	char x[1000], y[2107];
	struct iovec rv[2] = {{x, sizeof(x)}, {y, sizeof(y)}};
	ZT_CHECK_EQ(zk_readv(fd, rv, 2, 10), sizeof(x) + sizeof(y));
	char all[sizeof(a) + sizeof(b) + sizeof(d)];
	memcpy(all, x, sizeof(x));
	memcpy(all + sizeof(x), y, sizeof(y));
	ZT_CHECK(memcmp(all, a, sizeof(a)) == 0);
	ZT_CHECK(memcmp(all + sizeof(a), b, sizeof(b)) == 0);
	ZT_CHECK(memcmp(all + sizeof(a) + sizeof(b), d, sizeof(d)) == 0);
	/* The 10 bytes before the offset are a hole of zeros. */
	char hole[10];
	ZT_CHECK_EQ(zk_read(fd, hole, sizeof(hole), 0), 10);
	for (int i = 0; i < 10; i++)
		ZT_CHECK_EQ(hole[i], 0);
	/* Short vectored read at EOF. */
	char big[8192];
	struct iovec one = {big, sizeof(big)};
	ZT_CHECK_EQ(zk_readv(fd, &one, 1, 3000), 10 + 3107 - 3000);
	/* At the file position. */
	ZT_CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
	ZT_CHECK_EQ(zk_writev(fd, wv, 1, -1), sizeof(a));
	ZT_CHECK_EQ(lseek(fd, 0, SEEK_CUR), sizeof(a));
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(fs, readv_and_writev_scatter_and_gather)
{
	struct fsctx c;
	fs_setup(&c, "vec");
	run_fs(vectored_io, &c, 2);
	zt_rmtree(c.dir);
}

static void *vec_errors(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	char b[4];
	struct iovec iov = {b, sizeof(b)};
	ZT_CHECK_EQ(zk_readv(fd, &iov, 0, 0), -EINVAL);
	ZT_CHECK_EQ(zk_writev(fd, &iov, 0, 0), -EINVAL);
	ZT_CHECK_EQ(zk_readv(fd, &iov, -1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_readv(fd, &iov, IOV_MAX + 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_writev(fd, &iov, IOV_MAX + 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_readv(fd, NULL, 1, 0), -EINVAL);
	ZT_CHECK_EQ(zk_readv(-1, &iov, 1, 0), -EBADF);
	/* IOV_MAX itself is accepted. */
	struct iovec *many = calloc(IOV_MAX, sizeof(*many));
	char *bytes = malloc(IOV_MAX);
	zt_fill(bytes, IOV_MAX, 5);
	for (int i = 0; i < IOV_MAX; i++)
		many[i] = (struct iovec){bytes + i, 1};
	ZT_CHECK_EQ(zk_writev(fd, many, IOV_MAX, 0), IOV_MAX);
	memset(bytes, 0, IOV_MAX);
	ZT_CHECK_EQ(zk_readv(fd, many, IOV_MAX, 0), IOV_MAX);
	ZT_CHECK(zt_check_fill(bytes, IOV_MAX, 5, 0));
	free(many);
	free(bytes);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(fs, vectored_calls_reject_bad_iovcnt_and_accept_iov_max)
{
	struct fsctx c;
	fs_setup(&c, "vecerr");
	run_fs(vec_errors, &c, 1);
	zt_rmtree(c.dir);
}

static void *short_reads(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	char data[100];
	zt_fill(data, sizeof(data), 6);
	ZT_CHECK_EQ(zk_write(fd, data, sizeof(data), 0), 100);
	char buf[4096];
	ZT_CHECK_EQ(zk_read(fd, buf, sizeof(buf), 0), 100);
	ZT_CHECK(memcmp(buf, data, 100) == 0);
	ZT_CHECK_EQ(zk_read(fd, buf, sizeof(buf), 60), 40);
	ZT_CHECK(memcmp(buf, data + 60, 40) == 0);
	ZT_CHECK_EQ(zk_read(fd, buf, sizeof(buf), 100), 0);
	ZT_CHECK_EQ(zk_read(fd, buf, sizeof(buf), 1 << 20), 0);
	ZT_CHECK_EQ(zk_read(fd, buf, 0, 0), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(fs, reads_at_and_past_eof_are_short_or_zero)
{
	struct fsctx c;
	fs_setup(&c, "short");
	run_fs(short_reads, &c, 1);
	zt_rmtree(c.dir);
}

/* A large buffer (len > 2^31-1 is capped; here: a length the kernel must
 * accept as is) round trips. */
static void *big_io(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	size_t len = 8u << 20;
	char *out = malloc(len), *in = malloc(len);
	zt_fill(out, len, 7);
	size_t done = 0;
	while (done < len) {
		ssize_t n = zk_write(fd, out + done, len - done, (int64_t)done);
		ZT_CHECK(n > 0);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	done = 0;
	while (done < len) {
		ssize_t n = zk_read(fd, in + done, len - done, (int64_t)done);
		ZT_CHECK(n > 0);
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	ZT_CHECK(memcmp(in, out, len) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	free(out);
	free(in);
	return NULL;
}

Test(fs, eight_megabytes_round_trip)
{
	struct fsctx c;
	fs_setup(&c, "big");
	run_fs(big_io, &c, 2);
	zt_rmtree(c.dir);
}

/* Many tasks write their own region of one file concurrently. */
struct region_arg {
	struct fsctx *c;
	int fd;
	unsigned idx;
};

static void *write_region(void *arg)
{
	struct region_arg *a = arg;
	char buf[4096];
	zt_fill(buf, sizeof(buf), a->idx + 100);
	ZT_CHECK_EQ(zk_write(a->fd, buf, sizeof(buf), (int64_t)a->idx * 4096), 4096);
	memset(buf, 0, sizeof(buf));
	ZT_CHECK_EQ(zk_read(a->fd, buf, sizeof(buf), (int64_t)a->idx * 4096), 4096);
	ZT_CHECK(zt_check_fill(buf, sizeof(buf), a->idx + 100, 0));
	return NULL;
}

static void *concurrent_regions(void *arg)
{
	struct fsctx *c = arg;
	enum { N = 256 };
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	struct region_arg a[N];
	zk_task_t *h[N];
	for (unsigned i = 0; i < N; i++) {
		a[i] = (struct region_arg){c, fd, i};
		ZT_CHECK_EQ(zk_spawn(&h[i], write_region, &a[i]), 0);
	}
	for (unsigned i = 0; i < N; i++)
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
	ZT_CHECK_EQ(zk_fsync(fd), 0);
	char buf[4096];
	for (unsigned i = 0; i < N; i++) {
		ZT_CHECK_EQ(zk_read(fd, buf, sizeof(buf), (int64_t)i * 4096), 4096);
		ZT_CHECK(zt_check_fill(buf, sizeof(buf), i + 100, 0));
	}
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(fs, concurrent_writers_on_a_tiny_ring_all_complete, .timeout = 60)
{
	/* Far more operations in flight than SQ (and CQ) entries. */
	struct fsctx c;
	fs_setup(&c, "regions");
	zk_config_t cfg = {.workers = 2, .ring_entries = 4};
	zk_runtime_t *rt;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	zt_run(rt, concurrent_regions, &c);
	zk_runtime_free(rt);
	zt_rmtree(c.dir);
}

/* ---- open / close ---------------------------------------------------------------- */

static void *open_errors(void *arg)
{
	struct fsctx *c = arg;
	ZT_CHECK_EQ(zk_open(c->path, O_RDONLY, 0), -ENOENT);
	ZT_CHECK_EQ(zk_open(NULL, O_RDONLY, 0), -EINVAL);
	ZT_CHECK_EQ(zk_openat(AT_FDCWD, NULL, O_RDONLY, 0), -EINVAL);
	int fd = zk_open(c->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_open(c->path, O_WRONLY | O_CREAT | O_EXCL, 0600), -EEXIST);
	ZT_CHECK_EQ(zk_close(fd), 0);
	char sub[PATH_MAX];
	snprintf(sub, sizeof(sub), "%s/file/below", c->dir);
	ZT_CHECK_EQ(zk_open(sub, O_RDONLY, 0), -ENOTDIR);
	ZT_CHECK_EQ(zk_open(c->dir, O_WRONLY, 0), -EISDIR);
	ZT_CHECK_EQ(zk_openat(-1, "relative", O_RDONLY, 0), -EBADF);
	/* Permission: a mode-000 file cannot be opened for reading, unless we
	 * are root (then it can; skip that half). */
	char noperm[PATH_MAX];
	snprintf(noperm, sizeof(noperm), "%s/noperm", c->dir);
	int nfd = zk_open(noperm, O_WRONLY | O_CREAT, 0000);
	ZT_CHECK(nfd >= 0);
	ZT_CHECK_EQ(zk_close(nfd), 0);
	if (geteuid() != 0)
		ZT_CHECK_EQ(zk_open(noperm, O_RDONLY, 0), -EACCES);
	return NULL;
}

Test(fs, open_reports_enoent_einval_eexist_enotdir_eisdir_ebadf_eacces)
{
	struct fsctx c;
	fs_setup(&c, "file");
	run_fs(open_errors, &c, 1);
	zt_rmtree(c.dir);
}

static void *openat_dir(void *arg)
{
	struct fsctx *c = arg;
	int dfd = zk_open(c->dir, O_RDONLY | O_DIRECTORY, 0);
	ZT_CHECK(dfd >= 0);
	int fd = zk_openat(dfd, "rel", O_RDWR | O_CREAT, 0640);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_write(fd, "abc", 3, 0), 3);
	ZT_CHECK_EQ(zk_close(fd), 0);
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/rel", c->dir);
	struct stat st;
	ZT_CHECK_EQ(stat(p, &st), 0);
	ZT_CHECK_EQ(st.st_size, 3);
	ZT_CHECK_EQ(st.st_mode & 0777 & ~0640, 0);
	/* The opened fds are close-on-exec. */
	fd = zk_open(p, O_RDONLY, 0);
	ZT_CHECK(fd >= 0);
	ZT_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_close(dfd), 0);
	return NULL;
}

Test(fs, openat_resolves_relative_to_the_directory_fd)
{
	struct fsctx c;
	fs_setup(&c, "unused");
	run_fs(openat_dir, &c, 1);
	zt_rmtree(c.dir);
}

static void *close_errors(void *arg)
{
	(void)arg;
	int fd = zk_open("/dev/null", O_RDONLY, 0);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(fcntl(fd, F_GETFD), -1);
	ZT_CHECK_EQ(zk_close(fd), -EBADF);
	ZT_CHECK_EQ(zk_close(-1), -EBADF);
	ZT_CHECK_EQ(zk_close(1 << 20), -EBADF);
	return NULL;
}

Test(fs, close_closes_and_reports_ebadf)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, close_errors, NULL);
	zk_runtime_free(rt);
}

/* ---- errors of read/write/fsync ----------------------------------------------------- */

static void *io_errors(void *arg)
{
	struct fsctx *c = arg;
	char buf[16];
	ZT_CHECK_EQ(zk_read(-1, buf, sizeof(buf), 0), -EBADF);
	ZT_CHECK_EQ(zk_read(1 << 20, buf, sizeof(buf), 0), -EBADF);
	ZT_CHECK_EQ(zk_write(-1, buf, sizeof(buf), 0), -EBADF);
	ZT_CHECK_EQ(zk_fsync(-1), -EBADF);
	ZT_CHECK_EQ(zk_fdatasync(-1), -EBADF);
	ZT_CHECK_EQ(zk_poll(-1, POLLIN), -EBADF);
	/* Reading a write-only fd, writing a read-only fd. */
	int wfd = zk_open(c->path, O_WRONLY | O_CREAT, 0600);
	ZT_CHECK(wfd >= 0);
	ZT_CHECK_EQ(zk_read(wfd, buf, sizeof(buf), 0), -EBADF);
	int rfd = zk_open(c->path, O_RDONLY, 0);
	ZT_CHECK(rfd >= 0);
	ZT_CHECK_EQ(zk_write(rfd, "x", 1, 0), -EBADF);
	/* A directory. */
	int dfd = zk_open(c->dir, O_RDONLY | O_DIRECTORY, 0);
	ZT_CHECK(dfd >= 0);
	ZT_CHECK_EQ(zk_read(dfd, buf, sizeof(buf), 0), -EISDIR);
	/* A bad buffer. */
	ZT_CHECK_EQ(zk_write(wfd, "abc", 3, 0), 3);
	ZT_CHECK_EQ(zk_read(rfd, (void *)(uintptr_t)8, 3, 0), -EFAULT);
	/* fsync of a pipe is EINVAL. */
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	ZT_CHECK_EQ(zk_fsync(p[0]), -EINVAL);
	ZT_CHECK_EQ(zk_close(p[0]), 0);
	ZT_CHECK_EQ(zk_close(p[1]), 0);
	ZT_CHECK_EQ(zk_close(dfd), 0);
	ZT_CHECK_EQ(zk_close(rfd), 0);
	ZT_CHECK_EQ(zk_close(wfd), 0);
	return NULL;
}

Test(fs, io_on_bad_fds_dirs_and_pipes_returns_errno)
{
	struct fsctx c;
	fs_setup(&c, "err");
	run_fs(io_errors, &c, 1);
	zt_rmtree(c.dir);
}

/* Outside a task the file calls run on the calling thread (its own ring or a
 * plain syscall, see fs.h); only zk_poll is for tasks alone. The full
 * foreign-thread suite is tests/test_fs_foreign.c. */
Test(fs, file_calls_outside_a_task_run_on_the_calling_thread_and_poll_is_eperm)
{
	char *dir = zt_tmpdir();
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/x", dir);
	int fd = zk_open(path, O_RDWR | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	char buf[4] = "abc", back[4] = {0};
	struct iovec iov = {back, 3};
	cr_assert_eq(zk_open(NULL, O_RDONLY, 0), -EINVAL);
	cr_assert_eq(zk_write(fd, buf, 3, 0), 3);
	cr_assert_eq(zk_writev(fd, &(struct iovec){buf, 3}, 1, 3), 3);
	cr_assert_eq(zk_read(fd, back, 3, 3), 3);
	cr_assert_str_eq(back, "abc");
	memset(back, 0, sizeof(back));
	cr_assert_eq(zk_readv(fd, &iov, 1, 0), 3);
	cr_assert_str_eq(back, "abc");
	cr_assert_eq(zk_fsync(fd), 0);
	cr_assert_eq(zk_fdatasync(fd), 0);
	cr_assert_eq(zk_poll(fd, POLLIN), -EPERM);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, 6);
	cr_assert_eq(zk_close(fd), 0);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "zk_close closed the fd");
	cr_assert_eq(zk_close(fd), -EBADF);
	zk_fs_thread_release();
	zt_rmtree(dir);
}

/* ---- pipes and poll ---------------------------------------------------------------- */

struct pipes {
	int p[2];
	atomic_long reader_waiting;
};

static void *write_later(void *arg)
{
	struct pipes *ps = arg;
	ZT_CHECK(zt_task_wait_at_least(&ps->reader_waiting, 1, 10000));
	ZT_CHECK_EQ(zk_sleep_ms(30), 0);
	ZT_CHECK_EQ(zk_write(ps->p[1], "ping", 4, -1), 4);
	return NULL;
}

static void *poll_pipe(void *arg)
{
	struct pipes *ps = arg;
	/* An empty pipe is writable at once. */
	int r = zk_poll(ps->p[1], POLLOUT);
	ZT_CHECK(r > 0 && (r & POLLOUT));
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, write_later, ps), 0);
	atomic_store(&ps->reader_waiting, 1);
	uint64_t t0 = zk_now_ns();
	r = zk_poll(ps->p[0], POLLIN);
	ZT_CHECK(r > 0 && (r & POLLIN));
	ZT_CHECK(zk_now_ns() - t0 >= 25 * ZK_NSEC_PER_MSEC); /* it did wait */
	char buf[8];
	ZT_CHECK_EQ(zk_read(ps->p[0], buf, sizeof(buf), -1), 4);
	ZT_CHECK(memcmp(buf, "ping", 4) == 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	/* The write end closed: POLLHUP on the read end. */
	ZT_CHECK_EQ(zk_close(ps->p[1]), 0);
	r = zk_poll(ps->p[0], POLLIN);
	ZT_CHECK(r > 0 && (r & POLLHUP));
	ZT_CHECK_EQ(zk_read(ps->p[0], buf, sizeof(buf), -1), 0);
	ZT_CHECK_EQ(zk_close(ps->p[0]), 0);
	return NULL;
}

Test(fs, poll_waits_until_a_pipe_is_readable)
{
	struct pipes ps = {0};
	cr_assert_eq(pipe2(ps.p, O_CLOEXEC), 0);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, poll_pipe, &ps);
	zk_runtime_free(rt);
}

static void *read_pipe_blocking(void *arg)
{
	struct pipes *ps = arg;
	zk_task_t *h;
	ZT_CHECK_EQ(zk_spawn(&h, write_later, ps), 0);
	atomic_store(&ps->reader_waiting, 1);
	char buf[8];
	uint64_t t0 = zk_now_ns();
	ZT_CHECK_EQ(zk_read(ps->p[0], buf, sizeof(buf), -1), 4);
	ZT_CHECK(zk_now_ns() - t0 >= 25 * ZK_NSEC_PER_MSEC);
	ZT_CHECK(memcmp(buf, "ping", 4) == 0);
	ZT_CHECK_EQ(zk_join(h, NULL), 0);
	return NULL;
}

Test(fs, read_on_an_empty_pipe_suspends_until_data_arrives)
{
	struct pipes ps = {0};
	cr_assert_eq(pipe2(ps.p, O_CLOEXEC), 0);
	/* One worker: the writer can only run if the reader really suspended. */
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, read_pipe_blocking, &ps);
	zk_runtime_free(rt);
	close(ps.p[0]);
	close(ps.p[1]);
}

static void *write_to_broken_pipe(void *arg)
{
	(void)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	ZT_CHECK_EQ(zk_close(p[0]), 0);
	ZT_CHECK_EQ(zk_write(p[1], "x", 1, -1), -EPIPE);
	ZT_CHECK_EQ(zk_close(p[1]), 0);
	return NULL;
}

Test(fs, write_to_a_pipe_without_reader_is_epipe)
{
	/* Like write(2), the kernel may raise SIGPIPE here (only sends are
	 * documented not to): ignore it and check the error. */
	cr_assert_neq(signal(SIGPIPE, SIG_IGN), SIG_ERR);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, write_to_broken_pipe, NULL);
	zk_runtime_free(rt);
}

/* len is capped at 2^31-1, not truncated to 32 bits: a length of 2^32 + 50
 * on a 100-byte file reads all 100 bytes, not 50. */
static void *huge_lengths(void *arg)
{
	struct fsctx *c = arg;
	int fd = zk_open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ZT_CHECK(fd >= 0);
	char data[100];
	zt_fill(data, sizeof(data), 11);
	ZT_CHECK_EQ(zk_write(fd, data, sizeof(data), 0), 100);
	char buf[4096];
	size_t huge = ((size_t)1 << 32) + 50;
	ZT_CHECK_EQ(zk_read(fd, buf, huge, 0), 100);
	ZT_CHECK(memcmp(buf, data, 100) == 0);
	ZT_CHECK_EQ(zk_read(fd, buf, SIZE_MAX, 0), 100);
	ZT_CHECK_EQ(zk_close(fd), 0);
	return NULL;
}

Test(fs, lengths_beyond_int_max_are_capped_not_truncated)
{
	struct fsctx c;
	fs_setup(&c, "huge");
	run_fs(huge_lengths, &c, 1);
	zt_rmtree(c.dir);
}
