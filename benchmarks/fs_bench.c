/* benchmarks/fs_bench.c — Zokio's side of the file benchmarks (zk-fs-bench).
 * The peer is fio (engines io_uring and psync) on the same file with the
 * same block size, queue depth and duration; benchmarks/run runs both.
 *
 *   zk-fs-bench --file F --rw randread|read|write [--bs B] [--qd Q] [--direct]
 *               [--workers W] [--warmup-ms MS] [--duration-ms MS] [--passes N]
 *               [--from task|foreign|foreign-ring|plain] [--threads T] [--sync]
 *   zk-fs-bench --file F --probe-direct
 *
 * --from says who issues the I/O: `task` (the default) as below; `foreign`:
 * T plain threads (--threads, default 1) calling Zokio's file API outside
 * any runtime (each thread's private ring, fs.h), each keeping --qd I/Os in
 * flight as one zk_fs_batch of qd requests after another (qd 1: zk_pread /
 * zk_pwrite); `foreign-ring`: the same with every call through the ring
 * (zk_fs_thread_mode(ZK_FS_RING): no RWF_NOWAIT read shortcut); `plain`:
 * T threads calling pread/pwrite themselves (qd 1 only), the baseline for
 * the foreign-thread overhead. --sync (write only)
 * makes every write durable before the next: write then fdatasync (a linked
 * pair in one batch from foreign threads), like fio --fdatasync=1.
 *
 * The queue depth is the number of tasks: each task keeps one zk_read (or
 * zk_write) in flight at a time, at a random block-aligned offset (randread)
 * or at the next block of one cursor shared by all tasks (read, write: the
 * file is walked in order and wraps at its end), as fio keeps iodepth I/Os in
 * flight. Like fio's ramp_time, the warm-up is run but not counted. With
 * --passes N (read, write) the run is sized instead of timed, like fio
 * without time_based: the file is walked N times, no warm-up, and the time
 * is from the first submission to the last completion; sized writes bound
 * what a benchmark writes to a shared disk. Prints
 *   iops=<x> mib_per_sec=<x>
 * With --direct the file is opened O_DIRECT and the buffers are page-aligned;
 * if the filesystem refuses O_DIRECT (EINVAL) it prints "direct=unsupported"
 * and exits with status 3, which the runner reports instead of a figure.
 * --probe-direct only checks that. The file must exist; its size bounds the
 * offsets. Nothing is dropped from the page cache: buffered figures are of
 * whatever part of the file is cached (the runner says how much). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "zokio/zokio.h"

enum rw { RW_RANDREAD, RW_READ, RW_WRITE };

#define MAX_QD 1024

static int fd;
static enum rw rw;
static size_t bs = 4096;
static uint64_t nblocks;
static unsigned qd = 1;
static unsigned warmup_ms = 300, duration_ms = 2000;
/* Sized run: the number of blocks to transfer in all, 0 for a timed run. */
static uint64_t sized_blocks;

enum from { FROM_TASK, FROM_FOREIGN, FROM_PLAIN };
static enum from from = FROM_TASK;
static unsigned nthreads = 1;
static bool sync_each;
/* --from foreign-ring: ZK_FS_RING, every call through the ring (no
 * RWF_NOWAIT read shortcut), to measure the ring itself. */
static bool foreign_ring_only;

static _Atomic bool stop;
/* The next block of the sequential walk. */
static _Atomic uint64_t cursor;
/* First error a task hit (a negative errno), 0 if none. */
static _Atomic int first_error;

struct job {
	_Atomic uint64_t ops; /* completed I/Os; written by its task only */
	uint64_t rng;
	void *buf;
};

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *io_task(void *arg)
{
	struct job *j = arg;
	uint64_t ops = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t blk;
		if (rw == RW_RANDREAD) {
			blk = xorshift(&j->rng) % nblocks;
		} else {
			blk = atomic_fetch_add_explicit(&cursor, 1, memory_order_relaxed);
			if (sized_blocks && blk >= sized_blocks)
				break;
			blk %= nblocks;
		}
		int64_t off = (int64_t)(blk * bs);
		ssize_t n = rw == RW_WRITE ? zk_write(fd, j->buf, bs, off)
					   : zk_read(fd, j->buf, bs, off);
		if (n == (ssize_t)bs && sync_each && zk_fdatasync(fd) < 0)
			n = -EIO;
		if (n != (ssize_t)bs) {
			int expected = 0;
			atomic_compare_exchange_strong(&first_error, &expected,
						       n < 0 ? (int)n : -EIO);
			break;
		}
		atomic_store_explicit(&j->ops, ++ops, memory_order_relaxed);
	}
	return NULL;
}

/* Next block for the walk; false when a sized run is done. */
static bool next_block(struct job *j, uint64_t *blk)
{
	if (rw == RW_RANDREAD) {
		*blk = xorshift(&j->rng) % nblocks;
		return true;
	}
	uint64_t b = atomic_fetch_add_explicit(&cursor, 1, memory_order_relaxed);
	if (sized_blocks && b >= sized_blocks)
		return false;
	*blk = b % nblocks;
	return true;
}

static void note_error(ssize_t n)
{
	int expected = 0;
	atomic_compare_exchange_strong(&first_error, &expected, n < 0 ? (int)n : -EIO);
}

/* --from plain: pread/pwrite (+ fdatasync) on this thread. */
static void *plain_thread(void *arg)
{
	struct job *j = arg;
	uint64_t ops = 0, blk;
	while (!atomic_load_explicit(&stop, memory_order_relaxed) && next_block(j, &blk)) {
		off_t off = (off_t)(blk * bs);
		ssize_t n = rw == RW_WRITE ? pwrite(fd, j->buf, bs, off) : pread(fd, j->buf, bs, off);
		if (n == (ssize_t)bs && sync_each && fdatasync(fd) != 0)
			n = -1;
		if (n != (ssize_t)bs) {
			note_error(n < 0 ? -errno : n);
			break;
		}
		atomic_store_explicit(&j->ops, ++ops, memory_order_relaxed);
	}
	return NULL;
}

/* --from foreign: Zokio's file API from a plain thread; qd I/Os per batch
 * (each write linked to its fdatasync with --sync). */
static void *foreign_thread(void *arg)
{
	struct job *j = arg;
	uint64_t ops = 0, blk;
	struct zk_fs_req *reqs = calloc(2 * (size_t)qd, sizeof(*reqs));
	if (!reqs) {
		note_error(-ENOMEM);
		return NULL;
	}
	if (foreign_ring_only && zk_fs_thread_mode(ZK_FS_RING) != ZK_FS_RING) {
		note_error(-ENOSYS);
		free(reqs);
		return NULL;
	}
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (qd == 1 && !sync_each) {
			if (!next_block(j, &blk))
				break;
			int64_t off = (int64_t)(blk * bs);
			ssize_t n = rw == RW_WRITE ? zk_pwrite(fd, j->buf, bs, off)
						   : zk_pread(fd, j->buf, bs, off);
			if (n != (ssize_t)bs) {
				note_error(n);
				break;
			}
			atomic_store_explicit(&j->ops, ++ops, memory_order_relaxed);
			continue;
		}
		unsigned n = 0, ios = 0;
		for (unsigned i = 0; i < qd && next_block(j, &blk); i++, ios++) {
			char *buf = (char *)j->buf + (size_t)i * bs;
			if (rw == RW_WRITE)
				zk_fs_prep_write(&reqs[n], fd, buf, bs, (int64_t)(blk * bs));
			else
				zk_fs_prep_read(&reqs[n], fd, buf, bs, (int64_t)(blk * bs));
			if (sync_each) {
				reqs[n].flags = ZK_FS_LINK;
				zk_fs_prep_fsync(&reqs[++n], fd, 1);
			}
			n++;
		}
		if (ios == 0)
			break;
		int r = zk_fs_batch(reqs, n, NULL, NULL);
		for (unsigned i = 0; r == 0 && i < n; i++)
			if (reqs[i].res < 0 || (reqs[i].opcode != ZK_FS_FDATASYNC &&
						reqs[i].res != (ssize_t)bs))
				r = reqs[i].res < 0 ? (int)reqs[i].res : -EIO;
		if (r != 0) {
			note_error(r);
			break;
		}
		ops += ios;
		atomic_store_explicit(&j->ops, ops, memory_order_relaxed);
	}
	free(reqs);
	zk_fs_thread_release();
	return NULL;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t total_ops(struct job *jobs);

/* Drives --from foreign|plain: nthreads threads, timed like the tasks. */
static double run_threads(struct job *jobs)
{
	pthread_t th[MAX_QD];
	void *(*fn)(void *) = from == FROM_PLAIN ? plain_thread : foreign_thread;
	uint64_t t0 = mono_ns();
	for (unsigned i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, fn, &jobs[i]) != 0) {
			fprintf(stderr, "zk-fs-bench: pthread_create failed\n");
			exit(1);
		}
	double iops;
	if (sized_blocks) {
		for (unsigned i = 0; i < nthreads; i++)
			pthread_join(th[i], NULL);
		iops = (double)total_ops(jobs) * 1e9 / (double)(mono_ns() - t0);
		return iops;
	}
	sleep_ms(warmup_ms);
	t0 = mono_ns();
	uint64_t ops0 = total_ops(jobs);
	sleep_ms(duration_ms);
	uint64_t t1 = mono_ns(), ops1 = total_ops(jobs);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	return (double)(ops1 - ops0) * 1e9 / (double)(t1 - t0);
}

static uint64_t total_ops(struct job *jobs)
{
	uint64_t sum = 0;
	unsigned n = from == FROM_TASK ? qd : nthreads;
	for (unsigned i = 0; i < n; i++)
		sum += atomic_load_explicit(&jobs[i].ops, memory_order_relaxed);
	return sum;
}

static double result_iops;

static void *driver(void *arg)
{
	struct job *jobs = arg;
	zk_task_t *handles[MAX_QD];
	for (unsigned i = 0; i < qd; i++)
		if (zk_spawn(&handles[i], io_task, &jobs[i]) < 0) {
			fprintf(stderr, "zk-fs-bench: spawn failed\n");
			exit(1);
		}
	if (sized_blocks) {
		uint64_t t0 = zk_now_ns();
		for (unsigned i = 0; i < qd; i++)
			zk_join(handles[i], NULL);
		result_iops = (double)total_ops(jobs) * 1e9 / (double)(zk_now_ns() - t0);
		return NULL;
	}
	zk_sleep_ms(warmup_ms);
	uint64_t t0 = zk_now_ns(), ops0 = total_ops(jobs);
	zk_sleep_ms(duration_ms);
	uint64_t t1 = zk_now_ns(), ops1 = total_ops(jobs);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < qd; i++)
		zk_join(handles[i], NULL);
	result_iops = (double)(ops1 - ops0) * 1e9 / (double)(t1 - t0);
	return NULL;
}

/* Opens the file; with O_DIRECT also reads one block, since some
 * filesystems accept the flag at open and refuse the I/O. Returns the fd,
 * -EINVAL when O_DIRECT is refused, or exits on other errors. */
static int open_file(const char *path, bool direct, bool writing)
{
	int f = open(path, (writing ? O_WRONLY : O_RDONLY) | (direct ? O_DIRECT : 0) | O_CLOEXEC);
	if (f < 0) {
		if (errno == EINVAL && direct)
			return -EINVAL;
		fprintf(stderr, "zk-fs-bench: open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (direct) {
		int rf = writing ? open(path, O_RDONLY | O_DIRECT | O_CLOEXEC) : f;
		void *b;
		if (rf < 0 || posix_memalign(&b, 4096, 4096) != 0) {
			fprintf(stderr, "zk-fs-bench: probe: %s\n", strerror(errno));
			exit(1);
		}
		ssize_t n = pread(rf, b, 4096, 0);
		int e = errno;
		free(b);
		if (rf != f)
			close(rf);
		if (n < 0 && e == EINVAL) {
			close(f);
			return -EINVAL;
		}
	}
	return f;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: zk-fs-bench --file F --rw randread|read|write [--bs B] [--qd Q] [--direct]\n"
		   "                   [--workers W] [--warmup-ms MS] [--duration-ms MS] [--passes N]\n"
		   "                   [--from task|foreign|foreign-ring|plain] [--threads T] [--sync]\n"
		   "       zk-fs-bench --file F --probe-direct\n");
}

static unsigned long parse_ul(const char *flag, const char *v, unsigned long min,
			      unsigned long max)
{
	char *end;
	unsigned long x = v ? strtoul(v, &end, 10) : 0;
	if (!v || *end || x < min || x > max) {
		fprintf(stderr, "zk-fs-bench: bad value for %s\n", flag);
		usage(stderr);
		exit(2);
	}
	return x;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *rw_name = "randread";
	bool direct = false, probe = false;
	unsigned workers = 1, passes = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--direct") == 0) {
			direct = true;
			continue;
		}
		if (strcmp(a, "--probe-direct") == 0) {
			probe = true;
			continue;
		}
		if (strcmp(a, "--sync") == 0) {
			sync_each = true;
			continue;
		}
		if (strcmp(a, "--file") == 0 && v)
			path = v;
		else if (strcmp(a, "--rw") == 0 && v)
			rw_name = v;
		else if (strcmp(a, "--bs") == 0)
			bs = parse_ul(a, v, 512, 64ul << 20);
		else if (strcmp(a, "--qd") == 0)
			qd = (unsigned)parse_ul(a, v, 1, MAX_QD);
		else if (strcmp(a, "--workers") == 0)
			workers = (unsigned)parse_ul(a, v, 1, 256);
		else if (strcmp(a, "--warmup-ms") == 0)
			warmup_ms = (unsigned)parse_ul(a, v, 0, 600000);
		else if (strcmp(a, "--duration-ms") == 0)
			duration_ms = (unsigned)parse_ul(a, v, 1, 600000);
		else if (strcmp(a, "--passes") == 0)
			passes = (unsigned)parse_ul(a, v, 1, 1000);
		else if (strcmp(a, "--threads") == 0)
			nthreads = (unsigned)parse_ul(a, v, 1, MAX_QD);
		else if (strcmp(a, "--from") == 0 && v && strcmp(v, "task") == 0)
			from = FROM_TASK;
		else if (strcmp(a, "--from") == 0 && v && strcmp(v, "foreign") == 0)
			from = FROM_FOREIGN;
		else if (strcmp(a, "--from") == 0 && v && strcmp(v, "foreign-ring") == 0)
			from = FROM_FOREIGN, foreign_ring_only = true;
		else if (strcmp(a, "--from") == 0 && v && strcmp(v, "plain") == 0)
			from = FROM_PLAIN;
		else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	if (probe) {
		int f = open_file(path, true, false);
		puts(f < 0 ? "direct=unsupported" : "direct=supported");
		return f < 0 ? 3 : 0;
	}
	if (strcmp(rw_name, "randread") == 0)
		rw = RW_RANDREAD;
	else if (strcmp(rw_name, "read") == 0)
		rw = RW_READ;
	else if (strcmp(rw_name, "write") == 0)
		rw = RW_WRITE;
	else {
		usage(stderr);
		return 2;
	}

	fd = open_file(path, direct, rw == RW_WRITE);
	if (fd < 0) {
		puts("direct=unsupported");
		return 3;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < bs) {
		fprintf(stderr, "zk-fs-bench: %s is smaller than one block\n", path);
		return 1;
	}
	nblocks = (uint64_t)st.st_size / bs;
	if (passes && rw == RW_RANDREAD) {
		fprintf(stderr, "zk-fs-bench: --passes is for read and write\n");
		return 2;
	}
	sized_blocks = passes * nblocks;

	if (from == FROM_PLAIN && qd != 1) {
		fprintf(stderr, "zk-fs-bench: --from plain runs queue depth 1 per thread\n");
		return 2;
	}
	if (sync_each && rw != RW_WRITE) {
		fprintf(stderr, "zk-fs-bench: --sync is for writes\n");
		return 2;
	}
	/* Threads (foreign, plain) each keep qd I/Os in flight with one buffer
	 * per I/O; tasks are qd jobs of one buffer each. */
	unsigned njobs = from == FROM_TASK ? qd : nthreads;
	size_t buf_len = from == FROM_FOREIGN ? bs * qd : bs;
	struct job *jobs = calloc(njobs > qd ? njobs : qd, sizeof(*jobs));
	if (!jobs)
		return 1;
	for (unsigned i = 0; i < njobs; i++) {
		jobs[i].rng = 0x9e3779b97f4a7c15ull * (i + 1) ^ (uint64_t)getpid();
		if (posix_memalign(&jobs[i].buf, 4096, buf_len) != 0)
			return 1;
		/* Written data that does not compress or dedupe, like fio's. */
		uint64_t s = jobs[i].rng | 1;
		for (size_t k = 0; k + 8 <= buf_len; k += 8) {
			uint64_t x = xorshift(&s);
			memcpy((char *)jobs[i].buf + k, &x, 8);
		}
	}

	if (from != FROM_TASK) {
		result_iops = run_threads(jobs);
		int err = atomic_load(&first_error);
		if (err) {
			if (err == -EINVAL && direct) {
				puts("direct=unsupported");
				return 3;
			}
			fprintf(stderr, "zk-fs-bench: I/O failed: %s\n", strerror(-err));
			return 1;
		}
		printf("iops=%.0f mib_per_sec=%.1f\n", result_iops,
		       result_iops * (double)bs / 1048576.0);
		close(fd);
		return 0;
	}
	zk_config_t cfg = {.workers = workers};
	zk_runtime_t *rt;
	int r = zk_runtime_create(&rt, &cfg);
	if (r < 0) {
		fprintf(stderr, "zk-fs-bench: runtime: %s\n", strerror(-r));
		return 1;
	}
	r = zk_block_on(rt, driver, jobs, NULL);
	zk_runtime_free(rt);
	int err = atomic_load(&first_error);
	if (r < 0 || err) {
		if (err == -EINVAL && direct) {
			puts("direct=unsupported");
			return 3;
		}
		fprintf(stderr, "zk-fs-bench: I/O failed: %s\n", strerror(-(err ? err : r)));
		return 1;
	}
	printf("iops=%.0f mib_per_sec=%.1f\n", result_iops, result_iops * (double)bs / 1048576.0);
	close(fd);
	return 0;
}
