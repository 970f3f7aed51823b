/* tests/test_fs_ops.c — the storage-engine calls of fs.h (zk_pread/pwrite/
 * preadv/pwritev, sync_file_range, fallocate, ftruncate, statx, renameat,
 * unlinkat, mkdirat) and their errors, each run three ways: in a task, on a
 * foreign thread through its own ring, and on a foreign thread in syscall
 * mode. Real files in a temp dir. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(fs_ops, .timeout = 60);

enum how { IN_TASK, FOREIGN_RING, FOREIGN_SYSCALL };

struct octx {
	char *dir;
	int dfd;
	void (*body)(struct octx *);
};

static void *task_body(void *arg)
{
	struct octx *c = arg;
	c->body(c);
	return NULL;
}

static void *thread_body(void *arg)
{
	struct octx *c = arg;
	c->body(c);
	zk_fs_thread_release();
	return NULL;
}

static void *thread_ring(void *arg)
{
	int m = zk_fs_thread_mode(ZK_FS_RING);
	ZT_CHECK_EQ(m, ZK_FS_RING);
	if (m == ZK_FS_RING)
		thread_body(arg);
	return NULL;
}

static void *thread_syscall(void *arg)
{
	ZT_CHECK_EQ(zk_fs_thread_mode(ZK_FS_SYSCALL), ZK_FS_SYSCALL);
	return thread_body(arg);
}

static void run_how(void (*body)(struct octx *), enum how how)
{
	struct octx c = {.dir = zt_tmpdir(), .body = body};
	c.dfd = open(c.dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(c.dfd, 0);
	if (how == IN_TASK) {
		zk_runtime_t *rt = zt_runtime(1);
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
	Test(fs_ops, name##_in_a_task) { run_how(body, IN_TASK); }               \
	Test(fs_ops, name##_on_a_foreign_ring) { run_how(body, FOREIGN_RING); }  \
	Test(fs_ops, name##_on_a_foreign_thread_with_syscalls) { run_how(body, FOREIGN_SYSCALL); }

static int open_in(struct octx *c, const char *name, int flags)
{
	int fd = zk_openat(c->dfd, name, flags, 0600);
	ZT_CHECK(fd >= 0);
	return fd;
}

/* ---- pread/pwrite family ------------------------------------------------------ */

static void posix_rw(struct octx *c)
{
	int fd = open_in(c, "rw", O_RDWR | O_CREAT | O_TRUNC);
	char out[8192], in[8192];
	zt_fill(out, sizeof(out), 7);
	ZT_CHECK_EQ(zk_pwrite(fd, out, 4096, 4096), 4096);
	ZT_CHECK_EQ(zk_pwrite(fd, out + 4096, 4096, 0), 4096);
	struct iovec iov[2] = {{in + 4096, 4096}, {in, 4096}};
	ZT_CHECK_EQ(zk_preadv(fd, iov, 2, 0), 8192);
	ZT_CHECK(memcmp(in, out, sizeof(in)) == 0);
	struct iovec wv[2] = {{out, 100}, {out + 100, 200}};
	ZT_CHECK_EQ(zk_pwritev(fd, wv, 2, 8192), 300);
	memset(in, 0, sizeof(in));
	ZT_CHECK_EQ(zk_pread(fd, in, sizeof(in), 8192), 300); /* short at EOF */
	ZT_CHECK(memcmp(in, out, 300) == 0);
	ZT_CHECK_EQ(zk_pread(fd, in, 10, 1 << 20), 0);
	/* POSIX arguments: a negative offset is -EINVAL, not "the position". */
	ZT_CHECK_EQ(zk_pread(fd, in, 10, -1), -EINVAL);
	ZT_CHECK_EQ(zk_pwrite(fd, in, 10, -1), -EINVAL);
	ZT_CHECK_EQ(zk_preadv(fd, iov, 2, -5), -EINVAL);
	ZT_CHECK_EQ(zk_pwritev(fd, wv, 2, -5), -EINVAL);
	ZT_CHECK_EQ(zk_preadv(fd, iov, 0, 0), -EINVAL);
	ZT_CHECK_EQ(zk_pread(-1, in, 10, 0), -EBADF);
	ZT_CHECK_EQ(zk_pwrite(-1, in, 10, 0), -EBADF);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* A read-only fd refuses writes; a directory refuses reads. */
	fd = open_in(c, "rw", O_RDONLY);
	ZT_CHECK_EQ(zk_pwrite(fd, out, 10, 0), -EBADF);
	ZT_CHECK_EQ(zk_close(fd), 0);
	ZT_CHECK_EQ(zk_pread(c->dfd, in, 10, 0), -EISDIR);
}
THREE_WAYS(pread_pwrite_preadv_pwritev_round_trip_and_report_errors, posix_rw)

/* ---- sync_file_range, fallocate, ftruncate ------------------------------------------ */

static void size_ops(struct octx *c)
{
	int fd = open_in(c, "sz", O_RDWR | O_CREAT | O_TRUNC);
	struct stat st;
	ZT_CHECK_EQ(zk_fallocate(fd, 0, 0, 1 << 20), 0);
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 1 << 20);
	ZT_CHECK(st.st_blocks * 512 >= (1 << 20));
	/* KEEP_SIZE allocates beyond EOF without growing the file. */
	ZT_CHECK_EQ(zk_fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20), 0);
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 1 << 20);
	/* A punched hole reads back as zeros. */
	char buf[4096];
	memset(buf, 0xab, sizeof(buf));
	ZT_CHECK_EQ(zk_pwrite(fd, buf, sizeof(buf), 65536), 4096);
	ZT_CHECK_EQ(zk_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 4096),
		    0);
	ZT_CHECK_EQ(zk_pread(fd, buf, sizeof(buf), 65536), 4096);
	bool zero = true;
	for (size_t i = 0; i < sizeof(buf); i++)
		zero = zero && buf[i] == 0;
	ZT_CHECK(zero);
	ZT_CHECK_EQ(zk_fallocate(fd, 0, 0, 0), -EINVAL);
	ZT_CHECK_EQ(zk_fallocate(fd, 0, -1, 10), -EINVAL);
	ZT_CHECK_EQ(zk_fallocate(-1, 0, 0, 10), -EBADF);

	memset(buf, 0x5a, sizeof(buf));
	ZT_CHECK_EQ(zk_pwrite(fd, buf, sizeof(buf), 0), 4096);
	ZT_CHECK_EQ(zk_sync_file_range(fd, 0, 4096,
				       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					   SYNC_FILE_RANGE_WAIT_AFTER),
		    0);
	ZT_CHECK_EQ(zk_sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE), 0);
	/* Longer than io_uring's 32-bit length: done in pieces. */
	ZT_CHECK_EQ(zk_sync_file_range(fd, 0, (off_t)5 << 30, SYNC_FILE_RANGE_WRITE), 0);
	ZT_CHECK_EQ(zk_sync_file_range(fd, -1, 10, SYNC_FILE_RANGE_WRITE), -EINVAL);
	ZT_CHECK_EQ(zk_sync_file_range(fd, 0, 10, 0x100), -EINVAL);
	ZT_CHECK_EQ(zk_sync_file_range(-1, 0, 10, SYNC_FILE_RANGE_WRITE), -EBADF);

	ZT_CHECK_EQ(zk_ftruncate(fd, 12345), 0);
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 12345);
	ZT_CHECK_EQ(zk_ftruncate(fd, 3 << 20), 0);
	ZT_CHECK_EQ(fstat(fd, &st), 0);
	ZT_CHECK_EQ(st.st_size, 3 << 20);
	ZT_CHECK_EQ(zk_ftruncate(fd, -1), -EINVAL);
	ZT_CHECK_EQ(zk_ftruncate(-1, 0), -EBADF);
	ZT_CHECK_EQ(zk_close(fd), 0);
	fd = open_in(c, "sz", O_RDONLY);
	ZT_CHECK(zk_ftruncate(fd, 0) == -EINVAL || zk_ftruncate(fd, 0) == -EBADF);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* Pipes have no blocks or ranges. */
	int p[2];
	ZT_CHECK_EQ(pipe(p), 0);
	ZT_CHECK_EQ(zk_sync_file_range(p[1], 0, 10, SYNC_FILE_RANGE_WRITE), -ESPIPE);
	ZT_CHECK_EQ(zk_fallocate(p[1], 0, 0, 10), -ESPIPE);
	close(p[0]);
	close(p[1]);
}
THREE_WAYS(fallocate_sync_file_range_and_ftruncate_change_the_file, size_ops)

/* ---- statx, mkdirat, renameat, unlinkat ------------------------------------------------ */

static void dir_ops(struct octx *c)
{
	struct statx sx;
	ZT_CHECK_EQ(zk_mkdirat(c->dfd, "sub", 0700), 0);
	ZT_CHECK_EQ(zk_mkdirat(c->dfd, "sub", 0700), -EEXIST);
	ZT_CHECK_EQ(zk_mkdirat(c->dfd, "no/such", 0700), -ENOENT);
	ZT_CHECK_EQ(zk_mkdirat(c->dfd, NULL, 0700), -EINVAL);
	ZT_CHECK_EQ(zk_statx(c->dfd, "sub", 0, STATX_TYPE | STATX_MODE, &sx), 0);
	ZT_CHECK(S_ISDIR(sx.stx_mode));
	ZT_CHECK_EQ(sx.stx_mode & 0777, 0700);

	int fd = open_in(c, "sub/f", O_RDWR | O_CREAT | O_EXCL);
	ZT_CHECK_EQ(zk_pwrite(fd, "hello", 5, 0), 5);
	ZT_CHECK_EQ(zk_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE | STATX_TYPE, &sx), 0);
	ZT_CHECK(S_ISREG(sx.stx_mode));
	ZT_CHECK_EQ(sx.stx_size, 5);
	ZT_CHECK_EQ(zk_statx(c->dfd, "sub/missing", 0, STATX_SIZE, &sx), -ENOENT);
	ZT_CHECK_EQ(zk_statx(c->dfd, "sub/f/x", 0, STATX_SIZE, &sx), -ENOTDIR);
	ZT_CHECK_EQ(zk_statx(-1, "", AT_EMPTY_PATH, STATX_SIZE, &sx), -EBADF);
	ZT_CHECK_EQ(zk_statx(c->dfd, NULL, 0, STATX_SIZE, &sx), -EINVAL);
	ZT_CHECK_EQ(zk_statx(c->dfd, "sub", 0, STATX_SIZE, NULL), -EINVAL);

	/* rename into place, the storage engine's atomic publish. */
	ZT_CHECK_EQ(zk_renameat(c->dfd, "sub/f", c->dfd, "g"), 0);
	ZT_CHECK_EQ(zk_statx(c->dfd, "sub/f", 0, STATX_SIZE, &sx), -ENOENT);
	ZT_CHECK_EQ(zk_statx(c->dfd, "g", 0, STATX_SIZE, &sx), 0);
	ZT_CHECK_EQ(sx.stx_size, 5);
	ZT_CHECK_EQ(zk_renameat(c->dfd, "nothing", c->dfd, "x"), -ENOENT);
	ZT_CHECK_EQ(zk_renameat(c->dfd, NULL, c->dfd, "x"), -EINVAL);
	int fd2 = open_in(c, "h", O_RDWR | O_CREAT | O_EXCL);
	ZT_CHECK_EQ(zk_renameat2(c->dfd, "g", c->dfd, "h", RENAME_NOREPLACE), -EEXIST);
	ZT_CHECK_EQ(zk_renameat2(c->dfd, "g", c->dfd, "h", RENAME_EXCHANGE), 0);
	ZT_CHECK_EQ(zk_statx(c->dfd, "h", 0, STATX_SIZE, &sx), 0);
	ZT_CHECK_EQ(sx.stx_size, 5);
	ZT_CHECK_EQ(zk_renameat(c->dfd, "h", c->dfd, "sub"), -EISDIR);

	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "sub", 0), -EISDIR);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "g", AT_REMOVEDIR), -ENOTDIR);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "g", 0), 0);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "g", 0), -ENOENT);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, NULL, 0), -EINVAL);
	int fd3 = open_in(c, "sub/keep", O_RDWR | O_CREAT);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "sub", AT_REMOVEDIR), -ENOTEMPTY);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "sub/keep", 0), 0);
	ZT_CHECK_EQ(zk_unlinkat(c->dfd, "sub", AT_REMOVEDIR), 0);
	ZT_CHECK_EQ(zk_statx(c->dfd, "sub", 0, STATX_TYPE, &sx), -ENOENT);
	/* The open fd still works after its name went away. */
	ZT_CHECK_EQ(zk_pwrite(fd3, "x", 1, 0), 1);
	ZT_CHECK_EQ(zk_close(fd3), 0);
	ZT_CHECK_EQ(zk_close(fd2), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
}
THREE_WAYS(statx_mkdirat_renameat_unlinkat_work_and_report_errors, dir_ops)

/* ---- ENOSPC on a tiny file system --------------------------------------------------- */

/* A full filesystem: a 1 MiB tmpfs if we may mount one, else skipped. */
static void enospc(struct octx *c)
{
	int fd = open_in(c, "full/f", O_RDWR | O_CREAT | O_TRUNC);
	static char buf[256 * 1024];
	ssize_t r = 0;
	for (int i = 0; i < 16 && r >= 0; i++)
		r = zk_pwrite(fd, buf, sizeof(buf), (int64_t)i * (int64_t)sizeof(buf));
	ZT_CHECK_EQ(r, -ENOSPC);
	ZT_CHECK_EQ(zk_fallocate(fd, 0, 0, 64 << 20), -ENOSPC);
	ZT_CHECK_EQ(zk_close(fd), 0);
}

static void run_enospc(enum how how)
{
	char *dir = zt_tmpdir();
	char mnt[PATH_MAX];
	snprintf(mnt, sizeof(mnt), "%s/full", dir);
	cr_assert_eq(mkdir(mnt, 0700), 0);
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "mount -t tmpfs -o size=1m zkfull '%s' 2>/dev/null", mnt);
	if (system(cmd) != 0) {
		zt_rmtree(dir);
		cr_skip_test("cannot mount a small tmpfs here");
	}
	struct octx c = {.dir = dir, .body = enospc};
	c.dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (how == IN_TASK) {
		zk_runtime_t *rt = zt_runtime(1);
		zt_run(rt, task_body, &c);
		zk_runtime_free(rt);
	} else {
		pthread_t th;
		pthread_create(&th, NULL, how == FOREIGN_RING ? thread_ring : thread_syscall, &c);
		pthread_join(th, NULL);
	}
	close(c.dfd);
	snprintf(cmd, sizeof(cmd), "umount '%s'", mnt);
	cr_assert_eq(system(cmd), 0);
	zt_rmtree(dir);
	zt_assert_no_failures();
}

Test(fs_ops, a_full_filesystem_is_enospc_in_a_task) { run_enospc(IN_TASK); }
Test(fs_ops, a_full_filesystem_is_enospc_on_a_foreign_ring) { run_enospc(FOREIGN_RING); }
Test(fs_ops, a_full_filesystem_is_enospc_with_syscalls) { run_enospc(FOREIGN_SYSCALL); }
