/* tests/test_faulty.c — the fault-injection backend (backends/faulty/) and
 * what it proves: real file copies and a real TCP echo, run under many
 * seeds with every fault kind on, lose and duplicate no byte, leak no fd and
 * never hang; faults the runtime must hide (EINTR, EAGAIN) never reach the
 * caller; the same seed makes the same decisions.
 *
 * A failing run names its seed: replay it with
 *   ZK_FAULT_SEED=<seed> ZK_FAULT_KINDS=all ZK_FAULT_RATE=<rate> ...
 * Each run also prints "seed N" to stderr before it starts, so a hang
 * (killed by the test timeout) shows the seed in the log. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(faulty, .timeout = 240);

static unsigned open_fds(void)
{
	unsigned n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Runs under the faulty backend for seed, wrapping `inner`. */
static zk_runtime_t *faulty_runtime(unsigned long long seed, const char *inner, const char *kinds,
				    const char *rate, unsigned workers)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%llu", seed);
	setenv("ZK_FAULT_SEED", buf, 1);
	setenv("ZK_FAULT_INNER", inner, 1);
	setenv("ZK_FAULT_KINDS", kinds, 1);
	setenv("ZK_FAULT_RATE", rate, 1);
	zk_config_t cfg = {.workers = workers, .backend = ZK_BACKEND_FAULTY};
	zk_runtime_t *rt = NULL;
	int r = zk_runtime_create(&rt, &cfg);
	cr_assert_eq(r, 0, "zk_runtime_create(faulty): %d", r);
	cr_assert_str_eq(zk_runtime_backend(rt), "faulty");
	return rt;
}

/* The errors an injected fault may surface (documented in faulty.c): the
 * op did not run, so the application may retry it. */
static bool retryable(long r)
{
	return r == -ENOMEM || r == -EIO;
}

#define MAX_ATTEMPTS 200

static int open_retry(const char *path, int flags)
{
	for (int i = 0; i < MAX_ATTEMPTS; i++) {
		int fd = zk_open(path, flags, 0600);
		if (!retryable(fd))
			return fd;
	}
	return -EIO;
}

/* ---- file copies ------------------------------------------------------------ */

enum { NFILES = 8 };

struct copy_job {
	unsigned long long seed;
	char src[PATH_MAX];
	char dst[PATH_MAX];
	size_t size;
	int result; /* 0, or the error that ended the copy */
};

static int copy_file(struct copy_job *j)
{
	int in = open_retry(j->src, O_RDONLY);
	if (in < 0)
		return in;
	int out = open_retry(j->dst, O_WRONLY | O_CREAT | O_TRUNC);
	if (out < 0) {
		zk_close(in);
		return out;
	}
	char *buf = malloc(64 * 1024);
	int err = 0, tries = 0;
	int64_t off = 0;
	while (!err) {
		ssize_t n = zk_read(in, buf, 64 * 1024, off);
		if (retryable(n) && ++tries < MAX_ATTEMPTS)
			continue;
		if (n <= 0) {
			err = (int)n;
			break;
		}
		/* write_all at an offset: short writes continue where they
		 * stopped. */
		ssize_t done = 0;
		while (done < n) {
			ssize_t w = zk_write(out, buf + done, (size_t)(n - done), off + done);
			if (retryable(w) && ++tries < MAX_ATTEMPTS)
				continue;
			if (w <= 0) {
				err = w < 0 ? (int)w : -EIO;
				break;
			}
			done += w;
		}
		off += n;
	}
	while (!err) {
		int r = zk_fsync(out);
		if (retryable(r) && ++tries < MAX_ATTEMPTS)
			continue;
		err = r;
		break;
	}
	free(buf);
	ZT_CHECK_EQ(zk_close(in), 0);
	ZT_CHECK_EQ(zk_close(out), 0);
	return err;
}

static void *copy_task(void *arg)
{
	struct copy_job *j = arg;
	j->result = copy_file(j);
	return NULL;
}

struct copy_run {
	struct copy_job jobs[NFILES];
};

static void *copy_all(void *arg)
{
	struct copy_run *run = arg;
	zk_task_t *t[NFILES];
	for (int i = 0; i < NFILES; i++)
		ZT_CHECK_EQ(zk_spawn(&t[i], copy_task, &run->jobs[i]), 0);
	for (int i = 0; i < NFILES; i++)
		ZT_CHECK_EQ(zk_join(t[i], NULL), 0);
	return NULL;
}

static uint64_t file_hash(const char *path, size_t *len)
{
	uint64_t h = 1469598103934665603ull;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	int c;
	while ((c = getc(f)) != EOF) {
		h = (h ^ (uint64_t)c) * 1099511628211ull;
		(*len)++;
	}
	fclose(f);
	return h;
}

static void run_copies(const char *inner, unsigned nseeds, unsigned long long first_seed)
{
	char *dir = zt_tmpdir();
	struct copy_run run;
	memset(&run, 0, sizeof(run));
	size_t sizes[NFILES] = {0, 1, 4095, 65536, 65537, 200000, 333333, 1 << 20};
	uint64_t want[NFILES];
	for (int i = 0; i < NFILES; i++) {
		struct copy_job *j = &run.jobs[i];
		snprintf(j->src, sizeof(j->src), "%s/src%d", dir, i);
		j->size = sizes[i];
		char *data = malloc(j->size + 1);
		zt_fill(data, j->size, (unsigned)i + 7);
		FILE *f = fopen(j->src, "wb");
		cr_assert(f);
		cr_assert_eq(fwrite(data, 1, j->size, f), j->size);
		fclose(f);
		free(data);
		size_t len;
		want[i] = file_hash(j->src, &len);
	}
	unsigned fds0 = open_fds();
	for (unsigned s = 0; s < nseeds; s++) {
		unsigned long long seed = first_seed + s;
		fprintf(stderr, "copy: seed %llu (%s)\n", seed, inner);
		for (int i = 0; i < NFILES; i++) {
			snprintf(run.jobs[i].dst, sizeof(run.jobs[i].dst), "%s/dst%d_%llu", dir, i, seed);
			run.jobs[i].result = 1;
		}
		zk_runtime_t *rt = faulty_runtime(seed, inner, "all", "0.1", 2);
		cr_assert_eq(zk_block_on(rt, copy_all, &run, NULL), 0);
		zk_runtime_free(rt);
		for (int i = 0; i < NFILES; i++) {
			struct copy_job *j = &run.jobs[i];
			size_t len;
			uint64_t h = file_hash(j->dst, &len);
			if (j->result != 0)
				zt_fail(__FILE__, __LINE__, "seed %llu (%s): copy %d failed: %d", seed,
					inner, i, j->result);
			else if (len != j->size || h != want[i])
				zt_fail(__FILE__, __LINE__,
					"seed %llu (%s): copy %d differs: %zu bytes of %zu", seed, inner,
					i, len, j->size);
			unlink(j->dst);
		}
		zt_assert_no_failures();
		cr_assert_eq(open_fds(), fds0, "seed %llu (%s): fds leaked", seed, inner);
	}
	zt_rmtree(dir);
}

Test(faulty, file_copies_survive_every_fault_kind_on_io_uring)
{
	run_copies("io_uring", (unsigned)zt_scaled(64, 6), 1000);
}

Test(faulty, file_copies_survive_every_fault_kind_on_epoll)
{
	run_copies("epoll", (unsigned)zt_scaled(64, 6), 2000);
}

/* ---- TCP echo ----------------------------------------------------------------- */

enum { NCLIENTS = 8, ECHO_BYTES = 96 * 1024 };

struct echo_run {
	int lfd;
	unsigned long long seed;
	atomic_long verified; /* clients whose bytes came back intact */
};

static ssize_t send_all(int fd, const char *p, size_t len)
{
	size_t done = 0;
	int tries = 0;
	while (done < len) {
		ssize_t n = zk_send(fd, p + done, len - done, 0);
		if (retryable(n) && ++tries < MAX_ATTEMPTS)
			continue;
		if (n <= 0)
			return n < 0 ? n : -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16384];
	int tries = 0;
	for (;;) {
		ssize_t n = zk_recv(fd, buf, sizeof(buf), 0);
		if (retryable(n) && ++tries < MAX_ATTEMPTS)
			continue;
		if (n <= 0)
			break;
		if (send_all(fd, buf, (size_t)n) != n)
			break;
	}
	zk_close(fd);
	return NULL;
}

static void *echo_server(void *arg)
{
	struct echo_run *run = arg;
	zk_task_t *conns[NCLIENTS];
	int n = 0, tries = 0;
	while (n < NCLIENTS) {
		int fd = zk_accept(run->lfd, NULL, NULL);
		if (retryable(fd) && ++tries < MAX_ATTEMPTS)
			continue;
		ZT_CHECK(fd >= 0);
		if (fd < 0)
			break;
		ZT_CHECK_EQ(zk_spawn(&conns[n], echo_conn, (void *)(intptr_t)fd), 0);
		n++;
	}
	for (int i = 0; i < n; i++)
		zk_join(conns[i], NULL);
	return NULL;
}

struct echo_client {
	struct echo_run *run;
	int port;
	unsigned id;
};

static void *echo_client_task(void *arg)
{
	struct echo_client *c = arg;
	int fd = -1;
	for (int i = 0; i < MAX_ATTEMPTS && fd < 0; i++) {
		fd = zk_tcp_connect("127.0.0.1", (uint16_t)c->port);
		if (fd < 0 && !retryable(fd))
			break;
	}
	if (fd < 0) {
		zt_fail(__FILE__, __LINE__, "seed %llu: connect: %d", c->run->seed, fd);
		return NULL;
	}
	char *out = malloc(ECHO_BYTES), *in = malloc(ECHO_BYTES);
	zt_fill(out, ECHO_BYTES, c->id + 100);
	/* Sends in uneven pieces and reads back as it goes, so the server
	 * never blocks on a full socket buffer. */
	size_t sent = 0, got = 0;
	unsigned piece = 1000 + c->id * 777;
	int tries = 0;
	bool ok = true;
	while (ok && got < ECHO_BYTES) {
		if (sent < ECHO_BYTES) {
			size_t len = ECHO_BYTES - sent < piece ? ECHO_BYTES - sent : piece;
			ok = send_all(fd, out + sent, len) == (ssize_t)len;
			sent += len;
		}
		while (ok && got < sent) {
			ssize_t n = zk_recv(fd, in + got, sent - got, 0);
			if (retryable(n) && ++tries < MAX_ATTEMPTS)
				continue;
			if (n <= 0) {
				zt_fail(__FILE__, __LINE__, "seed %llu: client %u recv: %zd",
					c->run->seed, c->id, n);
				ok = false;
				break;
			}
			got += (size_t)n;
		}
	}
	if (ok && memcmp(in, out, ECHO_BYTES) == 0)
		atomic_fetch_add(&c->run->verified, 1);
	else if (ok)
		zt_fail(__FILE__, __LINE__, "seed %llu: client %u: echoed bytes differ", c->run->seed,
			c->id);
	zk_shutdown(fd, SHUT_WR);
	zk_close(fd);
	free(out);
	free(in);
	return NULL;
}

static void *echo_main(void *arg)
{
	struct echo_run *run = arg;
	int port = zk_socket_port(run->lfd);
	zk_task_t *srv;
	ZT_CHECK_EQ(zk_spawn(&srv, echo_server, run), 0);
	struct echo_client cl[NCLIENTS];
	zk_task_t *t[NCLIENTS];
	for (unsigned i = 0; i < NCLIENTS; i++) {
		cl[i] = (struct echo_client){.run = run, .port = port, .id = i};
		ZT_CHECK_EQ(zk_spawn(&t[i], echo_client_task, &cl[i]), 0);
	}
	for (unsigned i = 0; i < NCLIENTS; i++)
		zk_join(t[i], NULL);
	zk_join(srv, NULL);
	return NULL;
}

static void run_echo(const char *inner, unsigned nseeds, unsigned long long first_seed)
{
	unsigned fds0 = open_fds();
	for (unsigned s = 0; s < nseeds; s++) {
		struct echo_run run = {.seed = first_seed + s};
		fprintf(stderr, "echo: seed %llu (%s)\n", run.seed, inner);
		run.lfd = zk_tcp_listen("127.0.0.1", 0, 64);
		cr_assert(run.lfd >= 0);
		zk_runtime_t *rt = faulty_runtime(run.seed, inner, "all", "0.1", 2);
		cr_assert_eq(zk_block_on(rt, echo_main, &run, NULL), 0);
		zk_runtime_free(rt);
		close(run.lfd);
		zt_assert_no_failures();
		cr_assert_eq(atomic_load(&run.verified), NCLIENTS, "seed %llu (%s): %ld of %d verified",
			     run.seed, inner, atomic_load(&run.verified), NCLIENTS);
		cr_assert_eq(open_fds(), fds0, "seed %llu (%s): fds leaked", run.seed, inner);
	}
}

Test(faulty, tcp_echo_survives_every_fault_kind_on_io_uring)
{
	run_echo("io_uring", (unsigned)zt_scaled(64, 6), 3000);
}

Test(faulty, tcp_echo_survives_every_fault_kind_on_epoll)
{
	run_echo("epoll", (unsigned)zt_scaled(64, 6), 4000);
}

/* ---- what the runtime hides, and determinism ---------------------------------- */

struct reads {
	char path[PATH_MAX];
	int n;
	long res[400];
};

static void *many_reads(void *arg)
{
	struct reads *r = arg;
	int fd = zk_open(r->path, O_RDONLY, 0);
	for (int i = 0; fd >= 0 && i < r->n; i++) {
		char buf[512];
		r->res[i] = zk_read(fd, buf, sizeof(buf), (int64_t)i * 8);
	}
	if (fd >= 0)
		zk_close(fd);
	else
		r->res[0] = fd;
	return NULL;
}

static struct reads *reads_under(const char *dir, unsigned long long seed, const char *kinds,
				 const char *rate)
{
	struct reads *r = calloc(1, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s/data", dir);
	r->n = 400;
	zk_runtime_t *rt = faulty_runtime(seed, "io_uring", kinds, rate, 1);
	cr_assert_eq(zk_block_on(rt, many_reads, r, NULL), 0);
	zk_runtime_free(rt);
	return r;
}

static void write_data_file(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data", dir);
	FILE *f = fopen(path, "wb");
	cr_assert(f);
	char buf[8192];
	zt_fill(buf, sizeof(buf), 3);
	cr_assert_eq(fwrite(buf, 1, sizeof(buf), f), sizeof(buf));
	fclose(f);
}

Test(faulty, eintr_and_eagain_never_reach_the_caller)
{
	char *dir = zt_tmpdir();
	write_data_file(dir);
	struct reads *r = reads_under(dir, 42, "eintr,eagain,delay,sqfull,cancel", "0.5");
	for (int i = 0; i < r->n; i++)
		cr_assert_eq(r->res[i], 512, "read %d: %ld", i, r->res[i]);
	free(r);
	zt_rmtree(dir);
}

Test(faulty, the_same_seed_makes_the_same_faults)
{
	char *dir = zt_tmpdir();
	write_data_file(dir);
	struct reads *a = reads_under(dir, 7, "nomem,eio,short", "0.3");
	struct reads *b = reads_under(dir, 7, "nomem,eio,short", "0.3");
	struct reads *c = reads_under(dir, 8, "nomem,eio,short", "0.3");
	int faults = 0, kinds_seen[3] = {0};
	for (int i = 0; i < a->n; i++) {
		cr_assert_eq(a->res[i], b->res[i], "read %d: %ld vs %ld", i, a->res[i], b->res[i]);
		if (a->res[i] != 512)
			faults++;
		kinds_seen[0] |= a->res[i] == -ENOMEM;
		kinds_seen[1] |= a->res[i] == -EIO;
		kinds_seen[2] |= a->res[i] > 0 && a->res[i] < 512;
	}
	/* 400 ops at 30%: about 120 faults, every kind present. */
	cr_assert(faults > 60 && faults < 200, "faults: %d", faults);
	cr_assert(kinds_seen[0] && kinds_seen[1] && kinds_seen[2]);
	cr_assert(memcmp(a->res, c->res, sizeof(a->res)) != 0, "another seed, other faults");
	free(a);
	free(b);
	free(c);
	zt_rmtree(dir);
}

Test(faulty, rate_zero_injects_nothing)
{
	char *dir = zt_tmpdir();
	write_data_file(dir);
	struct reads *r = reads_under(dir, 1, "all", "0");
	for (int i = 0; i < r->n; i++)
		cr_assert_eq(r->res[i], 512);
	free(r);
	zt_rmtree(dir);
}

Test(faulty, bad_settings_are_refused)
{
	const char *bad[][2] = {
		{"ZK_FAULT_SEED", "x1"}, {"ZK_FAULT_RATE", "1.5"}, {"ZK_FAULT_RATE", "abc"},
		{"ZK_FAULT_KINDS", "eintr,bogus"}, {"ZK_FAULT_INNER", "kqueue"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsetenv("ZK_FAULT_SEED");
		unsetenv("ZK_FAULT_RATE");
		unsetenv("ZK_FAULT_KINDS");
		unsetenv("ZK_FAULT_INNER");
		setenv(bad[i][0], bad[i][1], 1);
		zk_config_t cfg = {.workers = 1, .backend = ZK_BACKEND_FAULTY};
		zk_runtime_t *rt = NULL;
		cr_assert_eq(zk_runtime_create(&rt, &cfg), -EINVAL, "%s=%s", bad[i][0], bad[i][1]);
	}
	setenv("ZK_BACKEND", "faulty", 1);
	unsetenv("ZK_FAULT_RATE");
	setenv("ZK_FAULT_INNER", "epoll", 1);
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, NULL), 0);
	cr_assert_str_eq(zk_runtime_backend(rt), "faulty");
	zk_runtime_free(rt);
}

/* Cancels racing completions: tasks waiting on recv with short timeouts on
 * sockets that receive data at the same moment. Every result is the data
 * or -ETIMEDOUT / -ECANCELED, and nothing hangs. */
struct race_arg {
	int fds[2];
	atomic_long ok;
};

enum { RACE_BYTES = 100 };

/* Reads until every byte came, each recv bounded by a short timeout. */
static void *racing_reader(void *arg)
{
	struct race_arg *a = arg;
	int got = 0;
	for (int i = 0; got < RACE_BYTES && i < 100000; i++) {
		char c;
		zk_timeout_next(200 * 1000);
		ssize_t n = zk_recv(a->fds[0], &c, 1, 0);
		ZT_CHECK(n == 1 || n == -ETIMEDOUT);
		if (n == 1) {
			ZT_CHECK_EQ(c, 'x');
			got++;
		}
	}
	ZT_CHECK_EQ(got, RACE_BYTES);
	atomic_fetch_add(&a->ok, 1);
	return NULL;
}

static void *racing_writer(void *arg)
{
	struct race_arg *a = arg;
	for (int i = 0; i < RACE_BYTES; i++) {
		ZT_CHECK_EQ(zk_send(a->fds[1], "x", 1, 0), 1);
		if (i % 3 == 0)
			zk_sleep_ms(1);
		else
			zk_yield();
	}
	atomic_fetch_add(&a->ok, 1);
	return NULL;
}

static void *race_main(void *arg)
{
	zk_task_t *r, *w;
	ZT_CHECK_EQ(zk_spawn(&r, racing_reader, arg), 0);
	ZT_CHECK_EQ(zk_spawn(&w, racing_writer, arg), 0);
	zk_join(r, NULL);
	zk_join(w, NULL);
	return NULL;
}

Test(faulty, timeouts_racing_completions_end_cleanly)
{
	for (unsigned long long seed = 1; seed <= 8; seed++) {
		struct race_arg a = {0};
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a.fds), 0);
		zk_runtime_t *rt = faulty_runtime(seed, seed & 1 ? "epoll" : "io_uring",
						  "eintr,eagain,delay,sqfull,cancel", "0.3", 2);
		cr_assert_eq(zk_block_on(rt, race_main, &a, NULL), 0);
		zk_runtime_free(rt);
		close(a.fds[0]);
		close(a.fds[1]);
		zt_assert_no_failures();
		cr_assert_eq(atomic_load(&a.ok), 2, "seed %llu", seed);
	}
}

/* O_NONBLOCK sockets: io_uring itself answers -EAGAIN on them when they are
 * not ready, and the fault backend injects it exactly there. The runtime
 * waits for readiness instead of passing -EAGAIN on (MSG_DONTWAIT still
 * gets it). */
struct nb_arg {
	int fds[2];
	int got;
};

static void *nb_reader(void *arg)
{
	struct nb_arg *a = arg;
	char c;
	ZT_CHECK_EQ(zk_recv(a->fds[0], &c, 1, MSG_DONTWAIT), -EAGAIN);
	while (a->got < RACE_BYTES) {
		ssize_t n = zk_recv(a->fds[0], &c, 1, 0);
		ZT_CHECK_EQ(n, 1);
		if (n != 1)
			break;
		a->got++;
	}
	return NULL;
}

static void *nb_writer(void *arg)
{
	struct nb_arg *a = arg;
	for (int i = 0; i < RACE_BYTES; i++) {
		if (i % 10 == 0)
			zk_sleep_ms(1);
		ZT_CHECK_EQ(zk_send(a->fds[1], "y", 1, 0), 1);
	}
	return NULL;
}

static void *nb_main(void *arg)
{
	zk_task_t *r, *w;
	ZT_CHECK_EQ(zk_spawn(&r, nb_reader, arg), 0);
	ZT_CHECK_EQ(zk_spawn(&w, nb_writer, arg), 0);
	zk_join(r, NULL);
	zk_join(w, NULL);
	return NULL;
}

static void run_nonblocking(zk_runtime_t *rt)
{
	struct nb_arg a = {0};
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a.fds), 0);
	cr_assert_eq(zk_block_on(rt, nb_main, &a, NULL), 0);
	zk_runtime_free(rt);
	close(a.fds[0]);
	close(a.fds[1]);
	zt_assert_no_failures();
	cr_assert_eq(a.got, RACE_BYTES);
}

Test(faulty, nonblocking_fds_wait_for_readiness_instead_of_eagain)
{
	zk_config_t cfg = {.workers = 2, .backend = ZK_BACKEND_IO_URING};
	zk_runtime_t *rt = NULL;
	cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
	run_nonblocking(rt);
	for (unsigned long long seed = 1; seed <= 4; seed++)
		run_nonblocking(faulty_runtime(seed, seed & 1 ? "epoll" : "io_uring", "eagain,delay",
					       "0.5", 2));
}
