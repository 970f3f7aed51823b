/* tests/test_cov2_fs.c — fs.h on foreign threads where the fs suites do not
 * go: a thread that ends holding its ring (freed by the thread-exit
 * destructor), a fork() after the parent thread made its ring (the child
 * makes its own), a read on an empty non-blocking pipe through the ring
 * (waits for readiness on the ring), zk_fs_thread_mode's errors, and a
 * buffer registration from a task with more buffers than a ring takes;
 * zk_direct_align on files that are no disk files, zk_direct_alloc sizes;
 * 1 MiB written into a 64 KiB non-blocking pipe (EAGAIN, wait for room,
 * go on) from a foreign thread in syscall and ring mode and from a task;
 * a foreign ring with a registered file and ops that have no fixed form;
 * read-only memory offered for registration (-EFAULT from the kernel). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov2_fs, .timeout = 60);

/* The ring mode, or false when this machine has no io_uring for us. */
static bool ring_mode(void)
{
	int m = zk_fs_thread_mode(ZK_FS_RING);
	if (m == ZK_FS_RING)
		return true;
	if (m != -ENOSYS && m != -EPERM && m != -ENOMEM)
		zt_fail(__FILE__, __LINE__, "zk_fs_thread_mode(RING) = %d", m);
	return false;
}

/* Writes and reads back 8 KiB at offset 4096 with the fs calls. */
static bool roundtrip(const char *path, unsigned seed)
{
	int fd = zk_open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		return false;
	char out[8192], in[8192];
	zt_fill(out, sizeof(out), seed);
	bool ok = zk_pwrite(fd, out, sizeof(out), 4096) == (ssize_t)sizeof(out);
	ok = ok && zk_fdatasync(fd) == 0;
	ok = ok && zk_pread(fd, in, sizeof(in), 4096) == (ssize_t)sizeof(in);
	ok = ok && memcmp(in, out, sizeof(in)) == 0;
	ok = zk_close(fd) == 0 && ok;
	return ok;
}

struct thr {
	const char *path;
	bool ring;
	bool ok;
};

static void *exit_with_ring(void *arg)
{
	struct thr *t = arg;
	t->ring = ring_mode();
	t->ok = roundtrip(t->path, 3);
	/* No zk_fs_thread_release(): the thread-exit destructor frees it. */
	return NULL;
}

Test(cov2_fs, thread_exits_holding_its_ring)
{
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/a", dir);
	for (int i = 0; i < 3; i++) {
		struct thr t = {.path = path};
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, exit_with_ring, &t), 0);
		cr_assert_eq(pthread_join(th, NULL), 0);
		cr_assert(t.ok, "round trip %d failed (ring %d)", i, t.ring);
	}
	zt_assert_no_failures();
	zt_rmtree(dir);
}

Test(cov2_fs, fork_after_the_ring_was_made)
{
	char *dir = zt_tmpdir();
	char path[256], cpath[256];
	snprintf(path, sizeof(path), "%s/parent", dir);
	snprintf(cpath, sizeof(cpath), "%s/child", dir);
	bool ring = ring_mode();
	cr_assert(roundtrip(path, 1));
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* The child forgot the parent's ring; its calls make a new one. */
		bool ok = roundtrip(cpath, 2);
		if (ring)
			ok = ok && zk_fs_thread_mode(ZK_FS_RING) == ZK_FS_RING;
		ok = ok && roundtrip(cpath, 4);
		_exit(ok ? 0 : 1);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	/* The parent's ring still works. */
	cr_assert(roundtrip(path, 5));
	zk_fs_thread_release();
	zk_fs_thread_release(); /* nothing left: a no-op */
	cr_assert(roundtrip(path, 6)); /* a new ring (or the syscalls) */
	zt_assert_no_failures();
	zt_rmtree(dir);
}

struct piper {
	int rfd, wfd;
	atomic_long reading;
	ssize_t res;
	char got[4];
};

static void *ring_pipe_reader(void *arg)
{
	struct piper *p = arg;
	ring_mode();
	atomic_store(&p->reading, 1);
	p->res = zk_read(p->rfd, p->got, sizeof(p->got), -1);
	return NULL;
}

Test(cov2_fs, ring_read_on_an_empty_nonblocking_pipe_waits)
{
	struct piper p = {.res = 99};
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
	p.rfd = pfd[0];
	p.wfd = pfd[1];
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, ring_pipe_reader, &p), 0);
	cr_assert(zt_wait_at_least(&p.reading, 1, 10000));
	/* Whether the reader is already waiting or not, it gets these. */
	cr_assert_eq(write(p.wfd, "pipe", 4), 4);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(p.res, 4);
	cr_assert_eq(memcmp(p.got, "pipe", 4), 0);
	close(pfd[0]);
	close(pfd[1]);
	zt_assert_no_failures();
}

static void *mode_in_task(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_fs_thread_mode(ZK_FS_RING), -EPERM);
	ZT_CHECK_EQ(zk_fs_thread_mode(ZK_FS_SYSCALL), -EPERM);
	return NULL;
}

Test(cov2_fs, thread_mode_errors)
{
	cr_assert_eq(zk_fs_thread_mode(12345), -EINVAL);
	cr_assert_eq(zk_fs_thread_mode(-1), -EINVAL);
	cr_assert_eq(zk_fs_thread_mode(ZK_FS_SYSCALL), ZK_FS_SYSCALL);
	/* Syscall mode has no ring to register with. */
	char buf[64];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	cr_assert_eq(zk_fs_register_buffers(&iov, 1), -EOPNOTSUPP);
	int m = zk_fs_thread_mode(ZK_FS_AUTO);
	cr_assert(m == ZK_FS_RING || m == ZK_FS_SYSCALL, "%d", m);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, mode_in_task, NULL);
	zk_runtime_free(rt);
}

#define TOO_MANY (UINT16_MAX + 1u)

static void *register_too_many(void *arg)
{
	struct iovec *iov = arg;
	int r = zk_fs_register_buffers(iov, TOO_MANY);
	const char *be = zk_runtime_backend(zk_runtime_current());
	if (strcmp(be, "io_uring") == 0)
		ZT_CHECK_EQ(r, -EINVAL);
	else
		ZT_CHECK(r == -EOPNOTSUPP || r == -EINVAL);
	/* And nothing was registered: a plain read still works. */
	int pfd[2];
	ZT_CHECK_EQ(pipe2(pfd, O_CLOEXEC), 0);
	ZT_CHECK_EQ(write(pfd[1], "k", 1), 1);
	char c = 0;
	ZT_CHECK_EQ(zk_read(pfd[0], &c, 1, -1), 1);
	ZT_CHECK_EQ(c, 'k');
	close(pfd[0]);
	close(pfd[1]);
	return NULL;
}

Test(cov2_fs, register_more_buffers_than_a_ring_takes)
{
	static char page[64];
	struct iovec *iov = calloc(TOO_MANY, sizeof(*iov));
	cr_assert_not_null(iov);
	for (unsigned i = 0; i < TOO_MANY; i++)
		iov[i] = (struct iovec){.iov_base = page, .iov_len = sizeof(page)};
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, register_too_many, iov);
	zk_runtime_free(rt);
	free(iov);
}

/* ---- O_DIRECT helpers ------------------------------------------------------------------------ */

static bool pow2(size_t v)
{
	return v && (v & (v - 1)) == 0;
}

Test(cov2_fs, direct_align_of_files_that_are_no_disk_files)
{
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	int fds[] = {pfd[0], open("/dev/null", O_RDONLY | O_CLOEXEC),
		     open("/proc/self/stat", O_RDONLY | O_CLOEXEC)};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		cr_assert_geq(fds[i], 0);
		size_t mem = 0, io = 0;
		int r = zk_direct_align(fds[i], &mem, &io);
		cr_assert(r == 0 || r == -EOPNOTSUPP, "fd %zu: %d", i, r);
		if (r == 0)
			cr_assert(pow2(mem) && pow2(io), "fd %zu: %zu %zu", i, mem, io);
		cr_assert(zk_direct_align(fds[i], NULL, NULL) == r);
		close(fds[i]);
	}
	close(pfd[1]);
	cr_assert_eq(zk_direct_align(pfd[1], NULL, NULL), -EBADF); /* closed now */
}

Test(cov2_fs, direct_alloc_sizes)
{
	/* Zero bytes: one aligned block. */
	void *p = zk_direct_alloc(0, 0);
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % 4096, 0);
	memset(p, 1, 4096);
	zk_direct_free(p);
	p = zk_direct_alloc(0, 512);
	cr_assert_not_null(p);
	cr_assert_eq((uintptr_t)p % 512, 0);
	memset(p, 1, 512);
	zk_direct_free(p);
	cr_assert_null(zk_direct_alloc(100, 3));
	cr_assert_null(zk_direct_alloc(100, 2)); /* below sizeof(void *) */
	cr_assert_null(zk_direct_alloc(SIZE_MAX - 10, 4096));
	zk_direct_free(NULL);
}

/* ---- registered files on a foreign thread's ring ------------------------------------------- */

struct regf {
	const char *path;
	bool ring;
};

static void *registered_file_ops(void *arg)
{
	struct regf *rf = arg;
	rf->ring = ring_mode();
	if (!rf->ring)
		return NULL;
	int fd = zk_open(rf->path, O_RDWR | O_CREAT, 0600);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_fs_register_files(NULL, 1), -EINVAL);
	ZT_CHECK_EQ(zk_fs_register_files(&fd, 1), 0);
	char out[4096], in[4096];
	zt_fill(out, sizeof(out), 9);
	ZT_CHECK_EQ(zk_pwrite(fd, out, sizeof(out), 0), (ssize_t)sizeof(out));
	/* Ops with no fixed-file form go through the ring by fd. */
	ZT_CHECK_EQ(zk_ftruncate(fd, 8192), 0);
	struct statx sx;
	ZT_CHECK_EQ(zk_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx), 0);
	ZT_CHECK_EQ(sx.stx_size, 8192);
	ZT_CHECK_EQ(zk_pread(fd, in, sizeof(in), 0), (ssize_t)sizeof(in));
	ZT_CHECK(memcmp(in, out, sizeof(in)) == 0);
	ZT_CHECK_EQ(zk_poll(fd, POLLIN), -EPERM); /* tasks only */
	/* More buffers than a ring takes. */
	static char page[64];
	struct iovec *iov = calloc(UINT16_MAX + 1u, sizeof(*iov));
	for (unsigned i = 0; i <= UINT16_MAX; i++)
		iov[i] = (struct iovec){.iov_base = page, .iov_len = sizeof(page)};
	ZT_CHECK_EQ(zk_fs_register_buffers(iov, UINT16_MAX + 1u), -EINVAL);
	free(iov);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_fs_register_files(NULL, 0), 0);
	zk_fs_thread_release();
	return NULL;
}

Test(cov2_fs, registered_file_with_ops_that_have_no_fixed_form)
{
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/r", dir);
	struct regf rf = {.path = path};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, registered_file_ops, &rf), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	zt_assert_no_failures();
	zt_rmtree(dir);
}

/* ---- writes into a full non-blocking pipe ----------------------------------------------------- */

#define PIPE_BYTES (1u << 20)

struct pipe_copy {
	int rfd, wfd;
	int mode; /* ZK_FS_SYSCALL or ZK_FS_RING, for a foreign writer */
	unsigned char *src;
	ssize_t wrote;
	size_t got;
	bool same;
};

/* A plain thread drains the pipe and compares. */
static void *pipe_drain(void *arg)
{
	struct pipe_copy *pc = arg;
	unsigned char *dst = malloc(PIPE_BYTES);
	while (pc->got < PIPE_BYTES) {
		struct pollfd p = {.fd = pc->rfd, .events = POLLIN};
		if (poll(&p, 1, 20000) != 1)
			break;
		ssize_t n = read(pc->rfd, dst + pc->got, PIPE_BYTES - pc->got);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		pc->got += (size_t)n;
	}
	pc->same = pc->got == PIPE_BYTES && memcmp(dst, pc->src, PIPE_BYTES) == 0;
	free(dst);
	return NULL;
}

/* 1 MiB into a 64 KiB non-blocking pipe: the write fills it, gets EAGAIN,
 * waits for room and goes on until all is written. */
static void *pipe_writer(void *arg)
{
	struct pipe_copy *pc = arg;
	if (pc->mode && zk_fs_thread_mode(pc->mode) != pc->mode) {
		pc->wrote = -ENOSYS; /* no ring here */
		return NULL;
	}
	/* zk_write (fs.h) works on any thread; zk_write_all (net.h) only
	 * in tasks. */
	size_t done = 0;
	while (done < PIPE_BYTES) {
		ssize_t n = zk_write(pc->wfd, pc->src + done, PIPE_BYTES - done, -1);
		if (n <= 0) {
			pc->wrote = n < 0 ? n : -EIO;
			return NULL;
		}
		done += (size_t)n;
	}
	pc->wrote = (ssize_t)done;
	return NULL;
}

static void pipe_copy_run(int mode, zk_runtime_t *rt)
{
	struct pipe_copy pc = {.mode = mode};
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
	pc.rfd = pfd[0];
	pc.wfd = pfd[1];
	pc.src = malloc(PIPE_BYTES);
	zt_fill(pc.src, PIPE_BYTES, 11);
	pthread_t dr, wr;
	cr_assert_eq(pthread_create(&dr, NULL, pipe_drain, &pc), 0);
	if (rt) {
		zt_run(rt, pipe_writer, &pc);
	} else {
		cr_assert_eq(pthread_create(&wr, NULL, pipe_writer, &pc), 0);
		pthread_join(wr, NULL);
	}
	pthread_join(dr, NULL);
	if (pc.wrote != -ENOSYS) {
		cr_assert_eq(pc.wrote, (ssize_t)PIPE_BYTES, "mode %d: wrote %zd", mode, pc.wrote);
		cr_assert(pc.same, "mode %d: %zu bytes arrived, or not the ones sent", mode, pc.got);
	}
	close(pfd[0]);
	close(pfd[1]);
	free(pc.src);
}

Test(cov2_fs, write_all_into_a_full_nonblocking_pipe)
{
	pipe_copy_run(ZK_FS_SYSCALL, NULL);
	pipe_copy_run(ZK_FS_RING, NULL);
	zk_runtime_t *rt = zt_runtime(1);
	pipe_copy_run(0, rt);
	zk_runtime_free(rt);
}

/* ---- a registration the kernel refuses ----------------------------------------------------------- */

static void *register_read_only(void *arg)
{
	void *ro = arg;
	struct iovec iov = {.iov_base = ro, .iov_len = 4096};
	if (zk_task_id() == 0 && !ring_mode())
		return NULL;
	int r = zk_fs_register_buffers(&iov, 1);
	const char *be = zk_task_id() ? zk_runtime_backend(zk_runtime_current()) : "io_uring";
	/* The kernel pins registered buffers for writing: read-only memory
	 * is refused. */
	if (strcmp(be, "io_uring") == 0)
		ZT_CHECK_EQ(r, -EFAULT);
	else if (strcmp(be, "epoll") == 0)
		ZT_CHECK_EQ(r, -EOPNOTSUPP);
	else /* fault injection: as the backend it wraps */
		ZT_CHECK(r == -EFAULT || r == -EOPNOTSUPP);
	/* Nothing stays registered: reads still work. */
	int pfd[2];
	ZT_CHECK_EQ(pipe2(pfd, O_CLOEXEC), 0);
	ZT_CHECK_EQ(write(pfd[1], "r", 1), 1);
	char c = 0;
	ZT_CHECK_EQ(zk_read(pfd[0], &c, 1, -1), 1);
	ZT_CHECK_EQ(c, 'r');
	close(pfd[0]);
	close(pfd[1]);
	return NULL;
}

Test(cov2_fs, registering_read_only_memory_is_efault)
{
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(ro, MAP_FAILED);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, register_read_only, ro), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, register_read_only, ro);
	zk_runtime_free(rt);
	zt_assert_no_failures();
	munmap(ro, 4096);
}
