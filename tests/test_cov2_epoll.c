/* tests/test_cov2_epoll.c — the epoll backend (and its blocking pool) where
 * the other suites do not push it: every pool thread stuck in a FIFO open
 * with more opens queued behind them, some of those cancelled while
 * queued; a runtime freed while opens are running in the pool and others
 * are queued; many timed waits whose deadlines arrive in decreasing order
 * and leave in mixed order (cancelled, completed, expired); a splice into
 * a socket whose peer is gone (the call fails with -EPIPE, the process
 * lives); a socket closed with close(2) and its number taken by a new one
 * while the worker still had it registered; connect and accept on a
 * number that names no file (-EBADF), a sendfile from a directory.
 *
 * The pool scenarios need epoll's pool and run on an explicit epoll
 * runtime; the others run on the setup's backend and on epoll. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov2_epoll, .timeout = 60);

#define MS ZK_NSEC_PER_MSEC
/* More than the pool's 64 threads (backends/epoll/blocking_pool.c). */
#define OPENERS 72

static zk_runtime_t *runtime_on(zk_backend_kind_t kind, unsigned workers)
{
	zk_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = workers;
	cfg.backend = kind;
	zk_runtime_t *rt = NULL;
	int r = zk_runtime_create(&rt, &cfg);
	cr_assert_eq(r, 0, "zk_runtime_create(backend=%d) = %d", (int)kind, r);
	return rt;
}

static void on_both(zk_task_fn fn, void *arg, unsigned workers)
{
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		zk_runtime_t *rt = runtime_on(kinds[i], workers);
		zt_run(rt, fn, arg);
		zk_runtime_free(rt);
	}
}

/* ---- the blocking pool, saturated --------------------------------------------------- */

struct fifo_open {
	const char *path;
	int res;
	atomic_long *started;
};

/* open(2) of a FIFO for reading blocks until a writer opens it. */
static void *open_fifo(void *arg)
{
	struct fifo_open *o = arg;
	atomic_fetch_add(o->started, 1);
	o->res = zk_open(o->path, O_RDONLY, 0);
	return NULL;
}

struct saturate {
	char path[256];
	struct fifo_open o[OPENERS];
	zk_task_t *t[OPENERS];
	atomic_long started;
};

static void *saturate_then_cancel(void *arg)
{
	struct saturate *s = arg;
	for (int i = 0; i < OPENERS; i++) {
		s->o[i] = (struct fifo_open){.path = s->path, .res = 1, .started = &s->started};
		ZT_CHECK_EQ(zk_spawn(&s->t[i], open_fifo, &s->o[i]), 0);
	}
	/* Every opener has submitted its open once it ran. */
	ZT_CHECK(zt_task_wait_at_least(&s->started, OPENERS, 10000));
	/* At most 64 opens run in the pool: the others are queued (or not yet
	 * handed to it). Cancel them all: a queued open ends at once with
	 * -ECANCELED, a running one keeps its real result. */
	for (int i = 0; i < OPENERS; i++)
		ZT_CHECK_EQ(zk_cancel(s->t[i]), 0);
	/* A reader-writer open of the FIFO never blocks, and lets every
	 * blocked (and every later) reader's open finish. Plain open(2):
	 * zk_open would queue behind the stuck pool. */
	int w = open(s->path, O_RDWR | O_CLOEXEC);
	ZT_CHECK(w >= 0);
	int cancelled = 0;
	for (int i = 0; i < OPENERS; i++) {
		ZT_CHECK_EQ(zk_join(s->t[i], NULL), 0);
		int r = s->o[i].res;
		ZT_CHECK(r == -ECANCELED || r >= 0);
		cancelled += r == -ECANCELED;
		if (r >= 0)
			ZT_CHECK_EQ(zk_close(r), 0);
	}
	close(w);
	return (void *)(intptr_t)cancelled;
}

Test(cov2_epoll, pool_saturated_queued_opens_cancelled)
{
	char *dir = zt_tmpdir();
	struct saturate *s = calloc(1, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(s->path, 0600), 0);
	zk_runtime_t *rt = runtime_on(ZK_BACKEND_EPOLL, 1);
	void *cancelled = zt_run(rt, saturate_then_cancel, s);
	zk_runtime_free(rt);
	/* 72 opens, 64 threads: eight at least were queued when cancelled. */
	cr_assert_geq((intptr_t)cancelled, OPENERS - 64, "%d cancelled", (int)(intptr_t)cancelled);
	free(s);
	zt_rmtree(dir);
}

/* A runtime freed while opens run in the pool and others wait for a
 * thread: shutdown cancels the queued ones and waits for the running ones,
 * which a helper thread releases once shutdown has begun. */
struct at_exit {
	char path[256];
	struct fifo_open o[OPENERS];
	atomic_long started;
	atomic_long shutting; /* set by a task that shutdown cancelled */
	int writer;
};

static void *sleeper(void *arg)
{
	struct at_exit *e = arg;
	int r = zk_sleep_ms(60000);
	if (r == -ECANCELED)
		atomic_store(&e->shutting, 1);
	return NULL;
}

static void *spawn_openers(void *arg)
{
	struct at_exit *e = arg;
	ZT_CHECK_EQ(zk_spawn(NULL, sleeper, e), 0);
	for (int i = 0; i < OPENERS; i++) {
		e->o[i] = (struct fifo_open){.path = e->path, .res = 1, .started = &e->started};
		ZT_CHECK_EQ(zk_spawn(NULL, open_fifo, &e->o[i]), 0);
	}
	ZT_CHECK(zt_task_wait_at_least(&e->started, OPENERS, 10000));
	return NULL;
}

static void *release_fifo(void *arg)
{
	struct at_exit *e = arg;
	if (!zt_wait_at_least(&e->shutting, 1, 20000))
		zt_fail(__FILE__, __LINE__, "shutdown did not cancel the sleeper");
	e->writer = open(e->path, O_RDWR | O_CLOEXEC);
	if (e->writer < 0)
		zt_fail(__FILE__, __LINE__, "open writer: %s", strerror(errno));
	return NULL;
}

Test(cov2_epoll, free_with_opens_running_and_queued_in_pool)
{
	char *dir = zt_tmpdir();
	struct at_exit *e = calloc(1, sizeof(*e));
	e->writer = -1;
	snprintf(e->path, sizeof(e->path), "%s/fifo", dir);
	cr_assert_eq(mkfifo(e->path, 0600), 0);
	zk_runtime_t *rt = runtime_on(ZK_BACKEND_EPOLL, 1);
	zt_run(rt, spawn_openers, e);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, release_fifo, e), 0);
	zk_runtime_free(rt);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	int ok = 0, cancelled = 0;
	for (int i = 0; i < OPENERS; i++) {
		int r = e->o[i].res;
		cr_assert(r >= 0 || r == -ECANCELED, "open %d: %d", i, r);
		if (r >= 0) {
			close(r);
			ok++;
		} else {
			cancelled++;
		}
	}
	cr_assert_eq(ok + cancelled, OPENERS);
	if (e->writer >= 0)
		close(e->writer);
	free(e);
	zt_rmtree(dir);
}

/* ---- deadlines ------------------------------------------------------------------------ */

#define TIMED 12

struct timed {
	int fd;
	uint64_t timeout;
	ssize_t res;
	atomic_long *parked;
};

static void *timed_recv(void *arg)
{
	struct timed *t = arg;
	char c;
	zk_timeout_next(t->timeout);
	atomic_fetch_add(t->parked, 1);
	t->res = zk_recv(t->fd, &c, 1, 0);
	return NULL;
}

/* Twelve receives with deadlines 120 s, 110 s, ..., 10 s (each nearer than
 * the last: every insert climbs the heap), plus two short ones; then some
 * are cancelled, some get data, the short ones expire. */
static void *deadlines_main(void *arg)
{
	(void)arg;
	int sv[TIMED][2];
	struct timed t[TIMED + 2];
	zk_task_t *h[TIMED + 2];
	atomic_long parked = 0;
	for (int i = 0; i < TIMED; i++) {
		ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
		t[i] = (struct timed){.fd = sv[i][0],
				      .timeout = (uint64_t)(TIMED - i) * 10000 * MS,
				      .res = 99,
				      .parked = &parked};
		ZT_CHECK_EQ(zk_spawn(&h[i], timed_recv, &t[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		t[TIMED + i] = (struct timed){
		    .fd = sv[i][0], .timeout = (uint64_t)(20 + 10 * i) * MS, .res = 99, .parked = &parked};
		ZT_CHECK_EQ(zk_spawn(&h[TIMED + i], timed_recv, &t[TIMED + i]), 0);
	}
	ZT_CHECK(zt_task_wait_at_least(&parked, TIMED + 2, 10000));
	/* The two short ones expire. */
	for (int i = TIMED; i < TIMED + 2; i++) {
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
		ZT_CHECK_EQ(t[i].res, -ETIMEDOUT);
	}
	/* Leave in mixed order: cancel the even ones from the middle out,
	 * give the odd ones a byte. */
	static const int order[TIMED] = {6, 4, 8, 2, 10, 0, 5, 1, 11, 3, 9, 7};
	for (int k = 0; k < TIMED; k++) {
		int i = order[k];
		if (i % 2 == 0) {
			ZT_CHECK_EQ(zk_cancel(h[i]), 0);
		} else {
			ZT_CHECK_EQ(write(sv[i][1], "x", 1), 1);
		}
		ZT_CHECK_EQ(zk_join(h[i], NULL), 0);
		if (i % 2 == 0)
			ZT_CHECK_EQ(t[i].res, -ECANCELED);
		else
			ZT_CHECK_EQ(t[i].res, 1);
	}
	for (int i = 0; i < TIMED; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
	return NULL;
}

Test(cov2_epoll, deadlines_in_decreasing_order_leave_in_mixed_order)
{
	on_both(deadlines_main, NULL, 1);
}

/* ---- splice into a socket whose peer is gone --------------------------------------------- */

static void *sendfile_epipe(void *arg)
{
	const char *path = arg;
	int fd = zk_open(path, O_RDONLY, 0);
	ZT_CHECK(fd >= 0);
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[1]);
	ssize_t n = zk_sendfile(sv[0], fd, 0, 256 * 1024);
	ZT_CHECK(n == -EPIPE || n == -ECONNRESET);
	/* The process is still here: the SIGPIPE the splice raised stayed
	 * blocked on the worker (lib/worker.c). */
	close(sv[0]);
	zk_close(fd);
	return NULL;
}

Test(cov2_epoll, sendfile_to_a_closed_peer_is_epipe)
{
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/f", dir);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	static char buf[256 * 1024];
	zt_fill(buf, sizeof(buf), 5);
	cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	on_both(sendfile_epipe, path, 2);
	zt_rmtree(dir);
}

/* ---- an fd closed with close(2) under a waiting op ------------------------------------- */

struct closed_under {
	int fd;
	ssize_t res;
	atomic_long parked;
};

static void *recv_on(void *arg)
{
	struct closed_under *c = arg;
	char b;
	atomic_store(&c->parked, 1);
	c->res = zk_recv(c->fd, &b, 1, 0);
	return NULL;
}

/* A socket the worker already watched, closed and its number reused by a
 * new socket: the new wait is on a stale registration and must still see
 * the data (the verification pass re-registers it). */
static void *reused_number(void *arg)
{
	(void)arg;
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct closed_under c = {.fd = sv[0], .res = 99};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, recv_on, &c), 0);
	ZT_CHECK(zt_task_wait_at_least(&c.parked, 1, 10000));
	ZT_CHECK_EQ(write(sv[1], "a", 1), 1);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(c.res, 1);
	/* Close behind the runtime's back, take the same number again. */
	int old = sv[0];
	close(sv[0]);
	close(sv[1]);
	int nv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, nv), 0);
	ZT_CHECK_EQ(nv[0], old);
	c.fd = nv[0];
	c.res = 99;
	atomic_store(&c.parked, 0);
	ZT_CHECK_EQ(zk_spawn(&t, recv_on, &c), 0);
	ZT_CHECK(zt_task_wait_at_least(&c.parked, 1, 10000));
	ZT_CHECK_EQ(write(nv[1], "b", 1), 1);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(c.res, 1);
	close(nv[0]);
	close(nv[1]);
	return NULL;
}

Test(cov2_epoll, stale_registration_of_a_reused_fd_number)
{
	on_both(reused_number, NULL, 1);
}

/* ---- errors of the calls that flip O_NONBLOCK ---------------------------------------------- */

static void *flip_errors(void *arg)
{
	const char *dir = arg;
	/* A number that names no file: connect fails with -EBADF. */
	int nofd = 900;
	while (fcntl(nofd, F_GETFD) >= 0)
		nofd++;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9),
				 .sin_addr.s_addr = htonl(0x7f000001)};
	ZT_CHECK_EQ(zk_connect(nofd, (struct sockaddr *)&sa, sizeof(sa)), -EBADF);
	ZT_CHECK_EQ(zk_accept(nofd, NULL, NULL), -EBADF);
	/* A directory cannot be spliced from. */
	int dfd = zk_open(dir, O_RDONLY | O_DIRECTORY, 0);
	ZT_CHECK(dfd >= 0);
	int sv[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ssize_t n = zk_sendfile(sv[0], dfd, 0, 4096);
	ZT_CHECK(n == -EINVAL || n == -EISDIR || n == -EBADF);
	if (!(n == -EINVAL || n == -EISDIR || n == -EBADF))
		zt_fail(__FILE__, __LINE__, "sendfile from a directory: %zd", n);
	close(sv[0]);
	close(sv[1]);
	zk_close(dfd);
	return NULL;
}

Test(cov2_epoll, connect_accept_bad_fd_and_sendfile_from_a_directory)
{
	char *dir = zt_tmpdir();
	on_both(flip_errors, dir, 1);
	zt_rmtree(dir);
}
