/* tests/windows/test_iocp.c — the conformance suite of the Windows build:
 * the runtime on the IOCP backend, checked through the public API with
 * real temp files and real sockets on 127.0.0.1 (run under wine on Linux).
 * Criterion does not exist for mingw, so this is its own small harness:
 * `test_iocp CASE` runs one case in a fresh 4-worker runtime and exits 0
 * when it passed; meson registers one test per case. `test_iocp` alone
 * runs every case. */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>
#include <ws2tcpip.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zokio/fs.h>
#include <zokio/net.h>
#include <zokio/runtime.h>
#include <zokio/select.h>
#include <zokio/sync.h>
#include <zokio/task.h>
#include <zokio/time.h>

static _Atomic int failures;

#define CHECK(c)                                                                         \
	do {                                                                             \
		if (!(c)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
			failures++;                                                      \
		}                                                                        \
	} while (0)
#define CHECK_EQ(a, b)                                                                   \
	do {                                                                             \
		long long a_ = (long long)(a), b_ = (long long)(b);                      \
		if (a_ != b_) {                                                          \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, \
				__LINE__, #a, a_, #b, b_);                               \
			failures++;                                                      \
		}                                                                        \
	} while (0)

#define MS (1000000ull)

/* A unique path in the temp directory; the caller deletes it. */
static void temp_path(char *out, size_t cap, const char *tag)
{
	static _Atomic unsigned seq;
	char dir[MAX_PATH];
	DWORD n = GetTempPathA(sizeof dir, dir);
	if (n == 0 || n >= sizeof dir)
		strcpy(dir, ".\\");
	snprintf(out, cap, "%szk-%s-%lu-%u.tmp", dir, tag, (unsigned long)GetCurrentProcessId(),
		 seq++);
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

static void fill(unsigned char *buf, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (unsigned char)x;
	}
}

/* ---- tasks, join, block_on ------------------------------------------------ */

static void *ret_arg(void *arg)
{
	return arg;
}

static void *case_block_on(void *arg)
{
	(void)arg;
	zk_task_t *t;
	CHECK_EQ(zk_spawn(&t, ret_arg, (void *)(intptr_t)42), 0);
	void *res = NULL;
	CHECK_EQ(zk_join(t, &res), 0);
	CHECK_EQ((intptr_t)res, 42);
	return (void *)(intptr_t)7;
}

static void *add_one(void *arg)
{
	zk_yield();
	return (void *)((intptr_t)arg + 1);
}

static void *case_spawn_many(void *arg)
{
	(void)arg;
	enum { N = 2000 };
	static zk_task_t *ts[N];
	for (int i = 0; i < N; i++)
		CHECK_EQ(zk_spawn(&ts[i], add_one, (void *)(intptr_t)i), 0);
	long long sum = 0;
	for (int i = 0; i < N; i++) {
		void *r;
		CHECK_EQ(zk_join(ts[i], &r), 0);
		sum += (intptr_t)r;
	}
	CHECK_EQ(sum, (long long)N * (N + 1) / 2);
	return NULL;
}

/* ---- timers -------------------------------------------------------------- */

struct sleeper {
	uint64_t ms;
	zk_chan_t *ch;
};

static void *sleep_then_send(void *arg)
{
	struct sleeper *s = arg;
	uint64_t t0 = zk_now_ns();
	CHECK_EQ(zk_sleep_ms(s->ms), 0);
	CHECK(zk_now_ns() - t0 >= s->ms * MS);
	zk_chan_send(s->ch, (void *)(uintptr_t)s->ms);
	return NULL;
}

static void *case_timer_order(void *arg)
{
	(void)arg;
	zk_chan_t *ch;
	CHECK_EQ(zk_chan_create(&ch, 0), 0);
	struct sleeper s[4] = {{120, ch}, {20, ch}, {80, ch}, {50, ch}};
	for (int i = 0; i < 4; i++)
		CHECK_EQ(zk_spawn(NULL, sleep_then_send, &s[i]), 0);
	uint64_t want[4] = {20, 50, 80, 120};
	for (int i = 0; i < 4; i++) {
		void *v = NULL;
		CHECK_EQ(zk_chan_recv(ch, &v), 0);
		CHECK_EQ((uintptr_t)v, want[i]);
	}
	zk_chan_free(ch);
	return NULL;
}

static void *sleep_long(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)zk_sleep_ms(60000);
}

static void *case_sleep_cancel(void *arg)
{
	(void)arg;
	zk_task_t *t;
	CHECK_EQ(zk_spawn(&t, sleep_long, NULL), 0);
	zk_sleep_ms(20);
	uint64_t t0 = zk_now_ns();
	CHECK_EQ(zk_cancel(t), 0);
	void *res;
	CHECK_EQ(zk_join(t, &res), 0);
	CHECK_EQ((intptr_t)res, -ECANCELED);
	CHECK(zk_now_ns() - t0 < 5000 * MS);
	return NULL;
}

#define SLEEPERS 3000
static _Atomic int woke;

static void *sleep_some(void *arg)
{
	uint64_t ms = 1 + (uintptr_t)arg % 97;
	uint64_t t0 = zk_now_ns();
	if (zk_sleep_ms(ms) == 0 && zk_now_ns() - t0 >= ms * MS)
		woke++;
	return NULL;
}

static void *case_many_sleepers(void *arg)
{
	(void)arg;
	static zk_task_t *ts[SLEEPERS];
	woke = 0;
	for (uintptr_t i = 0; i < SLEEPERS; i++)
		CHECK_EQ(zk_spawn(&ts[i], sleep_some, (void *)i), 0);
	for (unsigned i = 0; i < SLEEPERS; i++)
		zk_join(ts[i], NULL);
	CHECK_EQ(woke, SLEEPERS);
	return NULL;
}

/* ---- files ------------------------------------------------------------------ */

static void *case_file_offsets(void *arg)
{
	(void)arg;
	char path[MAX_PATH];
	temp_path(path, sizeof path, "off");
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	char a[100], b[5000], c[300];
	memset(a, 'a', sizeof a);
	memset(b, 'b', sizeof b);
	memset(c, 'c', sizeof c);
	CHECK_EQ(zk_write(fd, b, sizeof b, 4096), sizeof b);
	CHECK_EQ(zk_write(fd, a, sizeof a, 0), sizeof a);
	CHECK_EQ(zk_write(fd, c, sizeof c, 20000), sizeof c); /* size 20300 */
	char r[400];
	CHECK_EQ(zk_read(fd, r, 100, 0), 100);
	CHECK(memcmp(r, a, 100) == 0);
	CHECK_EQ(zk_read(fd, r, 10, 4096 + 4990), 10);
	CHECK(memcmp(r, b, 10) == 0);
	/* The hole between writes reads as zeros. */
	CHECK_EQ(zk_read(fd, r, 50, 200), 50);
	for (int i = 0; i < 50; i++)
		CHECK_EQ(r[i], 0);
	/* Short read at the end of file, then 0 at and past it. */
	CHECK_EQ(zk_read(fd, r, 400, 20000), 300);
	CHECK(memcmp(r, c, 300) == 0);
	CHECK_EQ(zk_read(fd, r, 400, 20300), 0);
	CHECK_EQ(zk_read(fd, r, 400, 1 << 30), 0);
	/* Offsets above 4 GiB use OffsetHigh. */
	CHECK_EQ(zk_write(fd, "big", 3, (int64_t)5 << 30), 3);
	CHECK_EQ(zk_read(fd, r, 10, (int64_t)5 << 30), 3);
	CHECK(memcmp(r, "big", 3) == 0);
	CHECK_EQ(zk_ftruncate(fd, 150), 0);
	CHECK_EQ(zk_read(fd, r, 400, 100), 50);
	CHECK_EQ(zk_fsync(fd), 0);
	CHECK_EQ(zk_fdatasync(fd), 0);
	CHECK_EQ(zk_close(fd), 0);
	/* Reopen read-only: the data is on disk. */
	fd = zk_open(path, O_RDONLY, 0);
	CHECK(fd >= 0);
	CHECK_EQ(zk_read(fd, r, 100, 0), 100);
	CHECK(memcmp(r, a, 100) == 0);
	/* A write on a read-only handle fails with an errno, not silently. */
	CHECK_EQ(zk_write(fd, a, 10, 0), -EACCES);
	CHECK_EQ(zk_close(fd), 0);
	DeleteFileA(path);
	return NULL;
}

static void *case_file_vectors(void *arg)
{
	(void)arg;
	char path[MAX_PATH];
	temp_path(path, sizeof path, "vec");
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	char x[3000], y[5000];
	fill((unsigned char *)x, sizeof x, 1);
	fill((unsigned char *)y, sizeof y, 2);
	struct iovec w[2] = {{x, sizeof x}, {y, sizeof y}};
	CHECK_EQ(zk_writev(fd, w, 2, 100), 8000);
	char rx[3000], ry[6000];
	struct iovec rv[2] = {{rx, sizeof rx}, {ry, sizeof ry}};
	CHECK_EQ(zk_readv(fd, rv, 2, 100), 8000); /* short: 5000 of 6000 */
	CHECK(memcmp(rx, x, sizeof x) == 0);
	CHECK(memcmp(ry, y, sizeof y) == 0);
	CHECK_EQ(zk_pread(fd, rx, 10, -1), -EINVAL);
	CHECK_EQ(zk_close(fd), 0);
	DeleteFileA(path);
	return NULL;
}

static void *case_file_errors(void *arg)
{
	(void)arg;
	char buf[16];
	char path[MAX_PATH];
	CHECK_EQ(zk_read(-1, buf, sizeof buf, 0), -EBADF);
	CHECK_EQ(zk_write(-5, buf, sizeof buf, 0), -EBADF);
	temp_path(path, sizeof path, "err");
	CHECK_EQ(zk_open(path, O_RDONLY, 0), -ENOENT);
	int fd = zk_open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0);
	CHECK_EQ(zk_open(path, O_RDWR | O_CREAT | O_EXCL, 0644), -EEXIST);
	/* No file position on an overlapped handle: documented -EINVAL. */
	CHECK_EQ(zk_read(fd, buf, sizeof buf, -1), -EINVAL);
	CHECK_EQ(zk_close(fd), 0);
	/* The closed handle value is no longer valid. */
	CHECK_EQ(zk_read(fd, buf, sizeof buf, 0), -EBADF);
	CHECK_EQ(zk_poll(fd, 1), -EOPNOTSUPP);
	DeleteFileA(path);
	return NULL;
}

/* ---- sockets --------------------------------------------------------------- */

struct conn_pair {
	int lfd, cfd, sfd;
};

static void *accept_one(void *arg)
{
	struct conn_pair *p = arg;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	p->sfd = zk_accept(p->lfd, (struct sockaddr *)&ss, &len);
	if (p->sfd >= 0) {
		CHECK_EQ(ss.ss_family, AF_INET);
		CHECK_EQ(len, sizeof(struct sockaddr_in));
	}
	return NULL;
}

static int make_pair(struct conn_pair *p)
{
	p->lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	CHECK(p->lfd >= 0);
	int port = zk_socket_port(p->lfd);
	CHECK(port > 0);
	zk_task_t *a;
	zk_spawn(&a, accept_one, p);
	p->cfd = zk_tcp_connect("127.0.0.1", (uint16_t)port);
	CHECK(p->cfd >= 0);
	zk_join(a, NULL);
	CHECK(p->sfd >= 0);
	return p->cfd >= 0 && p->sfd >= 0 ? 0 : -1;
}

static void close_pair(struct conn_pair *p)
{
	zk_close(p->cfd);
	zk_close(p->sfd);
	zk_close(p->lfd);
}

static void *case_tcp_basic(void *arg)
{
	(void)arg;
	struct conn_pair p;
	if (make_pair(&p) < 0)
		return NULL;
	CHECK_EQ(zk_send(p.cfd, "hello", 5, 0), 5);
	char buf[16];
	CHECK_EQ(zk_recv_exact(p.sfd, buf, 5), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	/* zk_read/zk_write work on sockets too (offset -1: none). */
	CHECK_EQ(zk_write(p.cfd, "abc", 3, -1), 3);
	CHECK_EQ(zk_read(p.sfd, buf, 3, -1), 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	/* Shutting the write side gives the peer EOF. */
	CHECK_EQ(zk_shutdown(p.cfd, SD_SEND), 0);
	CHECK_EQ(zk_recv(p.sfd, buf, sizeof buf, 0), 0);
	close_pair(&p);
	return NULL;
}

static void *case_connect_refused(void *arg)
{
	(void)arg;
	/* A port that was just free and has no listener. */
	int l = zk_tcp_listen("127.0.0.1", 0, 1);
	int port = zk_socket_port(l);
	zk_close(l);
	CHECK_EQ(zk_tcp_connect("127.0.0.1", (uint16_t)port), -ECONNREFUSED);
	CHECK_EQ(zk_tcp_connect("not-an-ip", 80), -EINVAL);
	return NULL;
}

static void *case_recv_timeout(void *arg)
{
	(void)arg;
	struct conn_pair p;
	if (make_pair(&p) < 0)
		return NULL;
	char buf[16];
	uint64_t t0 = zk_now_ns();
	zk_timeout_next(100 * MS);
	CHECK_EQ(zk_recv(p.sfd, buf, sizeof buf, 0), -ETIMEDOUT);
	uint64_t el = zk_now_ns() - t0;
	CHECK(el >= 100 * MS);
	CHECK(el < 3000 * MS);
	/* The connection still works after the cancelled recv. */
	CHECK_EQ(zk_send(p.cfd, "x", 1, 0), 1);
	CHECK_EQ(zk_recv(p.sfd, buf, sizeof buf, 0), 1);
	close_pair(&p);
	return NULL;
}

static void *recv_blocked(void *arg)
{
	char buf[16];
	return (void *)(intptr_t)zk_recv(*(int *)arg, buf, sizeof buf, 0);
}

static void *case_recv_cancel(void *arg)
{
	(void)arg;
	struct conn_pair p;
	if (make_pair(&p) < 0)
		return NULL;
	zk_task_t *t;
	CHECK_EQ(zk_spawn(&t, recv_blocked, &p.sfd), 0);
	zk_sleep_ms(30); /* let it block in the kernel */
	CHECK_EQ(zk_cancel(t), 0);
	void *res;
	CHECK_EQ(zk_join(t, &res), 0);
	CHECK_EQ((intptr_t)res, -ECANCELED);
	close_pair(&p);
	return NULL;
}

static void *accept_blocked(void *arg)
{
	return (void *)(intptr_t)zk_accept(*(int *)arg, NULL, NULL);
}

static void *case_accept_cancel(void *arg)
{
	(void)arg;
	int l = zk_tcp_listen("127.0.0.1", 0, 4);
	CHECK(l >= 0);
	zk_task_t *t;
	CHECK_EQ(zk_spawn(&t, accept_blocked, &l), 0);
	zk_sleep_ms(30);
	zk_cancel(t);
	void *res;
	zk_join(t, &res);
	CHECK_EQ((intptr_t)res, -ECANCELED);
	zk_close(l);
	return NULL;
}

static void *case_udp(void *arg)
{
	(void)arg;
	int a = zk_udp_bind("127.0.0.1", 0, 0), b = zk_udp_bind("127.0.0.1", 0, 0);
	CHECK(a >= 0 && b >= 0);
	int pa = zk_socket_port(a), pb = zk_socket_port(b);
	struct sockaddr_storage to;
	socklen_t tolen;
	CHECK_EQ(zk_addr_ip("127.0.0.1", (uint16_t)pb, &to, &tolen), 0);
	/* Datagrams keep their boundaries and their order on loopback. */
	for (int i = 1; i <= 50; i++) {
		char out[512];
		memset(out, i, (size_t)i * 10);
		CHECK_EQ(zk_sendto(a, out, (size_t)i * 10, 0, (struct sockaddr *)&to, tolen), i * 10);
		char in[600];
		struct sockaddr_storage from;
		socklen_t fl = sizeof from;
		CHECK_EQ(zk_recvfrom(b, in, sizeof in, 0, (struct sockaddr *)&from, &fl), i * 10);
		CHECK(memcmp(in, out, (size_t)i * 10) == 0);
		CHECK_EQ(fl, sizeof(struct sockaddr_in));
		CHECK_EQ(ntohs(((struct sockaddr_in *)&from)->sin_port), pa);
	}
	/* recvmsg scatters one datagram over two buffers. */
	CHECK_EQ(zk_sendto(a, "0123456789", 10, 0, (struct sockaddr *)&to, tolen), 10);
	char h[4], t[16];
	struct iovec iov[2] = {{h, sizeof h}, {t, sizeof t}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	CHECK_EQ(zk_recvmsg(b, &m, 0), 10);
	CHECK(memcmp(h, "0123", 4) == 0 && memcmp(t, "456789", 6) == 0);
	/* A datagram larger than the buffer: its first bytes, the rest dropped. */
	CHECK_EQ(zk_sendto(a, "abcdefgh", 8, 0, (struct sockaddr *)&to, tolen), 8);
	CHECK_EQ(zk_recvfrom(b, h, 3, 0, NULL, NULL), 3);
	CHECK(memcmp(h, "abc", 3) == 0);
	/* A connected UDP socket with zk_send/zk_recv. */
	int c = zk_udp_connect("127.0.0.1", (uint16_t)pb);
	CHECK(c >= 0);
	CHECK_EQ(zk_send(c, "conn", 4, 0), 4);
	CHECK_EQ(zk_recvfrom(b, t, sizeof t, 0, NULL, NULL), 4);
	CHECK(memcmp(t, "conn", 4) == 0);
	/* A send to a closed port does not fail the next receive of an
	 * unconnected socket; an empty socket times out. */
	int dead = zk_udp_bind("127.0.0.1", 0, 0);
	int pd = zk_socket_port(dead);
	zk_close(dead);
	struct sockaddr_storage dd;
	socklen_t dl;
	zk_addr_ip("127.0.0.1", (uint16_t)pd, &dd, &dl);
	CHECK_EQ(zk_sendto(a, "x", 1, 0, (struct sockaddr *)&dd, dl), 1);
	zk_timeout_next(50 * MS);
	CHECK_EQ(zk_recvfrom(a, t, sizeof t, 0, NULL, NULL), -ETIMEDOUT);
	CHECK_EQ(zk_recvmsg(b, NULL, 0), -EINVAL);
	zk_close(a);
	zk_close(b);
	zk_close(c);
	return NULL;
}

static int shutdown_seen[3];

static void *blocked_then_note(void *arg)
{
	int *fds = arg;
	char b[8];
	/* Each waits on something that never comes; runtime_free must end
	 * the waits (cancellation) and join the tasks. */
	int which = fds[2]++;
	int r = which == 0 ? zk_accept(fds[0], NULL, NULL)
		: which == 1 ? (int)zk_recv(fds[1], b, sizeof b, 0)
			     : zk_sleep_ms(600000);
	shutdown_seen[which] = r;
	return NULL;
}

static int shutdown_fds[3];

static void *case_shutdown_io(void *arg)
{
	(void)arg;
	static struct conn_pair p;
	if (make_pair(&p) < 0)
		return NULL;
	shutdown_fds[0] = p.lfd;
	shutdown_fds[1] = p.sfd;
	shutdown_fds[2] = 0;
	for (int i = 0; i < 3; i++)
		zk_spawn(NULL, blocked_then_note, shutdown_fds); /* detached */
	zk_sleep_ms(30);
	return NULL; /* run_case's zk_runtime_free cancels them */
}

/* ---- cross-thread --------------------------------------------------------- */

struct foreign {
	zk_runtime_t *rt;
	zk_chan_t *ch;
	int n;
};

static void *send_id(void *arg)
{
	struct foreign *f = arg;
	zk_chan_send(f->ch, (void *)(intptr_t)1);
	return NULL;
}

static void *foreign_thread(void *arg)
{
	struct foreign *f = arg;
	/* Spawns from a thread the runtime does not know, and sends straight
	 * into a channel a task waits on: both must wake a parked worker. */
	for (int i = 0; i < f->n; i++) {
		if (i % 2)
			zk_spawn_on(f->rt, NULL, send_id, f);
		else
			zk_chan_send(f->ch, (void *)(intptr_t)1);
	}
	return NULL;
}

static zk_runtime_t *cur_rt;

static void *case_foreign_wake(void *arg)
{
	(void)arg;
	struct foreign f = {.rt = cur_rt, .n = 1000};
	CHECK_EQ(zk_chan_create(&f.ch, 0), 0);
	pthread_t th;
	pthread_create(&th, NULL, foreign_thread, &f);
	int got = 0;
	while (got < f.n) {
		void *v;
		zk_timeout_next(5000 * MS);
		int r = zk_chan_recv_timeout(f.ch, &v, 5000 * MS);
		CHECK_EQ(r, 0);
		if (r != 0)
			break;
		got++;
	}
	pthread_join(th, NULL);
	CHECK_EQ(got, f.n);
	zk_chan_free(f.ch);
	return NULL;
}

/* ---- one port per worker: handles used from several workers ------------- */

struct pinned_io {
	int fd;
	unsigned worker;
	int ok;
};

static void *pinned_open(void *arg)
{
	char *path = arg;
	return (void *)(intptr_t)zk_open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
}

static void *pinned_rw(void *arg)
{
	struct pinned_io *p = arg;
	char out[4096], in[4096];
	fill((unsigned char *)out, sizeof out, p->worker);
	int64_t off = (int64_t)p->worker * 4096;
	p->ok = zk_write(p->fd, out, sizeof out, off) == (ssize_t)sizeof out &&
		zk_read(p->fd, in, sizeof in, off) == (ssize_t)sizeof in &&
		memcmp(in, out, sizeof in) == 0;
	return NULL;
}

static void *case_cross_worker_file(void *arg)
{
	(void)arg;
	char path[MAX_PATH];
	temp_path(path, sizeof path, "xw");
	/* Opened (and so tied to the port) on worker 0 ... */
	zk_task_t *t;
	CHECK_EQ(zk_spawn_pinned(cur_rt, &t, pinned_open, path, 0), 0);
	void *res;
	zk_join(t, &res);
	int fd = (int)(intptr_t)res;
	CHECK(fd >= 0);
	/* ... used from every worker: completions for workers 1-3 arrive on
	 * worker 0's port and must be forwarded to theirs. */
	struct pinned_io io[4];
	zk_task_t *ts[4];
	for (unsigned w = 0; w < 4; w++) {
		io[w] = (struct pinned_io){.fd = fd, .worker = w};
		CHECK_EQ(zk_spawn_pinned(cur_rt, &ts[w], pinned_rw, &io[w], w), 0);
	}
	for (unsigned w = 0; w < 4; w++) {
		zk_join(ts[w], NULL);
		CHECK(io[w].ok);
	}
	zk_close(fd);
	DeleteFileA(path);
	return NULL;
}

struct pinned_sock {
	struct conn_pair *p;
	int n;
};

static void *pinned_echo_once(void *arg)
{
	struct pinned_sock *s = arg;
	char buf[64];
	ssize_t n = zk_recv(s->p->sfd, buf, sizeof buf, 0);
	if (n > 0)
		zk_send_all(s->p->sfd, buf, (size_t)n);
	s->n = (int)n;
	return NULL;
}

static void *case_cross_worker_socket(void *arg)
{
	(void)arg;
	struct conn_pair p;
	if (make_pair(&p) < 0)
		return NULL;
	/* The server side serves one message from each worker in turn: the
	 * socket is tied to the first worker's port, the others forward. */
	for (unsigned w = 0; w < 4; w++) {
		struct pinned_sock s = {.p = &p};
		zk_task_t *t;
		CHECK_EQ(zk_spawn_pinned(cur_rt, &t, pinned_echo_once, &s, w), 0);
		char msg[8] = "msg-0", back[8] = {0};
		msg[4] = (char)('0' + w);
		CHECK_EQ(zk_send(p.cfd, msg, 5, 0), 5);
		CHECK_EQ(zk_recv_exact(p.cfd, back, 5), 5);
		CHECK(memcmp(back, msg, 5) == 0);
		zk_join(t, NULL);
		CHECK_EQ(s.n, 5);
	}
	close_pair(&p);
	return NULL;
}

/* ---- file calls from a foreign thread -------------------------------------- */

struct shared_file {
	int fd;
	int ok;
};

static void *task_writes(void *arg)
{
	struct shared_file *s = arg;
	char out[8192];
	fill((unsigned char *)out, sizeof out, 5);
	s->ok = zk_write_all(s->fd, out, sizeof out, 4096) == (ssize_t)sizeof out;
	return NULL;
}

static int case_foreign_file(void)
{
	/* main() is a foreign thread: these block it, no runtime needed. */
	char path[MAX_PATH];
	temp_path(path, sizeof path, "ff");
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	if (fd < 0)
		return 0;
	char a[4096], r[8192];
	memset(a, 'z', sizeof a);
	CHECK_EQ(zk_write(fd, a, sizeof a, 0), sizeof a);
	CHECK_EQ(zk_read(fd, r, sizeof r, 0), sizeof a); /* short: at EOF */
	CHECK(memcmp(r, a, sizeof a) == 0);
	CHECK_EQ(zk_read(fd, r, 10, -1), -EINVAL);
	/* A task uses the same handle (tying it to a worker's port); the
	 * foreign thread's I/O on it still completes here, not on the port. */
	zk_config_t cfg = {.workers = 2};
	zk_runtime_t *rt;
	CHECK_EQ(zk_runtime_create(&rt, &cfg), 0);
	struct shared_file s = {.fd = fd};
	CHECK_EQ(zk_block_on(rt, task_writes, &s, NULL), 0);
	CHECK(s.ok);
	char want[8192];
	fill((unsigned char *)want, sizeof want, 5);
	CHECK_EQ(zk_read_exact(fd, r, sizeof r, 4096), sizeof r);
	CHECK(memcmp(r, want, sizeof r) == 0);
	CHECK_EQ(zk_block_on(rt, task_writes, &s, NULL), 0); /* the port still works */
	CHECK(s.ok);
	zk_runtime_free(rt);
	CHECK_EQ(zk_ftruncate(fd, 100), 0);
	CHECK_EQ(zk_read(fd, r, sizeof r, 0), 100);
	CHECK_EQ(zk_fsync(fd), 0);
	CHECK_EQ(zk_close(fd), 0);
	zk_fs_thread_release();
	DeleteFileA(path);
	return 0;
}

/* ---- sync ------------------------------------------------------------------ */

static zk_mutex_t mtx = ZK_MUTEX_INITIALIZER;
static long counter;

static void *locked_inc(void *arg)
{
	(void)arg;
	for (int i = 0; i < 200; i++) {
		zk_mutex_lock(&mtx);
		long v = counter;
		if (i % 16 == 0)
			zk_yield(); /* hold the lock across a switch */
		counter = v + 1;
		zk_mutex_unlock(&mtx);
	}
	return NULL;
}

static void *case_mutex(void *arg)
{
	(void)arg;
	zk_task_t *ts[50];
	counter = 0;
	for (int i = 0; i < 50; i++)
		zk_spawn(&ts[i], locked_inc, NULL);
	for (int i = 0; i < 50; i++)
		zk_join(ts[i], NULL);
	CHECK_EQ(counter, 50 * 200);
	return NULL;
}

static zk_sem_t sem;
static zk_notify_t note;
static _Atomic int in_sem, max_in_sem;

static void *sem_user(void *arg)
{
	(void)arg;
	if (zk_sem_acquire(&sem, 1) != 0)
		return NULL;
	int n = ++in_sem;
	int m = max_in_sem;
	while (n > m && !atomic_compare_exchange_weak(&max_in_sem, &m, n))
		;
	zk_sleep_ms(2);
	in_sem--;
	zk_sem_release(&sem, 1);
	return NULL;
}

static void *send_later(void *arg)
{
	zk_sleep_ms(10);
	zk_oneshot_send(arg, (void *)(intptr_t)99);
	zk_notify_one(&note);
	return NULL;
}

static void *case_sync_mix(void *arg)
{
	(void)arg;
	/* Semaphore: at most 3 of 40 tasks inside at once. */
	CHECK_EQ(zk_sem_init(&sem, 3), 0);
	zk_task_t *ts[40];
	for (int i = 0; i < 40; i++)
		zk_spawn(&ts[i], sem_user, NULL);
	for (int i = 0; i < 40; i++)
		zk_join(ts[i], NULL);
	CHECK(max_in_sem >= 1 && max_in_sem <= 3);
	/* Oneshot and notify across tasks. */
	zk_oneshot_t o;
	zk_oneshot_init(&o);
	CHECK_EQ(zk_notify_init(&note), 0);
	zk_spawn(NULL, send_later, &o);
	void *v = NULL;
	CHECK_EQ(zk_oneshot_recv(&o, &v), 0);
	CHECK_EQ((intptr_t)v, 99);
	CHECK_EQ(zk_notify_wait(&note), 0);
	/* Timeouts on sync waits and around a whole call. */
	zk_chan_t *ch;
	zk_chan_create(&ch, 4);
	uint64_t t0 = zk_now_ns();
	CHECK_EQ(zk_chan_recv_timeout(ch, &v, 30 * MS), -ETIMEDOUT);
	CHECK(zk_now_ns() - t0 >= 30 * MS);
	zk_chan_free(ch);
	CHECK_EQ(zk_timeout_call(20 * MS, sleep_long, NULL, &v), -ETIMEDOUT);
	CHECK_EQ((intptr_t)v, -ECANCELED);
	return NULL;
}

/* An idle runtime makes no wake-ups: with every worker parked in
 * GetQueuedCompletionStatusEx, the process uses (almost) no CPU. */
static int case_idle(void)
{
	zk_config_t cfg = {.workers = 4};
	zk_runtime_t *rt;
	CHECK_EQ(zk_runtime_create(&rt, &cfg), 0);
	Sleep(100); /* let the workers park */
	FILETIME c, e, k0, u0, k1, u1;
	GetProcessTimes(GetCurrentProcess(), &c, &e, &k0, &u0);
	Sleep(1000);
	GetProcessTimes(GetCurrentProcess(), &c, &e, &k1, &u1);
	uint64_t used = ((((uint64_t)k1.dwHighDateTime << 32) | k1.dwLowDateTime) -
			 (((uint64_t)k0.dwHighDateTime << 32) | k0.dwLowDateTime)) +
			((((uint64_t)u1.dwHighDateTime << 32) | u1.dwLowDateTime) -
			 (((uint64_t)u0.dwHighDateTime << 32) | u0.dwLowDateTime));
	printf("idle: %llu us of CPU in 1 s with 4 parked workers\n",
	       (unsigned long long)(used / 10));
	CHECK(used / 10 < 50000); /* < 5% of one CPU */
	zk_runtime_free(rt);
	return 0;
}

/* A task that overflows its stack hits the guard page and the process
 * faults (meson expects this case to fail) instead of silently writing
 * over a neighbouring stack. */
static void __attribute__((noinline)) recurse(volatile char *prev, int depth)
{
	volatile char pad[1024];
	pad[0] = prev ? prev[0] : 1;
	if (depth > 0)
		recurse(pad, depth - 1);
	pad[1] = 0;
}

static void *case_stack_overflow(void *arg)
{
	(void)arg;
	recurse(NULL, 40); /* ~42 KiB of frames: fits the 64 KiB default stack */
	printf("stack_overflow: 42 KiB deep recursion fits; now overflowing\n");
	fflush(stdout);
	recurse(NULL, 1 << 20); /* 1 GiB of frames: far beyond any stack */
	printf("stack_overflow: NOT STOPPED\n");
	return NULL;
}

/* ---- workloads -------------------------------------------------------------- */

#define ECHO_CONNS 100
#define ECHO_BYTES (64 * 1024)

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[8192];
	ssize_t n;
	while ((n = zk_recv(fd, buf, sizeof buf, 0)) > 0)
		if (zk_send_all(fd, buf, (size_t)n) != n)
			break;
	zk_close(fd);
	return NULL;
}

static void *echo_server(void *arg)
{
	int lfd = *(int *)arg;
	for (int i = 0; i < ECHO_CONNS; i++) {
		int fd = zk_accept(lfd, NULL, NULL);
		CHECK(fd >= 0);
		if (fd < 0)
			break;
		zk_spawn(NULL, echo_conn, (void *)(intptr_t)fd);
	}
	return NULL;
}

struct echo_client {
	int port;
	unsigned id;
	int ok;
};

static void *echo_client_fn(void *arg)
{
	struct echo_client *c = arg;
	int fd = zk_tcp_connect("127.0.0.1", (uint16_t)c->port);
	if (fd < 0) {
		fprintf(stderr, "connect %u: %d\n", c->id, fd);
		return NULL;
	}
	unsigned char *out = malloc(ECHO_BYTES), *in = malloc(ECHO_BYTES);
	fill(out, ECHO_BYTES, c->id + 100);
	size_t sent = 0, got = 0;
	/* Interleave sends and receives in 16 KiB steps so neither side's
	 * socket buffers need to hold everything. */
	while (got < ECHO_BYTES) {
		if (sent < ECHO_BYTES) {
			size_t step = ECHO_BYTES - sent < 16384 ? ECHO_BYTES - sent : 16384;
			if (zk_send_all(fd, out + sent, step) != (ssize_t)step)
				break;
			sent += step;
		}
		while (got < sent) {
			ssize_t n = zk_recv(fd, in + got, ECHO_BYTES - got, 0);
			if (n <= 0)
				goto done;
			got += (size_t)n;
		}
	}
done:
	c->ok = got == ECHO_BYTES && memcmp(in, out, ECHO_BYTES) == 0;
	zk_shutdown(fd, SD_SEND);
	zk_close(fd);
	free(out);
	free(in);
	return NULL;
}

static void *case_tcp_echo(void *arg)
{
	(void)arg;
	int lfd = zk_tcp_listen("127.0.0.1", 0, 256);
	CHECK(lfd >= 0);
	int port = zk_socket_port(lfd);
	zk_task_t *srv;
	zk_spawn(&srv, echo_server, &lfd);
	static struct echo_client cl[ECHO_CONNS];
	zk_task_t *ts[ECHO_CONNS];
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		cl[i] = (struct echo_client){.port = port, .id = i};
		zk_spawn(&ts[i], echo_client_fn, &cl[i]);
	}
	int ok = 0;
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		zk_join(ts[i], NULL);
		ok += cl[i].ok;
	}
	zk_join(srv, NULL);
	CHECK_EQ(ok, ECHO_CONNS);
	printf("tcp_echo: %d connections x %d bytes echoed and verified\n", ok, ECHO_BYTES);
	zk_close(lfd);
	return NULL;
}

#define COPY_SIZE (8u * 1024 * 1024 + 12345) /* not a multiple of the chunk */
#define COPY_CHUNK (64u * 1024)
#define COPY_TASKS 8

struct copy_job {
	int src, dst;
	unsigned part;
	int err;
};

static void *copy_part(void *arg)
{
	struct copy_job *j = arg;
	char *buf = malloc(COPY_CHUNK);
	/* Task k copies chunks k, k + COPY_TASKS, ...: the tasks run on
	 * several workers against handles another worker opened. */
	for (uint64_t off = (uint64_t)j->part * COPY_CHUNK; off < COPY_SIZE;
	     off += (uint64_t)COPY_TASKS * COPY_CHUNK) {
		ssize_t n = zk_read_exact(j->src, buf, COPY_CHUNK, (int64_t)off);
		if (n <= 0 || zk_write_all(j->dst, buf, (size_t)n, (int64_t)off) != n) {
			j->err = 1;
			break;
		}
	}
	free(buf);
	return NULL;
}

static void *case_file_copy(void *arg)
{
	(void)arg;
	char sp[MAX_PATH], dp[MAX_PATH];
	temp_path(sp, sizeof sp, "src");
	temp_path(dp, sizeof dp, "dst");
	unsigned char *data = malloc(COPY_SIZE);
	fill(data, COPY_SIZE, 77);
	uint64_t want = fnv(data, COPY_SIZE, 0xcbf29ce484222325ull);
	int src = zk_open(sp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(src >= 0);
	CHECK_EQ(zk_write_all(src, data, COPY_SIZE, 0), COPY_SIZE);
	int dst = zk_open(dp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(dst >= 0);
	struct copy_job jobs[COPY_TASKS];
	zk_task_t *ts[COPY_TASKS];
	for (unsigned i = 0; i < COPY_TASKS; i++) {
		jobs[i] = (struct copy_job){.src = src, .dst = dst, .part = i};
		zk_spawn(&ts[i], copy_part, &jobs[i]);
	}
	for (unsigned i = 0; i < COPY_TASKS; i++) {
		zk_join(ts[i], NULL);
		CHECK_EQ(jobs[i].err, 0);
	}
	CHECK_EQ(zk_fsync(dst), 0);
	memset(data, 0, COPY_SIZE);
	CHECK_EQ(zk_read_exact(dst, data, COPY_SIZE, 0), COPY_SIZE);
	char extra;
	CHECK_EQ(zk_read(dst, &extra, 1, COPY_SIZE), 0);
	uint64_t got = fnv(data, COPY_SIZE, 0xcbf29ce484222325ull);
	CHECK(got == want);
	printf("file_copy: %u bytes, fnv %016llx %s\n", COPY_SIZE, (unsigned long long)got,
	       got == want ? "matches" : "DIFFERS");
	zk_close(src);
	zk_close(dst);
	DeleteFileA(sp);
	DeleteFileA(dp);
	free(data);
	return NULL;
}

/* ---- outside a task ---------------------------------------------------------- */

static int case_outside(void)
{
	char b[4];
	/* File calls run on a foreign thread (blocking it); the rest refuse. */
	CHECK_EQ(zk_read(-1, b, 4, 0), -EBADF);
	CHECK_EQ(zk_sleep_ms(1), -EPERM);
	CHECK_EQ(zk_recv(0, b, 4, 0), -EPERM);
	CHECK_EQ(zk_accept(0, NULL, NULL), -EPERM);
	CHECK_EQ(zk_timeout_next(1), -EPERM);
	zk_config_t c = {.backend = ZK_BACKEND_EPOLL};
	zk_runtime_t *rt;
	CHECK_EQ(zk_runtime_create(&rt, &c), -EINVAL);
	/* The default configuration: one worker per CPU, IOCP. */
	CHECK_EQ(zk_runtime_create(&rt, NULL), 0);
	void *res = NULL;
	CHECK_EQ(zk_block_on(rt, ret_arg, (void *)(intptr_t)5, &res), 0);
	CHECK_EQ((intptr_t)res, 5);
	zk_runtime_free(rt);
	return 0;
}

static const struct {
	const char *name;
	zk_task_fn fn;
} cases[] = {
	{"block_on", case_block_on},
	{"spawn_many", case_spawn_many},
	{"timer_order", case_timer_order},
	{"sleep_cancel", case_sleep_cancel},
	{"many_sleepers", case_many_sleepers},
	{"file_offsets", case_file_offsets},
	{"file_vectors", case_file_vectors},
	{"file_errors", case_file_errors},
	{"tcp_basic", case_tcp_basic},
	{"connect_refused", case_connect_refused},
	{"recv_timeout", case_recv_timeout},
	{"recv_cancel", case_recv_cancel},
	{"accept_cancel", case_accept_cancel},
	{"udp", case_udp},
	{"shutdown_io", case_shutdown_io},
	{"foreign_wake", case_foreign_wake},
	{"mutex", case_mutex},
	{"cross_worker_file", case_cross_worker_file},
	{"cross_worker_socket", case_cross_worker_socket},
	{"tcp_echo", case_tcp_echo},
	{"file_copy", case_file_copy},
	{"sync_mix", case_sync_mix},
	{"outside_task", NULL},
	{"idle", NULL},
	{"foreign_file", NULL},
	{"stack_overflow", case_stack_overflow},
};

static int run_case(unsigned i)
{
	int before = failures;
	if (!cases[i].fn && strcmp(cases[i].name, "idle") == 0) {
		case_idle();
	} else if (!cases[i].fn && strcmp(cases[i].name, "foreign_file") == 0) {
		case_foreign_file();
	} else if (!cases[i].fn) {
		case_outside();
	} else {
		zk_config_t cfg = {.workers = 4};
		zk_runtime_t *rt;
		int r = zk_runtime_create(&rt, &cfg);
		CHECK_EQ(r, 0);
		if (r == 0) {
			cur_rt = rt;
			void *res = NULL;
			CHECK_EQ(zk_block_on(rt, cases[i].fn, NULL, &res), 0);
			if (cases[i].fn == case_block_on)
				CHECK_EQ((intptr_t)res, 7);
			zk_runtime_free(rt);
			if (cases[i].fn == case_shutdown_io)
				for (int k = 0; k < 3; k++)
					CHECK_EQ(shutdown_seen[k], -ECANCELED);
		}
	}
	printf("%s: %s\n", cases[i].name, failures == before ? "ok" : "FAILED");
	fflush(stdout);
	return failures == before ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int bad = 0, ran = 0;
	for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (argc > 1 ? strcmp(argv[1], cases[i].name) != 0
			     : cases[i].fn == case_stack_overflow)
			continue;
		ran++;
		bad += run_case(i);
	}
	if (!ran) {
		fprintf(stderr, "unknown case %s\n", argc > 1 ? argv[1] : "");
		return 2;
	}
	return bad ? 1 : 0;
}
